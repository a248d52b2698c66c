"""The run plan (``Context.plan``, :func:`udfkit.udf.plan.plan_run`) agrees with the run.

The property test plans a run, then runs it and records what actually happened: the tasks
the executor was given and the partition results it returned (partition index, processed
frames, buffer names and shapes), the tile shapes every UDF saw (written by the UDFs into
their own result buffers, so the record comes back from worker processes too) and the
final result shapes and dtypes. All of it must equal the plan, across formats (memory, raw,
npy, HDF5), dtypes, ROIs, ``sync_offset``, corrections, tiling preferences and executors.
"""

from __future__ import annotations

import contextlib
import json
import os
from math import prod

import numpy as np
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from udfkit import UDF, Context, CorrectionSet
from udfkit.io.tiling import Negotiator, TilingRequest
from udfkit.testing import SharedContexts
from udfkit.testing.profiles import examples
from udfkit.testing.strategies import cases
from udfkit.testing.strategies import load as load_case
from udfkit.udf import ApplyMasksUDF, StdDevUDF, SumSigUDF, SumUDF
from udfkit.udf.driver import UDFRun
from udfkit.udf.plan import RunPlan, negotiate_tiling, placement_of, plan_run

EXECUTORS = {"inline": ("inline", {}), "threads": ("threads", {"cpus": 2}),
             "processes": ("processes", {"cpus": 2})}
shared_context = SharedContexts(EXECUTORS)
_close_shared_contexts = shared_context.closing_fixture()


# -- UDFs that record what they were given --------------------------------------------------

class RecordTiles(UDF):
    """Writes the depth of each tile into a nav buffer and each signal slice's shape into
    the sig pixels it covers; counts tiles. Tiling wishes come from the parameters."""

    def __init__(self, depth=None, total_size=None, native=False, whole=False, **kwargs):
        super().__init__(depth=depth, total_size=total_size, native=native, whole=whole, **kwargs)

    def get_preferred_input_dtype(self):
        return self.USE_NATIVE_DTYPE if self.params.native else np.float32

    def get_tiling_preferences(self):
        prefs = {"whole_frames": self.params.whole}
        if self.params.depth is not None:
            prefs["depth"] = self.params.depth
        if self.params.total_size is not None:
            prefs["total_size"] = self.params.total_size
        return prefs

    def get_result_buffers(self):
        ndim = len(self.meta.dataset_shape.sig)
        return {"depth": self.buffer(kind="nav", dtype="int64"),
                "part": self.buffer(kind="sig", extra_shape=(ndim,), dtype="int64"),
                "dtype_ok": self.buffer(kind="single", dtype="int64")}

    def process_tile(self, tile):
        self.results.depth[:] = tile.shape[0]
        self.results.part[:] = np.asarray(tile.shape[1:], dtype=np.int64)
        # every tile arrives in the planned input dtype (0: yes; counts the tiles that do not)
        self.results.dtype_ok[:] += int(tile.dtype != self.meta.input_dtype)

    def merge(self, dest, src):
        dest.depth[:] = src.depth
        dest.part[:] = np.maximum(dest.part, src.part)
        dest.dtype_ok[:] += src.dtype_ok


class RecordFrames(UDF):
    """A process_frame UDF with a private sig buffer and a per-frame extra shape."""

    def get_result_buffers(self):
        return {"n": self.buffer(kind="nav", extra_shape=(2,), dtype="float32"),
                "scratch": self.buffer(kind="sig", dtype="float64", use="private")}

    def process_frame(self, frame):
        self.results.n[:] = (frame.size, frame.ndim)


# -- the run, recorded ------------------------------------------------------------------------

@contextlib.contextmanager
def recording(executor):
    """Record ``(partition index, frames, [{name: (shape, dtype)}])`` of every partition
    result, and the tasks' schemes, while a run goes through ``executor``."""
    seen = {"results": [], "schemes": [], "tasks": [], "pieces": []}
    inner = executor.run_tasks

    def note(t):
        seen["tasks"].append((t.partition.index, t.frames))
        seen["schemes"].append(t.scheme)
        seen["pieces"].append((t.partition.index, t.partition.start, t.partition.stop, t.frames))
        return t

    def run_tasks(tasks, *args, **kwargs):
        if hasattr(tasks, "next_task"):
            # a run that cuts its partitions while it goes: record each task as it is cut
            tasks = _RecordingSource(tasks, note)
        else:
            tasks = [note(t) for t in tasks]
        for index, result in inner(tasks, *args, **kwargs):
            seen["results"].append((result.partition_index, result.frames,
                                    [{k: (v.shape, v.dtype) for k, v in b.items()}
                                     for b in result.buffers]))
            yield index, result

    executor.run_tasks = run_tasks
    try:
        yield seen
    finally:
        del executor.run_tasks


class _RecordingSource:
    """A task source that notes every task it hands on."""

    def __init__(self, source, note):
        self.source = source
        self.note = note

    def next_task(self):
        t = self.source.next_task()
        return t if t is None else self.note(t)


def check_agrees(plan: RunPlan, seen: dict, results: list, udfs: list) -> None:
    parts = {p.index: p for p in plan.partitions}
    if plan.sizing is not None:
        # cut while the run went: the pieces tile the planned partitions with frames, in nav
        # order (indices from 0), and the checks below hold for the pieces
        parts = _pieces_tile_the_plan(plan, seen["pieces"])
    else:
        # tasks: one per partition with processed frames, with the planned frame counts
        assert sorted(seen["tasks"]) == sorted((p.index, p.processed) for p in plan.partitions
                                               if p.processed)
        assert len(seen["tasks"]) == plan.num_tasks
    assert all(s == plan.scheme for s in seen["schemes"])
    assert sorted((i, n) for i, n, _ in seen["results"]) == sorted(seen["tasks"])
    assert sum(n for _, n, _ in seen["results"]) == plan.processed_frames
    # partition-sized buffers on the workers: names, shapes and dtypes of the plan
    for index, _, buffers in seen["results"]:
        for uplan, got in zip(plan.udfs, buffers):
            want = {b.name: b for b in uplan.buffers if b.returned}
            assert set(got) == set(want)
            for name, (shape, dtype) in got.items():
                b = want[name]
                assert dtype == b.dtype
                if b.kind == "nav":
                    assert shape == (parts[index].processed,) + b.extra_shape
                else:
                    assert shape == b.partition_shape
    largest = max((p.processed for p in plan.partitions), default=0)
    for uplan in plan.udfs:
        for b in uplan.buffers:
            if b.kind == "nav" and b.partition_shape:
                assert b.partition_shape[0] == largest
    # the deepest tile: of the largest partition that ran (a piece may be smaller)
    largest = max((p.processed for p in parts.values()), default=0)
    # main-side buffers and results
    for uplan, res in zip(plan.udfs, results):
        for b in uplan.buffers:
            if b.use == "private":
                assert b.name not in res
                continue
            assert res[b.name].data.shape == b.result_shape
            assert res[b.name].raw_data.shape == b.shape
            assert res[b.name].raw_data.dtype == b.dtype
    # tiles: what the recording UDFs saw
    for uplan, udf, res in zip(plan.udfs, udfs, results):
        if not isinstance(udf, RecordTiles) or plan.processed_frames == 0:
            continue
        assert int(res["dtype_ok"].raw_data[0]) == 0
        assert uplan.input_dtype == udf.meta.input_dtype
        depths = res["depth"].raw_data
        assert depths.max() <= plan.scheme.depth
        # the deepest tile is the planned depth unless no partition has that many frames
        assert depths.max() == min(plan.scheme.depth, largest)
        part = res["part"].raw_data
        for sl in plan.scheme:
            assert (part[sl.get()] == np.asarray(sl.shape.to_tuple())).all()


def _pieces_tile_the_plan(plan: RunPlan, pieces: list) -> dict:
    pieces = sorted(pieces)
    assert [i for i, *_ in pieces] == list(range(len(pieces)))
    it = iter(pieces)
    out = {}
    for p in plan.partitions:
        if not p.processed:
            continue
        got = []
        while sum(n for *_, n in got) < p.processed:
            got.append(next(it))
        assert got[0][1] == p.start and got[-1][2] == p.stop
        assert all(a[2] == b[1] for a, b in zip(got, got[1:]))
        assert all(n > 0 for *_, n in got)
        out.update({i: _Piece(n) for i, _, _, n in got})
    assert next(it, None) is None
    return out


class _Piece:
    def __init__(self, processed):
        self.processed = processed


def _write_hdf5(case, tmpdir) -> str:
    import h5py

    path = os.path.join(str(tmpdir), "data.h5")
    data = case.stored.reshape(case.nav_shape + case.sig_shape)
    with h5py.File(path, "w") as f:
        f.create_dataset("data", data=data)
    return path


@st.composite
def runs(draw, max_nav=6):
    """A data set case, a format and the recording UDFs with tiling wishes."""
    fmt = draw(st.sampled_from(["memory", "raw", "npy", "hdf5"]))
    as_hdf5 = fmt == "hdf5"
    # HDF5 through h5py: a data set of the whole nav shape (written from the raw case)
    case = draw(cases(formats=["raw"] if as_hdf5 else [fmt], max_nav=max_nav, max_sig=9,
                      partial=not as_hdf5, sync=not as_hdf5,
                      dtypes=["uint8", "uint16", ">u2", "int32", "float32", "float64"]))
    if draw(st.booleans()):
        # the format's own count, which a run on several workers may cut by measured cost
        case.num_partitions = None
    udfs = [RecordTiles(depth=draw(st.one_of(st.none(), st.integers(1, 7))),
                        total_size=draw(st.one_of(st.none(), st.integers(8, 4096))),
                        native=draw(st.booleans()), whole=draw(st.booleans()))]
    if draw(st.booleans()):
        udfs.append(RecordTiles(native=draw(st.booleans())))
    if draw(st.booleans()):
        udfs.append(RecordFrames())
    corrections = None
    kind = draw(st.sampled_from(["none", "none", "dark", "excluded"]))
    if kind != "none":
        # corrected frames are float (at least float32); excluded pixels need whole frames
        mask = np.zeros(case.sig_shape, bool)
        if kind == "excluded" and mask.size > 1:  # one pixel must stay valid
            mask.flat[draw(st.integers(0, mask.size - 1))] = True
        corrections = CorrectionSet(dark=np.full(case.sig_shape, 0.5),
                                    excluded_pixels=mask if mask.any() else None)
    return case, as_hdf5, udfs, corrections


def _load(ctx, case, as_hdf5, tmpdir):
    if as_hdf5:
        return ctx.load("hdf5", path=_write_hdf5(case, tmpdir), ds_path="data",
                        sig_dims=len(case.sig_shape), num_partitions=case.num_partitions)
    return load_case(ctx, case, tmpdir)


@pytest.mark.parametrize("executor,n", [("inline", 40), ("threads", 8), ("processes", 4)])
def test_plan_agrees_with_run(executor, n, tmp_path_factory):
    ctx = shared_context(executor)

    @settings(max_examples=examples(n), deadline=None,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
    @given(runs(max_nav=6 if executor == "inline" else 10))
    def check(drawn):
        case, as_hdf5, udfs, corrections = drawn
        tmpdir = tmp_path_factory.mktemp("plan")
        ds = _load(ctx, case, as_hdf5, tmpdir)
        event("hdf5" if as_hdf5 else case.fmt)
        event("roi" if case.roi is not None else "no roi")
        plan = ctx.plan(ds, udfs, roi=case.roi, corrections=corrections)
        event("cut while running" if plan.sizing is not None else "as planned")
        with recording(ctx.executor) as seen:
            results = ctx.run_udf(ds, udfs, roi=case.roi, corrections=corrections)
        check_agrees(plan, seen, results, udfs)
        if corrections is not None:
            assert all(u.input_dtype.kind == "f" and u.input_dtype.itemsize >= 4
                       for u in plan.udfs)
            if corrections.excluded_pixels is not None:
                assert plan.tile_shape[1:] == case.sig_shape
        assert plan.bytes_read == plan.processed_frames * prod(case.sig_shape) * case.dtype.itemsize

    check()


# -- plan facts on a fixed case --------------------------------------------------------------

@pytest.fixture
def ctx():
    with Context.make_with("inline") as c:
        yield c


def test_memory_estimate_counts_buffers_and_tiles(ctx):
    data = np.zeros((8, 8, 64, 64), dtype=">u2")
    ds = ctx.load("memory", data=data, num_partitions=4)
    plan = plan_run(ds, [SumUDF(), StdDevUDF()], executor=ctx.executor,
                    negotiator=Negotiator(copy_size="1MiB"))
    # big-endian data: the built-ins read native uint16, so every tile is a byte-swapped copy
    assert [u.input_dtype for u in plan.udfs] == [np.dtype("uint16")] * 2
    assert not plan.zero_copy
    frames = 16
    sig = 64 * 64 * 8
    assert plan.memory.per_task["result buffers"] == sig * 3 + 8
    depth = min(plan.scheme.depth, frames)
    assert plan.memory.per_task["tiles"] == depth * 64 * 64 * 2
    # inline: the task runs in the main process next to the full buffers
    assert plan.memory.main["tasks"] == plan.memory.task_bytes
    assert plan.memory.main["get_results"] == 3 * sig
    # get_results runs after the last partition is merged and released
    during = plan.memory.main["tasks"] + plan.memory.main["merging"]
    assert during > 3 * sig
    assert plan.memory.main_bytes == plan.memory.main["result buffers"] + during
    assert plan.memory.per_worker == plan.memory.task_bytes
    # intensity; num_frames, sum, varsum, mean, var, std: all returned to the caller
    assert plan.result_nbytes == 6 * sig + 8


def test_memory_estimate_per_executor_kind(ctx):
    ds = ctx.load("memory", data=np.zeros((16, 32, 32), dtype="float32"), num_partitions=2)
    plan = plan_run(ds, [SumUDF()], executor=ctx.executor)
    task = plan.memory.task_bytes
    # float32 data read as float32: zero-copy views, no tile buffer; a ROI makes copies
    assert plan.memory.per_task["tiles"] == 0
    roi = np.arange(16) % 3 == 0
    with_roi = plan_run(ds, [SumUDF()], roi=roi, executor=ctx.executor)
    # only the rows of the buffer a partition fills are memory: min(depth, 3 frames)
    largest = max(p.processed for p in with_roi.partitions)
    assert largest == 3
    assert with_roi.memory.per_task["tiles"] == min(with_roi.scheme.depth, largest) * 32 * 32 * 4

    class Fake:
        def __init__(self, kind, n):
            self.kind, self.num_workers = kind, n

    threads = plan_run(ds, [SumUDF()], executor=Fake("threads", 3)).memory
    assert threads.per_worker == 3 * task and threads.main["tasks"] == 3 * task
    procs = plan_run(ds, [SumUDF()], executor=Fake("processes", 3)).memory
    returned = 32 * 32 * 8
    assert procs.per_worker == task + returned and procs.main["tasks"] == 0
    assert procs.main["merging"] == returned
    assert placement_of(None).kind == "processes"


def test_reasons_name_the_rule(ctx):
    ds = ctx.load("memory", data=np.zeros((10, 256, 256), dtype="uint16"), sig_dims=2,
                  num_partitions=2)

    class Tile(UDF):
        def get_result_buffers(self):
            return {"x": self.buffer(kind="single")}

        def process_tile(self, tile):
            pass

        def merge(self, dest, src):
            pass

    neg = Negotiator(copy_size="1MiB")
    plan = plan_run(ds, [Tile()], executor=ctx.executor, negotiator=neg)
    assert plan.tile_shape == (4, 256, 256)
    assert "rule 4" in plan.reasons["tiling"] and "cache" in plan.reasons["tiling"]
    assert "num_partitions=2" in plan.reasons["partitions"]
    assert "float32" in plan.reasons["input dtype of Tile"]
    frame = plan_run(ds, [RecordFrames()], executor=ctx.executor, negotiator=neg)
    assert "rule" in frame.tiling_reason
    split = plan_run(ds, [Tile()], executor=ctx.executor,
                     negotiator=Negotiator(copy_size="64KiB"))
    assert split.tile_shape == (1, 64, 256) and "rule 6" in split.tiling_reason
    # the reason comes from the negotiator itself, for the same scheme
    scheme, why, _ = negotiate_tiling(ds, [TilingRequest("tile")], [np.float32], negotiator=neg)
    assert scheme == plan.scheme and why == plan.tiling_reason


def test_str_is_a_short_table(ctx):
    ds = ctx.load("memory", data=np.zeros((4, 5, 16, 16), dtype="uint16"), num_partitions=2)
    masks = np.ones((3, 16, 16), dtype="float32")
    plan = ctx.plan(ds, [SumUDF(), SumSigUDF(), ApplyMasksUDF(mask_factories=masks)],
                    roi=np.eye(4, 5, dtype=bool))
    text = str(plan)
    lines = text.splitlines()
    assert len(lines) < 30
    assert str(plan.tile_shape) in text
    assert "partitions   2" in text and "4 frames processed" in text
    for name in ("SumUDF", "SumSigUDF", "ApplyMasksUDF", "intensity", "(4, 5, 3)", "why"):
        assert name in text
    assert "per worker" in text and "main process" in text
    assert repr(plan).startswith("RunPlan(") and "tile_shape" in repr(plan)
    assert plan._repr_html_().startswith("<pre>")
    # JSON-ready
    facts = json.loads(json.dumps(plan.to_dict()))
    assert facts["tile_shape"] == list(plan.tile_shape)
    assert [p["processed"] for p in facts["partitions"]] == [p.processed for p in plan.partitions]
    assert facts["udfs"][2]["buffers"][0]["result_shape"] == [4, 5, 3]
    # the masks travel to every worker: counted as parameters
    assert plan.memory.per_task["parameters"] == masks.nbytes


def test_plan_is_frozen_and_udfrun_takes_only_a_plan(ctx):
    ds = ctx.load("memory", data=np.zeros((4, 8, 8), dtype="uint8"))
    plan = ctx.plan(ds, SumUDF())
    with pytest.raises(AttributeError):
        plan.scheme = None
    with pytest.raises(TypeError, match="only the plan"):
        UDFRun(plan, roi=np.ones(4, bool))
    with pytest.raises(TypeError, match="RunPlan"):
        UDFRun(ds)
    # the older spelling plans the run itself
    assert UDFRun(ds, [SumUDF()]).scheme == plan.scheme
    # a plan, executed, gives the run's result
    run = UDFRun(ctx.plan(ds, SumUDF()))
    (final,) = run.execute(ctx.executor)
    assert final.buffers[0]["intensity"].data.shape == (8, 8)


def test_plan_rejects_what_the_run_rejects(ctx):
    from udfkit.errors import ROIError, UDFError

    ds = ctx.load("memory", data=np.zeros((4, 8, 8), dtype="uint8"))
    with pytest.raises(ROIError):
        ctx.plan(ds, SumUDF(), roi=np.ones(5, bool))
    with pytest.raises(UDFError):
        ctx.plan(ds, SumUDF(), backends=("cupy",))
    with pytest.raises(ValueError, match="non-empty"):
        ctx.plan(ds, [])
