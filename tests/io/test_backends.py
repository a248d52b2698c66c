"""Conformance of the I/O backends: every backend × format × dtype × ROI × sync_offset gives
the same tiles as numpy (and so as every other backend), and the same UDF results."""

from __future__ import annotations

import os
from math import prod

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from udfkit import UDF, Context
from udfkit.errors import DataSetError
from udfkit.io.backends.buffered import BufferedBackend
from udfkit.io.backends.direct import DirectBackend
from udfkit.io.backends.mmap import MMapBackend
from udfkit.io.tiling import TilingScheme
from udfkit.udf import SumSigUDF, SumUDF

DTYPES = ["uint8", "uint16", ">u2", "int32", ">i4", "float32", ">f4", "float64", ">f8", "complex64"]
FORMATS = ["raw", "npy", "multi-raw"]


def backends():
    """Every backend, with small buffers so that partitions take many batches."""
    return {
        "mmap": MMapBackend(),
        "buffered": BufferedBackend(buffer_size=3000),
        "buffered-readahead": BufferedBackend(buffer_size=5000, readahead=True, max_gap=0),
        "direct": DirectBackend(buffer_size=8192),
        "direct-noreadahead": DirectBackend(buffer_size=4096, readahead=False, max_gap=1 << 20),
    }


BACKEND_NAMES = list(backends())


def values(dtype, shape, rng):
    dtype = np.dtype(dtype)
    if dtype.kind == "c":
        return (rng.integers(-50, 50, shape) + 1j * rng.integers(-50, 50, shape)).astype(dtype)
    if dtype.kind == "f":
        return (rng.standard_normal(shape) * 100).astype(dtype)
    info = np.iinfo(dtype)
    return rng.integers(max(info.min, -1000), min(info.max, 1000), shape, endpoint=True).astype(dtype)


def write_dataset(tmp_path, fmt, frames, *, n_files=2, file_header=0, frame_header=0, frame_footer=0,
                  seed=0):
    """Write ``frames`` (image_count, *sig) in ``fmt``; return ``ctx.load`` keyword arguments."""
    sig = frames.shape[1:]
    if fmt == "npy":
        path = tmp_path / "data.npy"
        np.save(path, frames)
        return dict(filetype="npy", path=str(path), sig_shape=sig)
    if fmt == "raw":
        path = tmp_path / "data.raw"
        frames.tofile(path)
        return dict(filetype="raw", path=str(path), dtype=frames.dtype.str, sig_shape=sig)
    rng = np.random.default_rng(seed)
    bounds = np.linspace(0, frames.shape[0], n_files + 1).astype(int)
    paths = []
    for i in range(n_files):
        path = tmp_path / f"part{i}.bin"
        with open(path, "wb") as f:
            # junk in the headers: a reader that includes them gives wrong numbers
            f.write(rng.integers(0, 256, file_header, dtype=np.uint8).tobytes())
            for frame in frames[bounds[i]:bounds[i + 1]]:
                f.write(rng.integers(0, 256, frame_header, dtype=np.uint8).tobytes())
                f.write(frame.tobytes())
                f.write(rng.integers(0, 256, frame_footer, dtype=np.uint8).tobytes())
        paths.append(str(path))
    return dict(filetype="raw", path=paths, dtype=frames.dtype.str, sig_shape=sig,
                file_header_bytes=file_header, frame_header_bytes=frame_header,
                frame_footer_bytes=frame_footer)


@st.composite
def cases(draw):
    dtype = draw(st.sampled_from(DTYPES))
    fmt = draw(st.sampled_from(FORMATS))
    sig = tuple(draw(st.lists(st.integers(1, 9), min_size=1, max_size=2)))
    nav = draw(st.integers(1, 40))
    extra = draw(st.integers(0, 3))
    sync = draw(st.integers(-(nav - 1), nav + extra - 1))
    roi_kind = draw(st.sampled_from(["none", "random", "sparse"]))
    rng_seed = draw(st.integers(0, 2**16))
    roi = None
    if roi_kind != "none":
        rng = np.random.default_rng(rng_seed)
        roi = rng.random(nav) < (0.6 if roi_kind == "random" else 0.1)
    headers = dict(n_files=draw(st.integers(1, 3)), file_header=draw(st.sampled_from([0, 3, 16, 4096])),
                   frame_header=draw(st.sampled_from([0, 1, 8, 100])),
                   frame_footer=draw(st.sampled_from([0, 2, 64]))) if fmt == "multi-raw" else {}
    depth = draw(st.integers(1, 7))
    split = draw(st.booleans()) and sig[0] > 1
    return dict(dtype=dtype, fmt=fmt, sig=sig, nav=nav, extra=extra, sync=sync, roi=roi,
                headers=headers, depth=depth, split=split, seed=rng_seed,
                num_partitions=draw(st.integers(1, 4)),
                dest=draw(st.sampled_from(["native", "float32", "float64"])))


def read_tiles(ds, scheme, dest, roi):
    nav = ds.shape.nav.size
    sig = ds.shape.sig.to_tuple()
    out = np.zeros((nav,) + sig, dest)
    hits = np.zeros((nav,) + sig, np.int32)
    for p in ds.get_partitions():
        proi = None if roi is None else roi[p.start:p.stop]
        for t in p.get_tiles(scheme, dest, proi):
            assert not t.data.flags.writeable
            sl = scheme[t.scheme_idx]
            idx = (np.asarray(t.frame_index),) + sl.get()
            out[idx] = t.data
            hits[idx] += 1
    return out, hits


@pytest.fixture(scope="module")
def inline():
    with Context.make_with("inline") as ctx:
        yield ctx


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                   HealthCheck.function_scoped_fixture])
@given(case=cases())
def test_tiles_equal_numpy_for_every_backend(inline, tmp_path_factory, io_helpers, case):
    tmp = tmp_path_factory.mktemp("conf")
    rng = np.random.default_rng(case["seed"])
    image_count = case["nav"] + case["extra"]
    frames = values(case["dtype"], (image_count,) + case["sig"], rng)
    load = write_dataset(tmp, case["fmt"], frames, seed=case["seed"], **case["headers"])
    filetype = load.pop("filetype")
    ref, processed = io_helpers.expected_frames(frames, case["nav"], case["sync"], case["roi"])
    ref = ref.astype(ref.dtype.newbyteorder("="))
    dest = ref.dtype if case["dest"] == "native" else np.result_type(case["dest"], ref.dtype)
    sig = case["sig"]
    tile_sig = (max(1, sig[0] // 2),) + sig[1:] if case["split"] else sig
    scheme = TilingScheme.make(sig, tile_sig, case["depth"], "tile")
    allow_partial = image_count - case["sync"] < case["nav"]
    for name, backend in backends().items():
        ds = inline.load(filetype, nav_shape=(case["nav"],), sync_offset=case["sync"],
                         io_backend=backend, num_partitions=case["num_partitions"],
                         allow_partial=allow_partial, **load)
        out, hits = read_tiles(ds, scheme, dest, case["roi"])
        assert np.all(hits[processed] == 1), name
        assert np.all(hits[~processed] == 0), name
        np.testing.assert_array_equal(out[processed], ref[processed].astype(dest), err_msg=name)


class FrameTotals(UDF):
    """Per-frame sums with a Python ``process_tile``: sees exactly the tiles the backend makes."""

    def get_result_buffers(self):
        return {"total": self.buffer(kind="nav", dtype="float64")}

    def process_tile(self, tile):
        self.results.total[:] += tile.reshape(tile.shape[0], -1).sum(axis=1)


@pytest.mark.parametrize("backend", BACKEND_NAMES)
@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("dtype", ["uint16", ">u2", "float32", ">f8"])
def test_udf_results_equal_numpy(inline, tmp_path, backend, fmt, dtype):
    rng = np.random.default_rng(1)
    nav, sig = (5, 7), (12, 10)
    frames = values(dtype, (prod(nav) + 2,) + sig, rng)
    load = write_dataset(tmp_path, fmt, frames, n_files=3, file_header=10, frame_header=6,
                         frame_footer=2)
    filetype = load.pop("filetype")
    roi = rng.random(nav) < 0.7
    ds = inline.load(filetype, nav_shape=nav, sync_offset=1, io_backend=backends()[backend],
                     num_partitions=3, **load)
    res = inline.run_udf(ds, [SumUDF(), SumSigUDF(), FrameTotals()], roi=roi)
    ref = frames[1:1 + prod(nav)].astype(np.float64).reshape(nav + sig) if frames.dtype.kind != "c" \
        else frames[1:1 + prod(nav)].reshape(nav + sig)
    np.testing.assert_allclose(res[0]["intensity"].data, ref[roi].sum(axis=0), rtol=1e-12)
    sums = ref.sum(axis=(2, 3))
    np.testing.assert_allclose(res[1]["intensity"].data[roi], sums[roi], rtol=1e-12)
    np.testing.assert_allclose(res[2]["total"].data[roi], sums[roi], rtol=1e-5)


@pytest.mark.parametrize("kind", ["threads", "processes"])
def test_block_backends_on_other_executors(tmp_path, kind):
    rng = np.random.default_rng(2)
    frames = values("uint16", (64, 16, 16), rng)
    load = write_dataset(tmp_path, "multi-raw", frames, n_files=3, frame_header=4)
    load.pop("filetype")
    with Context.make_with(kind, cpus=2) as ctx:
        for backend in ("buffered", "direct", BufferedBackend(buffer_size="4KiB", readahead=True)):
            ds = ctx.load("raw", nav_shape=(8, 8), io_backend=backend, num_partitions=4, **load)
            res = ctx.run_udf(ds, SumUDF())
            np.testing.assert_array_equal(res["intensity"].data, frames.sum(axis=0, dtype=np.float64))


# == the read plan decides the tile depth and the reads =======================================

def test_negotiated_depth_fits_the_buffer(inline, tmp_path):
    frames = np.zeros((100, 32, 32), np.uint16)  # 2 KiB frames
    path = tmp_path / "d.raw"
    frames.tofile(path)
    seen = []

    class Depths(UDF):
        def get_result_buffers(self):
            return {"x": self.buffer(kind="nav")}

        def process_tile(self, tile):
            seen.append(tile.shape[0])

    for buffer_size, expect in ((16 << 10, 8), (5000, 2), (100, 1)):
        seen.clear()
        ds = inline.load("raw", path=str(path), dtype="uint16", nav_shape=(100,), sig_shape=(32, 32),
                         io_backend=BufferedBackend(buffer_size=buffer_size), num_partitions=1)
        inline.run_udf(ds, Depths())
        assert max(seen) == expect, buffer_size
        assert sum(seen) == 100


def test_buffered_reads_whole_batches(tmp_path, monkeypatch):
    """A batch of many frames is one ``preadv``, not one per frame or tile."""
    frames = np.arange(64 * 8 * 8, dtype=np.uint16).reshape(64, 8, 8)
    path = tmp_path / "d.raw"
    frames.tofile(path)
    calls = []
    real = os.preadv

    def counting(fd, bufs, offset):
        calls.append((offset, sum(len(b) for b in bufs)))
        return real(fd, bufs, offset)

    monkeypatch.setattr(os, "preadv", counting)
    with Context.make_with("inline") as ctx:
        ds = ctx.load("raw", path=str(path), dtype="uint16", nav_shape=(64,), sig_shape=(8, 8),
                      io_backend=BufferedBackend(buffer_size=16 * 128), num_partitions=1)
        res = ctx.run_udf(ds, SumUDF())
    np.testing.assert_array_equal(res["intensity"].data, frames.sum(axis=0))
    assert calls == [(k * 2048, 2048) for k in range(4)]


def test_partitions_reuse_the_read_buffers(tmp_path, monkeypatch):
    """Partitions after the first take their buffers from the pool instead of faulting new ones
    in; with read-ahead a partition holds two of them."""
    from udfkit.io.backends import _buffers

    frames = np.arange(96 * 16 * 16, dtype=np.uint16).reshape(96, 16, 16)
    path = tmp_path / "d.raw"
    frames.tofile(path)
    pool = _buffers.BufferPool()
    monkeypatch.setattr("udfkit.io.backends.buffered.POOL", pool)
    made = []
    real_new = _buffers._new_buffer

    def counting_new(size):
        made.append(size)
        return real_new(size)

    monkeypatch.setattr(_buffers, "_new_buffer", counting_new)
    with Context.make_with("inline") as ctx:
        for readahead in (False, True):
            made.clear()
            ds = ctx.load("raw", path=str(path), dtype="uint16", nav_shape=(96,), sig_shape=(16, 16),
                          io_backend=BufferedBackend(buffer_size=12 * 512 + 1, readahead=readahead),
                          num_partitions=6)
            res = ctx.run_udf(ds, SumUDF())
            np.testing.assert_array_equal(res["intensity"].data, frames.sum(axis=0))
            # one new buffer each time: without read-ahead for the first partition, with it for
            # the second buffer of the first partition (the other one is left from before)
            assert len(made) == 1, made
    assert pool.idle_bytes == 2 * 8192


def test_pool_keeps_at_most_its_limit():
    from udfkit.io.backends._buffers import PAGE, BufferPool

    pool = BufferPool(max_idle_bytes=3 * PAGE)
    bufs = [pool.take(PAGE) for _ in range(5)]
    assert len({b.ctypes.data for b in bufs}) == 5
    assert all(b.ctypes.data % PAGE == 0 for b in bufs)
    for b in bufs:
        pool.give(b)
    assert pool.idle_bytes == 3 * PAGE
    assert pool.take(PAGE) is bufs[-1]  # the newest are kept
    assert pool.take(2 * PAGE) is not bufs[0]


def test_direct_reads_are_aligned(tmp_path, monkeypatch):
    frames = np.arange(50 * 10 * 10, dtype=np.float32).reshape(50, 10, 10)
    path = tmp_path / "d.npy"
    np.save(path, frames)
    calls = []
    real = os.preadv

    def checking(fd, bufs, offset):
        for b in bufs:
            addr = np.frombuffer(b, np.uint8).ctypes.data
            calls.append((offset % 4096, len(b) % 4096, addr % 4096))
        return real(fd, bufs, offset)

    monkeypatch.setattr(os, "preadv", checking)
    with Context.make_with("inline") as ctx:
        ds = ctx.load("npy", path=str(path), io_backend=DirectBackend(buffer_size=8192))
        res = ctx.run_udf(ds, SumUDF(), roi=np.arange(50) % 3 == 0)
    np.testing.assert_allclose(res["intensity"].data, frames[::3].sum(axis=0, dtype=np.float64))
    assert calls and all(c == (0, 0, 0) for c in calls)


def test_direct_io_on_tmpfs_is_a_clear_error():
    if not os.path.isdir("/dev/shm"):
        pytest.skip("no /dev/shm here")
    path = f"/dev/shm/udfkit_test_direct_{os.getpid()}.raw"
    np.zeros((4, 8, 8), np.uint16).tofile(path)
    try:
        try:
            fd = os.open(path, os.O_RDONLY | os.O_DIRECT)
        except OSError:
            pass
        else:
            os.close(fd)
            pytest.skip("this tmpfs accepts O_DIRECT")
        with Context.make_with("inline") as ctx:
            ds = ctx.load("raw", path=path, dtype="uint16", nav_shape=(4,), sig_shape=(8, 8),
                          io_backend="direct")
            with pytest.raises(DataSetError, match=r"udfkit_test_direct.*does not support direct I/O.*"
                                                   r"io_backend='buffered'"):
                ctx.run_udf(ds, SumUDF())
    finally:
        os.unlink(path)


def test_direct_io_on_a_real_file(tmp_path):
    """O_DIRECT on the test's file system; skipped with the reason where it is refused."""
    path = tmp_path / "d.raw"
    frames = np.random.default_rng(0).integers(0, 1000, (300, 64, 64)).astype(np.uint16)
    frames.tofile(path)
    try:
        os.close(os.open(path, os.O_RDONLY | os.O_DIRECT))
    except OSError as e:
        pytest.skip(f"the file system of {tmp_path} refuses O_DIRECT: {e}")
    with Context.make_with("inline") as ctx:
        ds = ctx.load("raw", path=str(path), dtype="uint16", nav_shape=(300,), sig_shape=(64, 64),
                      io_backend="direct")
        res = ctx.run_udf(ds, [SumUDF(), SumSigUDF()])
    np.testing.assert_array_equal(res[0]["intensity"].data, frames.sum(axis=0, dtype=np.float64))
    np.testing.assert_array_equal(res[1]["intensity"].data, frames.sum(axis=(1, 2), dtype=np.float64))


def _cached_fraction(path):
    """Fraction of the file's pages in the page cache (``mincore`` of an untouched mapping),
    or None where libc's ``mincore`` is not at hand."""
    import ctypes
    import ctypes.util
    import mmap

    name = ctypes.util.find_library("c")
    libc = ctypes.CDLL(name, use_errno=True) if name else None
    if libc is None or not hasattr(libc, "mincore"):
        return None
    size = os.path.getsize(path)
    with open(path, "rb") as f, mmap.mmap(f.fileno(), size, prot=mmap.PROT_READ) as m:
        addr = np.frombuffer(m, dtype=np.uint8).ctypes.data  # the mapping's address; nothing read
        pages = -(-size // mmap.PAGESIZE)
        vec = (ctypes.c_ubyte * pages)()
        if libc.mincore(ctypes.c_void_p(addr), ctypes.c_size_t(size), vec) != 0:
            return None
        return sum(v & 1 for v in vec) / pages


def test_direct_reads_bypass_the_page_cache(tmp_path):
    """After evicting the file, a run with ``direct`` leaves it uncached; ``buffered`` fills it."""
    path = tmp_path / "d.raw"
    frames = np.random.default_rng(1).integers(0, 1000, (256, 128, 128)).astype(np.uint16)  # 8 MiB
    with open(path, "wb") as f:
        frames.tofile(f)
        f.flush()
        os.fsync(f.fileno())  # dirty pages cannot be dropped
    try:
        os.close(os.open(path, os.O_RDONLY | os.O_DIRECT))
    except OSError as e:
        pytest.skip(f"the file system of {tmp_path} refuses O_DIRECT: {e}")

    def evict():
        fd = os.open(path, os.O_RDONLY)
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        os.close(fd)

    evict()
    before = _cached_fraction(path)
    if before is None or before > 0:
        pytest.skip(f"cannot tell what of {path} is cached (mincore), or it cannot be evicted")
    with Context.make_with("inline") as ctx:
        for backend, expect_cached in (("direct", 0), ("buffered", 1)):
            ds = ctx.load("raw", path=str(path), dtype="uint16", nav_shape=(256,), sig_shape=(128, 128),
                          io_backend=backend)
            res = ctx.run_udf(ds, SumUDF())
            np.testing.assert_array_equal(res["intensity"].data, frames.sum(axis=0, dtype=np.float64))
            assert _cached_fraction(path) == expect_cached, backend


@pytest.mark.parametrize("backend", ["buffered", "direct"])
def test_truncated_while_reading_is_a_clear_error(tmp_path, backend):
    path = tmp_path / "short.raw"
    np.zeros((40, 32, 32), np.uint16).tofile(path)
    with Context.make_with("inline") as ctx:
        ds = ctx.load("raw", path=str(path), dtype="uint16", nav_shape=(40,), sig_shape=(32, 32),
                      io_backend=backend)
        os.truncate(path, 10 * 2048)
        with pytest.raises(DataSetError, match=r"short\.raw' has 20480 bytes.*truncated"):
            ctx.run_udf(ds, SumUDF())


def test_backend_parameters_are_checked():
    with pytest.raises(DataSetError, match="buffer_size"):
        BufferedBackend(buffer_size=0)
    with pytest.raises(DataSetError, match="byte size"):
        BufferedBackend(buffer_size="lots")
    assert BufferedBackend(buffer_size="1MiB").block_bytes == 1 << 20


def test_direct_io_refused_is_a_clear_error(tmp_path, monkeypatch):
    """Where the file system refuses O_DIRECT (EINVAL at open), the error names the file and
    the backend to use instead (tmpfs did before Linux 6.6; this test does not need one)."""
    import errno

    path = tmp_path / "refused.raw"
    np.zeros((4, 8, 8), np.uint16).tofile(path)
    real = os.open

    def refusing(p, flags, *args):
        if flags & os.O_DIRECT:
            raise OSError(errno.EINVAL, "Invalid argument", p)
        return real(p, flags, *args)

    with Context.make_with("inline") as ctx:
        ds = ctx.load("raw", path=str(path), dtype="uint16", nav_shape=(4,), sig_shape=(8, 8),
                      io_backend="direct")
        monkeypatch.setattr(os, "open", refusing)
        with pytest.raises(DataSetError, match=r"refused\.raw.*does not support direct I/O.*"
                                               r"io_backend='buffered'"):
            ctx.run_udf(ds, SumUDF())
