"""Smaller frames: ``SubsampleUDF`` (Thunder's ``Images.subsample``: every ``factor``-th pixel)
and ``BinUDF`` (binning: sum or mean of ``factor``-sized blocks, what LiberTEM users mean by
"binning by 2").

Both take the stored dtype (no conversion on the way in).

Dtypes
------
``SubsampleUDF`` keeps the stored dtype (it only picks pixels). ``BinUDF`` with
``reduce="sum"`` sums integers (and bool) in int64 (uint64 for uint64 data) and keeps float
and complex dtypes (float16 becomes float32); ``reduce="mean"`` gives
``numpy.result_type(stored dtype, float32)``: float32 for 8- and 16-bit integers and float32
data, float64 for wider integers and float64 data, complex for complex data. Means of integer
data are computed from the exact int64 sums.

Edges of ``BinUDF``
-------------------
Where an axis of ``n`` pixels is not a multiple of ``f``, ``edge="trim"`` (the default) drops
the last ``n % f`` pixels (``n // f`` bins, all of ``f`` pixels: what
``frame[:n // f * f].reshape(n // f, f).sum(1)`` gives); ``edge="partial"`` keeps them as a
last, smaller bin (``ceil(n / f)`` bins), whose mean is taken over the pixels it holds.
"""

from __future__ import annotations

import numpy as np

from ...errors import UDFParameterError
from ..base import UDF
from ._frame_transform import FrameTransformUDF
from ._image_params import check_scalar_or_sequence, per_axis_ints

__all__ = ["SubsampleUDF", "BinUDF"]


class SubsampleUDF(FrameTransformUDF):
    """Thunder's ``subsample(factor)``: every ``factor``-th pixel of each frame, starting with
    the first (``frame[::f0, ::f1, ...]``).

    Result ``intensity``: nav-shaped, extra shape ``ceil(n / f)`` per signal axis, in the
    stored dtype.

    Parameters
    ----------
    factor : int or sequence of int
        Stride, for every signal axis or one per axis (>= 1).

    Examples
    --------
    >>> import numpy as np
    >>> from udfkit import Context
    >>> from udfkit.udf import SubsampleUDF
    >>> data = np.arange(2 * 5 * 4, dtype="uint16").reshape(2, 5, 4)
    >>> ctx = Context.make_with("inline")
    >>> res = ctx.run_udf(dataset=ctx.load("memory", data=data), udf=SubsampleUDF(factor=2))
    >>> res["intensity"].data[0]
    array([[ 0,  2],
           [ 8, 10],
           [16, 18]], dtype=uint16)
    """

    def __init__(self, factor=2):
        check_scalar_or_sequence("SubsampleUDF", "factor", factor)
        super().__init__(factor=factor)

    def _factors(self, sig_shape):
        return per_axis_ints("SubsampleUDF", "factor", self.params.factor, sig_shape)

    def get_preferred_input_dtype(self):
        return UDF.USE_NATIVE_DTYPE

    def check(self, sig_shape, dtype):
        self._factors(sig_shape)

    def output_shape(self, sig_shape):
        return tuple(-(-n // f) for n, f in zip(sig_shape, self._factors(sig_shape)))

    def output_dtype(self, input_dtype):
        return np.dtype(input_dtype)

    def transform(self, stack, out):
        steps = tuple(slice(None, None, f) for f in self._factors(stack.shape[1:]))
        out[...] = stack[(slice(None),) + steps]


def _sum_dtype(dtype: np.dtype) -> np.dtype:
    if dtype.kind == "u" and dtype.itemsize == 8:
        return np.dtype(np.uint64)
    if dtype.kind in "iub":
        return np.dtype(np.int64)
    if dtype.kind == "f" and dtype.itemsize < 4:
        return np.dtype(np.float32)
    return dtype


class BinUDF(FrameTransformUDF):
    """Binning: each frame reduced by summing (or averaging) blocks of ``factor`` pixels per
    signal axis.

    Result ``intensity``: nav-shaped, extra shape ``n // f`` per signal axis
    (``edge="trim"``) or ``ceil(n / f)`` (``edge="partial"``). Sums of integer data are
    int64 (uint64 data: uint64), sums of float data keep their dtype; means are float32 for
    8- and 16-bit integer and float32 data, float64 for the others.

    Parameters
    ----------
    factor : int or sequence of int
        Block size, for every signal axis or one per axis (>= 1; 1 leaves an axis as it is).
    reduce : {"sum", "mean"}
        Sum (default) or mean of each block.
    edge : {"trim", "partial"}
        What happens to the last ``n % f`` pixels of an axis: dropped (default) or binned
        into a smaller last block.

    Examples
    --------
    >>> import numpy as np
    >>> from udfkit import Context
    >>> from udfkit.udf import BinUDF
    >>> data = np.ones((3, 4, 5), dtype="uint8")
    >>> ctx = Context.make_with("inline")
    >>> ds = ctx.load("memory", data=data)
    >>> ctx.run_udf(dataset=ds, udf=BinUDF(2))["intensity"].data[0]
    array([[4, 4],
           [4, 4]])
    >>> ctx.run_udf(dataset=ds, udf=BinUDF(2, edge="partial"))["intensity"].data[0]
    array([[4, 4, 2],
           [4, 4, 2]])
    """

    def __init__(self, factor=2, reduce="sum", edge="trim"):
        check_scalar_or_sequence("BinUDF", "factor", factor)
        if reduce not in ("sum", "mean"):
            raise UDFParameterError(f"BinUDF: reduce must be 'sum' or 'mean', got {reduce!r}")
        if edge not in ("trim", "partial"):
            raise UDFParameterError(f"BinUDF: edge must be 'trim' or 'partial', got {edge!r}")
        super().__init__(factor=factor, reduce=reduce, edge=edge)

    def _factors(self, sig_shape):
        return per_axis_ints("BinUDF", "factor", self.params.factor, sig_shape)

    def get_preferred_input_dtype(self):
        return UDF.USE_NATIVE_DTYPE

    def check(self, sig_shape, dtype):
        factors = self._factors(sig_shape)
        if self.params.edge == "trim" and any(f > n for n, f in zip(sig_shape, factors)):
            raise UDFParameterError(
                f"BinUDF: factor {factors} is larger than the frame (sig shape "
                f"{tuple(sig_shape)}), so edge='trim' leaves no bin; use a smaller factor or "
                f"edge='partial'")

    def output_shape(self, sig_shape):
        factors = self._factors(sig_shape)
        if self.params.edge == "trim":
            return tuple(n // f for n, f in zip(sig_shape, factors))
        return tuple(-(-n // f) for n, f in zip(sig_shape, factors))

    def output_dtype(self, input_dtype):
        dtype = np.dtype(input_dtype)
        if self.params.reduce == "mean":
            return np.dtype(np.result_type(dtype, np.float32))
        return _sum_dtype(dtype)

    def preprocess(self):
        self._counts = None

    def _bin_counts(self, sig_shape, factors):
        """Pixels per output bin (only the partial edge bins hold fewer than ``prod(f)``)."""
        if self._counts is None:
            per_axis = []
            for n, f in zip(sig_shape, factors):
                c = np.full(-(-n // f), f, dtype=np.int64)
                if n % f:
                    c[-1] = n % f
                per_axis.append(c)
            counts = per_axis[0]
            for c in per_axis[1:]:
                counts = np.multiply.outer(counts, c)
            self._counts = counts
        return self._counts

    def transform(self, stack, out):
        sig_shape = stack.shape[1:]
        factors = self._factors(sig_shape)
        nbins = self.output_shape(sig_shape)
        acc = _sum_dtype(stack.dtype)
        # sums straight into the result buffer where its dtype is the accumulator's
        direct = self.params.reduce == "sum" and out.dtype == acc
        total = out if direct else np.empty(out.shape, acc)
        total[...] = 0
        # one strided add per offset inside a block (f0 * f1 * ... adds of an output-sized
        # array): about three times faster than reshape(...).sum(axes) for 2 x 2 blocks
        for offset in np.ndindex(*factors):
            src = stack[(slice(None),) + tuple(
                slice(o, min(n, b * f), f) for o, n, b, f in zip(offset, sig_shape, nbins, factors))]
            if src.size == 0:
                continue  # a partial last block shorter than this offset
            dst = total[(slice(None),) + tuple(slice(0, m) for m in src.shape[1:])]
            np.add(dst, src, out=dst, casting="unsafe")
        if direct:
            return
        if self.params.reduce == "sum":
            out[...] = total
        elif self.params.edge == "partial":
            out[...] = total / self._bin_counts(sig_shape, factors)
        else:
            out[...] = total / int(np.prod(factors))
