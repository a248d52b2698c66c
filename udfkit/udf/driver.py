"""Executing a planned run on the main process: tasks, buffers, merge, results.

Protocol of a run
-----------------
Steps 1 and 2 are :func:`~udfkit.udf.plan.plan_run`, whose :class:`~udfkit.udf.plan.RunPlan`
can be looked at before the run (``Context.plan``); :class:`UDFRun` executes a plan.

1. **Check** every UDF (process method, picklable parameters, input dtype preference) before
   anything is read; normalise the ROI.
2. **Plan**: each UDF's input dtype is numpy's promotion of its preference with the stored
   dtype, and with ``float32`` when corrections are given (UDFs with different input dtypes
   share the reads, each gets its own tiles); the effective ROI is the user's ROI combined
   with the positions that have a frame; corrections are checked against the signal shape
   and their neighbour table is built; the negotiator picks one tiling scheme for all UDFs
   (whole frames when pixels are excluded, sized for the cache whenever tiles are copies);
   each partition with at least one processed frame becomes a
   :class:`~udfkit.udf.runner.PartitionTask`, which carries the corrections.
3. **Prepare**: the result buffers the run will hold at once are checked against the memory
   available (:mod:`udfkit.udf.memory`; a :class:`~udfkit.errors.UDFError` before anything
   is allocated), then the full-size buffers are made on the main process and
   ``preprocess`` runs on them.
4. **Execute**: the executor runs the tasks (in any order) and hands back partition results.
5. **Merge** each partition result as it arrives: nav buffers are merged into the rows that
   belong to the partition's processed frames, sig and single buffers as a whole, through the
   UDF's ``merge(dest, src)``, straight from the result's arrays (a worker process's result
   is a mapping of the shared memory it was computed in); then the result's buffers are
   dropped, so no more than the task buffers and the merged ones are alive at once.
6. **Finish**: ``get_results`` on the merged buffers, checked against the declarations, wrapped
   in :class:`~udfkit.udf.results.BufferResult` objects. Partial results (``run_udf_iter``)
   go through the same step after every merge, with ``valid_mask`` showing what is merged.

The executor is only asked to run picklable callables; it knows nothing of buffers, so new
executors slot in without changes here.
"""

from __future__ import annotations

import numpy as np

from ..common.shared import share
from ..errors import ExecutorError
from ._order import MergeOrder
from .base import _overrides
from .buffers import AuxData, BufferNamespace, Namespace, buffer_shape
from .memory import check_memory as check_run_memory
from .plan import RunPlan, placement_of, plan_run
from .results import BufferResult, RunResults
from .runner import GATE_MIN_BYTES, PartitionTask, ResultGate
from .store.results import DiskBufferResult
from .treemerge import group_tasks, members
from .validation import check_results
from .worksize import AdaptiveTasks

__all__ = ["UDFRun"]


class UDFRun:
    """One pass of several UDFs over a data set: executes a :class:`~udfkit.udf.plan.RunPlan`
    (see the module docstring).

    Parameters
    ----------
    plan : RunPlan or DataSet
        The plan to execute (from :func:`~udfkit.udf.plan.plan_run`). A data set instead
        plans the run here from the other arguments (the older spelling
        ``UDFRun(dataset, udfs, roi=...)``).
    udfs : list of UDF, optional
        Only with a data set.
    roi : array_like of bool, optional
    negotiator : Negotiator, optional
    corrections : CorrectionSet, optional
        Applied to every frame before the UDFs see it (see :mod:`udfkit.io.corrections`).
    backends : str or sequence of str, optional
        LiberTEM's ``run_udf(backends=...)``: the array backends the run may use; every UDF
        must support one of them that udfkit offers (numpy).
    """

    def __init__(self, plan, udfs=None, roi=None, negotiator=None, corrections=None,
                 backends=None):
        if not isinstance(plan, RunPlan):
            if udfs is None:
                raise TypeError("UDFRun: expected a RunPlan, or a data set and a list of UDFs")
            plan = plan_run(plan, udfs, roi=roi, corrections=corrections, backends=backends,
                            negotiator=negotiator)
        elif udfs is not None or roi is not None or corrections is not None \
                or backends is not None or negotiator is not None:
            raise TypeError("UDFRun: a RunPlan already holds the UDFs, ROI and corrections; "
                            "pass only the plan")
        self.plan = plan
        inputs = plan.inputs
        self.dataset = inputs.dataset
        self.udfs = list(inputs.udfs)
        self.methods = [u.method for u in plan.udfs]
        self.array_backends = [u.array_backend for u in plan.udfs]
        self.input_dtypes = [u.input_dtype for u in plan.udfs]
        self.input_dtype = np.result_type(*self.input_dtypes)
        self.specs = list(inputs.specs)
        self.nav_shape = plan.nav_shape
        self.sig_shape = plan.sig_shape
        self.roi = inputs.roi
        self.corrections = inputs.corrections
        self.partitions = list(inputs.partitions)
        self.counts = [p.processed for p in plan.partitions]
        self.offsets = [p.offset for p in plan.partitions]
        self.total_frames = plan.processed_frames
        self.positions = inputs.positions
        self.scheme = plan.scheme
        #: a :class:`~udfkit.udf.store.StoreSession` when nav results go to disk (``out=``)
        self.store = None
        self._shared = None
        # rows of the run's processed frames per partition index, for the merge (pieces cut
        # while the run goes add theirs)
        self._rows = {p.index: (off, n)
                      for p, off, n in zip(self.partitions, self.offsets, self.counts)}
        self.partitions_by_index = {p.index: i for i, p in enumerate(self.partitions)}

    def _part_roi(self, p):
        return None if self.roi is None else self.roi[p.start:p.stop]

    def tasks(self) -> list:
        """One :class:`PartitionTask` per partition that has frames to process."""
        return [self._task(p, offset) for p, n, offset in
                zip(self.partitions, self.counts, self.offsets) if n]

    def _shared_params(self) -> tuple:
        """The parameters every task has in common, wrapped once per run: executors that send
        tasks elsewhere ship each large one once per worker (:mod:`udfkit.common.shared`)."""
        if self._shared is None:
            self._shared = ([{k: v if isinstance(v, AuxData) else share(v)
                              for k, v in u._kwargs.items()} for u in self.udfs],
                            share(self.roi), share(self.corrections))
        return self._shared

    def _task(self, p, offset) -> PartitionTask:
        shared_kwargs, run_roi, corrections = self._shared_params()
        part_roi = self._part_roi(p)
        sel = None
        udfs = []
        for u, kwargs in zip(self.udfs, shared_kwargs):
            if any(isinstance(v, AuxData) for v in kwargs.values()):
                if sel is None:
                    sel = p.selected_positions(part_roi) + p.start
                kwargs = {k: self._cut_aux(v, sel, u) if isinstance(v, AuxData) else v
                          for k, v in kwargs.items()}
            udfs.append((type(u), kwargs))
        return PartitionTask(
            partition=p, udfs=udfs, methods=self.methods, scheme=self.scheme,
            input_dtypes=self.input_dtypes, roi=part_roi, run_roi=run_roi,
            dataset_shape=self.dataset.shape, dataset_dtype=self.dataset.dtype,
            corrections=corrections, processed_offset=offset,
            backends=self.array_backends)

    def _adaptive_tasks(self, gate):
        """The task source that cuts the plan's partitions by measured cost
        (:mod:`udfkit.udf.worksize`); registers every piece for the merge as it is cut."""
        def make(piece, n, offset):
            self._rows[piece.index] = (offset, n)
            task = self._task(piece, offset)
            task.gate = gate
            return task

        return AdaptiveTasks(self.plan.sizing, self.partitions, self.plan.partitions,
                             [self._part_roi(p) for p in self.partitions], make)

    def _cut_aux(self, aux: AuxData, sel, udf) -> AuxData:
        flat = aux.flat(self.nav_shape, f"{type(udf).__name__}")
        return AuxData(flat[sel], kind=aux.kind, extra_shape=aux.extra_shape, dtype=aux.dtype)

    # -- main-side buffers ------------------------------------------------------------------
    def _allocate(self):
        self.buffers = []
        for u, specs in zip(self.udfs, self.specs):
            # with a store, nav buffers live on disk: the main process never holds them whole
            # (preprocess sees them empty; merge sees one partition's block)
            arrays = {name: np.zeros(buffer_shape(spec, 0 if self.store is not None
                                                  and spec.kind == "nav" else self.total_frames,
                                                  self.sig_shape), dtype=spec.dtype)
                      for name, spec in specs.items() if spec.use != "result_only"}
            self.buffers.append(arrays)
            u.results = BufferNamespace(arrays, specs)
            aux = {k: v.flat(self.nav_shape, type(u).__name__)
                   for k, v in u._kwargs.items() if isinstance(v, AuxData)}
            u.params = Namespace(dict(u._kwargs, **{
                k: (v if self.positions is None else v[self.positions]) for k, v in aux.items()}))
            u.preprocess()
        self.merged_rows = np.zeros(self.total_frames, dtype=bool)
        self.frames_done = 0

    def _merge(self, result):
        off, n = self._rows[result.partition_index]
        store = self.store
        i = None
        if store is not None:
            store.merging = True
            # a run with a store keeps the plan's partitions (it is deterministic)
            i = self.partitions_by_index[result.partition_index]
        for ui, (u, specs, arrays, src) in enumerate(zip(self.udfs, self.specs, self.buffers,
                                                          result.buffers)):
            if store is not None and not _overrides(type(u), "merge"):
                # the default merge copies: nav rows go from the result straight to disk
                for name in src:
                    if specs[name].kind == "nav":
                        store.write_nav(self, i, ui, name, src[name])
                    else:
                        arrays[name][...] = src[name]
                continue
            blocks = {} if store is None else {
                name: np.zeros((n,) + specs[name].extra_shape, dtype=specs[name].dtype)
                for name in src if specs[name].kind == "nav"}
            dest = BufferNamespace({name: (blocks[name] if name in blocks
                                           else arrays[name][off:off + n]
                                           if specs[name].kind == "nav" else arrays[name])
                                    for name in src}, specs)
            # what is merged so far, without this partition (LiberTEM's get_valid_nav_mask)
            u.meta.set_valid_nav_mask(self.merged_rows.copy())
            try:
                u.merge(dest, BufferNamespace(src, specs))
            finally:
                u.meta.set_valid_nav_mask(None)
            for name, block in blocks.items():
                store.write_nav(self, i, ui, name, block)
        self.merged_rows[off:off + n] = True
        self.frames_done += n

    def _results(self, complete: bool) -> RunResults:
        out: list[dict] = []
        rows_valid = None if complete else self.merged_rows.copy()
        store = self.store
        kept = []
        on_disk: list[tuple[int, str]] = []  # (UDF, nav buffer) whose result is in the store
        for ui, (u, specs, arrays) in enumerate(zip(self.udfs, self.specs, self.buffers)):
            # private buffers are merged and offered to get_results, never returned
            u.results = BufferNamespace(arrays, specs)
            u.meta.set_valid_nav_mask(self.merged_rows.copy())
            if store is not None:
                # nav results are in the store; get_results (not overridden: the store
                # refuses such UDFs) passes the others through
                on_disk += [(ui, n) for n, s in specs.items() if s.kind == "nav" and s.use is None]
                specs = {n: s for n, s in specs.items() if s.kind != "nav"}
                u.results = BufferNamespace({n: a for n, a in arrays.items() if n in specs}, specs)
            try:
                raw = check_results(u, specs, u.get_results(), self.total_frames, self.nav_shape,
                                    self.sig_shape, self.roi)
            finally:
                u.meta.set_valid_nav_mask(None)
            if not complete:
                # a partial result must not change when later partitions are merged
                raw = {name: (np.array(arr, copy=True), mask) for name, (arr, mask) in raw.items()}
            kept.append(raw)
            res = {name: BufferResult(arr, kind=specs[name].kind, nav_shape=self.nav_shape,
                                      extra_shape=specs[name].extra_shape,
                                      positions=self.positions, rows_valid=rows_valid,
                                      mask=mask)
                   for name, (arr, mask) in raw.items()}
            out.append(res)
        if store is not None:
            if complete:
                store.finish(self, kept)
            for ui, name in on_disk:
                out[ui][name] = DiskBufferResult(
                    store.reader(ui, name), nav_shape=self.nav_shape,
                    extra_shape=self.specs[ui][name].extra_shape, positions=self.positions,
                    rows_valid=rows_valid)
        damage = np.zeros(int(np.prod(self.nav_shape)), dtype=bool)
        rows = self.merged_rows if not complete else np.ones(self.total_frames, dtype=bool)
        damage[rows.nonzero()[0] if self.positions is None else self.positions[rows]] = True
        return RunResults(out, damage.reshape(self.nav_shape), self.frames_done,
                          self.total_frames, complete, partitions=tuple(self.executed))

    def _where(self, tasks, error) -> str:
        """Which partitions a failed run was working on, for the error message."""
        index = getattr(error, "task_index", None)
        if index is not None and 0 <= index < len(tasks):
            grouped = getattr(tasks[index], "tasks", None)
            if grouped:  # a group of partitions merged on the worker (udf.treemerge)
                first, last = grouped[0].partition, grouped[-1].partition
                return (f"the task was partitions {first.index} to {last.index} of "
                        f"{self.dataset.description}: frames [{first.start}, {last.stop}) of "
                        "the flattened nav axis")
            part = tasks[index].partition
            return (f"the task was partition {part.index} of {self.dataset.description}: "
                    f"frames [{part.start}, {part.stop}) of the flattened nav axis")
        return f"while running partitions of {self.dataset.description}"

    def execute(self, executor, *, iterate: bool = False, progress=None,
                deterministic: bool = False, check_memory: bool = True, store=None):
        """Run on ``executor``; a generator of :class:`RunResults`.

        With ``iterate`` a partial result is yielded after every merge, then the final one;
        without, only the final one. Closing the generator early cancels the remaining tasks.
        With ``deterministic``, results are merged in partition order (early ones wait for
        their predecessors), so floating-point results do not depend on which worker finished
        first: they are bit-identical to the inline executor's.

        Before anything is allocated, the result buffers are checked against the memory
        available (:func:`~udfkit.udf.memory.check_memory`: a
        :class:`~udfkit.errors.UDFError` when they cannot fit); ``check_memory=False`` or
        ``UDFKIT_MEMORY_CHECK=0`` skips that.

        ``store`` (a :class:`~udfkit.udf.store.StoreSession`) puts the nav results on disk
        and keeps a journal (see :mod:`udfkit.udf.store.target`); merges are then in
        partition order, and partitions its journal names as merged are not run again.
        """
        placement = placement_of(executor)
        if store is not None:
            self.store = store
            # merges in partition order, of the plan's partitions (the journal counts them)
            deterministic = True
        if check_memory:
            check_run_memory(self.plan, placement=placement, nav_on_disk=store is not None)
        gate = None
        task_buffers = sum(b.partition_nbytes for u in self.plan.udfs for b in u.buffers)
        if (placement.in_main_process and placement.kind != "inline" and not deterministic
                and task_buffers >= GATE_MIN_BYTES):
            # threads: a thread does not start its next task (and allocate) while its last
            # result waits to be merged; results merge in any order, so this cannot stall
            gate = ResultGate(placement.tasks_per_process)
        source = None
        merged: set = set()
        if self.plan.sizing is not None and not deterministic:
            # cut by measured cost; deterministic runs keep the plan's partitions, so their
            # floating-point results do not depend on timing
            source = self._adaptive_tasks(gate)
            tasks = source.tasks
            self.executed = source.executed
        else:
            tasks = self.tasks()
            if store is not None:
                merged = store.begin(self)
                tasks = [t for t in tasks if t.index not in merged]
                store.attach(self, tasks)
            for t in tasks:
                t.gate = gate
            self.executed = [p for p in self.plan.partitions if p.processed]
            if gate is None and store is None:
                # many partitions on an executor with a high cost per task: consecutive
                # partitions run as one task and merge on the worker, or, deterministic,
                # come back together and merge here in order (udf.treemerge)
                tasks = group_tasks(self, tasks, executor, fold=not deterministic)
        try:
            self._allocate()
            if store is not None:
                store.restore(self, merged)
            yield from self._execute(executor, tasks, source, gate, iterate, progress,
                                     deterministic)
        except BaseException:
            if store is not None:
                store.abort(self)
            raise

    def _execute(self, executor, tasks, source, gate, iterate, progress, deterministic):
        store = self.store
        merges = 0
        reported: dict[int, int] = {}
        on_report = None
        if progress is not None:
            progress.start(self.total_frames)
            if self.frames_done:
                progress.advance(self.frames_done)

            def on_report(index, frames):
                # frames done inside a running partition (called in this thread)
                reported[index] = reported.get(index, 0) + frames
                progress.advance(frames)

        stream = executor.run_tasks(tasks if source is None else source, progress=on_report)
        order = MergeOrder(deterministic)
        try:
            for index, result in stream:
                if source is not None:
                    source.observe(result)
                if progress is not None:
                    progress.advance(result.frames - reported.pop(index, 0))
                ready = [r for one in order.ready(index, result) for r in members(one)]
                for r in ready:
                    self._merge(r)
                    merges += 1
                    if store is not None:
                        store.merged(self, r.partition_index, last=merges == len(tasks))
                        if progress is not None and hasattr(progress, "written"):
                            progress.written(store.bytes_written)
                    # a merged partition result is garbage: its buffers go now, even where
                    # the executor still holds the result object (the inline executor's
                    # generator, a thread pool's future, the scheduler's last outcome), so
                    # they are not alive next to the next task's buffers, nor while
                    # get_results makes its own (the plan's memory estimate counts so)
                    r.buffers = None
                    if gate is not None:
                        gate.release()
                    if iterate and self.frames_done < self.total_frames:
                        yield self._results(complete=False)
                result = r = None
                ready = []
        except ExecutorError as e:
            e.add_note(self._where(tasks, e))
            raise
        finally:
            if gate is not None:
                # tasks still running or queued must not wait for merges that won't come
                gate.open()
            close = getattr(stream, "close", None)
            if close is not None:
                close()
            if progress is not None:
                progress.close()
        if source is not None:
            source.remember()
        yield self._results(complete=True)
