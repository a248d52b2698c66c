"""Results that live in a result store: :class:`DiskBufferResult`."""

from __future__ import annotations

import numpy as np

from ..results import BufferResult

__all__ = ["DiskBufferResult"]


class DiskBufferResult(BufferResult):
    """A nav result whose values are in a result store (``run_udf(out=...)``).

    ``data`` is the store's array itself (a ``zarr.Array``, an ``h5py.Dataset`` or a
    read-only ``numpy.memmap`` of shape ``nav_shape + extra_shape``): indexing it reads only
    what is asked for. Positions that were not processed hold NaN / 0 / False, as in memory.
    ``valid_mask``, ``masked_data``, ``raw_data`` and ``numpy.asarray(result)`` build
    in-memory arrays (``raw_data`` and the masked forms read the whole array).
    """

    def __init__(self, array, *, nav_shape, extra_shape=(), positions=None, rows_valid=None):
        self._array = array
        self._mask = None
        self.kind = "nav"
        self.extra_shape = tuple(extra_shape)
        self._nav_shape = tuple(nav_shape)
        self._positions = positions
        self._rows_valid = rows_valid
        self._data = array
        self._valid = None

    @property
    def dtype(self):
        return np.dtype(self._array.dtype)

    @property
    def shape(self):
        return tuple(self._array.shape)

    @property
    def data(self):
        return self._array

    @property
    def raw_data(self) -> np.ndarray:
        flat = np.asarray(self._array[...]).reshape((-1,) + self.extra_shape)
        return flat if self._positions is None else flat[np.asarray(self._positions)]

    @property
    def valid_mask(self) -> np.ndarray:
        if self._valid is None:
            nav_size = int(np.prod(self._nav_shape, dtype=np.int64))
            if self._complete():
                hits = np.ones(nav_size, dtype=bool)
            else:
                hits = np.zeros(nav_size, dtype=bool)
                n = len(self._positions) if self._positions is not None else nav_size
                rows = (np.arange(n) if self._rows_valid is None
                        else np.flatnonzero(self._rows_valid))
                hits[rows if self._positions is None else np.asarray(self._positions)[rows]] = True
            shown = hits.reshape(self._nav_shape + (1,) * len(self.extra_shape))
            self._valid = np.broadcast_to(shown, self._nav_shape + self.extra_shape)
        return self._valid

    @property
    def masked_data(self) -> np.ma.MaskedArray:
        return np.ma.masked_array(np.asarray(self._array[...]), mask=~self.valid_mask)

    @property
    def raw_valid_mask(self) -> np.ndarray:
        if self._rows_valid is None:
            return np.ones((self.raw_data.shape[0],) + self.extra_shape, dtype=bool)
        return super().raw_valid_mask

    def __array__(self, dtype=None, copy=None):
        data = np.asarray(self._array[...])
        return data if dtype is None else data.astype(dtype)

    def __repr__(self):
        return (f"<DiskBufferResult kind='nav' shape={self.shape} dtype={self.dtype} "
                f"in {type(self._array).__module__}.{type(self._array).__name__}>")
