"""The executor contract: run picklable tasks, hand back results as they finish.

An executor knows nothing of UDFs or buffers. A *task* is a picklable callable without
arguments; its return value is picklable too. :meth:`Executor.run_tasks` returns an iterator
of ``(position, result)`` pairs in completion order, where ``position`` is the task's index
in the input list. Closing that iterator early (``it.close()``, or a ``for`` loop left by an
exception) cancels the tasks that have not run yet. An exception raised by a task is
re-raised from the iterator with its original type.

Progress while tasks run
------------------------
With ``progress=callback``, each task is called as ``task(progress=report)``, and the task
calls ``report(frames)`` on the worker as it gets on. The executor delivers every report as
``callback(index, frames)`` **in the thread that iterates** over :meth:`run_tasks` (so a
progress bar or a GUI is only touched from there), at the latest when the next result is
handed back. Tasks rate-limit their reports.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Sequence

__all__ = ["Executor", "default_workers", "pickle_task"]


class Executor(ABC):
    """Where tasks run (inline, threads, processes, dask)."""

    #: registry name, e.g. ``"inline"``
    kind: str = "?"

    @property
    @abstractmethod
    def num_workers(self) -> int:
        """How many tasks run at the same time (used to size partitions)."""

    @abstractmethod
    def run_tasks(self, tasks: Sequence[Callable], progress=None) -> Iterator[tuple[int, object]]:
        """Run ``tasks``; yield ``(index, result)`` as each finishes.

        Parameters
        ----------
        tasks : sequence of callable
        progress : callable, optional
            ``progress(index, frames)``, called in the iterating thread (see the module
            docstring); the tasks are then called with ``progress=``.
        """

    def run_function(self, fn: Callable, *args, **kwargs):
        """Run one function somewhere the data are reachable (default: here)."""
        return fn(*args, **kwargs)

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release workers; the executor is unusable afterwards."""

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def default_workers() -> int:
    """One worker per physical core (``psutil``), at least 1."""
    try:
        import psutil

        n = psutil.cpu_count(logical=False)
    except ImportError:  # pragma: no cover - psutil is a dependency
        n = None
    if not n:
        import os

        n = os.cpu_count() or 1
    return max(1, int(n))


def pickle_task(task, index: int, where: str) -> bytes:
    """``task`` pickled (cloudpickle) for ``where`` ("a worker process", "a dask worker").

    Raises
    ------
    ExecutorError
        Naming the task, when it cannot be pickled (a lock or an open file among its
        arguments); nothing has been sent anywhere yet.
    """
    import cloudpickle

    from ..errors import ExecutorError

    try:
        return cloudpickle.dumps(task)
    except Exception as e:
        raise ExecutorError(f"task {index} cannot be pickled for {where}: {type(e).__name__}: {e}") from None
