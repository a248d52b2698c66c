"""Bad input to ``Context.load`` / ``run_udf``: a clear error naming the file and the numbers."""

import ast
import os
import re

import numpy as np
import pytest

from udfkit import UDF
from udfkit.errors import DataSetError, DataSetFileNotFoundError, ROIError, UdfkitError


class FrameSum(UDF):
    def get_result_buffers(self):
        return {"s": self.buffer(kind="nav", dtype="float64")}

    def process_frame(self, frame):
        self.results.s[:] = frame.sum()


def esc(path):
    return re.escape(os.path.basename(str(path)))


@pytest.fixture
def raw20(write_raw):
    """20 frames of (3, 4) big-endian float32: 960 bytes, 48 bytes per frame."""
    data = np.arange(20 * 12, dtype=">f4").reshape(20, 3, 4)
    return write_raw(data, name="scan20.raw"), data


@pytest.fixture
def npy_path(tmp_path):
    path = str(tmp_path / "stack.npy")
    np.save(path, np.arange(3 * 4 * 5 * 6, dtype="uint16").reshape(3, 4, 5, 6))
    return path


def load_raw(ctx, path, **kw):
    params = dict(path=path, dtype=">f4", nav_shape=(20,), sig_shape=(3, 4))
    params.update(kw)
    return ctx.load("raw", **params)


def test_error_hierarchy():
    assert issubclass(DataSetError, ValueError) and issubclass(DataSetError, UdfkitError)
    assert issubclass(DataSetFileNotFoundError, DataSetError)
    assert issubclass(DataSetFileNotFoundError, FileNotFoundError)
    assert issubclass(ROIError, ValueError) and issubclass(ROIError, UdfkitError)


# -- raw file too small / not whole frames ------------------------------------------------------

@pytest.mark.parametrize(
    "nav_shape, needed, suggestion",
    [
        ((4, 6), 1152, (3, 6)),
        ((100,), 4800, (20,)),
        ((21,), 1008, (20,)),
        ((2, 2, 6), 1152, (1, 2, 6)),
        ((3, 7), 1008, (2, 7)),
    ],
)
def test_raw_too_small(inline_ctx, raw20, nav_shape, needed, suggestion):
    path, _ = raw20
    with pytest.raises(DataSetError) as info:
        load_raw(inline_ctx, path, nav_shape=nav_shape)
    msg = str(info.value)
    assert re.search(rf"{esc(path)}.*too small.*960 bytes.*{needed} bytes", msg), msg
    assert f"nav_shape {tuple(nav_shape)}" in msg
    assert "20 whole frames" in msg
    assert f"nav_shape={suggestion}" in msg
    assert "allow_partial=True" in msg
    # the suggestion really fits
    m = re.search(r"nav_shape=(\([\d, ]+\))", msg)
    ds = load_raw(inline_ctx, path, nav_shape=ast.literal_eval(m.group(1)))
    assert ds.shape.nav == suggestion


@pytest.mark.parametrize(
    "sig_shape, dtype, frame_bytes, frames, rest",
    [
        ((7,), ">f4", 28, 34, 8),
        ((5, 5), ">f4", 100, 9, 60),
        ((3, 4), ">f8", 96, 10, 0),  # whole frames, but too few -> "too small" instead
        ((11,), "uint16", 22, 43, 14),
    ],
)
def test_raw_not_whole_frames(inline_ctx, raw20, sig_shape, dtype, frame_bytes, frames, rest):
    path, _ = raw20
    if rest == 0:
        with pytest.raises(DataSetError, match=rf"{esc(path)}.*too small.*960 bytes"):
            load_raw(inline_ctx, path, sig_shape=sig_shape, dtype=dtype)
        return
    with pytest.raises(DataSetError) as info:
        load_raw(inline_ctx, path, sig_shape=sig_shape, dtype=dtype)
    msg = str(info.value)
    pattern = rf"{esc(path)}' has 960 bytes, which is not a whole number of frames"
    assert re.search(pattern, msg), msg
    assert f"= {frame_bytes} bytes" in msg
    assert f"{frames} frames and {rest} bytes left over" in msg
    assert f"would need {20 * frame_bytes} bytes" in msg
    assert str(tuple(sig_shape)) in msg


@pytest.mark.parametrize("size", [0, 10])
def test_raw_less_than_one_frame(inline_ctx, tmp_path, size):
    path = tmp_path / "tiny.raw"
    path.write_bytes(b"x" * size)
    with pytest.raises(DataSetError, match=rf"tiny\.raw.*{size} bytes") as info:
        load_raw(inline_ctx, str(path))
    assert "nav_shape=(0,)" not in str(info.value)


@pytest.mark.parametrize("size", [0, 10])
def test_raw_less_than_one_frame_allow_partial(inline_ctx, tmp_path, size):
    path = tmp_path / "tiny.raw"
    path.write_bytes(b"x" * size)
    pattern = rf"tiny\.raw' holds no complete frame \({size} bytes\).*48 bytes"
    with pytest.raises(DataSetError, match=pattern):
        load_raw(inline_ctx, str(path), allow_partial=True)


# -- allow_partial ------------------------------------------------------------------------------

@pytest.mark.parametrize("extra_bytes", [0, 17])
def test_allow_partial_loads_and_reports_missing_frames(inline_ctx, raw20, extra_bytes):
    path, data = raw20
    with open(path, "ab") as f:
        f.write(b"\0" * extra_bytes)
    with pytest.raises(DataSetError):
        load_raw(inline_ctx, path, nav_shape=(4, 6))
    ds = load_raw(inline_ctx, path, nav_shape=(4, 6), allow_partial=True, num_partitions=3)
    assert ds.shape.nav == (4, 6)
    assert ds.image_count == 20
    expected = np.arange(24) < 20
    np.testing.assert_array_equal(ds.get_valid_mask(), expected)
    res = inline_ctx.run_udf(dataset=ds, udf=FrameSum())
    np.testing.assert_array_equal(res["s"].valid_mask, expected.reshape(4, 6))
    flat = res["s"].data.reshape(-1)
    np.testing.assert_allclose(flat[:20], data.astype("float64").sum(axis=(1, 2)))
    assert np.all(np.isnan(flat[20:]))


def test_allow_partial_memory(inline_ctx):
    data = np.ones((5, 3, 3), "float32")
    pattern = r"memory data set: nav_shape \(8,\).*needs 72 elements.*hold 45"
    with pytest.raises(DataSetError, match=pattern):
        inline_ctx.load("memory", data=data, nav_shape=(8,))
    ds = inline_ctx.load("memory", data=data, nav_shape=(8,), allow_partial=True)
    res = inline_ctx.run_udf(dataset=ds, udf=FrameSum())
    np.testing.assert_array_equal(res["s"].valid_mask, np.arange(8) < 5)
    np.testing.assert_array_equal(res["s"].data[:5], 9.0)


# -- element count of npy / memory overrides ----------------------------------------------------

@pytest.mark.parametrize(
    "kwargs, pattern",
    [
        (dict(nav_shape=(5, 5)),
         r"nav_shape \(5, 5\) × sig_shape \(5, 6\) needs 750 elements, but the data hold 360 "
         r"\(shape \(3, 4, 5, 6\)\)"),
        (dict(nav_shape=(13,)), r"nav_shape \(13,\) .* needs 390 elements, but the data hold 360"),
        (dict(sig_shape=(7,)),
         r"360 elements \(3, 4, 5, 6\) are not a whole number of frames of sig_shape \(7,\) "
         r"\(7 elements\)"),
        (dict(sig_shape=(4, 4)),
         r"not a whole number of frames of sig_shape \(4, 4\) \(16 elements\)"),
        (dict(nav_shape=(24,), sig_shape=(20,)), r"needs 480 elements, but the data hold 360"),
    ],
)
@pytest.mark.parametrize("fmt", ["npy", "memory"])
def test_override_element_count_mismatch(inline_ctx, npy_path, fmt, kwargs, pattern):
    if fmt == "npy":
        where = rf"npy file '.*{esc(npy_path)}'"
        with pytest.raises(DataSetError, match=where + ".*" + pattern):
            inline_ctx.load("npy", path=npy_path, **kwargs)
    else:
        data = np.load(npy_path)
        with pytest.raises(DataSetError, match="memory data set.*" + pattern):
            inline_ctx.load("memory", data=data, **kwargs)


def test_npy_truncated(inline_ctx, npy_path):
    size = os.path.getsize(npy_path)
    os.truncate(npy_path, size - 100)
    pattern = rf"{esc(npy_path)}' is truncated.*\(3, 4, 5, 6\).*{size} bytes.*{size - 100} bytes"
    with pytest.raises(DataSetError, match=pattern):
        inline_ctx.load("npy", path=npy_path)


def test_npy_not_npy(inline_ctx, tmp_path):
    path = tmp_path / "fake.npy"
    path.write_bytes(b"this is no npy file at all" * 10)
    with pytest.raises(DataSetError, match=r"fake\.npy.*no valid \.npy header"):
        inline_ctx.load("npy", path=str(path))


def test_npy_1d_needs_sig_shape(inline_ctx, tmp_path):
    path = str(tmp_path / "line.npy")
    np.save(path, np.zeros(10))
    pattern = r"line\.npy.*shape \(10,\).*at least 2 dimensions.*sig_shape"
    with pytest.raises(DataSetError, match=pattern):
        inline_ctx.load("npy", path=path)


def test_npy_non_numeric(inline_ctx, tmp_path):
    path = str(tmp_path / "str.npy")
    np.save(path, np.array([["a", "b"], ["c", "d"]]))
    with pytest.raises(DataSetError, match=r"str\.npy.*expected a numeric dtype"):
        inline_ctx.load("npy", path=path)


# -- dtype ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("dtype, pattern", [
    ("uint17", r"dtype: expected a numpy dtype such as 'uint16' or '>f4', got 'uint17'"),
    ("float", None),  # valid: float64
    ("U4", r"dtype: expected a numeric dtype.*got 'U4'"),
    ("M8[s]", r"dtype: expected a numeric dtype.*got .M8\[s\].$"),
])
def test_raw_bad_dtype(inline_ctx, raw20, dtype, pattern):
    path, _ = raw20
    if pattern is None:
        with pytest.raises(DataSetError, match="not a whole number|too small"):
            load_raw(inline_ctx, path, dtype=dtype)  # valid dtype, wrong size for the file
        return
    with pytest.raises(DataSetError, match=rf"raw file '.*{esc(path)}': {pattern}"):
        load_raw(inline_ctx, path, dtype=dtype)


# -- missing path ---------------------------------------------------------------------------------

@pytest.mark.parametrize("fmt", ["raw", "npy", "auto"])
def test_missing_path(inline_ctx, tmp_path, fmt):
    path = str(tmp_path / "does_not_exist.bin")
    kw = dict(dtype="uint8", nav_shape=(2,), sig_shape=(2,)) if fmt == "raw" else {}
    pattern = r"does_not_exist\.bin' does not exist"
    with pytest.raises(DataSetFileNotFoundError, match=pattern) as info:
        inline_ctx.load(fmt, path=path, **kw)
    assert isinstance(info.value, FileNotFoundError)
    assert isinstance(info.value, DataSetError)
    assert isinstance(info.value, ValueError)


def test_missing_path_caught_as_file_not_found(inline_ctx, tmp_path):
    try:
        inline_ctx.load("npy", path=str(tmp_path / "nope.npy"))
    except FileNotFoundError as e:
        assert "nope.npy" in str(e)
    else:
        pytest.fail("no FileNotFoundError")


@pytest.mark.parametrize("fmt", ["raw", "npy"])
def test_path_is_a_directory(inline_ctx, tmp_path, fmt):
    kw = dict(dtype="uint8", nav_shape=(2,), sig_shape=(2,)) if fmt == "raw" else {}
    with pytest.raises(DataSetError, match="is not a regular file"):
        inline_ctx.load(fmt, path=str(tmp_path), **kw)


# -- shapes: zero / negative / too many dimensions ---------------------------------------------

@pytest.mark.parametrize(
    "param, value, pattern",
    [
        ("nav_shape", (4, 0), r"nav_shape: expected positive integers, got \(4, 0\)"),
        ("nav_shape", (-1, 20), r"nav_shape: expected positive integers, got \(-1, 20\)"),
        ("nav_shape", 0, r"nav_shape: expected positive integers, got 0"),
        ("sig_shape", (0,), r"sig_shape: expected positive integers, got \(0,\)"),
        ("sig_shape", (3, -4), r"sig_shape: expected positive integers, got \(3, -4\)"),
        ("nav_shape", (2.5, 8),
         r"nav_shape: expected a tuple of positive integers, got \(2\.5, 8\)"),
        ("nav_shape", (1, 1, 1, 20),
         r"nav_shape: expected 1 to 3 dimensions, got \(1, 1, 1, 20\) \(4 dimensions\)"),
        ("sig_shape", (1, 1, 3, 4),
         r"sig_shape: expected 1 to 3 dimensions, got \(1, 1, 3, 4\) \(4 dimensions\)"),
        ("nav_shape", (), r"nav_shape: expected 1 to 3 dimensions, got \(\) \(0 dimensions\)"),
    ],
)
@pytest.mark.parametrize("fmt", ["raw", "npy", "memory"])
def test_bad_shapes(inline_ctx, raw20, tmp_path, fmt, param, value, pattern):
    raw_path, data = raw20
    if fmt == "raw":
        with pytest.raises(DataSetError, match=rf"raw file '.*{esc(raw_path)}': {pattern}"):
            load_raw(inline_ctx, raw_path, **{param: value})
    elif fmt == "npy":
        path = str(tmp_path / "shapes.npy")
        np.save(path, data)
        with pytest.raises(DataSetError, match=rf"npy file '.*shapes\.npy': {pattern}"):
            inline_ctx.load("npy", path=path, **{param: value})
    else:
        with pytest.raises(DataSetError, match=rf"memory data set: {pattern}"):
            inline_ctx.load("memory", data=data, **{param: value})


@pytest.mark.parametrize("shape", [(0, 4, 4), (5, 0, 4), (5, 4, 0)])
@pytest.mark.parametrize("fmt", ["npy", "memory"])
def test_empty_axes_in_data(inline_ctx, tmp_path, fmt, shape):
    data = np.zeros(shape, "float32")
    if fmt == "npy":
        path = str(tmp_path / "empty.npy")
        np.save(path, data)
        with pytest.raises(DataSetError, match=r"npy file '.*empty\.npy'"):
            inline_ctx.load("npy", path=path)
    else:
        with pytest.raises(DataSetError, match="memory data set"):
            inline_ctx.load("memory", data=data)


@pytest.mark.parametrize(
    "sig_dims", [0, -1, 1.5, "2", 4, 5])
@pytest.mark.parametrize("fmt", ["npy", "memory"])
def test_bad_sig_dims(inline_ctx, tmp_path, fmt, sig_dims):
    data = np.zeros((3, 4, 5, 6), "float32")
    with pytest.raises(DataSetError, match="sig_dims"):
        if fmt == "npy":
            path = str(tmp_path / "sd.npy")
            np.save(path, data)
            inline_ctx.load("npy", path=path, sig_dims=sig_dims)
        else:
            inline_ctx.load("memory", data=data, sig_dims=sig_dims)


# -- sync_offset ----------------------------------------------------------------------------------

@pytest.mark.parametrize("sync_offset", [20, 21, 1000, -20, -21, -1000])
def test_sync_offset_out_of_range(inline_ctx, raw20, sync_offset):
    path, _ = raw20
    with pytest.raises(DataSetError,
                       match=rf"{esc(path)}': sync_offset {sync_offset} is out of range: with 20 "
                             r"nav "
                             r"positions and 20 frames in the file it must be > -20 and < 20"):
        load_raw(inline_ctx, path, sync_offset=sync_offset)


@pytest.mark.parametrize("sync_offset", [19, -19, 0, np.int64(3), 2.0])
def test_sync_offset_in_range(inline_ctx, raw20, sync_offset):
    path, _ = raw20
    ds = load_raw(inline_ctx, path, sync_offset=sync_offset)
    assert ds.sync_offset == int(sync_offset)
    assert type(ds.sync_offset) is int


def test_sync_offset_range_uses_image_count(inline_ctx, raw20):
    path, _ = raw20
    # 20 frames, nav 10: offsets up to 19 leave frames; -9 leaves one position
    assert load_raw(inline_ctx, path, nav_shape=(10,), sync_offset=19).sync_offset == 19
    with pytest.raises(DataSetError, match=r"must be > -10 and < 20"):
        load_raw(inline_ctx, path, nav_shape=(10,), sync_offset=-10)


@pytest.mark.parametrize("sync_offset", [
    1.5, "3", None, [1],
    True,
])
def test_sync_offset_not_an_integer(inline_ctx, raw20, sync_offset):
    path, _ = raw20
    with pytest.raises(DataSetError, match=rf"{esc(path)}': sync_offset: expected an integer"):
        load_raw(inline_ctx, path, sync_offset=sync_offset)


# -- npy in Fortran order -----------------------------------------------------------------------

@pytest.mark.parametrize("shape", [(4, 5, 6, 7), (10, 3), (2, 3, 4)])
def test_npy_fortran_order(inline_ctx, tmp_path, shape):
    path = str(tmp_path / "fortran.npy")
    np.save(path, np.asfortranarray(np.arange(np.prod(shape), dtype="float32").reshape(shape)))
    with open(path, "rb") as f:
        np.lib.format.read_magic(f)
        assert np.lib.format.read_array_header_1_0(f)[1] is True
    with pytest.raises(DataSetError, match=r"fortran\.npy' is stored in Fortran order.*C-order"):
        inline_ctx.load("npy", path=path)


# -- ROI ------------------------------------------------------------------------------------------

@pytest.mark.parametrize("roi, pattern", [
    (np.ones((3, 3), bool), r"nav shape \(4, 5\) or flat with 20 entries, got shape \(3, 3\)"),
    (np.ones((5, 4), bool), r"got shape \(5, 4\)"),
    (np.ones(21, bool), r"got shape \(21,\)"),
    (np.full((4, 5), 3), r"got dtype int"),  # 0/1 numbers would be a ROI, as in LiberTEM
    (np.ones((1, 4, 5), bool), r"got shape \(1, 4, 5\)"),
])
def test_roi_wrong_shape(inline_ctx, raw20, roi, pattern):
    path, _ = raw20
    ds = load_raw(inline_ctx, path, nav_shape=(4, 5))
    with pytest.raises(ROIError, match=pattern):
        inline_ctx.run_udf(dataset=ds, udf=FrameSum(), roi=roi)
    # the context stays usable
    good = np.zeros((4, 5), bool)
    good[1, 2] = True
    res = inline_ctx.run_udf(dataset=ds, udf=FrameSum(), roi=good)
    np.testing.assert_array_equal(res["s"].valid_mask, good)


# -- missing / unknown parameters, unknown filetype ---------------------------------------------

@pytest.mark.parametrize("missing", [("dtype",), ("nav_shape",), ("sig_shape",),
                                     ("dtype", "sig_shape"), ("dtype", "nav_shape", "sig_shape")])
def test_raw_missing_parameters(inline_ctx, raw20, missing):
    path, _ = raw20
    params = dict(path=path, dtype=">f4", nav_shape=(20,), sig_shape=(3, 4))
    for m in missing:
        del params[m]
    pattern = rf"scan20\.raw': {', '.join(missing)} missing.*needs all four"
    with pytest.raises(DataSetError, match=pattern):
        inline_ctx.load("raw", **params)


def test_raw_missing_parameters_names_file(inline_ctx, raw20):
    path, _ = raw20
    with pytest.raises(DataSetError, match=esc(path)):
        inline_ctx.load("raw", path=path, nav_shape=(20,), sig_shape=(3, 4))


def test_raw_missing_path_parameter(inline_ctx):
    with pytest.raises(DataSetError, match="raw format: path missing"):
        inline_ctx.load("raw", dtype="uint8", nav_shape=(2,), sig_shape=(2,))


@pytest.mark.parametrize("filetype", ["hdf9", "tif", "", None])
def test_unknown_filetype(inline_ctx, raw20, filetype):
    path, _ = raw20
    # the list grows with the registry; it is sorted, with 'auto' last
    pattern = (r"filetype: expected one of \[.*'memory', .*'npy', 'raw'.*'auto'\], "
               rf"got {re.escape(repr(filetype))}")
    with pytest.raises(DataSetError, match=pattern):
        inline_ctx.load(filetype, path=path)


@pytest.mark.parametrize("fmt, typo", [("raw", "nav_shpe"), ("raw", "sigshape"),
                                       ("npy", "navshape"), ("memory", "tile_shape"),
                                       ("raw", "roi")])
def test_unknown_load_parameter(inline_ctx, raw20, npy_path, fmt, typo):
    path, data = raw20
    if fmt == "raw":
        params = dict(path=path, dtype=">f4", nav_shape=(20,), sig_shape=(3, 4))
    elif fmt == "npy":
        params = dict(path=npy_path)
    else:
        params = dict(data=data)
    params[typo] = (20,)
    with pytest.raises(DataSetError, match=rf"{fmt} format: unknown parameter '{typo}'"
                                           r".*accepted parameters: \[") as info:
        inline_ctx.load(fmt, **params)
    assert "sync_offset" in str(info.value)  # lists what is accepted
