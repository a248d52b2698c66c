"""The ``threads`` executor: a pool of threads in this process.

Useful where the work releases the GIL: udfkit's decode and built-in kernels are numba
``nogil`` functions and BLAS products release it too, so partitions really run in parallel,
without starting processes or copying results. UDFs written in pure Python do not gain.

At most ``max_in_flight`` tasks are submitted at a time (default: two per thread), so a
run with thousands of partitions does not queue them all; while the run lasts, BLAS and
OpenMP libraries use one thread each (N threads would otherwise start N × cores).
"""

from __future__ import annotations

import queue
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait

from .base import Executor, default_workers
from .threadpools import single_threaded

__all__ = ["ThreadsExecutor"]

#: how often the iterating thread wakes up to hand on progress reports, seconds
_POLL = 0.1


class ThreadsExecutor(Executor):
    """Run tasks on a pool of ``cpus`` threads.

    Parameters
    ----------
    cpus : int, optional
        Number of threads; default one per physical core.
    max_in_flight : int, optional
        Tasks submitted at a time; default ``2 * cpus``.

    Examples
    --------
    >>> ex = ThreadsExecutor(cpus=2)
    >>> sorted(ex.run_tasks([lambda: 1, lambda: 2, lambda: 3]))
    [(0, 1), (1, 2), (2, 3)]
    >>> ex.close()
    """

    kind = "threads"

    def __init__(self, cpus: int | None = None, max_in_flight: int | None = None):
        if cpus is None:
            cpus = default_workers()
        if isinstance(cpus, bool) or not isinstance(cpus, int) or cpus < 1:
            raise ValueError(f"cpus: expected a positive integer, got {cpus!r}")
        self._n = cpus
        self._max_in_flight = max(1, int(max_in_flight or 2 * cpus))
        self._pool = ThreadPoolExecutor(max_workers=cpus, thread_name_prefix="udfkit-worker")
        self._closed = False

    @property
    def num_workers(self) -> int:
        return self._n

    def run_tasks(self, tasks, progress=None):
        if self._closed:
            raise RuntimeError("this ThreadsExecutor is closed")
        reports = queue.SimpleQueue()
        todo = iter(enumerate(tasks))
        pending = {}

        def submit_next() -> bool:
            for index, task in todo:
                if progress is None:
                    future = self._pool.submit(task)
                else:
                    # reports travel through a queue to the iterating thread
                    future = self._pool.submit(task, progress=lambda n, i=index: reports.put((i, n)))
                pending[future] = index
                return True
            return False

        def hand_on_reports():
            if progress is not None:
                while True:
                    try:
                        index, frames = reports.get_nowait()
                    except queue.Empty:
                        return
                    progress(index, frames)

        with single_threaded():
            try:
                while len(pending) < self._max_in_flight and submit_next():
                    pass
                while pending:
                    done, _ = wait(pending, timeout=_POLL, return_when=FIRST_COMPLETED)
                    hand_on_reports()
                    for future in done:
                        index = pending.pop(future)
                        result = future.result()  # re-raises the task's exception
                        yield index, result
                        # after the yield: a caller that stops here submits nothing more
                        submit_next()
            finally:
                # early close, an error or Ctrl-C: queued tasks are dropped; running ones
                # cannot be interrupted and finish on their own
                for future in pending:
                    future.cancel()

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._pool.shutdown(wait=True, cancel_futures=True)

    def __repr__(self):
        return f"ThreadsExecutor(cpus={self._n})"
