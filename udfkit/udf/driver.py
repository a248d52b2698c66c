"""Planning and merging a run on the main process.

Protocol of a run
-----------------
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
3. **Prepare** the full-size buffers on the main process and run ``preprocess`` on them.
4. **Execute**: the executor runs the tasks (in any order) and hands back partition results.
5. **Merge** each partition result as it arrives: nav buffers are merged into the rows that
   belong to the partition's processed frames, sig and single buffers as a whole, through the
   UDF's ``merge(dest, src)``.
6. **Finish**: ``get_results`` on the merged buffers, checked against the declarations, wrapped
   in :class:`~udfkit.udf.results.BufferResult` objects. Partial results (``run_udf_iter``)
   go through the same step after every merge, with ``valid_mask`` showing what is merged.

The executor is only asked to run picklable callables; it knows nothing of buffers, so new
executors slot in without changes here.
"""

from __future__ import annotations

import numpy as np

from ..common import normalize_roi
from ..errors import ExecutorError, ROIError
from ..io.corrections import CorrectionSet
from ..io.tiling import Negotiator, TilingRequest
from .buffers import AuxData, BufferNamespace, Namespace, buffer_shape
from .meta import UDFMeta
from .results import BufferResult, RunResults
from .runner import PartitionTask
from .validation import (
    check_backends,
    check_buffers,
    check_results,
    check_udf,
    preferred_dtype,
    tiling_request,
)

__all__ = ["UDFRun"]


class UDFRun:
    """One pass of several UDFs over a data set (see the module docstring).

    Parameters
    ----------
    dataset : DataSet
        An initialized data set.
    udfs : list of UDF
    roi : array_like of bool, optional
    negotiator : Negotiator, optional
    corrections : CorrectionSet, optional
        Applied to every frame before the UDFs see it (see :mod:`udfkit.io.corrections`).
    backends : str or sequence of str, optional
        LiberTEM's ``run_udf(backends=...)``: the array backends the run may use; every UDF
        must support one of them that udfkit offers (numpy).
    """

    def __init__(self, dataset, udfs, roi=None, negotiator=None, corrections=None, backends=None):
        self.dataset = dataset
        self.udfs = list(udfs)
        self.methods = [check_udf(u) for u in self.udfs]
        self.array_backends = [check_backends(u, backends) for u in self.udfs]
        shape = dataset.shape
        self.nav_shape = shape.nav.to_tuple()
        self.sig_shape = shape.sig.to_tuple()
        nav_size = shape.nav.size
        user_roi = normalize_roi(roi, self.nav_shape, error=ROIError,
                                 where=f"{dataset.description} (nav shape {self.nav_shape})")
        valid = dataset.get_valid_mask()
        if user_roi is None:
            self.roi = valid
        elif valid is None:
            self.roi = user_roi
        else:
            self.roi = user_roi & valid
        self.corrections = self._plan_corrections(corrections)
        # the meta comes first: a UDF may look at the data set to choose its input dtype
        native = dataset.native_dtype
        for u, backend in zip(self.udfs, self.array_backends):
            u.meta = UDFMeta(dataset_shape=shape, dataset_dtype=dataset.dtype,
                             input_dtype=native, roi=self.roi, array_backend=backend,
                             corrections=corrections)
        # each UDF gets its own preference promoted with the stored dtype: a UDF that reads
        # the stored dtype keeps its fast path next to one that wants float32
        # corrected frames are float: at least float32, wider by promotion
        floor = () if self.corrections is None else (np.float32,)
        self.input_dtypes = [np.result_type(preferred_dtype(u), native, *floor) for u in self.udfs]
        md = dataset.meta.metadata
        paths = tuple(md.get("paths") or [p for p in [md.get("path")] if p is not None])
        for u, dtype in zip(self.udfs, self.input_dtypes):
            u.meta.input_dtype = dtype
            u.meta.dataset_paths = paths
        self.input_dtype = np.result_type(*self.input_dtypes)
        self.specs = [check_buffers(u) for u in self.udfs]

        self.partitions = dataset.get_partitions()
        self.counts = []
        self.offsets = []
        offset = 0
        for p in self.partitions:
            n = int(p.selected_positions(self._part_roi(p)).size)
            self.offsets.append(offset)
            self.counts.append(n)
            offset += n
        self.total_frames = offset
        self.positions = None if self.roi is None else np.flatnonzero(self.roi)
        if self.positions is not None and self.positions.size == nav_size:
            self.positions = None

        negotiator = negotiator or Negotiator()
        stored = dataset.dtype
        requests = [tiling_request(u, m) for u, m in zip(self.udfs, self.methods)]
        if self.corrections is not None and self.corrections.needs_whole_frames:
            # a neighbourhood of an excluded pixel must not cross a tile border
            requests.append(TilingRequest(method="tile", whole_frames=True))
        self.scheme = negotiator.get_scheme(
            requests,
            sig_shape=self.sig_shape, dtype=self.input_dtype,
            max_partition_frames=max(p.num_frames for p in self.partitions),
            constraints=dataset.get_tiling_constraints(),
            # with a ROI most tiles have gaps and are copied: size them for the cache
            zero_copy=(dataset.supports_zero_copy and stored.isnative and self.roi is None
                       and self.corrections is None
                       and all(dtype == stored for dtype in self.input_dtypes)))
        for u in self.udfs:
            u.meta.tiling_scheme = self.scheme

    def _plan_corrections(self, corrections):
        if corrections is None:
            return None
        if not isinstance(corrections, CorrectionSet):
            raise TypeError(f"corrections: expected a CorrectionSet or None, got "
                            f"{type(corrections).__name__}")
        if corrections.is_empty:
            return None
        return corrections.plan(self.sig_shape, where=self.dataset.description)

    def _part_roi(self, p):
        return None if self.roi is None else self.roi[p.start:p.stop]

    def tasks(self) -> list:
        """One :class:`PartitionTask` per partition that has frames to process."""
        tasks = []
        for p, n, offset in zip(self.partitions, self.counts, self.offsets):
            if n == 0:
                continue
            part_roi = self._part_roi(p)
            sel = None
            udfs = []
            for u in self.udfs:
                kwargs = u._kwargs
                if any(isinstance(v, AuxData) for v in kwargs.values()):
                    if sel is None:
                        sel = p.selected_positions(part_roi) + p.start
                    kwargs = {k: self._cut_aux(v, sel, u) if isinstance(v, AuxData) else v
                              for k, v in kwargs.items()}
                udfs.append((type(u), kwargs))
            tasks.append(PartitionTask(
                partition=p, udfs=udfs, methods=self.methods, scheme=self.scheme,
                input_dtypes=self.input_dtypes, roi=part_roi, run_roi=self.roi,
                dataset_shape=self.dataset.shape, dataset_dtype=self.dataset.dtype,
                corrections=self.corrections, processed_offset=offset,
                backends=self.array_backends))
        return tasks

    def _cut_aux(self, aux: AuxData, sel, udf) -> AuxData:
        flat = aux.flat(self.nav_shape, f"{type(udf).__name__}")
        return AuxData(flat[sel], kind=aux.kind, extra_shape=aux.extra_shape, dtype=aux.dtype)

    # -- main-side buffers ------------------------------------------------------------------
    def _allocate(self):
        self.buffers = []
        for u, specs in zip(self.udfs, self.specs):
            arrays = {name: np.zeros(buffer_shape(spec, self.total_frames, self.sig_shape),
                                     dtype=spec.dtype)
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
        i = self.partitions_by_index[result.partition_index]
        off, n = self.offsets[i], self.counts[i]
        for u, specs, arrays, src in zip(self.udfs, self.specs, self.buffers, result.buffers):
            dest = BufferNamespace({name: (arrays[name][off:off + n] if specs[name].kind == "nav"
                                           else arrays[name])
                                    for name in src}, specs)
            # what is merged so far, without this partition (LiberTEM's get_valid_nav_mask)
            u.meta.set_valid_nav_mask(self.merged_rows.copy())
            try:
                u.merge(dest, BufferNamespace(src, specs))
            finally:
                u.meta.set_valid_nav_mask(None)
        self.merged_rows[off:off + n] = True
        self.frames_done += n

    def _results(self, complete: bool) -> RunResults:
        out = []
        rows_valid = None if complete else self.merged_rows.copy()
        for u, specs, arrays in zip(self.udfs, self.specs, self.buffers):
            # private buffers are merged and offered to get_results, never returned
            u.results = BufferNamespace(arrays, specs)
            u.meta.set_valid_nav_mask(self.merged_rows.copy())
            try:
                raw = check_results(u, specs, u.get_results(), self.total_frames, self.nav_shape,
                                    self.sig_shape, self.roi)
            finally:
                u.meta.set_valid_nav_mask(None)
            if not complete:
                # a partial result must not change when later partitions are merged
                raw = {name: (np.array(arr, copy=True), mask) for name, (arr, mask) in raw.items()}
            out.append({name: BufferResult(arr, kind=specs[name].kind, nav_shape=self.nav_shape,
                                           extra_shape=specs[name].extra_shape,
                                           positions=self.positions, rows_valid=rows_valid,
                                           mask=mask)
                        for name, (arr, mask) in raw.items()})
        damage = np.zeros(int(np.prod(self.nav_shape)), dtype=bool)
        rows = self.merged_rows if not complete else np.ones(self.total_frames, dtype=bool)
        damage[rows.nonzero()[0] if self.positions is None else self.positions[rows]] = True
        return RunResults(out, damage.reshape(self.nav_shape), self.frames_done,
                          self.total_frames, complete)

    def _where(self, tasks, error) -> str:
        """Which partitions a failed run was working on, for the error message."""
        index = getattr(error, "task_index", None)
        if index is not None and 0 <= index < len(tasks):
            part = tasks[index].partition
            return (f"the task was partition {part.index} of {self.dataset.description}: "
                    f"frames [{part.start}, {part.stop}) of the flattened nav axis")
        return f"while running partitions of {self.dataset.description}"

    def execute(self, executor, *, iterate: bool = False, progress=None,
                deterministic: bool = False):
        """Run on ``executor``; a generator of :class:`RunResults`.

        With ``iterate`` a partial result is yielded after every merge, then the final one;
        without, only the final one. Closing the generator early cancels the remaining tasks.
        With ``deterministic``, results are merged in partition order (early ones wait for
        their predecessors), so floating-point results do not depend on which worker finished
        first: they are bit-identical to the inline executor's.
        """
        tasks = self.tasks()
        self.partitions_by_index = {p.index: i for i, p in enumerate(self.partitions)}
        self._allocate()
        reported = {}
        on_report = None
        if progress is not None:
            progress.start(self.total_frames)

            def on_report(index, frames):
                # frames done inside a running partition (called in this thread)
                reported[index] = reported.get(index, 0) + frames
                progress.advance(frames)

        stream = executor.run_tasks(tasks, progress=on_report)
        waiting = {}
        next_index = 0
        try:
            for index, result in stream:
                if progress is not None:
                    progress.advance(result.frames - reported.pop(index, 0))
                if deterministic:
                    waiting[index] = result
                    ready = []
                    while next_index in waiting:
                        ready.append(waiting.pop(next_index))
                        next_index += 1
                else:
                    ready = [result]
                for r in ready:
                    self._merge(r)
                    if iterate and self.frames_done < self.total_frames:
                        yield self._results(complete=False)
        except ExecutorError as e:
            e.add_note(self._where(tasks, e))
            raise
        finally:
            close = getattr(stream, "close", None)
            if close is not None:
                close()
            if progress is not None:
                progress.close()
        yield self._results(complete=True)
