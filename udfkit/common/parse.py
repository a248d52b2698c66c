"""Parsers for user-facing input forms: shapes, dtypes, byte sizes, ROIs.

Each turns every accepted form into one canonical value, or raises an error of the form
"expected X, got Y". The error class is passed in by the caller, so that a bad
``nav_shape`` in ``Context.load`` becomes a ``DataSetError`` that names the file.
"""

from __future__ import annotations

import numbers
import re
from collections.abc import Iterable
from typing import Any, SupportsIndex

import numpy as np
from numpy.typing import DTypeLike

__all__ = ["normalize_shape", "normalize_dtype", "check_dtype_supported", "parse_size", "parse_roi",
           "normalize_roi", "ShapeLike"]

#: what :func:`normalize_shape` accepts: one size, or a sequence of sizes (ints, numpy
#: integers, a :class:`~udfkit.common.Shape`)
ShapeLike = int | Iterable[SupportsIndex]


def normalize_shape(value: Any, name: str = "shape", *, min_dims: int = 1,
                    max_dims: int | None = None, error: type[Exception] = ValueError,
                    where: str = "", allow_zero: bool = False) -> tuple[int, ...]:
    """Return ``value`` as a tuple of positive ints (non-negative with ``allow_zero``).

    Examples
    --------
    >>> normalize_shape((4, 5))
    (4, 5)
    >>> normalize_shape(7)
    (7,)
    >>> normalize_shape([2, 3], max_dims=1)
    Traceback (most recent call last):
    ...
    ValueError: shape: expected 1 to 1 dimensions, got [2, 3] (2 dimensions)
    >>> normalize_shape((4, 0), "nav_shape")
    Traceback (most recent call last):
    ...
    ValueError: nav_shape: expected positive integers, got (4, 0)
    """
    prefix = f"{where}: {name}" if where else name
    if isinstance(value, numbers.Integral) and not isinstance(value, bool):
        dims = (value,)
    else:
        try:
            dims = tuple(value)
        except TypeError:
            raise error(f"{prefix}: expected a tuple of positive integers, got {value!r}") from None
    if not all(isinstance(d, numbers.Integral) and not isinstance(d, bool) for d in dims):
        raise error(f"{prefix}: expected a tuple of positive integers, got {value!r}")
    sizes = tuple(int(d) for d in dims)
    if any(d < 0 or (d == 0 and not allow_zero) for d in sizes):
        kind = "non-negative" if allow_zero else "positive"
        raise error(f"{prefix}: expected {kind} integers, got {value!r}")
    upper = max_dims if max_dims is not None else "any number of"
    if len(sizes) < min_dims or (max_dims is not None and len(sizes) > max_dims):
        raise error(f"{prefix}: expected {min_dims} to {upper} dimensions, got {value!r} "
                    f"({len(sizes)} dimensions)")
    return sizes


def normalize_dtype(value: DTypeLike, *, error: type[Exception] = ValueError,
                    where: str = "") -> np.dtype:
    """Return ``value`` as a numpy dtype of a numeric or boolean type.

    Examples
    --------
    >>> normalize_dtype("uint16")
    dtype('uint16')
    >>> normalize_dtype(">f4")
    dtype('>f4')
    >>> normalize_dtype("uint17")
    Traceback (most recent call last):
    ...
    ValueError: dtype: expected a numpy dtype such as 'uint16' or '>f4', got 'uint17'
    >>> normalize_dtype(("i4", -1))  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    ValueError: dtype: expected a numpy dtype such as 'uint16' or '>f4', got ('i4', -1) (numpy: ...)
    """
    prefix = f"{where}: dtype" if where else "dtype"
    try:
        dt = np.dtype(value)
    except (TypeError, ValueError) as e:
        # numpy's ValueErrors (a negative sub-array shape) do not name the parameter
        why = f" (numpy: {e})" if isinstance(e, ValueError) else ""
        raise error(f"{prefix}: expected a numpy dtype such as 'uint16' or '>f4', got {value!r}{why}") \
            from None
    if value is None or dt.kind not in "biufc":
        raise error(f"{prefix}: expected a numeric dtype such as 'uint16' or '>f4', got {value!r}")
    check_dtype_supported(dt, error=error, where=where)
    return dt


def check_dtype_supported(dtype: DTypeLike, *, error: type[Exception] = ValueError,
                          where: str = "") -> None:
    """Refuse floats wider than 64 bits (``np.longdouble``, ``np.clongdouble`` on x86-64).

    udfkit's kernels (numba) and the result buffers compute in at most float64 and
    complex128; numba has no extended-precision type, so such data would load and then fail
    in every run.

    Examples
    --------
    >>> check_dtype_supported(np.dtype("float64"))
    >>> check_dtype_supported(np.dtype("V16"))  # not a number: another check's business
    >>> check_dtype_supported(np.dtype((np.float64, 2)), where="x")
    Traceback (most recent call last):
    ...
    ValueError: x: dtype ('<f8', (2,)) has a sub-array shape; expected a scalar numeric dtype
    """
    dt = np.dtype(dtype)
    prefix = f"{where}: dtype" if where else "dtype"
    if dt.subdtype is not None:
        raise error(f"{prefix} {dt} has a sub-array shape; expected a scalar numeric dtype")
    if (dt.kind == "f" and dt.itemsize > 8) or (dt.kind == "c" and dt.itemsize > 16):
        bits = "float64" if dt.kind == "f" else "complex128"
        raise error(f"{prefix} {dt} ({dt.itemsize * 8}-bit extended precision) is not supported: "
                    f"udfkit computes in at most {bits}; convert the data first, e.g. "
                    f"arr.astype(np.{bits})")


_SIZE_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmgt]?)(i?b?)\s*$", re.IGNORECASE)
_UNITS = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}


def parse_size(value: int | float | str, *, error: type[Exception] = ValueError) -> int:
    """Return a byte size; strings use binary units ("64M", "1.5GiB", "512k").

    Examples
    --------
    >>> parse_size(4096)
    4096
    >>> parse_size("64M")
    67108864
    >>> parse_size("1.5GiB")
    1610612736
    >>> parse_size("lots")
    Traceback (most recent call last):
    ...
    ValueError: expected a byte size such as 4096, '64M' or '1GiB', got 'lots'
    """
    if isinstance(value, numbers.Integral) and not isinstance(value, bool):
        if value < 0:
            raise error(f"expected a non-negative byte size, got {value!r}")
        return int(value)
    if isinstance(value, str):
        m = _SIZE_RE.match(value)
        if m:
            return int(float(m.group(1)) * _UNITS[m.group(2).lower()])
    raise error(f"expected a byte size such as 4096, '64M' or '1GiB', got {value!r}")


def _is_coordinate(item, ndim: int) -> bool:
    """True for a tuple/list of ``ndim`` plain ints (bools are no coordinates)."""
    return (isinstance(item, (tuple, list)) and len(item) == ndim
            and all(isinstance(c, numbers.Integral) and not isinstance(c, (bool, np.bool_))
                    for c in item))


def _is_pair(item, ndim: int) -> bool:
    """True for LiberTEM's ``((y, x), True)`` form: a coordinate and its truth value."""
    return (isinstance(item, (tuple, list)) and len(item) == 2 and _is_coordinate(item[0], ndim)
            and isinstance(item[1], (bool, np.bool_, numbers.Integral))
            and item[1] in (0, 1))


def _dense(roi):
    """A dense numpy array of a scipy.sparse or pydata ``sparse`` array; None for others."""
    # checked by duck type and module name, so that neither library has to be imported here
    module = type(roi).__module__ or ""
    if module.startswith("scipy.sparse") and hasattr(roi, "toarray"):
        return np.asarray(roi.toarray())
    if module.startswith("sparse") and hasattr(roi, "todense"):
        return np.asarray(roi.todense())
    return None


def parse_roi(roi: Any, nav_shape: tuple[int, ...], *, error: type[Exception] = ValueError,
              where: str = "") -> np.ndarray | None:
    """Return ``roi`` as a new flat boolean array over the navigation axis, or None.

    Accepted forms (LiberTEM's, plus flat arrays and lists of coordinates):

    * ``None``: every position;
    * an array of the nav shape, or flat with one entry per position, of bools or of the
      numbers 0 and 1 (ints or floats);
    * a ``scipy.sparse`` matrix/array or a ``sparse`` (pydata) array of either shape;
    * one coordinate, a tuple of ints with one entry per nav axis: ``(y, x)`` selects that
      frame only;
    * a list of coordinate tuples ``[(y0, x0), (y1, x1), ...]``: those frames (a list of
      lists is read as an array, as ``mask.tolist()`` gives it);
    * LiberTEM's list of coordinates with a truth value, ``[((y, x), True), ...]``: all
      values must be equal; ``False`` selects every position but the listed ones.

    Parameters
    ----------
    roi : see above
    nav_shape : tuple of int
    error : type
        The exception class raised for a bad ``roi`` (the message names what was given).
    where : str
        Prefix of the message (which data set).

    Examples
    --------
    >>> parse_roi(None, (2, 2)) is None
    True
    >>> parse_roi(np.array([[True, False], [False, True]]), (2, 2))
    array([ True, False, False,  True])
    >>> parse_roi(np.array([[0, 1], [1, 0]]), (2, 2))
    array([False,  True,  True, False])
    >>> parse_roi((1, 0), (2, 2))
    array([False, False,  True, False])
    >>> parse_roi([(0, 0), (1, 1)], (2, 2))
    array([ True, False, False,  True])
    >>> parse_roi([[0, 1], [1, 1]], (2, 2))
    array([False,  True,  True,  True])
    >>> parse_roi([((0, 1), False)], (2, 2))
    array([ True, False,  True,  True])
    >>> import scipy.sparse
    >>> parse_roi(scipy.sparse.csr_matrix(np.eye(2, dtype=bool)), (2, 2))
    array([ True, False, False,  True])
    >>> import sparse
    >>> parse_roi(sparse.COO.from_numpy(np.eye(2, dtype=bool)), (2, 2))
    array([ True, False, False,  True])
    >>> parse_roi(np.ones((3, 3), bool), (2, 2))  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    ValueError: roi: expected a bool array of the nav shape (2, 2) or flat ..., got shape (3, 3)
    >>> parse_roi(np.array([[0, 2], [1, 0]]), (2, 2))  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    ValueError: roi: expected a bool array of the nav shape (2, 2) ..., got dtype int64 with values [0 1 2]
    >>> parse_roi((2, 0), (2, 2))
    Traceback (most recent call last):
    ...
    ValueError: roi: coordinate (2, 0) lies outside the nav shape (2, 2)
    >>> parse_roi("all", (2, 2))  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    ValueError: roi: expected None, a bool array of the nav shape (2, 2), ..., got str 'all'
    """
    if roi is None:
        return None
    prefix = f"{where}: roi" if where else "roi"
    nav_shape = tuple(int(n) for n in nav_shape)
    ndim = len(nav_shape)
    n = int(np.prod(nav_shape, dtype=np.int64))
    forms = (f"None, a bool array of the nav shape {nav_shape}, a sparse array, a coordinate "
             f"such as {(0,) * ndim if ndim > 1 else '(0,)'} or a list of them")

    def coordinates_to_mask(coords, value=True):
        mask = np.full(nav_shape, not value, dtype=bool)
        for c in coords:
            c = tuple(int(i) for i in c)
            if any(not 0 <= i < s for i, s in zip(c, nav_shape)):
                raise error(f"{prefix}: coordinate {c} lies outside the nav shape {nav_shape}")
            mask[c] = value
        return mask.reshape(n)

    if isinstance(roi, (tuple, list)):
        items = list(roi)
        if _is_coordinate(items, ndim):
            return coordinates_to_mask([items])
        if not items:
            return np.zeros(n, dtype=bool)
        # coordinates are tuples: a list of lists of 0/1 (``mask.tolist()``) is a mask
        if all(isinstance(it, tuple) and _is_coordinate(it, ndim) for it in items):
            return coordinates_to_mask(items)
        if all(_is_pair(it, ndim) for it in items):
            values = {bool(it[1]) for it in items}
            if len(values) != 1:
                raise error(f"{prefix}: a list of (coordinate, value) pairs must use one truth "
                            f"value for all, got both True and False")
            return coordinates_to_mask([it[0] for it in items], values.pop())
        # anything else (nested lists of bools) is read as an array below
    if isinstance(roi, str) or np.isscalar(roi):
        raise error(f"{prefix}: expected {forms}, got {type(roi).__name__} {roi!r}")
    dense = _dense(roi)
    sparse_2d = dense is not None and dense.ndim == 2 and dense.shape == (1, n) and nav_shape != (1, n)
    try:
        arr = dense if dense is not None else np.asarray(roi)
    except Exception as e:  # pragma: no cover - exotic array-likes
        raise error(f"{prefix}: expected {forms}, got {type(roi).__name__}: {e}") from None
    if arr.dtype == object:
        raise error(f"{prefix}: expected {forms}, got {type(roi).__name__} {roi!r:.80}")
    if sparse_2d:
        # scipy.sparse has only 2D forms: a flat ROI arrives as one row
        arr = arr.reshape(n)
    if arr.shape != nav_shape and arr.shape != (n,):
        raise error(f"{prefix}: expected a bool array of the nav shape {nav_shape} or flat with "
                    f"{n} entries, got shape {arr.shape}")
    if arr.dtype != np.bool_:
        distinct = np.unique(arr)
        if arr.dtype.kind not in "iuf" or not np.isin(distinct, (0, 1)).all():
            shown = distinct if distinct.size <= 8 else f"{distinct[:8]} ..."
            raise error(f"{prefix}: expected a bool array of the nav shape {nav_shape} (or one of "
                        f"0 and 1), got dtype {arr.dtype} with values {shown}")
    return np.array(arr.reshape(n), dtype=bool, order="C")


#: the name the UDF driver uses; one function
normalize_roi = parse_roi
