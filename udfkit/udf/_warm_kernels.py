"""Imported by a worker at its start (:data:`udfkit.udf.warmup.WARM_MODULE`): loads the cached
kernels (:func:`udfkit.udf.warmup.load_cached_kernels`) before the first task arrives."""

from .warmup import load_cached_kernels

load_cached_kernels()
