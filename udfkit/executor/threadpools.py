"""How many BLAS / OpenMP threads a task gets: one per worker where tasks run side by side,
the machine's cores where a task runs alone.

A worker that runs partitions is one of several (or shares the machine with the caller's
other work); a BLAS library that starts its own threads for every matrix product then
oversubscribes the cores. Measured here with OpenBLAS: the virtual-detector products of the
demo took 0.2–1.2 s per pass with OpenBLAS's default threads while another process kept one
core busy, and 0.06 s with one thread. The limit is set around each task and restored after
it, so the caller's own numpy code keeps its threads.

A task that runs alone (the inline executor, which runs one task at a time; a threads run
of a single task) has the machine to itself: its BLAS products get one thread per physical
core (:func:`machine_threaded`), as LiberTEM's inline executor gives them -- unless other
processes keep cores busy. A BLAS thread that waits for a descheduled sibling spins: measured
here with OpenBLAS, a 16-mask float32 product on 2 cores ran at 0.16 GB/s with 2 threads and
0.83 GB/s with one while other processes kept the load average at 15. So the cores the
1-minute load average shows busy with others (beyond this process) are not counted.
"""

from __future__ import annotations

import os
import sys
import time
from contextlib import contextmanager

__all__ = ["single_threaded", "machine_threaded", "limited_threads", "machine_threads"]


_cached: dict = {"modules": -1, "controller": None, "cores": None}


def _controller():
    # finding the loaded libraries costs about a millisecond, too much per task of a tiny run;
    # a BLAS library only appears with an import, so look again when sys.modules has grown
    n = len(sys.modules)
    if _cached["modules"] != n:
        from threadpoolctl import ThreadpoolController

        _cached["controller"] = ThreadpoolController()
        _cached["modules"] = len(sys.modules)
    return _cached["controller"]


@contextmanager
def limited_threads(threads: int):
    """Limit the thread pools of BLAS and OpenMP libraries to ``threads`` inside the block."""
    with _controller().limit(limits=int(threads)):
        yield


def single_threaded():
    """Limit the thread pools of BLAS and OpenMP libraries to one thread inside the block."""
    return limited_threads(1)


def _cores() -> int:
    # psutil reads /sys for the physical cores: a tenth of a millisecond, once per process
    if _cached.get("cores") is None:
        from .base import default_workers

        _cached["cores"] = default_workers()
    return _cached["cores"]


def machine_threads() -> int:
    """Threads a task that runs alone gets: one per physical core that others leave free.

    The 1-minute load average beyond this process's own share counts as cores busy with
    other work (see the module docstring); at least one.
    """
    cores = _cores()
    now = time.monotonic()
    if now - _cached.get("load_at", -1e9) > 1.0:
        # a 1-minute average: reading it once a second is enough (a tiny run pays nothing)
        try:
            _cached["load"] = os.getloadavg()[0]
        except (OSError, AttributeError):  # pragma: no cover - no load average here
            _cached["load"] = 0.0
        _cached["load_at"] = now
    free = cores - max(0.0, _cached["load"] - 1.0)
    return max(1, min(cores, int(free + 0.5)))


def machine_threaded():
    """BLAS and OpenMP thread pools at one thread per physical core inside the block (a
    task that has the machine to itself)."""
    return limited_threads(machine_threads())
