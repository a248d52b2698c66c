"""Bad input and failures of runs with results on disk: an existing target, a location that
cannot be written, a disk that fills up mid-run (a real size-limited tmpfs where the test may
mount one, and a write failure injected at the store layer everywhere), buffers a store
cannot hold. Each is a clear :class:`~udfkit.errors.ResultStoreError` (or ``UDFError``), and
a failed run never leaves a store that looks complete.
"""

from __future__ import annotations

import errno
import os
import subprocess

import numpy as np
import pytest

from udfkit import UDF, Context
from udfkit.errors import ResultStoreError, ResultStoreExistsError, UDFError
from udfkit.udf import MapUDF, SumSigUDF
from udfkit.udf.store.journal import Journal

FORMATS = {"zarr": "r.zarr", "hdf5": "r.h5", "npy": "rdir"}


@pytest.fixture(scope="module")
def ctx():
    with Context.make_with("inline") as c:
        yield c


@pytest.fixture
def ds(ctx):
    data = np.random.default_rng(0).random((8, 8, 4, 4)).astype("float32")
    return ctx.load("memory", data=data, num_partitions=8)


def _complete(path) -> bool:
    from udfkit.udf.store.target import _backend_class, detect_format

    meta = _backend_class(detect_format(str(path))).read_meta(str(path))
    return bool(meta and meta["complete"])


@pytest.mark.parametrize("fmt", list(FORMATS))
def test_existing_store_needs_overwrite(ctx, ds, tmp_path, fmt):
    out = tmp_path / FORMATS[fmt]
    ctx.run_udf(ds, SumSigUDF(), out=out)
    with pytest.raises(ResultStoreExistsError, match=r"overwrite=True .* resume=True"):
        ctx.run_udf(ds, SumSigUDF(), out=out)
    res = ctx.run_udf(ds, MapUDF(f=lambda f: f.max()), out=out, overwrite=True)
    assert set(res) == {"result"} and _complete(out)


def test_foreign_directory_and_file_are_never_replaced(ctx, ds, tmp_path):
    d = tmp_path / "mine"
    d.mkdir()
    (d / "precious.txt").write_text("keep")
    for out in (d, tmp_path / "x.zarr"):
        out.mkdir(exist_ok=True)
        (out / "precious.txt").write_text("keep")
        with pytest.raises(ResultStoreExistsError, match="not a udfkit result store"):
            ctx.run_udf(ds, SumSigUDF(), out=out, overwrite=True)
        assert (out / "precious.txt").read_text() == "keep"
    f = tmp_path / "other.h5"
    f.write_bytes(b"not hdf5")
    with pytest.raises(ResultStoreExistsError, match="not a udfkit result store"):
        ctx.run_udf(ds, SumSigUDF(), out=f, resume=True)
    assert f.read_bytes() == b"not hdf5"


def test_empty_directory_is_used(ctx, ds, tmp_path):
    out = tmp_path / "empty"
    out.mkdir()
    ctx.run_udf(ds, SumSigUDF(), out=out)
    assert _complete(out)


def test_parameter_errors(ctx, ds, tmp_path):
    with pytest.raises(ResultStoreError, match="give out= too"):
        ctx.run_udf(ds, SumSigUDF(), overwrite=True)
    with pytest.raises(ResultStoreError, match="contradict"):
        ctx.run_udf(ds, SumSigUDF(), out=tmp_path / "a.zarr", overwrite=True, resume=True)
    with pytest.raises(ResultStoreError, match="npy stores are not compressed"):
        from udfkit import ResultStore

        ResultStore(tmp_path / "d", compression="gzip")
    with pytest.raises(ResultStoreError, match="expected a path or a ResultStore"):
        ctx.run_udf(ds, SumSigUDF(), out=3)


class NavInGetResults(UDF):
    def get_result_buffers(self):
        return {"x": self.buffer(kind="nav")}

    def process_frame(self, frame):
        self.results.x[:] = frame.sum()

    def get_results(self):
        return {"x": self.results.x * 2}


class Strings(UDF):
    def get_result_buffers(self):
        return {"s": self.buffer(kind="nav", dtype="U4")}

    def process_frame(self, frame):
        self.results.s[:] = "a"


@pytest.mark.parametrize("udf, match", [(NavInGetResults(), "computes its results in get_results"),
                                        (Strings(), "dtype <U4, which a result store cannot hold")])
def test_unsupported_buffers(ctx, ds, tmp_path, udf, match):
    out = tmp_path / "r.zarr"
    with pytest.raises(UDFError, match=match):
        ctx.run_udf(ds, udf, out=out)
    assert not out.exists()


class Boom(UDF):
    def get_result_buffers(self):
        return {"x": self.buffer(kind="nav")}

    def process_frame(self, frame):
        if self.meta.coordinates[0][0] == 5:
            raise RuntimeError("boom")
        self.results.x[:] = frame.sum()


@pytest.mark.parametrize("fmt", list(FORMATS))
def test_failed_run_leaves_an_incomplete_store(ctx, ds, tmp_path, fmt):
    out = tmp_path / FORMATS[fmt]
    with pytest.raises(RuntimeError, match="boom"):
        ctx.run_udf(ds, Boom(), out=out)
    assert os.path.exists(out) and not _complete(out)
    j = Journal.read(str(out / "udfkit-journal.npz") if fmt == "npy"
                     else str(out) + ".udfkit-journal.npz")
    assert j.merged == [0, 1, 2, 3, 4] and not j.complete


@pytest.mark.parametrize("direct", [False, None])
def test_write_failure_keeps_the_journal_consistent(ctx, ds, tmp_path, monkeypatch, direct):
    """A full disk, injected at the store layer (the main process's writes, or the direct
    writes of the worker): a clear error, then resume goes on."""
    from udfkit import ResultStore
    from udfkit.udf.store import _npy

    out = tmp_path / "rdir"
    writes = []
    real = _npy._pwrite

    def failing(*args):
        writes.append(1)
        if len(writes) == 4:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(*args)

    monkeypatch.setattr(_npy, "_pwrite", failing)
    with pytest.raises(ResultStoreError, match="No space left on device.*resume=True") as info:
        ctx.run_udf(ds, SumSigUDF(), out=ResultStore(out, direct=direct))
    assert info.value.errno == errno.ENOSPC
    assert not _complete(out)
    # the failure hit partition 3's write: the journal names a prefix of the merged ones
    merged = Journal.read(str(out / "udfkit-journal.npz")).merged
    assert merged == list(range(len(merged))) and 1 <= len(merged) <= 3
    monkeypatch.setattr(_npy, "_pwrite", real)
    res = ctx.run_udf(ds, SumSigUDF(), out=out, resume=True)
    np.testing.assert_array_equal(res["intensity"].data[...], ctx.run_udf(ds, SumSigUDF())["intensity"].data)
    assert _complete(out)


def _mount(path, options):
    path.mkdir(exist_ok=True)
    try:
        subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(path)], check=True,
                       capture_output=True, timeout=30)
    except (OSError, subprocess.SubprocessError):
        pytest.skip("cannot mount a tmpfs here (needs root)")


def _umount(path):
    subprocess.run(["umount", "-l", str(path)], capture_output=True, timeout=30)


@pytest.fixture
def small_fs(tmp_path):
    fs = tmp_path / "fs"
    _mount(fs, "size=400k")
    yield fs
    _umount(fs)


@pytest.mark.parametrize("fmt", list(FORMATS))
def test_disk_full_then_resume(ctx, small_fs, fmt):
    """A real full disk: a tmpfs of 400 KiB, results of 8 MiB."""
    data = np.random.default_rng(1).random((16, 16, 8, 8)).astype("float32")
    ds = ctx.load("memory", data=data, num_partitions=16)
    f = MapUDF(f=lambda frame: np.repeat(frame, 8, axis=0))  # 8 KiB per frame
    out = small_fs / FORMATS[fmt]
    with pytest.raises(ResultStoreError, match="No space left on device") as info:
        ctx.run_udf(ds, f, out=out)
    assert info.value.errno == errno.ENOSPC
    assert not _complete(out) if os.path.exists(out) else True
    # more space, and the run goes on where the journal says
    subprocess.run(["mount", "-o", "remount,size=64m", str(small_fs)], check=True, timeout=30)
    res = ctx.run_udf(ds, f, out=out, resume=True)
    np.testing.assert_array_equal(np.asarray(res["result"].data[...]),
                                  np.repeat(data, 8, axis=2))
    assert _complete(out)


def test_read_only_location(ctx, ds, tmp_path):
    ro = tmp_path / "ro"
    if os.geteuid() == 0:
        _mount(ro, "size=1m,ro")
    else:
        ro.mkdir()
        ro.chmod(0o500)
    try:
        for name in FORMATS.values():
            with pytest.raises(ResultStoreError, match="cannot|Read-only|Permission") as info:
                ctx.run_udf(ds, SumSigUDF(), out=ro / name)
            assert "choose a location you can write to" in str(info.value)
    finally:
        if os.geteuid() == 0:
            _umount(ro)


def test_series_udfs_refuse_out(ctx, ds, tmp_path):
    """Series-mode UDFs write sig buffers; out= is refused before anything is written."""
    from udfkit.udf import SeriesStatsUDF

    target = tmp_path / "series.zarr"
    with pytest.raises(UDFError, match="series UDFs.*SeriesStatsUDF"):
        ctx.run_udf(dataset=ds, udf=SeriesStatsUDF(), out=str(target))
    assert not target.exists()
