"""The :class:`Slice` value object: a hyper-rectangle inside a data set."""

from __future__ import annotations

import itertools
from collections.abc import Iterable
from math import prod
from typing import Any, SupportsIndex, overload

from .shape import Shape

__all__ = ["Slice"]


class Slice:
    """A hyper-rectangle ``origin + shape`` within a (nav + sig) data set.

    ``shape`` is a :class:`Shape`, so a Slice knows which of its axes are signal axes.

    Parameters
    ----------
    origin : tuple of int
        Coordinates of the first element, one per axis.
    shape : Shape
        Extent of the slice.

    Examples
    --------
    >>> import numpy as np
    >>> s = Slice(origin=(2, 0, 4), shape=Shape((3, 8, 4), sig_dims=2))
    >>> s.get()
    (slice(2, 5, None), slice(0, 8, None), slice(4, 8, None))
    >>> s.get(np.zeros((10, 8, 8))).shape
    (3, 8, 4)
    >>> s.sig.get()
    (slice(0, 8, None), slice(4, 8, None))
    """

    __slots__ = ("_origin", "_shape")
    _origin: tuple[int, ...]
    _shape: Shape

    def __init__(self, origin: Iterable[SupportsIndex], shape: Shape):
        origin = tuple(int(o) for o in origin)
        if not isinstance(shape, Shape):
            raise TypeError(f"shape must be a Shape, got {type(shape).__name__}")
        if len(origin) != len(shape):
            raise ValueError(f"origin {origin} and shape {shape} have different dimensions")
        object.__setattr__(self, "_origin", origin)
        object.__setattr__(self, "_shape", shape)

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError("Slice is immutable")

    def __reduce__(self) -> tuple[type[Slice], tuple[tuple[int, ...], Shape]]:
        return (Slice, (self._origin, self._shape))

    @property
    def origin(self) -> tuple[int, ...]:
        """Coordinates of the first element."""
        return self._origin

    @property
    def shape(self) -> Shape:
        """Extent of the slice."""
        return self._shape

    @property
    def nav(self) -> Slice:
        """The navigation part of the slice."""
        n = self._shape.nav_dims
        return Slice(self._origin[:n], self._shape.nav)

    @property
    def sig(self) -> Slice:
        """The signal part of the slice."""
        n = self._shape.nav_dims
        return Slice(self._origin[n:], self._shape.sig)

    @overload
    def get(self, arr: None = None, nav_only: bool = False,
            sig_only: bool = False) -> tuple[slice, ...]: ...
    @overload
    def get(self, arr: Any, nav_only: bool = False, sig_only: bool = False) -> Any: ...
    def get(self, arr: Any = None, nav_only: bool = False, sig_only: bool = False) -> Any:
        """Index ``arr`` with this slice, or return the tuple of slices.

        Parameters
        ----------
        arr : array_like, optional
            The array to index; its leading axes must match the slice's axes (or its
            nav / sig axes when ``nav_only`` / ``sig_only`` are set).
        nav_only, sig_only : bool
            Use only the navigation or only the signal part of the slice.
        """
        if nav_only and sig_only:
            raise ValueError("nav_only and sig_only are mutually exclusive")
        n = self._shape.nav_dims
        if nav_only:
            pairs = zip(self._origin[:n], self._shape.to_tuple()[:n])
        elif sig_only:
            pairs = zip(self._origin[n:], self._shape.to_tuple()[n:])
        else:
            pairs = zip(self._origin, self._shape.to_tuple())
        slices = tuple(slice(o, o + s) for o, s in pairs)
        if arr is None:
            return slices
        return arr[slices]

    def subslices(self, shape: Iterable[SupportsIndex]) -> list[Slice]:
        """Cut this slice into a grid of sub-slices of ``shape`` (smaller at the far edges).

        Examples
        --------
        >>> s = Slice((0, 0), Shape((5, 4), sig_dims=2))
        >>> [(x.origin, x.shape.to_tuple()) for x in s.subslices((3, 4))]
        [((0, 0), (3, 4)), ((3, 0), (2, 4))]
        """
        parts = tuple(int(x) for x in shape)
        if len(parts) != len(self._shape):
            raise ValueError(f"sub-slice shape {parts} does not match slice dims {len(self._shape)}")
        if any(x <= 0 for x in parts):
            raise ValueError(f"sub-slice shape must be positive, got {parts}")
        ranges = [range(0, total, step) for total, step in zip(self._shape, parts)]
        out = []
        for corner in itertools.product(*ranges):
            ext = tuple(min(step, total - c) for c, step, total in zip(corner, parts, self._shape))
            origin = tuple(o + c for o, c in zip(self._origin, corner))
            out.append(Slice(origin, Shape(ext, sig_dims=self._shape.sig_dims)))
        return out

    def shift(self, other: Slice) -> Slice:
        """This slice with coordinates relative to ``other``'s origin.

        ``other`` may have fewer axes (for example only the signal part); it is aligned to
        the trailing axes of this slice.
        """
        k = len(other.origin)
        lead = len(self._origin) - k
        origin = self._origin[:lead] + tuple(a - b for a, b in zip(self._origin[lead:], other.origin))
        return Slice(origin, self._shape)

    def intersection_with(self, other: Slice) -> Slice:
        """The overlap of two slices (with zero extent along axes that do not overlap)."""
        if len(other.origin) != len(self._origin):
            raise ValueError("slices have different dimensions")
        origin = []
        ext = []
        for o1, s1, o2, s2 in zip(self._origin, self._shape, other.origin, other.shape):
            lo = max(o1, o2)
            hi = min(o1 + s1, o2 + s2)
            origin.append(lo)
            ext.append(max(0, hi - lo))
        return Slice(tuple(origin), Shape(tuple(ext), sig_dims=self._shape.sig_dims))

    def is_null(self) -> bool:
        """True when the slice contains no element."""
        return any(s == 0 for s in self._shape)

    def flatten_nav(self, containing_shape: Iterable[int]) -> Slice:
        """Express this slice in the flattened-nav coordinates of ``containing_shape``.

        The slice must cover a contiguous range of the flattened navigation axis (for example
        whole rows of a scan); anything else raises ``ValueError``.

        Examples
        --------
        >>> s = Slice((1, 0, 0, 0), Shape((2, 4, 8, 8), sig_dims=2))
        >>> s.flatten_nav((3, 4, 8, 8)).origin
        (4, 0, 0)
        """
        containing = tuple(containing_shape)
        n = self._shape.nav_dims
        nav_full = containing[:n]
        nav_ext = self._shape.to_tuple()[:n]
        # contiguous in C order: after the first axis with extent > 1, all axes are complete
        started = False
        for ax in range(n):
            if started and (self._origin[ax] != 0 or nav_ext[ax] != nav_full[ax]):
                raise ValueError(f"{self!r} is not contiguous in the flattened nav of {containing}")
            if nav_ext[ax] > 1:
                started = True
        flat_origin = 0
        for o, full in zip(self._origin[:n], nav_full):
            flat_origin = flat_origin * full + o
        sig = self._shape.sig.to_tuple()
        return Slice(
            (flat_origin,) + self._origin[n:],
            Shape((prod(nav_ext),) + sig, sig_dims=self._shape.sig_dims),
        )

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Slice):
            return NotImplemented
        return self._origin == other._origin and self._shape == other._shape

    def __hash__(self) -> int:
        return hash((self._origin, self._shape))

    def __repr__(self) -> str:
        return f"Slice(origin={self._origin}, shape={self._shape!r})"
