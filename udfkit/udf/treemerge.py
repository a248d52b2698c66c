"""Merging partition results on the workers: groups of consecutive partitions, one task each.

Where a run has many partitions, two fixed costs grow with their number on the main
process, whatever the number of workers: the executor's cost per task (on dask, a few
milliseconds of scheduler and client time) and receiving and merging every partition's sig
and single buffers (see ``docs/scaling.rst``). An executor that says so
(``tasks_per_group``, see :func:`group_tasks`) gets the run's tasks in **groups**: a
:class:`GroupTask` runs ``k`` consecutive partitions one after the other on one worker and
folds their results there with the UDFs' own ``merge(dest, src)``; the main process
receives and merges one result per group. This is a two-level merge tree: partitions are
merged on the workers, groups on the main process.

Merge semantics
---------------
A group's result is what the main process would hold after merging its partitions, less
its own starting buffers: the first partition's sig and single buffers (as its worker
computed them, ``preprocess`` included) are the destination, and every later partition is
merged into them by ``merge(dest, src)`` with ``dest``'s nav buffers the rows of that
partition in the group's nav block (zeros before the merge, as on the main process). The
first partition's nav rows are copied into the block, which is what the default merge (and
any merge that places nav rows) does. In a worker's merge, ``meta.get_valid_nav_mask()``
marks the group's rows merged before the partition being merged (the main process's
merge marks all rows merged so far). The main process then merges the group like a
partition of ``k`` partitions' rows.

Floating point: the group sums its partitions before the main process adds them, so a
non-associative merge (a float sum) may differ in the last bits from merging the
partitions one by one. Runs that ask for ``deterministic=True`` therefore get
**bundles** instead (``fold=False``): the group's partitions still run as one task, but
their results come back unmerged, as a :class:`Bundle`, and the main process merges them
one by one in partition order, bit-identical to the inline executor; a bundle's results
are bounded in bytes (:data:`GROUP_RESULT_BYTES`) as they are alive together. Runs with a
result store and runs cut by measured cost (:mod:`udfkit.udf.worksize`, which hands out
tasks one at a time) are neither grouped nor bundled.
"""

from __future__ import annotations

import time

import numpy as np

from ..common import Shape
from ..common.allocation import discard_results
from ..common.shared import unwrap
from .buffers import BufferNamespace
from .meta import UDFMeta
from .runner import PartitionResult

__all__ = ["GroupTask", "Bundle", "group_tasks", "members", "GROUP_NAV_BYTES",
           "GROUP_RESULT_BYTES"]

#: a group's nav block (the rows of all its partitions, every UDF) is kept below this, so
#: that a worker's memory does not grow with the group size
GROUP_NAV_BYTES = 64 << 20

#: a bundle's results (all its partitions' buffers, alive together) are kept below this
GROUP_RESULT_BYTES = 64 << 20


class Bundle(list):
    """The unmerged results of a bundle's partitions, in partition order."""

    @property
    def frames(self) -> int:
        return sum(r.frames for r in self)

    @property
    def elapsed(self) -> float:
        return sum(r.elapsed for r in self)

    def __reduce__(self):
        return (Bundle, (list(self),))


def members(result) -> list:
    """The partition results in ``result``: itself, or a :class:`Bundle`'s."""
    return list(result) if isinstance(result, Bundle) else [result]


class GroupTask:
    """Consecutive partition tasks, run one after the other on one worker; their results
    folded into one with the UDFs' ``merge`` (see the module docstring).

    Parameters
    ----------
    tasks : list of PartitionTask
        Consecutive partitions of one run (their processed rows follow each other).
    key : hashable
        The group's ``partition_index`` in its result (the run knows its rows by it).
    fold : bool
        Merge the results on the worker (a group); without, return them as a
        :class:`Bundle` (for deterministic runs).
    """

    def __init__(self, tasks, key, fold: bool = True):
        self.tasks = list(tasks)
        self.key = key
        self.fold = fold

    @property
    def partition(self):
        """The first partition (for error messages that name where a task was)."""
        return self.tasks[0].partition

    @property
    def frames(self) -> int:
        """Frames the group will process (for progress reporting)."""
        return sum(t.frames for t in self.tasks)

    def __call__(self, progress=None) -> PartitionResult | Bundle:
        if not self.fold:
            return Bundle(task(progress) for task in self.tasks)
        started = time.perf_counter()
        first = self.tasks[0](progress)
        if len(self.tasks) == 1:
            return PartitionResult(self.key, first.buffers, first.frames, first.elapsed)
        counts = [t.frames for t in self.tasks]
        udfs = _merging_udfs(self.tasks[0], sum(counts))
        # destination: the first partition's sig and single buffers; nav buffers in one
        # block of the group's rows
        dest = []
        for (udf, specs), src in zip(udfs, first.buffers):
            arrays = {}
            for name, arr in src.items():
                if specs[name].kind == "nav":
                    block = np.zeros((sum(counts),) + arr.shape[1:], dtype=arr.dtype)
                    block[:counts[0]] = arr
                    arrays[name] = block
                else:
                    arrays[name] = arr
            dest.append(arrays)
        # the first partition's nav buffers were copied into the block
        discard_results(arr for (_, specs), src in zip(udfs, first.buffers)
                        for name, arr in src.items() if specs[name].kind == "nav")
        first = None
        frames = counts[0]
        offset = counts[0]
        # what merge sees as merged so far (meta.get_valid_nav_mask): the group's rows
        # before the partition being merged, in the run's processed rows
        task0 = self.tasks[0]
        roi = task0.run_roi
        total = (int(np.count_nonzero(roi)) if roi is not None
                 else int(np.prod(task0.dataset_shape.nav.to_tuple())))
        start = task0.processed_offset
        valid = np.zeros(max(total, start + sum(counts)), dtype=bool)
        for task, n in zip(self.tasks[1:], counts[1:]):
            result = task(progress)
            valid[start:start + offset] = True
            for (udf, specs), arrays, src in zip(udfs, dest, result.buffers):
                view = {name: (arrays[name][offset:offset + n] if specs[name].kind == "nav"
                               else arrays[name]) for name in src}
                udf.meta.set_valid_nav_mask(valid.copy())
                try:
                    udf.merge(BufferNamespace(view, specs), BufferNamespace(src, specs))
                finally:
                    udf.meta.set_valid_nav_mask(None)
            discard_results(arr for src in result.buffers for arr in src.values())
            result = None
            offset += n
            frames += n
        return PartitionResult(self.key, dest, frames, time.perf_counter() - started)

    def __repr__(self):
        return (f"GroupTask({len(self.tasks)} partitions from "
                f"{self.tasks[0].partition!r}, key={self.key!r})")


def _merging_udfs(task, n: int) -> list:
    """``(udf, specs)`` per UDF of ``task``: instances for calling ``merge`` on the worker,
    with the parameters and meta they have in a partition (the partition shape is the
    group's)."""
    sig_shape = task.dataset_shape.sig.to_tuple()
    out = []
    for (cls, kwargs), dtype, backend in zip(task.udfs, task.input_dtypes, task.backends):
        udf = cls(**{k: unwrap(v) for k, v in kwargs.items()})
        udf.meta = UDFMeta(dataset_shape=task.dataset_shape, dataset_dtype=task.dataset_dtype,
                           input_dtype=dtype, roi=task.run_roi, tiling_scheme=task.scheme,
                           partition_shape=Shape((n,) + sig_shape, sig_dims=len(sig_shape)),
                           array_backend=backend, corrections=task.corrections)
        out.append((udf, udf.get_result_buffers()))
    return out


def group_tasks(run, tasks: list, executor, fold: bool = True) -> list:
    """``tasks`` in groups (``fold``) or bundles of consecutive partitions, as many per
    group as ``executor`` asks for, or ``tasks`` unchanged.

    The executor asks through ``executor.tasks_per_group(n_tasks)`` (1, or no such
    method: no groups). The group size is cut so that a group's nav block stays under
    :data:`GROUP_NAV_BYTES` (a bundle's results under :data:`GROUP_RESULT_BYTES`). Each
    group's rows are registered with ``run`` (its ``_rows``, keyed by the group's key) for
    the main-process merge.
    """
    ask = getattr(executor, "tasks_per_group", None)
    if ask is None or len(tasks) < 2:
        return tasks
    k = int(ask(len(tasks)))
    if k < 2:
        return tasks
    nav_per_frame = sum(int(np.prod(s.extra_shape, dtype=np.int64)) * np.dtype(s.dtype).itemsize
                        for specs in run.specs for s in specs.values()
                        if s.kind == "nav" and s.use != "result_only")
    frames = max(1, run.total_frames)
    per_task = nav_per_frame * frames / len(tasks)
    if not fold:
        sig = int(np.prod(run.sig_shape, dtype=np.int64))
        per_task += sum((sig if s.kind == "sig" else 1)
                        * int(np.prod(s.extra_shape, dtype=np.int64)) * np.dtype(s.dtype).itemsize
                        for specs in run.specs for s in specs.values()
                        if s.kind != "nav" and s.use != "result_only")
    limit = GROUP_NAV_BYTES if fold else GROUP_RESULT_BYTES
    if per_task:
        k = min(k, max(1, int(limit // max(1.0, per_task))))
    if k < 2:
        return tasks
    groups = []
    for start in range(0, len(tasks), k):
        part = tasks[start:start + k]
        key = ("group", part[0].partition.index)
        if fold:
            first_off, _ = run._rows[part[0].partition.index]
            run._rows[key] = (first_off, sum(run._rows[t.partition.index][1] for t in part))
        groups.append(GroupTask(part, key, fold))
    return groups
