"""Detector-plane geometry shared by the physics UDFs (CoM, FEM, crystallinity).

Pixel convention, the same as LiberTEM's mask factories: pixel ``(i, j)`` sits at the point
``(i, j)`` (its centre), so a disk of radius ``r`` around ``(cy, cx)`` holds the pixels with
``(i - cy)**2 + (j - cx)**2 <= r**2``; a ring with inner radius ``ri`` holds those of the disk
of radius ``r`` that are *not* in the disk of radius ``ri`` (``ri < d <= r``). Distances are
computed in float64; ``r = inf`` selects every pixel.
"""

from __future__ import annotations

import numbers
from typing import Any, Literal, overload

import numpy as np

from ...errors import UDFError, UDFParameterError

__all__ = ["squared_distance", "disk", "ring", "check_number", "check_point", "spectrum_ring"]


def squared_distance(shape, cy: float, cx: float) -> np.ndarray:
    """``(i - cy)**2 + (j - cx)**2`` for every pixel of a frame of ``shape`` (float64)."""
    dy = np.arange(shape[0], dtype=np.float64) - cy
    dx = np.arange(shape[1], dtype=np.float64) - cx
    return dy[:, np.newaxis] ** 2 + dx[np.newaxis, :] ** 2


def disk(shape, cy: float, cx: float, r: float) -> np.ndarray:
    """Bool mask of the pixels at distance ``<= r`` from ``(cy, cx)``."""
    return squared_distance(shape, cy, cx) <= r * r


def ring(shape, cy: float, cx: float, r: float, ri: float) -> np.ndarray:
    """Bool mask of the pixels at distance ``d`` with ``ri < d <= r`` from ``(cy, cx)``."""
    d2 = squared_distance(shape, cy, cx)
    return (d2 <= r * r) & ~(d2 <= ri * ri)


def spectrum_ring(shape, r_in: float, r_out: float) -> np.ndarray:
    """The ring ``r_in < |k| <= r_out`` on the half spectrum of ``numpy.fft.rfft2``.

    ``rfft2`` of a ``(h, w)`` frame has ``(h, w // 2 + 1)`` entries in FFT order. The ring
    is drawn as LiberTEM's CrystallinityUDF draws it: around the point ``(h / 2, w / 2)`` of
    a centred (fft-shifted) spectrum, then moved to FFT order; entry ``a`` of an axis of
    length ``n`` therefore sits at ``((a - n // 2) mod n) - n / 2``, which is the signed
    frequency for even ``n`` and that plus one half for odd ``n``. Returns a bool array.
    """
    h, w = shape
    ky = (np.arange(h) - h // 2) % h - h * 0.5
    kx = (np.arange(w // 2 + 1) - w // 2) % w - w * 0.5
    d2 = ky[:, np.newaxis] ** 2 + kx[np.newaxis, :] ** 2
    return (d2 <= r_out * r_out) & ~(d2 <= r_in * r_in)


@overload
def check_number(value: Any, name: str, where: str, *, allow_none: Literal[False] = False,
                 allow_inf: bool = False, minimum: float | None = None) -> float: ...
@overload
def check_number(value: Any, name: str, where: str, *, allow_none: bool,
                 allow_inf: bool = False, minimum: float | None = None) -> float | None: ...
def check_number(value: Any, name: str, where: str, *, allow_none: bool = False,
                 allow_inf: bool = False, minimum: float | None = None) -> float | None:
    """``value`` as a float, or a UDFError naming ``where`` and ``name``."""
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise UDFError(f"{where}: {name} must be a real number, got {value!r}")
    value = float(value)
    if np.isnan(value) or (np.isinf(value) and not allow_inf):
        raise UDFParameterError(f"{where}: {name} must be a finite number, got {value!r}")
    if minimum is not None and value < minimum:
        raise UDFParameterError(f"{where}: {name} must be >= {minimum}, got {value!r}")
    return value


@overload
def check_point(value: Any, name: str, where: str, *,
                allow_none: Literal[False] = False) -> tuple[float, float]: ...
@overload
def check_point(value: Any, name: str, where: str, *,
                allow_none: bool) -> tuple[float, float] | None: ...
def check_point(value: Any, name: str, where: str, *,
                allow_none: bool = False) -> tuple[float, float] | None:
    """A ``(y, x)`` pair of finite numbers, or a UDFError."""
    if value is None and allow_none:
        return None
    try:
        items = tuple(value)
    except TypeError:
        items = None
    if items is None or len(items) != 2:
        raise UDFError(f"{where}: {name} must be a pair (y, x) of numbers, got {value!r}")
    return (check_number(items[0], f"{name}[0]", where), check_number(items[1], f"{name}[1]", where))
