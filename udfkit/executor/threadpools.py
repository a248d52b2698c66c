"""One BLAS / OpenMP thread per worker while a task runs.

A worker that runs partitions is one of several (or shares the machine with the caller's
other work); a BLAS library that starts its own threads for every matrix product then
oversubscribes the cores. Measured here with OpenBLAS: the virtual-detector products of the
demo took 0.2–1.2 s per pass with OpenBLAS's default threads while another process kept one
core busy, and 0.06 s with one thread. The limit is set around each task and restored after
it, so the caller's own numpy code keeps its threads.
"""

from __future__ import annotations

from contextlib import contextmanager
from functools import lru_cache

__all__ = ["single_threaded"]


@lru_cache(maxsize=1)
def _controller():
    # finding the loaded libraries costs about a millisecond: do it once per process
    from threadpoolctl import ThreadpoolController

    return ThreadpoolController()


@contextmanager
def single_threaded():
    """Limit the thread pools of BLAS and OpenMP libraries to one thread inside the block."""
    with _controller().limit(limits=1):
        yield
