"""Small integer and array helpers that UDF authors use (LiberTEM's ``libertem.common.math``).

They accept dense numpy arrays and, where it makes sense, sparse arrays (``scipy.sparse``
matrices and arrays, pydata ``sparse`` arrays) without importing either library: sparse
inputs are recognised by duck type.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator
from typing import Any

import numpy as np

__all__ = ["prod", "count_nonzero", "flat_nonzero", "make_2D_square", "ndenumerate"]

#: what :func:`prod` multiplies: Python and numpy integers and bools, nothing that could be
#: rounded (floats) or silently wrap (numpy's fixed-width product)
_INTEGRAL = (int, bool, np.bool_, np.integer)


def prod(iterable: Iterable) -> int:
    """Product of integers as a Python ``int`` (arbitrary width, never wraps around).

    :func:`numpy.prod` multiplies in a fixed-width integer (32 bits for the default ``int``
    on Windows), which overflows silently for the sizes of large data sets.

    Parameters
    ----------
    iterable : iterable of int
        Python or numpy integers (or bools), e.g. a shape.

    Returns
    -------
    int
        The product; 1 for an empty iterable.

    Raises
    ------
    ValueError
        An item is not an integer (a float, a string, ...).

    Examples
    --------
    >>> prod((128, 128, 256, 256))
    1073741824
    >>> prod(np.array([2**20, 2**20], dtype=np.int32))
    1099511627776
    >>> prod(())
    1
    """
    result = 1
    for item in iterable:
        if not isinstance(item, _INTEGRAL):
            raise ValueError(f"prod: expected integers, got {type(item).__name__} {item!r}")
        result *= int(item)
    return result


def count_nonzero(array: Any) -> int:
    """Number of non-zero (true) entries of a dense or sparse array, as a Python ``int``.

    Examples
    --------
    >>> count_nonzero(np.array([[0, 1], [2, 0]]))
    2
    >>> import scipy.sparse
    >>> count_nonzero(scipy.sparse.csr_matrix(np.eye(3)))
    3
    """
    if _is_scipy_sparse(array):
        return int(array.count_nonzero())
    try:
        return int(np.count_nonzero(array))
    except (TypeError, ValueError, RuntimeError):
        # pydata sparse arrays refuse to densify implicitly
        return int(array.astype(bool).sum())


def flat_nonzero(array: Any) -> np.ndarray:
    """Indices of the non-zero entries of ``array`` flattened in C order (1D ``int64``).

    Examples
    --------
    >>> flat_nonzero(np.array([[0, 1], [2, 0]]))
    array([1, 2])
    """
    if _is_scipy_sparse(array):
        coo = array.tocoo()
        keep = coo.data != 0
        flat = coo.row[keep].astype(np.int64) * coo.shape[1] + coo.col[keep]
        return np.sort(flat)
    if not isinstance(array, np.ndarray) and hasattr(array, "coords") and hasattr(array, "data"):
        # pydata sparse COO-like: coords (ndim, nnz)
        coo = array.tocoo() if hasattr(array, "tocoo") else array
        keep = coo.data != 0
        flat = np.ravel_multi_index(tuple(coo.coords[:, keep]), coo.shape) if coo.ndim else \
            np.zeros(int(keep.sum()), dtype=np.int64)
        return np.sort(np.asarray(flat, dtype=np.int64))
    return np.flatnonzero(np.asarray(array)).astype(np.int64, copy=False)


def make_2D_square(shape: tuple[int, ...]) -> tuple[int, ...]:  # noqa: N802 - LiberTEM's name
    """A 1D shape whose size is a square number as a square 2D shape; other shapes unchanged.

    Handy for a flat scan of ``n * n`` positions that was really a square grid.

    Parameters
    ----------
    shape : tuple of int

    Returns
    -------
    tuple of int
        ``(n, n)`` if ``shape == (n * n,)``, else ``shape`` itself.

    Raises
    ------
    ValueError
        A 1D shape of size below 1.

    Examples
    --------
    >>> make_2D_square((16,))
    (4, 4)
    >>> make_2D_square((15,))
    (15,)
    >>> make_2D_square((2, 8))
    (2, 8)
    """
    shape = tuple(shape)
    if len(shape) != 1:
        return shape
    size = prod(shape)
    if size < 1:
        raise ValueError(f"make_2D_square: expected a shape of size >= 1, got {shape}")
    side = math.isqrt(size)
    if side * side == size:
        return (side, side)
    return shape


def ndenumerate(array: Any) -> Iterator[tuple[tuple[int, ...], object]]:
    """``(index, value)`` pairs like :func:`numpy.ndenumerate`; for sparse arrays only the
    non-zero entries, in C order.

    Examples
    --------
    >>> [(i, int(v)) for i, v in ndenumerate(np.array([[0, 5]]))]
    [((0, 0), 0), ((0, 1), 5)]
    >>> import scipy.sparse
    >>> [(i, float(v)) for i, v in ndenumerate(scipy.sparse.csr_matrix([[0, 5.0]]))]
    [((0, 1), 5.0)]
    """
    if isinstance(array, np.ndarray) or not (_is_scipy_sparse(array) or hasattr(array, "coords")):
        yield from np.ndenumerate(np.asarray(array))
        return
    shape = tuple(array.shape)
    if _is_scipy_sparse(array):
        flat_values = array.tocsr()
        for idx in flat_nonzero(array):
            r, c = divmod(int(idx), shape[1])
            yield (r, c), flat_values[r, c]
        return
    flat = array.reshape(-1)
    for idx in flat_nonzero(array):
        yield tuple(int(i) for i in np.unravel_index(int(idx), shape)), flat[int(idx)]


def _is_scipy_sparse(x) -> bool:
    return type(x).__module__.startswith("scipy.sparse")
