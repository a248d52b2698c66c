"""The hdf5 format: the conformance suite for each storage variant, and what is particular to
HDF5 (read paths, ds_path detection through links and virtual datasets, filters, errors).

Every file here is written by h5py, and values are checked against h5py reading the whole
dataset (``f[ds_path][()]``).
"""

from __future__ import annotations

import mmap
import os
import pickle
import subprocess
import sys
import textwrap

import cloudpickle
import h5py
import hdf5plugin
import numpy as np
import pytest

from udfkit import UDF, Context
from udfkit.errors import DataSetError, UdfkitWarning
from udfkit.io.formats import detect_format, get_format
from udfkit.io.tiling import TilingScheme
from udfkit.testing import DataSetTests, read_all
from udfkit.udf import SumSigUDF, SumUDF

# -- the conformance suite, once per storage variant ------------------------------------------


def _nav_chunks(nav, per_chunk):
    """Nav chunk shapes: ``per_chunk`` frames along the last nav axis for a 1D nav, rows of
    ``per_chunk`` positions for a 2D nav (the kinds of chunking detectors write)."""
    if len(nav) == 1:
        return (min(per_chunk, nav[0]),)
    return (1, min(per_chunk, nav[1]))


class _HDF5Tests(DataSetTests):
    """Writes ``data`` as the only dataset of a file, stored as :meth:`storage` says.

    The variants share the suite's work: every dtype and executor is covered by some variant,
    each variant runs the few that tell its read path apart (workers start once per class).
    """

    format = "hdf5"
    sig_dims = (1, 2)
    executors = ("inline",)
    max_examples = 4

    def write(self, tmp_path, data, *, sig_dims):
        path = tmp_path / "data.h5"
        nav = data.shape[:-sig_dims]
        with h5py.File(path, "w") as f:
            f.create_dataset("entry/data", data=data, **self.storage(nav, data.shape[-sig_dims:]))
        # the only dataset: ds_path is found by itself where it has 3 or more dims
        params = dict(path=str(path), sig_dims=sig_dims)
        if data.ndim < 3:
            params["ds_path"] = "/entry/data"
        return params

    def storage(self, nav, sig) -> dict:
        raise NotImplementedError


class TestContiguous(_HDF5Tests):
    dtypes = ("uint8", ">u2", "int32", "float32", ">f8", "complex64")
    io_backends = ("mmap", "buffered", "direct")
    executors = ("inline", "threads", "processes", "dask")

    def storage(self, nav, sig):
        return {}


class TestChunkedOneFrame(_HDF5Tests):
    dtypes = ("uint16", ">f4")
    io_backends = ("mmap", "buffered", "direct")
    executors = ("inline", "threads")

    def storage(self, nav, sig):
        return dict(chunks=(1,) * len(nav) + sig)


class TestChunkedFrames(_HDF5Tests):
    dtypes = ("float64",)
    io_backends = ("mmap", "buffered", "direct")

    def storage(self, nav, sig):
        return dict(chunks=_nav_chunks(nav, 3) + sig)


class TestChunkedAcrossSig(_HDF5Tests):
    dtypes = ("uint16", ">i4")
    executors = ("inline", "threads")

    def storage(self, nav, sig):
        return dict(chunks=_nav_chunks(nav, 2) + tuple(-(-s // 2) for s in sig))


class TestGzip(_HDF5Tests):
    dtypes = (">u2", "complex64")
    executors = ("inline", "processes", "dask")  # h5py opened on the workers

    def storage(self, nav, sig):
        return dict(chunks=(1,) * len(nav) + sig, compression="gzip", shuffle=True)


class TestZstd(_HDF5Tests):
    dtypes = ("float32",)

    def storage(self, nav, sig):
        return dict(chunks=(min(2, nav[0]),) + tuple(nav[1:]) + sig, **hdf5plugin.Zstd())


# -- files for the HDF5-specific tests --------------------------------------------------------

RNG = np.random.default_rng(42)
DATA4 = RNG.integers(0, 4000, (5, 6, 7, 8)).astype("<u2")  # nav (5, 6), sig (7, 8)
DATA3 = RNG.integers(-500, 500, (11, 6, 5)).astype("<i4")  # nav (11,), sig (6, 5)


def storages(nav_dims):
    """Storage variants: name -> (create_dataset kwargs, native read path?)."""
    one = (1,) * nav_dims
    rows = (2,) + (6,) * (nav_dims - 1)  # k rows of the full scan: (k, full)
    cols = (1,) * (nav_dims - 1) + (4,)  # (1, k)
    return {
        "contiguous": ({}, True),
        "chunk-1": (dict(chunks=one), True),
        "chunk-rows": (dict(chunks=rows), True),
        "chunk-cols": (dict(chunks=cols), True),
        "split-sig": (dict(chunks=rows + (3,), split=True), False),
        "gzip": (dict(chunks=cols, compression="gzip"), False),
        "lzf": (dict(chunks=rows, compression="lzf"), False),
        "szip": (dict(chunks=rows, compression="szip"), False),
        "shuffle-fletcher32": (dict(chunks=one, shuffle=True, fletcher32=True), False),
        "bitshuffle": (dict(chunks=rows, **hdf5plugin.Bitshuffle()), False),
        "blosc": (dict(chunks=cols, **hdf5plugin.Blosc()), False),
        "scaleoffset": (dict(chunks=one, scaleoffset=0), False),
        "big-endian": (dict(dtype=">", chunks=cols), True),
    }


def write_variant(path, data, variant, name="data"):
    kwargs, native = storages(data.ndim - 2)[variant]
    kwargs = dict(kwargs)
    if "chunks" in kwargs:
        chunks = kwargs["chunks"]
        sig = data.shape[len(chunks):]
        if kwargs.pop("split", False):
            # the last chunk axis already splits the signal's first axis; halve the rest
            sig = tuple(-(-s // 2) for s in data.shape[len(chunks):])
        kwargs["chunks"] = chunks + tuple(sig)
    if kwargs.get("dtype") == ">":
        kwargs["dtype"] = data.dtype.newbyteorder(">")
    with h5py.File(path, "a") as f:
        f.create_dataset(name, data=data, **kwargs)
    return native


def h5_read(path, ds_path):
    with h5py.File(path, "r") as f:
        return f[ds_path][()]


@pytest.fixture(scope="module")
def ctx():
    with Context.make_with("inline") as c:
        yield c


def open_fds() -> set:
    return set(os.listdir("/proc/self/fd"))


# -- read paths -------------------------------------------------------------------------------

VARIANTS = list(storages(2))


@pytest.mark.parametrize("data", [DATA3, DATA4], ids=["nav1d", "nav2d"])
@pytest.mark.parametrize("variant", VARIANTS)
def test_variants_equal_h5py(ctx, tmp_path, data, variant):
    """Every storage variant reads as h5py reads it, in several partitions, on the read path
    the layout calls for, with UDF results equal to numpy."""
    path = tmp_path / "v.h5"
    native = write_variant(path, data, variant)
    ref = h5_read(path, "data")
    ds = ctx.load("hdf5", path=str(path), num_partitions=3)
    info = ds.layout_info()
    assert ds.native is native, info
    assert info["read_path"].startswith("native") is native
    assert ds.shape.to_tuple() == ref.shape and ds.dtype == ref.dtype
    n = ds.shape.nav.size
    out, hits = read_all(ds)
    assert (hits == 1).all()
    np.testing.assert_array_equal(out, ref.reshape((n,) + ref.shape[-2:]))
    sums, sig_sums = ctx.run_udf(dataset=ds, udf=[SumUDF(), SumSigUDF()])
    np.testing.assert_allclose(sums["intensity"].data, ref.sum(axis=tuple(range(ref.ndim - 2))))
    np.testing.assert_allclose(sig_sums["intensity"].data, ref.sum(axis=(-2, -1)))


@pytest.mark.parametrize("backend", ["mmap", "buffered", "direct"])
@pytest.mark.parametrize("variant", ["contiguous", "chunk-1", "chunk-rows", "chunk-cols",
                                     "big-endian"])
def test_native_backends(ctx, tmp_path, variant, backend):
    """The native variants read right through every I/O backend, with ROI and sync_offset."""
    path = tmp_path / "n.h5"
    assert write_variant(path, DATA4, variant)
    ref = h5_read(path, "data").reshape(30, 7, 8)
    roi = np.random.default_rng(1).random((5, 6)) < 0.6
    ds = ctx.load("hdf5", path=str(path), io_backend=backend, num_partitions=4, sync_offset=3)
    assert ds.layout_info()["read_path"] == f"native ({backend})"
    res = ctx.run_udf(dataset=ds, udf=SumSigUDF(), roi=roi)["intensity"].data.reshape(-1)
    want = np.full(30, np.nan)
    want[:27] = ref[3:].sum(axis=(1, 2))
    want[~roi.reshape(-1)] = np.nan
    np.testing.assert_array_equal(res, want)


def write_out_of_order(path, data, chunks):
    """A dataset whose chunks lie in the file in reverse order (written last to first)."""
    with h5py.File(path, "w") as f:
        d = f.create_dataset("data", shape=data.shape, dtype=data.dtype, chunks=chunks)
        for i in reversed(range(data.shape[0])):
            for j in reversed(range(data.shape[1])):
                d[i, j] = data[i, j]


@pytest.mark.parametrize("backend", ["mmap", "buffered", "direct"])
def test_chunks_out_of_order(ctx, tmp_path, backend):
    """Chunks stored in any order: the offset table says where each frame is; the mmap backend
    copies instead of making a view of frames that are not back to back."""
    path = tmp_path / "rev.h5"
    write_out_of_order(path, DATA4, (1, 1, 7, 8))
    ds = ctx.load("hdf5", path=str(path), io_backend=backend, num_partitions=2)
    info = ds.layout_info()
    assert info["read_path"] == f"native ({backend})"
    assert "out of order" in info["offsets"]
    lay = ds.fileset.files[0]
    with h5py.File(path) as f:
        # frame (1, 2) is in chunk (1, 2): the table holds its offset from the chunk index
        assert lay.frame_offsets[1 * 6 + 2] == f["data"].id.get_chunk_info_by_coord((1, 2, 0, 0)).byte_offset
    out, hits = read_all(ds, dest_dtype=ds.dtype)
    assert (hits == 1).all()
    np.testing.assert_array_equal(out, DATA4.reshape(30, 7, 8))


class _FloatTileSum(UDF):
    """A user's tile UDF with the default float32 input: a second dtype stream next to SumUDF."""

    def get_result_buffers(self):
        return {"sums": self.buffer(kind="nav", dtype="float64")}

    def process_tile(self, tile):
        assert tile.dtype == np.float32
        self.results.sums[:] = tile.reshape(tile.shape[0], -1).sum(axis=1)


def _mapped(arr) -> bool:
    while isinstance(arr, np.ndarray) and arr.base is not None:
        arr = arr.base
    if isinstance(arr, memoryview):
        arr = arr.obj
    return isinstance(arr, mmap.mmap)


def test_chunk_runs_give_view_tiles(ctx, tmp_path):
    """Chunks stored in runs with other data between them (two datasets written in turns):
    tiles are cut at the gaps and stay views of the mapping; a float32 stream of the same run
    is cut the same way, so both UDFs see every frame once."""
    data = RNG.integers(0, 100, (40, 6, 5)).astype("<u2")
    path = tmp_path / "runs.h5"
    with h5py.File(path, "w", rdcc_nbytes=0) as f:  # no chunk cache: chunks land as written
        a = f.create_dataset("a", shape=data.shape, dtype=data.dtype, chunks=(1, 6, 5))
        b = f.create_dataset("b", shape=data.shape, dtype=data.dtype, chunks=(1, 6, 5))
        for i in range(0, 40, 8):
            a[i:i + 8] = data[i:i + 8]
            b[i:i + 8] = data[i:i + 8]
    ds = ctx.load("hdf5", path=str(path), ds_path="a", num_partitions=1)
    assert ds.layout_info()["offsets"] == "table of 40 (increasing)"
    (part,) = ds.get_partitions()
    tiles = list(part.get_tiles(TilingScheme.make((6, 5), (6, 5), 16, "tile"), ds.dtype))
    table = ds.fileset.files[0].frame_offsets
    assert len(tiles) >= 5 and sum(t.data.shape[0] for t in tiles) == 40
    for t in tiles:  # each tile is one run of back-to-back chunks, and a view of the file
        assert (np.diff(table[t.frame_index]) == 60).all()
        assert _mapped(t.data)
    np.testing.assert_array_equal(np.concatenate([t.data for t in tiles]), data)
    res_sum, res_f32 = ctx.run_udf(dataset=ds, udf=[SumUDF(), _FloatTileSum()])
    np.testing.assert_array_equal(res_sum["intensity"].data, data.sum(axis=0))
    np.testing.assert_array_equal(res_f32["sums"].data, data.sum(axis=(1, 2)))


def test_edge_chunks_and_user_block(ctx, tmp_path):
    """Chunks that overhang the nav extent (stored full size) and a 1 KiB user block in front
    of the HDF5 data: offsets from the chunk index are absolute file offsets."""
    path = tmp_path / "ub.h5"
    with h5py.File(path, "w", userblock_size=1024) as f:
        f.create_dataset("data", data=DATA3, chunks=(4, 6, 5))
    with open(path, "r+b") as f:
        f.write(b"user block: not HDF5")
    assert get_format("hdf5").guess_can_open(str(path)) == 1.0
    ds = ctx.load("auto", path=str(path), num_partitions=3)
    assert ds.native
    out, hits = read_all(ds)
    np.testing.assert_array_equal(out, DATA3)


def test_resized_dataset(ctx, tmp_path):
    """A dataset shrunk after writing keeps chunks past its extent in the file: they are
    not frames."""
    path = tmp_path / "resized.h5"
    with h5py.File(path, "w") as f:
        d = f.create_dataset("data", data=DATA3, chunks=(1, 6, 5), maxshape=(None, 6, 5))
        d.resize(7, axis=0)
    ds = ctx.load("hdf5", path=str(path), num_partitions=2)
    assert ds.native and ds.shape.to_tuple() == (7, 6, 5)
    np.testing.assert_array_equal(read_all(ds)[0], DATA3[:7])


def test_partitions_align_to_chunk_blocks(ctx, tmp_path, monkeypatch):
    """h5py-decoded data: partitions start on whole chunk rows and every read covers whole,
    distinct blocks, so each chunk is decoded once."""
    from udfkit.io.formats import _hdf5

    path = tmp_path / "g.h5"
    with h5py.File(path, "w") as f:
        f.create_dataset("data", data=DATA4, chunks=(2, 6, 7, 8), compression="gzip")
    ds = ctx.load("hdf5", path=str(path), num_partitions=3)
    block = ds.layout_info()["block_frames"]
    assert block == 12
    assert all(start % block == 0 for start, _ in ds.partition_bounds())
    reads = []
    orig = _hdf5._OpenH5.read

    def spy(self, lo, hi, out):
        reads.append((lo, hi))
        return orig(self, lo, hi, out)

    monkeypatch.setattr(_hdf5._OpenH5, "read", spy)
    res = ctx.run_udf(dataset=ds, udf=SumUDF())
    np.testing.assert_allclose(res["intensity"].data, DATA4.sum(axis=(0, 1)))
    covered = sorted(reads)
    assert all(lo % block == 0 and (hi % block == 0 or hi == 30) for lo, hi in covered)
    assert all(a[1] <= b[0] for a, b in zip(covered, covered[1:])), "a block was decoded twice"
    assert covered[0][0] == 0 and covered[-1][1] == 30


def test_read_amplification_warns_once(ctx, tmp_path, monkeypatch):
    """Chunks too tall to decode a row of them at once: one UdfkitWarning per data set, not one
    per partition or per run."""
    import udfkit.io.chunked as chunked

    monkeypatch.setattr(chunked, "MAX_BLOCK_BYTES", 4 * 7 * 8 * 2)
    path = tmp_path / "tall.h5"
    with h5py.File(path, "w") as f:
        f.create_dataset("data", data=DATA4, chunks=(5, 2, 7, 8), compression="gzip")
    with pytest.warns(UdfkitWarning, match="read amplification") as caught:
        ds = ctx.load("hdf5", path=str(path), num_partitions=4)
        for _ in range(2):
            res = ctx.run_udf(dataset=ds, udf=SumUDF())
    assert len([w for w in caught if issubclass(w.category, UdfkitWarning)]) == 1
    np.testing.assert_allclose(res["intensity"].data, DATA4.sum(axis=(0, 1)))


@pytest.mark.parametrize("variant", ["contiguous", "gzip"])
def test_reshape(ctx, tmp_path, variant):
    """nav_shape / sig_shape overrides: a flat nav, a 1D signal made of the trailing axes, one
    frame; a signal that is not whole trailing axes only where udfkit reads the bytes."""
    path = tmp_path / "r.h5"
    write_variant(path, DATA4, variant)
    ds = ctx.load("hdf5", path=str(path), nav_shape=(30,), sig_shape=(56,))
    out, _ = read_all(ds)
    np.testing.assert_array_equal(out, DATA4.reshape(30, 56))
    ds = ctx.load("hdf5", path=str(path), nav_shape=(3, 10))
    assert ds.shape.to_tuple() == (3, 10, 7, 8)
    # a frame of the same size in another shape: the same bytes in C order
    ds = ctx.load("hdf5", path=str(path), sig_shape=(4, 14))
    np.testing.assert_array_equal(read_all(ds)[0], DATA4.reshape(-1, 4, 14))
    if variant == "contiguous":  # half frames: only where udfkit reads the bytes itself
        ds = ctx.load("hdf5", path=str(path), sig_shape=(4, 7))
        np.testing.assert_array_equal(read_all(ds)[0], DATA4.reshape(-1, 4, 7))
    else:
        with pytest.raises(DataSetError, match=r"r\.h5.*sig_shape \(4, 7\) is not made of its trailing"):
            ctx.load("hdf5", path=str(path), sig_shape=(4, 7))


@pytest.mark.parametrize("variant", ["contiguous", "gzip"])
def test_single_frame_dataset(ctx, tmp_path, variant):
    """A 2D dataset is one frame when sig_shape says so; with the default sig_dims=2 it has
    no navigation axis, and the error says what to pass."""
    path = tmp_path / "one.h5"
    write_variant(path, DATA4[0, 0], variant if variant == "contiguous" else "contiguous")
    with h5py.File(path, "a") as f:
        f.create_dataset("gz", data=DATA4[0, 0], chunks=(7, 4), compression="gzip")
    name = "data" if variant == "contiguous" else "gz"
    ds = ctx.load("hdf5", path=str(path), ds_path=name, sig_shape=(7, 8))
    assert ds.shape.to_tuple() == (1, 7, 8)
    out, _ = read_all(ds)
    np.testing.assert_array_equal(out[0], DATA4[0, 0])
    with pytest.raises(DataSetError, match="no navigation axis"):
        ctx.load("hdf5", path=str(path), ds_path=name)
    ds = ctx.load("hdf5", path=str(path), ds_path=name, sig_dims=1)
    assert ds.shape.to_tuple() == (7, 8)


def test_allow_partial(ctx, tmp_path):
    """A nav_shape larger than the dataset, with allow_partial: missing positions are invalid."""
    path = tmp_path / "p.h5"
    write_variant(path, DATA3, "gzip")
    with pytest.raises(DataSetError, match="allow_partial"):
        ctx.load("hdf5", path=str(path), nav_shape=(4, 3))
    ds = ctx.load("hdf5", path=str(path), nav_shape=(4, 3), allow_partial=True)
    res = ctx.run_udf(dataset=ds, udf=SumSigUDF())["intensity"]
    assert res.valid_mask.reshape(-1).tolist() == [True] * 11 + [False]
    np.testing.assert_allclose(res.data.reshape(-1)[:11], DATA3.sum(axis=(1, 2)))


# -- finding the dataset ----------------------------------------------------------------------


def test_ds_path_found_in_groups(ctx, tmp_path):
    """The one dataset of >= 3 dims is found among smaller ones and attributes."""
    path = tmp_path / "nx.nxs"
    with h5py.File(path, "w") as f:
        f.create_dataset("entry/instrument/detector/data", data=DATA4, chunks=(1, 6, 7, 8))
        f.create_dataset("entry/instrument/detector/x_pixel_size", data=5e-5)
        f.create_dataset("entry/sample/positions", data=np.zeros((30, 2)))
        f["entry/data"] = h5py.SoftLink("/entry/instrument/detector/data")  # NeXus NXdata
    ds = ctx.load("auto", path=str(path))
    assert ds.layout_info()["ds_path"] in ("/entry/data", "/entry/instrument/detector/data")
    np.testing.assert_array_equal(read_all(ds)[0], DATA4.reshape(30, 7, 8))


def test_ds_path_through_external_link(ctx, tmp_path):
    """A master file that links the data file (as detectors write them): found and read
    natively from the data file, which layout_info names."""
    data_file = tmp_path / "scan_data_000001.h5"
    with h5py.File(data_file, "w") as f:
        f.create_dataset("entry/data/data", data=DATA4, chunks=(1, 1, 7, 8))
    master = tmp_path / "scan_master.h5"
    with h5py.File(master, "w") as f:
        f.create_dataset("entry/instrument/detector/count_time", data=0.001)
        f["entry/data/data_000001"] = h5py.ExternalLink(data_file.name, "/entry/data/data")
    before = open_fds()
    ds = ctx.load("hdf5", path=str(master), num_partitions=2)
    info = ds.layout_info()
    assert info["ds_path"] == "/entry/data/data_000001"
    assert info["data_file"] == str(data_file) and ds.native
    np.testing.assert_array_equal(read_all(ds)[0], DATA4.reshape(30, 7, 8))
    assert open_fds() == before


def test_ds_path_virtual_dataset(ctx, tmp_path):
    """A virtual dataset over two files is found, read through h5py, and its sources listed;
    a missing source file is an error (HDF5 would silently read the fill value)."""
    layout = h5py.VirtualLayout(shape=DATA4.shape, dtype=DATA4.dtype)
    for i, rows in enumerate([slice(0, 3), slice(3, 5)]):
        part = tmp_path / f"part{i}.h5"
        with h5py.File(part, "w") as f:
            f.create_dataset("d", data=DATA4[rows])
        layout[rows] = h5py.VirtualSource(part.name, "d", shape=DATA4[rows].shape)
    master = tmp_path / "vds.h5"
    with h5py.File(master, "w") as f:
        f.create_virtual_dataset("entry/data", layout, fillvalue=0)
    before = open_fds()
    ds = ctx.load("hdf5", path=str(master), num_partitions=3)
    info = ds.layout_info()
    assert (info["ds_path"], info["storage"], info["read_path"]) == ("/entry/data", "virtual", "h5py")
    assert [os.path.basename(p) for p in info["sources"]] == ["part0.h5", "part1.h5"]
    np.testing.assert_array_equal(read_all(ds)[0], h5_read(master, "entry/data").reshape(30, 7, 8))
    np.testing.assert_array_equal(read_all(ds)[0], DATA4.reshape(30, 7, 8))
    assert open_fds() == before
    os.remove(tmp_path / "part1.h5")
    with pytest.raises(DataSetError, match=r"vds\.h5.*/entry/data.*source files are missing: 'part1\.h5'"):
        ctx.load("hdf5", path=str(master))


def test_ds_path_several_candidates(ctx, tmp_path):
    path = tmp_path / "two.h5"
    with h5py.File(path, "w") as f:
        f.create_dataset("a", data=DATA3)
        f.create_dataset("g/b", data=DATA4.astype("float32"))
    with pytest.raises(DataSetError) as info:
        ctx.load("hdf5", path=str(path))
    msg = str(info.value)
    assert "two.h5" in msg and "2 datasets" in msg
    assert "'/a' (11, 6, 5) int32" in msg and "'/g/b' (5, 6, 7, 8) float32" in msg
    assert "ds_path=" in msg


def test_ds_path_no_candidate(ctx, tmp_path):
    path = tmp_path / "flat.h5"
    with h5py.File(path, "w") as f:
        f.create_dataset("img", data=np.zeros((4, 4)))
        f.create_dataset("names", data=np.array([b"a", b"b"]))
    with pytest.raises(DataSetError, match=r"flat\.h5.*no dataset of 3 or more.*'/img' \(4, 4\) float64"):
        ctx.load("hdf5", path=str(path))


def test_ds_path_errors(ctx, tmp_path):
    path = tmp_path / "e.h5"
    with h5py.File(path, "w") as f:
        f.create_dataset("g/data", data=DATA3)
        f.create_dataset("line", data=np.arange(10))
        f.create_dataset("text", data=np.array([b"ab", b"cd", b"ef"] * 4).reshape(2, 2, 3))
        f["broken"] = h5py.ExternalLink("nothere.h5", "/x")
        f.create_dataset("empty", data=h5py.Empty("f4"))
    with pytest.raises(DataSetError,
                       match=r"e\.h5.*no dataset at ds_path '/nope'.*'/g/data' \(11, 6, 5\) int32"):
        ctx.load("hdf5", path=str(path), ds_path="/nope")
    with pytest.raises(DataSetError, match=r"e\.h5.*'/g' is a group.*'/g/data'"):
        ctx.load("hdf5", path=str(path), ds_path="/g")
    with pytest.raises(DataSetError, match=r"e\.h5.*'/line' has shape \(10,\); expected at least 2"):
        ctx.load("hdf5", path=str(path), ds_path="line")
    with pytest.raises(DataSetError, match=r"e\.h5.*'/empty' has shape \(\); expected at least 2"):
        ctx.load("hdf5", path=str(path), ds_path="empty")
    with pytest.raises(DataSetError, match=r"e\.h5.*'/text' has dtype .*expected a numeric"):
        ctx.load("hdf5", path=str(path), ds_path="text")
    with pytest.raises(DataSetError, match=r"e\.h5.*'/broken'.*target cannot be opened"):
        ctx.load("hdf5", path=str(path), ds_path="/broken")
    # the broken link does not keep the only candidate from being found
    assert ctx.load("hdf5", path=str(path)).layout_info()["ds_path"] == "/g/data"


# -- filters, backends, bad files -------------------------------------------------------------


def test_io_backend_on_decoded_data_is_an_error(ctx, tmp_path):
    path = tmp_path / "z.h5"
    write_variant(path, DATA4, "gzip")
    with pytest.raises(DataSetError, match=r"z\.h5.*io_backend='buffered' does not apply.*gzip"):
        ctx.load("hdf5", path=str(path), io_backend="buffered")


def test_never_written_chunks_read_as_fill_value(ctx, tmp_path):
    """Chunks that were never written have no bytes: h5py supplies the fill value."""
    path = tmp_path / "holes.h5"
    with h5py.File(path, "w") as f:
        d = f.create_dataset("data", shape=DATA3.shape, dtype=DATA3.dtype, chunks=(1, 6, 5),
                             fillvalue=-7)
        d[:5] = DATA3[:5]
    ds = ctx.load("hdf5", path=str(path))
    assert ds.layout_info()["read_path"] == "h5py"
    assert "never written" in ds.layout_info()["why_h5py"]
    np.testing.assert_array_equal(read_all(ds)[0], h5_read(path, "data"))


def test_unavailable_filter_names_filter_and_extra(tmp_path):
    """Without hdf5plugin, a zstd dataset is an error naming file, dataset, filter and extra
    (in a fresh interpreter where hdf5plugin cannot be imported)."""
    path = tmp_path / "zstd.h5"
    with h5py.File(path, "w") as f:
        f.create_dataset("entry/data", data=DATA4, chunks=(1, 6, 7, 8), **hdf5plugin.Zstd())
    script = textwrap.dedent(f"""
        import sys
        sys.modules["hdf5plugin"] = None  # as if it were not installed
        from udfkit import UDF, Context
        from udfkit.errors import DataSetError
        try:
            Context.make_with("inline").load("hdf5", path={str(path)!r})
        except DataSetError as e:
            print(e)
    """)
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    msg = out.stdout
    assert "zstd.h5" in msg and "/entry/data" in msg, out
    assert "32015 (zstd)" in msg and "pip install 'udfkit[hdf5plugin]'" in msg, out


def test_not_hdf5(ctx, tmp_path):
    bad = tmp_path / "scan.h5"
    bad.write_bytes(b"\x89HDF\r\n\x1a\n" + b"\0" * 100)
    with pytest.raises(DataSetError, match=r"scan\.h5.* not a valid HDF5 file"):
        ctx.load("hdf5", path=str(bad))
    with pytest.raises(FileNotFoundError, match="gone.h5"):
        ctx.load("hdf5", path=str(tmp_path / "gone.h5"))


def test_truncated_file(ctx, tmp_path):
    """A file cut short after loading: the run names it, on both read paths."""
    for variant in ("chunk-1", "gzip"):
        path = tmp_path / f"{variant}.h5"
        write_variant(path, DATA4, variant)
        ds = ctx.load("hdf5", path=str(path), num_partitions=2)
        os.truncate(path, os.path.getsize(path) - 2000)
        with pytest.raises(DataSetError, match=rf"{variant}\.h5"):
            ctx.run_udf(dataset=ds, udf=SumUDF())


@pytest.mark.parametrize("variant, backend", [("contiguous", None), ("contiguous", "buffered"),
                                              ("chunk-1", None), ("chunk-1", "direct"),
                                              ("gzip", None), ("split-sig", None)])
def test_no_leaked_fds(ctx, tmp_path, variant, backend):
    path = tmp_path / "fd.h5"
    write_variant(path, DATA4, variant)
    before = open_fds()
    for _ in range(3):
        ds = ctx.load("hdf5", path=str(path), num_partitions=3, io_backend=backend)
        ctx.run_udf(dataset=ds, udf=[SumUDF(), SumSigUDF()])
    with pytest.raises(DataSetError):
        ctx.load("hdf5", path=str(path), ds_path="/nope")
    assert open_fds() == before


@pytest.mark.parametrize("variant", ["chunk-rows", "gzip"])
def test_partitions_pickle_small(ctx, tmp_path, variant):
    """Partitions carry the path, not an open file, and give the same tiles after pickling."""
    path = tmp_path / "pk.h5"
    write_variant(path, DATA4, variant)
    ds = ctx.load("hdf5", path=str(path), num_partitions=2)
    for dumps, loads in [(pickle.dumps, pickle.loads), (cloudpickle.dumps, cloudpickle.loads)]:
        for p in ds.get_partitions():
            blob = dumps(p)
            assert len(blob) < 4096
            p2 = loads(blob)
            assert type(p2) is type(p) and (p2.start, p2.stop) == (p.start, p.stop)


def test_offset_table_pickles_as_runs(ctx, tmp_path):
    """A one-frame-per-chunk table of thousands of frames travels as its runs (index nodes
    between them), not as one offset per frame."""
    data = RNG.integers(0, 9, (3000, 2, 2)).astype("<u2")
    path = tmp_path / "many.h5"
    with h5py.File(path, "w", rdcc_nbytes=0) as f:
        f.create_dataset("data", data=data, chunks=(1, 2, 2))
    ds = ctx.load("hdf5", path=str(path), num_partitions=2)
    assert ds.layout_info()["offsets"].startswith("table of 3000")
    p = ds.get_partitions()[1]
    blob = pickle.dumps(p)
    assert len(blob) < 3000 * 8 / 4
    np.testing.assert_array_equal(pickle.loads(blob).fileset.files[0].frame_offsets,
                                  p.fileset.files[0].frame_offsets)
    np.testing.assert_array_equal(read_all(ds)[0], data)


# -- detection and `udfkit info` --------------------------------------------------------------


@pytest.mark.parametrize("name", ["scan.h5", "scan.hdf5", "scan.nxs", "scan.emd", "scan.hspy",
                                  "noext"])
def test_detected(tmp_path, name):
    path = tmp_path / name
    write_variant(path, DATA3, "contiguous")
    assert detect_format({"path": str(path)}) == "hdf5"
    assert get_format("hdf5").guess_can_open(str(path)) == 1.0


def test_guess_by_extension_only(tmp_path):
    fmt = get_format("hdf5")
    other = tmp_path / "x.npy"
    np.save(other, np.zeros(3))
    assert fmt.guess_can_open(str(other)) == 0.0
    fake = tmp_path / "x.h5"
    fake.write_bytes(b"not hdf5 at all")
    assert fmt.guess_can_open(str(fake)) == 0.5
    assert fmt.guess_can_open(str(tmp_path)) == 0.0


def test_cli_info_without_flags(tmp_path, capsys):
    from udfkit.cli import main

    path = tmp_path / "scan.h5"
    write_variant(path, DATA4, "chunk-cols")
    assert main(["info", str(path)]) == 0
    out = capsys.readouterr().out
    assert "hdf5" in out and "(5, 6) x sig (7, 8)" in out
    assert "/data" in out and "native (mmap)" in out and "(1, 4, 7, 8)" in out


def test_format_params_and_light_import():
    fmt = get_format("hdf5")
    assert fmt.param_names() == ["path", "ds_path", "nav_shape", "sig_shape", "sig_dims",
                                 "sync_offset", "num_partitions", "io_backend", "allow_partial"]
    code = ("import sys, udfkit.io.formats.hdf5; "
            "print(any(m in sys.modules for m in ('h5py', 'hdf5plugin')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.stdout.strip() == "False", out

