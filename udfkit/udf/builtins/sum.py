"""``SumUDF`` (sum over frames) and ``SumSigUDF`` (sum over the signal of each frame)."""

from __future__ import annotations

from ..base import UDF
from ._dtypes import accumulator_dtype, kernel_input_dtype
from ._targets import flat_target

__all__ = ["SumUDF", "SumSigUDF"]


class _NativeSum(UDF):
    """What both sums share: a ``dtype`` parameter and the stored dtype as input."""

    def __init__(self, dtype="float64"):
        super().__init__(dtype=dtype)

    def get_preferred_input_dtype(self):
        return kernel_input_dtype(self.meta)

    def _sum_dtype(self):
        return accumulator_dtype(self.meta.input_dtype, self.params.dtype)


class SumUDF(_NativeSum):
    """Sum of all frames: one sig-shaped result, ``intensity``.

    The stored data are read as they are (no conversion to float first) and summed in a
    numba kernel into a float64 buffer, so integer data are summed exactly.

    Parameters
    ----------
    dtype : dtype, optional
        Dtype of the sum, promoted with the data's dtype (default float64; ``"float32"``
        halves the result size at the cost of precision).

    Examples
    --------
    >>> import numpy as np
    >>> from udfkit import Context
    >>> from udfkit.udf import SumUDF
    >>> data = np.arange(2 * 3 * 4 * 4, dtype="uint16").reshape(2, 3, 4, 4)
    >>> ctx = Context.make_with("inline")
    >>> ds = ctx.load("memory", data=data)
    >>> res = ctx.run_udf(dataset=ds, udf=SumUDF())
    >>> np.array_equal(res["intensity"].data, data.sum(axis=(0, 1)))
    True
    """

    def get_result_buffers(self):
        return {"intensity": self.buffer(kind="sig", dtype=self._sum_dtype())}

    def process_tile(self, tile):
        from ._kernels import as_rows, sum_frames

        with flat_target(self.results.intensity) as acc:
            sum_frames(*as_rows(tile), acc)

    def merge(self, dest, src):
        dest.intensity += src.intensity


class SumSigUDF(_NativeSum):
    """Sum over the signal of every frame: one nav-shaped result, ``intensity``.

    Parameters
    ----------
    dtype : dtype, optional
        Dtype of the sums, promoted with the data's dtype (default float64).

    Examples
    --------
    >>> import numpy as np
    >>> from udfkit import Context
    >>> from udfkit.udf import SumSigUDF
    >>> data = np.arange(2 * 3 * 4 * 4, dtype="uint16").reshape(2, 3, 4, 4)
    >>> ctx = Context.make_with("inline")
    >>> ds = ctx.load("memory", data=data)
    >>> ctx.run_udf(dataset=ds, udf=SumSigUDF())["intensity"].data
    array([[ 120.,  376.,  632.],
           [ 888., 1144., 1400.]])
    """

    def get_result_buffers(self):
        return {"intensity": self.buffer(kind="nav", dtype=self._sum_dtype())}

    def process_tile(self, tile):
        from ._kernels import as_rows, sum_signal

        # the nav view covers exactly the tile's frames and is contiguous
        sum_signal(*as_rows(tile), self.results.intensity)
