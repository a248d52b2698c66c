"""LiberTEM's progress-reporter interface (``libertem.common.progress``).

A LiberTEM reporter gets a :class:`ProgressState` at ``start``, on every ``update`` and at
``end``. udfkit's own reporters (:mod:`udfkit.executor.progress`) count frames with
``start(total)``, ``advance(n)``, ``close()``; ``run_udf(progress=reporter)`` accepts either
kind. udfkit reports frames only: the partition counts of the state are 0.
"""

from __future__ import annotations

from typing import NamedTuple

__all__ = ["ProgressState", "ProgressReporter"]


class ProgressState(NamedTuple):
    """What a LiberTEM reporter is told.

    Attributes
    ----------
    num_frames_complete : float
    num_frames_total : int
    num_part_complete, num_part_in_progress, num_part_total : int
        Always 0 in udfkit (it reports frames, not partitions).
    progress_id : str
        Unique per run.
    """

    num_frames_complete: float
    num_frames_total: int
    num_part_complete: int
    num_part_in_progress: int
    num_part_total: int
    progress_id: str


class ProgressReporter:
    """Base class of LiberTEM-style reporters: override ``start``, ``update`` and ``end``.

    Examples
    --------
    >>> import numpy as np
    >>> from udfkit import Context
    >>> from udfkit.udf import SumUDF
    >>> class Log(ProgressReporter):
    ...     def __init__(self):
    ...         self.seen = []
    ...     def update(self, state):
    ...         self.seen.append(state.num_frames_complete)
    >>> log = Log()
    >>> ctx = Context.make_with("inline")
    >>> ds = ctx.load("memory", data=np.zeros((4, 2, 2)), sig_dims=2, num_partitions=2)
    >>> _ = ctx.run_udf(ds, SumUDF(), progress=log)
    >>> log.seen[-1]
    4
    """

    def start(self, state: ProgressState) -> None:
        """Called once before any frame is processed."""

    def update(self, state: ProgressState) -> None:
        """Called when more frames are done."""

    def end(self, state: ProgressState) -> None:
        """Called once at the end of the run."""
