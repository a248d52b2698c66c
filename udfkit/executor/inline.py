"""The ``inline`` executor: runs every task in the calling thread (tests, debugging)."""

from __future__ import annotations

from functools import partial

from .base import Executor, check_count
from .threadpools import limited_threads, machine_threads

__all__ = ["InlineExecutor", "InlineJobExecutor"]


class InlineExecutor(Executor):
    """Run tasks one after the other in the calling thread.

    Tasks run one at a time, so each has the machine to itself: while it runs, BLAS and
    OpenMP libraries use ``threads`` threads (see :mod:`udfkit.executor.threadpools`).

    Parameters
    ----------
    debug : bool
        Pickle every task and every result through cloudpickle and back, as a process or
        cluster executor would, so that pickling bugs show up without worker processes.
    threads : int, optional
        BLAS / OpenMP threads inside a task; default one per physical core that other
        processes leave free (:func:`~udfkit.executor.threadpools.machine_threads`, asked
        at every run).

    Raises
    ------
    ExecutorSpecError
        For ``threads`` that is not a positive integer.

    Examples
    --------
    >>> ex = InlineExecutor(debug=True)
    >>> list(ex.run_tasks([lambda: 1, lambda: 2]))
    [(0, 1), (1, 2)]
    """

    kind = "inline"

    def __init__(self, debug: bool = False, threads: int | None = None):
        self.debug = bool(debug)
        self.threads = None if threads is None else check_count(threads, "threads")

    @property
    def num_workers(self) -> int:
        return 1

    def run_tasks(self, tasks, progress=None, *, retries=None):
        # ``retries`` has nothing to do here: no worker can die without this thread
        if self.debug:
            import cloudpickle

            from .base import pickle_task
        threads = machine_threads() if self.threads is None else self.threads

        for i, task in enumerate(tasks):
            # the task runs in this thread, so its reports can go straight to the callback
            kwargs = {} if progress is None else {"progress": partial(progress, i)}
            if self.debug:
                # the same error as a worker process would give (ExecutorError naming the task)
                task = cloudpickle.loads(pickle_task(task, i, "a worker process"))
            # the task has the machine to itself; the caller's code between tasks keeps
            # its own BLAS threads
            with limited_threads(threads):
                result = task(**kwargs)
            if self.debug:
                result = cloudpickle.loads(cloudpickle.dumps(result))
            yield i, result
            # the generator's frame would keep the merged result alive while the next task
            # runs (one partition's buffers more in memory)
            result = None

    def __repr__(self):
        return f"InlineExecutor(debug={self.debug})"


class InlineJobExecutor(InlineExecutor):
    """LiberTEM's name (``libertem.executor.inline.InlineJobExecutor``) of :class:`InlineExecutor`.

    ``inline_threads`` is LiberTEM's thread count for BLAS/OpenMP in the main process
    (default: one per physical core); a GPU for the main process is not offered.

    Examples
    --------
    >>> from udfkit import Context
    >>> Context(executor=InlineJobExecutor()).executor
    InlineExecutor(debug=False)
    """

    def __init__(self, debug: bool = False, inline_threads=None, main_process_gpu=None):
        from ..errors import ExecutorSpecError

        if inline_threads is not None:
            inline_threads = check_count(inline_threads, "InlineJobExecutor: inline_threads")
        if not (main_process_gpu is None or main_process_gpu is False):
            raise ExecutorSpecError(f"InlineJobExecutor: main_process_gpu={main_process_gpu!r} is "
                                    "not offered: udfkit has no GPU back-end")
        super().__init__(debug=debug, threads=inline_threads)
