"""Buffer declarations and helpers below the UDF layer, at LiberTEM's module path
(``libertem.common.buffers``): :class:`BufferWrapper` (what ``UDF.buffer(...)`` returns),
:class:`AuxData` (what ``UDF.aux_data(...)`` returns), :class:`ArrayWithMask` (what
``UDF.with_mask(data, mask)`` returns) and :func:`reshaped_view`.

Buffer kinds
------------
``nav``
    one entry per *processed* frame, shape ``(n, *extra_shape)`` while running (a ROI or
    missing frames make the buffer shorter than the nav axis); results reshape it to
    ``nav_shape + extra_shape``.
``sig``
    one entry per signal pixel: ``sig_shape + extra_shape``.
``single``
    just ``extra_shape`` (``(1,)`` when empty).

This module imports nothing from the udf layer; its errors are :class:`~udfkit.errors.UDFError`
(the error module sits at the bottom of the layer stack, next to ``common``).
"""

from __future__ import annotations

from math import prod
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, DTypeLike

from ..errors import UDFError
from .parse import normalize_shape

__all__ = ["BufferWrapper", "AuxData", "AuxBufferWrapper", "ArrayWithMask", "reshaped_view",
           "KINDS", "USES", "WHERES", "buffer_shape", "fill_value"]

KINDS = ("nav", "sig", "single")
USES = (None, "private", "result_only")
#: ``"device"`` is LiberTEM's name for memory on the compute device; on udfkit's numpy (CPU)
#: backend that is host memory, as it is in LiberTEM on a CPU worker
WHERES = (None, "device")


def reshaped_view(a: np.ndarray, shape: int | tuple[int, ...]) -> np.ndarray:
    """``a`` reshaped to ``shape`` as a view, never a copy.

    Raises ``AttributeError`` (as numpy does, and as LiberTEM documents) when the memory
    layout of ``a`` does not allow such a view.

    Examples
    --------
    >>> a = np.arange(6)
    >>> v = reshaped_view(a, (2, 3))
    >>> v[1, 0] = 100
    >>> int(a[3])
    100
    >>> reshaped_view(np.zeros((4, 4)).T, (16,))
    Traceback (most recent call last):
    ...
    AttributeError: reshaped_view: an array of shape (4, 4) with strides (8, 32) has no view of shape (16,)
    """
    a = np.asanyarray(a)
    # a wrong size is numpy's ValueError, as in LiberTEM
    np.broadcast_to(np.empty((), dtype=np.bool_), a.shape).reshape(shape)
    try:
        return a.reshape(shape, copy=False)
    except ValueError:
        want = tuple(int(x) for x in np.atleast_1d(shape))
        raise AttributeError(f"reshaped_view: an array of shape {a.shape} with strides {a.strides} "
                             f"has no view of shape {want}") from None


def fill_value(dtype: DTypeLike) -> Any:
    """What ``.data`` shows outside the processed positions: NaN, 0, False, '' or None.

    Examples
    --------
    >>> fill_value("float32"), fill_value("int8"), fill_value(bool), fill_value(object)
    (nan, 0, False, None)
    """
    dtype = np.dtype(dtype)
    if dtype.kind in "fc":
        return np.nan
    if dtype.kind == "b":
        return False
    if dtype.kind in "SU":
        return ""
    if dtype.kind == "O":
        return None
    return 0


class BufferWrapper:
    """Declaration of one result buffer: what ``UDF.buffer(...)`` returns.

    udfkit's name for it used to be ``BufferSpec``; both names are the same class.
    ``self.results.get_buffer(name)`` returns one bound to the array (``raw_data``,
    ``shape``).

    Parameters
    ----------
    kind : {"nav", "sig", "single"}
    extra_shape : tuple of int
    dtype : dtype
    where : {None, "device"}
        LiberTEM's device buffers. udfkit computes with numpy on the CPU, where the device
        memory is host memory: both values give the same numpy buffer.
    use : {None, "private", "result_only"}
        ``"private"``: merged (``merge`` sees it, ``get_results`` reads it) but never
        returned. ``"result_only"``: not allocated on workers; produced by ``get_results``.

    Examples
    --------
    >>> BufferWrapper("nav", extra_shape=(2,), dtype="float32")
    BufferWrapper(kind='nav', extra_shape=(2,), dtype=float32, use=None)
    >>> BufferWrapper("navigation")
    Traceback (most recent call last):
    ...
    udfkit.errors.UDFError: buffer kind: expected one of ('nav', 'sig', 'single'), got 'navigation'
    """

    __slots__ = ("kind", "extra_shape", "dtype", "where", "use", "_data")

    def __init__(self, kind: str = "nav", extra_shape: int | tuple[int, ...] = (),
                 dtype: DTypeLike = "float32", where: str | None = None, use: str | None = None):
        if kind not in KINDS:
            raise UDFError(f"buffer kind: expected one of {KINDS}, got {kind!r}")
        if isinstance(use, str):
            use = use.lower()
        if use not in USES:
            raise UDFError(f"buffer use: expected one of {USES}, got {use!r}")
        if where not in WHERES:
            raise UDFError(f"buffer where: expected None or 'device' (LiberTEM's device buffers; "
                           f"udfkit keeps them in host memory), got {where!r}")
        if extra_shape is None or extra_shape == ():
            extra_shape = ()
        else:
            if hasattr(extra_shape, "to_tuple"):
                # LiberTEM accepts a Shape: its whole shape, sig_dims discarded
                extra_shape = extra_shape.to_tuple()
            # zero-length axes are allowed: e.g. PickUDF with nothing selected
            extra_shape = normalize_shape(extra_shape, "extra_shape", min_dims=0, error=UDFError,
                                          allow_zero=True)
        try:
            dtype = np.dtype(dtype)
        except TypeError:
            raise UDFError(f"buffer dtype: expected a numpy dtype, got {dtype!r}") from None
        self.kind = kind
        self.extra_shape = tuple(extra_shape)
        self.dtype = dtype
        self.where = where
        self.use = use
        self._data: np.ndarray | None = None

    def bound_to(self, data: np.ndarray) -> BufferWrapper:
        """A copy of this declaration holding ``data`` (what ``results.get_buffer`` returns)."""
        out = BufferWrapper(self.kind, self.extra_shape, self.dtype, self.where, self.use)
        out._data = data
        return out

    def has_data(self) -> bool:
        """True when the buffer is bound to an array."""
        return self._data is not None

    @property
    def raw_data(self) -> np.ndarray | None:
        """The bound array (``None`` for a bare declaration)."""
        return self._data

    @property
    def shape(self) -> tuple[int, ...] | None:
        """Shape of the bound array (``None`` for a bare declaration)."""
        return None if self._data is None else self._data.shape

    def __array__(self, dtype=None, copy=None):
        if self._data is None:
            raise UDFError(f"{self!r} is a declaration without data; use it in get_result_buffers")
        arr = self._data
        return arr.astype(dtype, copy=bool(copy)) if dtype is not None else (arr.copy() if copy else arr)

    def __repr__(self):
        return (f"BufferWrapper(kind={self.kind!r}, extra_shape={self.extra_shape}, "
                f"dtype={self.dtype}, use={self.use!r})")

    def __reduce__(self):
        return (BufferWrapper, (self.kind, self.extra_shape, self.dtype.str, self.where, self.use))


def buffer_shape(spec: BufferWrapper, n_nav: int, sig_shape: tuple[int, ...]) -> tuple:
    """Storage shape of a buffer with ``n_nav`` processed frames."""
    if spec.kind == "nav":
        return (n_nav,) + spec.extra_shape
    if spec.kind == "sig":
        return tuple(sig_shape) + spec.extra_shape
    return spec.extra_shape or (1,)


class AuxData(BufferWrapper):
    """Per-frame auxiliary input for a UDF, sliced like a nav buffer (see ``UDF.aux_data``).

    Outside the process methods it behaves like the buffer LiberTEM makes of it: ``shape``,
    ``dtype``, ``raw_data``, indexing and ``numpy.asarray`` see the values as
    ``(nav_size, *extra_shape)``. Inside them, ``self.params.<name>`` is the view for the
    current frame / tile / partition.

    Parameters
    ----------
    data : array_like
        ``nav_shape + extra_shape``, ``(nav_size, *extra_shape)`` or fully flat
        ``(nav_size * prod(extra_shape),)``.
    kind : {"nav"}
    extra_shape : tuple of int
    dtype : dtype, optional
        Default: the dtype of ``data``.

    Examples
    --------
    >>> aux = AuxData(np.arange(12.0), extra_shape=(3,))
    >>> aux.shape, aux.dtype
    ((4, 3), dtype('float64'))
    >>> aux[1]
    array([3., 4., 5.])
    """

    __slots__ = ("data",)

    def __init__(self, data: ArrayLike, kind: str = "nav", extra_shape: int | tuple[int, ...] = (),
                 dtype: DTypeLike | None = None):
        if kind != "nav":
            raise UDFError(f"aux_data kind: only 'nav' auxiliary data is supported, got {kind!r}; "
                           "pass per-pixel (sig) values as an ordinary parameter")
        arr = np.asarray(data)
        dtype = np.dtype(dtype) if dtype is not None else arr.dtype
        super().__init__(kind="nav", extra_shape=extra_shape, dtype=dtype)
        self.data = np.ascontiguousarray(arr, dtype=self.dtype)
        n_extra = prod(self.extra_shape)
        if n_extra and self.data.size % n_extra:
            raise UDFError(f"aux_data: {self.data.size} values do not make whole entries of "
                           f"extra_shape {self.extra_shape}")

    @property
    def raw_data(self) -> np.ndarray:
        n_extra = prod(self.extra_shape)
        n = self.data.size // n_extra if n_extra else self.data.shape[0]
        return self.data.reshape((n,) + self.extra_shape)

    @property
    def shape(self) -> tuple[int, ...]:
        """Shape of the values, ``(nav entries, *extra_shape)``."""
        return self.raw_data.shape

    def has_data(self) -> bool:
        return True

    def __array__(self, dtype=None, copy=None):
        arr = self.raw_data
        return arr.astype(dtype, copy=bool(copy)) if dtype is not None else (arr.copy() if copy else arr)

    def __getitem__(self, key):
        return self.raw_data[key]

    def __len__(self):
        return self.raw_data.shape[0]

    def flat(self, nav_shape: tuple[int, ...], where: str) -> np.ndarray:
        """The values as ``(nav_size, *extra_shape)``; a clear error when the size is off."""
        nav_shape = tuple(nav_shape)
        nav_size = prod(nav_shape)
        want = (nav_size,) + self.extra_shape
        # fully flat values are LiberTEM's documented form; other shapes of the same size
        # (a transposed array) would pair values with the wrong frames
        accepted = (nav_shape + self.extra_shape, want, (prod(want),))
        if self.data.shape not in accepted:
            raise UDFError(f"{where}: aux_data has shape {self.data.shape}; expected "
                           f"{accepted[0]} (nav_shape + extra_shape), {want} or {accepted[2]}")
        return self.data.reshape(want)

    def __reduce__(self):
        return (AuxData, (self.data, self.kind, self.extra_shape, self.dtype.str))

    def __repr__(self):
        return f"AuxData(shape={self.data.shape}, dtype={self.dtype}, extra_shape={self.extra_shape})"


#: LiberTEM's name of the aux-data buffer class
AuxBufferWrapper = AuxData


class ArrayWithMask:
    """A result together with its valid mask (what ``UDF.with_mask(data, mask)`` returns).

    Return it from ``get_results`` to set the ``valid_mask`` of a result yourself.

    Parameters
    ----------
    arr : array_like
    mask : array_like of bool, or bool
        Broadcastable to ``arr``'s shape; ``True`` / ``False`` mean all valid / none.

    Examples
    --------
    >>> r = ArrayWithMask(np.zeros((2, 3)), mask=np.array([True, False, True]))
    >>> r.mask
    array([[ True, False,  True],
           [ True, False,  True]])
    >>> ArrayWithMask(np.zeros(3), mask=np.zeros(3))
    Traceback (most recent call last):
    ...
    udfkit.errors.UDFError: with_mask: mask must have dtype bool, got float64
    """

    __slots__ = ("_arr", "_mask")

    def __init__(self, arr: ArrayLike, mask: ArrayLike):
        arr = np.asanyarray(arr)
        mask = np.asarray(mask)
        if mask.dtype != np.bool_:
            raise UDFError(f"with_mask: mask must have dtype bool, got {mask.dtype}")
        try:
            np.broadcast_to(mask, arr.shape)
        except ValueError:
            raise UDFError(f"with_mask: mask of shape {mask.shape} does not broadcast to the data's "
                           f"shape {arr.shape}") from None
        self._arr = arr
        self._mask = mask

    @property
    def arr(self) -> np.ndarray:
        return self._arr

    @property
    def mask(self) -> np.ndarray:
        return np.broadcast_to(self._mask, self._arr.shape)

    def __repr__(self):
        return f"ArrayWithMask(shape={self._arr.shape}, valid={int(self.mask.sum())})"
