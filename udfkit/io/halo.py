"""Reading nav neighbourhoods ("halo"): partitions of whole scan rows that read beyond their edges.

A UDF with a halo needs, next to the frames of its partition, the frames of the neighbouring
scan positions. The data set's own partitions are contiguous ranges of the flattened nav axis
that may start in the middle of a scan row, and no format can be asked for "the frames of
rows 11 to 20" directly. This module builds what a halo run schedules instead:

Rules
-----
1. **Whole rows.** A *row* is one index of the first nav axis, ``prod(nav_shape[1:])``
   positions (a 1-D nav: one position). A :class:`HaloUnit` owns whole rows
   ``[start, stop)`` of the flattened nav axis: :func:`row_aligned_bounds` moves every
   boundary of the data set's partitions to the nearest row boundary (dropping units that
   become empty), so a halo run has at most as many units as the data set has partitions.
2. **Read range.** A unit reads its own rows plus ``halo_rows`` rows above and below, clipped
   to the grid: ``[read_start, read_stop)``. The frames come from the data set's partitions
   that overlap that range (its *sources*), each read with a partition-local ROI that selects
   the wanted positions, the generic way every format supports; so any format works, and
   only the positions wanted are read.
3. **Missing positions.** Positions outside the run's ROI or without a frame
   (``sync_offset``) are not read: :meth:`HaloUnit.read_rows` leaves them as the caller filled
   them (the UDF layer fills NaN). The neighbourhood beyond the edges of the grid is not
   read either; the UDF layer pads it in the UDF's mode.
4. **Read amplification** of a run is the frames read divided by the frames owned
   (:func:`read_amplification`): ``(rows + 2 * halo_rows) / rows`` per unit, less at the
   grid's edges.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from math import prod

import numpy as np
from numpy.typing import DTypeLike

from .base import Partition
from .tiles import DataTile
from .tiling import TilingScheme

__all__ = ["HaloUnit", "row_aligned_bounds", "halo_units", "read_amplification"]


def row_aligned_bounds(bounds: Sequence[tuple[int, int]], row_size: int,
                       nav_size: int) -> list[tuple[int, int]]:
    """``bounds`` with every inner boundary moved to the nearest multiple of ``row_size``.

    Examples
    --------
    >>> row_aligned_bounds([(0, 5), (5, 11), (11, 16)], 4, 16)
    [(0, 4), (4, 12), (12, 16)]
    >>> row_aligned_bounds([(0, 1), (1, 2), (2, 16)], 4, 16)
    [(0, 16)]
    """
    row_size = max(1, int(row_size))
    found = {0, int(nav_size)}
    for _, stop in list(bounds)[:-1]:
        found.add(min(int(nav_size), int(round(stop / row_size)) * row_size))
    cuts = sorted(found)
    return [(a, b) for a, b in zip(cuts[:-1], cuts[1:]) if b > a]


class HaloUnit(Partition):
    """Whole nav rows ``[start, stop)`` that read rows ``[read_start, read_stop)`` from
    ``sources`` (the data set's partitions overlapping them; rules in the module docstring).

    Parameters
    ----------
    sources : list of Partition
        The data set's partitions that hold the read range.
    read_start, read_stop : int
        Flattened nav range the unit reads: its own rows and the halo rows within the grid.
    **kwargs
        As :class:`~udfkit.io.base.Partition` (``shape``, ``start``, ``stop``, ``raw_dtype``,
        ``image_count``, ``sync_offset``, ``index``).
    """

    def __init__(self, *, sources, read_start: int, read_stop: int, **kwargs):
        super().__init__(**kwargs)
        self.sources = list(sources)
        self.read_start = int(read_start)
        self.read_stop = int(read_stop)

    @property
    def supports_zero_copy(self) -> bool:
        # frames are read through partition-local ROIs and gathered into the unit's buffer
        return False

    @property
    def frames_read(self) -> int:
        """Positions in the read range (own rows plus halo rows inside the grid)."""
        return self.read_stop - self.read_start

    def _reads(self, a: int, b: int, run_roi) -> Iterator[tuple[Partition, np.ndarray]]:
        """``(source, partition-local ROI)`` for the positions ``[a, b)`` the run processes."""
        for p in self.sources:
            lo, hi = max(a, p.start), min(b, p.stop)
            if hi <= lo:
                continue
            mask = np.zeros(p.num_frames, dtype=bool)
            mask[lo - p.start:hi - p.start] = True
            if run_roi is not None:
                mask &= run_roi[p.start:p.stop]
            if mask.any():
                yield p, mask

    def read_rows(self, out: np.ndarray, a: int, b: int, scheme: TilingScheme, dtype: DTypeLike,
                  run_roi=None, corrections=None, dtypes=None) -> int:
        """Read the processed positions of the flattened nav range ``[a, b)`` into ``out``.

        ``out`` has shape ``(b - a, *sig)``; entry ``i`` receives the frame of position
        ``a + i`` when the run processes it (``run_roi``: flat bool over the whole nav, None
        for all positions that have a frame); other entries keep what they held. ``scheme``
        must have whole frames. ``corrections`` (a
        :class:`~udfkit.io.corrections.CorrectionPlan`) are applied on the way, as in a
        run's tiles; ``dtypes`` are the run's input dtypes (they choose the source dtype).
        Returns the number of frames read.
        """
        dtype = np.dtype(dtype)
        read = 0
        correct = None
        source_dtype = dtype
        if corrections is not None:
            correct = corrections.corrector(scheme, dtype)
        for p, mask in self._reads(a, b, run_roi):
            if correct is not None:
                source_dtype = corrections.source_dtype(p.raw_dtype, list(dtypes or [dtype]))
            for tile in p.get_tiles(scheme, source_dtype, mask):
                if correct is not None:
                    tile = correct(tile)
                idx = np.asarray(tile.frame_index) - a
                if idx.size and idx[-1] - idx[0] + 1 == idx.size:
                    out[idx[0]:idx[-1] + 1] = tile.data  # a run: a plain copy, no gather
                else:
                    out[idx] = tile.data
                read += idx.size
        return read

    def get_tiles(self, tiling_scheme: TilingScheme, dest_dtype: DTypeLike = "float32",
                  roi: np.ndarray | None = None) -> Iterator[DataTile]:
        """The unit's own processed frames as tiles, from its sources (no halo)."""
        full = None
        if roi is not None:
            nav_size = self.shape.nav.size
            full = np.zeros(nav_size, dtype=bool)
            full[self.start:self.stop] = np.asarray(roi, dtype=bool)
        done = 0
        for p, mask in self._reads(self.start, self.stop, full):
            for tile in p.get_tiles(tiling_scheme, dest_dtype, mask):
                yield DataTile(tile.data, tile.tile_slice, tile.scheme_idx, tile.frame_index,
                               done + tile.processed_start)
            done += int(p.selected_positions(mask).size)

    def __repr__(self):
        return (f"HaloUnit(index={self.index}, rows=[{self.start}, {self.stop}), "
                f"read=[{self.read_start}, {self.read_stop}), sources={len(self.sources)})")


def halo_units(partitions: Sequence[Partition], nav_shape: tuple, halo_rows: int,
               num_units: int | None = None) -> list[HaloUnit]:
    """The :class:`HaloUnit` of a halo run over a data set cut into ``partitions``.

    Parameters
    ----------
    partitions : list of Partition
        The data set's partitions (contiguous, in order, covering the nav axis).
    nav_shape : tuple of int
    halo_rows : int
        Rows read above and below each unit (the largest first-axis radius of the run).
    num_units : int, optional
        Aim for this many units instead of one per partition.
    """
    parts = list(partitions)
    nav_size = prod(nav_shape)
    row = prod(nav_shape[1:]) if len(nav_shape) > 1 else 1
    bounds = [(p.start, p.stop) for p in parts]
    if num_units is not None:
        n = max(1, min(int(num_units), nav_size // row))
        bounds = [(i * nav_size // n, (i + 1) * nav_size // n) for i in range(n)]
    first = parts[0]
    units = []
    for i, (start, stop) in enumerate(row_aligned_bounds(bounds, row, nav_size)):
        ra = max(0, start - halo_rows * row)
        rb = min(nav_size, stop + halo_rows * row)
        sources = [p for p in parts if p.start < rb and p.stop > ra]
        units.append(HaloUnit(sources=sources, read_start=ra, read_stop=rb, shape=first.shape,
                              start=start, stop=stop, raw_dtype=first.raw_dtype,
                              image_count=first.image_count, sync_offset=first.sync_offset,
                              index=i))
    return units


def read_amplification(units: Sequence[HaloUnit]) -> float:
    """Frames read over frames owned (1.0: no halo rows read)."""
    own = sum(u.num_frames for u in units)
    return sum(u.frames_read for u in units) / own if own else 1.0
