"""The ``inline`` executor: runs every task in the calling thread (tests, debugging)."""

from __future__ import annotations

from functools import partial

from .base import Executor
from .threadpools import single_threaded

__all__ = ["InlineExecutor", "InlineJobExecutor"]


class InlineExecutor(Executor):
    """Run tasks one after the other in the calling thread.

    While a task runs, BLAS and OpenMP libraries are limited to one thread (see
    :mod:`udfkit.executor.threadpools`).

    Parameters
    ----------
    debug : bool
        Pickle every task and every result through cloudpickle and back, as a process or
        cluster executor would, so that pickling bugs show up without worker processes.

    Examples
    --------
    >>> ex = InlineExecutor(debug=True)
    >>> list(ex.run_tasks([lambda: 1, lambda: 2]))
    [(0, 1), (1, 2)]
    """

    kind = "inline"

    def __init__(self, debug: bool = False):
        self.debug = bool(debug)

    @property
    def num_workers(self) -> int:
        return 1

    def run_tasks(self, tasks, progress=None, *, retries=None):
        # ``retries`` has nothing to do here: no worker can die without this thread
        if self.debug:
            import cloudpickle

            from .base import pickle_task

        for i, task in enumerate(tasks):
            # the task runs in this thread, so its reports can go straight to the callback
            kwargs = {} if progress is None else {"progress": partial(progress, i)}
            if self.debug:
                # the same error as a worker process would give (ExecutorError naming the task)
                task = cloudpickle.loads(pickle_task(task, i, "a worker process"))
            # the caller's code between tasks keeps its BLAS threads; the task gets one
            with single_threaded():
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

    ``inline_threads`` (LiberTEM's thread count for numba/BLAS in the main process) and a GPU
    for the main process are not offered; udfkit runs inline tasks single-threaded.

    Examples
    --------
    >>> from udfkit import Context
    >>> Context(executor=InlineJobExecutor()).executor
    InlineExecutor(debug=False)
    """

    def __init__(self, debug: bool = False, inline_threads=None, main_process_gpu=None):
        from ..errors import ExecutorSpecError

        if inline_threads is not None:
            raise ExecutorSpecError(f"InlineJobExecutor: inline_threads={inline_threads!r} is not "
                                    "offered: inline tasks run with one BLAS/numba thread; use "
                                    "Context.make_with('threads', cpus=N) for parallel work")
        if not (main_process_gpu is None or main_process_gpu is False):
            raise ExecutorSpecError(f"InlineJobExecutor: main_process_gpu={main_process_gpu!r} is "
                                    "not offered: udfkit has no GPU back-end")
        super().__init__(debug=debug)
