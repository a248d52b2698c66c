"""Parsing of the per-axis parameters of the image built-ins (filter sizes, sigmas, factors,
projection axes), checked against the data set's signal shape.

Thunder's convention throughout: a scalar applies to every signal axis, a sequence gives one
value per signal axis.
"""

from __future__ import annotations

from numbers import Integral, Real

import numpy as np

from ...errors import UDFParameterError

__all__ = ["per_axis_ints", "per_axis_floats", "sig_axis", "check_scalar_or_sequence",
           "check_real", "check_number", "FILTER_MODES"]

#: boundary modes of :mod:`scipy.ndimage` filters (``reflect`` is scipy's default, and so
#: Thunder's, which never passes a mode)
FILTER_MODES = ("reflect", "constant", "nearest", "mirror", "wrap", "grid-mirror",
                "grid-constant", "grid-wrap")


def check_scalar_or_sequence(udf: str, name: str, value, kind=Integral) -> None:
    """Raise unless ``value`` is a number of ``kind`` or a non-empty sequence of them.

    Examples
    --------
    >>> check_scalar_or_sequence("BinUDF", "factor", (2, 2))
    >>> check_scalar_or_sequence("BinUDF", "factor", "2")
    Traceback (most recent call last):
    ...
    udfkit.errors.UDFParameterError: BinUDF: factor must be an int or a sequence of ints (one per signal axis), got '2'
    """
    noun = "int" if kind is Integral else "number"
    what = "an int" if kind is Integral else "a number"
    items = value if isinstance(value, (tuple, list, np.ndarray)) else [value]
    ok = len(items) > 0 and all(isinstance(v, kind) and not isinstance(v, (bool, np.bool_))
                                for v in items)
    if not ok:
        raise UDFParameterError(f"{udf}: {name} must be {what} or a sequence of {noun}s "
                                f"(one per signal axis), got {value!r}")


def _spread(udf: str, name: str, value, sig_shape) -> list:
    dims = len(sig_shape)
    if isinstance(value, (tuple, list, np.ndarray)):
        if len(value) != dims:
            raise UDFParameterError(
                f"{udf}: {name}={tuple(value)!r} has {len(value)} values, but the data set's "
                f"frames have {dims} signal axes (sig shape {tuple(sig_shape)}); give one value "
                f"per signal axis or a single number")
        return list(value)
    return [value] * dims


def per_axis_ints(udf: str, name: str, value, sig_shape, minimum: int = 1) -> tuple:
    """``value`` (an int or one per signal axis) as a tuple of ints ``>= minimum``.

    Examples
    --------
    >>> per_axis_ints("SubsampleUDF", "factor", 2, (64, 64))
    (2, 2)
    >>> per_axis_ints("SubsampleUDF", "factor", (1, 3), (64, 64))
    (1, 3)
    """
    values = [int(v) for v in _spread(udf, name, value, sig_shape)]
    if any(v < minimum for v in values):
        raise UDFParameterError(f"{udf}: every {name} must be at least {minimum}, got {value!r}")
    return tuple(values)


def per_axis_floats(udf: str, name: str, value, sig_shape) -> tuple:
    """``value`` (a number or one per signal axis) as a tuple of finite floats ``>= 0``.

    Examples
    --------
    >>> per_axis_floats("GaussianFilterUDF", "sigma", 1.5, (4, 5))
    (1.5, 1.5)
    """
    values = [float(v) for v in _spread(udf, name, value, sig_shape)]
    if any(not np.isfinite(v) or v < 0 for v in values):
        raise UDFParameterError(f"{udf}: {name} must be finite and >= 0, got {value!r}")
    return tuple(values)


def sig_axis(udf: str, axis, sig_shape) -> int:
    """A signal axis index (negative counts from the end) as a non-negative int.

    Examples
    --------
    >>> sig_axis("MaxProjectionUDF", 2, (2, 76, 87))
    2
    >>> sig_axis("MaxProjectionUDF", -3, (2, 76, 87))
    0
    """
    dims = len(sig_shape)
    if not isinstance(axis, Integral) or isinstance(axis, (bool, np.bool_)):
        raise UDFParameterError(f"{udf}: axis must be an int, got {axis!r}")
    axis = int(axis)
    if not -dims <= axis < dims:
        raise UDFParameterError(
            f"{udf}: axis {axis} is not a signal axis of the data set: its frames have sig "
            f"shape {tuple(sig_shape)}, so axis must be in {-dims}..{dims - 1}")
    return axis % dims


def check_real(udf: str, dtype, why: str) -> None:
    """Raise for complex data, which ``why`` is not defined for."""
    if np.dtype(dtype).kind == "c":
        raise UDFParameterError(f"{udf}: {why} is not defined for complex data; the data set "
                                f"has dtype {np.dtype(dtype)}")


def check_number(udf: str, name: str, value, kind=Real) -> None:
    """Raise unless ``value`` is a (non-bool) number of ``kind``."""
    if not isinstance(value, kind) or isinstance(value, (bool, np.bool_)):
        raise UDFParameterError(f"{udf}: {name} must be a number, got {value!r}")
