"""I/O failures during a run reach the caller as ``IOBackendError`` (an ``OSError``) that names
the file, the bytes and the reason; a file that changed after loading as ``FileChangedError``,
which is also the ``DataSetError`` older code catches."""

from __future__ import annotations

import errno
import os
import pickle

import numpy as np
import pytest

from udfkit import Context
from udfkit.errors import DataSetError, FileChangedError, IOBackendError, UdfkitError
from udfkit.udf import SumUDF

BACKENDS = ["mmap", "buffered"]


@pytest.fixture
def loaded(tmp_path):
    """``(ctx, ds, path)``: an inline Context and a loaded 6-frame raw file, per backend."""
    path = tmp_path / "scan.raw"
    np.arange(6 * 8 * 8, dtype=np.uint16).tofile(path)

    def load(backend):
        ctx = Context.make_with("inline")
        ds = ctx.load("raw", path=str(path), dtype="uint16", nav_shape=(6,), sig_shape=(8, 8),
                      io_backend=backend)
        return ctx, ds, path

    return load


@pytest.mark.parametrize("backend", BACKENDS)
def test_open_refused_during_a_run(loaded, monkeypatch, backend):
    """A file that cannot be opened any more (permissions changed): errno and file kept."""
    ctx, ds, path = loaded(backend)
    real = os.open

    def refusing(p, flags, *args):
        if os.fspath(p) == str(path):
            raise PermissionError(errno.EACCES, "Permission denied", p)
        return real(p, flags, *args)

    monkeypatch.setattr(os, "open", refusing)
    with pytest.raises(IOBackendError) as info:
        ctx.run_udf(dataset=ds, udf=SumUDF())
    e = info.value
    assert isinstance(e, OSError) and isinstance(e, UdfkitError)
    assert not isinstance(e, FileChangedError)
    assert e.errno == errno.EACCES and e.filename == str(path)
    assert str(e) == (f"cannot open file {str(path)!r} to read frames 0..5 (bytes up to 768): "
                      "Permission denied")


def test_read_error_names_file_offset_and_size(loaded, monkeypatch):
    """An I/O error of the device while reading: which bytes of which file, and why."""
    ctx, ds, path = loaded("buffered")

    def failing(fd, buffers, offset):
        raise OSError(errno.EIO, "Input/output error")

    monkeypatch.setattr(os, "preadv", failing)
    with pytest.raises(OSError) as info:  # what code written before IOBackendError catches
        ctx.run_udf(dataset=ds, udf=SumUDF())
    e = info.value
    assert type(e) is IOBackendError
    assert e.errno == errno.EIO and e.filename == str(path)
    assert str(e).startswith(f"reading 768 bytes at offset 0 of file {str(path)!r} failed "
                             "(bytes 0..768 are needed): Input/output error")


@pytest.mark.parametrize("backend", BACKENDS)
def test_truncated_after_load_is_both_kinds(loaded, backend):
    ctx, ds, path = loaded(backend)
    os.truncate(path, 3 * 128)
    with pytest.raises(FileChangedError, match=r"scan\.raw' has 384 bytes, but frames 0\.\.5 need "
                                                r"bytes up to 768; the file was truncated") as info:
        ctx.run_udf(dataset=ds, udf=SumUDF())
    assert isinstance(info.value, DataSetError) and isinstance(info.value, ValueError)
    assert isinstance(info.value, IOBackendError) and isinstance(info.value, OSError)


@pytest.mark.parametrize("backend", BACKENDS)
def test_removed_after_load(loaded, backend):
    ctx, ds, path = loaded(backend)
    os.unlink(path)
    with pytest.raises(FileChangedError, match=r"scan\.raw' disappeared after it was loaded"):
        ctx.run_udf(dataset=ds, udf=SumUDF())


def test_errors_survive_the_trip_from_a_worker():
    """Worker exceptions are pickled: type, errno, file and message must arrive unchanged."""
    e = IOBackendError(errno.EIO, "reading 8 bytes at offset 16 of file 'a.raw' failed", "a.raw")
    back = pickle.loads(pickle.dumps(e))
    assert (type(back), back.errno, back.filename, str(back)) == (type(e), e.errno, e.filename, str(e))
    f = pickle.loads(pickle.dumps(FileChangedError("file 'a.raw' has 0 bytes")))
    assert type(f) is FileChangedError and str(f) == "file 'a.raw' has 0 bytes"


def test_a_good_run_is_unchanged(loaded):
    ctx, ds, path = loaded("buffered")
    data = np.fromfile(path, dtype=np.uint16).reshape(6, 8, 8)
    res = ctx.run_udf(dataset=ds, udf=SumUDF())
    np.testing.assert_array_equal(res["intensity"].data, data.sum(axis=0, dtype=np.float64))
