"""The zarr format: v2 and v3 stores written by zarr-python, checked against zarr's own reads.

The conformance suite (:class:`udfkit.testing.DataSetTests`) runs over four kinds of store;
the tests below it cover what is zarr's own: chunk and shard alignment, array paths,
detection, ``udfkit info``, bad stores and file handles.
"""

import json
import os
import subprocess
import sys
import textwrap
import zipfile
from math import prod

import numcodecs
import numpy as np
import pytest
import zarr
from zarr.codecs import BloscCodec, BytesCodec, GzipCodec, ZstdCodec

from udfkit import Context
from udfkit.errors import DataSetError, DataSetFileNotFoundError
from udfkit.io.formats import detect_format, get_format
from udfkit.testing import DataSetTests, read_all
from udfkit.udf import SumSigUDF, SumUDF

NATIVE_DTYPES = ("uint8", "uint16", "int32", "float32", "float64", "complex64")


def _chunk_files(store: str) -> list:
    """The chunk (or shard) files of a directory store: everything but the metadata."""
    meta = {"zarr.json", ".zarray", ".zgroup", ".zattrs", ".zmetadata"}
    return sorted(os.path.join(d, f) for d, _, files in os.walk(store) for f in files if f not in meta)


def _halves(sig_shape) -> tuple:
    return tuple(max(1, -(-s // 2)) for s in sig_shape)


class _ZarrTests(DataSetTests):
    format = "zarr"
    dtypes = NATIVE_DTYPES
    # five store kinds share the module's time: fewer examples each than the suite's default;
    # only TestZarrV3 runs on the processes and dask executors (each starts its own workers)
    max_examples = 4
    zarr_format = 3

    def create_kwargs(self, data, sig_dims) -> dict:
        raise NotImplementedError

    def write(self, tmp_path, data, *, sig_dims):
        path = str(tmp_path / "data.zarr")
        z = zarr.create_array(path, shape=data.shape, dtype=data.dtype, zarr_format=self.zarr_format,
                              **self.create_kwargs(data, sig_dims))
        z[...] = data
        return dict(path=path, sig_dims=sig_dims)

    def corrupt(self, params):
        files = _chunk_files(params["path"])
        assert files, "no chunk written"
        for f in files:
            os.truncate(f, os.path.getsize(f) // 2)


class TestZarrV3(_ZarrTests):
    """v3, zstd, chunks across frames (of both nav axes) and across the signal."""

    sig_dims = (1, 2)

    def create_kwargs(self, data, sig_dims):
        nav = data.shape[:-sig_dims]
        nav_chunks = (min(2, nav[0]),) + tuple(min(3, n) for n in nav[1:])
        return dict(chunks=nav_chunks + _halves(data.shape[-sig_dims:]),
                    compressors=ZstdCodec(level=1))


class TestZarrV2(_ZarrTests):
    """v2, gzip, one frame per chunk, big-endian dtypes as v2 stores them."""

    dtypes = ("uint8", ">u2", "int32", ">i4", "float32", ">f4", ">f8", "complex64")
    executors = ("inline", "threads")
    zarr_format = 2

    def create_kwargs(self, data, sig_dims):
        nav_dims = data.ndim - sig_dims
        return dict(chunks=(1,) * nav_dims + data.shape[nav_dims:], compressors=numcodecs.GZip(level=1))


class TestZarrSharded(_ZarrTests):
    """v3, sharded (two frames of the first nav axis per shard), uncompressed inner chunks of
    one frame and half of the even signal axes."""

    dtypes = ("uint16", "float32")
    executors = ("inline", "threads")

    def create_kwargs(self, data, sig_dims):
        nav_dims = data.ndim - sig_dims
        sig = data.shape[nav_dims:]
        nav = data.shape[:nav_dims]
        # inner chunks must divide the shard: halves of the even signal axes
        inner = tuple(n // 2 if n % 2 == 0 else n for n in sig)
        return dict(shards=(min(2, nav[0]),) + nav[1:] + sig, chunks=(1,) * nav_dims + inner,
                    compressors=None)


class TestZarrNative(_ZarrTests):
    """v3, uncompressed chunks of whole frames: udfkit reads the chunk files itself, through
    every I/O backend."""

    dtypes = ("uint8", "uint16", "int32", "float64", "complex64")
    io_backends = ("mmap", "buffered", "direct")
    executors = ("inline", "threads")

    def create_kwargs(self, data, sig_dims):
        # all chunks written, also those of zeros only, so that the native path is taken
        return dict(chunks=(min(2, data.shape[0]),) + data.shape[1:], compressors=None,
                    config={"write_empty_chunks": True})


class TestZarrZip(_ZarrTests):
    """v3 in a zip store, blosc."""

    dtypes = ("uint16", "float64")
    executors = ("inline", "threads")

    def write(self, tmp_path, data, *, sig_dims):
        path = str(tmp_path / "data.zarr.zip")
        with zarr.storage.ZipStore(path, mode="w") as store:
            z = zarr.create_array(store, shape=data.shape, dtype=data.dtype,
                                  chunks=(1,) * (data.ndim - sig_dims) + data.shape[-sig_dims:],
                                  compressors=BloscCodec(cname="lz4", clevel=1))
            z[...] = data
        return dict(path=path, sig_dims=sig_dims)

    def corrupt(self, params):
        path = params["path"]
        os.truncate(path, os.path.getsize(path) // 2)


# -- the zarr-specific part ------------------------------------------------------------------

@pytest.fixture(scope="module")
def ctx():
    with Context.make_with("inline") as c:
        yield c


@pytest.fixture(scope="module")
def pctx():
    with Context.make_with("processes", cpus=2) as c:
        yield c


def _data(shape, dtype="uint16", seed=0):
    return np.random.default_rng(seed).integers(0, 1000, size=shape).astype(dtype)


def _write(path, data, **kwargs):
    z = zarr.create_array(str(path), shape=data.shape, dtype=data.dtype, **kwargs)
    z[...] = data
    return str(path)


def _check_values(ctx, params, nav_shape, sig_shape, want_path=None, array_path=None):
    """Tiles and SumUDF equal zarr's own read of the whole array."""
    ds = ctx.load("zarr", **params)
    ref = zarr.open_array(want_path or params["path"], path=array_path or "", mode="r")[...]
    frames = ref.reshape((prod(nav_shape),) + tuple(sig_shape))
    assert ds.shape.nav.to_tuple() == tuple(nav_shape) and ds.shape.sig.to_tuple() == tuple(sig_shape)
    out, hits = read_all(ds)
    assert np.all(hits == 1)
    np.testing.assert_array_equal(out, frames)
    res = ctx.run_udf(dataset=ds, udf=SumUDF())
    np.testing.assert_allclose(res["intensity"].data, frames.astype("f8").sum(axis=0))
    return ds


CHUNKINGS = {
    "one-frame": lambda nav, sig: (1,) * len(nav) + sig,
    "frames": lambda nav, sig: (3,) + nav[1:] + sig,
    # runs of frames along the last nav axis whose last chunk is padded (5 = 4 + 1): the
    # chunk files then hold different numbers of frames
    "inner-run": lambda nav, sig: (1,) * (len(nav) - 1) + (4,) + sig,
    "across": lambda nav, sig: (2,) + (3,) * (len(nav) - 1) + (5, 3)[:len(sig)],
    "part-frame": lambda nav, sig: (1,) * len(nav) + (4,) + sig[1:],
}
COMPRESSORS = {
    "none": lambda v: None,
    "zstd": lambda v: ZstdCodec(level=1) if v == 3 else numcodecs.Zstd(level=1),
    "gzip": lambda v: GzipCodec(level=1) if v == 3 else numcodecs.GZip(level=1),
    "blosc": lambda v: BloscCodec(cname="zstd", clevel=1, shuffle="bitshuffle") if v == 3
    else numcodecs.Blosc(cname="zstd", clevel=1, shuffle=numcodecs.Blosc.BITSHUFFLE),
}


#: every chunking uncompressed and with gzip in both versions and with zstd and blosc in v3;
#: the v2 (numcodecs) zstd and blosc once
STORES = [(v, c, k) for v in (2, 3) for c in sorted(COMPRESSORS) for k in sorted(CHUNKINGS)
          if v == 3 or c in ("none", "gzip") or k == "across"]


@pytest.mark.parametrize("nav_shape", [(7,), (3, 5)], ids=["nav1d", "nav2d"])
@pytest.mark.parametrize("version, compressor, chunking", STORES,
                         ids=[f"v{v}-{c}-{k}" for v, c, k in STORES])
def test_values_match_zarr(ctx, tmp_path, version, compressor, chunking, nav_shape):
    sig = (9, 6)
    data = _data(nav_shape + sig)
    chunks = CHUNKINGS[chunking](nav_shape, sig)
    path = _write(tmp_path / "s.zarr", data, chunks=chunks, zarr_format=version,
                  compressors=COMPRESSORS[compressor](version))
    ds = _check_values(ctx, dict(path=path, num_partitions=3), nav_shape, sig)
    assert ds.layout_info()["zarr_format"] == version
    assert ds.layout_info()["chunks"] == chunks
    # uncompressed chunks of whole, consecutive frames are read by udfkit itself
    assert ds.native == (compressor == "none" and chunking in ("one-frame", "frames", "inner-run"))
    assert ds.layout_info()["read_path"].startswith("native" if ds.native else "zarr")


def test_big_endian_v3_codec(ctx, tmp_path):
    """A v3 array stored big-endian (by its bytes codec) reads as its native data type."""
    data = _data((4, 5, 6), ">u2")
    path = _write(tmp_path / "be.zarr", data, chunks=(2, 5, 3), serializer=BytesCodec(endian="big"),
                  compressors=None)
    with open(_chunk_files(path)[0], "rb") as f:  # the bytes on disk really are big-endian
        assert np.frombuffer(f.read(), ">u2")[0] == data[0, 0, 0]
    ds = _check_values(ctx, dict(path=path), (4,), (5, 6))
    assert ds.dtype == np.dtype("uint16")


def test_big_endian_v2(ctx, tmp_path):
    data = _data((4, 5, 6), ">f8")
    path = _write(tmp_path / "be.zarr", data, chunks=(3, 5, 6), zarr_format=2)
    ds = _check_values(ctx, dict(path=path), (4,), (5, 6))
    assert ds.dtype.str == ">f8"


def test_partitions_follow_shards(ctx, tmp_path):
    """Sharded: partitions start on shard boundaries along nav (the shard is what zarr reads)."""
    data = _data((8, 6, 10, 12))
    path = _write(tmp_path / "sh.zarr", data, shards=(2, 6, 10, 12), chunks=(1, 3, 5, 6),
                  compressors=ZstdCodec(level=1))
    ds = _check_values(ctx, dict(path=path, num_partitions=3), (8, 6), (10, 12))
    assert ds.frame_alignment == 12  # two rows of the scan
    assert all(start % 12 == 0 for start, _ in ds.partition_bounds())
    info = ds.layout_info()
    assert info["shards"] == (2, 6, 10, 12) and info["chunks"] == (1, 3, 5, 6)
    assert "Zstd" in info["compressors"]


def test_partitions_follow_chunks(ctx, tmp_path):
    data = _data((9, 4, 4))
    path = _write(tmp_path / "c.zarr", data, chunks=(3, 2, 4))
    ds = _check_values(ctx, dict(path=path, num_partitions=2), (9,), (4, 4))
    assert ds.frame_alignment == 3
    assert [s % 3 for s, _ in ds.partition_bounds()] == [0, 0]


@pytest.mark.parametrize("io_backend", ["mmap", "buffered", "direct"])
def test_native_chunk_files(ctx, tmp_path, io_backend):
    """Uncompressed chunks of whole frames (edge chunk padded by zarr): read by the I/O
    backend, partitions on chunk-file boundaries, tiles no deeper than a file of 1 MiB."""
    data = _data((13, 2, 128, 128))  # chunk files of 2 nav rows: 4 frames, 128 KiB
    path = _write(tmp_path / "n.zarr", data, chunks=(2, 2, 128, 128), compressors=None)
    ds = _check_values(ctx, dict(path=path, io_backend=io_backend, num_partitions=3), (13, 2),
                       (128, 128))
    assert ds.native and ds.layout_info()["read_path"] == f"native ({io_backend})"
    assert len(ds.fileset.files) == 7 and ds.fileset.files[-1].image_count == 2
    assert ds.frame_alignment == 4
    assert ds.meta.metadata["io_backend"] == io_backend


@pytest.mark.parametrize("version", [2, 3])
def test_chunks_larger_than_the_array(ctx, tmp_path, version):
    """zarr pads chunks to their shape: larger than the frame, zarr reads them; larger along
    the one chunked nav axis, the padding follows the frames and udfkit reads them."""
    data = _data((3, 4, 5, 6))
    path = _write(tmp_path / "a.zarr", data, chunks=(1, 4, 8, 8), zarr_format=version,
                  compressors=None)
    assert not _check_values(ctx, dict(path=path), (3, 4), (5, 6)).native
    path = _write(tmp_path / "b.zarr", data, chunks=(1, 8, 5, 6), zarr_format=version,
                  compressors=None)
    ds = _check_values(ctx, dict(path=path, num_partitions=2), (3, 4), (5, 6))
    assert ds.native and [f.image_count for f in ds.fileset.files] == [4, 4, 4]
    path = _write(tmp_path / "c.zarr", data, chunks=(2, 8, 5, 6), zarr_format=version,
                  compressors=None)
    assert not _check_values(ctx, dict(path=path), (3, 4), (5, 6)).native


def test_native_with_big_files_bounds_tile_depth(ctx, tmp_path):
    data = _data((16, 256, 256))
    path = _write(tmp_path / "n.zarr", data, chunks=(8, 256, 256), compressors=None)  # 1 MiB
    ds = _check_values(ctx, dict(path=path), (16,), (256, 256))
    assert ds.native and ds.get_tiling_constraints().max_depth == 8


def test_unwritten_chunks_go_through_zarr(ctx, tmp_path):
    """Chunks never written (all fill value): zarr fills them; an io_backend then does not
    apply but is no error, as it depends on the data."""
    data = _data((6, 4, 4))
    data[2:4] = 0
    path = _write(tmp_path / "f.zarr", data, chunks=(2, 4, 4), compressors=None)
    assert len(_chunk_files(path)) == 2
    ds = _check_values(ctx, dict(path=path, io_backend="buffered"), (6,), (4, 4))
    assert not ds.native and "never written" in ds.layout_info()["read_path"]


def test_io_backend_for_a_compressed_array(ctx, tmp_path):
    path = _write(tmp_path / "c.zarr", _data((4, 5, 6)), compressors=ZstdCodec())
    with pytest.raises(DataSetError, match="c.zarr.*io_backend='mmap' does not apply.*Zstd"):
        ctx.load("zarr", path=path, io_backend="mmap")


def test_native_chunk_file_of_wrong_size(ctx, tmp_path):
    path = _write(tmp_path / "w.zarr", _data((4, 5, 6)), chunks=(2, 5, 6), compressors=None)
    chunk = _chunk_files(path)[1]
    os.truncate(chunk, 10)
    with pytest.raises(DataSetError, match="w.zarr.*chunk file .*c/1/0/0' has 10 bytes.* 120"):
        ctx.load("zarr", path=path)


def test_reshape_nav_and_sig(ctx, tmp_path):
    data = _data((6, 4, 5))
    path = _write(tmp_path / "r.zarr", data, chunks=(2, 4, 5))
    _check_values(ctx, dict(path=path, nav_shape=(2, 3), sig_shape=(20,)), (2, 3), (20,))
    # a frame of one row of the stored frames: the row axis counts frames too
    _check_values(ctx, dict(path=path, sig_dims=1), (6, 4), (5,))
    with pytest.raises(DataSetError, match=r"sig_shape \(2, 5\).*whole trailing axes"):
        ctx.load("zarr", path=path, sig_shape=(2, 5))


def test_sync_offset_and_partial(ctx, tmp_path):
    data = _data((6, 3, 3))
    path = _write(tmp_path / "o.zarr", data, chunks=(4, 3, 3))
    ds = ctx.load("zarr", path=path, sync_offset=2, nav_shape=(8,), allow_partial=True)
    out, hits = read_all(ds)
    np.testing.assert_array_equal(out[:4], data[2:])
    assert hits[:4].all() and not hits[4:].any()
    with pytest.raises(DataSetError, match="allow_partial"):
        ctx.load("zarr", path=path, nav_shape=(8,))


# -- array paths ---------------------------------------------------------------------------

@pytest.fixture
def group_store(tmp_path):
    path = str(tmp_path / "g.zarr")
    root = zarr.open_group(path, mode="w")
    root.create_array("scan/data", shape=(4, 5, 6), chunks=(1, 5, 6), dtype="uint16")[...] = \
        _data((4, 5, 6))
    root.create_array("scan/mask", shape=(5, 6), dtype="bool")
    root.create_array("scan/nav", shape=(4,), dtype="float64")
    root.create_group("empty")
    return path


def test_array_path_default_is_the_one_3d_array(ctx, group_store):
    ds = _check_values(ctx, dict(path=group_store), (4,), (5, 6), array_path="scan/data")
    assert ds.layout_info()["array_path"] == "scan/data"
    assert "scan/data" in ds.description


@pytest.mark.parametrize("array_path", ["scan/data", "/scan/data", "scan"])
def test_array_path_given(ctx, group_store, array_path):
    _check_values(ctx, dict(path=group_store, array_path=array_path), (4,), (5, 6),
                  array_path="scan/data")


def test_array_path_missing_lists_arrays(ctx, group_store):
    with pytest.raises(DataSetError) as info:
        ctx.load("zarr", path=group_store, array_path="scan/dat")
    msg = str(info.value)
    assert "g.zarr" in msg and "'scan/dat'" in msg
    assert "'scan/data' (4, 5, 6) uint16" in msg and "'scan/mask' (5, 6) bool" in msg


def test_several_candidates(ctx, group_store):
    zarr.open_group(group_store, mode="a").create_array("other", shape=(2, 3, 4), dtype="int8")
    with pytest.raises(DataSetError) as info:
        ctx.load("zarr", path=group_store)
    msg = str(info.value)
    assert "2 arrays of 3 or more dimensions" in msg and "array_path=" in msg
    assert "'other' (2, 3, 4) int8" in msg and "'scan/data' (4, 5, 6) uint16" in msg


def test_no_candidate(ctx, group_store):
    with pytest.raises(DataSetError,
                       match="'empty' holds no array of 3 or more.*'scan/nav' \\(4,\\) float64"):
        ctx.load("zarr", path=group_store, array_path="empty")
    # a 2D array named explicitly is a nav axis + a 1D signal
    ds = ctx.load("zarr", path=group_store, array_path="scan/mask")
    assert ds.shape.to_tuple() == (5, 6) and ds.shape.sig.dims == 1


def test_array_of_one_dim(ctx, group_store):
    with pytest.raises(DataSetError, match=r"'scan/nav' has shape \(4,\); expected at least 2"):
        ctx.load("zarr", path=group_store, array_path="scan/nav")


def test_non_numeric_dtype(ctx, tmp_path):
    z = zarr.create_array(str(tmp_path / "s.zarr"), shape=(2, 3, 3), dtype=str)
    z[...] = "x"
    with pytest.raises(DataSetError, match="expected a numeric dtype"):
        ctx.load("zarr", path=str(tmp_path / "s.zarr"))


# -- zip stores, detection, info -------------------------------------------------------------

def _zip_store(path, data, **kwargs):
    with zarr.storage.ZipStore(str(path), mode="w") as store:
        zarr.create_array(store, shape=data.shape, dtype=data.dtype, **kwargs)[...] = data
    return str(path)


def test_zip_store_in_a_group(ctx, tmp_path):
    data = _data((3, 4, 5, 6))
    path = str(tmp_path / "s.zip")
    with zarr.storage.ZipStore(path, mode="w") as store:
        g = zarr.open_group(store, mode="w", zarr_format=2)
        g.create_array("a/b", shape=data.shape, dtype=data.dtype, chunks=(2, 2, 5, 6))[...] = data
    ds = ctx.load("auto", path=path)
    assert ds.format_name == "zarr"
    out, _ = read_all(ds)
    np.testing.assert_array_equal(out, data.reshape(12, 5, 6))
    assert ds.layout_info()["store"] == "zip" and ds.layout_info()["zarr_format"] == 2
    assert ds.meta.metadata["file_bytes"] == os.path.getsize(path)


def test_guess_can_open(tmp_path):
    fmt = get_format("zarr")
    v3 = _write(tmp_path / "v3.zarr", _data((2, 3, 3)))
    v2 = _write(tmp_path / "v2", _data((2, 3, 3)), zarr_format=2)
    group = str(tmp_path / "group")
    zarr.open_group(group, mode="w", zarr_format=2)
    zipped = _zip_store(tmp_path / "s.zip", _data((2, 3, 3)))
    os.mkdir(tmp_path / "empty.zarr")
    os.mkdir(tmp_path / "plain")
    with zipfile.ZipFile(tmp_path / "other.zip", "w") as zf:
        zf.writestr("readme.txt", "no zarr")
    scores = {name: fmt.guess_can_open(str(tmp_path / name))
              for name in ("v3.zarr", "v2", "group", "s.zip", "empty.zarr", "plain", "other.zip")}
    assert scores == {"v3.zarr": 1.0, "v2": 1.0, "group": 1.0, "s.zip": 1.0, "empty.zarr": 0.5,
                      "plain": 0.0, "other.zip": 0.0}
    assert detect_format({"path": v3}) == detect_format({"path": v2}) == "zarr"
    assert detect_format({"path": zipped}) == "zarr"
    assert fmt.guess_can_open(v3 + "/") == 1.0


def test_udfkit_info_cli(tmp_path):
    """``udfkit info STORE`` works without flags on a directory store."""
    data = _data((4, 6, 8, 8))
    path = _write(tmp_path / "scan.zarr", data, chunks=(1, 6, 8, 8), shards=(2, 6, 8, 8))
    out = subprocess.run([sys.executable, "-m", "udfkit", "info", path, "--json"],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    facts = json.loads(out.stdout)
    assert facts["format"] == "zarr"
    assert facts["nav_shape"] == [4, 6] and facts["sig_shape"] == [8, 8]
    assert facts["dtype"] == "<u2"
    assert facts["file_size"] == sum(os.path.getsize(f) for f in _chunk_files(path)) + \
        os.path.getsize(os.path.join(path, "zarr.json"))
    assert facts["layout"]["shards"] == [2, 6, 8, 8]
    assert facts["layout"]["zarr_format"] == 3
    out = subprocess.run([sys.executable, "-m", "udfkit", "info", path, "--array-path", "nope"],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode != 0 and "nope" in out.stderr and "Traceback" not in out.stderr


# -- bad input -------------------------------------------------------------------------------

def test_missing_path(ctx, tmp_path):
    with pytest.raises(DataSetFileNotFoundError, match="nothere.zarr"):
        ctx.load("zarr", path=str(tmp_path / "nothere.zarr"))


def test_not_a_store(ctx, tmp_path):
    os.mkdir(tmp_path / "d.zarr")
    with pytest.raises(DataSetError, match="d.zarr' is not a zarr store"):
        ctx.load("zarr", path=str(tmp_path / "d.zarr"))
    (tmp_path / "f.bin").write_bytes(b"\0" * 100)
    with pytest.raises(DataSetError, match="f.bin' is a file but not a zip file"):
        ctx.load("zarr", path=str(tmp_path / "f.bin"))
    with zipfile.ZipFile(tmp_path / "other.zip", "w") as zf:
        zf.writestr("readme.txt", "no zarr")
    with pytest.raises(DataSetError, match="other.zip' is not a zarr store"):
        ctx.load("zarr", path=str(tmp_path / "other.zip"))


BROKEN = {
    "shape-text": lambda m, v: m.__setitem__("shape", "x"),
    "shape-negative": lambda m, v: m.__setitem__("shape", [4, -5, 6]),
    "dtype": lambda m, v: m.__setitem__("data_type" if v == 3 else "dtype", "uint17"),
    "chunks": lambda m, v: m.__setitem__("chunk_grid" if v == 3 else "chunks", None),
    "codec": lambda m, v: (m["codecs"][1].__setitem__("name", "nosuchcodec") if v == 3
                           else m["compressor"].__setitem__("id", "nosuchcodec")),
}


@pytest.mark.parametrize("broken", sorted(BROKEN))
@pytest.mark.parametrize("version", [2, 3])
def test_broken_metadata(ctx, tmp_path, version, broken):
    path = _write(tmp_path / "b.zarr", _data((4, 5, 6)), zarr_format=version,
                  compressors=ZstdCodec() if version == 3 else numcodecs.Zstd())
    meta_file = os.path.join(path, "zarr.json" if version == 3 else ".zarray")
    with open(meta_file) as f:
        meta = json.load(f)
    BROKEN[broken](meta, version)
    with open(meta_file, "w") as f:
        json.dump(meta, f)
    with pytest.raises(DataSetError) as info:
        ctx.load("zarr", path=path)
    msg = str(info.value)
    assert "b.zarr" in msg
    if broken == "codec":
        assert "nosuchcodec" in msg and "codec that this installation cannot decode" in msg


def test_broken_json(ctx, tmp_path):
    path = _write(tmp_path / "j.zarr", _data((4, 5, 6)))
    with open(os.path.join(path, "zarr.json"), "w") as f:
        f.write("{not json")
    with pytest.raises(DataSetError, match="j.zarr.*not valid zarr.*JSONDecodeError"):
        ctx.load("zarr", path=path)


@pytest.mark.parametrize("compressed", [True, False])
def test_damaged_chunk_names_store_and_array(pctx, tmp_path, compressed):
    """A damaged chunk of an array in a group: the run's error names the store and the array
    and the frames it was reading, also from a worker process."""
    path = str(tmp_path / "d.zarr")
    root = zarr.open_group(path, mode="w")
    # uncompressed chunks that split the frame: zarr reads them, and fails on the short one
    root.create_array("raw/frames", shape=(6, 4, 4), chunks=(2, 4, 4) if compressed else (2, 2, 4),
                      dtype="uint16", compressors=ZstdCodec() if compressed else None)[...] = \
        _data((6, 4, 4)) + 1
    chunk = os.path.join(path, "raw", "frames", "c", "1", "0", "0")
    os.truncate(chunk, os.path.getsize(chunk) // 2)
    ds = pctx.load("zarr", path=path)
    with pytest.raises(DataSetError) as info:
        pctx.run_udf(dataset=ds, udf=SumUDF())
    msg = str(info.value)
    assert "d.zarr" in msg and "'raw/frames'" in msg and "reading frames" in msg


def test_store_removed_after_load(ctx, tmp_path):
    path = _write(tmp_path / "gone.zarr", _data((4, 5, 6)))
    ds = ctx.load("zarr", path=path)
    for f in _chunk_files(path) + [os.path.join(path, "zarr.json")]:
        os.remove(f)
    with pytest.raises(DataSetError, match="gone.zarr"):
        ctx.run_udf(dataset=ds, udf=SumUDF())


def test_missing_zarr_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "zarr", None)  # import zarr now raises ImportError
    with pytest.raises(DataSetError, match=r"pip install 'udfkit\[zarr\]'"):
        get_format("zarr").dataset_class()


# -- resources -------------------------------------------------------------------------------

def _fds() -> int:
    return len(os.listdir("/proc/self/fd"))


@pytest.mark.parametrize("kind", ["zip", "directory", "native"])
def test_no_file_handles_left(ctx, tmp_path, kind):
    data = _data((6, 5, 4))
    if kind == "zip":
        path = _zip_store(tmp_path / "s.zip", data, chunks=(2, 5, 4))
    else:
        path = _write(tmp_path / "s.zarr", data, chunks=(2, 5, 4),
                      compressors=None if kind == "native" else ZstdCodec())
    assert ctx.load("zarr", path=path).native == (kind == "native")

    def use():
        ds = ctx.load("zarr", path=path, num_partitions=3)
        ctx.run_udf(dataset=ds, udf=[SumUDF(), SumSigUDF()])
        read_all(ds)
        with pytest.raises(DataSetError):
            ctx.load("zarr", path=path, array_path="nope")

    use()  # first use may open what lives for the process (imports, caches)
    before = _fds()
    for _ in range(3):
        use()
    assert _fds() == before


def test_module_imports_cheaply_and_leaves_zarrs_threads_alone(tmp_path):
    """Importing the format does not import zarr; reading does not start zarr's event loop
    thread or its thread pool (decoding runs in the worker's own thread)."""
    path = _write(tmp_path / "t.zarr", _data((6, 5, 4)), chunks=(1, 5, 4))
    script = textwrap.dedent(f"""
        import sys, threading
        import udfkit.io.formats.zarr
        from udfkit.io.formats import detect_format
        assert detect_format({{"path": {path!r}}}) == "zarr"
        assert "zarr" not in sys.modules, "format detection imported zarr"
        from udfkit import Context
        from udfkit.udf import SumUDF
        with Context.make_with("threads", cpus=2) as ctx:
            ctx.run_udf(dataset=ctx.load("zarr", path={path!r}, num_partitions=3), udf=SumUDF())
        names = [t.name for t in threading.enumerate()]
        assert not any(n.startswith("zarr") for n in names), names
        print("ok")
    """)
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr
