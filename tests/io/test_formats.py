"""Format-specific tests of raw, npy and memory ("auto" detection, headers, overrides, I/O
backend choice, partitions, files that change); what every format must do is checked by
the DataSetTests suite in tests/io/formats."""

import os
import pickle
from math import prod

import numpy as np
import pytest

from udfkit.common import Shape
from udfkit.errors import DataSetError, DataSetFileNotFoundError
from udfkit.io.backends.mmap import MMapBackend
from udfkit.io.tiling import Negotiator, TilingRequest, TilingScheme


def values(dtype, shape, seed=0):
    dtype = np.dtype(dtype)
    rng = np.random.default_rng(seed)
    if dtype.kind == "c":
        v = rng.normal(size=shape) + 1j * rng.normal(size=shape)
    elif dtype.kind == "f":
        v = rng.normal(scale=100, size=shape)
    else:
        info = np.iinfo(dtype)
        v = rng.integers(max(info.min, -1000), min(info.max, 100000), size=shape)
    return v.astype(dtype)


def assert_reads_as(io_helpers, ds, frames, dest=None, scheme=None):
    """All frames of ``ds`` (no ROI, no sync offset) equal ``frames`` (image_count, *sig)."""
    n = ds.shape.nav.size
    out, hits = io_helpers.read_all(ds, dest, scheme)
    assert np.all(hits == 1)
    dest = ds.native_dtype if dest is None else np.dtype(dest)
    np.testing.assert_array_equal(out, np.asarray(frames)[:n].astype(dest))


# -- raw ----------------------------------------------------------------------------------------

# shapes, dtypes, byte order, tiles, sync_offset, ROI, backends, pickling: DataSetTests
# (tests/io/formats/test_raw.py); here what only raw has

@pytest.mark.parametrize("nav_shape, sig_shape", [((7,), (10,)), ((2, 2, 3), (2, 3, 4))])
def test_raw_metadata(inline_ctx, write_raw, io_helpers, nav_shape, sig_shape):
    data = values(">u2", nav_shape + sig_shape)
    path = write_raw(data)
    ds = inline_ctx.load("raw", path=path, dtype=">u2", nav_shape=nav_shape, sig_shape=sig_shape,
                         num_partitions=2)
    assert ds.shape == Shape(nav_shape + sig_shape, sig_dims=len(sig_shape))
    assert ds.meta.metadata["path"] == path
    assert ds.meta.metadata["file_bytes"] == data.nbytes
    assert ds.meta.metadata["header_bytes"] == 0
    assert_reads_as(io_helpers, ds, data.reshape((-1,) + sig_shape), dest="float64")


def test_raw_accepts_pathlike_and_list_shapes(inline_ctx, tmp_path, io_helpers):
    data = values("uint16", (6, 4, 4))
    path = tmp_path / "p.raw"
    data.tofile(path)
    ds = inline_ctx.load("raw", path=path, dtype=np.uint16, nav_shape=[2, 3], sig_shape=[4, 4])
    assert ds.shape == (2, 3, 4, 4)
    assert_reads_as(io_helpers, ds, data)


def test_raw_file_larger_than_nav(inline_ctx, write_raw, io_helpers):
    """A file with more frames than nav_shape needs is read up to nav_shape."""
    data = values("float32", (10, 3, 3))
    ds = inline_ctx.load("raw", path=write_raw(data), dtype="float32", nav_shape=(2, 3),
                         sig_shape=(3, 3))
    assert ds.image_count == 10
    assert ds.get_valid_mask() is None
    assert_reads_as(io_helpers, ds, data)


# -- npy ----------------------------------------------------------------------------------------

@pytest.mark.parametrize(
    "shape, dtype, nav, sig",
    [
        ((10, 8), "float32", (10,), (8,)),
        ((3, 4, 5, 6), "uint16", (3, 4), (5, 6)),
        ((7, 5, 6), "<i4", (7,), (5, 6)),
        ((2, 3, 4, 5, 6), ">f4", (2, 3, 4), (5, 6)),
        ((4, 4, 3, 3), ">u2", (4, 4), (3, 3)),
        ((3, 2, 4, 4), "complex64", (3, 2), (4, 4)),
    ],
)
def test_npy_from_header(inline_ctx, tmp_path, io_helpers, shape, dtype, nav, sig):
    data = values(dtype, shape)
    path = str(tmp_path / "a.npy")
    np.save(path, data)
    ds = inline_ctx.load("npy", path=path)
    assert ds.shape == Shape(nav + sig, sig_dims=len(sig))
    assert ds.dtype == np.dtype(dtype) and ds.dtype.str == data.dtype.str
    assert ds.meta.metadata["npy_shape"] == shape
    assert ds.meta.metadata["header_bytes"] + data.nbytes == os.path.getsize(path)
    assert_reads_as(io_helpers, ds, data.reshape((-1,) + sig))


@pytest.mark.parametrize(
    "kwargs, shape",
    [
        (dict(nav_shape=(12,)), (12, 5, 6)),
        (dict(nav_shape=(2, 6)), (2, 6, 5, 6)),
        (dict(nav_shape=(2, 2, 3)), (2, 2, 3, 5, 6)),
        # leading axes that hold the frames are kept
        (dict(sig_shape=(30,)), (3, 4, 30)),
        (dict(sig_shape=(4, 5, 6)), (3, 4, 5, 6)),
        (dict(nav_shape=(4, 3), sig_shape=(5, 6)), (4, 3, 5, 6)),
        (dict(nav_shape=(6,), sig_shape=(60,)), (6, 60)),
        (dict(sig_dims=1), (3, 4, 5, 6)),
        (dict(sig_dims=3), (3, 4, 5, 6)),
        (dict(sig_dims=1, nav_shape=(60,)), (60, 6)),
    ],
)
def test_npy_overrides(inline_ctx, tmp_path, io_helpers, kwargs, shape):
    data = values("int16", (3, 4, 5, 6))
    path = str(tmp_path / "o.npy")
    np.save(path, data)
    ds = inline_ctx.load("npy", path=path, **kwargs)
    sig_dims = kwargs.get("sig_dims", len(kwargs.get("sig_shape", (5, 6))))
    assert ds.shape == Shape(shape, sig_dims=sig_dims)
    assert ds.shape.size == data.size
    assert_reads_as(io_helpers, ds, data.reshape((-1,) + shape[len(shape) - sig_dims:]))


@pytest.mark.parametrize("version", [(1, 0), (2, 0), (3, 0)])
def test_npy_header_versions(inline_ctx, tmp_path, io_helpers, version):
    data = values("float32", (3, 4, 5, 6))
    path = str(tmp_path / f"v{version[0]}.npy")
    with open(path, "wb") as f:
        np.lib.format.write_array(f, data, version=version)
    with open(path, "rb") as f:
        assert np.lib.format.read_magic(f) == version
    ds = inline_ctx.load("npy", path=path)
    assert ds.shape == (3, 4, 5, 6)
    assert ds.meta.metadata["header_bytes"] == os.path.getsize(path) - data.nbytes
    assert_reads_as(io_helpers, ds, data.reshape(12, 5, 6))


def test_npy_1d_with_sig_shape(inline_ctx, tmp_path, io_helpers):
    data = values("float64", (20,))
    path = str(tmp_path / "one.npy")
    np.save(path, data)
    ds = inline_ctx.load("npy", path=path, sig_shape=(5,))
    assert ds.shape == Shape((4, 5), sig_dims=1)
    assert_reads_as(io_helpers, ds, data.reshape(4, 5))


def test_npy_truncated_allow_partial(inline_ctx, tmp_path, io_helpers):
    data = values("float32", (6, 4, 4))
    path = str(tmp_path / "t.npy")
    np.save(path, data)
    os.truncate(path, os.path.getsize(path) - 30)  # last frame incomplete
    ds = inline_ctx.load("npy", path=path, allow_partial=True)
    assert ds.image_count == 5
    np.testing.assert_array_equal(ds.get_valid_mask(), [True] * 5 + [False])
    out, hits = io_helpers.read_all(ds)
    assert np.all(hits[:5] == 1) and np.all(hits[5] == 0)
    np.testing.assert_array_equal(out[:5], data[:5])


# -- memory -------------------------------------------------------------------------------------

@pytest.mark.parametrize(
    "shape, kwargs, ds_shape, sig_dims",
    [
        ((4, 6, 8, 8), {}, (4, 6, 8, 8), 2),
        ((10, 8, 8), {}, (10, 8, 8), 2),
        ((2, 3, 4, 5), dict(sig_dims=1), (2, 3, 4, 5), 1),
        ((4, 6, 8, 8), dict(nav_shape=(8, 3), sig_shape=(4, 4, 4)), (8, 3, 4, 4, 4), 3),
    ],
)
def test_memory_shapes(inline_ctx, io_helpers, shape, kwargs, ds_shape, sig_dims):
    data = values("uint16", shape)
    ds = inline_ctx.load("memory", data=data, **kwargs)
    assert ds.shape == Shape(ds_shape, sig_dims=sig_dims)
    assert ds.dtype == np.uint16
    sig = ds_shape[len(ds_shape) - sig_dims:]
    assert_reads_as(io_helpers, ds, data.reshape((-1,) + sig))


def test_memory_sig_shape_override(inline_ctx, io_helpers):
    data = values("uint16", (4, 6, 8, 8))
    ds = inline_ctx.load("memory", data=data, sig_shape=(64,))
    assert ds.shape.sig == (64,)
    assert ds.shape.sig_dims == 1
    assert ds.shape.nav.size == 24
    assert_reads_as(io_helpers, ds, data.reshape(24, 64))


@pytest.mark.parametrize("num_partitions, expected", [(1, 1), (3, 3), (7, 7), (24, 24), (100, 24)])
def test_memory_num_partitions(inline_ctx, io_helpers, num_partitions, expected):
    data = values("float32", (4, 6, 3, 3))
    ds = inline_ctx.load("memory", data=data, num_partitions=num_partitions)
    assert ds.get_num_partitions() == expected
    parts = ds.get_partitions()
    assert len(parts) == expected
    assert [p.index for p in parts] == list(range(expected))
    assert_reads_as(io_helpers, ds, data.reshape(24, 3, 3))


def test_memory_tileshape(inline_ctx, io_helpers):
    data = values("float32", (4, 6, 16, 16))
    ds = inline_ctx.load("memory", data=data, tileshape=(3, 5, 16), num_partitions=2)
    c = ds.get_tiling_constraints()
    assert c.tileshape == (3, 5, 16)
    neg = Negotiator(copy_size="1M")
    scheme = neg.get_scheme([TilingRequest("tile")], sig_shape=(16, 16), dtype="float32",
                            max_partition_frames=12, constraints=c, zero_copy=True)
    assert scheme.shape == (3, 5, 16)
    assert len(scheme) == 4
    frame_scheme = neg.get_scheme([TilingRequest("frame")], sig_shape=(16, 16), dtype="float32",
                                  max_partition_frames=12, constraints=c)
    assert frame_scheme.shape == (3, 16, 16)
    assert_reads_as(io_helpers, ds, data.reshape(24, 16, 16), scheme=scheme)


def test_memory_without_tileshape_has_no_forced_tileshape(inline_ctx):
    ds = inline_ctx.load("memory", data=np.zeros((4, 8, 8)))
    assert ds.get_tiling_constraints().tileshape is None
    assert ds.get_tiling_constraints().base_shape == (1, 8)


@pytest.mark.parametrize("tileshape", [(2, 4), (2, 4, 4, 4), (0, 4, 4), (2, -1, 4)])
def test_memory_bad_tileshape(inline_ctx, tileshape):
    with pytest.raises(DataSetError, match="tileshape"):
        inline_ctx.load("memory", data=np.zeros((4, 8, 8)), tileshape=tileshape)


def test_memory_non_contiguous_data(inline_ctx, io_helpers):
    base = values("float32", (8, 6, 5))
    data = base.transpose(2, 0, 1)[:, :, ::2]  # (5, 8, 3), not contiguous
    assert not data.flags.c_contiguous
    ds = inline_ctx.load("memory", data=data, sig_dims=2)
    assert ds.shape == (5, 8, 3)
    assert_reads_as(io_helpers, ds, np.ascontiguousarray(data))


def test_memory_does_not_change_user_array(inline_ctx):
    data = values("float32", (4, 4, 4))
    before = data.copy()
    ds = inline_ctx.load("memory", data=data)
    assert data.flags.writeable  # the user's array stays writeable
    scheme = TilingScheme.make((4, 4), (4, 4), 2, "tile")
    for p in ds.get_partitions():
        for t in p.get_tiles(scheme, "float32"):
            assert not t.data.flags.writeable
    np.testing.assert_array_equal(data, before)


@pytest.mark.parametrize("data, match", [([[1, 2], [3, 4]], "expected a numpy array, got list"),
                                         (np.array([["a", "b"]]), "expected a numeric dtype"),
                                         (None, "expected a numpy array, got NoneType")])
def test_memory_bad_data(inline_ctx, data, match):
    with pytest.raises(DataSetError, match=match):
        inline_ctx.load("memory", data=data)


# -- "auto" detection ---------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["scan.npy", "scan.bin", "scan.raw", "noext"])
def test_auto_npy_by_magic(inline_ctx, tmp_path, name):
    data = values("float32", (3, 4, 5, 6))
    path = str(tmp_path / name)
    with open(path, "wb") as f:
        np.save(f, data)
    ds = inline_ctx.load("auto", path=path)
    assert type(ds).__name__ == "NPYDataSet"
    assert ds.shape == (3, 4, 5, 6)


def test_auto_npy_with_overrides(inline_ctx, tmp_path):
    path = str(tmp_path / "a.npy")
    np.save(path, np.zeros((3, 4, 5, 6), "float32"))
    ds = inline_ctx.load("auto", path=path, nav_shape=(12,))
    assert ds.shape == (12, 5, 6)


@pytest.mark.parametrize("ext", [".raw", ".bin", ".dat", ".RAW"])
def test_auto_raw_needs_parameters(inline_ctx, tmp_path, ext):
    path = str(tmp_path / f"scan{ext}")
    np.zeros((4, 8, 8), "uint16").tofile(path)
    with pytest.raises(DataSetError, match=rf"scan\{ext}.*raw file.*dtype, nav_shape, sig_shape"):
        inline_ctx.load("auto", path=path)
    with pytest.raises(DataSetError, match=r"raw needs sig_shape"):
        inline_ctx.load("auto", path=path, dtype="uint16", nav_shape=(4,))
    ds = inline_ctx.load("auto", path=path, dtype="uint16", nav_shape=(4,), sig_shape=(8, 8))
    assert type(ds).__name__ == "RawFileDataSet"
    assert ds.shape == (4, 8, 8)


@pytest.mark.parametrize("name", ["scan.txt", "scan", "scan.xyz"])
def test_auto_unknown_format(inline_ctx, tmp_path, name):
    path = str(tmp_path / name)
    with open(path, "wb") as f:
        f.write(b"hello world, this is not data")
    with pytest.raises(DataSetError, match=rf"cannot detect the format of '.*{name}'.*npy.*raw"):
        inline_ctx.load("auto", path=path)


def test_auto_extension_without_magic(inline_ctx, tmp_path):
    """A .tif that is no TIFF is claimed by its extension; the TIFF reader says what is wrong."""
    path = str(tmp_path / "scan.tif")
    with open(path, "wb") as f:
        f.write(b"hello world, this is not data")
    with pytest.raises(DataSetError, match=r"scan\.tif.*not a TIFF file"):
        inline_ctx.load("auto", path=path)


def test_auto_hdf5_is_named(inline_ctx, tmp_path):
    path = str(tmp_path / "scan.h5")
    with open(path, "wb") as f:
        f.write(b"\x89HDF\r\n\x1a\n" + b"\0" * 100)
    with pytest.raises(DataSetError, match=r"scan\.h5.* not a valid HDF5 file"):
        inline_ctx.load("auto", path=path)


def test_auto_memory(inline_ctx):
    ds = inline_ctx.load("auto", data=np.zeros((3, 4, 5)))
    assert type(ds).__name__ == "MemoryDataSet"
    assert ds.shape == (3, 4, 5)


def test_auto_missing_path(inline_ctx, tmp_path):
    path = str(tmp_path / "nothere.npy")
    with pytest.raises(DataSetFileNotFoundError, match="nothere.npy.*does not exist"):
        inline_ctx.load("auto", path=path)
    with pytest.raises(DataSetError, match="needs a path"):
        inline_ctx.load("auto")


@pytest.mark.parametrize("filetype", ["RAW", "Raw", "raw"])
def test_filetype_case_insensitive(inline_ctx, write_raw, filetype):
    path = write_raw(np.zeros((2, 3, 3), "uint8"))
    ds = inline_ctx.load(filetype, path=path, dtype="uint8", nav_shape=(2,), sig_shape=(3, 3))
    assert ds.shape == (2, 3, 3)


# -- I/O backends -------------------------------------------------------------------------------

@pytest.mark.parametrize("io_backend", [None, "mmap", MMapBackend()])
@pytest.mark.parametrize("fmt", ["raw", "npy"])
def test_io_backend_mmap(inline_ctx, tmp_path, io_helpers, io_backend, fmt):
    data = values("float32", (6, 4, 4))
    if fmt == "raw":
        path = str(tmp_path / "b.raw")
        data.tofile(path)
        ds = inline_ctx.load("raw", path=path, dtype="float32", nav_shape=(6,), sig_shape=(4, 4),
                             io_backend=io_backend)
    else:
        path = str(tmp_path / "b.npy")
        np.save(path, data)
        ds = inline_ctx.load("npy", path=path, io_backend=io_backend)
    assert isinstance(ds.io_backend, MMapBackend)
    assert ds.io_backend.name == "mmap"
    assert ds.meta.metadata["io_backend"] == "mmap"
    assert ds.supports_zero_copy
    assert_reads_as(io_helpers, ds, data)


@pytest.mark.parametrize("fmt", ["raw", "npy"])
@pytest.mark.parametrize("backend", ["tape", "MMAP ", 42])
def test_io_backend_invalid(inline_ctx, tmp_path, fmt, backend):
    path = str(tmp_path / "b.npy")
    np.save(path, np.zeros((2, 3, 3)))
    kw = dict(dtype="float64", nav_shape=(2,), sig_shape=(3, 3)) if fmt == "raw" else {}
    pattern = rf"io_backend: expected one of \['buffered', 'direct', 'mmap'\].*got {backend!r}"
    with pytest.raises(DataSetError, match=pattern):
        inline_ctx.load(fmt, path=path, io_backend=backend, **kw)


# -- valid mask, sync_offset, allow_partial -----------------------------------------------------

@pytest.mark.parametrize(
    "image_count, nav_size, sync_offset, allow_partial, valid",
    [
        (16, 16, 15, False, (0, 1)),
        (16, 16, -15, False, (15, 16)),
        (20, 16, 3, False, None),  # enough frames after the offset
        (20, 16, 5, False, (0, 15)),
        (20, 16, -2, False, (2, 16)),
        (10, 16, 0, True, (0, 10)),
        (10, 16, 2, True, (0, 8)),
        (10, 16, -2, True, (2, 12)),
    ],
)
@pytest.mark.parametrize("fmt", ["raw", "memory"])
def test_valid_mask(inline_ctx, write_raw, io_helpers, fmt, image_count, nav_size, sync_offset,
                    allow_partial, valid):
    frames = values("int16", (image_count, 3, 2))
    if fmt == "raw":
        ds = inline_ctx.load("raw", path=write_raw(frames), dtype="int16", nav_shape=(nav_size,),
                             sig_shape=(3, 2), sync_offset=sync_offset,
                             allow_partial=allow_partial, num_partitions=3)
    else:
        ds = inline_ctx.load("memory", data=frames, sig_dims=2, nav_shape=(nav_size,),
                             sync_offset=sync_offset, allow_partial=allow_partial,
                             num_partitions=3)
    assert ds.sync_offset == sync_offset
    assert ds.image_count == image_count
    mask = ds.get_valid_mask()
    if valid is None:
        assert mask is None
        expected = np.ones(nav_size, bool)
    else:
        expected = np.zeros(nav_size, bool)
        expected[valid[0]:valid[1]] = True
        assert mask.dtype == np.bool_
        np.testing.assert_array_equal(mask, expected)
    out, hits = io_helpers.read_all(ds)
    exp, processed = io_helpers.expected_frames(frames, nav_size, sync_offset)
    np.testing.assert_array_equal(processed, expected)
    assert np.all(hits[expected] == 1) and np.all(hits[~expected] == 0)
    np.testing.assert_array_equal(out[expected], exp[expected])


def test_valid_mask_in_run(inline_ctx, write_raw):
    frames = values("float32", (12, 3, 3))
    ds = inline_ctx.load("raw", path=write_raw(frames), dtype="float32", nav_shape=(3, 4),
                         sig_shape=(3, 3), sync_offset=-2, num_partitions=2)
    res = inline_ctx.map(dataset=ds, f=lambda frame: frame.sum())
    expected = np.zeros(12, bool)
    expected[2:] = True
    np.testing.assert_array_equal(res.valid_mask.reshape(-1), expected)
    assert np.all(np.isnan(res.data.reshape(-1)[:2]))
    np.testing.assert_allclose(res.data.reshape(-1)[2:], frames[:10].sum(axis=(1, 2)), rtol=1e-5)


# -- partitions ---------------------------------------------------------------------------------

@pytest.mark.parametrize("num_partitions", [None, 1, 2, 3, 5, 16, 17, 1000])
@pytest.mark.parametrize("nav_shape", [(17,), (4, 5), (2, 3, 4)])
def test_partitions_cover_nav(inline_ctx, write_raw, num_partitions, nav_shape):
    n = prod(nav_shape)
    ds = inline_ctx.load("raw", path=write_raw(np.zeros((n, 2, 2), "uint8")), dtype="uint8",
                         nav_shape=nav_shape, sig_shape=(2, 2), num_partitions=num_partitions)
    parts = ds.get_partitions()
    bounds = [(p.start, p.stop) for p in parts]
    assert bounds == ds.partition_bounds()
    assert bounds[0][0] == 0 and bounds[-1][1] == n
    assert all(a[1] == b[0] for a, b in zip(bounds, bounds[1:]))
    sizes = [b - a for a, b in bounds]
    assert min(sizes) >= 1 and max(sizes) - min(sizes) <= 1
    expected = 1 if num_partitions is None else min(num_partitions, n)
    assert len(parts) == expected == ds.get_num_partitions()
    for i, p in enumerate(parts):
        assert p.index == i
        assert p.num_frames == p.stop - p.start
        assert p.slice.origin == (p.start, 0, 0)
        assert p.slice.shape == Shape((p.num_frames, 2, 2), sig_dims=2)
        assert p.shape == ds.shape


def test_memory_partition_pickles_only_its_frames(inline_ctx):
    data = np.zeros((100, 32, 32), "float32")
    ds = inline_ctx.load("memory", data=data, num_partitions=10)
    size = len(pickle.dumps(ds.get_partitions()[3]))
    assert size < data.nbytes / 5


# -- files that change after loading ------------------------------------------------------------

@pytest.mark.parametrize("keep_frames", [0, 5, 9])
def test_truncated_after_load(inline_ctx, write_raw, keep_frames):
    frames = values("float32", (12, 8, 8))
    path = write_raw(frames, name="shrinking.raw")
    ds = inline_ctx.load("raw", path=path, dtype="float32", nav_shape=(3, 4), sig_shape=(8, 8),
                         num_partitions=2)
    os.truncate(path, keep_frames * 8 * 8 * 4 + 3)
    with pytest.raises(DataSetError, match=r"shrinking\.raw.*truncated"):
        inline_ctx.map(dataset=ds, f=lambda frame: frame.sum())
    with pytest.raises(DataSetError, match=r"shrinking\.raw"):
        ds.check_valid()
    # the context stays usable
    frames.tofile(path)
    res = inline_ctx.map(dataset=ds, f=lambda frame: frame.sum())
    np.testing.assert_allclose(res.data.reshape(-1), frames.sum(axis=(1, 2)), rtol=1e-5)


def test_truncated_after_load_tiles(inline_ctx, write_raw):
    frames = values("uint16", (8, 4, 4))
    path = write_raw(frames, name="short.raw")
    ds = inline_ctx.load("raw", path=path, dtype="uint16", nav_shape=(8,), sig_shape=(4, 4),
                         num_partitions=2)
    os.truncate(path, 5 * 4 * 4 * 2)
    scheme = TilingScheme.make((4, 4), (4, 4), 2, "tile")
    p0, p1 = ds.get_partitions()
    assert len(list(p0.get_tiles(scheme, "float32"))) == 2  # frames 0..3 are still there
    with pytest.raises(DataSetError, match=r"'.*short\.raw' has 160 bytes.*frames 4\.\.7.*256"):
        list(p1.get_tiles(scheme, "float32"))


def test_deleted_after_load(inline_ctx, write_raw):
    path = write_raw(values("uint16", (4, 4, 4)), name="gone.raw")
    ds = inline_ctx.load("raw", path=path, dtype="uint16", nav_shape=(4,), sig_shape=(4, 4))
    os.unlink(path)
    with pytest.raises(DataSetError, match=r"gone\.raw"):
        inline_ctx.map(dataset=ds, f=lambda frame: frame.sum())


# -- the mmap backend maps partitions in windows -------------------------------------------------

@pytest.mark.parametrize("window_frames", [1, 3, 5, 100])
@pytest.mark.parametrize("dest", ["float32", "=u2"])
def test_mmap_windows(inline_ctx, write_raw, io_helpers, monkeypatch, window_frames, dest):
    from udfkit.io.backends import mmap as mmap_backend

    frame_bytes = 6 * 5 * 2
    monkeypatch.setattr(mmap_backend, "WINDOW_BYTES", window_frames * frame_bytes)
    frames = values("uint16", (23, 6, 5))
    ds = inline_ctx.load("raw", path=write_raw(frames), dtype="uint16", nav_shape=(23,),
                         sig_shape=(6, 5), num_partitions=2, sync_offset=1)
    roi = np.ones(23, bool)
    roi[[4, 5, 17]] = False
    views = []

    def check(p, t):
        views.append(io_helpers.is_file_view(t.data))

    scheme = TilingScheme.make((6, 5), (4, 5), 4, "tile")
    for r in (None, roi):
        out, hits = io_helpers.read_all(ds, dest, scheme, r, check_tile=check)
        exp, processed = io_helpers.expected_frames(frames, 23, 1, r)
        assert np.all(hits[processed] == 1) and np.all(hits[~processed] == 0)
        np.testing.assert_array_equal(out[processed], exp[processed].astype(dest))
    assert any(views) == (np.dtype(dest) == np.uint16)


_TRUNCATE_DURING_RUN = """
import os, sys
import numpy as np
from udfkit import Context
from udfkit.errors import DataSetError
from udfkit.io.backends import mmap as mmap_backend
from udfkit.io.tiling import TilingScheme

mmap_backend.WINDOW_BYTES = 4 * 64 * 64 * 4  # four frames per window
path = sys.argv[1]
np.ones((64, 64, 64), "float32").tofile(path)
ds = Context().load("raw", path=path, dtype="float32", nav_shape=(64,), sig_shape=(64, 64),
                    num_partitions=1)
(p,) = ds.get_partitions()
tiles = p.get_tiles(TilingScheme.make((64, 64), (64, 64), 2, "tile"), "float32")
total = float(next(tiles).data.sum())
os.truncate(path, 8 * 64 * 64 * 4)  # shrinks at a window boundary while being read
try:
    for t in tiles:
        total += float(t.data.sum())
except DataSetError as e:
    print("DataSetError", e)
    sys.exit(0)
print("no error", total)
sys.exit(1)
"""


def test_truncated_during_read_is_a_dataset_error(tmp_path):
    import subprocess
    import sys

    path = str(tmp_path / "shrinks.raw")
    out = subprocess.run([sys.executable, "-c", _TRUNCATE_DURING_RUN, path],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, (out.returncode, out.stdout, out.stderr[-2000:])
    assert "shrinks.raw" in out.stdout
