"""Parsers for user-facing input forms: shapes, dtypes, byte sizes, ROIs.

Each turns every accepted form into one canonical value, or raises an error of the form
"expected X, got Y". The error class is passed in by the caller, so that a bad
``nav_shape`` in ``Context.load`` becomes a ``DataSetError`` that names the file.
"""

from __future__ import annotations

import numbers
import re

import numpy as np

__all__ = ["normalize_shape", "normalize_dtype", "parse_size", "normalize_roi"]


def normalize_shape(value, name: str = "shape", *, min_dims=1, max_dims=None,
                    error=ValueError, where: str = "", allow_zero: bool = False) -> tuple[int, ...]:
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
    dims = tuple(int(d) for d in dims)
    if any(d < 0 or (d == 0 and not allow_zero) for d in dims):
        kind = "non-negative" if allow_zero else "positive"
        raise error(f"{prefix}: expected {kind} integers, got {value!r}")
    upper = max_dims if max_dims is not None else "any number of"
    if len(dims) < min_dims or (max_dims is not None and len(dims) > max_dims):
        raise error(f"{prefix}: expected {min_dims} to {upper} dimensions, got {value!r} "
                    f"({len(dims)} dimensions)")
    return dims


def normalize_dtype(value, *, error=ValueError, where: str = "") -> np.dtype:
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
    """
    prefix = f"{where}: dtype" if where else "dtype"
    try:
        dt = np.dtype(value)
    except TypeError:
        raise error(f"{prefix}: expected a numpy dtype such as 'uint16' or '>f4', got {value!r}") from None
    if value is None or dt.kind not in "biufc":
        raise error(f"{prefix}: expected a numeric dtype such as 'uint16' or '>f4', got {value!r}")
    return dt


_SIZE_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmgt]?)(i?b?)\s*$", re.IGNORECASE)
_UNITS = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}


def parse_size(value, *, error=ValueError) -> int:
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


def normalize_roi(roi, nav_shape, *, error=ValueError, where: str = ""):
    """Return ``roi`` as a flat boolean array over the navigation axis, or None.

    Accepted forms: ``None`` (everything), a boolean array of the nav shape, or a flat
    boolean array with one entry per navigation position.

    Examples
    --------
    >>> normalize_roi(None, (2, 2)) is None
    True
    >>> normalize_roi(np.array([[True, False], [False, True]]), (2, 2))
    array([ True, False, False,  True])
    >>> normalize_roi(np.ones((3, 3), bool), (2, 2))
    Traceback (most recent call last):
    ...
    ValueError: roi: expected a bool array of the nav shape (2, 2) or flat with 4 entries, got shape (3, 3)
    """
    if roi is None:
        return None
    prefix = f"{where}: roi" if where else "roi"
    nav_shape = tuple(nav_shape)
    n = int(np.prod(nav_shape, dtype=np.int64))
    try:
        arr = np.asarray(roi)
    except Exception as e:  # pragma: no cover - exotic array-likes
        raise error(f"{prefix}: expected a bool array, got {type(roi).__name__}: {e}") from None
    if arr.dtype != np.bool_:
        raise error(f"{prefix}: expected a bool array of the nav shape {nav_shape}, "
                    f"got dtype {arr.dtype} (use roi.astype(bool) if that is what you mean)")
    if arr.shape != nav_shape and arr.shape != (n,):
        raise error(f"{prefix}: expected a bool array of the nav shape {nav_shape} or flat with "
                    f"{n} entries, got shape {arr.shape}")
    return np.ascontiguousarray(arr.reshape(n))
