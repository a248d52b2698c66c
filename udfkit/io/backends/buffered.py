"""The ``buffered`` backend: large linear reads into reused buffers, then tiles from there.

A partition's frames are read in batches of whole tiles (see :mod:`udfkit.io.readplan`):
each batch is one ``preadv`` per run of consecutive frames into a page-aligned buffer that
is reused for the whole partition. Tiles in the stored dtype are views of the buffer; others
are decoded from it. Unlike ``mmap`` nothing is mapped, so there are no page faults and no
mapping to tear down; reading from the page cache is one kernel copy into a buffer that
stays in the CPU cache for the UDF.

With ``readahead=True`` a thread reads the next batch into a second buffer while the UDF
works on the current one (I/O and compute overlap; it helps when the file is not cached).
"""

from __future__ import annotations

import os
from concurrent.futures import Future, ThreadPoolExecutor

import numpy as np

from ...common import parse_size
from ...errors import DataSetError
from ..aligned import aligned_empty
from ..base import FrameSource, IOBackend
from ..layout import FileSet
from ..readplan import plan_reads
from ._buffers import POOL
from ._files import open_files, read_exactly

__all__ = ["BufferedBackend", "BlockSource"]

#: default bytes per batch read
DEFAULT_BLOCK_BYTES = 4 << 20


class BufferedBackend(IOBackend):
    """Buffered reads with ``preadv`` into reused buffers.

    Parameters
    ----------
    buffer_size : int or str
        Bytes read at a time (``"16MiB"`` works too); tiles are never deeper than fits
        into it (at least one frame).
    readahead : bool
        Read the next batch in a background thread while the current one is processed.
    max_gap : int
        Bytes between two wanted frames of a file (headers, skipped ROI frames) that are
        read through rather than starting another read.

    Examples
    --------
    >>> BufferedBackend(buffer_size="8MiB")
    BufferedBackend(buffer_size=8388608, readahead=False)
    """

    name = "buffered"
    _open_flags = 0
    _align = 1

    def __init__(self, buffer_size: int | str = DEFAULT_BLOCK_BYTES, readahead: bool = False,
                 max_gap: int = 64 << 10):
        size = parse_size(buffer_size, error=DataSetError)
        if size < 1:
            raise DataSetError(f"buffer_size: expected a positive number of bytes, got {buffer_size!r}")
        self.buffer_size = size
        self.readahead = bool(readahead)
        self.max_gap = parse_size(max_gap, error=DataSetError)

    @property
    def supports_zero_copy(self) -> bool:
        return True

    @property
    def block_bytes(self) -> int:
        return self.buffer_size

    def open(self, fileset: FileSet, frames: np.ndarray, depth: int) -> FrameSource:
        frames = np.asarray(frames, dtype=np.int64)
        fds = self._open_files(fileset, frames)
        return BlockSource(fileset, frames, depth, fds, self.buffer_size, align=self._align,
                           max_gap=self.max_gap, readahead=self.readahead)

    def _open_files(self, fileset, frames):
        return open_files(fileset, frames, self._open_flags)

    def __eq__(self, other):
        return type(other) is type(self) and other.__dict__ == self.__dict__

    def __hash__(self):
        return hash((type(self), self.buffer_size, self.readahead, self.max_gap))

    def __repr__(self):
        return f"{type(self).__name__}(buffer_size={self.buffer_size}, readahead={self.readahead})"


class BlockSource(FrameSource):
    """Serves tiles from batches read by a :class:`~udfkit.io.readplan.ReadPlan`.

    Everything a batch needs is turned into plain Python values once, when the partition is
    opened: with 4 MiB batches a run of a few GiB reads thousands of them, and a numpy call
    per batch costs more than the bookkeeping it does.
    """

    def __init__(self, fileset: FileSet, frames: np.ndarray, depth: int, fds: dict[int, int],
                 block_bytes: int, *, align: int = 1, max_gap: int = 64 << 10,
                 readahead: bool = False):
        self._fs = fileset
        self._fds = fds
        self._items = fileset.frame_items
        plan = plan_reads(fileset, frames, depth, block_bytes, align=align, max_gap=max_gap)
        self._plan = plan
        paths = [f.path for f in fileset.files]
        runs = plan.runs.tolist()
        bounds = plan.batch_runs.tolist()
        #: per batch: (fd, path, offset, nbytes, buffer offset, need) of each run
        self._batch_reads = [[(fds[f], paths[f], off, nbytes, at, need)
                              for f, off, nbytes, at, need in runs[bounds[b]:bounds[b + 1]]]
                             for b in range(plan.num_batches)]
        self._batch_starts = plan.batch_frames.tolist()
        itemsize = fileset.dtype.itemsize
        # element offsets when every frame starts on a whole item (all but odd frame headers)
        self._elem_pos = None if np.any(plan.frame_pos % itemsize) else plan.frame_pos // itemsize
        # whole pages: the direct backend needs them, and they hold whole items of any dtype
        self._buffers = [POOL.take(plan.buffer_bytes) for _ in range(2 if readahead else 1)]
        self._views = [buf.view(fileset.dtype) for buf in self._buffers]
        self._current = -1  # batch in self._buffers[0]
        self._lo = self._hi = 0  # its frames
        self._scratch: np.ndarray | None = None
        self._ahead: tuple[int, Future] | None = None  # (batch, future) filling self._buffers[1]
        self._reader: ThreadPoolExecutor | None = None

    def _load(self, b: int, buf: np.ndarray) -> None:
        view = memoryview(buf.data)
        for fd, path, offset, nbytes, at, need in self._batch_reads[b]:
            read_exactly(fd, view[at:at + nbytes], offset, need, path)

    def _start_ahead(self, b: int) -> None:
        if b >= self._plan.num_batches:
            return
        if self._reader is None:
            # one thread for the source's life, not one per batch
            self._reader = ThreadPoolExecutor(1, thread_name_prefix="udfkit-readahead")
        self._ahead = (b, self._reader.submit(self._load, b, self._buffers[1]))

    def _finish_ahead(self):
        b, future = self._ahead
        self._ahead = None
        future.result()  # re-raises a read error in the reading thread
        return b

    def _switch_to(self, b: int) -> None:
        self._current = -1  # until the batch is in self._buffers[0]
        if self._ahead is not None:
            got = self._finish_ahead()
            if got == b:
                self._buffers.reverse()
                self._views.reverse()
                self._set_current(b)
                self._start_ahead(b + 1)
                return
        self._load(b, self._buffers[0])
        self._set_current(b)
        if len(self._buffers) > 1:
            self._start_ahead(b + 1)

    def _set_current(self, b: int) -> None:
        self._current = b
        self._lo, self._hi = self._batch_starts[b], self._batch_starts[b + 1]

    def read(self, i0: int, i1: int) -> tuple[np.ndarray, np.ndarray]:
        if not self._lo <= i0 < self._hi or self._current < 0:
            self._switch_to(self._plan.batch_of(i0))
        if self._elem_pos is not None:
            return self._views[0], self._elem_pos[i0:i1]
        # a frame at an odd offset (odd per-frame headers with direct I/O): copy it aligned
        pos = self._plan.frame_pos[i0:i1]
        buf = self._buffers[0]
        n = pos.size
        nbytes = self._fs.frame_bytes
        if self._scratch is None or self._scratch.size < n * nbytes:
            self._scratch = aligned_empty(n * nbytes, np.uint8)
        for k, p in enumerate(pos):
            self._scratch[k * nbytes:(k + 1) * nbytes] = buf[p:p + nbytes]
        return self._scratch[:n * nbytes].view(self._fs.dtype), np.arange(n, dtype=np.int64) * self._items

    def close(self) -> None:
        if self._ahead is not None:
            try:
                self._finish_ahead()
            except BaseException:
                pass  # the run is over; an error of a batch nobody reads does not matter
        if self._reader is not None:
            self._reader.shutdown(wait=True)
            self._reader = None
        fds, self._fds = self._fds, {}
        for fd in fds.values():
            os.close(fd)
        buffers, self._buffers = self._buffers, []
        self._views = []
        for buf in buffers:
            POOL.give(buf)
