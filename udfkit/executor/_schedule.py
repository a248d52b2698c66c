"""The scheduling loop that the threads, processes and dask executors share.

In the style of dask's ``get_async``: the loop keeps a bounded number of tasks in flight,
waits for any of them with a short timeout, hands progress reports on in the iterating
thread, yields results in completion order and, whatever ends it early (an exception, a
``KeyboardInterrupt``, the caller closing the iterator), cancels what has not finished in
its ``finally``. The rules of :mod:`udfkit.executor.base` are written here once; an executor
is a thin :class:`Adapter` that knows how to submit one task, wait for any, cancel, and
notice that a worker died.

Retries
-------
A task whose worker died (killed by the OOM killer, a segfault in a library) is submitted
again, up to ``retries`` times, before the run fails with an
:class:`~udfkit.errors.ExecutorError` that names the task. An exception raised *by* a task is
never retried: running the same code on the same data raises it again.

Task sources
------------
``tasks`` may be a *task source* instead of a sequence: an object with ``next_task()``,
which returns the next task, ``None`` when it wants to see a result before it hands out
another (it is asked again after the next task ends), or raises ``StopIteration`` when all
are handed out. Tasks are numbered in the order they are handed out. A run that cuts its
partitions by measured cost is one (:mod:`udfkit.udf.worksize`).

Progress of a task that runs again
----------------------------------
Reports carry an attempt key. A new attempt of a task reports its first frames again; only
frames beyond those already handed on for that task count, so the total never goes back
and never exceeds the task's frames.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections import deque
from collections.abc import Callable, Hashable, Iterator, Sequence

from ..errors import ExecutorError

__all__ = ["Adapter", "Outcome", "schedule", "POLL"]

#: how often (seconds) the iterating thread wakes up to hand on progress reports
POLL = 0.1


class Outcome:
    """How one submitted task ended: ``"result"``, ``"error"`` (``value`` is the exception
    to raise) or ``"died"`` (``value`` says how the worker died, for the message)."""

    __slots__ = ("handle", "kind", "value")

    def __init__(self, handle, kind: str, value):
        self.handle = handle
        self.kind = kind
        self.value = value


class Adapter(ABC):
    """One run on one executor, as the loop sees it.

    An adapter is made per run; ``handle`` is whatever :meth:`submit` returns.
    """

    @abstractmethod
    def free_slots(self, in_flight: int) -> int:
        """How many more tasks may be submitted now, with ``in_flight`` not finished."""

    @abstractmethod
    def submit(self, index: int, task: Callable) -> Hashable:
        """Start ``task``; return its handle. May raise (a task that cannot be pickled)."""

    @abstractmethod
    def wait(self, handles: Sequence, timeout: float) -> tuple[list[Outcome], list[tuple]]:
        """Wait up to ``timeout`` for any of ``handles`` to end.

        Returns the outcomes of those that ended and the progress reports that arrived
        meanwhile, as ``(index, attempt, frames)``; ``attempt`` tells the runs of one task
        apart (a task run again reports its first frames again).
        """

    @abstractmethod
    def cancel(self, handles: Sequence) -> None:
        """Stop ``handles`` (an early end of the run); leave the executor usable."""


def schedule(adapter: Adapter, tasks: Sequence[Callable], progress=None,
             retries: int = 0) -> Iterator[tuple[int, object]]:
    """Run ``tasks`` through ``adapter``; yield ``(index, result)`` in completion order.

    Parameters
    ----------
    adapter : Adapter
    tasks : sequence of callable
    progress : callable, optional
        ``progress(index, frames)``, called in this (the iterating) thread.
    retries : int
        Runs again of a task whose worker died, before the run fails.

    Raises
    ------
    ExecutorError
        With ``task_index`` set, for a task that cannot be submitted or whose workers died
        more than ``retries`` times.
    BaseException
        Whatever a task raised, with its original type.
    """
    feed = _feed(tasks)
    numbered = 0  # tasks handed out so far (the next one's index)
    again: deque[tuple[int, Callable]] = deque()  # tasks whose worker died, before new ones
    pending: dict[Hashable, tuple[int, Callable]] = {}  # handle -> (index, task)
    deaths: dict[int, int] = {}  # index -> how many workers died running it
    counted: dict[int, tuple] = {}  # index -> (attempt, its frames so far, frames handed on)
    ended: set[int] = set()  # indices whose result was handed back (late reports are dropped)

    def submit_more() -> None:
        nonlocal numbered
        # with nothing in flight one slot at least, so the run cannot stall
        free = adapter.free_slots(len(pending)) if pending else max(1, adapter.free_slots(0))
        while free > 0:
            if again:
                index, task = again.popleft()
            else:
                task = feed()
                if task is _END:
                    return
                if task is None:
                    if not pending:
                        raise RuntimeError("the task source waits for a result, but no task "
                                           "is running")
                    return
                index = numbered
                numbered += 1
            try:
                handle = adapter.submit(index, task)
            except ExecutorError as e:
                if e.task_index is None:
                    e.task_index = index
                raise
            pending[handle] = (index, task)
            free -= 1

    def hand_on(reports) -> None:
        for index, attempt, frames in reports:
            if progress is None or index in ended:
                continue
            last, done, handed = counted.get(index, (attempt, 0, 0))
            done = done + frames if attempt == last else frames
            counted[index] = (attempt, done, max(done, handed))
            if done > handed:
                progress(index, done - handed)

    finished = False
    try:
        submit_more()
        while pending:
            outcomes, reports = adapter.wait(list(pending), POLL)
            hand_on(reports)
            for outcome in outcomes:
                index, task = pending.pop(outcome.handle)
                if outcome.kind == "result":
                    ended.add(index)
                    yield index, outcome.value
                    # the outcome (and the list of them) lives on while the next tasks run:
                    # without this, one merged partition result more stays alive here (in
                    # the value, and in the handle where that is a future holding it)
                    outcome.value = outcome.handle = None
                    # after the yield: a caller that stops here starts nothing more
                    submit_more()
                elif outcome.kind == "died":
                    deaths[index] = deaths.get(index, 0) + 1
                    if deaths[index] > retries:
                        error = ExecutorError(
                            f"task {index}: {outcome.value}; the task was tried {deaths[index]} "
                            f"time(s) and each time its worker died (retries={retries})")
                        error.task_index = index
                        raise error
                    again.append((index, task))
                    submit_more()
                else:
                    exc = outcome.value
                    if isinstance(exc, ExecutorError) and exc.task_index is None:
                        exc.task_index = index
                    raise exc
        finished = True
    finally:
        if not finished and pending:
            adapter.cancel(list(pending))


_END = object()


def _feed(tasks) -> Callable:
    """A function giving the next task, ``None`` (the source waits) or ``_END``."""
    next_task = getattr(tasks, "next_task", None)
    if next_task is None:
        it = iter(tasks)
        return lambda: next(it, _END)

    def feed():
        try:
            return next_task()
        except StopIteration:
            return _END
    return feed
