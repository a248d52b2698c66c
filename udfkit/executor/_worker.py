"""The loop of a ``processes`` worker (runs in a spawned process).

Messages from the main process: ``("task", run_id, index, payload, want_progress)``,
``("params", run_id, key, pickle, segments)`` (a shared parameter of the run, see
:mod:`udfkit.executor._params`), ``("release", run_id)`` (the run ended: drop its
parameters), ``("warm", [module, ...])`` (import these now) and ``("stop",)``. Messages back:
``("progress", run_id, index, frames)``, ``("cancelled", run_id, index)`` (the run was
cancelled and the task stopped at a report, see :mod:`udfkit.executor._cancel`),
``("result", run_id, index, pickle, segments)`` (large buffers in shared memory, see
:mod:`udfkit.executor._shm`) and ``("error", run_id, index, pickled exception or None,
summary, traceback text)``.
"""

from __future__ import annotations

import os
import signal
import traceback

__all__ = ["worker_main", "SEGMENT_PREFIX"]

#: shared-memory segments of a worker are named ``udfkit_<pid>_<n>`` so that the main
#: process can remove what a killed worker left behind
SEGMENT_PREFIX = "udfkit_"


def _import_all(modules) -> None:
    import importlib

    for name in modules:
        # a module that fails to import fails again in the first task that needs it, with
        # the error where the user looks; warming is only a head start
        try:
            importlib.import_module(name)
        except Exception:
            pass


def worker_main(conn, warm=(), stop=None, current=None) -> None:
    """Serve tasks from ``conn`` until told to stop; import ``warm`` first.

    ``stop`` and ``current`` are shared integers (``multiprocessing.RawValue``): the id of
    the run whose tasks are to stop at their next progress report (set by the main process),
    and the id of the run whose task this worker is running, 0 between tasks (set here).
    """
    # Ctrl-C in a terminal reaches the whole process group: the main process decides
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    import cloudpickle

    from ..common.shared import resolving
    from . import _shm
    from ._cancel import TaskCancelled, cancellable_reporter, takes_progress
    from ._params import WorkerParams
    from .threadpools import single_threaded

    _shm.set_segment_prefix(f"{SEGMENT_PREFIX}{os.getpid()}_")
    # the executor's user says what to import once, so the first task does not pay for it
    _import_all(warm)
    params = WorkerParams()

    with single_threaded():
        while True:
            try:
                msg = conn.recv()
            except (EOFError, OSError):
                return  # the main process is gone
            if msg[0] == "stop":
                return
            if msg[0] == "warm":
                _import_all(msg[1])
                continue
            if msg[0] == "release":
                params.release(msg[1])
                continue
            if msg[0] == "params":
                params.receive(*msg[1:])
                continue
            _, run_id, index, payload, want_progress = msg
            task = None
            if current is not None:
                current.value = run_id  # before the look at "stop": see _cancel
            if stop is not None and stop.value == run_id:
                # cancelled before it started (it waited behind the imports of warm-up)
                current.value = 0
                conn.send(("cancelled", run_id, index))
                continue
            try:
                with resolving(params.lookup(run_id)):
                    task = cloudpickle.loads(payload)
                kwargs = {}
                report = None
                if want_progress:
                    def report(frames, run_id=run_id, index=index):
                        conn.send(("progress", run_id, index, frames))
                    kwargs["progress"] = report
                if stop is not None and (want_progress or takes_progress(task)):
                    kwargs["progress"] = cancellable_reporter(
                        lambda run_id=run_id: stop.value == run_id, report)
                data, segments = _shm.dumps(task(**kwargs))
                conn.send(("result", run_id, index, data, segments))
            except TaskCancelled:
                conn.send(("cancelled", run_id, index))
            except BaseException as e:
                # SystemExit or KeyboardInterrupt raised by a task's own code is its error
                # too (SIGINT is ignored here): sent back, not the end of the worker
                text = traceback.format_exc()
                try:
                    exc = cloudpickle.dumps(e)
                except Exception:
                    exc = None
                conn.send(("error", run_id, index, exc, f"{type(e).__name__}: {e}", text))
            if current is not None:
                current.value = 0
            # the task refers to the run's parameters: dropped now, so that a released run's
            # mappings go at once
            task = None
