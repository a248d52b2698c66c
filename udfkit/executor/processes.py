"""The ``processes`` executor: spawned worker processes, results through shared memory.

Workers are started (``spawn``, not ``fork``) when the executor is created and reused for
every run; each imports udfkit once, keeps its compiled kernels, and runs one task at a
time with BLAS / OpenMP / numba limited to one thread. Tasks go to a worker through its
pipe (they are small: a run's large parameters go once per worker and run, through shared
memory, :mod:`._params`); results come back through shared memory (:mod:`._shm`). Workers do
not run the main module again (:mod:`._spawn`): a script without a main guard, on standard
input or from ``python -c`` works, and its UDF classes travel by value (cloudpickle).

The run loop is the shared one (:mod:`udfkit.executor._schedule`); this module is its
adapter: a task goes to an idle worker, and "wait for any" waits on the pipes and process
sentinels of the busy workers.

Failures
--------
* An exception in a task comes back pickled, with the worker's traceback as a note, and is
  raised in the caller with its original type (``SystemExit`` and ``KeyboardInterrupt``
  raised by a task's own code too: the worker survives them). One that cannot be pickled
  becomes an :class:`~udfkit.errors.ExecutorError` with its type, message and traceback.
* A worker found dead at any point is replaced: idle (killed between runs: found before a
  task is sent to it), while a task is sent (``BrokenPipeError``: the task goes to its
  replacement), or while running (noticed through its process sentinel within
  :data:`~udfkit.executor._schedule.POLL` seconds). A task whose worker died while running
  it is run again on a fresh worker ``retries`` times (default 1); then the run raises
  :class:`~udfkit.errors.ExecutorError` naming the task.
* When a run ends early (an error, ``Ctrl-C``, a closed ``run_udf_iter``), workers still
  busy with its tasks are told to stop them (:mod:`udfkit.executor._cancel`): a task stops
  at its next progress report and its worker takes the next run's tasks. A worker whose task
  does not stop within :data:`~udfkit.executor._cancel.GRACE` seconds is terminated and
  replaced, so the next run starts clean; shared memory it may have left is removed by name.
"""

from __future__ import annotations

import glob
import itertools
import multiprocessing
import os
import time
from multiprocessing.connection import wait

from ..errors import ExecutorError
from . import _shm, _spawn
from ._cancel import GRACE
from ._params import SegmentShipments, pickle_with_refs
from ._schedule import Adapter, Outcome, schedule
from ._worker import SEGMENT_PREFIX, worker_main
from .base import Executor, check_count, default_workers

__all__ = ["ProcessesExecutor"]

#: the name of the worker processes (``_spawn`` starts them without the main module)
_WORKER_NAME = "udfkit-worker"

_THREAD_ENV = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS",
               "NUMBA_NUM_THREADS", "VECLIB_MAXIMUM_THREADS", "NUMEXPR_NUM_THREADS")


class _Worker:
    __slots__ = ("process", "conn", "busy", "params", "current")

    def __init__(self, process, conn, current):
        self.process = process
        self.conn = conn
        self.current = current  # shared: the run id of the task it is running, 0 if none
        self.busy = None  # the handle of the task it is running
        #: (run id, keys of the shared parameters of that run it has been sent)
        self.params = (None, set())


class _Attempt:
    """The handle of one task sent to one worker (a task run again gets a new one)."""

    __slots__ = ("index",)

    def __init__(self, index: int):
        self.index = index


class ProcessesExecutor(Executor):
    """Run tasks on ``cpus`` spawned worker processes.

    Parameters
    ----------
    cpus : int, optional
        Number of worker processes; default one per physical core.
    retries : int
        How many times a task whose worker died is run again on a fresh worker before the
        run fails (default 1).

    Raises
    ------
    ExecutorSpecError
        For ``cpus`` that is not a positive integer or ``retries`` that is negative.

    Examples
    --------
    >>> ex = ProcessesExecutor(cpus=2)
    >>> sorted(ex.run_tasks([abs, abs]))  # doctest: +SKIP
    """

    kind = "processes"

    def __init__(self, cpus: int | None = None, retries: int = 1):
        self._n = default_workers() if cpus is None else check_count(cpus, "cpus")
        self.retries = check_count(retries, "retries", minimum=0)
        self._mp = multiprocessing.get_context("spawn")
        # the workers do not run the script again (see _spawn): scripts on standard input
        # and scripts without a main guard work
        _spawn.neutral_main_for(_WORKER_NAME)
        self._runs = itertools.count(1)
        self._closed = False
        self._warm: list[str] = []
        # the id of the run whose tasks are to stop at their next report (shared with workers)
        self._stop_word = self._mp.RawValue("q", 0)
        # started with the first run: a Context that only loads data sets or reads files
        # (e.g. ``udfkit info``) starts no processes
        self._workers: list[_Worker] = []

    # -- workers ----------------------------------------------------------------------------
    def _start(self) -> _Worker:
        parent, child = self._mp.Pipe(duplex=True)
        current = self._mp.RawValue("q", 0)
        saved = {k: os.environ.get(k) for k in _THREAD_ENV}
        # a spawned child inherits the environment: one thread per library from the start
        os.environ.update({k: "1" for k in _THREAD_ENV})
        try:
            process = self._mp.Process(target=worker_main, daemon=True, name=_WORKER_NAME,
                                       args=(child, tuple(self._warm), self._stop_word, current))
            process.start()
        finally:
            for k, v in saved.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v
        child.close()
        return _Worker(process, parent, current)

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

    def _replace(self, worker: _Worker, kill: bool = True) -> _Worker:
        self._stop(worker, kill=kill)
        new = self._start()
        self._workers[self._workers.index(worker)] = new
        return new

    @property
    def num_workers(self) -> int:
        return self._n

    def _ensure_started(self) -> None:
        if not self._workers:
            self._workers = [self._start() for _ in range(self._n)]

    def start(self) -> None:
        """Spawn the workers now (see :meth:`Executor.start`); a Context does at its start."""
        if self._closed:
            raise RuntimeError("this ProcessesExecutor is closed")
        self._ensure_started()

    def warm_modules(self, modules) -> None:
        new = [m for m in modules if m not in self._warm]
        if not new:
            return
        self._warm.extend(new)
        for worker in self._workers:
            try:
                worker.conn.send(("warm", new))
            except OSError:
                pass  # a dead worker: replaced when the next task finds it

    # -- running ----------------------------------------------------------------------------
    def run_tasks(self, tasks, progress=None, *, retries=None):
        if self._closed:
            raise RuntimeError("this ProcessesExecutor is closed")
        retries = self.retries if retries is None else check_count(retries, "retries", minimum=0)
        self._ensure_started()
        run = _ProcessesRun(self, next(self._runs), progress is not None)
        try:
            yield from schedule(run, tasks, progress, retries)
        finally:
            run.close()

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


class _ProcessesRun(Adapter):
    """One run on the pool: one task per idle worker, a dead worker replaced wherever found."""

    def __init__(self, executor: ProcessesExecutor, run_id: int, want_progress: bool):
        self.executor = executor
        self.run_id = run_id
        self.want_progress = want_progress
        self.early: list[Outcome] = []  # ends found while submitting (a send that failed twice)
        self.shipments = SegmentShipments()  # the run's shared parameters, once per worker

    def _idle(self) -> list[_Worker]:
        return [w for w in self.executor._workers if w.busy is None]

    def free_slots(self, in_flight):
        return len(self._idle())

    def _send(self, worker, msg, shared) -> None:
        """The run's shared parameters ``worker`` lacks of ``shared``, then ``msg``."""
        run, keys = worker.params
        if run != self.run_id:
            keys = set()
            worker.params = (self.run_id, keys)
        for key, value in shared.items():
            if key not in keys:
                worker.conn.send(self.shipments.message(self.run_id, key, value))
                keys.add(key)
        worker.conn.send(msg)

    def submit(self, index, task):
        # large parameters become references to their content key (udfkit.common.shared)
        payload, shared = pickle_with_refs(task, index, "a worker process")
        handle = _Attempt(index)
        worker = self._idle()[0]
        if worker.process.exitcode is not None:
            # killed while idle (the OOM killer, a user): its replacement takes the task
            worker = self.executor._replace(worker)
        msg = ("task", self.run_id, index, payload, self.want_progress)
        try:
            self._send(worker, msg, shared)
        except OSError:
            # died between the look and the send (BrokenPipeError): the task has not started
            worker = self.executor._replace(worker)
            try:
                self._send(worker, msg, shared)
            except OSError as e:  # pragma: no cover - a fresh worker that dies at once
                self.early.append(Outcome(handle, "died", f"a fresh worker process could not "
                                          f"take the task ({type(e).__name__}: {e})"))
                return handle
        worker.busy = handle
        return handle

    def wait(self, handles, timeout):
        outcomes, reports = self.early, []
        self.early = []
        if outcomes:
            timeout = 0
        by_handle = {}
        for w in self.executor._workers:
            if w.busy is not None:
                by_handle[w.conn] = w
                by_handle[w.process.sentinel] = w
        for ready in wait(list(by_handle), timeout=timeout):
            worker = by_handle[ready]
            if worker.busy is None:
                continue  # already handled through its other handle
            broken = False
            try:
                # everything it has sent; its result may come after its reports
                while worker.busy is not None and worker.conn.poll():
                    self._receive(worker, worker.conn.recv(), outcomes, reports)
            except (EOFError, OSError):
                broken = True  # the other end is gone: the worker died
            if worker.busy is not None and (broken or ready is worker.process.sentinel):
                outcomes.append(self._died(worker))
        return outcomes, reports

    def _receive(self, worker, msg, outcomes, reports):
        kind = msg[0]
        if msg[1] != self.run_id:
            # the end of a task of a cancelled run that the worker skipped (or stopped) after
            # it was handed to this run: its result, if any, is not wanted
            if kind == "result":
                _shm.discard(msg[4])
            return
        if kind == "progress":
            reports.append((msg[2], worker.busy, msg[3]))
            return
        handle, worker.busy = worker.busy, None
        if kind == "result":
            outcomes.append(Outcome(handle, "result", _shm.loads(msg[3], msg[4])))
            return
        _, _, index, payload, summary, text = msg
        exc = None
        if payload is not None:
            import cloudpickle

            try:
                exc = cloudpickle.loads(payload)
            except Exception:
                exc = None
        if not isinstance(exc, BaseException):
            exc = ExecutorError(f"task {index} failed on worker process {worker.process.pid}: "
                                f"{summary}\n{text}")
        else:
            exc.add_note(f"raised on udfkit worker process {worker.process.pid} in task {index}; "
                         f"worker traceback:\n{text}")
        outcomes.append(Outcome(handle, "error", exc))

    def _died(self, worker) -> Outcome:
        handle = worker.busy
        pid = worker.process.pid
        worker.process.join(timeout=1)
        code = worker.process.exitcode
        worker.busy = None
        self.executor._replace(worker)
        how = f"killed by signal {-code}" if code is not None and code < 0 else f"exit code {code}"
        # no hint about scripts without a main guard: workers never run the main module
        # (see _spawn), so a worker that dies was killed or ended by the task's own code
        return Outcome(handle, "died", f"worker process {pid} died ({how}) while running it; "
                                       f"it has been replaced")

    def cancel(self, handles):
        # tasks still running stop at their next report; workers that do not stop within
        # GRACE seconds (a task that does not report) are replaced, not waited for
        busy = [w for w in self.executor._workers if w.busy is not None]
        if not busy:
            return
        self.executor._stop_word.value = self.run_id
        for worker in busy:
            if worker.current.value != self.run_id:
                # it has not started the task (still busy with its warm-up imports): it will
                # skip it when it gets to it, and serve the next run after that
                worker.busy = None
        busy = [w for w in busy if w.busy is not None]
        deadline = time.monotonic() + GRACE
        while busy and deadline > time.monotonic():
            by_handle = {}
            for w in busy:
                by_handle[w.conn] = w
                by_handle[w.process.sentinel] = w
            for ready in wait(list(by_handle), timeout=max(0.0, deadline - time.monotonic())):
                worker = by_handle[ready]
                if worker.busy is None:
                    continue
                try:
                    while worker.busy is not None and worker.conn.poll():
                        self._drop(worker, worker.conn.recv())
                except (EOFError, OSError):
                    pass  # died: replaced below
            busy = [w for w in busy if w.busy is not None and w.process.exitcode is None]
        for worker in self.executor._workers:
            if worker.busy is not None:
                worker.busy = None
                self.executor._replace(worker)

    def _drop(self, worker, msg) -> None:
        """A message of a cancelled task: its result is not wanted, its end frees the worker."""
        kind = msg[0]
        if kind == "progress":
            return
        if kind == "result":
            _shm.discard(msg[4])
        worker.busy = None  # a result, an error or "cancelled": the task is over

    def close(self) -> None:
        """The run ended: workers drop its shared parameters, its segments are removed."""
        for worker in self.executor._workers:
            if worker.params[0] == self.run_id:
                worker.params = (None, set())
                if worker.busy is None:
                    try:
                        worker.conn.send(("release", self.run_id))
                    except OSError:
                        pass  # a dead worker: replaced when the next task finds it
        self.shipments.close()


def _remove_segments_of(pid: int) -> None:
    """Shared memory a dead worker created and nobody will read."""
    for path in glob.glob(f"/dev/shm/{SEGMENT_PREFIX}{pid}_*"):
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass
