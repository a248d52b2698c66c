"""Result objects returned by ``Context.run_udf``: :class:`BufferResult` and :class:`RunResults`."""

from __future__ import annotations

import numpy as np

from .buffers import fill_value

__all__ = ["BufferResult", "RunResults"]


class BufferResult:
    """One result of a UDF.

    Attributes
    ----------
    kind : {"nav", "sig", "single"}
    raw_data : numpy.ndarray
        The buffer as stored: for nav results one entry per processed frame (a ROI or missing
        frames make it shorter than the nav axis), in flattened nav order.
    data : numpy.ndarray
        Nav results reshaped to ``nav_shape + extra_shape``, with NaN (floats), 0 (integers)
        or False (bools) at positions that were not processed (outside the ROI, no frame in
        the file, or not merged yet in a partial result); other kinds as stored.
    valid_mask : numpy.ndarray of bool
        Same shape as ``data``: True where ``data`` holds a computed value.
        A result that ``get_results`` returned through ``with_mask(data, mask)`` has that
        mask (spread over the nav shape for nav results, False outside the ROI).
    masked_data : numpy.ma.MaskedArray
        ``data`` masked where ``valid_mask`` is False.
    raw_masked_data : numpy.ma.MaskedArray
        ``raw_data`` masked where it is not valid.

    Examples
    --------
    >>> import numpy as np
    >>> r = BufferResult(np.array([1.0, 2.0]), kind="nav", nav_shape=(2, 2),
    ...                  positions=np.array([0, 3]))
    >>> r.data
    array([[ 1., nan],
           [nan,  2.]])
    >>> r.valid_mask
    array([[ True, False],
           [False,  True]])
    """

    def __init__(self, raw_data, *, kind: str, nav_shape, extra_shape=(), positions=None,
                 rows_valid=None, mask=None):
        self.raw_data = raw_data
        self._mask = mask  # a custom valid mask in the shape of raw_data (with_mask)
        self.kind = kind
        self.extra_shape = tuple(extra_shape)
        self._nav_shape = tuple(nav_shape)
        self._positions = positions  # flat nav index of each raw row, None = all, in order
        self._rows_valid = rows_valid  # bool per raw row (partial results), None = all
        self._data: np.ndarray | None = None
        self._valid: np.ndarray | None = None

    @property
    def dtype(self):
        return self.raw_data.dtype

    @property
    def shape(self):
        return self.data.shape

    def _complete(self) -> bool:
        return self._positions is None and self._rows_valid is None

    @property
    def data(self) -> np.ndarray:
        if self._data is None:
            if self.kind != "nav":
                self._data = self.raw_data
            elif self._complete():
                self._data = self.raw_data.reshape(self._nav_shape + self.extra_shape)
            else:
                nav_size = int(np.prod(self._nav_shape, dtype=np.int64))
                out = np.full((nav_size,) + self.extra_shape, fill_value(self.dtype), dtype=self.dtype)
                pos, rows = self._scatter_index(nav_size)
                out[pos] = self.raw_data[rows]
                self._data = out.reshape(self._nav_shape + self.extra_shape)
        return self._data

    def _scatter_index(self, nav_size):
        rows = np.arange(self.raw_data.shape[0]) if self._rows_valid is None \
            else np.flatnonzero(self._rows_valid)
        pos = rows if self._positions is None else np.asarray(self._positions)[rows]
        return pos, rows

    @property
    def valid_mask(self) -> np.ndarray:
        if self._valid is None and self._mask is not None:
            mask = np.broadcast_to(self._mask, self.raw_data.shape)
            if self.kind != "nav":
                self._valid = mask.copy()
            else:
                nav_size = int(np.prod(self._nav_shape, dtype=np.int64))
                flat = np.zeros((nav_size,) + self.extra_shape, dtype=bool)
                pos = (np.arange(self.raw_data.shape[0]) if self._positions is None
                       else np.asarray(self._positions))
                flat[pos] = mask
                self._valid = flat.reshape(self._nav_shape + self.extra_shape)
        if self._valid is None:
            if self.kind != "nav" or self._complete():
                self._valid = np.ones(self.data.shape, dtype=bool)
            else:
                nav_size = int(np.prod(self._nav_shape, dtype=np.int64))
                hits = np.zeros(nav_size, dtype=bool)
                hits[self._scatter_index(nav_size)[0]] = True
                shown = hits.reshape(self._nav_shape + (1,) * len(self.extra_shape))
                self._valid = np.broadcast_to(shown, self._nav_shape + self.extra_shape).copy()
        return self._valid

    @property
    def masked_data(self) -> np.ma.MaskedArray:
        return np.ma.masked_array(self.data, mask=~self.valid_mask)

    @property
    def raw_valid_mask(self) -> np.ndarray:
        """``valid_mask`` in the shape of ``raw_data``."""
        if self._mask is not None:
            return np.broadcast_to(self._mask, self.raw_data.shape)
        if self.kind != "nav" or self._rows_valid is None:
            return np.ones(self.raw_data.shape, dtype=bool)
        rows = np.asarray(self._rows_valid).reshape((-1,) + (1,) * len(self.extra_shape))
        return np.broadcast_to(rows, self.raw_data.shape)

    @property
    def raw_masked_data(self) -> np.ma.MaskedArray:
        """``raw_data`` masked where it is not valid (LiberTEM's name)."""
        return np.ma.masked_array(self.raw_data, mask=~self.raw_valid_mask)

    @property
    def valid_slice_bounding(self) -> tuple:
        """Slices of ``data`` that bound every valid element (they may include invalid ones)."""
        mask = self.valid_mask
        out = []
        for axis in range(mask.ndim):
            others = tuple(a for a in range(mask.ndim) if a != axis)
            hits = np.flatnonzero(mask.any(axis=others))
            out.append(slice(int(hits[0]), int(hits[-1]) + 1) if hits.size else slice(0, 0))
        return tuple(out)

    def get_valid_slice_inner(self, axis: int = 0) -> tuple:
        """Slices of ``data`` with only valid elements: the first run along ``axis`` whose
        entries are valid across all other axes (LiberTEM's name)."""
        mask = self.valid_mask
        others = tuple(a for a in range(mask.ndim) if a != axis)
        full = mask.all(axis=others) if others else mask
        hits = np.flatnonzero(full)
        if hits.size == 0:
            run = slice(0, 0)
        else:
            gaps = np.flatnonzero(np.diff(hits) != 1)
            stop = hits[gaps[0]] + 1 if gaps.size else hits[-1] + 1
            run = slice(int(hits[0]), int(stop))
        return tuple(run if a == axis else slice(None) for a in range(mask.ndim))

    def __array__(self, dtype=None, copy=None):
        data = self.data
        if dtype is not None:
            return data.astype(dtype, copy=bool(copy))
        return data.copy() if copy else data

    def __repr__(self):
        return f"<BufferResult kind={self.kind!r} shape={self.data.shape} dtype={self.dtype}>"


class RunResults:
    """Partial or final results of a run, as yielded by ``Context.run_udf_iter``.

    Attributes
    ----------
    buffers : list of dict
        One ``{name: BufferResult}`` per UDF.
    damage : numpy.ndarray of bool
        Nav-shaped: positions processed so far.
    frames_done, frames_total : int
    complete : bool
        True for the last yield, once every partition has been merged.
    partitions : tuple of PartitionPlan
        The partitions the run handed out so far, in nav order: the plan's, or the pieces a
        run cut by measured cost (:mod:`udfkit.udf.worksize`).
    """

    def __init__(self, buffers, damage, frames_done: int, frames_total: int, complete: bool,
                 partitions: tuple = ()):
        self.partitions = tuple(partitions)
        self.buffers = buffers
        self.damage = damage
        self.frames_done = frames_done
        self.frames_total = frames_total
        self.complete = complete

    def __repr__(self):
        return (f"<RunResults {self.frames_done}/{self.frames_total} frames, "
                f"{'complete' if self.complete else 'partial'}>")
