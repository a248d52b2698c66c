"""Tests of cutting partitions into tiles: coverage, zero-copy views, decoding, kernels."""

import os
import tempfile
from math import prod

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from udfkit import Context
from udfkit.common import Shape, Slice
from udfkit.io import _decode
from udfkit.io.aligned import aligned_empty
from udfkit.io.tiles import row_layout
from udfkit.io.tiling import TilingScheme
from udfkit.testing.profiles import examples

NATIVE = "<" if np.little_endian else ">"
SWAPPED = ">" if np.little_endian else "<"


def sample_values(dtype, shape, seed=0):
    """Values that survive a cast to ``dtype`` and use every byte of it."""
    dtype = np.dtype(dtype)
    rng = np.random.default_rng(seed)
    n = prod(shape)
    if dtype.kind == "b":
        vals = rng.integers(0, 2, n).astype(bool)
    elif dtype.kind == "u":
        hi = min(np.iinfo(dtype).max, 2**53)
        vals = rng.integers(0, hi, n, dtype=np.uint64, endpoint=True)
    elif dtype.kind == "i":
        info = np.iinfo(dtype)
        vals = rng.integers(max(info.min, -2**53), min(info.max, 2**53), n, endpoint=True)
    elif dtype.kind == "f":
        vals = rng.normal(scale=1000.0, size=n)
    else:
        vals = rng.normal(scale=100.0, size=n) + 1j * rng.normal(scale=100.0, size=n)
    return vals.astype(dtype).reshape(shape)


def load_raw(ctx, tmp_path, frames, nav_shape, dtype, **kw):
    path = os.path.join(str(tmp_path), "tiles.raw")
    np.asarray(frames).astype(dtype).tofile(path)
    return ctx.load("raw", path=path, dtype=dtype, nav_shape=nav_shape,
                    sig_shape=np.asarray(frames).shape[1:], **kw)


# -- coverage: property test over formats, shapes, dtypes, schemes, ROIs, sync offsets --------

_TMP = tempfile.TemporaryDirectory(prefix="udfkit-tiles-")
_CTX = Context.make_with("inline")


@st.composite
def tile_cases(draw):
    fmt = draw(st.sampled_from(["raw", "memory"]))
    nav = tuple(draw(st.lists(st.integers(1, 5), min_size=1, max_size=2)))
    sig = tuple(draw(st.lists(st.integers(1, 6), min_size=1, max_size=3)))
    nav_size = prod(nav)
    extra = draw(st.integers(0, 3))
    image_count = nav_size + extra
    sync_offset = draw(st.integers(-nav_size + 1, image_count - 1))
    stored = draw(st.sampled_from(["uint8", "<u2", ">u2", ">i4", "<f4", ">f4", ">f8", "<i8",
                                   "float16"]))
    dest = draw(st.sampled_from(["native", "float32", "float64"]))
    tile_sig = tuple(draw(st.integers(1, s + 1)) for s in sig)
    depth = draw(st.integers(1, nav_size + 2))
    use_roi = draw(st.booleans())
    roi = (np.array(draw(st.lists(st.booleans(), min_size=nav_size, max_size=nav_size)))
           if use_roi else None)
    num_partitions = draw(st.integers(1, 4))
    return dict(fmt=fmt, nav=nav, sig=sig, image_count=image_count, sync_offset=sync_offset,
                stored=stored, dest=dest, tile_sig=tile_sig, depth=depth, roi=roi,
                num_partitions=num_partitions)


@settings(max_examples=examples(80), deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(tile_cases())
def test_tiles_cover_processed_frames_once(io_helpers, case):
    sig, nav = case["sig"], case["nav"]
    nav_size = prod(nav)
    stored = np.dtype(case["stored"])
    frames = sample_values(stored, (case["image_count"],) + sig)
    if case["fmt"] == "raw":
        path = os.path.join(_TMP.name, "prop.raw")
        frames.tofile(path)
        ds = _CTX.load("raw", path=path, dtype=stored, nav_shape=nav, sig_shape=sig,
                       sync_offset=case["sync_offset"], num_partitions=case["num_partitions"])
    else:
        ds = _CTX.load("memory", data=frames, sig_dims=len(sig), nav_shape=nav,
                       sync_offset=case["sync_offset"], num_partitions=case["num_partitions"])
    dest = ds.native_dtype if case["dest"] == "native" else np.dtype(case["dest"])
    scheme = TilingScheme.make(sig, case["tile_sig"], case["depth"], "tile")

    def check_tile(p, t):
        fi = np.asarray(t.frame_index)
        assert t.data.flags.writeable is False
        assert 1 <= fi.size <= case["depth"]
        assert np.all(np.diff(fi) > 0)
        sl = scheme[t.scheme_idx]
        assert t.tile_slice.origin == (int(fi[0]),) + sl.origin
        assert t.tile_slice.shape == Shape((fi.size,) + sl.shape.to_tuple(), sig_dims=len(sig))
        proi = None if case["roi"] is None else case["roi"][p.start:p.stop]
        sel = p.selected_positions(proi) + p.start
        assert t.processed_start == int(np.searchsorted(sel, fi[0]))
        np.testing.assert_array_equal(sel[t.processed_start:t.processed_start + fi.size], fi)
        want_view = dest == stored and stored.isnative and fi[-1] - fi[0] == fi.size - 1
        if case["fmt"] == "raw":
            is_view = io_helpers.is_file_view(t.data)
        else:
            is_view = np.shares_memory(t.data, frames)
        assert is_view == want_view

    out, hits = io_helpers.read_all(ds, dest, scheme, case["roi"], check_tile=check_tile)
    exp, processed = io_helpers.expected_frames(frames, nav_size, case["sync_offset"], case["roi"])
    assert np.all(hits[processed] == 1)
    assert np.all(hits[~processed] == 0)
    np.testing.assert_array_equal(out[processed], exp[processed].astype(dest))


@pytest.mark.parametrize("fmt", ["raw", "memory"])
@pytest.mark.parametrize("tile_sig, depth", [((8, 8), 3), ((3, 5), 2), ((1, 8), 7), ((8, 3), 100)])
def test_tiles_cover_raw_and_memory(inline_ctx, tmp_path, io_helpers, fmt, tile_sig, depth):
    frames = sample_values("uint16", (24, 8, 8))
    if fmt == "raw":
        ds = load_raw(inline_ctx, tmp_path, frames, (4, 6), "uint16", num_partitions=3)
    else:
        ds = inline_ctx.load("memory", data=frames.reshape(4, 6, 8, 8), num_partitions=3)
    scheme = TilingScheme.make((8, 8), tile_sig, depth, "tile")
    for dest in ["uint16", "float32"]:
        out, hits = io_helpers.read_all(ds, dest, scheme)
        assert np.all(hits == 1)
        np.testing.assert_array_equal(out, frames.astype(dest))


# -- zero-copy exactly when possible ---------------------------------------------------------

@pytest.mark.parametrize(
    "stored, dest, roi_kind, expect_views",
    [
        ("=f4", "=f4", None, "all"),
        ("=u2", "=u2", None, "all"),
        ("uint8", "uint8", None, "all"),
        ("=c8", "=c8", None, "all"),
        ("=f4", "=f4", "contiguous", "all"),
        ("=f4", "=f4", "gap", "some"),  # only blocks with a gap are copied
        ("=f4", "float64", None, "none"),
        ("=u2", "float32", None, "none"),
        ("=i4", "=u4", None, "none"),
        (SWAPPED + "f4", NATIVE + "f4", None, "none"),
        (SWAPPED + "f4", SWAPPED + "f4", None, "none"),  # equal, but not native
        (SWAPPED + "u2", NATIVE + "u2", None, "none"),
    ],
)
def test_zero_copy_raw(inline_ctx, tmp_path, io_helpers, stored, dest, roi_kind, expect_views):
    frames = sample_values(stored, (16, 6, 10))
    ds = load_raw(inline_ctx, tmp_path, frames, (16,), stored, num_partitions=2)
    roi = None
    if roi_kind == "contiguous":
        roi = np.zeros(16, bool)
        roi[2:7] = True
    elif roi_kind == "gap":
        roi = np.ones(16, bool)
        roi[[1, 10]] = False
    scheme = TilingScheme.make((6, 10), (4, 10), 4, "tile")
    views = []

    def check_tile(p, t):
        views.append(io_helpers.is_file_view(t.data))
        if not views[-1]:
            assert not np.shares_memory(t.data, frames)

    out, hits = io_helpers.read_all(ds, dest, scheme, roi, check_tile=check_tile)
    exp, processed = io_helpers.expected_frames(frames, 16, 0, roi)
    np.testing.assert_array_equal(out[processed], exp[processed].astype(dest))
    if expect_views == "all":
        assert all(views)
    elif expect_views == "none":
        assert not any(views)
    else:
        # partition 0: [0,2,3,4] gap, [5,6,7] view; partition 1: [8,9,11,12] gap, [13,14,15] view
        assert views == [False, False, True, True] * 2


@pytest.mark.parametrize("sync_offset", [-3, 0, 3])
def test_zero_copy_with_missing_frames(inline_ctx, tmp_path, io_helpers, sync_offset):
    """Missing frames at the start or end are not a gap: tiles stay views."""
    frames = sample_values("float32", (12, 4, 4))
    ds = load_raw(inline_ctx, tmp_path, frames, (12,), "float32", sync_offset=sync_offset,
                  num_partitions=2)
    views = []
    def check(p, t):
        views.append(io_helpers.is_file_view(t.data))

    out, hits = io_helpers.read_all(ds, "float32", TilingScheme.make((4, 4), (4, 4), 4, "tile"),
                                    check_tile=check)
    assert views and all(views)
    exp, processed = io_helpers.expected_frames(frames, 12, sync_offset)
    assert processed.sum() == 12 - abs(sync_offset)
    np.testing.assert_array_equal(out[processed], exp[processed])
    assert np.all(hits[~processed] == 0)


@pytest.mark.parametrize(
    "dtype, dest, shares",
    [("uint16", "uint16", True), ("float32", "float32", True), ("uint16", "float32", False),
     (SWAPPED + "f4", NATIVE + "f4", False), ("float32", "float64", False)],
)
def test_zero_copy_memory(inline_ctx, dtype, dest, shares):
    data = sample_values(dtype, (3, 4, 5, 6))
    ds = inline_ctx.load("memory", data=data, num_partitions=2)
    scheme = TilingScheme.make((5, 6), (2, 6), 2, "tile")
    n = 0
    for p in ds.get_partitions():
        for t in p.get_tiles(scheme, dest):
            assert np.shares_memory(t.data, data) == shares
            expected = data.reshape(12, 5, 6)[(t.frame_index,) + scheme[t.scheme_idx].get()]
            np.testing.assert_array_equal(t.data, expected.astype(dest))
            n += 1
    assert n == 2 * 3 * 3  # 2 partitions * 3 blocks of depth 2 * 3 signal slices


def test_decoded_tiles_reuse_one_aligned_buffer(inline_ctx, tmp_path):
    frames = sample_values("uint16", (10, 8, 8))
    ds = load_raw(inline_ctx, tmp_path, frames, (10,), "uint16", num_partitions=1)
    scheme = TilingScheme.make((8, 8), (3, 8), 2, "tile")
    (p,) = ds.get_partitions()
    addresses = set()
    for t in p.get_tiles(scheme, "float32"):
        addr = t.data.__array_interface__["data"][0]
        assert addr % 64 == 0
        addresses.add(addr)
    assert len(addresses) == 1


# -- decoding byte-swapped and converted data ------------------------------------------------

@pytest.mark.parametrize("stored", [">u2", ">i4", ">f4", ">f8", ">i8", ">u8", ">i2", ">u4"])
@pytest.mark.parametrize("dest", ["float32", "float64", "native"])
def test_byte_swapped_decode(inline_ctx, tmp_path, io_helpers, stored, dest):
    frames = sample_values(stored, (9, 5, 7), seed=3)
    ds = load_raw(inline_ctx, tmp_path, frames, (3, 3), stored, num_partitions=2)
    dest = ds.native_dtype if dest == "native" else np.dtype(dest)
    assert ds.native_dtype == np.dtype(stored).newbyteorder("=")
    roi = np.array([1, 1, 0, 1, 1, 1, 0, 1, 1], bool)
    scheme = TilingScheme.make((5, 7), (2, 3), 3, "tile")  # ragged sub-rows
    for r in (None, roi):
        out, hits = io_helpers.read_all(ds, dest, scheme, r)
        exp, processed = io_helpers.expected_frames(frames, 9, 0, r)
        assert np.all(hits[processed] == 1) and np.all(hits[~processed] == 0)
        expected = exp[processed].astype(dest)
        np.testing.assert_array_equal(out[processed], expected)
        assert out.dtype.isnative


def test_byte_swapped_every_byte_position(inline_ctx, tmp_path, io_helpers):
    vals = np.array([0x0102030405060708, 0x1122334455667788, 0xF0E0D0C0B0A09080, 1, 2**63],
                    dtype=np.uint64)
    frames = np.tile(vals, (4, 1)).reshape(4, 5)
    ds = load_raw(inline_ctx, tmp_path, frames, (4,), ">u8")
    out, _ = io_helpers.read_all(ds, "uint64", TilingScheme.make((5,), (2,), 2, "tile"))
    np.testing.assert_array_equal(out, frames)


@pytest.mark.parametrize("stored", ["<f2", ">f2"])
@pytest.mark.parametrize("dest", ["float32", "float64", "native"])
def test_float16_numpy_fallback(inline_ctx, tmp_path, io_helpers, stored, dest):
    frames = sample_values(stored, (6, 4, 5))
    ds = load_raw(inline_ctx, tmp_path, frames, (6,), stored, num_partitions=2)
    dest = ds.native_dtype if dest == "native" else np.dtype(dest)
    roi = np.array([1, 0, 1, 1, 1, 1], bool)
    out, hits = io_helpers.read_all(ds, dest, TilingScheme.make((4, 5), (3, 2), 2, "tile"), roi)
    exp, processed = io_helpers.expected_frames(frames, 6, 0, roi)
    np.testing.assert_array_equal(out[processed], exp[processed].astype(dest))
    assert np.all(hits[processed] == 1)


@pytest.mark.parametrize("stored, dest", [(">c8", "complex64"), (">c8", "complex128"),
                                          (">c16", "complex128"), ("<c8", "complex128"),
                                          (">f4", "complex64"), ("<i2", "complex64")])
def test_complex_decode(inline_ctx, tmp_path, io_helpers, stored, dest):
    frames = sample_values(stored, (5, 3, 4))
    ds = load_raw(inline_ctx, tmp_path, frames, (5,), stored)
    out, hits = io_helpers.read_all(ds, dest, TilingScheme.make((3, 4), (2, 4), 2, "tile"))
    np.testing.assert_array_equal(out, frames.astype(dest))
    assert np.all(hits == 1)


@pytest.mark.parametrize("stored, dest", [("bool", "float32"), ("bool", "bool"),
                                          ("int8", "float32"), ("uint8", "float64"),
                                          ("<i2", "int64")])
def test_other_conversions(inline_ctx, tmp_path, io_helpers, stored, dest):
    frames = sample_values(stored, (7, 3, 3))
    ds = load_raw(inline_ctx, tmp_path, frames, (7,), stored, num_partitions=2)
    out, hits = io_helpers.read_all(ds, dest, TilingScheme.make((3, 3), (2, 2), 3, "tile"))
    np.testing.assert_array_equal(out, frames.astype(dest))
    assert np.all(hits == 1)


def test_non_native_destination(inline_ctx, tmp_path, io_helpers):
    frames = sample_values("<f4", (4, 3, 3))
    ds = load_raw(inline_ctx, tmp_path, frames, (4,), "<f4")
    dest = np.dtype(SWAPPED + "f4")
    out, _ = io_helpers.read_all(ds, dest, TilingScheme.make((3, 3), (3, 3), 2, "tile"))
    assert out.dtype == dest
    np.testing.assert_array_equal(out.astype("float32"), frames)


# -- read-only tiles ---------------------------------------------------------------------------

@pytest.mark.parametrize("fmt", ["raw", "memory"])
@pytest.mark.parametrize("dest", ["uint16", "float32"])
def test_tiles_are_read_only(inline_ctx, tmp_path, fmt, dest):
    frames = sample_values("uint16", (6, 4, 4))
    if fmt == "raw":
        ds = load_raw(inline_ctx, tmp_path, frames, (6,), "uint16")
    else:
        ds = inline_ctx.load("memory", data=frames.reshape(2, 3, 4, 4))
    scheme = TilingScheme.make((4, 4), (2, 4), 2, "tile")
    n = 0
    for p in ds.get_partitions():
        for t in p.get_tiles(scheme, dest):
            assert not t.data.flags.writeable
            with pytest.raises(ValueError, match="read-only"):
                t.data[...] = 0
            n += 1
    assert n == 6
    if fmt == "memory":
        np.testing.assert_array_equal(frames, sample_values("uint16", (6, 4, 4)))


# -- partitions without frames; partition ROI -------------------------------------------------

def test_all_false_roi_yields_nothing(inline_ctx):
    ds = inline_ctx.load("memory", data=np.ones((4, 3, 3)), num_partitions=2)
    scheme = TilingScheme.make((3, 3), (3, 3), 2, "tile")
    for p in ds.get_partitions():
        assert list(p.get_tiles(scheme, "float32", np.zeros(p.num_frames, bool))) == []


def test_partition_without_valid_frames_yields_nothing(inline_ctx, tmp_path):
    frames = sample_values("float32", (8, 2, 2))
    ds = load_raw(inline_ctx, tmp_path, frames, (8,), "float32", sync_offset=5, num_partitions=2)
    scheme = TilingScheme.make((2, 2), (2, 2), 2, "tile")
    p0, p1 = ds.get_partitions()
    assert p1.valid_range() == (0, 0)
    assert list(p1.get_tiles(scheme, "float32")) == []
    tiles = [t.frame_index.tolist() for t in p0.get_tiles(scheme, "float32")]
    assert tiles == [[0, 1], [2]]


def test_partition_roi_of_wrong_length(inline_ctx):
    ds = inline_ctx.load("memory", data=np.ones((4, 3, 3)), num_partitions=2)
    p = ds.get_partitions()[0]
    with pytest.raises(ValueError, match="partition ROI must have 2 entries"):
        list(p.get_tiles(TilingScheme.make((3, 3), (3, 3), 1, "tile"), "float32", np.ones(4, bool)))


def test_tile_metadata_example(inline_ctx):
    data = np.arange(10 * 2 * 2, dtype="float32").reshape(10, 2, 2)
    ds = inline_ctx.load("memory", data=data, num_partitions=2)
    scheme = TilingScheme.make((2, 2), (1, 2), 2, "tile")
    p = ds.get_partitions()[1]
    assert (p.start, p.stop) == (5, 10)
    roi = np.array([1, 0, 1, 1, 1], bool)
    tiles = list(p.get_tiles(scheme, "float32", roi))
    got = [(t.frame_index.tolist(), t.scheme_idx, t.processed_start, t.tile_slice.origin)
           for t in tiles]
    assert got == [([5, 7], 0, 0, (5, 0, 0)), ([5, 7], 1, 0, (5, 1, 0)),
                   ([8, 9], 0, 2, (8, 0, 0)), ([8, 9], 1, 2, (8, 1, 0))]
    np.testing.assert_array_equal(tiles[1].data, data[[5, 7], 1:2, :])


# -- row_layout --------------------------------------------------------------------------------

def sl(origin, shape):
    return Slice(tuple(origin), Shape(tuple(shape), sig_dims=len(shape)))


@pytest.mark.parametrize(
    "sig, origin, ext, offsets, row_len",
    [
        ((4, 8), (0, 0), (4, 8), [0], 32),  # whole frame: one run
        ((4, 8), (1, 0), (2, 8), [8], 16),  # whole rows merge
        ((4, 8), (1, 2), (2, 3), [10, 18], 3),
        ((4, 8), (3, 7), (1, 1), [31], 1),
        ((100,), (10,), (10,), [10], 10),
        ((100,), (0,), (100,), [0], 100),
        ((4, 8, 8), (1, 0, 0), (2, 8, 8), [64], 128),
        ((4, 8, 8), (1, 2, 0), (2, 2, 8), [80, 144], 16),
        ((4, 8, 8), (0, 1, 3), (2, 2, 4), [11, 19, 75, 83], 4),
        ((4, 8, 8), (0, 0, 3), (1, 8, 4), [3, 11, 19, 27, 35, 43, 51, 59], 4),
    ],
)
def test_row_layout_cases(sig, origin, ext, offsets, row_len):
    offs, rl = row_layout(sig, sl(origin, ext))
    assert rl == row_len
    assert offs.tolist() == offsets
    assert offs.dtype == np.int64


@st.composite
def frame_and_slice(draw):
    sig = tuple(draw(st.lists(st.integers(1, 6), min_size=1, max_size=3)))
    origin, ext = [], []
    for s in sig:
        o = draw(st.integers(0, s - 1))
        origin.append(o)
        ext.append(draw(st.integers(1, s - o)))
    return sig, sl(origin, ext)


@settings(max_examples=examples(150), deadline=None)
@given(frame_and_slice())
def test_row_layout_matches_numpy(case):
    sig, s = case
    offs, rl = row_layout(sig, s)
    idx = (offs[:, None] + np.arange(rl)[None, :]).reshape(-1)
    expected = np.arange(prod(sig)).reshape(sig)[s.get()].reshape(-1)
    np.testing.assert_array_equal(idx, expected)


# -- aligned_empty ------------------------------------------------------------------------------

@pytest.mark.parametrize("n", [0, 1, 7, 64, 1000, 12345])
@pytest.mark.parametrize("dtype", ["uint8", "float32", "float64", "complex128", ">u2", "float16"])
def test_aligned_empty(n, dtype):
    a = aligned_empty(n, dtype)
    assert a.shape == (n,)
    assert a.dtype == np.dtype(dtype)
    if n:  # numpy keeps the base pointer for empty slices; alignment of no data is moot
        assert a.ctypes.data % 64 == 0
    assert a.flags.c_contiguous and a.flags.writeable
    a[...] = 1  # the whole extent is usable
    assert np.all(a == 1)


def test_aligned_empty_many():
    for _ in range(50):
        assert aligned_empty(17, "float32").ctypes.data % 64 == 0


# -- the numba kernels --------------------------------------------------------------------------

def gather_ref(src, frame_offsets, row_offsets, row_len):
    idx = (frame_offsets[:, None, None] + row_offsets[None, :, None]
           + np.arange(row_len)[None, None, :]).reshape(-1)
    return src[idx]


FRAME_OFFSETS = np.array([0, 40, 120], dtype=np.int64)
ROW_OFFSETS = np.array([3, 11, 19, 30], dtype=np.int64)
ROW_LEN = 5


@pytest.mark.parametrize(
    "stored, dest",
    [("uint8", "float32"), ("uint16", "float32"), ("int16", "float64"), ("uint32", "float64"),
     ("int32", "float32"), ("int64", "float64"), ("uint64", "float64"), ("float32", "float32"),
     ("float32", "float64"), ("float64", "float32"), ("uint16", "uint16"), ("uint8", "int32"),
     ("int8", "float32"), ("bool", "float32"), ("complex64", "complex64"),
     ("complex64", "complex128"), ("float32", "complex64"), ("uint16", "int64")],
)
def test_gather_rows(stored, dest):
    src = sample_values(stored, (160,), seed=1)
    assert _decode.kernel_supports(np.dtype(stored), np.dtype(dest))
    dst = np.full(len(FRAME_OFFSETS) * len(ROW_OFFSETS) * ROW_LEN, 7, dtype=dest)
    _decode.gather_rows(src, FRAME_OFFSETS, ROW_OFFSETS, ROW_LEN, dst)
    expected = gather_ref(src, FRAME_OFFSETS, ROW_OFFSETS, ROW_LEN).astype(dest)
    np.testing.assert_array_equal(dst, expected)


@pytest.mark.parametrize("stored", [">u2", ">i2", ">u4", ">i4", ">f4", ">u8", ">i8", ">f8"])
@pytest.mark.parametrize("dest", ["float32", "float64", "native"])
def test_gather_rows_swapped(stored, dest):
    src = sample_values(stored, (160,), seed=2)
    native = np.dtype(stored).newbyteorder("=")
    dest = native if dest == "native" else np.dtype(dest)
    assert _decode.kernel_supports(np.dtype(stored), dest)
    dst = np.zeros(len(FRAME_OFFSETS) * len(ROW_OFFSETS) * ROW_LEN, dtype=dest)
    scratch = np.zeros(ROW_LEN, dtype=native)
    _decode.gather_rows_swapped(src, FRAME_OFFSETS, ROW_OFFSETS, ROW_LEN, dst, scratch)
    expected = gather_ref(src, FRAME_OFFSETS, ROW_OFFSETS, ROW_LEN).astype(dest)
    np.testing.assert_array_equal(dst, expected)


def test_gather_rows_swapped_single_rows():
    src = (np.arange(30) - 15).astype(">i4")
    assert not src.dtype.isnative or np.little_endian is False
    dst = np.zeros(30, dtype="float64")
    _decode.gather_rows_swapped(src, np.array([0, 10, 20]), np.array([0]), 10, dst,
                                np.zeros(10, "=i4"))
    np.testing.assert_array_equal(dst, np.arange(30) - 15)


@pytest.mark.parametrize(
    "stored, dest, supported",
    [
        ("uint16", "float32", True),
        (">u2", "float32", True),
        (">f8", "float64", True),
        (">i8", "int64", True),
        ("uint8", "float32", True),
        ("complex64", "complex128", True),
        ("complex64", "float32", False),  # drops the imaginary part: numpy decides
        ("float16", "float32", False),
        ("uint16", "float16", False),
        (">f2", "float32", False),
        (">c8", "complex64", False),  # byte-swapped complex
        ("uint16", ">f4", False),  # non-native destination
        ("U4", "float32", False),
    ],
)
def test_kernel_supports(stored, dest, supported):
    stored = np.dtype(stored.replace(">", SWAPPED) if stored.startswith(">") else stored)
    dest = np.dtype(dest.replace(">", SWAPPED) if dest.startswith(">") else dest)
    assert _decode.kernel_supports(stored, dest) is supported
