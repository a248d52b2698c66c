"""Dtype choices shared by the built-in UDFs."""

from __future__ import annotations

import numpy as np

__all__ = ["accumulator_dtype", "extreme_values", "kernel_input_dtype"]


def kernel_input_dtype(meta):
    """What a built-in with a numba kernel asks for: the stored dtype, or float32 for the
    dtypes numba's kernels do not take (float16, bool)."""
    from ..base import UDF

    dtype = meta.dataset_dtype if meta is not None else None
    if dtype is not None and (dtype.kind == "b" or (dtype.kind == "f" and dtype.itemsize < 4)):
        return np.float32
    return UDF.USE_NATIVE_DTYPE


def accumulator_dtype(input_dtype, requested="float64") -> np.dtype:
    """A float (or complex) dtype wide enough to sum ``input_dtype`` values.

    ``requested`` is promoted with the input: float64 (the default) keeps integer sums exact
    up to 2**53 and complex data complex.
    """
    dt = np.result_type(np.dtype(input_dtype), np.dtype(requested))
    if dt.kind not in "fc":
        dt = np.result_type(dt, np.float64)
    return dt


def extreme_values(dtype) -> tuple:
    """``(largest, smallest)`` value of ``dtype``: the start values of a minimum / maximum."""
    dtype = np.dtype(dtype)
    if dtype.kind in "iu":
        info = np.iinfo(dtype)
        return info.max, info.min
    if dtype.kind == "b":
        return True, False
    return np.inf, -np.inf
