"""Cutting a partition into tiles: zero-copy views or one fused decode pass.

For each block of ``depth`` processed frames (consecutive entries of the partition's
selected positions) and each signal slice of the scheme, one :class:`DataTile` is yielded:

* **Zero-copy** when the stored bytes already are what the UDF wants: the partition's
  source supports views, the stored dtype equals the requested dtype in native byte order,
  and the block's frames lie back to back in what the source returned (no ROI gap, frame
  header or file boundary inside). The tile is a read-only view of the file mapping, the
  array, or the backend's read buffer.
* **Split** where a block of consecutive positions lies in a few long runs (frames stored in
  chunks with index nodes between them, as in an HDF5 file; a file boundary): one tile per
  run, each a view where the run allows. The split depends only on where the frames lie,
  not on the requested dtype, so several dtype streams of one partition stay in step.
* **Decoded** otherwise: the numba kernels of :mod:`udfkit.io._decode` read the rows of
  the tile, swap bytes if needed and convert into one reused, 64-byte aligned buffer. The
  buffer is overwritten by the next tile, which is why tiles are read-only and must not be
  kept by a UDF.
* **Frame decoder**: a partition with a ``decoder`` (:class:`~udfkit.io.decoders.FrameDecoder`;
  bit-packed detector layouts) has its stored records decoded, a block of whole frames at a
  time, into one reused buffer of the requested dtype; its tiles are views of that buffer.

Dtype pairs numba cannot handle (``float16``, byte-swapped complex) go through numpy.
"""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Iterator
from math import prod

import numpy as np
from numpy.typing import DTypeLike

from ..common import Shape, Slice
from .aligned import aligned_empty
from .base import FrameSource, Partition
from .tiling import TilingScheme

__all__ = ["DataTile", "SourcePartition", "generate_tiles", "row_layout"]


class DataTile:
    """One tile of data: ``depth`` consecutive (processed) frames × one part of the signal.

    Parameters
    ----------
    data : numpy.ndarray
        Shape ``(depth, *sig_part)``. Read-only: it may be a view into the file or a reused
        buffer, so it must not be modified or kept after the UDF call returns.
    tile_slice : Slice
        Where the tile sits, in flattened-nav coordinates: the origin is the flattened nav
        index of its first frame, the first extent its number of frames. With a ROI the
        frames need not be consecutive; ``frame_index`` has the exact positions.
    scheme_idx : int
        Index of the signal slice in the tiling scheme.
    frame_index : numpy.ndarray
        Flattened navigation index (in the full data set) of each frame in the tile.
    processed_start : int
        Position of the tile's first frame among the partition's processed frames (the row
        of partition-sized nav buffers that belongs to it).

    Examples
    --------
    >>> import numpy as np
    >>> from udfkit.common import Shape, Slice
    >>> t = DataTile(np.zeros((2, 4, 4)), Slice((6, 0, 0), Shape((2, 4, 4), sig_dims=2)), 0,
    ...              np.array([6, 7]))
    >>> t.shape
    (2, 4, 4)
    """

    __slots__ = ("data", "tile_slice", "scheme_idx", "frame_index", "processed_start")

    def __init__(self, data: np.ndarray, tile_slice: Slice, scheme_idx: int,
                 frame_index: np.ndarray, processed_start: int = 0):
        self.data = data
        self.tile_slice = tile_slice
        self.scheme_idx = scheme_idx
        self.frame_index = frame_index
        self.processed_start = processed_start

    @property
    def shape(self) -> tuple[int, ...]:
        """The shape of :attr:`data`, ``(depth, *sig_part)``."""
        return self.data.shape

    def __repr__(self) -> str:
        return (f"DataTile(shape={self.data.shape}, tile_slice={self.tile_slice!r}, "
                f"scheme_idx={self.scheme_idx})")


class SourcePartition(Partition):
    """A partition whose frames a :class:`~udfkit.io.base.FrameSource` reads; its tiles are
    cut by :func:`generate_tiles` (zero-copy views, splits, one fused decode pass).

    Subclasses provide :meth:`open_source` and ``supports_zero_copy``; a subclass with a
    ``decoder`` attribute (a :class:`~udfkit.io.decoders.FrameDecoder`) has its records
    decoded first. Every built-in format's partition is one.
    """

    @abstractmethod
    def open_source(self, frames: np.ndarray, depth: int) -> FrameSource:
        """Open the file frames ``frames`` (sorted) of this partition on the worker, to be
        read ``depth`` frames at a time."""

    def get_tiles(self, tiling_scheme: TilingScheme, dest_dtype: DTypeLike = "float32",
                  roi: np.ndarray | None = None) -> Iterator[DataTile]:
        """Yield the :class:`DataTile` objects covering the processed frames (see
        :meth:`udfkit.io.base.Partition.get_tiles`)."""
        return generate_tiles(self, tiling_scheme, np.dtype(dest_dtype), roi)


def row_layout(sig_shape: tuple[int, ...], sig_slice: Slice) -> tuple[np.ndarray, int]:
    """Element offsets of the contiguous rows of ``sig_slice`` in a C-order frame, and their length.

    Trailing axes that the slice covers completely are merged into one row.

    Examples
    --------
    >>> from udfkit.common import Shape, Slice
    >>> row_layout((4, 8), Slice((1, 0), Shape((2, 8), sig_dims=2)))
    (array([8]), 16)
    >>> row_layout((4, 8), Slice((1, 2), Shape((2, 3), sig_dims=2)))
    (array([10, 18]), 3)
    """
    sig_shape = tuple(sig_shape)
    origin = sig_slice.origin
    ext = sig_slice.shape.to_tuple()
    nd = len(sig_shape)
    # find the first axis from which on the slice is one contiguous run
    run_axis = nd - 1
    while run_axis > 0 and ext[run_axis] == sig_shape[run_axis] and origin[run_axis] == 0:
        run_axis -= 1
    row_len = prod(ext[run_axis:])
    strides = [prod(sig_shape[ax + 1:]) for ax in range(nd)]
    offsets = np.zeros(1, dtype=np.int64)
    for ax in range(run_axis):
        steps = (origin[ax] + np.arange(ext[ax], dtype=np.int64)) * strides[ax]
        offsets = (offsets[:, None] + steps[None, :]).reshape(-1)
    offsets = offsets + origin[run_axis] * strides[run_axis]
    return offsets, row_len


def _readonly(arr: np.ndarray) -> np.ndarray:
    view = arr.view()
    view.flags.writeable = False
    return view


def generate_tiles(partition: SourcePartition, scheme: TilingScheme, dest_dtype: np.dtype,
                   roi: np.ndarray | None = None) -> Iterator[DataTile]:
    """Yield the tiles of ``partition`` (see the module docstring).

    Parameters
    ----------
    partition : SourcePartition
        Opened on the calling process with the frames it selects.
    scheme : TilingScheme
        Signal slices and depth.
    dest_dtype : numpy.dtype
        The dtype of the tiles' data.
    roi : numpy.ndarray of bool, optional
        Partition-local region of interest.
    """
    sel = partition.selected_positions(roi)
    if sel.size == 0:
        return
    decoder = getattr(partition, "decoder", None)
    if decoder is not None:
        yield from _decoded_tiles(partition, decoder, scheme, np.dtype(dest_dtype), sel)
        return
    sig_shape = partition.shape.sig.to_tuple()
    sig_dims = len(sig_shape)
    frame_items = prod(sig_shape)
    stored = partition.raw_dtype
    dest_dtype = np.dtype(dest_dtype)
    zero_copy_dtype = partition.supports_zero_copy and dest_dtype == stored and stored.isnative
    depth = scheme.depth
    file_base = partition.start + partition.sync_offset  # file frame of local position 0
    decode = None
    # per signal slice, once: the index into a block of frames, and the tile slice's parts
    sig_index = [(slice(None),) + sl.get() for sl in scheme.slices]
    sig_parts = [(sl.origin, sl.shape.to_tuple()) for sl in scheme.slices]

    with partition.open_source(sel + file_base, depth) as source:
        for b0 in range(0, sel.size, depth):
            block_sel = sel[b0:b0 + depth]
            block_flat, block_offsets = source.read(b0, b0 + block_sel.size)
            for a, b in _runs(block_sel, block_offsets, frame_items):
                k0 = b0 + a
                chunk = block_sel[a:b]
                offsets = block_offsets[a:b]
                n = b - a
                frame_index = chunk + partition.start
                origin_nav = partition.start + int(chunk[0])
                block = _frames_view(block_flat, offsets, sig_shape) if zero_copy_dtype else None
                if block is not None:
                    for idx, index in enumerate(sig_index):
                        where = _tile_slice(origin_nav, n, sig_parts[idx], sig_dims)
                        yield DataTile(_readonly(block[index]), where, idx, frame_index, k0)
                    continue
                if decode is None:
                    decode = _Decoder(stored, dest_dtype, depth, scheme, sig_shape)
                for idx in range(len(sig_index)):
                    data = decode(block_flat, offsets, idx, n)
                    where = _tile_slice(origin_nav, n, sig_parts[idx], sig_dims)
                    yield DataTile(data, where, idx, frame_index, k0)


def _frames_view(flat: np.ndarray, offsets: np.ndarray, sig_shape: tuple):
    """The frames at ``offsets`` as one ``(n, *sig_shape)`` view of ``flat``, or None.

    Frames back to back give a C-contiguous view; frames at one fixed stride (per-frame
    headers or footers of detector formats) a strided one, so that they too are read in
    place instead of through a decode pass.
    """
    n = offsets.size
    items = prod(sig_shape)
    o = int(offsets[0])
    step = int(offsets[1]) - o if n > 1 else items
    if step < items or (n > 2 and not (np.diff(offsets) == step).all()):
        return None
    if step == items:
        return flat[o:o + n * items].reshape((n,) + sig_shape)
    base = flat[o:o + (n - 1) * step + items]
    inner = base[:items].reshape(sig_shape).strides
    return np.lib.stride_tricks.as_strided(base, shape=(n,) + tuple(sig_shape),
                                           strides=(step * flat.itemsize,) + inner, writeable=False)


#: a block is split into runs only where they average at least this many frames (else one
#: decode pass over the block is cheaper than many small tiles)
MIN_RUN_FRAMES = 4


def _decoded_tiles(partition, decoder, scheme, dest_dtype: np.dtype, sel: np.ndarray):
    """Tiles of a partition whose records a :class:`~udfkit.io.decoders.FrameDecoder` decodes:
    each block of ``depth`` frames is decoded once, whole frames, into one reused buffer (in
    ``dest_dtype`` where the decoder writes it), and every signal slice is a view of it."""
    sig_shape = partition.shape.sig.to_tuple()
    sig_dims = len(sig_shape)
    frame_items = prod(sig_shape)
    depth = scheme.depth
    out_dtype = dest_dtype if decoder.supports_output(dest_dtype) else np.dtype(decoder.dtype)
    buf = aligned_empty(depth * frame_items, out_dtype)
    file_base = partition.start + partition.sync_offset
    sig_index = [(slice(None),) + sl.get() for sl in scheme.slices]
    sig_parts = [(sl.origin, sl.shape.to_tuple()) for sl in scheme.slices]
    with partition.open_source(sel + file_base, depth) as source:
        for b0 in range(0, sel.size, depth):
            block_sel = sel[b0:b0 + depth]
            n = block_sel.size
            flat, offsets = source.read(b0, b0 + n)
            itemsize = flat.dtype.itemsize
            out = buf[:n * frame_items].reshape((n, frame_items))
            decoder.decode(flat.view(np.uint8), np.asarray(offsets, np.int64) * itemsize, out)
            block = out.reshape((n,) + sig_shape)
            block.flags.writeable = False
            frame_index = block_sel + partition.start
            origin_nav = partition.start + int(block_sel[0])
            for idx, index in enumerate(sig_index):
                data = block[index]
                if out_dtype != dest_dtype:
                    data = _readonly(data.astype(dest_dtype))
                where = _tile_slice(origin_nav, n, sig_parts[idx], sig_dims)
                yield DataTile(data, where, idx, frame_index, b0)


def _runs(chunk: np.ndarray, offsets: np.ndarray, frame_items: int):
    """``[(a, b)]``: the block as one piece, or its runs of back-to-back frames (see the
    module docstring); only blocks of consecutive positions are split."""
    n = chunk.size
    if n < 2 * MIN_RUN_FRAMES or int(chunk[-1]) - int(chunk[0]) != n - 1:
        return ((0, n),)
    breaks = np.flatnonzero(np.diff(offsets) != frame_items) + 1
    if breaks.size == 0 or breaks.size + 1 > n // MIN_RUN_FRAMES:
        return ((0, n),)
    bounds = [0, *breaks.tolist(), n]
    return tuple(zip(bounds[:-1], bounds[1:]))


def _tile_slice(origin_nav: int, n: int, sig_part, sig_dims: int) -> Slice:
    origin, extent = sig_part
    return Slice((origin_nav,) + origin, Shape((n,) + extent, sig_dims=sig_dims))


class _Decoder:
    """Holds the reused tile buffer and picks the kernel for a dtype pair."""

    def __init__(self, stored, dest, depth, scheme, sig_shape):
        from . import _decode

        self.stored = stored
        self.dest = dest
        self.layouts = [row_layout(sig_shape, sl) for sl in scheme.slices]
        self.shapes = [sl.shape.to_tuple() for sl in scheme.slices]
        max_items = max(prod(s) for s in self.shapes)
        self.buf = aligned_empty(depth * max_items, dest)
        self.numba = _decode.kernel_supports(stored, dest)
        self.swapped = not stored.isnative and stored.itemsize > 1
        self._decode = _decode
        if self.swapped and self.numba:
            self.scratch = aligned_empty(max(rl for _, rl in self.layouts), stored.newbyteorder("="))

    def __call__(self, flat, frame_offsets, idx, n):
        row_offsets, row_len = self.layouts[idx]
        shape = (n,) + self.shapes[idx]
        out = self.buf[: prod(shape)]
        if not self.numba:
            rows = (frame_offsets[:, None] + row_offsets[None, :])[..., None] + np.arange(row_len)
            out[...] = flat[rows.reshape(-1)].astype(self.stored.newbyteorder("="), copy=False)
        elif self.swapped:
            self._decode.gather_rows_swapped(flat, frame_offsets, row_offsets, row_len, out,
                                             self.scratch)
        else:
            self._decode.gather_rows(flat, frame_offsets, row_offsets, row_len, out)
        view = out.reshape(shape)
        view.flags.writeable = False
        return view
