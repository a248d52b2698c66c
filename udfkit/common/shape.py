"""The :class:`Shape` value object: a shape split into navigation and signal parts."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from math import prod
from typing import Any, SupportsIndex, overload

__all__ = ["Shape"]


class Shape:
    """An n-dimensional shape whose last ``sig_dims`` axes are the signal (one frame).

    Parameters
    ----------
    shape : tuple of int
        The full shape, navigation axes first.
    sig_dims : int
        How many trailing axes belong to the signal.

    Examples
    --------
    >>> s = Shape((16, 32, 64, 64), sig_dims=2)
    >>> s.nav.to_tuple(), s.sig.to_tuple()
    ((16, 32), (64, 64))
    >>> s.flatten_nav()
    Shape((512, 64, 64), sig_dims=2)
    >>> s == (16, 32, 64, 64)
    True
    """

    __slots__ = ("_shape", "_sig_dims")
    _shape: tuple[int, ...]
    _sig_dims: int

    def __init__(self, shape: Iterable[SupportsIndex], sig_dims: int):
        shape = tuple(int(x) for x in shape)
        sig_dims = int(sig_dims)
        if not 0 <= sig_dims <= len(shape):
            raise ValueError(f"sig_dims must be between 0 and {len(shape)}, got {sig_dims}")
        object.__setattr__(self, "_shape", shape)
        object.__setattr__(self, "_sig_dims", sig_dims)

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError("Shape is immutable")

    def __reduce__(self) -> tuple[type[Shape], tuple[tuple[int, ...], int]]:
        return (Shape, (self._shape, self._sig_dims))

    @property
    def sig_dims(self) -> int:
        """Number of signal axes."""
        return self._sig_dims

    @property
    def nav(self) -> Shape:
        """The navigation part, as a Shape with ``sig_dims=0``."""
        return Shape(self._shape[: len(self._shape) - self._sig_dims], sig_dims=0)

    @property
    def sig(self) -> Shape:
        """The signal part, as a Shape whose axes are all signal axes."""
        return Shape(self._shape[len(self._shape) - self._sig_dims :], sig_dims=self._sig_dims)

    @property
    def nav_dims(self) -> int:
        """Number of navigation axes."""
        return len(self._shape) - self._sig_dims

    @property
    def size(self) -> int:
        """Number of elements."""
        return prod(self._shape)

    @property
    def dims(self) -> int:
        """Number of axes."""
        return len(self._shape)

    def flatten_nav(self) -> Shape:
        """The same shape with all navigation axes merged into one."""
        return Shape((self.nav.size,) + self.sig.to_tuple(), sig_dims=self._sig_dims)

    def flatten_sig(self) -> Shape:
        """The same shape with all signal axes merged into one."""
        return Shape(self.nav.to_tuple() + (self.sig.size,), sig_dims=1)

    def to_tuple(self) -> tuple[int, ...]:
        """The full shape as a tuple of ints."""
        return self._shape

    def __iter__(self) -> Iterator[int]:
        return iter(self._shape)

    def __len__(self) -> int:
        return len(self._shape)

    @overload
    def __getitem__(self, k: SupportsIndex) -> int: ...
    @overload
    def __getitem__(self, k: slice) -> tuple[int, ...]: ...
    def __getitem__(self, k: SupportsIndex | slice) -> int | tuple[int, ...]:
        return self._shape[k]

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Shape):
            return self._shape == other._shape and self._sig_dims == other._sig_dims
        if isinstance(other, (tuple, list)):
            return self._shape == tuple(other)
        return NotImplemented

    def __hash__(self) -> int:
        return hash((self._shape, self._sig_dims))

    def __repr__(self) -> str:
        return f"Shape({self._shape}, sig_dims={self._sig_dims})"
