"""Numba kernel of the sparse built-ins: add stored entries into per-pixel (or per-frame) sums.

:func:`scatter_add` adds ``values[k]`` at ``index[k]`` in one pass over the stored entries, in
the accumulator's dtype, reading both arrays in the dtypes they came in: no widened copies of
the indices or values first (``numpy.bincount`` makes both, and a third array for its result),
which made the sparse SumUDF cost several times the scipy one-liner.

This module imports numba; import it lazily.
"""

import numba
import numpy as np

__all__ = ["scatter_add", "takes"]


@numba.njit(cache=True, nogil=True)
def _scatter_add(out, index, values):
    n = out.shape[0]
    for k in range(index.shape[0]):
        j = np.int64(index[k])
        if j < 0 or j >= n:
            return k
        out[j] += values[k]
    return -1


def takes(out: np.ndarray, index: np.ndarray, values: np.ndarray) -> bool:
    """Whether :func:`scatter_add` handles these arrays (native integer indices, numeric
    values numba compiles, a contiguous accumulator that holds the values' kind)."""
    def plain(a, kinds):
        return a.dtype.isnative and a.dtype.kind in kinds and a.dtype != np.float16

    if not (plain(out, "iufc") and plain(index, "iu") and plain(values, "biufc")):
        return False
    if not (out.ndim == 1 and out.flags.c_contiguous and out.flags.writeable):
        return False
    # a complex value into a real sum, or a float into an integer one, would be cut
    order = "biufc"
    return order.index(values.dtype.kind) <= order.index(out.dtype.kind) or \
        (values.dtype.kind in "bu" and out.dtype.kind == "i")


def scatter_add(out: np.ndarray, index: np.ndarray, values: np.ndarray) -> np.ndarray:
    """``out[index[k]] += values[k]`` for every ``k`` (repeated indices add up); returns ``out``.

    Raises
    ------
    IndexError
        For an index outside ``out``.

    Examples
    --------
    >>> out = np.zeros(4)
    >>> scatter_add(out, np.array([3, 0, 3], np.int32), np.array([1, 2, 5], np.uint16)).tolist()
    [2.0, 0.0, 0.0, 6.0]
    """
    bad = _scatter_add(out, index, values)
    if bad >= 0:
        raise IndexError(f"sparse tile: index {int(index[bad])} (entry {bad}) is outside the "
                         f"{out.shape[0]} sums")
    return out
