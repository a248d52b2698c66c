"""The loop of a ``processes`` worker (runs in a spawned process).

Messages from the main process: ``("task", run_id, index, payload, want_progress)`` and
``("stop",)``. Messages back: ``("progress", run_id, index, frames)``,
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


def worker_main(conn) -> None:
    # Ctrl-C in a terminal reaches the whole process group: the main process decides
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    import cloudpickle

    from . import _shm
    from .threadpools import single_threaded

    _shm.set_segment_prefix(f"{SEGMENT_PREFIX}{os.getpid()}_")
    import udfkit.udf  # noqa: F401 - import once, so the first task does not pay for it

    with single_threaded():
        while True:
            try:
                msg = conn.recv()
            except (EOFError, OSError):
                return  # the main process is gone
            if msg[0] == "stop":
                return
            _, run_id, index, payload, want_progress = msg
            try:
                task = cloudpickle.loads(payload)
                kwargs = {}
                if want_progress:
                    def report(frames, run_id=run_id, index=index):
                        conn.send(("progress", run_id, index, frames))
                    kwargs["progress"] = report
                data, segments = _shm.dumps(task(**kwargs))
                conn.send(("result", run_id, index, data, segments))
            except Exception as e:
                text = traceback.format_exc()
                try:
                    exc = cloudpickle.dumps(e)
                except Exception:
                    exc = None
                conn.send(("error", run_id, index, exc, f"{type(e).__name__}: {e}", text))
