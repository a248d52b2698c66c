"""One BLAS / OpenMP thread per worker while a task runs.

A worker that runs partitions is one of several (or shares the machine with the caller's
other work); a BLAS library that starts its own threads for every matrix product then
oversubscribes the cores. Measured here with OpenBLAS: the virtual-detector products of the
demo took 0.2–1.2 s per pass with OpenBLAS's default threads while another process kept one
core busy, and 0.06 s with one thread. The limit is set around each task and restored after
it, so the caller's own numpy code keeps its threads.
"""

from __future__ import annotations

import sys
from contextlib import contextmanager

__all__ = ["single_threaded"]


_cached = {"modules": -1, "controller": None}


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
def single_threaded():
    """Limit the thread pools of BLAS and OpenMP libraries to one thread inside the block."""
    with _controller().limit(limits=1):
        yield
