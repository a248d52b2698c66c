"""The loop of a ``processes`` worker (runs in a spawned process).

Messages from the main process: ``("task", run_id, index, payload, want_progress)``,
``("params", run_id, key, pickle, segments)`` (a shared parameter of the run, see
:mod:`udfkit.executor._params`), ``("release", run_id)`` (the run ended: drop its
parameters), ``("warm", [module, ...])`` (import these now) and ``("stop",)``. Messages back:
``("progress", run_id, index, frames)``,
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


def worker_main(conn, warm=()) -> None:
    """Serve tasks from ``conn`` until told to stop; import ``warm`` first."""
    # Ctrl-C in a terminal reaches the whole process group: the main process decides
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    import cloudpickle

    from ..common.shared import resolving
    from . import _shm
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
            try:
                with resolving(params.lookup(run_id)):
                    task = cloudpickle.loads(payload)
                kwargs = {}
                if want_progress:
                    def report(frames, run_id=run_id, index=index):
                        conn.send(("progress", run_id, index, frames))
                    kwargs["progress"] = report
                data, segments = _shm.dumps(task(**kwargs))
                conn.send(("result", run_id, index, data, segments))
            except BaseException as e:
                # SystemExit or KeyboardInterrupt raised by a task's own code is its error
                # too (SIGINT is ignored here): sent back, not the end of the worker
                text = traceback.format_exc()
                try:
                    exc = cloudpickle.dumps(e)
                except Exception:
                    exc = None
                conn.send(("error", run_id, index, exc, f"{type(e).__name__}: {e}", text))
            # the task refers to the run's parameters: dropped now, so that a released run's
            # mappings go at once
            task = None
