"""Thunder's image filters as built-in UDFs: ``GaussianFilterUDF``, ``UniformFilterUDF`` and
``MedianFilterUDF`` (Thunder's ``Images.gaussian_filter``, ``uniform_filter`` and
``median_filter``).

Meaning (Thunder 1.x, ``thunder/images/images.py``)
-----------------------------------------------------
* Every frame is filtered on its own with :mod:`scipy.ndimage` over *all* its signal axes:
  a volume (3-D signal) gets a 3-D filter. Thunder passes no boundary mode, so scipy's default
  ``mode="reflect"`` applies (here a parameter, default ``"reflect"``).
* ``sigma`` (Gaussian, default 2) is the standard deviation in pixels and ``size`` (uniform,
  median; default 2) the width of the neighbourhood in pixels; a scalar applies to every
  signal axis, a sequence gives one value per axis. Even sizes follow scipy (a window of 2
  covers the pixel and the one before it).
* Thunder filters each plane of a volume separately when the third ``size`` is 0
  (``size=(s, s, 0)``); udfkit takes a size of 0 (and 1, which is the same for these
  filters) on any axis to mean "do not filter along that axis", and a ``sigma`` of 0 likewise.
* ``order`` (Gaussian, default 0) is scipy's derivative order per axis.

Dtypes
------
Frames arrive as float32, or wider where the stored dtype needs it (numpy promotion of
float32 with the stored dtype: float64 for 32- and 64-bit integers and float64 data,
complex64/complex128 for complex data), and the result has that dtype. Thunder, which filters
the stored dtype, returns integer images for integer data (scipy truncates its float result
to the input dtype); udfkit keeps the fractional values. The median filter does not take
complex data.
"""

from __future__ import annotations

from numbers import Integral

import numpy as np

from ...errors import UDFParameterError
from ._frame_transform import FrameTransformUDF
from ._image_params import (
    FILTER_MODES,
    check_number,
    check_real,
    check_scalar_or_sequence,
    per_axis_floats,
    per_axis_ints,
)

__all__ = ["GaussianFilterUDF", "UniformFilterUDF", "MedianFilterUDF"]


def _check_mode(udf: str, mode, cval) -> None:
    if mode not in FILTER_MODES:
        raise UDFParameterError(f"{udf}: mode must be one of {', '.join(FILTER_MODES)} "
                                f"(scipy.ndimage's boundary modes), got {mode!r}")
    check_number(udf, "cval", cval)


class _SizeFilterUDF(FrameTransformUDF):
    """A :mod:`scipy.ndimage` filter with a ``size`` per signal axis (uniform, median)."""

    def __init__(self, size=2, mode="reflect", cval=0.0):
        name = type(self).__name__
        check_scalar_or_sequence(name, "size", size)
        _check_mode(name, mode, cval)
        super().__init__(size=size, mode=mode, cval=cval)

    def _sizes(self, sig_shape):
        # 0 along an axis is Thunder's "filter each plane on its own"; scipy spells it 1
        sizes = per_axis_ints(type(self).__name__, "size", self.params.size, sig_shape, minimum=0)
        return (1,) + tuple(max(s, 1) for s in sizes)

    def check(self, sig_shape, dtype):
        self._sizes(sig_shape)

    def output_shape(self, sig_shape):
        return tuple(sig_shape)

    def output_dtype(self, input_dtype):
        return np.dtype(input_dtype)

    #: the :mod:`scipy.ndimage` function of the subclass
    _scipy_name = ""

    def transform(self, stack, out):
        from scipy import ndimage

        size = self._sizes(stack.shape[1:])
        target = out if out.dtype == stack.dtype else None
        func = getattr(ndimage, self._scipy_name)
        _into(out, func(stack, size, output=target, mode=self.params.mode, cval=self.params.cval))


def _into(out, result):
    """Copy ``result`` into the buffer view ``out`` unless the filter wrote it there."""
    if result is not None and result is not out:
        out[...] = result


class UniformFilterUDF(_SizeFilterUDF):
    """Thunder's ``uniform_filter(size)``: each frame's mean over a ``size``-wide
    neighbourhood (:func:`scipy.ndimage.uniform_filter`).

    Result ``intensity``: nav-shaped, one filtered frame per position (extra shape = the
    signal shape), float32 (float64 for 32- and 64-bit integer and float64 data, complex for
    complex data).

    Parameters
    ----------
    size : int or sequence of int
        Neighbourhood width in pixels, one for every signal axis or one per axis (default 2,
        Thunder's); 0 or 1 leaves an axis unfiltered.
    mode : str
        Boundary mode of :mod:`scipy.ndimage` (default ``"reflect"``, what Thunder uses).
    cval : float
        Value outside the frame for ``mode="constant"``.

    Examples
    --------
    >>> import numpy as np
    >>> from scipy import ndimage
    >>> from udfkit import Context
    >>> from udfkit.udf import UniformFilterUDF
    >>> data = np.arange(3 * 6 * 5, dtype="float32").reshape(3, 6, 5)
    >>> ctx = Context.make_with("inline")
    >>> res = ctx.run_udf(dataset=ctx.load("memory", data=data), udf=UniformFilterUDF(size=3))
    >>> res["intensity"].data.shape
    (3, 6, 5)
    >>> bool(np.allclose(res["intensity"].data[1], ndimage.uniform_filter(data[1], 3)))
    True
    """

    _scipy_name = "uniform_filter"


class MedianFilterUDF(_SizeFilterUDF):
    """Thunder's ``median_filter(size)``: each frame's median over a ``size``-wide
    neighbourhood (:func:`scipy.ndimage.median_filter`).

    Result ``intensity``: nav-shaped, one filtered frame per position (extra shape = the
    signal shape). Real data only.

    Parameters
    ----------
    size : int or sequence of int
        Neighbourhood width in pixels, one for every signal axis or one per axis (default 2,
        Thunder's); 0 or 1 leaves an axis unfiltered.
    mode : str
        Boundary mode of :mod:`scipy.ndimage` (default ``"reflect"``, what Thunder uses).
    cval : float
        Value outside the frame for ``mode="constant"``.

    Examples
    --------
    >>> import numpy as np
    >>> from udfkit import Context
    >>> from udfkit.udf import MedianFilterUDF
    >>> data = np.zeros((2, 5, 5), dtype="uint16")
    >>> data[:, 2, 2] = 1000  # a hot pixel
    >>> ctx = Context.make_with("inline")
    >>> res = ctx.run_udf(dataset=ctx.load("memory", data=data), udf=MedianFilterUDF(size=3))
    >>> float(res["intensity"].data.max())
    0.0
    """

    def check(self, sig_shape, dtype):
        check_real(type(self).__name__, dtype, "the median")
        super().check(sig_shape, dtype)

    _scipy_name = "median_filter"


class GaussianFilterUDF(FrameTransformUDF):
    """Thunder's ``gaussian_filter(sigma, order)``: each frame smoothed with a Gaussian
    (:func:`scipy.ndimage.gaussian_filter`).

    Result ``intensity``: nav-shaped, one filtered frame per position (extra shape = the
    signal shape), float32 (float64 for 32- and 64-bit integer and float64 data, complex for
    complex data).

    Parameters
    ----------
    sigma : float or sequence of float
        Standard deviation in pixels, for every signal axis or one per axis (default 2,
        Thunder's); 0 leaves an axis unfiltered.
    order : int or sequence of int
        Derivative order 0..3 of the Gaussian, per axis (default 0: a plain Gaussian).
    mode : str
        Boundary mode of :mod:`scipy.ndimage` (default ``"reflect"``, what Thunder uses).
    cval : float
        Value outside the frame for ``mode="constant"``.
    truncate : float
        The kernel reaches ``truncate * sigma`` pixels (scipy's default 4, as in Thunder).

    Examples
    --------
    >>> import numpy as np
    >>> from scipy import ndimage
    >>> from udfkit import Context
    >>> from udfkit.udf import GaussianFilterUDF
    >>> data = np.random.default_rng(0).random((4, 16, 16)).astype("float32")
    >>> ctx = Context.make_with("inline")
    >>> res = ctx.run_udf(dataset=ctx.load("memory", data=data), udf=GaussianFilterUDF(sigma=1.5))
    >>> bool(np.allclose(res["intensity"].data[2], ndimage.gaussian_filter(data[2], 1.5)))
    True
    """

    def __init__(self, sigma=2, order=0, mode="reflect", cval=0.0, truncate=4.0):
        name = type(self).__name__
        check_scalar_or_sequence(name, "sigma", sigma, kind=(Integral, float, np.floating))
        check_scalar_or_sequence(name, "order", order)
        _check_mode(name, mode, cval)
        check_number(name, "truncate", truncate)
        if not truncate > 0:
            raise UDFParameterError(f"{name}: truncate must be > 0, got {truncate!r}")
        super().__init__(sigma=sigma, order=order, mode=mode, cval=cval, truncate=truncate)

    def _axes(self, sig_shape):
        name = type(self).__name__
        sigma = per_axis_floats(name, "sigma", self.params.sigma, sig_shape)
        order = per_axis_ints(name, "order", self.params.order, sig_shape, minimum=0)
        if any(o > 3 for o in order):
            raise UDFParameterError(f"{name}: order must be 0, 1, 2 or 3 per axis, "
                                    f"got {self.params.order!r}")
        # sigma 0 and order 0 along the stack axis: scipy skips it, so each frame is filtered
        # on its own
        return (0.0,) + sigma, (0,) + order

    def check(self, sig_shape, dtype):
        self._axes(sig_shape)

    def output_shape(self, sig_shape):
        return tuple(sig_shape)

    def output_dtype(self, input_dtype):
        return np.dtype(input_dtype)

    def transform(self, stack, out):
        from scipy import ndimage

        sigma, order = self._axes(stack.shape[1:])
        target = out if out.dtype == stack.dtype else None
        p = self.params
        _into(out, ndimage.gaussian_filter(stack, sigma, order, output=target, mode=p.mode,
                                           cval=p.cval, truncate=p.truncate))
