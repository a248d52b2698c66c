"""Running a list of UDFs over one partition (the worker side).

A :class:`PartitionTask` is what an executor ships to a worker: the partition description,
the UDF classes with their keyword arguments, the tiling scheme, the input dtype and the
partition's part of the ROI. Calling it rebuilds the UDFs, allocates partition-sized
buffers, streams the tiles through every UDF, and returns a :class:`PartitionResult` with
the public buffers. All UDFs of a run see the same tiles, so the data are read once.

Per-tile work is kept small: signal-buffer views are made once per signal slice of the
scheme, nav views are plain slices, and ``self.meta`` builds ``slice`` and ``coordinates``
only when a UDF asks for them.

Nav coordinates: a tile knows the rows of its frames among the partition's processed frames
(``processed_start``); adding the partition's first row among the run's processed frames
(``processed_offset``, counted on the main process) gives ``meta.slice`` its ROI-reduced
origin, the coordinates in which nav buffers, aux data and results are laid out.

With corrections, the partition is read once, in the stored dtype where the correction
kernel can read it directly, and each input dtype's group of UDFs gets the tiles corrected
(and converted) in one pass into its own reused buffer; the source tiles are never written.

Result buffers: the ones a task returns come from the process's result allocator
(:mod:`udfkit.common.allocation`; shared memory on a ``processes`` worker, so that sending
them copies nothing), scratch ones from numpy; a task that fails gives its buffers back.
When the task ends, the UDFs' views of the buffers are dropped, so the returned result is
their only owner. In a ``threads`` run a :class:`ResultGate` keeps a thread from allocating
for its next task while its last result waits to be merged.
"""

from __future__ import annotations

import threading
import time

import numpy as np

from ..common import Shape, Slice
from ..common.allocation import discard_results, result_zeros
from ..common.shared import unwrap
from ..common.udf import (BACKEND_NUMPY, BACKEND_SCIPY_COO, BACKEND_SCIPY_COO_ARRAY,
                          BACKEND_SCIPY_CSR, D2_BACKENDS as _D2, convert_tile, is_sparse_backend)
from ..io.halo import HaloUnit
from .base import _overrides
from .buffers import AuxData, BufferNamespace, Namespace, buffer_shape
from .meta import UDFMeta
from .validation import tiling_request

__all__ = ["PartitionTask", "PartitionResult", "ResultGate", "run_partition", "GATE_MIN_BYTES"]

#: partition buffers of a task from which a threads run holds no more results than threads
#: (:class:`ResultGate`); below it, a thread's wait for the merge would cost more than the
#: memory it saves
GATE_MIN_BYTES = 16 << 20


class PartitionResult:
    """What a worker sends back: the public buffers of every UDF for one partition.

    Attributes
    ----------
    partition_index : int
    buffers : list of dict
        One ``{name: ndarray}`` per UDF (partition-sized nav buffers, full sig buffers).
    frames : int
        Number of frames processed.
    elapsed : float
        Seconds the task ran on its worker (work-sized partitions measure the cost per
        frame from it, :mod:`udfkit.udf.worksize`).
    """

    __slots__ = ("partition_index", "buffers", "frames", "elapsed")

    def __init__(self, partition_index: int, buffers: list, frames: int, elapsed: float = 0.0):
        self.partition_index = partition_index
        self.buffers = buffers
        self.frames = frames
        self.elapsed = elapsed

    def __reduce__(self):
        return (PartitionResult, (self.partition_index, self.buffers, self.frames, self.elapsed))


class ResultGate:
    """At most ``limit`` partition results alive at once in this process.

    A task that runs in the main process (``threads``) takes a place before it allocates its
    buffers; the run gives the place back once the task's result is merged. Without it, a
    thread that finishes a task starts the next one at once, and three sets of buffers are
    alive where two would do (the next task's, the result waiting to be merged, the full
    ones). :meth:`open` lets every waiting and later task through (the run ended early).
    Not sent to other processes: a pickled task has no gate.
    """

    def __init__(self, limit: int):
        self._cond = threading.Condition()
        self._limit = max(1, int(limit))
        self._held = 0
        self._open = False

    def acquire(self) -> None:
        with self._cond:
            while self._held >= self._limit and not self._open:
                self._cond.wait()
            self._held += 1

    def release(self) -> None:
        with self._cond:
            self._held = max(0, self._held - 1)
            self._cond.notify()

    def open(self) -> None:
        with self._cond:
            self._open = True
            self._cond.notify_all()


class PartitionTask:
    """Run UDFs over one partition; picklable, called on a worker.

    Parameters
    ----------
    partition : Partition
    udfs : list of (type, dict)
        UDF classes and constructor kwargs (aux data already cut to this partition); a value
        may be wrapped in :class:`~udfkit.common.shared.Shared` (it then travels once per
        worker and run, not in every task).
    methods : list of str
    scheme : TilingScheme
    input_dtypes : list of numpy.dtype
        One per UDF: the dtype its tiles arrive in.
    roi : numpy.ndarray or None
        Partition-local ROI (bool per position of the partition).
    run_roi : numpy.ndarray or Shared or None
        The run's flat ROI over the whole data set (for ``self.meta.roi``).
    dataset_shape : Shape
    dataset_dtype : numpy.dtype
    corrections : CorrectionPlan or Shared or None
        Applied to every tile before the UDFs see it.
    processed_offset : int
        Processed frames of the run before this partition: the ROI-reduced nav origin of its
        first frame (``meta.slice``).
    backends : list of str, optional
        One per UDF: the array backend its data arrive in (default: numpy for all); a sparse
        one gets each tile converted.
    """

    def __init__(self, *, partition, udfs, methods, scheme, input_dtypes, roi, run_roi,
                 dataset_shape, dataset_dtype, corrections=None, processed_offset=0,
                 backends=None):
        self.partition = partition
        self.udfs = udfs
        self.methods = methods
        self.scheme = scheme
        self.input_dtypes = [np.dtype(dt) for dt in input_dtypes]
        self.roi = roi
        # possibly Shared (see the properties): the same in every task of a run
        self._run_roi = run_roi
        self.dataset_shape = dataset_shape
        self.dataset_dtype = np.dtype(dataset_dtype)
        self._corrections = corrections
        self.processed_offset = int(processed_offset)
        self.backends = list(backends) if backends is not None else ["numpy"] * len(udfs)
        #: a :class:`ResultGate` where the task runs in the main process (set by the run)
        self.gate = None
        #: results on disk: ``writer(task, result) -> result`` writes the nav rows this
        #: worker owns into the store (:mod:`udfkit.udf.store.direct`; set by the run)
        self.writer = None

    def __getstate__(self):
        state = dict(self.__dict__)
        state["gate"] = None  # a place in this process's gate means nothing elsewhere
        return state

    @property
    def run_roi(self):
        return unwrap(self._run_roi)

    @property
    def corrections(self):
        return unwrap(self._corrections)

    @property
    def index(self) -> int:
        return self.partition.index

    @property
    def frames(self) -> int:
        """Frames this task will process (for progress reporting)."""
        return int(self.partition.selected_positions(self.roi).size)

    def __call__(self, progress=None) -> PartitionResult:
        result = run_partition(self, progress)
        return result if self.writer is None else self.writer(self, result)

    def __repr__(self):
        return f"PartitionTask({self.partition!r}, udfs={[c.__name__ for c, _ in self.udfs]})"


class _Bound:
    """One UDF instance on a worker with its buffers and precomputed views."""

    def __init__(self, udf, method, specs, n, sig_shape, scheme, backend="numpy"):
        self.udf = udf
        self.method = method
        self.backend = backend
        self.specs = specs
        # what goes back for merging: public and private buffers (LiberTEM merges private ones
        # too); without a merge of its own, private sig/single buffers stay worker scratch
        custom_merge = _overrides(type(udf), "merge")
        kept = [name for name, spec in specs.items() if spec.use != "result_only"]
        self.returned = [name for name in kept
                         if specs[name].use is None or custom_merge or specs[name].kind == "nav"]
        # returned buffers come from the process's result allocator (shared memory on a
        # processes worker: sending them back then copies nothing); scratch from numpy
        self.arrays = {}
        try:
            for name in kept:
                shape = buffer_shape(specs[name], n, sig_shape)
                self.arrays[name] = (result_zeros(shape, specs[name].dtype)
                                     if name in self.returned
                                     else np.zeros(shape, dtype=specs[name].dtype))
        except BaseException:
            self.discard()
            raise
        self.nav = [(name, arr, bool(specs[name].extra_shape))
                    for name, arr in self.arrays.items() if specs[name].kind == "nav"]
        self.aux = [(name, v.data, bool(v.extra_shape)) for name, v in udf._kwargs.items()
                    if isinstance(v, AuxData)]
        # frames per process_frame_stack call: the UDF's own depth preference, so that it
        # gets its k from a deeper shared tile (None: the whole tile)
        self.stack_depth = (tiling_request(udf, method).depth if method == "frame_stack"
                            else None)
        fixed = {name: arr for name, arr in self.arrays.items() if specs[name].kind == "single"}
        sig = {name: arr for name, arr in self.arrays.items() if specs[name].kind == "sig"}
        if method == "tile":
            self.per_slice = [dict(fixed, **{name: arr[sl.get()] for name, arr in sig.items()})
                              for sl in scheme.slices]
        else:
            self.per_slice = [dict(fixed, **sig)] * len(scheme.slices)

    def discard(self):
        """Give back the returned buffers (the task failed: nothing is returned)."""
        discard_results(self.arrays[name] for name in self.returned if name in self.arrays)

    def bind_whole(self):
        """Views for the whole partition (preprocess, process_partition, postprocess)."""
        self.udf.results = BufferNamespace(self.arrays, self.specs)
        params = self.udf.params.__dict__
        for name, arr, _ in self.aux:
            params[name] = arr


class _ProgressReports:
    """Frames done, reported at most every ``interval`` seconds (the last ones come with
    the result)."""

    def __init__(self, report, interval=0.2):
        self.report = report
        self.interval = interval
        self.pending = 0
        self.last = time.monotonic()

    def __call__(self, frames: int) -> None:
        self.pending += frames
        now = time.monotonic()
        if now - self.last >= self.interval:
            self.report(self.pending)
            self.pending = 0
            self.last = now


def run_partition(task: PartitionTask, progress=None) -> PartitionResult:
    """Process one partition (see the module docstring).

    ``progress(frames)``, if given, is called now and then with the frames done since the
    last call (frames still unreported when the partition ends are not reported).
    """
    started = time.perf_counter()
    part = task.partition
    scheme = task.scheme
    sig_shape = task.dataset_shape.sig.to_tuple()
    n = int(part.selected_positions(task.roi).size)
    partition_shape = Shape((n,) + sig_shape, sig_dims=len(sig_shape))
    full_sig = Slice((0,) * len(sig_shape), Shape(sig_shape, sig_dims=len(sig_shape)))
    offset = task.processed_offset
    # one meta per (input dtype, backend): UDFs that get the same data share it
    metas = {(dtype, backend): UDFMeta(
                 dataset_shape=task.dataset_shape, dataset_dtype=task.dataset_dtype,
                 input_dtype=dtype, roi=task.run_roi, tiling_scheme=scheme,
                 partition_shape=partition_shape, array_backend=backend,
                 corrections=task.corrections)
             for dtype, backend in zip(task.input_dtypes, task.backends)}
    bound = []  # UDFs whose preprocess ran (their cleanup runs)
    made = []  # every _Bound made: their buffers are given back if the task fails
    gate = task.gate
    if gate is not None:
        gate.acquire()
    try:
        for meta in metas.values():
            # get_task_data and preprocess see the whole partition, as in LiberTEM
            meta._set_unit(None, full_sig, offset, n)
        for (cls, kwargs), method, dtype, backend in zip(task.udfs, task.methods,
                                                         task.input_dtypes, task.backends):
            udf = cls(**{k: unwrap(v) for k, v in kwargs.items()})
            udf.meta = metas[(dtype, backend)]
            specs = udf.get_result_buffers()
            udf.task_data = Namespace(udf.get_task_data() or {})
            b = _Bound(udf, method, specs, n, sig_shape, scheme, backend)
            made.append(b)
            b.bind_whole()
            udf.preprocess()
            bound.append(b)
        if n:
            _process(part, task, bound, sig_shape,
                     None if progress is None else _ProgressReports(progress))
        for b in bound:
            b.bind_whole()
            b.udf.meta._set_unit(None, full_sig, offset, n)
            b.udf.postprocess()
        buffers = [{name: b.arrays[name] for name in b.returned} for b in bound]
    except BaseException:
        for b in made:
            b.discard()
        if gate is not None:
            gate.release()  # no result to merge: the run gives nothing back for it
        raise
    finally:
        for b in bound:
            b.udf.cleanup()
        # the UDFs keep views of their buffers in self.results: drop them, so that the
        # result is the buffers' only owner (a processes worker frees its segment mappings
        # as soon as the result is sent)
        for b in made:
            b.udf.results = BufferNamespace()
            b.arrays = b.per_slice = b.nav = None
        bound.clear()
        made.clear()
    return PartitionResult(part.index, buffers, n, time.perf_counter() - started)


def _process(part, task, bound, sig_shape, progress=None):
    """Stream the partition's tiles through the UDFs.

    UDFs are grouped by input dtype; each group has its own tile stream, and the streams
    advance in lockstep (same scheme, same frames), so every tile's bytes are read while
    they are still in the cache (zero-copy views cost nothing; a decoded stream reads its
    tile once).

    A group's stream is sparse (the partition's CSR row blocks, never densified) when the
    partition can give one (``raw_csr``), the scheme has whole frames, there are no
    corrections and some UDF of the group runs on a sparse backend; otherwise it is dense.
    The feeder converts each tile once per other form its UDFs want.
    """
    if isinstance(part, HaloUnit):
        # a halo run: rows plus neighbourhood, read and fed by the halo module
        from .halo import process_halo

        process_halo(part, task, bound, sig_shape, progress)
        return
    by_dtype = {}
    for b, dtype in zip(bound, task.input_dtypes):
        by_dtype.setdefault(dtype, []).append(b)
    sparse_source = getattr(part, "sparse_backend", None)
    if task.corrections is not None or len(task.scheme.slices) != 1:
        sparse_source = None
    sources = [sparse_source if sparse_source is not None
               and any(is_sparse_backend(b.backend) for b in group) else BACKEND_NUMPY
               for group in by_dtype.values()]
    feeders = [_Feeder(group, task.scheme, sig_shape, task.processed_offset, source)
               for group, source in zip(by_dtype.values(), sources)]
    last_slice = len(task.scheme) - 1
    if task.corrections is not None:
        _process_corrected(part, task, list(by_dtype), feeders, progress, last_slice)
        return
    # deeper sparse tiles where no dense stream has to keep in step and no UDF of the group
    # wants dense frames made from them
    deep = len(by_dtype) == 1 and all(is_sparse_backend(b.backend) for b in bound)
    streams = [part.get_tiles(task.scheme, dtype, task.roi) if source == BACKEND_NUMPY
               else part.get_sparse_tiles(task.scheme, dtype, task.roi,
                                          max_entries=SPARSE_TILE_ENTRIES if deep else None)
               for dtype, source in zip(by_dtype, sources)]
    if len(streams) == 1:
        feed = feeders[0]
        for tile in streams[0]:
            feed(tile)
            if progress is not None and tile.scheme_idx == last_slice:
                progress(tile.data.shape[0])
        return
    for tiles in zip(*streams):
        for tile, feed in zip(tiles, feeders):
            feed(tile)
        if progress is not None and tiles[0].scheme_idx == last_slice:
            progress(tiles[0].data.shape[0])


def _process_corrected(part, task, dtypes, feeders, progress, last_slice):
    """One source stream; each dtype group gets it corrected into its own buffer."""
    plan = task.corrections
    correctors = [plan.corrector(task.scheme, dtype) for dtype in dtypes]
    source = part.get_tiles(task.scheme, plan.source_dtype(part.raw_dtype, dtypes), task.roi)
    pairs = list(zip(correctors, feeders))
    for tile in source:
        for correct, feed in pairs:
            feed(correct(tile))
        if progress is not None and tile.scheme_idx == last_slice:
            progress(tile.data.shape[0])


#: stored entries a sparse tile holds on average, where tiles may be deeper than the scheme's:
#: a tile has a fixed cost (building the matrix, one call per UDF), so a few thousand frames
#: of a 0.1 % scan per tile instead of the dense scheme's tens
SPARSE_TILE_ENTRIES = 1 << 18

#: 2D formats whose rows cannot be sliced out: their frames are cut from this form
_ROWS_FROM = {BACKEND_SCIPY_COO: BACKEND_SCIPY_CSR, BACKEND_SCIPY_COO_ARRAY: BACKEND_SCIPY_CSR}


class _Feeder:
    """Hands tiles (or their frames) to the UDFs of one dtype group, each in the array
    backend it runs on: the stream's own form (``source``) as it is, other forms converted
    once per tile and shared by the UDFs that want them."""

    def __init__(self, bound, scheme, sig_shape, processed_offset=0, source=BACKEND_NUMPY):
        self.scheme = scheme
        self.tile_udfs = [b for b in bound if b.method in ("tile", "partition", "frame_stack")]
        self.frame_udfs = [b for b in bound if b.method == "frame"]
        self.full_sig = Slice((0,) * len(sig_shape), Shape(sig_shape, sig_dims=len(sig_shape)))
        self.offset = int(processed_offset)
        self.source = source
        self.sig_parts = [sl.shape.to_tuple() for sl in scheme.slices]
        self._densify = None

    def _converter(self, data, idx):
        """``get(backend)``: the tile ``data`` in ``backend``, converted at most once."""
        cache = {self.source: data}
        shape = (data.shape[0],) + self.sig_parts[idx]

        def get(backend):
            arr = cache.get(backend)
            if arr is None:
                if backend == BACKEND_NUMPY and self.source.startswith("scipy.sparse.csr"):
                    if self._densify is None:
                        from ..io.formats._csr import CSRDensifier

                        self._densify = CSRDensifier()
                    arr = self._densify(data, shape)
                else:
                    arr = convert_tile(data, self.source, backend, shape)
                cache[backend] = arr
            return arr
        return get

    def __call__(self, tile):
        k0 = tile.processed_start
        data = tile.data
        depth = data.shape[0]
        idx = tile.scheme_idx
        sig_slice = self.scheme.slices[idx]
        origin = self.offset + k0
        get = self._converter(data, idx)
        for b in self.tile_udfs:
            udf = b.udf
            arg = data if b.backend == self.source else get(b.backend)
            # frame stacks: the tile in stacks of the UDF's own depth; others: the tile
            step = depth if b.stack_depth is None else min(depth, b.stack_depth)
            for i0 in range(0, depth, step):
                n = min(step, depth - i0)
                a = k0 + i0
                views = dict(b.per_slice[idx])
                for name, arr, _ in b.nav:
                    views[name] = arr[a:a + n]
                udf.results = BufferNamespace(views, b.specs)
                params = udf.params.__dict__
                for name, arr, _ in b.aux:
                    params[name] = arr[a:a + n]
                if n == depth:
                    udf.meta._set_unit(tile.frame_index, sig_slice, origin, depth, idx)
                    part = arg
                else:
                    udf.meta._set_unit(tile.frame_index[i0:i0 + n], sig_slice, origin + i0, n,
                                       idx)
                    part = arg[i0:i0 + n]
                if b.method == "tile":
                    udf.process_tile(part)
                elif b.method == "frame_stack":
                    udf.process_frame_stack(part)
                else:
                    udf.process_partition(part)
        if self.frame_udfs:
            self._frames(tile, k0, get, depth, idx)

    def _frames(self, tile, k0, get, depth, idx):
        full_sig = self.full_sig
        offset = self.offset
        # each UDF's form of the whole tile; a frame is then one row of it (2D sparse formats
        # keep a leading axis of 1, as LiberTEM's sparse frames)
        # one namespace per UDF and tile: per frame only its nav views change (a new
        # namespace and dict per frame cost about 1 us, half the fixed cost of a frame)
        forms = [(b, get(_ROWS_FROM.get(b.backend, b.backend)), b.backend in _D2,
                  BufferNamespace(dict(b.per_slice[idx]), b.specs)) for b in self.frame_udfs]
        for i in range(depth):
            k = k0 + i
            fidx = tile.frame_index[i:i + 1]
            for b, data, d2, ns in forms:
                udf = b.udf
                views = ns.__dict__
                for name, arr, extra in b.nav:
                    views[name] = arr[k] if extra else arr[k:k + 1]
                udf.results = ns
                params = udf.params.__dict__
                for name, arr, extra in b.aux:
                    params[name] = arr[k] if extra else arr[k:k + 1]
                udf.meta._set_unit(fidx, full_sig, offset + k, 1, idx)
                if b.backend in _ROWS_FROM:
                    # COO cannot be sliced: the frame is cut from the CSR form
                    frame = convert_tile(data[i:i + 1], BACKEND_SCIPY_CSR, b.backend,
                                         (1,) + self.sig_parts[idx])
                else:
                    frame = data[i:i + 1] if d2 else data[i]
                udf.process_frame(frame)
