"""LiberTEM's module path of its thread-pool executor (``libertem.executor.concurrent``)."""

from __future__ import annotations

from .threads import ThreadsExecutor

__all__ = ["ConcurrentJobExecutor"]


class ConcurrentJobExecutor(ThreadsExecutor):
    """LiberTEM's name of :class:`~udfkit.executor.threads.ThreadsExecutor`.

    Examples
    --------
    >>> ex = ConcurrentJobExecutor.make_local(n_threads=2)
    >>> ex.num_workers
    2
    >>> ex.close()
    """

    @classmethod
    def make_local(cls, n_threads: int | None = None, main_process_gpu=None) -> ConcurrentJobExecutor:
        """A pool of ``n_threads`` threads (default one per physical core)."""
        if not (main_process_gpu is None or main_process_gpu is False):
            from ..errors import ExecutorSpecError

            raise ExecutorSpecError(f"ConcurrentJobExecutor.make_local: main_process_gpu="
                                    f"{main_process_gpu!r} is not offered: udfkit has no GPU back-end")
        return cls(cpus=n_threads)
