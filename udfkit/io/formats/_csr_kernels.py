"""Kernels of the ``raw_csr`` format: CSR rows into dense frames, checked index copies.

:func:`densify` writes selected rows of a CSR span into a C-contiguous ``(n, sig_size)``
block in one pass (zero the row, add its entries), converting the stored values into the
block's dtype on the fly and checking every column index. Duplicate column indices in a row
add up, as in scipy's ``toarray``. Dtypes numba does not handle (float16, bool, byte-swapped
values) are converted first or go through numpy. :func:`checked_indices` copies the column
indices of a sparse tile into the index dtype of its matrix and checks them in the same pass
(one pass over the indices instead of three: copy, min, max).

This module imports numba; import it lazily.
"""

import numba
import numpy as np

__all__ = ["densify", "checked_indices"]


@numba.njit(cache=True, nogil=True)
def _densify(ptr, rows, idx, val, base, out, sig_size, zero, first_row, pos, npos):
    record = pos.shape[0] > 0
    for o in range(rows.shape[0]):
        r = rows[o]
        dst = out[o]
        if zero:
            for z in range(dst.shape[0]):
                dst[z] = 0
        for k in range(ptr[r] - base, ptr[r + 1] - base):
            j = np.int64(idx[k])
            if j < 0 or j >= sig_size:
                return k, npos
            dst[j] += val[k]
            if record:
                pos[npos] = (first_row + o) * sig_size + j
                npos += 1
    return -1, npos


@numba.njit(cache=True, nogil=True)
def _copy_indices(idx, out, sig_size):
    for k in range(idx.shape[0]):
        j = np.int64(idx[k])
        if j < 0 or j >= sig_size:
            return k
        out[k] = j
    return -1


def checked_indices(idx: np.ndarray, dtype, sig_size: int) -> tuple[np.ndarray, int]:
    """``idx`` copied into a new array of ``dtype``, each index checked against ``sig_size``.

    Returns ``(copy, bad)``: ``bad`` is -1, or the position of the first index outside
    ``[0, sig_size)`` (the copy is then incomplete).

    Examples
    --------
    >>> out, bad = checked_indices(np.array([3, 0, 2], ">i8"), np.int32, 4)
    >>> out.tolist(), out.dtype.name, bad
    ([3, 0, 2], 'int32', -1)
    >>> checked_indices(np.array([1, 4, -1], np.int32), np.int32, 4)[1]
    1
    >>> checked_indices(np.array([1, 2, -1], ">i4"), np.int64, 4)[1]
    2
    """
    out = np.empty(idx.shape, dtype)
    if _numba_ok(idx.dtype, "iu") and _numba_ok(out.dtype, "i"):
        return out, int(_copy_indices(idx, out, np.int64(sig_size)))
    wide = idx.astype(np.int64) if idx.dtype.kind == "i" or idx.dtype.itemsize < 8 else idx
    bad = np.flatnonzero((wide < 0) | (wide >= sig_size))
    if bad.size:
        return out, int(bad[0])
    out[:] = idx
    return out, -1


def _numba_ok(dtype: np.dtype, kinds: str) -> bool:
    return dtype.isnative and dtype.kind in kinds and dtype != np.float16


def densify(ptr, rows, idx, val, base, out, sig_size, zero=True, first_row=0, pos=None,
            npos=0):
    """Dense frames of the CSR rows ``rows`` of a span into ``out``.

    Parameters
    ----------
    ptr : numpy.ndarray
        int64 indptr of the span as stored (``ptr[0]`` is the element offset ``base``).
    rows : numpy.ndarray
        int64 rows of the span to write, one per row of ``out``.
    idx, val : numpy.ndarray
        Column indices and values of the span (element ``base`` first), stored dtypes.
    base : int
        Element offset of ``idx[0]`` in the files.
    out : numpy.ndarray
        C-contiguous ``(len(rows), sig_size)``.
    sig_size : int
    zero : bool
        Zero each row first; ``False`` when the caller knows the rows are zero.
    first_row, pos, npos
        With ``pos`` (int64, room for every entry of ``rows``), the flat position
        ``(first_row + row of out) * sig_size + column`` of every entry written is recorded
        in ``pos`` from ``npos`` on, so that the caller can clear just those later.

    Returns
    -------
    bad : int
        -1, or the position in ``idx`` of the first index outside ``[0, sig_size)``.
    npos : int
        Entries of ``pos`` in use afterwards; ``-1`` when positions were asked for but not
        recorded (dtypes numba does not take: the caller must clear all of ``out``).

    Examples
    --------
    >>> out = np.empty((2, 4), np.float32)
    >>> ptr = np.array([10, 12, 13])
    >>> densify(ptr, np.array([1, 0]), np.array([3, 3, 1], np.int32),
    ...         np.array([1, 2, 5], ">u2"), 10, out, 4)
    (-1, 0)
    >>> out.tolist()
    [[0.0, 5.0, 0.0, 0.0], [0.0, 0.0, 0.0, 3.0]]
    >>> pos = np.zeros(3, np.int64)
    >>> densify(ptr, np.array([0]), np.array([3, 3, 1], np.int32), np.ones(3), 10, out[1:], 4,
    ...         first_row=1, pos=pos)
    (-1, 2)
    >>> pos[:2].tolist()
    [7, 7]
    >>> densify(ptr, np.array([1]), np.array([3, 3, 9], np.int32), np.ones(3), 10, out[:1], 4)[0]
    2
    """
    rows = np.ascontiguousarray(rows, dtype=np.int64)
    if not _numba_ok(idx.dtype, "iu"):
        idx = idx.astype(np.int64)
    if not val.dtype.isnative:
        val = val.astype(val.dtype.newbyteorder("="))
    if (_numba_ok(val.dtype, "iufc") and _numba_ok(out.dtype, "iufc") and out.flags.c_contiguous
            and (out.dtype.kind == "c" or val.dtype.kind != "c")):
        bad, npos = _densify(ptr, rows, idx, val, np.int64(base), out, np.int64(sig_size),
                             bool(zero), np.int64(first_row),
                             _NO_POS if pos is None else pos, np.int64(npos))
        return int(bad), int(npos)
    return _densify_numpy(ptr, rows, idx, val, int(base), out, int(sig_size)), \
        (0 if pos is None else -1)


_NO_POS = np.zeros(0, np.int64)


def _densify_numpy(ptr, rows, idx, val, base, out, sig_size) -> int:
    out[...] = 0
    starts = ptr[rows] - base
    counts = ptr[rows + 1] - base - starts
    total = int(counts.sum())
    if total == 0:
        return -1
    # element positions of the selected rows, and the output row of each
    first = np.repeat(starts - np.concatenate(([0], np.cumsum(counts)[:-1])), counts)
    k = first + np.arange(total, dtype=np.int64)
    cols = idx[k].astype(np.int64)
    bad = np.flatnonzero((cols < 0) | (cols >= sig_size))
    if bad.size:
        return int(k[bad[0]])
    out_rows = np.repeat(np.arange(rows.size), counts)
    np.add.at(out, (out_rows, cols), val[k].astype(out.dtype))
    return -1
