"""The plan of a run: everything decided before a byte is read, as one value.

:func:`plan_run` does the planning half of a run on the main process and returns a frozen
:class:`RunPlan`; :class:`~udfkit.udf.driver.UDFRun` executes a plan (allocate, run the
partition tasks, merge, results). ``Context.plan`` and ``udfkit plan`` show it, so a user
sees the tile shape, the partitions, the memory per worker and the result sizes of a run
before starting it, together with the rule that made each choice.

Planning steps (the order matters)
----------------------------------
1. **Check** every UDF (process method, picklable parameters, array backend).
2. **ROI**: the user's ROI combined with the positions that have a frame.
3. **Corrections** are checked against the signal shape (their neighbour table is built).
4. **Meta** is set on every UDF first, because a UDF may look at the data set to choose its
   input dtype.
5. **Input dtypes**: each UDF's preference promoted with the stored dtype (and with
   ``float32`` when corrections are given).
6. **Buffers**: ``get_result_buffers`` is called and checked (it may depend on the meta).
7. **Partitions**: processed frames per partition after the ROI, and their offsets among
   the run's processed frames.
8. **Negotiation**: one tiling scheme for all UDFs, with the negotiator's reason.
9. **Estimates**: bytes read, memory per worker process and on the main process.
10. **Small runs**: with ``small_run_bytes`` (the default Context's), a run that is one
    task and reads at most that many bytes runs in the main process (as the inline
    executor would run it) instead of on a worker process: the round trip (task out,
    result back through shared memory or a pickle, two wake-ups) then costs more than the
    work, and one task keeps one core busy wherever it runs. A run that the workers would
    share by measured cost (:mod:`udfkit.udf.worksize`: a UDF may spend milliseconds per
    frame) stays on them, unless its work is known to be at most
    :data:`SMALL_RUN_SECONDS`: measured in an earlier run of the same kind, or every UDF
    declares ``COST = "streaming"`` (work proportional to the bytes, as the built-in sums). The plan
    says so (``executor`` line, ``reasons["placement"]``); ``Context(small_run_bytes=0)``
    or ``UDFKIT_SMALL_RUN_BYTES=0`` turns it off.

Memory estimate
---------------
Counted from the sizes the run allocates, not measured; a Python interpreter with numpy
and udfkit (60-100 MB) comes on top in every process, and so do a UDF's own temporaries.

*Per task* (one partition on a worker): the partition-sized buffers of every UDF (the
largest partition by processed frames), the tile buffers of every input dtype whose tiles
are copies (``depth`` × the largest signal slice), the corrected-tile buffers, the I/O
backend's read buffers (``buffered``/``direct``: the block, twice with read-ahead) and the
UDFs' array parameters (masks; aux data cut to the partition): once where the task runs in
the main process (what a UDF prepares from them, such as masks cut per signal slice, is of
their size), three times in a worker process (the message received, the pickled task, the
unpickled arrays). Zero-copy tiles and ``mmap`` reads cost no anonymous memory; the file
pages they touch are page cache, which the kernel reclaims.

*Per worker process*: ``processes`` and ``dask`` run one task per process at a time; a
``processes`` worker allocates returned buffers of 64 KiB or more in shared memory, which
travel without a copy (the smaller ones are copied into the message), and a ``dask`` worker
copies the returned buffers for the transport (a pickle); ``threads`` and ``inline`` run in
the main process (threads: one task per thread at once).

*Main process*: the full result buffers of every UDF, plus the larger of what the run holds
while it merges and the buffers ``get_results`` makes at the end (``result_only``). While
merging: one partition result being merged (the mapped shared memory or unpickled arrays
of another process's result; with ``inline`` the merged task's own buffers, dropped before
the next task runs; with ``threads`` one of the running tasks' sets when they are 16 MiB or
more, since a thread then waits for its last result to be merged before it starts another
task, else one more), for ``threads``/``inline`` the tasks that run in it, and for the
other executors the task being sent (twice its array parameters).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from math import prod
from typing import TYPE_CHECKING

import numpy as np

from ..common import normalize_roi
from ..common.allocation import SHARED_MIN_BYTES
from ..errors import ROIError
from ..io.corrections import CorrectionSet
from ..io.partitioning import partition_bounds, partition_reason
from ..io.tiling import Negotiator, TilingRequest, TilingScheme
from .buffers import AuxData, buffer_shape
from .halo import HaloPlan, block_bytes, check_halo, plan_halo
from .meta import UDFMeta
from .runner import GATE_MIN_BYTES
from .series import SeriesPlan, plan_series, uses_series
from .validation import check_buffers, check_udf, choose_backends, preferred_dtype, tiling_request

if TYPE_CHECKING:  # worksize imports this module's PartitionPlan
    from .store.plan import StorePlan
    from .worksize import WorkSizing

__all__ = ["RunPlan", "UDFPlan", "BufferPlan", "PartitionPlan", "MemoryEstimate", "Placement",
           "plan_run", "negotiate_tiling", "placement_of", "SMALL_RUN_BYTES", "MAIN_PROCESS"]

#: the default of ``Context(small_run_bytes=...)``: a run of one task that reads at most this
#: many bytes runs in the main process when the Context's workers are other processes (see
#: :func:`plan_run`, *Small runs*). A round trip to a worker process costs about 1 ms, to a
#: dask worker a few ms; the main process reads 8 MiB in about that time, and a run of one
#: task keeps one worker busy either way.
SMALL_RUN_BYTES = 8 << 20
#: ... and whose work is known to be at most this many seconds where the run would otherwise
#: be cut by measured cost (two workers would share it: worth a round trip above ~2 ms)
SMALL_RUN_SECONDS = 2e-3


@dataclass(frozen=True)
class BufferPlan:
    """One result buffer of a UDF as the run will allocate it.

    Attributes
    ----------
    name, kind : str
        The buffer's name and kind (``nav``, ``sig``, ``single``).
    dtype : numpy.dtype
    extra_shape : tuple of int
    use : str or None
        ``None``, ``"private"`` or ``"result_only"``.
    shape : tuple of int
        Storage shape on the main process (nav buffers: one row per processed frame).
    partition_shape : tuple of int
        Storage shape on a worker for the largest partition (``()`` for ``result_only``
        buffers, which only ``get_results`` makes).
    result_shape : tuple of int
        Shape of ``result[name].data`` (nav buffers: ``nav_shape + extra_shape``).
    nbytes, partition_nbytes : int
        Bytes of ``shape`` and ``partition_shape``.
    returned : bool
        Whether a worker sends it back for merging.
    """

    name: str
    kind: str
    dtype: np.dtype
    extra_shape: tuple
    use: str | None
    shape: tuple
    partition_shape: tuple
    result_shape: tuple
    nbytes: int
    partition_nbytes: int
    returned: bool


@dataclass(frozen=True)
class UDFPlan:
    """What one UDF of the run gets.

    Attributes
    ----------
    name : str
        The UDF's class name.
    method : {"frame", "tile", "partition"}
    input_dtype : numpy.dtype
        The dtype its tiles arrive in.
    dtype_reason : str
        Why (its preference, the stored dtype, corrections).
    array_backend : str
    request : TilingRequest
        Its tiling preferences.
    buffers : tuple of BufferPlan
    """

    name: str
    method: str
    input_dtype: np.dtype
    dtype_reason: str
    array_backend: str
    request: TilingRequest
    buffers: tuple

    @property
    def result_nbytes(self) -> int:
        """Bytes of the results it returns (public and ``result_only`` buffers)."""
        return sum(b.nbytes for b in self.buffers if b.use != "private")


@dataclass(frozen=True)
class PartitionPlan:
    """One partition: ``frames`` positions ``[start, stop)`` of the flattened nav axis, of
    which ``processed`` are processed (ROI, missing frames); ``offset`` is the number of
    processed frames of the run before it. Partitions with nothing to process get no task."""

    index: int
    start: int
    stop: int
    frames: int
    processed: int
    offset: int


@dataclass(frozen=True)
class Placement:
    """Where tasks run: ``workers`` processes (or threads), ``tasks_per_process`` at once in
    one process, whether that process is the main one, and whether results are copied for
    the transport back."""

    kind: str
    workers: int
    tasks_per_process: int
    in_main_process: bool
    transport_copy: bool


#: where a small run goes (see :func:`plan_run`): the calling thread, as the inline executor
MAIN_PROCESS = Placement("inline", 1, 1, True, False)


def placement_of(executor) -> Placement:
    """The :class:`Placement` of an executor, from its ``kind`` and ``num_workers``.

    ``None`` stands for the default Context's executor (worker processes, one per core).
    The UDF layer does not import executors, so this reads their public attributes.
    """
    if executor is None:
        from os import cpu_count

        return Placement("processes", max(1, cpu_count() or 1), 1, False, True)
    kind = getattr(executor, "kind", None) or type(executor).__name__
    workers = max(1, int(getattr(executor, "num_workers", 1)))
    if kind == "inline":
        return Placement(kind, 1, 1, True, False)
    if kind == "threads":
        return Placement(kind, workers, workers, True, False)
    # processes and dask (one thread per worker process, as udfkit starts them), and any
    # other executor: a task per process, results serialised for the way back
    return Placement(kind, workers, 1, False, True)


@dataclass(frozen=True)
class MemoryEstimate:
    """Estimated bytes of a run (see the module docstring for what is counted).

    Attributes
    ----------
    per_task : dict
        ``{component: bytes}`` of one task on the largest partition.
    per_worker : int
        Bytes a worker process adds while it runs (``tasks_per_process`` tasks plus the
        transport copy); for ``threads``/``inline`` the main process holds them.
    main : dict
        ``{component: bytes}`` on the main process.
    placement : Placement
    """

    per_task: dict
    per_worker: int
    main: dict
    placement: Placement

    @property
    def task_bytes(self) -> int:
        """Sum of :attr:`per_task`."""
        return sum(self.per_task.values())

    @property
    def main_bytes(self) -> int:
        """Peak on the main process: the full result buffers, plus what the run holds while
        partitions are merged or what ``get_results`` makes at the end, whichever is more
        (``get_results`` runs after the last partition is merged and released)."""
        during = sum(v for k, v in self.main.items() if k not in ("result buffers", "get_results"))
        return self.main.get("result buffers", 0) + max(during, self.main.get("get_results", 0))


@dataclass(frozen=True)
class _Inputs:
    """What :class:`~udfkit.udf.driver.UDFRun` needs besides the plan's public facts."""

    dataset: object
    udfs: tuple
    specs: tuple
    roi: object
    positions: object
    corrections: object
    partitions: tuple


@dataclass(frozen=True, eq=False)
class RunPlan:
    """The plan of a run (see the module docstring); ``print(plan)`` shows a short table.

    Attributes
    ----------
    dataset : str
        Description of the data set.
    nav_shape, sig_shape : tuple of int
    dataset_dtype : numpy.dtype
        The stored dtype.
    scheme : TilingScheme
        Tile shape (``scheme.shape``), depth and signal slices, shared by all UDFs.
    tiling_reason : str
        The negotiator's rule that decided the scheme.
    zero_copy : bool
        Whether tiles can be views of the stored bytes.
    partitions : tuple of PartitionPlan
    partition_reason : str
    udfs : tuple of UDFPlan
    processed_frames : int
    bytes_read : int
        Stored bytes of the processed frames (a block backend may read some more across
        ROI gaps; a compressed format reads its compressed chunks).
    memory : MemoryEstimate
    halo : HaloPlan or None
        With a halo UDF: its radius, the rows read beyond each partition and the read
        amplification (:class:`~udfkit.udf.halo.HaloPlan`).
    sizing : WorkSizing or None
        How the run cuts the planned partitions into smaller ones while it goes, from the
        measured cost per frame (:mod:`udfkit.udf.worksize`); ``None``: the partitions run
        as planned. The executed ones are reported with the results
        (:attr:`udfkit.udf.results.RunResults.partitions`).
    small_run : str or None
        Why the run goes to the main process instead of the executor's workers (the
        small-run rule of :func:`plan_run`); ``None``: it runs on the executor.
        ``memory.placement`` is then the main process's.
    executor_placement : Placement or None
        The executor's own placement when :attr:`small_run` moved the run off it.
    """

    dataset: str
    nav_shape: tuple
    sig_shape: tuple
    dataset_dtype: np.dtype
    scheme: TilingScheme
    tiling_reason: str
    zero_copy: bool
    partitions: tuple
    partition_reason: str
    udfs: tuple
    processed_frames: int
    bytes_read: int
    memory: MemoryEstimate
    inputs: _Inputs = field(repr=False)
    halo: HaloPlan | None = None
    sizing: WorkSizing | None = None
    small_run: str | None = None
    executor_placement: Placement | None = None

    @property
    def in_main_process(self) -> bool:
        """Whether this run goes to the main process by the small-run rule (the Context's
        executor is not used; see :func:`plan_run`)."""
        return self.small_run is not None
    #: results on disk (``out=``): :class:`~udfkit.udf.store.plan.StorePlan`
    store: StorePlan | None = None

    @property
    def tile_shape(self) -> tuple:
        """``(depth, *sig_part)`` of a full tile."""
        return self.scheme.shape

    @property
    def num_tasks(self) -> int:
        """Partitions with at least one processed frame (each becomes a task)."""
        return sum(1 for p in self.partitions if p.processed)

    @property
    def result_nbytes(self) -> int:
        """Bytes of all results returned to the caller."""
        return sum(u.result_nbytes for u in self.udfs)

    @property
    def reasons(self) -> dict:
        """``{topic: sentence}``: why this tile shape, these partitions, these dtypes."""
        out = {"tiling": self.tiling_reason, "partitions": self.partition_reason}
        if self.small_run is not None:
            out["placement"] = self.small_run
        if self.store is not None and self.store.cut:
            out["partitions"] += "; " + self.store.cut
        if self.halo is not None:
            out["halo"] = self.halo.reason
        if self.sizing is not None:
            out["partition sizing"] = self.sizing.describe()
        for i, u in enumerate(self.udfs):
            out[f"input dtype of {u.name}" + (f" #{i}" if self._dup(u.name) else "")] = u.dtype_reason
        native = getattr(self.inputs.dataset, "array_backends", ("numpy",))
        for i, u in enumerate(self.udfs):
            if u.array_backend != "numpy":
                # numpy is the rule; a sparse form is worth a line (validation.choose_backends)
                how = ("the first form it lists that the data set gives as it is"
                       if u.array_backend in native else
                       f"converted from each tile: it lists none of the data set's {list(native)}")
                out[f"array backend of {u.name}" + (f" #{i}" if self._dup(u.name) else "")] = (
                    f"{u.array_backend}, {how}")
        return out

    def _dup(self, name) -> bool:
        return sum(1 for u in self.udfs if u.name == name) > 1

    def to_dict(self) -> dict:
        """The plan as JSON-ready values (``udfkit plan --json``)."""
        m = self.memory
        return {
            "dataset": self.dataset,
            "nav_shape": list(self.nav_shape),
            "sig_shape": list(self.sig_shape),
            "dtype": self.dataset_dtype.str,
            "tile_shape": list(self.tile_shape),
            "tile_depth": self.scheme.depth,
            "sig_slices": [[list(s.origin), list(s.shape.to_tuple())] for s in self.scheme],
            "zero_copy": self.zero_copy,
            "partitions": [{"index": p.index, "start": p.start, "stop": p.stop,
                            "frames": p.frames, "processed": p.processed} for p in self.partitions],
            "sizing": None if self.sizing is None else {
                "workers": self.sizing.workers, "probe_frames": self.sizing.probe_frames,
                "known_cost": (None if self.sizing.known_cost is None
                               else list(self.sizing.known_cost))},
            "processed_frames": self.processed_frames,
            "bytes_read": self.bytes_read,
            "udfs": [{"name": u.name, "method": u.method, "input_dtype": u.input_dtype.str,
                      "array_backend": u.array_backend,
                      "buffers": [{"name": b.name, "kind": b.kind, "dtype": b.dtype.str,
                                   "extra_shape": list(b.extra_shape), "use": b.use,
                                   "shape": list(b.shape),
                                   "partition_shape": list(b.partition_shape),
                                   "result_shape": list(b.result_shape), "nbytes": b.nbytes,
                                   "partition_nbytes": b.partition_nbytes}
                                  for b in u.buffers]}
                     for u in self.udfs],
            "result_bytes": self.result_nbytes,
            "executor": (m.placement if self.executor_placement is None
                         else self.executor_placement).kind,
            "workers": (m.placement if self.executor_placement is None
                        else self.executor_placement).workers,
            "in_main_process": self.in_main_process,
            "memory_per_task": dict(m.per_task),
            "memory_per_worker": m.per_worker,
            "memory_main": dict(m.main),
            "memory_main_total": m.main_bytes,
            "reasons": self.reasons,
            "halo": None if self.halo is None else self.halo.to_dict(),
            "store": None if self.store is None else self.store.to_dict(),
        }

    def __str__(self):
        m = self.memory
        pl = m.placement
        counts = [p.processed for p in self.partitions]
        tasks = self.num_tasks
        lines = [
            f"run plan: {', '.join(u.name for u in self.udfs)} on {self.dataset}",
            f"  data         nav {self.nav_shape} x sig {self.sig_shape}, {self.dataset_dtype.name}; "
            f"{self.processed_frames} frames processed, {_human(self.bytes_read)} read",
            f"  tiles        {self.tile_shape} ({len(self.scheme)} signal slice"
            f"{'s' if len(self.scheme) != 1 else ''}, {self.scheme.intent}, "
            f"{'zero-copy budget' if self.zero_copy else 'cache-sized'})",
            f"  partitions   {len(self.partitions)} ({tasks} with frames), "
            f"{min(counts)}-{max(counts)} frames processed each"
            + ("" if self.halo is None else
               f"; halo {self.halo.radius}, read amplification "
               f"{self.halo.read_amplification:.3f}")
            + ("; cut smaller by measured cost while the run goes" if self.sizing else ""),
            f"  executor     {_executor_line(pl, self.executor_placement)}",
            f"  per worker   {_human(m.per_worker)} ({_parts(m.per_task)})"
            f"{' x ' + str(pl.tasks_per_process) + ' tasks' if pl.tasks_per_process > 1 else ''}"
            f"{_transport(m)}"
            f"{' (in the main process)' if pl.in_main_process else ''}",
            f"  main process {_human(m.main_bytes)}: {_main_parts(m.main)}",
        ]
        width = max(12, *(len(u.name) for u in self.udfs))
        bwidth = max(10, *(len(b.name) for u in self.udfs for b in u.buffers))
        mwidth = max(9, *(len(u.method) + 1 for u in self.udfs))
        lines.append(f"  {'UDF':<{width}} {'method':<{mwidth}} {'input':<9} {'buffer':<{bwidth}} "
                     f"{'kind':<6} {'dtype':<9} {'result shape':<16} bytes")
        for u in self.udfs:
            for i, b in enumerate(u.buffers):
                head = (f"{u.name:<{width}} {u.method:<{mwidth}} {u.input_dtype.name:<9}"
                        if i == 0 else " " * (width + mwidth + 11))
                lines.append(f"  {head} {b.name:<{bwidth}} {b.kind:<6} {b.dtype.name:<9} "
                             f"{str(b.result_shape):<16} {_human(b.nbytes)}"
                             f"{'' if b.use is None else ' (' + b.use + ')'}")
        lines.append(f"  results      {_human(self.result_nbytes)}")
        if self.store is not None:
            lines.extend(self.store.lines(_human))
        lines.append("  why")
        lines.extend(f"    {topic}: {text}" for topic, text in self.reasons.items())
        return "\n".join(lines)

    def __repr__(self):
        return (f"RunPlan(udfs={[u.name for u in self.udfs]}, tile_shape={self.tile_shape}, "
                f"partitions={len(self.partitions)}, processed_frames={self.processed_frames}, "
                f"memory_per_worker={self.memory.per_worker}, memory_main={self.memory.main_bytes})")

    def _repr_html_(self):
        from html import escape

        return f"<pre>{escape(str(self))}</pre>"


def _executor_line(placement: Placement, executor: Placement | None) -> str:
    pl = placement if executor is None else executor
    text = f"{pl.kind}, {pl.workers} worker{'s' if pl.workers != 1 else ''}"
    return text if executor is None else f"{text}; this run: in the main process (small run)"


def _human(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n} B"  # pragma: no cover


def _main_parts(main: dict) -> str:
    during = {k: v for k, v in main.items() if k not in ("result buffers", "get_results")}
    text = f"result buffers {_human(main.get('result buffers', 0))}"
    if main.get("get_results"):
        return (f"{text} + the larger of ({_parts(during)}) while merging and get_results "
                f"{_human(main['get_results'])} at the end")
    return f"{text} + {_parts(during)}" if any(during.values()) else text


def _parts(components: dict) -> str:
    shown = [f"{k} {_human(v)}" for k, v in components.items() if v]
    return " + ".join(shown) or "nothing"


def plan_run(dataset, udfs, roi=None, corrections=None, executor=None, backends=None,
             negotiator: Negotiator | None = None,
             small_run_bytes: int = 0, out=None) -> RunPlan | SeriesPlan:
    """Plan a run of ``udfs`` over ``dataset`` without reading data.

    When every UDF defines ``process_series``, the run is a series run and the plan a
    :class:`~udfkit.udf.series.SeriesPlan` (:func:`~udfkit.udf.series.plan_series`).

    Parameters
    ----------
    dataset : DataSet
        An initialized data set.
    udfs : UDF or list of UDF
    roi : optional
        Any form :func:`udfkit.common.normalize_roi` accepts.
    corrections : CorrectionSet, optional
    executor : Executor, optional
        Where the run will go (for the memory per worker); ``None``: worker processes, one
        per core, as the default Context.
    backends : str or sequence of str, optional
        LiberTEM's restriction of the array backends.
    negotiator : Negotiator, optional
        Default: one with this machine's cache budget.
    small_run_bytes : int
        The small-run rule (step 10 of the module docstring): a run of one task, not cut
        while it goes, that reads at most this many bytes is planned for the main process
        when ``executor`` runs tasks in other processes. 0 (the default here): never.
    out : ResultStore, optional
        Results on disk: the plan's ``store`` (:class:`~udfkit.udf.store.plan.StorePlan`),
        partitions cut for the store (:mod:`udfkit.udf.store.plan`).

    Returns
    -------
    RunPlan

    Raises
    ------
    UDFError, ROIError, CorrectionError, TilingError
        For a UDF, ROI or corrections that do not fit, before anything is read.

    Examples
    --------
    >>> import numpy as np
    >>> from udfkit import Context
    >>> from udfkit.udf import SumUDF
    >>> ctx = Context.make_with("inline")
    >>> ds = ctx.load("memory", data=np.zeros((4, 4, 8, 8), dtype="uint16"), num_partitions=2)
    >>> plan = plan_run(ds, SumUDF(), roi=np.eye(4, dtype=bool), executor=ctx.executor)
    >>> plan.tile_shape, [p.processed for p in plan.partitions]
    ((8, 8, 8), [2, 2])
    >>> plan.udfs[0].buffers[0].shape, plan.udfs[0].input_dtype
    ((8, 8), dtype('uint16'))
    """
    from ..udf.base import UDF

    udfs = [udfs] if isinstance(udfs, UDF) else list(udfs)
    if uses_series(udfs):  # every UDF defines process_series: partition the signal
        return plan_series(dataset, udfs, roi=roi, corrections=corrections, executor=executor,
                           backends=backends)
    methods = [check_udf(u) for u in udfs]
    # the forms the data set hands out without converting (raw_csr: CSR row blocks, numpy)
    array_backends = choose_backends(udfs, backends,
                                     native=getattr(dataset, "array_backends", ("numpy",)))
    shape = dataset.shape
    nav_shape = shape.nav.to_tuple()
    sig_shape = shape.sig.to_tuple()
    nav_size = shape.nav.size
    user_roi = normalize_roi(roi, nav_shape, error=ROIError,
                             where=f"{dataset.description} (nav shape {nav_shape})")
    valid = dataset.get_valid_mask()
    if user_roi is None:
        run_roi = valid
    elif valid is None:
        run_roi = user_roi
    else:
        run_roi = user_roi & valid
    correction_plan = _plan_corrections(corrections, sig_shape, dataset.description)

    # the meta comes first: a UDF may look at the data set to choose its input dtype
    native = dataset.native_dtype
    for u, backend in zip(udfs, array_backends):
        u.meta = UDFMeta(dataset_shape=shape, dataset_dtype=dataset.dtype, input_dtype=native,
                         roi=run_roi, array_backend=backend, corrections=corrections)
    # each UDF gets its own preference promoted with the stored dtype: a UDF that reads the
    # stored dtype keeps its fast path next to one that wants float32; corrected frames are
    # float: at least float32, wider by promotion
    floor = () if correction_plan is None else (np.float32,)
    prefs = [preferred_dtype(u) for u in udfs]
    input_dtypes = [np.result_type(p, native, *floor) for p in prefs]
    md = dataset.meta.metadata
    paths = tuple(md.get("paths") or [p for p in [md.get("path")] if p is not None])
    for u, dtype in zip(udfs, input_dtypes):
        u.meta.input_dtype = dtype
        u.meta.dataset_paths = paths
    specs = [check_buffers(u) for u in udfs]
    halos = [check_halo(u, nav_shape, dtype, run_roi is not None)
             for u, dtype in zip(udfs, input_dtypes)]

    # a halo run is scheduled in whole nav rows that read their neighbourhood (udf.halo)
    dataset_partitions = dataset.get_partitions()
    partitions, halo_plan = plan_halo(dataset, dataset_partitions, halos)
    store_cut = None
    if out is not None and halo_plan is None:
        from .store.plan import cut_partitions

        partitions, store_cut = cut_partitions(partitions, specs,
                                               align=getattr(dataset, "frame_alignment", 1))
    part_plans = []
    offset = 0
    for p in partitions:
        n = int(p.selected_positions(None if run_roi is None else run_roi[p.start:p.stop]).size)
        part_plans.append(PartitionPlan(index=int(p.index), start=int(p.start), stop=int(p.stop),
                                        frames=int(p.num_frames), processed=n, offset=offset))
        offset += n
    total = offset
    positions = None if run_roi is None else np.flatnonzero(run_roi)
    if positions is not None and positions.size == nav_size:
        positions = None

    stored = dataset.dtype
    requests = [tiling_request(u, m) for u, m in zip(udfs, methods)]
    scheme, tiling_why, zero_copy = negotiate_tiling(
        dataset, requests + ([TilingRequest("tile", whole_frames=True)] if halo_plan else []),
        input_dtypes, roi=run_roi, corrections=correction_plan, negotiator=negotiator,
        partitions=partitions, copies=halo_plan is not None)
    for u in udfs:
        u.meta.tiling_scheme = scheme

    largest = max((p.processed for p in part_plans), default=0)
    udf_plans = []
    for u, method, dtype, pref, backend, spec, req in zip(udfs, methods, input_dtypes, prefs,
                                                          array_backends, specs, requests):
        udf_plans.append(UDFPlan(
            name=type(u).__name__, method=method, input_dtype=np.dtype(dtype),
            dtype_reason=_dtype_reason(pref, native, correction_plan is not None, dtype),
            array_backend=backend, request=req,
            buffers=tuple(_buffer_plan(u, name, s, total, largest, nav_shape, sig_shape)
                          for name, s in spec.items())))

    frame_bytes = prod(sig_shape) * stored.itemsize
    placement = placement_of(executor)
    # cut while the run goes where the planned partitions would leave workers idle
    from .worksize import cost_key, plan_sizing

    sizing = plan_sizing(partitions, part_plans, placement,
                         num_partitions_given=getattr(dataset, "_num_partitions_arg", None)
                         is not None,
                         key=lambda: cost_key(placement, udfs, sig_shape, stored, input_dtypes,
                                              correction_plan is not None),
                         align=getattr(dataset, "frame_alignment", 1))
    bytes_read = _bytes_read(dataset, total, nav_size, frame_bytes)
    small_run = _small_run(placement, sizing, part_plans, bytes_read, small_run_bytes, udfs)
    executor_placement = None
    if small_run is not None:
        # one task in the calling thread: nothing to cut for other workers
        executor_placement, placement, sizing = placement, MAIN_PROCESS, None
    memory = _estimate(dataset, partitions, udfs, udf_plans, scheme, input_dtypes, stored,
                       correction_plan, largest, placement, run_roi)
    if halo_plan is not None:
        window = block_bytes(dataset, scheme, halos, methods, input_dtypes, partitions)
        memory = MemoryEstimate(per_task=dict(memory.per_task, **{"halo rows": window}),
                                per_worker=memory.per_worker + window * placement.tasks_per_process,
                                main=dict(memory.main, tasks=memory.main["tasks"] + (
                                    window * placement.tasks_per_process
                                    if placement.in_main_process else 0)),
                                placement=placement)
        bytes_read += (halo_plan.frames_read - halo_plan.frames_owned) * frame_bytes
    store = None
    if out is not None:
        from .store.plan import plan_store

        store = plan_store(out, udfs, specs, nav_shape, sig_shape, total, part_plans,
                           placement.kind, store_cut)
    return RunPlan(
        dataset=dataset.description, nav_shape=tuple(nav_shape), sig_shape=tuple(sig_shape),
        dataset_dtype=np.dtype(stored), scheme=scheme, tiling_reason=tiling_why,
        zero_copy=zero_copy, partitions=tuple(part_plans),
        partition_reason=_partition_reason(dataset, len(dataset_partitions), nav_size, frame_bytes),
        udfs=tuple(udf_plans), processed_frames=total, bytes_read=bytes_read,
        memory=memory, halo=halo_plan,
        inputs=_Inputs(dataset=dataset, udfs=tuple(udfs), specs=tuple(specs), roi=run_roi,
                       positions=positions, corrections=correction_plan,
                       partitions=tuple(partitions)),
        sizing=sizing, small_run=small_run, executor_placement=executor_placement,
        store=store)


def _small_run(placement: Placement, sizing, part_plans, bytes_read: int, limit: int,
               udfs) -> str | None:
    """The small-run rule of :func:`plan_run` in words, or ``None`` where it does not apply."""
    if not limit or placement.in_main_process:
        return None
    tasks = sum(1 for p in part_plans if p.processed)
    if tasks > 1 or bytes_read > limit:
        return None
    work = ""
    if sizing is not None:
        # a run the workers would share by measured cost: small only where its work is known
        # to be small (from an earlier run of the same kind, or UDFs that stream)
        if sizing.known_cost is not None:
            per_frame, _ = sizing.known_cost
            seconds = per_frame * sum(p.processed for p in part_plans)
            if seconds > SMALL_RUN_SECONDS:
                return None
            work = f", {seconds * 1e3:.2g} ms of work measured before"
        elif all(getattr(type(u), "COST", None) == "streaming" for u in udfs):
            work = ", UDFs that stream"
        else:
            return None
    return (f"in the main process, not on a {placement.kind} worker: a small run ({tasks} task, "
            f"{_human(bytes_read)} read <= {_human(limit)}{work}) costs less here than a round "
            "trip to a worker; Context(small_run_bytes=0) or UDFKIT_SMALL_RUN_BYTES=0 turns this "
            "off")


def negotiate_tiling(dataset, requests, input_dtypes, *, roi=None, corrections=None,
                     negotiator: Negotiator | None = None,
                     partitions=None, copies: bool = False) -> tuple[TilingScheme, str, bool]:
    """The tiling scheme of a run with these tiling requests: ``(scheme, reason, zero_copy)``.

    The part of :func:`plan_run` that asks the negotiator, usable without UDF objects
    (``udfkit info`` asks what a ``process_tile`` UDF with float32 input would get).

    Parameters
    ----------
    dataset : DataSet
    requests : list of TilingRequest
    input_dtypes : list of dtype
        What the UDFs receive (one per UDF).
    roi : numpy.ndarray or None
        The run's flat ROI (a ROI makes tiles copies, sized for the cache).
    corrections : CorrectionPlan or None
    negotiator : Negotiator, optional
    partitions : list of Partition, optional
        ``dataset.get_partitions()`` when the caller has them.
    copies : bool
        Tiles are copies whatever the data set offers (a halo run gathers its frames into a
        window of rows), so they are sized for the cache.

    Examples
    --------
    >>> import numpy as np
    >>> from udfkit import Context
    >>> from udfkit.io.tiling import Negotiator, TilingRequest
    >>> ds = Context.make_with("inline").load("memory", data=np.zeros((4, 256, 256), "uint16"),
    ...                                       sig_dims=2)
    >>> scheme, why, zero_copy = negotiate_tiling(ds, [TilingRequest("tile")], [np.float32],
    ...                                           negotiator=Negotiator(copy_size="1MiB"))
    >>> scheme.shape, zero_copy
    ((4, 256, 256), False)
    """
    negotiator = negotiator or Negotiator()
    stored = dataset.dtype
    input_dtypes = [np.dtype(d) for d in input_dtypes]
    if partitions is None:
        partitions = dataset.get_partitions()
    requests = list(requests)
    if corrections is not None and corrections.needs_whole_frames:
        # a neighbourhood of an excluded pixel must not cross a tile border
        requests.append(TilingRequest(method="tile", whole_frames=True))
    # with a ROI most tiles have gaps and are copied: size them for the cache
    zero_copy = bool(dataset.supports_zero_copy and stored.isnative and roi is None
                     and corrections is None and all(d == stored for d in input_dtypes)
                     and not copies)
    scheme, why = negotiator.negotiate(
        requests, sig_shape=dataset.shape.sig.to_tuple(), dtype=np.result_type(*input_dtypes),
        max_partition_frames=max(p.num_frames for p in partitions),
        constraints=dataset.get_tiling_constraints(), zero_copy=zero_copy)
    return scheme, why, zero_copy


def _plan_corrections(corrections, sig_shape, where):
    if corrections is None:
        return None
    if not isinstance(corrections, CorrectionSet):
        raise TypeError(f"corrections: expected a CorrectionSet or None, got "
                        f"{type(corrections).__name__}")
    if corrections.is_empty:
        return None
    return corrections.plan(sig_shape, where=where)


def _dtype_reason(pref, native, corrected: bool, result) -> str:
    pref, native, result = np.dtype(pref), np.dtype(native), np.dtype(result)
    if pref == np.bool_:
        # UDF.USE_NATIVE_DTYPE is bool, which numpy's promotion turns into the stored dtype
        why = f"uses the stored dtype {native.name} (USE_NATIVE_DTYPE)"
    elif pref == native:
        why = f"asks for the stored dtype {native.name}"
    else:
        why = f"asks for {pref.name}, the data are {native.name}"
    if corrected:
        why += "; corrections make frames at least float32"
    return f"{why}: {result.name} (numpy promotion)" if result not in (pref, native) or corrected \
        else f"{why}: {result.name}"


def _buffer_plan(udf, name, spec, total, largest, nav_shape, sig_shape) -> BufferPlan:
    from .base import _overrides

    dtype = np.dtype(spec.dtype)
    main = buffer_shape(spec, total, sig_shape)
    result_only = spec.use == "result_only"
    part = () if result_only else buffer_shape(spec, largest, sig_shape)
    result = (tuple(nav_shape) + tuple(spec.extra_shape)) if spec.kind == "nav" else main
    # what _Bound sends back: public and private buffers when the UDF merges them itself
    returned = not result_only and (spec.use is None or spec.kind == "nav"
                                    or _overrides(type(udf), "merge"))
    return BufferPlan(name=name, kind=spec.kind, dtype=dtype, extra_shape=tuple(spec.extra_shape),
                      use=spec.use, shape=tuple(main), partition_shape=tuple(part),
                      result_shape=tuple(result), nbytes=prod(main) * dtype.itemsize,
                      partition_nbytes=prod(part) * dtype.itemsize if part else 0,
                      returned=returned)


def _transport(m: MemoryEstimate) -> str:
    # what a worker process copies for the way back (processes: only buffers under 64 KiB;
    # the larger ones are allocated in shared memory)
    copy = m.per_worker - m.task_bytes * m.placement.tasks_per_process
    return f" + transport copy {_human(copy)}" if copy > 0 else ""


def _bytes_read(dataset, frames: int, nav_size: int, frame_bytes: int) -> int:
    # a format that stores fewer bytes than dense frames (raw_csr: the non-zero entries) says
    # how many its frames hold; a ROI reads about its share of them
    meta = getattr(dataset, "meta", None)
    stored = getattr(meta, "metadata", {}).get("stored_bytes") if meta is not None else None
    if stored is None or nav_size == 0:
        return frames * frame_bytes
    return round(int(stored) * frames / nav_size)


def _partition_reason(dataset, count, nav_size, frame_bytes) -> str:
    # the generic rule of io.partitioning with what the data set was given; a format that
    # cuts its own partitions (one per file, per run of chunks) is named as such, one that
    # sizes them by other bytes than dense frames (raw_csr) says why itself
    own = getattr(dataset, "partition_reason", None)
    if callable(own):
        return own()
    args = (nav_size, frame_bytes, getattr(dataset, "_num_partitions_arg", None),
            getattr(dataset, "_num_workers", 1))
    align = getattr(dataset, "frame_alignment", 1)
    generic = partition_reason(*args, align=align)
    if align > 1 or len(partition_bounds(*args)) == count:
        return generic
    return (f"{generic}; but the {getattr(dataset, 'format_name', type(dataset).__name__)} "
            f"format cuts its own partitions (along files or chunks): {count}")


def _estimate(dataset, partitions, udfs, udf_plans, scheme, input_dtypes, stored, corrections,
              largest, placement: Placement, roi=None) -> MemoryEstimate:
    slice_items = max(s.shape.size for s in scheme.slices)
    # a partition with fewer processed frames than the depth gets shallower tiles
    depth = min(scheme.depth, max(1, largest))
    frame_items = prod(scheme.sig_shape)
    result_bufs = sum(b.partition_nbytes for u in udf_plans for b in u.buffers)
    returned = sum(b.partition_nbytes for u in udf_plans for b in u.buffers if b.returned)
    decoder = getattr(partitions[0], "decoder", None) if partitions else None
    dtypes = list(dict.fromkeys(np.dtype(d) for d in input_dtypes))
    tiles = 0
    corrected = 0
    if corrections is not None:
        source = corrections.source_dtype(stored, dtypes)
        if not _zero_copy_for(dataset, stored, source, roi) or decoder is not None:
            tiles += depth * (frame_items if decoder is not None else slice_items) * source.itemsize
        corrected = sum(depth * slice_items * d.itemsize for d in dtypes)
    else:
        for d in dtypes:
            if decoder is not None:
                out = d if decoder.supports_output(d) else np.dtype(decoder.dtype)
                tiles += depth * frame_items * out.itemsize
                if out != d:
                    # converted copy of each slice
                    tiles += depth * slice_items * d.itemsize
            elif not _zero_copy_for(dataset, stored, d, roi):
                tiles += depth * slice_items * d.itemsize
    backend = getattr(dataset, "io_backend", None)
    block = getattr(backend, "block_bytes", None) or 0
    reads = block * (2 if getattr(backend, "readahead", False) else 1)
    arrays = sum(_param_bytes(u, largest)[0] for u in udfs)
    aux = sum(_param_bytes(u, largest)[1] for u in udfs)
    # array parameters (masks...) on a worker process: the message received, the pickled
    # task and the unpickled arrays; in the main process the task uses the caller's arrays,
    # and what a UDF prepares from them (masks cut per signal slice) is of their size
    params = aux + arrays * (3 if placement.transport_copy else 1)
    per_task = {"result buffers": result_bufs, "tiles": tiles, "corrected tiles": corrected,
                "read buffers": reads, "parameters": params}
    task = sum(per_task.values())
    if placement.kind == "processes":
        # a processes worker allocates returned buffers of 64 KiB or more in shared memory,
        # which travel by name: only the smaller ones are copied into the message
        transport = sum(b.partition_nbytes for u in udf_plans for b in u.buffers
                        if b.returned and b.partition_nbytes < SHARED_MIN_BYTES)
    else:
        transport = returned if placement.transport_copy else 0
    per_worker = task * placement.tasks_per_process + transport
    full = sum(b.nbytes for u in udf_plans for b in u.buffers if b.use != "result_only")
    made = sum(b.nbytes for u in udf_plans for b in u.buffers if b.use == "result_only")
    main = {"result buffers": full, "get_results": made,
            # a partition result being merged: the mapped shared memory or unpickled arrays
            # of another process's result; in the main process one of the tasks' own sets
            # (a merged result is dropped before inline runs the next task; a threads run
            # with large buffers waits for the merge before a thread starts another task,
            # see runner.ResultGate), or one more where small buffers are not waited for
            "merging": (0 if placement.kind == "inline" or result_bufs >= GATE_MIN_BYTES
                        else returned) if placement.in_main_process else returned,
            "tasks": task * placement.tasks_per_process if placement.in_main_process else 0,
            # a task being sent: the pickled task and the message that carries it
            "task messages": 2 * arrays if placement.transport_copy else 0}
    return MemoryEstimate(per_task=per_task, per_worker=per_worker, main=main,
                          placement=placement)


def _zero_copy_for(dataset, stored, dest, roi=None) -> bool:
    # with a ROI a block of frames has gaps, which the tile cutter copies into its buffer
    # (it is allocated at the first such block, so count it whenever there is a ROI)
    return bool(dataset.supports_zero_copy and np.dtype(dest) == stored and stored.isnative
                and roi is None)


def _param_bytes(udf, largest: int) -> tuple[int, int]:
    """``(arrays, aux)``: bytes of a UDF's array parameters and of its aux data cut to the
    largest partition."""
    arrays = aux = 0
    for v in udf._kwargs.values():
        if isinstance(v, AuxData):
            aux += largest * prod(v.extra_shape or ()) * np.dtype(v.dtype).itemsize
        elif isinstance(v, np.ndarray):
            arrays += v.nbytes
    return arrays, aux
