"""The dask format: conformance suite, chunk-aligned partitions, graph pickling, errors."""

import os
import pickle
import threading
import warnings
import zlib

import cloudpickle
import dask
import dask.array as da
import numpy as np
import pytest

from udfkit.errors import DataSetError, UdfkitWarning
from udfkit.io.formats.dask import DaskDataSet, chunk_row_bounds
from udfkit.testing import DataSetTests
from udfkit.testing.contexts import ALL_EXECUTORS, SharedContexts
from udfkit.udf import SumSigUDF, SumUDF

# one Context per executor for the whole module, the conformance class included
shared = SharedContexts(ALL_EXECUTORS)
_close_contexts = shared.closing_fixture()


def _chunks(data, sig_dims, variant, rng):
    """Chunks for ``data`` of one kind: regular, irregular along nav, or splitting the signal."""
    nav, sig = data.shape[:-sig_dims], data.shape[-sig_dims:]
    if variant == "irregular":
        # cut the first nav axis at random places: chunk rows of different lengths
        n = nav[0]
        cuts = sorted(set(rng.integers(1, n, size=2).tolist())) if n > 2 else []
        first = tuple(np.diff([0, *cuts, n]).tolist())
        return (first,) + tuple(int(rng.integers(1, m + 1)) for m in nav[1:]) + sig
    if variant == "sig":
        return tuple(int(rng.integers(1, m + 1)) for m in nav) + tuple(max(1, s // 2) for s in sig)
    return tuple(int(rng.integers(1, m + 1)) for m in nav) + sig


class TestDask(DataSetTests):
    """Dask arrays of several chunkings; some over a memmapped .npy file (pickled by
    reference)."""

    format = "dask"
    sig_dims = (1, 2)
    supports_corrupt = False  # no file that loading checks

    @pytest.fixture(scope="class")
    @classmethod
    def contexts(cls):
        return shared

    def write(self, tmp_path, data, *, sig_dims):
        # the variant follows from the data, so that a failing hypothesis example repeats
        rng = np.random.default_rng(zlib.crc32(data.tobytes()) + data.size)
        variant = ("regular", "irregular", "sig", "memmap")[int(rng.integers(0, 4))]
        source = data
        if variant == "memmap":
            np.save(tmp_path / "data.npy", data)
            source = np.load(tmp_path / "data.npy", mmap_mode="r")
        return dict(dask_array=da.from_array(source, chunks=_chunks(data, sig_dims, variant, rng)),
                    sig_dims=sig_dims)


def _sums(frames):
    return frames.reshape(len(frames), -1).astype(np.float64).sum(axis=1)


def _run_sums(ctx, ds, **kw):
    sig, whole = ctx.run_udf(dataset=ds, udf=[SumSigUDF(), SumUDF()], **kw)
    return sig["intensity"].data, whole["intensity"].data


# -- partitions follow the chunks ---------------------------------------------------------------

@pytest.mark.parametrize("shape, chunks, sig_dims", [
    ((10, 4, 4, 4), ((3, 5, 2), 4, 4, 4), 3),
    ((2, 5, 4, 4), (1, (2, 2, 1), 4, 4), 2),
    ((4, 5, 4, 4), (2, (3, 2), 4, 4), 2),
    ((3, 4, 4, 4), (1, 1, 2, 4), 2),
], ids=["irregular-1d", "inner-irregular", "inner-split", "one-frame-sig-split"])
@pytest.mark.parametrize("num_partitions", [1, 2, 3, 7])
@pytest.mark.parametrize("sync_offset", [0, 2, -3])
def test_partitions_cut_on_chunk_rows_and_compute_each_chunk_once(shape, chunks, sig_dims,
                                                                   num_partitions, sync_offset):
    data = np.arange(np.prod(shape), dtype=np.float32).reshape(shape)
    calls = []

    def record(block, block_info=None):
        calls.append(tuple(block_info[0]["chunk-location"]))
        return block

    arr = da.from_array(data, chunks=chunks).map_blocks(record, dtype=data.dtype)
    ctx = shared("inline")
    ds = ctx.load("dask", dask_array=arr, sig_dims=sig_dims, num_partitions=num_partitions,
                  sync_offset=sync_offset)
    rows = chunk_row_bounds(arr.shape[:-sig_dims], arr.chunks[:-sig_dims]).tolist()
    for start, stop in ds.partition_bounds():
        for b in (start, stop):
            f = min(max(b + sync_offset, 0), ds.image_count)
            assert f in rows or b in (0, ds.shape.nav.size), (b, rows)
    sums, _ = _run_sums(ctx, ds)
    frames = data.reshape(-1, *data.shape[-sig_dims:])
    n = len(frames)
    expect = np.full(n, np.nan)
    lo, hi = max(0, -sync_offset), min(n, n - sync_offset)
    expect[lo:hi] = _sums(frames)[lo + sync_offset:hi + sync_offset]
    np.testing.assert_array_equal(sums.reshape(-1), expect)
    assert len(calls) == len(set(calls)), f"chunks computed more than once: {sorted(calls)}"


def test_chunk_rows_too_large_warn_once_and_read_in_parts():
    arr = da.zeros((4, 4096, 64, 64), chunks=(4, 64, 64, 64))  # 512 MiB chunk rows
    with pytest.warns(UdfkitWarning, match="computed several times"):
        ds = shared("inline").load("dask", dask_array=arr)
    assert any("at a time" in note for note in ds.layout_info()["notes"])


def test_well_chunked_arrays_do_not_warn():
    arr = da.zeros((64, 256, 64, 64), chunks=(1, 256, 64, 64))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ds = shared("inline").load("dask", dask_array=arr)
    info = ds.layout_info()
    assert info["notes"] == [] and info["partitions_follow"] == "chunk rows (regular)"
    assert ds.frame_alignment == 256


def test_sig_shape_across_axes_is_rechunked_and_said():
    data = np.arange(6 * 64, dtype=np.uint16).reshape(3, 128)  # two frames per row
    ds = shared("inline").load("dask", dask_array=da.from_array(data, chunks=(1, 32)),
                               sig_shape=(8, 8))
    assert ds.shape.to_tuple() == (6, 8, 8)
    assert any("rechunked" in note for note in ds.layout_info()["notes"])
    sums, _ = _run_sums(shared("inline"), ds)
    np.testing.assert_array_equal(sums, data.reshape(6, 64).astype(np.float64).sum(axis=1))


def test_frames_on_the_last_axis_need_no_rechunk():
    data = np.arange(6 * 64, dtype=np.uint16).reshape(6, 64)
    ds = shared("inline").load("dask", dask_array=da.from_array(data, chunks=(2, 32)),
                               sig_shape=(8, 8))
    assert ds.layout_info()["notes"] == []
    sums, _ = _run_sums(shared("inline"), ds)
    np.testing.assert_array_equal(sums, data.astype(np.float64).sum(axis=1))


def test_preserve_dimensions_false_puts_the_most_chunked_nav_axis_first():
    data = np.arange(4 * 6 * 3 * 3, dtype=np.int32).reshape(4, 6, 3, 3)
    arr = da.from_array(data, chunks=(4, 1, 3, 3))
    ctx = shared("inline")
    kept = ctx.load("dask", dask_array=arr, sig_dims=2)
    moved = ctx.load("dask", dask_array=arr, sig_dims=2, preserve_dimensions=False)
    assert kept.shape.nav.to_tuple() == (4, 6) and moved.shape.nav.to_tuple() == (6, 4)
    sums, _ = _run_sums(ctx, moved)
    np.testing.assert_array_equal(sums, data.transpose(1, 0, 2, 3).sum(axis=(2, 3)))


def test_min_size_merges_chunks_into_fewer_partitions():
    arr = da.zeros((64, 32, 32), chunks=(1, 32, 32), dtype=np.float64)  # 8 KiB frames
    ctx = shared("inline")
    ctx.executor  # noqa: B018 - one worker: the default is one partition per 8 MiB anyway
    few = ctx.load("dask", dask_array=arr, min_size=256 << 10)
    assert few.get_num_partitions() <= 2
    with pytest.raises(DataSetError, match="min_size"):
        ctx.load("dask", dask_array=arr, min_size=-1)


def test_auto_picks_dask_for_dask_array():
    ds = shared("inline").load("auto", dask_array=da.zeros((3, 4, 4), chunks=2))
    assert isinstance(ds, DaskDataSet) and ds.shape.to_tuple() == (3, 4, 4)


# -- graphs on workers ----------------------------------------------------------------------------

@pytest.mark.parametrize("executor", ["processes", "dask"])
def test_lambdas_and_delayed_parts_compute_on_workers(executor):
    # parts from delayed calls and a lambda in the graph: cloudpickle takes both
    parts = [da.from_delayed(dask.delayed(np.full)((3, 5, 5), i, dtype=np.float32), (3, 5, 5),
                             dtype=np.float32) for i in range(4)]
    arr = da.concatenate(parts).map_blocks(lambda b: b * 2 + 1, dtype=np.float32)
    ctx = shared(executor)
    ds = ctx.load("dask", dask_array=arr, num_partitions=3)
    sums, total = _run_sums(ctx, ds)
    expect = np.repeat([(2 * i + 1) * 25.0 for i in range(4)], 3)
    np.testing.assert_array_equal(sums, expect)
    np.testing.assert_array_equal(total, np.full((5, 5), sum(3 * (2 * i + 1) for i in range(4))))


def _locked_array():
    lock = threading.Lock()

    def frames(lock):
        with lock:
            return np.ones((4, 3, 3), dtype=np.uint8)

    return da.from_delayed(dask.delayed(frames)(lock), (4, 3, 3), dtype=np.uint8)


@pytest.mark.parametrize("executor", ["processes", "inline-debug"])
def test_unpicklable_graph_is_refused_at_load(executor):
    arr = _locked_array()
    with pytest.raises(DataSetError) as info:
        shared(executor).load("dask", dask_array=arr)
    msg = str(info.value)
    assert arr.name in msg and "cannot be pickled" in msg and "lock" in msg


def test_unpicklable_graph_runs_where_nothing_is_pickled():
    ctx = shared("inline")
    sums, _ = _run_sums(ctx, ctx.load("dask", dask_array=_locked_array()))
    np.testing.assert_array_equal(sums, np.full(4, 9.0))


def test_failing_graph_names_the_array():
    def broken(block):
        raise OSError("disk gone")

    arr = da.zeros((4, 3, 3), chunks=2).map_blocks(broken, dtype=np.float64)
    ctx = shared("processes")
    ds = ctx.load("dask", dask_array=arr)
    with pytest.raises(DataSetError, match=f"{arr.name}.*OSError: disk gone"):
        ctx.run_udf(dataset=ds, udf=SumUDF())


# -- memmaps travel by reference ------------------------------------------------------------------

@pytest.fixture
def memmapped(tmp_path):
    data = np.arange(256 * 32 * 32, dtype=np.uint16).reshape(16, 16, 32, 32)
    np.save(tmp_path / "scan.npy", data)
    return data, np.load(tmp_path / "scan.npy", mmap_mode="r"), tmp_path / "scan.npy"


def test_file_backed_memmap_pickles_by_reference(memmapped):
    data, mm, path = memmapped
    # a graph holding the memmap itself (map_blocks argument), not a copy
    arr = da.map_blocks(lambda b, m: b + m[:1, :1].astype(np.uint32), da.zeros(
        mm.shape, chunks=(2, 16, 32, 32), dtype=np.uint32), mm, dtype=np.uint32)
    ds = shared("inline").load("dask", dask_array=arr, num_partitions=4)
    for p in ds.get_partitions():
        size = len(cloudpickle.dumps(p))
        assert size < 16 << 10, f"partition {p.index} pickles to {size} bytes"
    # on the "worker": the file mapped again
    part = pickle.loads(pickle.dumps(ds.get_partitions()[1]))
    with part.open_source(np.arange(part.start, part.start + 8), 4) as src:
        flat, offsets = src.read(0, 4)
    o = int(offsets[1])
    np.testing.assert_array_equal(flat[o:o + 32 * 32], data[0, 0].ravel())


def test_memmap_partitions_pickle_small(memmapped):
    data, mm, path = memmapped
    arr = da.from_array(mm, chunks=(2, 16, 32, 32))
    naive = len(cloudpickle.dumps(arr[:2]))
    assert naive > data.nbytes, "dask puts the whole memmap into the graph"
    ds = shared("inline").load("dask", dask_array=arr, num_partitions=8)
    for p in ds.get_partitions():
        # its own frames (dask >= 2025 copies a memmap into memory in from_array, so they
        # travel by value) and a little graph, not the file
        size = len(cloudpickle.dumps(p))
        own = p.num_frames * 32 * 32 * 2
        assert size < own + (8 << 10), f"partition {p.index} pickles to {size} bytes, has {own}"


@pytest.mark.parametrize("executor", ["processes", "dask"])
def test_memmap_values_on_workers(memmapped, executor):
    data, mm, _ = memmapped
    # a view in the graph: a slice of the memmap, reversed along an axis
    arr = da.from_array(mm[2:, :, ::-1], chunks=(3, 8, 32, 32))
    ctx = shared(executor)
    sums, total = _run_sums(ctx, ctx.load("dask", dask_array=arr))
    np.testing.assert_array_equal(sums, data[2:, :, ::-1].astype(np.float64).sum(axis=(2, 3)))
    np.testing.assert_array_equal(total, data[2:].astype(np.float64).sum(axis=(0, 1))[::-1])


def _open_fds():
    """Open files of this process: sockets, pipes and event fds of the dask and process
    contexts other tests of this module keep alive come and go on their own schedule."""
    files = 0
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:  # closed meanwhile (the listing's own fd)
            continue
        files += target.startswith("/") and not target.startswith("/dev/")
    return files


def test_no_file_handle_leaks(memmapped):
    data, mm, _ = memmapped
    ctx = shared("inline-debug")  # every partition pickled and unpickled, as on a worker
    arr = da.from_array(mm, chunks=(4, 16, 32, 32))
    _run_sums(ctx, ctx.load("dask", dask_array=arr))  # warm up imports and caches
    before = _open_fds()
    for _ in range(3):
        _run_sums(ctx, ctx.load("dask", dask_array=arr, num_partitions=4))
    assert _open_fds() <= before


# -- bad input ----------------------------------------------------------------------------------

def test_unknown_chunk_sizes():
    x = da.from_array(np.arange(60.0).reshape(15, 2, 2), chunks=5)
    arr = x[x[:, 0, 0] > 10]
    with pytest.raises(DataSetError, match=r"unknown chunk sizes.*compute_chunk_sizes\(\)") as info:
        shared("inline").load("dask", dask_array=arr)
    assert arr.name in str(info.value)
    ds = shared("inline").load("dask", dask_array=arr.compute_chunk_sizes())
    assert ds.shape.to_tuple() == (12, 2, 2)


@pytest.mark.parametrize("kwargs, match", [
    (dict(dask_array=np.zeros((3, 4, 4))), "expected a dask.array.Array, got ndarray"),
    (dict(dask_array=da.zeros((3, 4, 4)), io_backend="mmap"), "io_backend.*expected None"),
    (dict(dask_array=da.zeros((3, 4, 4), dtype=object, chunks=3)), "numeric dtype"),
    (dict(dask_array=da.zeros((3, 4, 4)), sig_dims=3), "no navigation axis"),
    (dict(dask_array=da.zeros((3, 4, 4)), nav_shape=(4,)), "nav_shape"),
    (dict(dask_array=da.zeros((3, 4, 4)), sync_offset=3), "sync_offset 3 is out of range"),
    (dict(dask_array=da.zeros((3, 4, 4)), dask=1), "unknown parameter 'dask'"),
])
def test_bad_input(kwargs, match):
    with pytest.raises(DataSetError, match=match):
        shared("inline").load("dask", **kwargs)


def test_chunks_computed_as_arrays_are_lent_not_copied():
    """A run of frames that is one chunk, computed by dask as a C-contiguous array of the
    stored dtype (what ``da.from_array`` of a numpy array or a memmap gives), comes out as a
    view of that array: the tiles share its memory (one copy less: the dask-over-memmap
    speed), read-only, with the array's numbers. (Runs of several small chunks are copied
    into one buffer; a partition of one chunk row is one run.)"""
    data = np.arange(6 * 4 * 5 * 3, dtype=np.uint16).reshape(6, 4, 5, 3)
    computed = {}

    def keep(block, block_info=None):
        out = block.copy()
        computed[block_info[0]["chunk-location"][0]] = out
        return out

    arr = da.from_array(data, chunks=(2, 4, 5, 3)).map_blocks(keep, dtype=data.dtype)
    ds = shared("inline").load("dask", dask_array=arr, sig_dims=2, num_partitions=3)
    part = ds.get_partitions()[1]
    assert (part.start, part.stop) == (8, 16)
    frames = np.arange(part.start, part.stop)
    src = part.open_source(frames, depth=len(frames))
    try:
        flat, offsets = src.read(0, len(frames))
        assert np.shares_memory(flat, computed[1])
        assert not flat.flags.writeable
        got = np.stack([flat[o:o + 15].reshape(5, 3) for o in offsets])
        np.testing.assert_array_equal(got, data.reshape(-1, 5, 3)[frames])
    finally:
        src.close()
    assert computed[1].flags.writeable, "the lent array itself is left as it was"
    sums, _ = _run_sums(shared("inline"), ds)
    np.testing.assert_array_equal(sums.reshape(-1), _sums(data.reshape(-1, 5, 3)))
