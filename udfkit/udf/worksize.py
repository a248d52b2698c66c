"""Partitions sized by work: cut while the run goes, from the measured cost per frame.

The byte-based rule of :mod:`udfkit.io.partitioning` makes a data set under 16 MiB one
partition. That is right for a UDF that streams (a sum costs a microsecond per frame) and
wrong for one that spends milliseconds per frame (a fit, an FFT, template matching): one
worker does all the work while the others wait. How much a frame costs is only known by
running the UDF, so for runs that may need it the plan's partitions are an upper bound and
the run cuts them into smaller ones as it hands out tasks.

Rules
-----
* **When.** An executor with ``W > 1`` workers, no ``num_partitions`` given, partitions of a
  kind that can be cut (:func:`udfkit.io.splitting.can_split`: raw, npy, memory and the
  detector formats read through a file partition) and not aligned to a file's chunks
  (whose chunks two pieces would both read), at least :data:`MIN_FRAMES_PER_WORKER`
  processed frames per worker, and fewer than :data:`TASKS_PER_WORKER` planned tasks per
  worker (where the byte rule already gives that many, the plan runs as it is).
  ``deterministic=True`` runs the plan's partitions as they are (see *Floating point*).
* **Probe.** Without a cost measured before, the first ``W`` tasks are probes of
  ``processed / (PROBE_DIVISOR * W)`` frames each, one per worker; the next task is cut when
  the first probe has come back.
* **Measure.** Every result brings the seconds its task ran on the worker; the cost per
  frame is their sum over the frames done. The fixed cost of a task (shipping, scheduling,
  merging) is the smallest difference between a task's time seen from the main process and
  on the worker.
* **Cut.** One task per worker is out at a time (an executor that queues more would
  let a task cut for the frames left now wait behind others). Each next task takes ``max(remaining / (2 W), frames worth OVERHEAD_RATIO fixed
  costs)`` processed frames (guided self-scheduling: large tasks first, smaller ones towards
  the end, so the workers finish together; never so small that the fixed cost shows), but
  at most ``remaining / W`` where that gives each worker ``SPLIT_RATIO`` fixed costs of work,
  never crossing the end of a planned partition, and takes the rest of the partition where less
  than a quarter of a task would remain. A cheap UDF (microseconds per frame) thus gets the
  planned partitions back after the probes; an expensive one gets several tasks per worker.
* **Remember.** The costs measured in a run are kept (per executor kind and size, UDF
  classes and parameters, frame shape and dtypes) and the next run of the same kind starts
  cutting from them, without probes.

Executed partitions
-------------------
The pieces are contiguous, in nav order, and each lies inside one planned partition; their
indices count from 0 in nav order. The run reports them
(:attr:`udfkit.udf.results.RunResults.partitions`).

Floating point
--------------
Sig and single buffers are merged partition by partition, so where partition boundaries
depend on timing, a floating-point sum may differ in its last bits from one run to the next
(integer and exactly representable results do not change). ``deterministic=True`` runs the
plan's partitions and merges them in order, which gives bit-identical results every time
and on every executor, at the cost of the adaptive cut.
"""

from __future__ import annotations

import math
import time
from collections import OrderedDict
from dataclasses import dataclass

import numpy as np

from ..io.splitting import can_split, sub_partition
from .plan import PartitionPlan

__all__ = ["WorkSizing", "AdaptiveTasks", "plan_sizing", "TASKS_PER_WORKER",
           "MIN_FRAMES_PER_WORKER", "PROBE_DIVISOR", "OVERHEAD_RATIO"]

#: the run cuts its partitions while it goes when the plan has fewer tasks than this per worker
TASKS_PER_WORKER = 4
#: ... and at least this many processed frames per worker (a tiny run stays one task)
MIN_FRAMES_PER_WORKER = 16
#: each of the W probes takes 1 / (PROBE_DIVISOR * W) of the processed frames
PROBE_DIVISOR = 8
#: a task is never cut smaller than this many times its fixed cost
OVERHEAD_RATIO = 20
#: ... but the remaining frames go to at least as many tasks as workers when each of them
#: would get this many times the fixed cost of a task
SPLIT_RATIO = 4
#: the smallest fixed cost per task assumed (seconds), whatever was measured
MIN_TASK_COST = 50e-6

_KNOWN: OrderedDict = OrderedDict()  # cost key -> (seconds per frame, fixed seconds per task)
_KNOWN_MAX = 256


@dataclass(frozen=True)
class WorkSizing:
    """How a run cuts its partitions while it goes (:attr:`RunPlan.sizing`).

    Attributes
    ----------
    workers : int
        Tasks that run at the same time.
    probe_frames : int
        Processed frames of each of the ``workers`` probe tasks (0: no probes, the cost is
        known from an earlier run).
    known_cost : tuple of float or None
        ``(seconds per frame, fixed seconds per task)`` measured in an earlier run.
    key : tuple
        What the measured cost is remembered under.
    """

    workers: int
    probe_frames: int
    known_cost: tuple | None
    key: tuple

    def describe(self) -> str:
        """The rule in words (a run plan's reason)."""
        head = (f"cut while the run goes, so that {self.workers} workers stay busy to the end: "
                f"tasks of max(remaining / {2 * self.workers}, {OVERHEAD_RATIO} x the fixed cost "
                f"of a task) frames inside the planned partitions")
        if self.known_cost is not None:
            per_frame, fixed = self.known_cost
            return (f"{head}; cost from an earlier run: {per_frame * 1e3:.3g} ms per frame, "
                    f"{fixed * 1e3:.3g} ms per task")
        return (f"{head}; cost measured on {self.workers} probe tasks of {self.probe_frames} "
                f"frames first")


def plan_sizing(partitions, part_plans, placement, *, num_partitions_given: bool,
                key, align: int = 1) -> WorkSizing | None:
    """The :class:`WorkSizing` of a run, or ``None`` where the plan's partitions run as they
    are (see the module docstring for the rule).

    ``key`` is what a measured cost is remembered under (:func:`cost_key`), or a function
    that makes it (called only where the run may be cut: a tiny run does not pay for it).

    Examples
    --------
    >>> from udfkit.udf.plan import Placement
    >>> import numpy as np
    >>> from udfkit.io.formats.memory import MemoryDataSet
    >>> ds = MemoryDataSet(data=np.zeros((1024, 4, 4), "uint16"), sig_dims=2).initialize()
    >>> parts = ds.get_partitions()
    >>> plans = [PartitionPlan(0, 0, 1024, 1024, 1024, 0)]
    >>> # for a run on two worker processes: two probes of 1024 / (8 * 2) frames first
    >>> plan_sizing(parts, plans, Placement("processes", 2, 1, False, True),
    ...             num_partitions_given=False, key=("example",)).probe_frames
    64
    >>> plan_sizing(parts, plans, Placement("inline", 1, 1, True, False),
    ...             num_partitions_given=False, key=("example",)) is None
    True
    """
    workers = placement.workers
    total = sum(p.processed for p in part_plans)
    tasks = sum(1 for p in part_plans if p.processed)
    if (workers < 2 or num_partitions_given or align > 1
            or total < MIN_FRAMES_PER_WORKER * workers
            or tasks >= TASKS_PER_WORKER * workers
            or not all(can_split(p) for p in partitions)):
        return None
    if callable(key):
        key = key()
    known = _KNOWN.get(key)
    probe = 0 if known is not None else max(1, total // (PROBE_DIVISOR * workers))
    return WorkSizing(workers=workers, probe_frames=probe, known_cost=known, key=key)


def cost_key(placement, udfs, sig_shape, dtype, input_dtypes, corrected: bool) -> tuple:
    """What a measured cost is remembered under: the executor's kind and size, the UDF
    classes with a summary of their parameters, the frame shape and the dtypes."""
    def summary(v):
        if isinstance(v, np.ndarray):
            return ("array", v.shape, v.dtype.str)
        if isinstance(v, (int, float, str, bool, type(None))):
            return v
        return type(v).__qualname__
    return (placement.kind, placement.workers,
            tuple((type(u).__module__, type(u).__qualname__,
                   tuple(sorted((k, summary(v)) for k, v in u._kwargs.items())))
                  for u in udfs),
            tuple(sig_shape), np.dtype(dtype).str,
            tuple(np.dtype(d).str for d in input_dtypes), bool(corrected))


class AdaptiveTasks:
    """The tasks of a run, cut as the scheduler asks for them (a *task source*, see
    :mod:`udfkit.executor.base`).

    :meth:`next_task` returns the next task, ``None`` while it waits for a probe's result,
    or raises ``StopIteration`` once every frame is handed out; :meth:`observe` takes each
    result as it arrives. Iterating gives the remaining tasks without waiting (cut from the
    cost known so far), for executors that do not pace a task source.

    Parameters
    ----------
    sizing : WorkSizing
    partitions : list of Partition
        The plan's partitions.
    part_plans : list of PartitionPlan
    rois : list
        Each partition's part of the run's ROI (``None``: no ROI).
    make_task : callable
        ``make_task(piece, processed, offset) -> PartitionTask``.
    """

    def __init__(self, sizing: WorkSizing, partitions, part_plans, rois, make_task):
        self.sizing = sizing
        self._make_task = make_task
        # (partition, processed positions, offset of its first processed frame)
        self._todo = [(p, p.selected_positions(r), pp.offset)
                      for p, pp, r in zip(partitions, part_plans, rois) if pp.processed]
        self._part = 0  # index into _todo
        self._taken = 0  # processed frames of _todo[_part] handed out
        self.remaining = sum(pp.processed for pp in part_plans)
        self._probes = sizing.workers if sizing.known_cost is None else 0
        self._cost: tuple | None = sizing.known_cost  # (per frame, per task) once measured
        self._work = 0.0
        self._frames = 0
        self._fixed = math.inf
        self._sent: dict[int, float] = {}  # piece index -> perf_counter when cut
        #: the tasks handed out, in order (a scheduler's task index is a position here)
        self.tasks: list = []
        #: PartitionPlan of every piece handed out, in nav order
        self.executed: list[PartitionPlan] = []

    # -- the scheduler's side -----------------------------------------------------------------
    def next_task(self):
        """The next task; ``None`` while a cut needs a measured cost that has not come back.

        Raises
        ------
        StopIteration
            When every processed frame has been handed out.
        """
        if self.remaining == 0:
            raise StopIteration
        if self._cost is None:
            if self._probes == 0 and self._sent:
                return None  # wait: the next cut needs a measured cost
            self._probes = max(0, self._probes - 1)
            return self._cut(self.sizing.probe_frames or 1)
        if len(self._sent) >= self.sizing.workers:
            # one task per worker at a time: a task cut now would be sized for the frames
            # left now, and wait in a queue while the others finish (the end would not be
            # even); the next is cut when a worker is free
            return None
        return self._cut(self._chunk())

    def __iter__(self):
        while self.remaining:
            if self._cost is None and self._probes == 0:
                # nobody reports back while we are iterated: cut blind, by guided sizes
                yield self._cut(max(1, math.ceil(self.remaining / (2 * self.sizing.workers))))
                continue
            task = self.next_task()
            if task is not None:
                yield task

    def observe(self, result) -> None:
        """Take the result of a task handed out here (called as it arrives)."""
        sent = self._sent.pop(result.partition_index, None)
        elapsed = float(getattr(result, "elapsed", 0.0) or 0.0)
        if sent is not None:
            self._fixed = min(self._fixed, max(0.0, time.perf_counter() - sent - elapsed))
        self._work += elapsed
        self._frames += int(result.frames)
        if self._frames:
            self._cost = (self._work / self._frames,
                          max(MIN_TASK_COST, self._fixed if self._fixed < math.inf else 0.0))

    def remember(self) -> None:
        """Keep the measured cost for the next run of the same kind (after a complete run)."""
        if self._cost is not None and self._frames:
            _KNOWN[self.sizing.key] = self._cost
            _KNOWN.move_to_end(self.sizing.key)
            while len(_KNOWN) > _KNOWN_MAX:
                _KNOWN.popitem(last=False)

    # -- cutting -----------------------------------------------------------------------------
    def _chunk(self) -> int:
        assert self._cost is not None  # measured or known before any cut by cost
        per_frame, fixed = self._cost
        guided = math.ceil(self.remaining / (2 * self.sizing.workers))
        smallest = (math.ceil(OVERHEAD_RATIO * fixed / per_frame) if per_frame > 0
                    else self.remaining)
        chunk = max(1, guided, smallest)
        if self.remaining * per_frame >= self.sizing.workers * SPLIT_RATIO * fixed:
            # enough work for every worker to pay its task: never fewer tasks than workers
            chunk = min(chunk, math.ceil(self.remaining / self.sizing.workers))
        return chunk

    def _cut(self, want: int):
        part, sel, offset = self._todo[self._part]
        left = sel.size - self._taken
        take = min(want, left)
        if left - take < max(1, math.ceil(take / 4)):
            take = left
        j0, j1 = self._taken, self._taken + take
        start = part.start if j0 == 0 else part.start + int(sel[j0])
        stop = part.stop if j1 == sel.size else part.start + int(sel[j1])
        index = len(self.executed)
        piece = sub_partition(part, start, stop, index)
        self.executed.append(PartitionPlan(index=index, start=start, stop=stop,
                                           frames=stop - start, processed=take,
                                           offset=offset + j0))
        self._taken = j1
        if j1 == sel.size:
            self._part += 1
            self._taken = 0
        self.remaining -= take
        task = self._make_task(piece, take, offset + j0)
        self._sent[index] = time.perf_counter()
        self.tasks.append(task)
        return task
