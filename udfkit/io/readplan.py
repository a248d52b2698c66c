"""Read planning: which byte ranges to read for the frames of a partition, and where they go.

The block backends (``buffered``, ``direct``) read a partition's frames in *batches*: whole
groups of ``depth`` frames (the tiles of the run) that together fit into one buffer. A batch
is read with as few, as large ``readinto`` calls as possible (*runs*): consecutive frames of
one file are merged into one run, reading through per-frame headers, footers and small ROI
gaps (up to ``max_gap`` bytes) instead of issuing a read per frame. Frames of a file with an explicit
offset table (:attr:`~udfkit.io.layout.FileLayout.frame_offsets`) may lie in any order; a
frame that does not follow the current run starts a new one, and the buffer keeps frame
order. The plan is computed once
per partition by a numba kernel; it is a handful of small arrays.

With ``align > 1`` (direct I/O) every run starts and ends on an ``align`` boundary of the
file and of the buffer; the bytes outside the frames are read and ignored.
"""

from __future__ import annotations

from dataclasses import dataclass

import numba
import numpy as np

from .layout import FileSet

__all__ = ["ReadPlan", "plan_reads"]

#: buffer offsets of runs are multiples of this (a cache line; a multiple of every itemsize)
BUFFER_ALIGN = 64


@dataclass(frozen=True)
class ReadPlan:
    """The reads of one partition.

    Attributes
    ----------
    batch_frames : numpy.ndarray
        ``(nb + 1,)`` boundaries of the batches in the partition's frame list.
    batch_runs : numpy.ndarray
        ``(nb + 1,)`` boundaries of each batch's runs in ``runs``.
    runs : numpy.ndarray
        ``(nr, 5)`` int64: file index, file offset, bytes to request, buffer offset, and the
        bytes that must arrive (a direct read may end short at the end of the file).
    frame_pos : numpy.ndarray
        Byte offset of each frame's data in its batch's buffer.
    batch_bytes : numpy.ndarray
        Buffer bytes each batch needs.
    """

    batch_frames: np.ndarray
    batch_runs: np.ndarray
    runs: np.ndarray
    frame_pos: np.ndarray
    batch_bytes: np.ndarray

    @property
    def num_batches(self) -> int:
        return len(self.batch_bytes)

    @property
    def buffer_bytes(self) -> int:
        """The buffer size the largest batch needs."""
        return int(self.batch_bytes.max()) if len(self.batch_bytes) else 0

    def batch_of(self, i: int) -> int:
        """The batch holding frame number ``i`` of the partition's list."""
        return int(np.searchsorted(self.batch_frames, i, side="right") - 1)


def plan_reads(fileset: FileSet, frames: np.ndarray, depth: int, block_bytes: int, *, align: int = 1,
               max_gap: int = 64 << 10) -> ReadPlan:
    """Plan the reads of ``frames`` (sorted global frame numbers) of ``fileset``.

    Parameters
    ----------
    fileset : FileSet
    frames : numpy.ndarray
        Sorted global frame numbers to read.
    depth : int
        Frames per tile; batches hold whole tiles.
    block_bytes : int
        Preferred buffer size; a batch holds as many tiles as fit (at least one).
    align : int
        File offsets, sizes and buffer offsets of runs are multiples of this.
    max_gap : int
        Unneeded bytes between two frames of a file that are read rather than skipped.

    Examples
    --------
    >>> from udfkit.io.layout import FileLayout, FileSet
    >>> fs = FileSet([FileLayout("f", 0, np.dtype("uint8"), (100,), 50, frame_header_bytes=8)])
    >>> p = plan_reads(fs, np.arange(10, 14), depth=2, block_bytes=1000)
    >>> p.runs.tolist()   # one read of 4 frames and the 3 headers between them
    [[0, 1088, 424, 0, 424]]
    >>> p.frame_pos.tolist()
    [0, 108, 216, 324]
    """
    frames = np.ascontiguousarray(frames, dtype=np.int64)
    depth = max(1, int(depth))
    out = _plan(frames, fileset.starts, fileset.header_bytes, fileset.strides,
                fileset.frame_headers, fileset.offset_table, fileset.table_starts,
                np.int64(fileset.frame_bytes), np.int64(fileset.dtype.itemsize),
                np.int64(max_gap), np.int64(align), np.int64(depth), np.int64(max(1, block_bytes)),
                np.int64(BUFFER_ALIGN))
    batch_frames, batch_runs, runs, frame_pos, batch_bytes = out
    return ReadPlan(batch_frames, batch_runs, runs, frame_pos, batch_bytes)


@numba.njit(cache=True, nogil=True)
def _locate(frames, starts, header_bytes, strides, frame_headers, table, table_starts):
    n = frames.shape[0]
    file_idx = np.empty(n, np.int64)
    offsets = np.empty(n, np.int64)
    f = 0
    for i in range(n):
        fr = frames[i]
        while fr >= starts[f + 1]:
            f += 1
        while fr < starts[f]:
            f -= 1
        file_idx[i] = f
        if table_starts[f] >= 0:  # an explicit offset table (frames in chunks, any order)
            offsets[i] = table[table_starts[f] + fr - starts[f]]
        else:
            offsets[i] = header_bytes[f] + (fr - starts[f]) * strides[f] + frame_headers[f]
    return file_idx, offsets


@numba.njit(cache=True, nogil=True)
def _up(x, a):
    return (x + a - 1) // a * a


@numba.njit(cache=True, nogil=True)
def _plan_frames(file_idx, offsets, lo, hi, frame_bytes, itemsize, max_gap, align, buf_align,
                 runs, frame_pos, state):
    """Continue the runs of a batch with frames ``lo..hi-1``.

    ``state`` holds (runs so far, buffer end, file of the last run, data offset of its first
    frame, end of its data) and is updated; ``runs`` rows are written from 0.
    """
    r = state[0] - 1
    buf_end = state[1]
    run_file = state[2]
    run_first = state[3]
    run_data_end = state[4]
    for i in range(lo, hi):
        f = file_idx[i]
        off = offsets[i]
        merge = (r >= 0 and f == run_file and off >= run_data_end
                 and off - run_data_end <= max_gap and (off - run_first) % itemsize == 0)
        if merge:
            run_data_end = off + frame_bytes
            frame_pos[i] = runs[r, 3] + (off - runs[r, 1])
            runs[r, 4] = run_data_end - runs[r, 1]
            runs[r, 2] = _up(runs[r, 4], align)
            buf_end = runs[r, 3] + runs[r, 2]
            continue
        r += 1
        start = off - off % align
        buf = _up(buf_end, max(align, buf_align))
        runs[r, 0] = f
        runs[r, 1] = start
        runs[r, 3] = buf
        runs[r, 4] = off + frame_bytes - start
        runs[r, 2] = _up(runs[r, 4], align)
        frame_pos[i] = buf + (off - start)
        buf_end = buf + runs[r, 2]
        run_file = f
        run_first = off
        run_data_end = off + frame_bytes
    state[0] = r + 1
    state[1] = buf_end
    state[2] = run_file
    state[3] = run_first
    state[4] = run_data_end


@numba.njit(cache=True, nogil=True)
def _plan(frames, starts, header_bytes, strides, frame_headers, table, table_starts, frame_bytes,
          itemsize, max_gap, align, depth, block_bytes, buf_align):
    n = frames.shape[0]
    file_idx, offsets = _locate(frames, starts, header_bytes, strides, frame_headers, table,
                                table_starts)
    n_chunks = (n + depth - 1) // depth
    runs = np.zeros((max(n, 1), 5), np.int64)
    frame_pos = np.zeros(n, np.int64)
    batch_frames = np.zeros(n_chunks + 1, np.int64)
    batch_runs = np.zeros(n_chunks + 1, np.int64)
    batch_bytes = np.zeros(n_chunks, np.int64)
    scratch = np.zeros((depth + 1, 5), np.int64)
    scratch_pos = np.zeros(n, np.int64)
    state = np.zeros(5, np.int64)
    alone = np.zeros(5, np.int64)
    nb = 0
    nr = 0
    c = 0
    while c < n_chunks:
        lo = c * depth
        hi = min(n, lo + depth)
        state[:] = 0
        state[2] = -1
        _plan_frames(file_idx, offsets, lo, hi, frame_bytes, itemsize, max_gap, align, buf_align,
                     runs[nr:], frame_pos, state)
        c += 1
        # grow the batch chunk by chunk while its buffer stays within block_bytes: plan the
        # next chunk on a copy of the batch's last run first
        while c < n_chunks:
            nxt = min(n, hi + depth)
            alone[:] = state
            alone[0] = 1
            scratch[0] = runs[nr + state[0] - 1]
            _plan_frames(file_idx, offsets, hi, nxt, frame_bytes, itemsize, max_gap, align,
                         buf_align, scratch, scratch_pos, alone)
            if alone[1] > block_bytes:
                break
            _plan_frames(file_idx, offsets, hi, nxt, frame_bytes, itemsize, max_gap, align,
                         buf_align, runs[nr:], frame_pos, state)
            hi = nxt
            c += 1
        batch_frames[nb + 1] = hi
        nr += state[0]
        batch_runs[nb + 1] = nr
        batch_bytes[nb] = state[1]
        nb += 1
    return batch_frames[:nb + 1], batch_runs[:nb + 1], runs[:nr], frame_pos, batch_bytes[:nb]
