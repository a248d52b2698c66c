"""The executor contract: run picklable tasks, hand back results as they finish.

An executor knows nothing of UDFs or buffers. A *task* is a picklable callable without
arguments; its return value is picklable too. :meth:`Executor.run_tasks` returns an iterator
of ``(position, result)`` pairs in completion order, where ``position`` is the task's index
in the input list. Closing that iterator early (``it.close()``, or a ``for`` loop left by an
exception) cancels the tasks that have not run yet. An exception raised by a task is
re-raised from the iterator with its original type.

``tasks`` may also be a *task source* that cuts the next task when asked (see
:mod:`udfkit.executor._schedule`); iterating it gives its tasks without pacing, which is what
an executor that does not go through the scheduling loop (inline) does.

Progress while tasks run
------------------------
With ``progress=callback``, each task is called as ``task(progress=report)``, and the task
calls ``report(frames)`` on the worker as it gets on. The executor delivers every report as
``callback(index, frames)`` **in the thread that iterates** over :meth:`run_tasks` (so a
progress bar or a GUI is only touched from there), at the latest when the next result is
handed back. Tasks rate-limit their reports.

Faults
------
Every executor that runs tasks elsewhere than the calling thread is a thin adapter over one
scheduling loop (:mod:`udfkit.executor._schedule`), so these rules hold for all of them:

* at most a bounded number of tasks are in flight; results come in completion order;
* an exception raised by a task comes back with its original type, and with the worker's
  traceback as a note where the task ran in another process;
* an :class:`~udfkit.errors.ExecutorError` that concerns one task (it cannot be pickled, its
  worker died) has ``task_index`` set;
* a task whose worker died is run again on a fresh worker up to ``retries`` times
  (:attr:`Executor.retries`, or ``run_tasks(..., retries=N)``) before the run fails;
* an early close of the iterator, an exception or ``KeyboardInterrupt`` cancels what has not
  finished, and the executor stays usable.

Executors know nothing of UDFs: whoever uses an executor tells it, with
:meth:`Executor.warm_modules`, which modules its workers should import before the first task
arrives.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Sequence

__all__ = ["Executor", "default_workers", "pickle_task", "check_count"]


class Executor(ABC):
    """Where tasks run (inline, threads, processes, dask)."""

    #: registry name, e.g. ``"inline"``
    kind: str = "?"

    #: how many times a task whose worker died is run again (on a fresh worker) before the
    #: run fails; executors whose workers cannot die alone (inline, threads) keep 0
    retries: int = 0

    @property
    @abstractmethod
    def num_workers(self) -> int:
        """How many tasks run at the same time (used to size partitions)."""

    @abstractmethod
    def run_tasks(self, tasks: Sequence[Callable], progress=None, *,
                  retries: int | None = None) -> Iterator[tuple[int, object]]:
        """Run ``tasks``; yield ``(index, result)`` as each finishes.

        Parameters
        ----------
        tasks : sequence of callable
        progress : callable, optional
            ``progress(index, frames)``, called in the iterating thread (see the module
            docstring); the tasks are then called with ``progress=``.
        retries : int, optional
            Runs again of a task whose worker died; default :attr:`retries`.
        """

    def warm_modules(self, modules: Sequence[str]) -> None:  # noqa: B027 - optional hook
        """Have every worker, present and future, import ``modules`` before its first task.

        The default does nothing: inline and thread workers share this process's imports.
        """

    def start(self) -> None:  # noqa: B027 - optional hook
        """Start the workers now, without waiting for them to be ready (they import their
        warm modules meanwhile), so that the first run finds them started.

        The default does nothing: executors whose workers exist from the start, or that
        run tasks in this process.
        """

    def with_retries(self, retries: int | None) -> Executor:
        """This executor with another default of ``retries`` for the runs started through it.

        The view shares the workers (closing it does not close them); ``None`` gives the
        executor itself.

        Examples
        --------
        >>> from udfkit.executor.inline import InlineExecutor
        >>> ex = InlineExecutor()
        >>> ex.with_retries(2).retries, ex.retries
        (2, 0)
        """
        if retries is None:
            return self
        return _WithRetries(self, check_count(retries, "retries", minimum=0))

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


def check_count(value, name: str, minimum: int = 1) -> int:
    """``value`` as a count of at least ``minimum``.

    Raises
    ------
    ExecutorSpecError
        Naming ``name``, for anything else (a bool, a float, a string, a smaller number).

    Examples
    --------
    >>> check_count(2, "cpus")
    2
    >>> check_count(0, "cpus")
    Traceback (most recent call last):
    ...
    udfkit.errors.ExecutorSpecError: cpus: expected an integer of at least 1, got 0
    """
    import numbers

    from ..errors import ExecutorSpecError

    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum:
        raise ExecutorSpecError(f"{name}: expected an integer of at least {minimum}, got {value!r}")
    return int(value)


class _WithRetries(Executor):
    """An executor seen with another ``retries`` default (see :meth:`Executor.with_retries`)."""

    def __init__(self, inner: Executor, retries: int):
        self._inner = inner
        self.retries = retries
        self.kind = inner.kind

    @property
    def num_workers(self) -> int:
        return self._inner.num_workers

    def run_tasks(self, tasks, progress=None, *, retries=None):
        return self._inner.run_tasks(tasks, progress=progress,
                                     retries=self.retries if retries is None else retries)

    def run_function(self, fn, *args, **kwargs):
        return self._inner.run_function(fn, *args, **kwargs)

    def warm_modules(self, modules) -> None:
        self._inner.warm_modules(modules)

    def start(self) -> None:
        self._inner.start()

    def __getattr__(self, name):
        # anything else an executor offers (``client`` of the dask executor, ...)
        return getattr(self._inner, name)

    def __repr__(self):
        return f"{self._inner!r}.with_retries({self.retries})"


def pickle_task(task, index: int, where: str, dumps: Callable | None = None) -> bytes:
    """``task`` pickled for ``where`` ("a worker process", "a dask worker").

    ``dumps`` pickles (default ``cloudpickle.dumps``); the dask executor gives one that
    ships the user's own modules by value (:mod:`udfkit.executor._shipping`).

    Raises
    ------
    ExecutorError
        Naming the task, when it cannot be pickled (a lock or an open file among its
        arguments); nothing has been sent anywhere yet.
    """
    from ..errors import ExecutorError

    if dumps is None:
        import cloudpickle

        dumps = cloudpickle.dumps
    try:
        return dumps(task)
    except Exception as e:
        error = ExecutorError(f"task {index} cannot be pickled for {where}: {type(e).__name__}: {e}")
        error.task_index = index
        raise error from None
