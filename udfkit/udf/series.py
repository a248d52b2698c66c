"""Series mode: runs that partition along the signal instead of the navigation axis.

A UDF that defines ``process_series(self, block)`` gets, for one block of signal pixels,
every processed frame: ``block`` has shape ``(n_frames, *sig_block)`` (Thunder's *series*
view of an image stack: one series per pixel along axis 0). ``ctx.run_udf`` and
``ctx.plan`` switch to this mode by themselves when every UDF of the run defines
``process_series``.

Rules
-----
* **Blocks** are whole rows of the first signal axis (:mod:`udfkit.io.series_read`): as many
  rows as fit the block budget (``n_frames × rows × row pixels × bytes per pixel``, input and
  the block's share of the result buffers), but no more than one block per worker would take,
  so that every worker gets work. The budget is :data:`BLOCK_BYTES` (``UDFKIT_SERIES_BLOCK_BYTES``
  overrides it), at most a quarter of the memory available per worker. When not even one
  row fits, the run is refused with a :class:`~udfkit.errors.UDFError` that gives the sizes.
* **Buffers**: ``sig`` buffers only, with any ``extra_shape`` (a per-pixel vector: a fitted
  curve, a histogram, a whole normalised series); inside ``process_series`` ``self.results.<name>``
  is the view of the block, shape ``(*sig_block, *extra)``. ``single`` buffers are allowed
  for a UDF with its own ``merge`` (they are folded like partition results). ``nav`` buffers
  are refused: a block sees only part of each frame, so a per-frame value is not its to write.
* **Meta**: ``self.meta.sig_slice`` is the block (a signal-only :class:`~udfkit.common.Slice`),
  ``self.meta.slice`` spans every processed frame and the block, ``self.meta.frame_index`` /
  ``coordinates`` give the positions of the block's frames (the ROI-selected ones, in flat
  nav order).
* **Merge**: blocks are disjoint, so sig buffers are *placed*: the UDF's ``merge(dest, src)``
  is called with ``dest``'s sig buffers being views of the block in the full buffers (the
  default ``merge`` copies, which is right).
* **Reads**: strided rows of each frame, or a first rechunk pass into a temporary block-major
  store (see :mod:`udfkit.io.series_read`); the plan says which and why.
* Every executor runs the blocks as tasks; ROIs and ``sync_offset`` select the frames as in
  a frame-wise run. Corrections are not applied in series mode (refused with a
  :class:`~udfkit.errors.UDFError`), nor may series and frame-wise UDFs share a run.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from math import prod
from typing import Any

import numpy as np

from ..common import Shape, normalize_roi
from ..common.allocation import discard_results, result_zeros
from ..common.parse import parse_size
from ..common.shared import share, unwrap
from ..errors import ExecutorError, ROIError, UDFError
from ..io.series_read import (RechunkStore, SeriesBlock, plan_blocks, read_block_strided,
                              rechunk_partition, series_read_mode)
from ._order import MergeOrder
from .base import _overrides
from .buffers import BufferNamespace, Namespace
from .meta import UDFMeta
from .results import BufferResult, RunResults
from .runner import PartitionResult
from .validation import check_buffers, check_picklable, check_results, preferred_dtype

__all__ = ["SeriesPlan", "SeriesRun", "SeriesTask", "RechunkTask", "is_series_udf",
           "uses_series", "plan_series", "BLOCK_BYTES", "BLOCK_ENV"]

#: default bytes of one series block (input and result share); large reads, and room for a
#: UDF's scratch copies (``np.median`` copies its input) next to it
BLOCK_BYTES = 64 << 20
#: environment variable that sets the block budget (a size such as ``"16M"``)
BLOCK_ENV = "UDFKIT_SERIES_BLOCK_BYTES"
#: process methods that cannot be combined with ``process_series``
FRAME_METHODS = ("frame", "tile", "partition", "frame_stack")


def is_series_udf(udf) -> bool:
    """True when ``udf`` defines ``process_series``."""
    return _overrides(type(udf), "process_series")


def uses_series(udfs) -> bool:
    """True when the run is a series run; a mix of series and frame-wise UDFs is an error."""
    flags = [is_series_udf(u) for u in udfs]
    if any(flags) and not all(flags):
        series = [type(u).__name__ for u, f in zip(udfs, flags) if f]
        other = [type(u).__name__ for u, f in zip(udfs, flags) if not f]
        raise UDFError(f"series UDFs ({', '.join(series)}) and frame-wise UDFs "
                       f"({', '.join(other)}) cannot share a run: series mode partitions the "
                       "signal, not the frames; run them separately")
    return bool(flags) and all(flags)


def _check_udf(udf) -> None:
    from .base import UDF

    if not isinstance(udf, UDF):
        raise UDFError(f"expected a UDF instance, got {type(udf).__name__}: {udf!r}")
    where = type(udf).__name__
    if not hasattr(udf, "_kwargs") or not hasattr(udf, "params"):
        raise UDFError(f"{where}.__init__ did not call super().__init__(**kwargs); the UDF is "
                       "rebuilt on every worker from the keyword arguments given to UDF.__init__")
    from .buffers import AuxData

    aux = sorted(k for k, v in udf._kwargs.items() if isinstance(v, AuxData))
    if aux:
        raise UDFError(f"{where}: aux_data parameters {aux} are cut per partition of frames, which "
                       "series mode does not have; pass a plain array with one entry per frame "
                       "and index it with self.meta.frame_index")
    both = [f"process_{m}" for m in FRAME_METHODS if _overrides(type(udf), f"process_{m}")]
    if both:
        raise UDFError(f"{where} defines process_series and {', '.join(both)}: a UDF runs either "
                       "in series mode (process_series, one block of pixels with all frames) or "
                       "frame-wise; define one of them")
    check_picklable(udf)


def _check_specs(udf, specs) -> None:
    where = type(udf).__name__
    nav = [name for name, s in specs.items() if s.kind == "nav"]
    if nav:
        raise UDFError(f"{where}: series mode allows sig buffers (one entry per pixel) and single "
                       f"buffers, but {nav} {'is a nav buffer' if len(nav) == 1 else 'are nav buffers'}"
                       "; a series block sees only part of each frame")
    # single buffers without a merge of the UDF's own are refused by check_buffers


def block_budget(num_workers: int = 1) -> int:
    """Bytes one series block may take (see the module docstring)."""
    env = os.environ.get(BLOCK_ENV)
    budget = BLOCK_BYTES if not env else parse_size(env, error=UDFError)
    from .memory import available_memory

    avail = _available(available_memory())
    if avail:
        budget = min(budget, max(1, avail // (4 * max(1, num_workers))))
    return int(budget)


def _available(avail) -> int:
    """Bytes this machine and one process may still allocate."""
    return int(min(avail.system, avail.process if avail.process is not None else avail.system))


@dataclass(frozen=True)
class SeriesBufferPlan:
    """One result buffer of a series UDF: full shape and bytes on the main process."""

    name: str
    kind: str
    shape: tuple
    dtype: np.dtype
    nbytes: int
    per_pixel: int


@dataclass(frozen=True)
class SeriesUDFPlan:
    """A UDF of a series run: name, input dtype, buffers."""

    name: str
    method: str
    input_dtype: np.dtype
    buffers: tuple

    @property
    def result_nbytes(self) -> int:
        return sum(b.nbytes for b in self.buffers)


@dataclass(frozen=True)
class _SeriesInputs:
    dataset: Any
    udfs: tuple
    specs: tuple
    roi: object
    positions: object
    partitions: tuple
    part_rois: tuple
    offsets: tuple


@dataclass(frozen=True, eq=False)
class SeriesPlan:
    """The plan of a series run; ``print(plan)`` shows it.

    Attributes
    ----------
    dataset : str
    nav_shape, sig_shape : tuple of int
    dataset_dtype : numpy.dtype
    processed_frames : int
        Frames in every series (the ROI-selected positions that have a frame).
    blocks : tuple of SeriesBlock
        One task each.
    rows_per_block : int
    block_budget : int
        Bytes a block may take.
    block_nbytes : int
        Bytes of the largest block: input plus its part of the results.
    read_mode : {"strided", "rechunk"}
    read_reason : str
    store_nbytes : int
        Size of the temporary store of the rechunk pass (0 for strided reads).
    udfs : tuple of SeriesUDFPlan
    """

    dataset: str
    nav_shape: tuple
    sig_shape: tuple
    dataset_dtype: np.dtype
    processed_frames: int
    blocks: tuple
    rows_per_block: int
    block_budget: int
    block_nbytes: int
    read_mode: str
    read_reason: str
    store_nbytes: int
    udfs: tuple
    read_dtype: np.dtype
    inputs: _SeriesInputs = field(repr=False)

    mode = "series"

    @property
    def num_tasks(self) -> int:
        return len(self.blocks) if self.processed_frames else 0

    @property
    def result_nbytes(self) -> int:
        return sum(u.result_nbytes for u in self.udfs)

    @property
    def block_shape(self) -> tuple:
        """``(n_frames, rows, *rest)`` of a full block."""
        return (self.processed_frames,) + (self.blocks[0].shape if self.blocks else ())

    def to_dict(self) -> dict:
        return {
            "mode": "series", "dataset": self.dataset, "nav_shape": list(self.nav_shape),
            "sig_shape": list(self.sig_shape), "dataset_dtype": str(self.dataset_dtype),
            "processed_frames": self.processed_frames, "blocks": len(self.blocks),
            "rows_per_block": self.rows_per_block, "block_shape": list(self.block_shape),
            "block_nbytes": self.block_nbytes, "block_budget": self.block_budget,
            "reads": self.read_mode, "reads_reason": self.read_reason,
            "store_nbytes": self.store_nbytes,
            "udfs": [{"name": u.name, "method": u.method, "input_dtype": str(u.input_dtype),
                      "buffers": [{"name": b.name, "kind": b.kind, "shape": list(b.shape),
                                   "dtype": str(b.dtype), "nbytes": b.nbytes} for b in u.buffers]}
                     for u in self.udfs],
            "result_nbytes": self.result_nbytes,
        }

    def __str__(self):
        lines = [
            f"data set     {self.dataset}: nav {self.nav_shape} sig {self.sig_shape} "
            f"{self.dataset_dtype}",
            f"mode         series: one task per block of pixels, every processed frame "
            f"({self.processed_frames})",
            f"blocks       {len(self.blocks)} of {self.rows_per_block} row(s), block "
            f"{self.block_shape} = {_human(self.block_nbytes)} (budget {_human(self.block_budget)})",
            f"reads        {self.read_mode}: {self.read_reason}"
            + (f"; temporary store {_human(self.store_nbytes)}" if self.read_mode == "rechunk"
               else ""),
        ]
        for u in self.udfs:
            lines.append(f"udf          {u.name}: process_series, input {u.input_dtype}")
            for b in u.buffers:
                lines.append(f"  buffer     {b.name}: {b.kind} {b.shape} {b.dtype} "
                             f"({_human(b.nbytes)})")
        lines.append(f"results      {_human(self.result_nbytes)}")
        return "\n".join(lines)


def _human(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if n < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return str(n)  # pragma: no cover


def plan_series(dataset, udfs, roi=None, corrections=None, executor=None, backends=None) -> SeriesPlan:
    """Plan a series run (see the module docstring); the series counterpart of
    :func:`~udfkit.udf.plan.plan_run`, which calls it when every UDF defines ``process_series``.

    Examples
    --------
    >>> import numpy as np
    >>> from udfkit import Context
    >>> from udfkit.udf import SeriesStatsUDF
    >>> ctx = Context.make_with("inline")
    >>> ds = ctx.load("memory", data=np.zeros((10, 4, 6), dtype="float32"), sig_dims=2)
    >>> plan = ctx.plan(ds, SeriesStatsUDF(stats=("std",)))
    >>> plan.mode, plan.read_mode, plan.block_shape
    ('series', 'strided', (10, 4, 6))
    """
    from ..io.corrections import CorrectionSet
    from .validation import choose_backends

    for u in udfs:
        _check_udf(u)
    if corrections is not None and not (isinstance(corrections, CorrectionSet)
                                        and corrections.is_empty):
        names = ", ".join(type(u).__name__ for u in udfs)
        raise UDFError(f"{names}: corrections are not applied in series mode; correct the data "
                       "first (for instance with a frame-wise run and ctx.export)")
    choose_backends(udfs, backends)  # a request without numpy is refused as for any run
    shape = dataset.shape
    nav_shape = shape.nav.to_tuple()
    sig_shape = shape.sig.to_tuple()
    user_roi = normalize_roi(roi, nav_shape, error=ROIError,
                             where=f"{dataset.description} (nav shape {nav_shape})")
    valid = dataset.get_valid_mask()
    if user_roi is None:
        run_roi = valid
    elif valid is None:
        run_roi = user_roi
    else:
        run_roi = user_roi & valid
    native = dataset.native_dtype
    for u in udfs:
        u.meta = UDFMeta(dataset_shape=shape, dataset_dtype=dataset.dtype, input_dtype=native,
                         roi=run_roi)
    partitions = dataset.get_partitions()
    offsets, part_rois = [], []
    total = 0
    for p in partitions:
        part_roi = None if run_roi is None else run_roi[p.start:p.stop]
        part_rois.append(part_roi)
        offsets.append(total)
        total += int(p.selected_positions(part_roi).size)
    input_dtypes = [np.result_type(preferred_dtype(u), native) for u in udfs]
    for u, dt in zip(udfs, input_dtypes):
        u.meta.input_dtype = dt
        u.meta.series_length = total
    specs = [check_buffers(u, sig_placed=True) for u in udfs]
    for u, s in zip(udfs, specs):
        _check_specs(u, s)
    positions = None if run_roi is None else np.flatnonzero(run_roi)
    if positions is not None and positions.size == shape.nav.size:
        positions = None

    read_dtype = np.result_type(*input_dtypes)
    # bytes per pixel of a block: the series in the read dtype, a converted copy for each
    # UDF that wants another dtype, and the block's part of every UDF's sig buffers
    per_pixel = total * (read_dtype.itemsize + sum(dt.itemsize for dt in input_dtypes
                                                   if dt != read_dtype))
    udf_plans = []
    for u, s, dt in zip(udfs, specs, input_dtypes):
        bufs = []
        for name, spec in s.items():
            extra = prod(spec.extra_shape)
            full = (sig_shape if spec.kind == "sig" else ()) + tuple(spec.extra_shape)
            if spec.kind == "single" and not spec.extra_shape:
                full = (1,)
            pp = extra * spec.dtype.itemsize if spec.kind == "sig" else 0
            per_pixel += pp
            bufs.append(SeriesBufferPlan(name=name, kind=spec.kind, shape=full, dtype=spec.dtype,
                                         nbytes=prod(full) * spec.dtype.itemsize, per_pixel=pp))
        udf_plans.append(SeriesUDFPlan(name=type(u).__name__, method="series",
                                       input_dtype=np.dtype(dt), buffers=tuple(bufs)))
    workers = getattr(executor, "num_workers", 1) if executor is not None else 1
    budget = block_budget(workers)
    row_pixels = prod(sig_shape[1:])
    row_bytes = max(1, per_pixel * row_pixels)
    rows = budget // row_bytes
    if rows < 1:
        names = ", ".join(type(u).__name__ for u in udfs)
        raise UDFError(
            f"{names}: a series block of one row cannot fit the memory budget: one row of "
            f"{row_pixels} pixels × {total} frames takes {row_bytes} bytes "
            f"({per_pixel} bytes per pixel: the series in {read_dtype} and the results), but a "
            f"block may take {budget} bytes ({BLOCK_ENV} or the memory available per worker); "
            "use a ROI with fewer frames, or raise the budget")
    # at least one block per worker where the signal allows it
    rows = int(min(rows, max(1, -(-sig_shape[0] // max(1, workers)))))
    blocks = tuple(plan_blocks(sig_shape, rows))
    mode, why = series_read_mode(dataset)
    store_bytes = total * prod(sig_shape) * read_dtype.itemsize if mode == "rechunk" else 0
    return SeriesPlan(
        dataset=dataset.description, nav_shape=tuple(nav_shape), sig_shape=tuple(sig_shape),
        dataset_dtype=np.dtype(dataset.dtype), processed_frames=total, blocks=blocks,
        rows_per_block=rows, block_budget=budget, block_nbytes=rows * row_bytes,
        read_mode=mode, read_reason=why, store_nbytes=store_bytes, udfs=tuple(udf_plans),
        read_dtype=np.dtype(read_dtype),
        inputs=_SeriesInputs(dataset=dataset, udfs=tuple(udfs), specs=tuple(specs), roi=run_roi,
                             positions=positions, partitions=tuple(partitions),
                             part_rois=tuple(part_rois), offsets=tuple(offsets)))


# -- worker side ------------------------------------------------------------------------------

class RechunkTask:
    """First pass of a rechunked series run: one partition's frames into the store."""

    def __init__(self, store, partition, roi, offset, dtype, max_depth):
        self.store = store
        self.partition = partition
        self.roi = roi
        self.offset = int(offset)
        self.dtype = np.dtype(dtype)
        self.max_depth = max_depth

    def __call__(self, progress=None) -> int:
        return rechunk_partition(self.store, self.partition, self.roi, self.offset, self.dtype,
                                 self.max_depth)

    def __repr__(self):
        return f"RechunkTask({self.partition!r})"


class SeriesTask:
    """Run series UDFs over one block of pixels; picklable, called on a worker.

    The values that every block of a run has in common (the UDFs' keyword arguments, the
    ROI, the frame positions, the partitions read in strided mode) may come wrapped in
    :class:`~udfkit.common.shared.Shared` (:meth:`SeriesRun._tasks` wraps each once per
    run): executors that send tasks to other processes then ship each large one once per
    worker, and a task's payload does not grow with them.
    """

    def __init__(self, *, block: SeriesBlock, udfs, input_dtypes, read_dtype, n_frames,
                 store, dataset_shape, dataset_dtype, run_roi, positions, partitions=None,
                 rois=None, offsets=None, reads=None, max_depth=None):
        self.block = block
        self.udfs = udfs
        self.input_dtypes = [np.dtype(d) for d in input_dtypes]
        self.read_dtype = np.dtype(read_dtype)
        self.n_frames = int(n_frames)
        # possibly Shared (see the properties); partitions, rois and offsets travel as one
        # value: ``reads``, that tuple already wrapped, or made from the three arguments
        self._reads = reads if reads is not None else share((partitions, rois, offsets))
        self.store = store
        self.dataset_shape = dataset_shape
        self.dataset_dtype = np.dtype(dataset_dtype)
        self._run_roi = run_roi
        self._positions = positions
        self.max_depth = max_depth

    @property
    def partitions(self):
        return unwrap(self._reads)[0]

    @property
    def rois(self):
        return unwrap(self._reads)[1]

    @property
    def offsets(self):
        return unwrap(self._reads)[2]

    @property
    def run_roi(self):
        return unwrap(self._run_roi)

    @property
    def positions(self):
        return unwrap(self._positions)

    @property
    def index(self) -> int:
        return self.block.index

    def __call__(self, progress=None) -> PartitionResult:
        block = self.block
        if self.store is not None:
            data = self.store.read(block)
        else:
            data = read_block_strided(self.partitions, self.rois, self.offsets, block,
                                      self.read_dtype, self.n_frames, self.max_depth)
        data.flags.writeable = False
        frame_index = (np.arange(self.n_frames, dtype=np.int64) if self.positions is None
                       else self.positions)
        sig_slice = block.sig_slice
        nsig = len(block.sig_shape)
        made = []
        out = []
        try:
            for (cls, kwargs), dtype in zip(self.udfs, self.input_dtypes):
                udf = cls(**{k: unwrap(v) for k, v in kwargs.items()})
                meta = UDFMeta(dataset_shape=self.dataset_shape, dataset_dtype=self.dataset_dtype,
                               input_dtype=dtype, roi=self.run_roi,
                               partition_shape=Shape((self.n_frames,) + block.shape,
                                                     sig_dims=nsig))
                meta._set_unit(frame_index, sig_slice, 0, self.n_frames)
                meta.series_length = self.n_frames
                udf.meta = meta
                specs = udf.get_result_buffers()
                arrays: dict[str, np.ndarray] = {}
                made.append(arrays)
                for name, spec in specs.items():
                    if spec.use == "result_only":
                        continue
                    shp = (block.shape if spec.kind == "sig" else ()) + tuple(spec.extra_shape)
                    if spec.kind == "single" and not spec.extra_shape:
                        shp = (1,)
                    arrays[name] = result_zeros(shp, spec.dtype)
                udf.task_data = Namespace(udf.get_task_data() or {})
                udf.results = BufferNamespace(arrays, specs)
                udf.preprocess()
                x = data if dtype == self.read_dtype else data.astype(dtype)
                if x is not data:
                    x.flags.writeable = False
                udf.process_series(x)
                udf.postprocess()
                udf.results = None
                out.append(arrays)
                try:
                    udf.cleanup()
                except Exception:  # noqa: BLE001 - cleanup must not hide the result
                    pass
        except BaseException:
            for arrays in made:
                discard_results(arrays.values())
            raise
        return PartitionResult(block.index, out, block.pixels)

    def __repr__(self):
        return (f"SeriesTask(rows [{self.block.r0}, {self.block.r1}), "
                f"udfs={[c.__name__ for c, _ in self.udfs]})")


# -- main side --------------------------------------------------------------------------------

class SeriesRun:
    """Executes a :class:`SeriesPlan` (the series counterpart of
    :class:`~udfkit.udf.driver.UDFRun`)."""

    def __init__(self, plan: SeriesPlan):
        self.plan = plan
        inputs = plan.inputs
        self.dataset: Any = inputs.dataset
        self.udfs = list(inputs.udfs)
        self.specs = list(inputs.specs)
        self.sig_shape = plan.sig_shape
        self.nav_shape = plan.nav_shape
        self.total_pixels = prod(self.sig_shape)

    def _tasks(self, store) -> list:
        p = self.plan
        i = p.inputs
        max_depth = self.dataset.get_tiling_constraints().max_depth
        # what every block has in common, wrapped once per run (one content hash each where
        # an executor ships them; see SeriesTask)
        # (series UDFs take no aux data: _check_udf refuses it)
        udfs = [(type(u), {k: share(v) for k, v in u._kwargs.items()}) for u in self.udfs]
        strided = store is None
        reads = share((list(i.partitions), list(i.part_rois), list(i.offsets)) if strided
                      else (None, None, None))
        run_roi, positions = share(i.roi), share(i.positions)
        return [SeriesTask(block=b, udfs=udfs, input_dtypes=[u.input_dtype for u in p.udfs],
                           read_dtype=p.read_dtype, n_frames=p.processed_frames, reads=reads,
                           store=store, dataset_shape=self.dataset.shape,
                           dataset_dtype=self.dataset.dtype, run_roi=run_roi,
                           positions=positions, max_depth=max_depth)
                for b in p.blocks]

    def _rechunk(self, executor) -> RechunkStore:
        p = self.plan
        i = p.inputs
        store = RechunkStore.create(p.blocks, p.processed_frames, p.read_dtype)
        try:
            max_depth = self.dataset.get_tiling_constraints().max_depth
            tasks = [RechunkTask(store, part, roi, off, p.read_dtype, max_depth)
                     for part, roi, off in zip(i.partitions, i.part_rois, i.offsets)
                     if part.selected_positions(roi).size]
            stream = executor.run_tasks(tasks)
            try:
                for _ in stream:
                    pass
            finally:
                close = getattr(stream, "close", None)
                if close is not None:
                    close()
        except BaseException:
            store.remove()
            raise
        return store

    def _allocate(self):
        self.buffers = []
        for u, specs in zip(self.udfs, self.specs):
            arrays = {}
            for name, spec in specs.items():
                if spec.use == "result_only":
                    continue
                shp = (self.sig_shape if spec.kind == "sig" else ()) + tuple(spec.extra_shape)
                if spec.kind == "single" and not spec.extra_shape:
                    shp = (1,)
                arrays[name] = np.zeros(shp, dtype=spec.dtype)
            self.buffers.append(arrays)
            u.results = BufferNamespace(arrays, specs)
            u.params = Namespace(dict(u._kwargs))
            u.preprocess()
        self.pixels_done = 0

    def _merge(self, result):
        block = self.plan.blocks[result.partition_index]
        sl = block.sig_slice.get()
        for u, specs, arrays, src in zip(self.udfs, self.specs, self.buffers, result.buffers):
            dest = BufferNamespace({name: (arrays[name][sl] if specs[name].kind == "sig"
                                           else arrays[name]) for name in src}, specs)
            u.merge(dest, BufferNamespace(src, specs))
        self.pixels_done += block.pixels

    def _results(self, complete: bool) -> RunResults:
        out = []
        roi = self.plan.inputs.roi
        total = self.plan.processed_frames
        for u, specs, arrays in zip(self.udfs, self.specs, self.buffers):
            u.results = BufferNamespace(arrays, specs)
            raw = check_results(u, specs, u.get_results(), total, self.nav_shape,
                                self.sig_shape, roi)
            if not complete:
                raw = {name: (np.array(arr, copy=True), mask) for name, (arr, mask) in raw.items()}
            out.append({name: BufferResult(arr, kind=specs[name].kind, nav_shape=self.nav_shape,
                                           extra_shape=specs[name].extra_shape,
                                           positions=self.plan.inputs.positions, mask=mask)
                        for name, (arr, mask) in raw.items()})
        damage = (np.ones(self.nav_shape, dtype=bool) if roi is None
                  else np.asarray(roi, dtype=bool).reshape(self.nav_shape))
        # series runs count pixels (the unit of their tasks), not frames
        return RunResults(out, damage, self.pixels_done, self.total_pixels, complete)

    def execute(self, executor, *, iterate: bool = False, progress=None,
                deterministic: bool = False, check_memory: bool = True):
        """Run on ``executor``; a generator of :class:`RunResults` like
        :meth:`UDFRun.execute <udfkit.udf.driver.UDFRun.execute>` (progress counts pixels)."""
        if check_memory:
            self._check_memory()
        store = None
        if self.plan.read_mode == "rechunk" and self.plan.processed_frames:
            store = self._rechunk(executor)
        try:
            tasks = self._tasks(store) if self.plan.processed_frames else []
            self._allocate()
            if progress is not None:
                progress.start(self.total_pixels)
            stream = executor.run_tasks(tasks)
            order = MergeOrder(deterministic)
            try:
                for index, result in stream:
                    ready = order.ready(index, result)
                    for r in ready:
                        self._merge(r)
                        r.buffers = None
                        if progress is not None:
                            progress.advance(self.plan.blocks[r.partition_index].pixels)
                        if iterate and self.pixels_done < self.total_pixels:
                            yield self._results(complete=False)
                    result = r = None
                    ready = []
            except ExecutorError as e:
                e.add_note(f"while running series blocks of {self.dataset.description}")
                raise
            finally:
                close = getattr(stream, "close", None)
                if close is not None:
                    close()
                if progress is not None:
                    progress.close()
            if not self.plan.processed_frames:
                self.pixels_done = self.total_pixels
            yield self._results(complete=True)
        finally:
            if store is not None:
                store.remove()

    def _check_memory(self) -> None:
        from .memory import CHECK_FROM, available_memory, memory_check_enabled

        need = self.plan.result_nbytes
        if need < CHECK_FROM or not memory_check_enabled():
            return
        avail = _available(available_memory())
        if need > avail:
            big = max(((u.name, b) for u in self.plan.udfs for b in u.buffers),
                      key=lambda ub: ub[1].nbytes)
            raise UDFError(
                f"{big[0]}: the results of this series run need {need} bytes on the main process "
                f"(largest: {big[1].name}, {big[1].kind} {big[1].shape} {big[1].dtype}), but "
                f"{avail} bytes are available; use a ROI or fewer frames")
