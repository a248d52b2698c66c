"""Preload module for dask workers: ``dask worker ADDRESS --preload udfkit.preload``.

Limits BLAS / OpenMP thread pools of the worker process to one thread per dask worker
thread (so N workers on N cores do not start N × N threads), and imports the modules named
in the environment variable ``UDFKIT_WARM_MODULES`` (comma-separated) before the first task
arrives. ``udfkit worker`` uses it. Which modules a run needs is not this module's business:
executors know nothing of UDFs, and a :class:`~udfkit.Context` tells the executor what to
import on its workers when it connects (:meth:`udfkit.executor.base.Executor.warm_modules`).
"""

from __future__ import annotations

import os

#: the environment variable with the modules to import at worker start
WARM_ENV = "UDFKIT_WARM_MODULES"


def dask_setup(worker=None):
    """Called by dask when the worker starts."""
    from threadpoolctl import threadpool_limits

    from .executor._worker import _import_all

    nthreads = getattr(worker, "nthreads", 1) or 1
    # kept for the life of the process: the object must stay referenced
    dask_setup.limits = threadpool_limits(limits=int(nthreads))
    _import_all([m.strip() for m in os.environ.get(WARM_ENV, "").split(",") if m.strip()])
