"""Sparse tiles in the built-in UDFs: what their sparse paths share.

A UDF that lists a sparse backend in ``get_backends()`` gets its tiles as scipy.sparse
matrices of shape ``(depth, pixels)`` (a ``raw_csr`` data set hands out its CSR rows as
they are) or as pydata ``sparse`` arrays of shape ``(depth, *sig_part)``. The built-ins
bring every such tile to scipy CSR (no copy for a CSR tile) and work on its three arrays:
sums over frames or pixels cost one pass over the stored entries, not over every pixel.

Sums of many entries go through a numba kernel that adds each stored value into the
accumulator in one pass (:mod:`._sparse_kernels`); small ones, and dtypes numba does not
take, through :func:`numpy.bincount` with float64 weights (float32 data accumulate in float64
as the dense kernels do) or, for integer accumulators, :func:`numpy.add.at`, which is exact in
the accumulator's dtype.
"""

from __future__ import annotations

import numpy as np

__all__ = ["is_sparse", "as_csr", "column_sums", "row_sums", "to_dense"]

#: from this many entries on, sums go through a numba kernel (below, numpy's call costs less
#: than loading numba in a process that has not yet)
_KERNEL_MIN_ENTRIES = 4096


def is_sparse(tile) -> bool:
    """Whether ``tile`` is a sparse array (scipy.sparse or pydata sparse), not numpy."""
    return not isinstance(tile, np.ndarray)


def as_csr(tile):
    """``tile`` as a scipy CSR matrix ``(depth, pixels)``; a CSR tile is returned as it is.

    Examples
    --------
    >>> import sparse
    >>> as_csr(sparse.COO.from_numpy(np.eye(2).reshape(2, 1, 2))).toarray()
    array([[1., 0.],
           [0., 1.]])
    """
    if getattr(tile, "format", None) == "csr" and tile.ndim == 2:
        return tile
    if type(tile).__module__.startswith("scipy.sparse"):
        return tile.tocsr()
    # pydata sparse: (depth, *sig) -> (depth, pixels)
    depth = tile.shape[0]
    return tile.reshape((depth, int(np.prod(tile.shape[1:])))).to_scipy_sparse().tocsr()


def _add(out, index, values, n) -> np.ndarray:
    """``out`` (flat, length ``n``) plus ``values`` added at ``index``."""
    if index.size >= _KERNEL_MIN_ENTRIES:
        from . import _sparse_kernels as kernels

        if kernels.takes(out, index, values):
            # one pass in the stored dtypes (bincount widens both arrays first)
            return kernels.scatter_add(out, index, values)
    if out.dtype.kind in "iub":
        np.add.at(out, index, values.astype(out.dtype, copy=False))
        return out
    if values.dtype.kind == "c":
        out += (np.bincount(index, weights=values.real, minlength=n)
                + 1j * np.bincount(index, weights=values.imag, minlength=n))
    else:
        out += np.bincount(index, weights=values, minlength=n)
    return out


def column_sums(csr, out: np.ndarray, square: bool = False) -> np.ndarray:
    """Add the per-pixel sums over the frames of ``csr`` (of ``|x|**2`` with ``square``) to
    ``out`` (flat, one entry per pixel); returns ``out``.

    Examples
    --------
    >>> import scipy.sparse
    >>> m = scipy.sparse.csr_matrix(np.array([[0, 2, 0], [3, 0, 4]], "float32"))
    >>> column_sums(m, np.zeros(3)).tolist()
    [3.0, 2.0, 4.0]
    >>> column_sums(m, np.zeros(3), square=True).tolist()
    [9.0, 4.0, 16.0]
    """
    data = csr.data
    if square:
        data = data.real.astype(np.float64) ** 2 + (data.imag.astype(np.float64) ** 2
                                                     if data.dtype.kind == "c" else 0)
    return _add(out, csr.indices, data, csr.shape[1])


def row_sums(csr, out: np.ndarray) -> np.ndarray:
    """Add the per-frame sums over the pixels of ``csr`` to ``out`` (one entry per frame).

    Examples
    --------
    >>> import scipy.sparse
    >>> m = scipy.sparse.csr_matrix(np.array([[0, 2, 0], [3, 0, 4]], "int32"))
    >>> row_sums(m, np.zeros(2, np.int64)).tolist()
    [2, 7]
    """
    depth = csr.shape[0]
    rows = np.repeat(np.arange(depth), np.diff(csr.indptr))
    return _add(out, rows, csr.data, depth)


def to_dense(tile, shape) -> np.ndarray:
    """``tile`` (sparse) as a dense numpy array of ``shape``."""
    if hasattr(tile, "toarray"):
        return tile.toarray().reshape(shape)
    return np.asarray(tile.todense()).reshape(shape)
