"""The I/O backends: each one's test class runs the conformance suite
:class:`udfkit.testing.IOBackendTests` (reads, tiles and UDF results equal numpy for every
stored dtype, format, ROI and ``sync_offset``; empty reads; many files; missing and truncated
files) in the configurations below; then what is particular to one backend (read sizes,
buffer reuse, alignment, the page cache, ``O_DIRECT`` refused)."""

from __future__ import annotations

import os

import numpy as np
import pytest

from udfkit import UDF, Context
from udfkit.errors import DataSetError
from udfkit.io.backends.buffered import BufferedBackend
from udfkit.io.backends.direct import DirectBackend
from udfkit.io.backends.mmap import MMapBackend
from udfkit.testing.backends import (
    READ_ERRORS,
    IOBackendTests,
    direct_io_refusal,
    stored_values,
    write_frames,
)
from udfkit.udf import SumSigUDF, SumUDF


class TestMMap(IOBackendTests):
    variants = {"default": MMapBackend()}


class TestBuffered(IOBackendTests):
    # small buffers, so that a partition takes many batches
    variants = {"small": BufferedBackend(buffer_size=3000),
                "readahead-nogap": BufferedBackend(buffer_size=5000, readahead=True, max_gap=0)}


class TestDirect(IOBackendTests):
    variants = {"readahead": DirectBackend(buffer_size=8192),
                "noreadahead-biggap": DirectBackend(buffer_size=4096, readahead=False,
                                                    max_gap=1 << 20)}

    def usable_in(self, directory):
        return direct_io_refusal(directory)


# == what is particular to one backend ========================================================

@pytest.fixture(scope="module")
def inline():
    with Context.make_with("inline") as ctx:
        yield ctx


@pytest.mark.parametrize("kind", ["threads", "processes"])
def test_block_backends_on_other_executors(tmp_path, kind):
    rng = np.random.default_rng(2)
    frames = stored_values("uint16", (64, 16, 16), rng)
    load = write_frames(tmp_path, "multi-raw", frames, n_files=3, frame_header=4)
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
            with pytest.raises(READ_ERRORS, match=r"udfkit_test_direct.*does not support direct I/O.*"
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
        with pytest.raises(READ_ERRORS, match=r"refused\.raw.*does not support direct I/O.*"
                                               r"io_backend='buffered'"):
            ctx.run_udf(ds, SumUDF())
