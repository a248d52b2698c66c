"""Stopping the running tasks of a run that ended early, without stopping their workers.

A run ends early when a task raises, on ``Ctrl-C`` or when its caller closes a
``run_udf_iter`` loop. Tasks still running then belong to nobody: a thread pool let them run
to their end, and a process pool killed and respawned their workers (hundreds of
milliseconds each, and the kernels they had loaded). Instead, every task that takes a
``progress`` argument is given a reporter that also looks at a *stop word*; when the run is
cancelled, the executor sets the word, the task raises :class:`TaskCancelled` at its next
report (tasks report every tile, rate-limited to every 0.2 s on the wire), and its worker is
free again. A process worker that has not started the task yet (it is still importing its
warm-up modules) skips it when it gets to it: it says which run's task it is running in a
shared word, which it sets *before* it looks at the stop word, while the main process sets
the stop word before it looks at that one, so one of the two sees the other. A task that
does not report within :data:`GRACE` seconds (a UDF that works for a long time in one call)
is dealt with as before.
"""

from __future__ import annotations

import inspect

__all__ = ["TaskCancelled", "GRACE", "takes_progress", "cancellable_reporter"]

#: seconds a cancelled run waits for its running tasks to stop at their next report
GRACE = 1.0


class TaskCancelled(BaseException):
    """Raised inside a task whose run was cancelled (a ``BaseException``: user code that
    catches ``Exception`` does not swallow it)."""


_takes: dict[type, bool] = {}


def takes_progress(task) -> bool:
    """Whether ``task`` can be called as ``task(progress=...)``."""
    kind = type(task)
    known = _takes.get(kind)
    if known is not None:
        return known
    try:
        params = inspect.signature(task).parameters
    except (TypeError, ValueError):  # builtins without a signature
        takes = False
    else:
        takes = "progress" in params or any(p.kind is p.VAR_KEYWORD for p in params.values())
    if not inspect.isfunction(task) and not inspect.ismethod(task):
        _takes[kind] = takes  # instances of one class share a signature; functions do not
    return takes


def cancellable_reporter(stopped, report=None):
    """A ``progress`` callable that raises :class:`TaskCancelled` once ``stopped()`` is true
    and otherwise passes the frames on to ``report`` (if any)."""
    if report is None:
        def check(frames):
            if stopped():
                raise TaskCancelled()
        return check

    def check_and_report(frames):
        if stopped():
            raise TaskCancelled()
        report(frames)
    return check_and_report
