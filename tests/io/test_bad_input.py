"""Bad data-set input gets a clear error at load (or at the call), naming what is wrong.

Extended-precision data, damaged npy headers, nonsense dtypes, a directory or an unreadable
file where a file is expected, and something other than a data set passed to ``run_udf``.
"""

import os
import stat

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from udfkit import UDF, Context
from udfkit.errors import DataSetError, UdfkitError
from udfkit.testing.profiles import examples
from udfkit.udf.builtins import SumUDF

EXTENDED = [t for t in (np.longdouble, np.clongdouble)
            if np.dtype(t).itemsize > (8 if np.dtype(t).kind == "f" else 16)]


def _open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


@pytest.fixture(scope="module")
def ctx():
    with Context.make_with("inline") as c:
        yield c


@pytest.mark.skipif(not EXTENDED, reason="long double is float64 on this platform")
@pytest.mark.parametrize("dtype", EXTENDED, ids=lambda t: np.dtype(t).name)
@pytest.mark.parametrize("form", ["npy", "raw", "memory"])
def test_extended_precision_refused_at_load(ctx, tmp_path, dtype, form):
    data = np.arange(4 * 8 * 8).reshape(4, 8, 8).astype(dtype)
    path = tmp_path / f"data.{form}"
    if form == "npy":
        np.save(path, data)
        params = dict(path=str(path))
    elif form == "raw":
        data.tofile(path)
        params = dict(path=str(path), dtype=dtype, nav_shape=(4,), sig_shape=(8, 8))
    else:
        params = dict(data=data)
    before = _open_fds()
    with pytest.raises(DataSetError) as info:
        ctx.load(form, **params)
    msg = str(info.value)
    assert np.dtype(dtype).name in msg and "not supported" in msg
    if form != "memory":
        assert str(path) in msg
    del info
    assert _open_fds() == before


def _npy_bytes(shape=(4, 8, 8), dtype="<f4") -> bytes:
    import io

    buf = io.BytesIO()
    np.save(buf, np.zeros(shape, dtype))
    return buf.getvalue()


@pytest.mark.parametrize("header", [
    b"{'descr': '<f4', 'fortran_order': False, 'shape': ((((((((, }",   # tokenize.TokenError
    b"{'descr': '<f4', 'fortran_order': False, 'shape': (4, 8, 8), ",  # unclosed dict
    b"{'descr': '<f4', 'fortran_order': False, 'shape': [4, 8, 8]}",   # list, not tuple
    b"{'descr': 'q9', 'fortran_order': False, 'shape': (4, 8, 8)}",    # unknown dtype
    b"\xff\xfe\x00garbage",
], ids=["tokenize", "unclosed", "list", "descr", "binary"])
def test_corrupt_npy_header_names_the_file(ctx, tmp_path, header):
    good = _npy_bytes()
    start = 10  # magic (6) + version (2) + header length (2) of a version 1.0 file
    length = int.from_bytes(good[8:10], "little")
    padded = header.ljust(length - 1) + b"\n"
    path = tmp_path / "bad.npy"
    path.write_bytes(good[:start] + padded + good[start + length:])
    with pytest.raises(DataSetError, match="bad.npy"):
        ctx.load("npy", path=str(path))


def test_negative_dimension_in_npy_header_is_a_shape_error(ctx, tmp_path):
    path = tmp_path / "neg.npy"
    path.write_bytes(_npy_bytes().replace(b"(4, 8, 8)", b"(-4, 8, 8)"))
    with pytest.raises(DataSetError, match=r"header's shape \(-4, 8, 8\)") as info:
        ctx.load("npy", path=str(path))
    assert "neg.npy" in str(info.value) and "sync_offset" not in str(info.value)


@settings(max_examples=examples(40), deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(pos=st.integers(0, 127), value=st.integers(0, 255))
def test_any_damaged_npy_header_byte_loads_or_names_the_file(ctx, tmp_path, pos, value):
    """One byte of the header changed: the file loads with what the header says (and then
    reads as numpy reads it), or the error is a DataSetError naming the file."""
    raw = bytearray(_npy_bytes((4, 8, 8), "<u2"))
    raw[pos] = value
    path = tmp_path / "flip.npy"
    path.write_bytes(bytes(raw))
    try:
        ds = ctx.load("npy", path=str(path))
    except DataSetError as e:
        assert str(path) in str(e)
        return
    expected = np.load(path, mmap_mode="r")
    res = ctx.run_udf(dataset=ds, udf=SumUDF())["intensity"].data
    nav = ds.shape.nav.size
    frames = np.asarray(expected).reshape(-1, *ds.shape.sig)[:nav]
    assert np.array_equal(res, frames.sum(axis=0, dtype=res.dtype))


@pytest.mark.parametrize("dtype", [("i4", -1), ("i4", 2), "foo", 5, [("a", "i4")], "V8", object,
                                   "S4", "U4", "M8[s]", "float128-ish", (np.float64, (2,))],
                         ids=repr)
def test_nonsense_dtype_names_the_dtype_parameter(ctx, tmp_path, dtype):
    path = tmp_path / "x.raw"
    np.zeros((4, 4, 4), "float32").tofile(path)
    with pytest.raises(DataSetError, match="dtype") as info:
        ctx.load("raw", path=str(path), dtype=dtype, nav_shape=(4,), sig_shape=(4, 4))
    assert "x.raw" in str(info.value)


@pytest.mark.parametrize("method", ["run_udf", "run_udf_iter", "plan"])
@pytest.mark.parametrize("given_", [None, np.zeros((2, 4, 4)), "scan.raw"], ids=["None", "ndarray", "str"])
def test_run_without_a_dataset_is_a_type_error(ctx, method, given_):
    with pytest.raises(TypeError, match="dataset: expected a udfkit DataSet") as info:
        out = getattr(ctx, method)(dataset=given_, udf=SumUDF())
        if method == "run_udf_iter":
            next(iter(out))
    if isinstance(given_, np.ndarray):
        assert "ctx.load('memory', data=" in str(info.value)


def test_export_onto_a_directory_with_overwrite_is_refused(ctx, tmp_path):
    ds = ctx.load("memory", data=np.zeros((2, 4, 4), "float32"))
    target = tmp_path / "out.npy"
    target.mkdir()
    (target / "keep.txt").write_text("mine")
    with pytest.raises(UdfkitError, match="is a directory") as info:
        ctx.export(ds, str(target), overwrite=True)
    assert str(target) in str(info.value)
    assert (target / "keep.txt").read_text() == "mine"


def test_auto_on_a_plain_directory_says_what_auto_accepts(ctx, tmp_path):
    (tmp_path / "notes.txt").write_text("not data")
    with pytest.raises(DataSetError, match="it is a directory") as info:
        ctx.load("auto", path=str(tmp_path))
    assert str(tmp_path) in str(info.value) and "zarr" in str(info.value)


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads files whatever their permissions")
@pytest.mark.parametrize("form", ["raw", "npy", "auto"])
def test_unreadable_file_refused_at_load(ctx, tmp_path, form):
    path = tmp_path / ("locked.npy" if form != "raw" else "locked.raw")
    if form == "raw":
        np.zeros((4, 4, 4), "uint16").tofile(path)
        params = dict(dtype="uint16", nav_shape=(4,), sig_shape=(4, 4))
    else:
        np.save(path, np.zeros((4, 4, 4), "uint16"))
        params = {}
    os.chmod(path, 0)
    try:
        with pytest.raises(DataSetError, match="permission denied") as info:
            ctx.load(form, path=str(path), **params)
        assert str(path) in str(info.value)
    finally:
        os.chmod(path, stat.S_IRUSR | stat.S_IWUSR)


@pytest.mark.parametrize("form", ["raw", "npy", "auto"])
def test_unreadable_file_refused_at_load_as_the_os_reports_it(ctx, tmp_path, form, monkeypatch):
    """The same as above where root runs the tests: os.access answers as for another user."""
    path = tmp_path / ("locked.npy" if form != "raw" else "locked.raw")
    if form == "raw":
        np.zeros((4, 4, 4), "uint16").tofile(path)
        params = dict(dtype="uint16", nav_shape=(4,), sig_shape=(4, 4))
    else:
        np.save(path, np.zeros((4, 4, 4), "uint16"))
        params = {}
    real_access = os.access
    monkeypatch.setattr(os, "access", lambda p, mode, **kw: False if os.fspath(p) == str(path)
                        and mode & os.R_OK else real_access(p, mode, **kw))
    with pytest.raises(DataSetError, match="permission denied") as info:
        ctx.load(form, path=str(path), **params)
    assert str(path) in str(info.value)


class _LongDoubleSum(UDF):
    """Asks for its frames as long double: numba has no such type, numpy does."""

    def get_result_buffers(self):
        return {"s": self.buffer(kind="sig", dtype=np.longdouble)}

    def get_preferred_input_dtype(self):
        return np.longdouble

    def process_frame(self, frame):
        assert frame.dtype == np.longdouble
        self.results.s[:] += frame

    def merge(self, dest, src):
        dest.s[:] += src.s


@pytest.mark.skipif(not EXTENDED, reason="long double is float64 on this platform")
@pytest.mark.parametrize("stored", ["float32", ">u2", "int64"])
def test_udf_asking_for_long_double_frames_gets_them_decoded_by_numpy(ctx, tmp_path, stored):
    data = (np.arange(6 * 8 * 8) % 1000).reshape(6, 8, 8).astype(stored)
    path = tmp_path / "x.raw"
    data.tofile(path)
    ds = ctx.load("raw", path=str(path), dtype=stored, nav_shape=(6,), sig_shape=(8, 8))
    res = ctx.run_udf(dataset=ds, udf=_LongDoubleSum())["s"].data
    assert res.dtype == np.longdouble
    assert np.array_equal(res, data.astype(np.longdouble).sum(axis=0))
