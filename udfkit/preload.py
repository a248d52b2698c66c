"""Preload module for dask workers: ``dask worker ADDRESS --preload udfkit.preload``.

Limits BLAS / OpenMP thread pools of the worker process to one thread per dask worker
thread (so N workers on N cores do not start N × N threads) and imports udfkit once, before
the first task arrives. ``udfkit worker`` uses it.
"""

from __future__ import annotations


def dask_setup(worker=None):
    """Called by dask when the worker starts."""
    from threadpoolctl import threadpool_limits

    nthreads = getattr(worker, "nthreads", 1) or 1
    # kept for the life of the process: the object must stay referenced
    dask_setup.limits = threadpool_limits(limits=int(nthreads))
    import udfkit.udf  # noqa: F401 - warm imports
