"""``udfkit worker``: dask workers for a udfkit cluster node."""

from __future__ import annotations

import os
import sys

__all__ = ["add_parser", "worker_command"]

_THREAD_ENV = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS")


def add_parser(sub) -> None:
    p = sub.add_parser("worker", help="start dask workers with udfkit preloaded",
                       description="Start dask worker processes connected to SCHEDULER, one "
                                   "thread each, with BLAS/OpenMP/numba limited to one thread "
                                   "and udfkit preloaded (runs `dask worker` with the right "
                                   "options).")
    p.add_argument("scheduler", metavar="SCHEDULER", help="scheduler address, e.g. tcp://10.0.0.1:8786")
    p.add_argument("--nworkers", type=int, default=None, metavar="N",
                   help="worker processes (default: one per physical core)")
    p.add_argument("--preload", action="append", default=[], metavar="MODULE",
                   help="further modules to preload (repeatable)")
    p.add_argument("--name", default=None, help="worker name prefix")
    p.add_argument("--host", default=None, help="address the workers listen on")
    p.set_defaults(func=run, needs_context=False)


def worker_command(args) -> list:
    """The ``dask worker`` command line that ``udfkit worker`` runs."""
    from ..executor.base import default_workers

    n = args.nworkers or default_workers()
    cmd = [sys.executable, "-m", "distributed.cli.dask_worker", args.scheduler,
           "--nworkers", str(n), "--nthreads", "1", "--preload", "udfkit.preload",
           "--no-dashboard"]
    for module in args.preload:
        cmd += ["--preload", module]
    if args.name:
        cmd += ["--name", args.name]
    if args.host:
        cmd += ["--host", args.host]
    return cmd


def run(args, ctx=None) -> int:
    cmd = worker_command(args)
    env = dict(os.environ, **{k: "1" for k in _THREAD_ENV})
    sys.stdout.flush()
    os.execve(cmd[0], cmd, env)  # replaces this process: signals reach dask directly
    return 0  # pragma: no cover
