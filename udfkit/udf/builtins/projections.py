"""Thunder's projections of volumes: ``MaxProjectionUDF`` (``Images.max_projection``) and
``MaxMinProjectionUDF`` (``Images.max_min_projection``), each frame reduced along one of its
signal axes.

Axes are signal axes in the order udfkit reads them, which is Thunder 1.x's order: a TIFF
volume of ``p`` pages of ``h x w`` is the frame ``(p, h, w)`` in both, so Thunder's default
``axis=2`` is the last (``w``) axis here as well. Negative axes count from the end.

Dtypes
------
Both take the stored dtype. The maximum keeps it. ``max + min`` is computed in int64 for
integer and bool data (uint64 data: float64), where Thunder adds in the stored dtype and
wraps around for 8- and 16-bit data (a uint8 ``200 + 100`` is 44 there); float data keep their
dtype (float16: float32). Complex data have no maximum: an error.
"""

from __future__ import annotations

import numpy as np

from ..base import UDF
from ._frame_transform import FrameTransformUDF
from ._image_params import check_real, sig_axis

__all__ = ["MaxProjectionUDF", "MaxMinProjectionUDF"]


class MaxProjectionUDF(FrameTransformUDF):
    """Thunder's ``max_projection(axis)``: the maximum of each frame along signal axis
    ``axis``.

    Result ``intensity``: nav-shaped, extra shape = the signal shape without ``axis``, in the
    stored dtype.

    Parameters
    ----------
    axis : int
        Signal axis to project along (default 2, Thunder's; negative counts from the end).

    Examples
    --------
    >>> import numpy as np
    >>> from udfkit import Context
    >>> from udfkit.udf import MaxProjectionUDF
    >>> volumes = np.arange(4 * 2 * 3 * 5, dtype="uint8").reshape(4, 2, 3, 5)
    >>> ctx = Context.make_with("inline")
    >>> ds = ctx.load("memory", data=volumes, sig_dims=3)
    >>> res = ctx.run_udf(dataset=ds, udf=MaxProjectionUDF(axis=0))
    >>> res["intensity"].data.shape
    (4, 3, 5)
    >>> bool((res["intensity"].data == volumes.max(axis=1)).all())
    True
    """

    _what = "the maximum"

    def __init__(self, axis=2):
        super().__init__(axis=axis)

    def _axis(self, sig_shape):
        return sig_axis(type(self).__name__, self.params.axis, sig_shape)

    def get_preferred_input_dtype(self):
        return UDF.USE_NATIVE_DTYPE

    def check(self, sig_shape, dtype):
        self._axis(sig_shape)
        check_real(type(self).__name__, dtype, self._what)

    def output_shape(self, sig_shape):
        axis = self._axis(sig_shape)
        return tuple(n for i, n in enumerate(sig_shape) if i != axis)

    def output_dtype(self, input_dtype):
        return np.dtype(input_dtype)

    def transform(self, stack, out):
        np.amax(stack, axis=1 + self._axis(stack.shape[1:]), out=out)


class MaxMinProjectionUDF(MaxProjectionUDF):
    """Thunder's ``max_min_projection(axis)``: the maximum plus the minimum of each frame
    along signal axis ``axis``.

    Result ``intensity``: nav-shaped, extra shape = the signal shape without ``axis``; dtype
    int64 for integer data (no wrap-around), the float dtype for float data.

    Parameters
    ----------
    axis : int
        Signal axis to project along (default 2, Thunder's; negative counts from the end).

    Examples
    --------
    >>> import numpy as np
    >>> from udfkit import Context
    >>> from udfkit.udf import MaxMinProjectionUDF
    >>> volume = np.array([[[[200], [10]], [[100], [20]]]], dtype="uint8")  # 1 frame, (2, 2, 1)
    >>> ctx = Context.make_with("inline")
    >>> ds = ctx.load("memory", data=volume, sig_dims=3)
    >>> ctx.run_udf(dataset=ds, udf=MaxMinProjectionUDF(axis=0))["intensity"].data
    array([[[300],
            [ 30]]])
    """

    _what = "the maximum and minimum"

    def output_dtype(self, input_dtype):
        dtype = np.dtype(input_dtype)
        if dtype.kind in "iub":
            return np.dtype(np.result_type(dtype, np.int64))
        if dtype.itemsize < 4:
            return np.dtype(np.float32)
        return dtype

    def transform(self, stack, out):
        axis = 1 + self._axis(stack.shape[1:])
        wide = out.dtype
        np.add(np.amax(stack, axis=axis).astype(wide), np.amin(stack, axis=axis).astype(wide),
               out=out)
