"""Partitions sized by work (:mod:`udfkit.udf.worksize`, :mod:`udfkit.io.splitting`).

Results of runs whose partitions are cut while they go must equal numpy whatever the cut;
the pieces must tile the plan's partitions; the cut follows the measured cost; a
deterministic run keeps the plan's partitions and is bit-identical to inline.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings

from udfkit import Context
from udfkit.executor._schedule import Adapter, Outcome, schedule
from udfkit.io.splitting import can_split, sub_partition
from udfkit.testing import SharedContexts
from udfkit.testing.profiles import examples
from udfkit.testing.strategies import assert_nav_rows, cases, ref_sum, ref_sumsig
from udfkit.testing.strategies import load as load_case
from udfkit.udf import SumSigUDF, SumUDF
from udfkit.udf import worksize
from udfkit.udf.plan import PartitionPlan, Placement
from udfkit.udf.runner import PartitionResult

EXECUTORS = {"threads": ("threads", {"cpus": 2}), "processes": ("processes", {"cpus": 2}),
             "dask": ("dask", {"cpus": 2})}
shared_context = SharedContexts(EXECUTORS)
_close_shared_contexts = shared_context.closing_fixture()


@pytest.fixture
def fine_cuts(monkeypatch):
    """Cut as finely as guided self-scheduling allows, whatever the measured cost (so that a
    fast test sees many pieces), and start every run without a remembered cost."""
    monkeypatch.setattr(worksize, "OVERHEAD_RATIO", 0)
    monkeypatch.setattr(worksize, "SPLIT_RATIO", 0)
    monkeypatch.setattr(worksize, "_KNOWN", type(worksize._KNOWN)())


def check_pieces(plan, pieces):
    """The executed pieces tile the plan's partitions with frames, in nav order."""
    planned = [p for p in plan.partitions if p.processed]
    assert [p.index for p in pieces] == list(range(len(pieces)))
    assert sum(p.processed for p in pieces) == plan.processed_frames
    it = iter(pieces)
    for pp in planned:
        got = []
        while sum(p.processed for p in got) < pp.processed:
            got.append(next(it))
        assert got[0].start == pp.start and got[-1].stop == pp.stop
        assert all(a.stop == b.start for a, b in zip(got, got[1:]))
        assert got[0].offset == pp.offset
        assert all(b.offset == a.offset + a.processed for a, b in zip(got, got[1:]))
    assert next(it, None) is None


# -- results across executors ----------------------------------------------------------------

@pytest.mark.parametrize("executor,n", [("threads", 10), ("processes", 4), ("dask", 1)])
def test_results_equal_numpy_when_cut(executor, n, fine_cuts, tmp_path_factory):
    ctx = shared_context(executor)

    @settings(max_examples=examples(n), deadline=None,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                     HealthCheck.function_scoped_fixture,
                                     HealthCheck.filter_too_much])
    @given(cases(dtypes=["uint8", "uint16", ">u2", "int32", "float32", ">f8"], max_nav_dims=2,
                 max_nav=12, max_sig=6, max_sig_dims=2))
    def check(case):
        assume(int(np.prod(case.nav_shape)) >= 32)
        case.num_partitions = None  # the data set's own rule, which the run may cut
        ds = load_case(ctx, case, tmp_path_factory.mktemp("ws"))
        udfs = [SumUDF(), SumSigUDF()]
        plan = ctx.plan(ds, udfs, roi=case.roi)
        *_, last = ctx.run_udf_iter(ds, udfs, roi=case.roi)
        res = last.buffers
        np.testing.assert_allclose(res[0]["intensity"].data, ref_sum(case), rtol=1e-12)
        assert_nav_rows(res[1]["intensity"], ref_sumsig(case), case, rtol=1e-12)
        pieces = last.partitions
        check_pieces(plan, pieces)
        if plan.sizing is not None and plan.processed_frames >= 4 * 2:
            # probes first, then at least one more task per worker
            assert len(pieces) > 2

    check()


def test_deterministic_keeps_the_plan_and_matches_inline(fine_cuts):
    rng = np.random.default_rng(5)
    data = rng.standard_normal((12, 16, 8, 8)).astype(np.float32)
    with Context.make_with("inline") as inline:
        ctx = shared_context("threads")
        ds = ctx.load("memory", data=data)
        plan = ctx.plan(ds, SumUDF())
        assert plan.sizing is not None
        *_, det = ctx.run_udf_iter(ds, SumUDF(), deterministic=True)
        assert det.partitions == tuple(p for p in plan.partitions if p.processed)
        ref = inline.run_udf(ds, SumUDF())  # the same data set, so the same partitions
        np.testing.assert_array_equal(det.buffers[0]["intensity"].data, ref["intensity"].data)
        *_, cut = ctx.run_udf_iter(ds, SumUDF())
        assert len(cut.partitions) > len(det.partitions)
        # float sums over other partitions may differ in the last bits, not more
        np.testing.assert_allclose(cut.buffers[0]["intensity"].data, ref["intensity"].data,
                                   rtol=1e-5)


# -- when the run cuts, in the plan -----------------------------------------------------------

def test_plan_says_when_and_how(fine_cuts):
    data = np.zeros((64, 8, 8), "uint16")
    ctx = shared_context("threads")
    plan = ctx.plan(ctx.load("memory", data=data, sig_dims=2), SumUDF())
    assert plan.sizing.workers == 2 and plan.sizing.probe_frames == 64 // (8 * 2)
    assert "probe tasks of 4 frames" in plan.reasons["partition sizing"]
    assert "cut smaller by measured cost" in str(plan)
    assert plan.to_dict()["sizing"]["probe_frames"] == 4
    # the user's num_partitions wins; a tiny run stays as it is; inline never cuts
    assert ctx.plan(ctx.load("memory", data=data, sig_dims=2, num_partitions=2),
                    SumUDF()).sizing is None
    assert ctx.plan(ctx.load("memory", data=data[:16], sig_dims=2), SumUDF()).sizing is None
    with Context.make_with("inline") as inline:
        assert inline.plan(inline.load("memory", data=data, sig_dims=2), SumUDF()).sizing is None


def test_cost_is_remembered_for_the_next_run(fine_cuts):
    data = np.ones((64, 8, 8), "uint16")
    ctx = shared_context("threads")
    ds = ctx.load("memory", data=data, sig_dims=2)
    assert ctx.plan(ds, SumUDF()).sizing.known_cost is None
    ctx.run_udf(ds, SumUDF())
    sizing = ctx.plan(ds, SumUDF()).sizing
    assert sizing.probe_frames == 0 and sizing.known_cost[0] > 0
    assert "cost from an earlier run" in sizing.describe()
    # another UDF is another cost
    assert ctx.plan(ds, SumSigUDF()).sizing.known_cost is None


# -- the cutting rule, with costs given -------------------------------------------------------

class _Piece:
    def __init__(self, index, start, stop):
        self.index, self.start, self.stop = index, start, stop


def _source(total, workers=2, planned=None, known=None):
    from udfkit.io.formats.memory import MemoryDataSet

    planned = planned or [(0, total)]
    ds = MemoryDataSet(data=np.zeros((total, 2, 2), "uint8"), sig_dims=2,
                       num_partitions=len(planned)).initialize()
    parts = ds.get_partitions()
    plans, off = [], 0
    for p in parts:
        plans.append(PartitionPlan(p.index, p.start, p.stop, p.num_frames, p.num_frames, off))
        off += p.num_frames
    sizing = worksize.WorkSizing(workers=workers,
                                 probe_frames=0 if known else total // (8 * workers),
                                 known_cost=known, key=("test",))
    made = []
    src = worksize.AdaptiveTasks(sizing, parts, plans, [None] * len(parts),
                                 lambda piece, n, offset: made.append((piece, n, offset)) or piece)
    return src, plans


def _finish(src, piece, seconds_per_frame):
    n = piece.stop - piece.start
    src.observe(PartitionResult(piece.index, [], n, n * seconds_per_frame))


def test_probes_then_wait_then_guided_cuts():
    src, plans = _source(1024)
    a, b = src.next_task(), src.next_task()
    assert (a.stop - a.start, b.stop - b.start) == (64, 64)
    assert src.next_task() is None  # a cut needs a measured cost
    _finish(src, a, 2e-3)  # expensive: 2 ms per frame
    sizes = []
    while src.remaining:
        t = src.next_task()
        sizes.append(t.stop - t.start)
        _finish(src, t, 2e-3)
    assert sizes[0] == -(-(1024 - 128) // 4)
    assert sizes == sorted(sizes, reverse=True) or sizes[-1] <= sizes[0]
    assert len(sizes) >= 2 * 2
    with pytest.raises(StopIteration):
        src.next_task()
    check_pieces(type("P", (), {"partitions": plans, "processed_frames": 1024})(), src.executed)


def test_cheap_work_gets_the_planned_partitions_back():
    src, plans = _source(1024, planned=[(0, 512), (512, 1024)])
    a, b = src.next_task(), src.next_task()
    # 0.1 us per frame: the rest is worth less than the fixed cost (at least 50 us) of a task
    # per worker, several times over
    _finish(src, a, 1e-7)
    _finish(src, b, 1e-7)
    rest = [src.next_task() for _ in range(2)]
    # the rest of the first planned partition, then the second one whole
    assert [(t.start, t.stop) for t in rest] == [(128, 512), (512, 1024)]
    assert src.remaining == 0


def test_known_cost_cuts_without_probes():
    src, _ = _source(1024, known=(2e-3, 1e-3))
    first = [src.next_task() for _ in range(2)]
    assert [t.stop - t.start for t in first] == [256, 192]
    assert src.next_task() is None  # one task per worker out at a time
    _finish(src, first[0], 2e-3)
    assert src.next_task().stop - first[1].stop == 144
    cheap, _ = _source(1024, known=(1e-6, 1e-3))
    assert (lambda t: (t.start, t.stop))(cheap.next_task()) == (0, 1024)


def test_iterating_cuts_without_waiting():
    src, plans = _source(256)
    pieces = list(src)
    assert sum(p.stop - p.start for p in pieces) == 256 and len(pieces) > 2


# -- the scheduling loop with a task source ---------------------------------------------------

class _Inline(Adapter):
    """Runs each task at submit; ``slots`` tasks may be in flight."""

    def __init__(self, slots=2):
        self.slots = slots
        self.done = []

    def free_slots(self, in_flight):
        return self.slots - in_flight

    def submit(self, index, task):
        self.done.append(Outcome(index, "result", task()))
        return index

    def wait(self, handles, timeout):
        out, self.done = self.done[:1], self.done[1:]
        return out, []

    def cancel(self, handles):
        pass


class _Paced:
    """Hands out ``n`` tasks, one at a time: waits after each until it was seen."""

    def __init__(self, n):
        self.n = n
        self.out = 0
        self.seen = 0

    def next_task(self):
        if self.out == self.n:
            raise StopIteration
        if self.out > self.seen:
            return None
        self.out += 1
        return lambda i=self.out: i


def test_schedule_asks_a_source_again_after_each_result():
    src = _Paced(5)
    got = []
    for index, value in schedule(_Inline(), src):
        got.append((index, value))
        src.seen += 1
    assert got == [(i, i + 1) for i in range(5)]


def test_schedule_refuses_a_source_that_waits_for_nothing():
    class Stuck:
        def next_task(self):
            return None

    with pytest.raises(RuntimeError, match="no task is running"):
        list(schedule(_Inline(), Stuck()))


# -- cutting partitions ------------------------------------------------------------------------

@pytest.mark.parametrize("sync_offset", [0, 3, -2])
def test_sub_partition_reads_its_frames(tmp_path, sync_offset):
    from udfkit.io.tiling import TilingScheme

    data = np.arange(20 * 3 * 2, dtype="uint16").reshape(20, 3, 2)
    path = tmp_path / "d.raw"
    data.tofile(path)
    with Context.make_with("inline") as ctx:
        for ds in (ctx.load("memory", data=data, sig_dims=2, sync_offset=sync_offset),
                   ctx.load("raw", path=str(path), dtype="uint16", nav_shape=(20,),
                            sig_shape=(3, 2), sync_offset=sync_offset)):
            (whole,) = ds.get_partitions()
            assert can_split(whole)
            piece = sub_partition(whole, 5, 11, index=3)
            assert (piece.index, piece.start, piece.stop) == (3, 5, 11)
            scheme = TilingScheme.make((3, 2), (3, 2), depth=4, intent="tile")
            got = np.concatenate([t.data.reshape(-1, 3, 2) for t in
                                  piece.get_tiles(scheme, dest_dtype="uint16")])
            lo, hi = max(0, 5 + sync_offset), min(20, 11 + sync_offset)
            np.testing.assert_array_equal(got, data[lo:hi])
            with pytest.raises(ValueError, match="not inside"):
                sub_partition(whole, 5, 25, index=0)


def test_chunked_files_are_not_cut(tmp_path):
    h5py = pytest.importorskip("h5py")
    path = tmp_path / "d.h5"
    with h5py.File(path, "w") as f:
        f.create_dataset("gzip", data=np.zeros((8, 8, 2, 2), "uint8"), chunks=(1, 8, 2, 2),
                         compression="gzip")
    ctx = shared_context("threads")
    # compressed chunks decode whole: the partitions stay as the format cut them
    zipped = ctx.load("hdf5", path=str(path), ds_path="gzip")
    assert not can_split(zipped.get_partitions()[0])
    assert ctx.plan(zipped, SumUDF()).sizing is None
    with pytest.raises(ValueError, match="cannot be cut"):
        sub_partition(zipped.get_partitions()[0], 0, 1, index=0)
