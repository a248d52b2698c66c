"""The ``threads`` executor: a pool of threads in this process.

Useful where the work releases the GIL: udfkit's decode and built-in kernels are numba
``nogil`` functions and BLAS products release it too, so partitions really run in parallel,
without starting processes or copying results. UDFs written in pure Python do not gain.

At most ``max_in_flight`` tasks are submitted at a time (default: two per thread), so a
run with thousands of partitions does not queue them all; while the run lasts, BLAS and
OpenMP libraries use one thread each (N threads would otherwise start N × cores); a run of
a single task has the machine to itself and gets one per physical core.
"""

from __future__ import annotations

import queue
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait

from ._cancel import GRACE, cancellable_reporter, takes_progress
from ._schedule import Adapter, Outcome, schedule
from .base import Executor, check_count, default_workers
from .threadpools import machine_threaded, single_threaded

__all__ = ["ThreadsExecutor"]


class ThreadsExecutor(Executor):
    """Run tasks on a pool of ``cpus`` threads.

    Parameters
    ----------
    cpus : int, optional
        Number of threads; default one per physical core.
    max_in_flight : int, optional
        Tasks submitted at a time; default ``2 * cpus``.

    Raises
    ------
    ExecutorSpecError
        For ``cpus`` or ``max_in_flight`` that are not positive integers.

    Examples
    --------
    >>> ex = ThreadsExecutor(cpus=2)
    >>> sorted(ex.run_tasks([lambda: 1, lambda: 2, lambda: 3]))
    [(0, 1), (1, 2), (2, 3)]
    >>> ex.close()
    """

    kind = "threads"

    def __init__(self, cpus: int | None = None, max_in_flight: int | None = None):
        self._n = default_workers() if cpus is None else check_count(cpus, "cpus")
        self._max_in_flight = (2 * self._n if max_in_flight is None
                               else check_count(max_in_flight, "max_in_flight"))
        self._pool = ThreadPoolExecutor(max_workers=self._n, thread_name_prefix="udfkit-worker")
        self._closed = False

    @property
    def num_workers(self) -> int:
        return self._n

    def run_tasks(self, tasks, progress=None, *, retries=None):
        if self._closed:
            raise RuntimeError("this ThreadsExecutor is closed")
        retries = self.retries if retries is None else retries
        # BLAS/OpenMP get one thread each while the run lasts (N threads would start N × cores);
        # a single task runs alone and gets the machine
        alone = isinstance(tasks, (list, tuple)) and len(tasks) == 1
        with machine_threaded() if alone else single_threaded():
            yield from schedule(_ThreadsRun(self, progress is not None), tasks, progress, retries)

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._pool.shutdown(wait=True, cancel_futures=True)

    def __repr__(self):
        return f"ThreadsExecutor(cpus={self._n})"


class _ThreadsRun(Adapter):
    """One run on the pool: futures are the handles; threads cannot die alone."""

    def __init__(self, executor: ThreadsExecutor, want_progress: bool):
        self.executor = executor
        self.want_progress = want_progress
        # reports travel through a queue to the iterating thread
        self.reports: queue.SimpleQueue[tuple[int, int, int]] = queue.SimpleQueue()
        self.stopped = False  # set when the run is cancelled: tasks stop at their next report

    def free_slots(self, in_flight):
        return self.executor._max_in_flight - in_flight

    def submit(self, index, task):
        pool = self.executor._pool
        if not self.want_progress and not takes_progress(task):
            return pool.submit(task)
        report = (lambda n, i=index: self.reports.put((i, 0, n))) if self.want_progress else None
        return pool.submit(task, progress=cancellable_reporter(lambda: self.stopped, report))

    def wait(self, handles, timeout):
        done, _ = wait(handles, timeout=timeout, return_when=FIRST_COMPLETED)
        reports = []
        while True:
            try:
                reports.append(self.reports.get_nowait())
            except queue.Empty:
                break
        outcomes = []
        for future in done:
            exc = future.exception()
            outcomes.append(Outcome(future, "result", future.result()) if exc is None
                            else Outcome(future, "error", exc))
        return outcomes, reports

    def cancel(self, handles):
        # queued tasks are dropped; running ones stop at their next progress report (a thread
        # cannot be interrupted: one whose task does not report finishes on its own)
        self.stopped = True
        for future in handles:
            future.cancel()
        wait(handles, timeout=GRACE)
