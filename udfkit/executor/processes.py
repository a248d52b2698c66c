"""The ``processes`` executor: spawned worker processes, results through shared memory.

Workers are started (``spawn``, not ``fork``) when the executor is created and reused for
every run; each imports udfkit once, keeps its compiled kernels, and runs one task at a
time with BLAS / OpenMP / numba limited to one thread. Tasks go to a worker through its
pipe (they are small); results come back through shared memory (:mod:`._shm`).

Failures
--------
* An exception in a task comes back pickled, with the worker's traceback as a note, and is
  raised in the caller with its original type.
* A worker that dies (killed, segfault, out of memory) is noticed through its process
  sentinel within :data:`_POLL` seconds: the run raises :class:`~udfkit.errors.ExecutorError`
  naming the task, and the worker is replaced.
* When a run ends early (an error, ``Ctrl-C``, a closed ``run_udf_iter``), workers still
  busy with its tasks are terminated and replaced, so the next run starts clean; shared
  memory they may have left is removed by name.
"""

from __future__ import annotations

import glob
import itertools
import multiprocessing
import os
from multiprocessing.connection import wait

from ..errors import ExecutorError
from . import _shm
from ._worker import SEGMENT_PREFIX, worker_main
from .base import Executor, default_workers, pickle_task

__all__ = ["ProcessesExecutor"]

_POLL = 0.1
_THREAD_ENV = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS",
               "NUMBA_NUM_THREADS", "VECLIB_MAXIMUM_THREADS", "NUMEXPR_NUM_THREADS")


class _Worker:
    __slots__ = ("process", "conn", "busy")

    def __init__(self, process, conn):
        self.process = process
        self.conn = conn
        self.busy = None  # (run_id, index) of the task it is running


class ProcessesExecutor(Executor):
    """Run tasks on ``cpus`` spawned worker processes.

    Parameters
    ----------
    cpus : int, optional
        Number of worker processes; default one per physical core.

    Examples
    --------
    >>> ex = ProcessesExecutor(cpus=2)
    >>> sorted(ex.run_tasks([abs, abs]))  # doctest: +SKIP
    """

    kind = "processes"

    def __init__(self, cpus: int | None = None):
        if cpus is None:
            cpus = default_workers()
        if isinstance(cpus, bool) or not isinstance(cpus, int) or cpus < 1:
            raise ValueError(f"cpus: expected a positive integer, got {cpus!r}")
        self._mp = multiprocessing.get_context("spawn")
        self._runs = itertools.count(1)
        self._closed = False
        self._n = cpus
        # started with the first run: a Context that only loads data sets or reads files
        # (e.g. ``udfkit info``) starts no processes
        self._workers = []

    # -- workers ----------------------------------------------------------------------------
    def _start(self) -> _Worker:
        parent, child = self._mp.Pipe(duplex=True)
        saved = {k: os.environ.get(k) for k in _THREAD_ENV}
        # a spawned child inherits the environment: one thread per library from the start
        os.environ.update({k: "1" for k in _THREAD_ENV})
        try:
            process = self._mp.Process(target=worker_main, args=(child,), daemon=True,
                                       name="udfkit-worker")
            process.start()
        finally:
            for k, v in saved.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v
        child.close()
        return _Worker(process, parent)

    def _stop(self, worker: _Worker, kill: bool) -> None:
        process = worker.process
        if kill:
            process.kill()
        else:
            try:
                worker.conn.send(("stop",))
            except (OSError, BrokenPipeError):
                pass
        process.join(timeout=5)
        if process.is_alive():  # pragma: no cover - a worker that ignores stop
            process.kill()
            process.join()
        worker.conn.close()
        _remove_segments_of(process.pid)

    def _replace(self, worker: _Worker, kill: bool = True) -> None:
        self._stop(worker, kill=kill)
        self._workers[self._workers.index(worker)] = self._start()

    @property
    def num_workers(self) -> int:
        return self._n

    def _ensure_started(self) -> None:
        if not self._workers:
            self._workers = [self._start() for _ in range(self._n)]

    # -- running ----------------------------------------------------------------------------
    def run_tasks(self, tasks, progress=None):
        if self._closed:
            raise RuntimeError("this ProcessesExecutor is closed")
        self._ensure_started()
        run_id = next(self._runs)
        todo = iter(enumerate(tasks))
        want_progress = progress is not None

        def assign(worker) -> bool:
            for index, task in todo:
                payload = pickle_task(task, index, "a worker process")
                worker.conn.send(("task", run_id, index, payload, want_progress))
                worker.busy = (run_id, index)
                return True
            return False

        finished = False
        try:
            for worker in list(self._workers):
                if not assign(worker):
                    break
            while True:
                busy = [w for w in self._workers if w.busy is not None]
                if not busy:
                    finished = True
                    return
                by_handle = {}
                for w in busy:
                    by_handle[w.conn] = w
                    by_handle[w.process.sentinel] = w
                for handle in wait(list(by_handle), timeout=_POLL):
                    worker = by_handle[handle]
                    if worker.busy is None:
                        continue  # already handled through its other handle
                    if handle is worker.process.sentinel and not worker.conn.poll():
                        self._worker_died(worker)
                    try:
                        msg = worker.conn.recv()
                    except (EOFError, OSError):
                        self._worker_died(worker)
                    out = self._handle(worker, msg, run_id, progress)
                    if out is not None:
                        yield out
                        # after the yield: a caller that stops here starts nothing more
                        assign(worker)
        finally:
            if not finished:
                # cancel: workers still busy with this run are replaced, not waited for
                for worker in list(self._workers):
                    if worker.busy is not None:
                        self._replace(worker)

    def _handle(self, worker, msg, run_id, progress):
        kind = msg[0]
        if msg[1] != run_id:  # pragma: no cover - stale workers are replaced, not reused
            if kind == "result":
                _shm.discard(msg[4])
            return None
        if kind == "progress":
            if progress is not None:
                progress(msg[2], msg[3])
            return None
        worker.busy = None
        if kind == "result":
            return msg[2], _shm.loads(msg[3], msg[4])
        _, _, index, payload, summary, text = msg
        exc = None
        if payload is not None:
            import cloudpickle

            try:
                exc = cloudpickle.loads(payload)
            except Exception:
                exc = None
        if not isinstance(exc, BaseException):
            raise ExecutorError(f"task {index} failed on worker process {worker.process.pid}: "
                                f"{summary}\n{text}")
        exc.add_note(f"raised on udfkit worker process {worker.process.pid} in task {index}; "
                     f"worker traceback:\n{text}")
        raise exc

    def _worker_died(self, worker):
        index = worker.busy[1]
        pid = worker.process.pid
        worker.process.join(timeout=1)
        code = worker.process.exitcode
        worker.busy = None
        self._replace(worker)
        how = f"killed by signal {-code}" if code is not None and code < 0 else f"exit code {code}"
        hint = ""
        if code is not None and code > 0:
            hint = ("; a worker that exits with an error at once is often a script that runs "
                    "udfkit at import time: workers are spawned and import the script, so put "
                    "the script's work under `if __name__ == \"__main__\":`")
        error = ExecutorError(f"worker process {pid} died ({how}) while running task {index} "
                              f"of this run; it has been replaced{hint}")
        error.task_index = index
        raise error

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        for worker in self._workers:
            # nothing to save in a worker: terminate rather than wait for its imports
            self._stop(worker, kill=True)
        self._workers = []

    def __repr__(self):
        return f"ProcessesExecutor(cpus={self._n})"


def _remove_segments_of(pid: int) -> None:
    """Shared memory a dead worker created and nobody will read."""
    for path in glob.glob(f"/dev/shm/{SEGMENT_PREFIX}{pid}_*"):
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass
