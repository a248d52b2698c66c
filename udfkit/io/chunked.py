"""Data sets whose frames come out of a library: chunked or compressed containers, arrays.

HDF5 datasets that are compressed, zarr arrays, compressed TIFF pages and dask arrays
cannot be read by byte offsets; their library decodes them. This module turns such a
source into partitions and tiles with the same guarantees as the file formats.

Rules
-----
* A format provides an :class:`ArrayReader`: a small picklable description (path, dataset
  name, ...) that the worker opens itself (:meth:`ArrayReader.open`), never an open handle.
  The opened reader fills ``out`` with the *file frames* ``[lo, hi)`` (frames counted in C
  order over the container's own navigation axes).
* Chunks are decoded whole, so the unit of reading is a **block**: a run of file frames
  that starts on a multiple of :attr:`ChunkGeometry.block_frames` and holds whole chunks
  (:func:`block_frames` says how many frames that takes for an nD chunk grid). Partitions
  start on block boundaries (:attr:`~udfkit.io.base.DataSet.frame_alignment`), and a
  partition decodes its blocks in order, each once, into one reused buffer: no chunk is
  decoded twice, whatever the tile shape, depth or ROI.
* Several blocks are decoded per library call, up to :data:`DECODE_BYTES`, because each call
  costs a fixed overhead (h5py's selection machinery, zarr's codec pipeline).
* Tiles of the stored dtype are read-only views of that buffer (zero-copy, like the
  ``buffered`` backend); tiles that span two decoded runs are gathered into a scratch buffer.
* When the chunk grid is such that a block would exceed :data:`MAX_BLOCK_BYTES` (chunks
  spanning many rows of a large scan), smaller runs are read and chunks on their borders are
  decoded more than once; :func:`block_frames` says so with a :class:`~udfkit.errors.UdfkitWarning`.
"""

from __future__ import annotations

import warnings
from abc import ABC, abstractmethod
from dataclasses import dataclass
from math import prod
from typing import Any

import numpy as np

from ..errors import UdfkitWarning
from .aligned import aligned_empty
from .base import DataSet, FrameSource, Partition
from .tiles import SourcePartition

__all__ = ["ArrayReader", "ChunkGeometry", "ChunkedDataSet", "ChunkedPartition", "block_frames",
           "flat_slabs", "DECODE_BYTES", "MAX_BLOCK_BYTES"]

#: bytes decoded per library call (several blocks, when they are small)
DECODE_BYTES = 8 << 20
#: a block larger than this is not decoded at once (see the module docstring)
MAX_BLOCK_BYTES = 64 << 20


class ArrayReader(ABC):
    """A picklable description of an array source; :meth:`open` it on the worker.

    Subclasses hold only what is needed to open the source again (a path, a dataset name),
    so that partitions pickle small and no file handle crosses a process boundary.
    """

    #: the container's own navigation shape (file frames are counted in C order over it)
    nav_shape: tuple = ()

    @abstractmethod
    def open(self) -> OpenArray:
        """Open the source (on the worker)."""


class OpenArray(ABC):
    """An opened :class:`ArrayReader`."""

    @abstractmethod
    def read(self, lo: int, hi: int, out: np.ndarray) -> None:
        """Fill ``out`` (shape ``(hi - lo, *sig)``, the stored dtype) with file frames ``[lo, hi)``."""

    def read_or_view(self, lo: int, hi: int, make_out) -> np.ndarray:
        """File frames ``[lo, hi)``: ``make_out()`` filled by :meth:`read`, or a view.

        A source that already holds the frames in memory, back to back in the stored dtype
        (a dask chunk over a ``numpy.memmap`` or an in-memory array), may return a view of
        them instead, saving a copy; the caller only reads it. ``make_out`` allocates the
        buffer (shape ``(hi - lo, *sig)``) only when it is needed.
        """
        out = make_out()
        self.read(lo, hi, out)
        return out

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release handles."""

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def flat_slabs(nav_shape: tuple[int, ...], lo: int, hi: int) -> list:
    """Cut the flat frame range ``[lo, hi)`` of a C-order ``nav_shape`` into hyperslabs.

    Returns a list of ``(slices, count)``: ``slices`` index the nav axes, ``count`` frames,
    in order. Readers whose library wants nD selections (h5py, zarr, dask) read one slab at
    a time.

    Examples
    --------
    >>> [(tuple((s.start, s.stop) for s in sl), n) for sl, n in flat_slabs((3, 4), 2, 11)]
    [(((0, 1), (2, 4)), 2), (((1, 2), (0, 4)), 4), (((2, 3), (0, 3)), 3)]
    >>> len(flat_slabs((3, 4), 4, 12))
    1
    """
    nav_shape = tuple(int(n) for n in nav_shape)
    if hi <= lo:
        return []
    if len(nav_shape) == 1:
        return [((slice(lo, hi),), hi - lo)]
    inner = prod(nav_shape[1:])
    first, first_off = divmod(lo, inner)
    last, last_off = divmod(hi, inner)
    out = []
    if first == last:  # within one row of the outermost axis
        for sl, n in flat_slabs(nav_shape[1:], first_off, last_off):
            out.append(((slice(first, first + 1),) + sl, n))
        return out
    if first_off:
        for sl, n in flat_slabs(nav_shape[1:], first_off, inner):
            out.append(((slice(first, first + 1),) + sl, n))
        first += 1
    if last > first:
        out.append(((slice(first, last),) + tuple(slice(0, n) for n in nav_shape[1:]),
                    (last - first) * inner))
    if last_off:
        for sl, n in flat_slabs(nav_shape[1:], 0, last_off):
            out.append(((slice(last, last + 1),) + sl, n))
    return out


def block_frames(nav_shape: tuple[int, ...], nav_chunks: tuple[int, ...], frame_bytes: int,
                 where: str = "data set") -> int:
    """File frames of one block: the shortest aligned run of flat frames holding whole chunks.

    For nav chunks ``(c0, c1, ...)`` over ``nav_shape`` ``(n0, n1, ...)`` the block spans
    ``c_j`` steps of the outermost axis ``j`` whose chunk is longer than 1, times everything
    inside it: runs of that many frames starting on multiples of it hold whole chunks. A
    block larger than :data:`MAX_BLOCK_BYTES` is cut down (with a warning, since chunks are
    then decoded more than once).

    Examples
    --------
    >>> block_frames((10, 20), (1, 5), 100)
    5
    >>> block_frames((10, 20), (2, 20), 100)
    40
    >>> block_frames((10, 20), (2, 5), 100)
    40
    >>> block_frames((7,), (1,), 100)
    1
    >>> block_frames((3, 10), (1, 4), 100)   # 4 does not divide 10: whole rows
    10
    """
    nav_shape = tuple(int(n) for n in nav_shape)
    nav_chunks = tuple(min(int(c), n) for c, n in zip(nav_chunks, nav_shape))
    block = 1
    for j, c in enumerate(nav_chunks):
        if c > 1:
            # axes before j have chunks of 1: a run of c steps of axis j (with all inner
            # positions) is a row of whole chunks
            block = c * prod(nav_shape[j + 1:])
            if j > 0 and nav_shape[j] % c:
                # the edge chunk of a row is shorter: runs of c * inner frames would drift
                # off the chunk grid in the next row, so a block is a whole row
                block = prod(nav_shape[j:])
            break
    if block * frame_bytes > MAX_BLOCK_BYTES:
        smaller = max(1, MAX_BLOCK_BYTES // frame_bytes)
        warnings.warn(
            f"{where}: its chunks {nav_chunks} over the navigation shape {nav_shape} need runs of "
            f"{block} frames ({block * frame_bytes / 2**20:.0f} MiB) to decode each chunk once; "
            f"udfkit reads {smaller} frames at a time instead, so chunks are decoded several times "
            "(read amplification). Rechunk with at most one row of the scan per chunk for speed.",
            UdfkitWarning, stacklevel=3)
        return smaller
    return block


@dataclass(frozen=True)
class ChunkGeometry:
    """How a chunked source is cut.

    Attributes
    ----------
    block_frames : int
        File frames per block (see :func:`block_frames`); partitions start on multiples of it.
    chunks : tuple of int
        The container's chunk shape (nav + sig), for ``udfkit info``.

    Notes
    -----
    Blocks are decoded whole frames at a time, so how tiles cut the signal does not change
    how often a chunk is decoded: once.
    """

    block_frames: int
    chunks: tuple = ()


class ChunkedPartition(SourcePartition):
    """A partition of a :class:`ChunkedDataSet`: its reader plus the block geometry."""

    def __init__(self, *, reader: ArrayReader, block: int, **kwargs: Any):
        super().__init__(**kwargs)
        self.reader = reader
        self.block = int(block)

    @property
    def supports_zero_copy(self) -> bool:
        # views of the decode buffer, valid until the next read (as the buffered backend's)
        return True

    def open_source(self, frames: np.ndarray, depth: int) -> FrameSource:
        return _BlockSource(self.reader, np.asarray(frames, dtype=np.int64), int(depth), self.block,
                            self.shape.sig.to_tuple(), self.raw_dtype, self.image_count)


class _BlockSource(FrameSource):
    """Decodes runs of whole blocks in order and hands out views of them."""

    def __init__(self, reader, frames, depth, block, sig_shape, dtype, image_count):
        self._frames = frames
        self._block = block
        self._sig = tuple(sig_shape)
        self._dtype = np.dtype(dtype)
        self._items = prod(self._sig)
        self._image_count = image_count
        frame_bytes = self._items * self._dtype.itemsize
        per_call = max(block, DECODE_BYTES // max(1, frame_bytes) // block * block)
        depth_blocks = -(-depth // block) * block
        #: file frames decoded per library call
        self._span = max(per_call, depth_blocks)
        # no block past the partition's last: that belongs to the next partition
        self._stop = min(image_count, (int(frames[-1]) // block + 1) * block) if frames.size else 0
        self._lo = self._hi = -1
        self._buf = None
        #: the current run of decoded frames: ``_buf`` or a view the source lent
        self._cur = None
        self._scratch = None
        self._open = reader.open()

    def _decode(self, f: int) -> None:
        """Make the run of blocks starting with the block of file frame ``f`` current."""
        lo = f - f % self._block
        hi = min(lo + self._span, self._stop)
        n = hi - lo

        def make_out():
            if self._buf is None or self._buf.shape[0] < n:
                self._buf = aligned_empty(n * self._items, self._dtype).reshape((n,) + self._sig)
            return self._buf[:n]

        self._cur = None  # drop a lent view before the next read
        self._cur = self._open.read_or_view(lo, hi, make_out)
        self._lo, self._hi = lo, hi

    def read(self, i0, i1):
        frames = self._frames[i0:i1]
        first, last = int(frames[0]), int(frames[-1])
        if not self._lo <= first < self._hi:
            self._decode(first)
        if last < self._hi:
            flat = self._cur.reshape(-1)[: (self._hi - self._lo) * self._items]
            flat.flags.writeable = False
            return flat, (frames - self._lo) * self._items
        return self._gather(frames)

    def _gather(self, frames):
        """Frames of more than one decoded run: copy them into a scratch buffer, in order."""
        n = frames.size
        if self._scratch is None or self._scratch.shape[0] < n:
            self._scratch = aligned_empty(n * self._items, self._dtype).reshape((n,) + self._sig)
        k = 0
        while k < n:
            f = int(frames[k])
            if not self._lo <= f < self._hi:
                self._decode(f)
            m = k + int(np.searchsorted(frames[k:], self._hi))
            self._scratch[k:m] = self._cur[frames[k:m] - self._lo]
            k = m
        flat = self._scratch.reshape(-1)[: n * self._items]
        return flat, np.arange(n, dtype=np.int64) * self._items

    def close(self) -> None:
        self._buf = self._cur = self._scratch = None
        opened, self._open = self._open, None
        if opened is not None:
            opened.close()


class ChunkedDataSet(DataSet):
    """Base of the data sets read through an :class:`ArrayReader`.

    Subclasses set ``self._reader`` and ``self._geometry`` (a :class:`ChunkGeometry`) in
    ``_initialize``; partitions, alignment and tiling preferences are shared.
    """

    def __init__(self, **kwargs: Any):
        super().__init__(**kwargs)
        self._reader: ArrayReader | None = None
        self._geometry = ChunkGeometry(1)

    @property
    def frame_alignment(self) -> int:
        return self._geometry.block_frames

    def get_partitions(self) -> list[Partition]:
        meta = self._require_meta()
        if self._reader is None:  # a format's bug, not the user's
            raise RuntimeError(f"{type(self).__name__}._initialize did not set the reader")
        return [ChunkedPartition(reader=self._reader, block=self._geometry.block_frames,
                                 shape=meta.shape, start=start, stop=stop, raw_dtype=meta.raw_dtype,
                                 image_count=meta.image_count, sync_offset=meta.sync_offset, index=i)
                for i, (start, stop) in enumerate(self.partition_bounds())]
