"""Preload module for dask workers: ``dask worker ADDRESS --preload udfkit.preload``.

Limits BLAS / OpenMP thread pools of the worker process to one thread per dask worker
thread (so N workers on N cores do not start N × N threads), ignores SIGINT where the
environment asks for it (:data:`IGNORE_SIGINT_ENV`, set by the dask executor for the workers
of its local cluster; a ``udfkit worker`` started by hand keeps stopping at Ctrl-C), and
imports the modules named in the environment variable ``UDFKIT_WARM_MODULES``
(comma-separated) before the first task arrives. ``udfkit worker`` uses it. Which modules a run needs is not this module's business:
executors know nothing of UDFs, and a :class:`~udfkit.Context` tells the executor what to
import on its workers when it connects (:meth:`udfkit.executor.base.Executor.warm_modules`).
"""

from __future__ import annotations

import os
import signal
import threading

#: the environment variable with the modules to import at worker start
WARM_ENV = "UDFKIT_WARM_MODULES"

#: the environment variable (``"1"``) with which the dask executor's local cluster asks its
#: workers to ignore SIGINT: Ctrl-C in a terminal reaches the whole process group, and the
#: main process, not each worker, decides what it means (it cancels the run's tasks)
IGNORE_SIGINT_ENV = "UDFKIT_WORKER_IGNORE_SIGINT"


def _ignore_sigint_if_asked() -> None:
    if (os.environ.get(IGNORE_SIGINT_ENV) == "1"
            and threading.current_thread() is threading.main_thread()):
        signal.signal(signal.SIGINT, signal.SIG_IGN)


# at import, the earliest moment a preload has: the worker imports its preloads as it is built
_ignore_sigint_if_asked()


def dask_setup(worker=None):
    """Called by dask when the worker starts."""
    from threadpoolctl import threadpool_limits

    from .executor._worker import _import_all

    _ignore_sigint_if_asked()
    nthreads = getattr(worker, "nthreads", 1) or 1
    # kept for the life of the process: the object must stay referenced
    dask_setup.limits = threadpool_limits(limits=int(nthreads))
    _import_all([m.strip() for m in os.environ.get(WARM_ENV, "").split(",") if m.strip()])
