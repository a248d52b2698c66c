"""Partition results merged on the workers in groups (udfkit.udf.treemerge).

The grouping is the executor's choice (``tasks_per_group``); here an inline executor asks
for it, so every case runs in this process and fast. The dask executor's own use is tested
in tests/executor/test_dask_tree_merge.py.
"""

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from udfkit import UDF, Context
from udfkit.testing.profiles import examples
from udfkit.udf import StdDevUDF, SumSigUDF, SumUDF
from udfkit.udf.driver import UDFRun
from udfkit.udf.plan import plan_run
from udfkit.udf.treemerge import Bundle, GroupTask, group_tasks

SETTINGS = dict(deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                        HealthCheck.function_scoped_fixture])


class MaxFrame(UDF):
    """Starts its sig buffer at -inf in preprocess (a zero start would be wrong for negative
    data), merges nav rows and a count that it checks against the partition shape."""

    def get_result_buffers(self):
        return {"maxval": self.buffer(kind="nav", dtype="float64"),
                "maxframe": self.buffer(kind="sig", dtype="float64"),
                "merges": self.buffer(kind="single", dtype="int64")}

    def preprocess(self):
        self.results.maxframe[:] = -np.inf

    def process_frame(self, frame):
        self.results.maxval[:] = frame.max()
        np.maximum(self.results.maxframe, frame, out=self.results.maxframe)

    def merge(self, dest, src):
        # on a worker as on the main process: a mask of what was merged before
        merged = self.meta.get_valid_nav_mask()
        assert merged is not None and merged.sum() + len(src.maxval) <= merged.size
        dest.maxval[:] = src.maxval
        np.maximum(dest.maxframe, src.maxframe, out=dest.maxframe)
        dest.merges[:] += src.merges + 1


@pytest.fixture(scope="module")
def ctx():
    with Context.make_with("inline") as c:
        yield c


def grouping(ctx, k):
    """Ask the context's executor for groups of ``k`` (1: none)."""
    ctx.executor.tasks_per_group = lambda n: k


@settings(max_examples=examples(12), **SETTINGS)
@given(n=st.integers(1, 40), parts=st.integers(1, 12), k=st.integers(1, 6),
       roi_seed=st.one_of(st.none(), st.integers(0, 2**16)), data_seed=st.integers(0, 2**16))
def test_grouped_run_equals_numpy(ctx, n, parts, k, roi_seed, data_seed):
    """SumUDF, SumSigUDF, StdDevUDF and a -inf-started max: grouped runs equal numpy for any
    number of partitions, group size and ROI (sums of small integers are exact)."""
    data = np.random.default_rng(data_seed).integers(-50, 50, (n, 3, 4)).astype(np.float32)
    roi = None if roi_seed is None else np.random.default_rng(roi_seed).random(n) < 0.6
    sel = data if roi is None else data[roi]
    ds = ctx.load("memory", data=data, sig_dims=2, num_partitions=min(parts, n))
    grouping(ctx, k)
    try:
        res = ctx.run_udf(dataset=ds, udf=[SumUDF(), SumSigUDF(), StdDevUDF(), MaxFrame()], roi=roi)
    finally:
        grouping(ctx, 1)
    np.testing.assert_array_equal(res[0]["intensity"].data, sel.sum(axis=0))
    got = res[1]["intensity"].raw_data
    np.testing.assert_array_equal(got, sel.sum(axis=(1, 2)))
    if len(sel):
        np.testing.assert_allclose(res[2]["var"].data, sel.astype(np.float64).var(axis=0),
                                   rtol=1e-6, atol=1e-6)
        np.testing.assert_array_equal(res[3]["maxframe"].data, sel.max(axis=0))
        np.testing.assert_array_equal(res[3]["maxval"].raw_data, sel.max(axis=(1, 2)))
        # every partition merged once: on a worker or on the main process
        processed = sum(1 for p in ds.get_partitions() if roi is None or roi[p.start:p.stop].any())
        assert res[3]["merges"].data[0] == processed


def test_groups_cover_the_tasks_in_order(ctx):
    """Groups are consecutive runs of the tasks; their rows are the members' rows."""
    data = np.arange(10 * 4, dtype=np.float32).reshape(10, 2, 2)
    ds = ctx.load("memory", data=data, sig_dims=2, num_partitions=5)
    run = UDFRun(plan_run(ds, [SumUDF()], executor=ctx.executor))
    tasks = run.tasks()
    grouping(ctx, 2)
    try:
        groups = group_tasks(run, tasks, ctx.executor)
    finally:
        grouping(ctx, 1)
    assert [len(g.tasks) for g in groups] == [2, 2, 1]
    assert [t for g in groups for t in g.tasks] == tasks
    assert [run._rows[g.key] for g in groups] == [(0, 4), (4, 4), (8, 2)]
    assert all(isinstance(g, GroupTask) for g in groups)
    assert groups[0].frames == 4


def test_deterministic_runs_are_bundled_not_folded(ctx):
    """deterministic=True: the partitions of a bundle come back unmerged and merge here one
    by one in partition order, bit-identical to the flat run; a float sum folded on the
    worker could differ."""
    data = np.random.default_rng(0).random((16, 4, 4)).astype(np.float32)
    ds = ctx.load("memory", data=data, sig_dims=2, num_partitions=16)
    run = UDFRun(plan_run(ds, [SumUDF()], executor=ctx.executor))
    grouping(ctx, 4)
    try:
        bundles = group_tasks(run, run.tasks(), ctx.executor, fold=False)
        assert [len(b.tasks) for b in bundles] == [4] * 4
        result = bundles[1]()
        assert isinstance(result, Bundle)
        assert [r.partition_index for r in result] == [4, 5, 6, 7]
        det = ctx.run_udf(dataset=ds, udf=SumUDF(), deterministic=True)
    finally:
        grouping(ctx, 1)
    flat = ctx.run_udf(dataset=ds, udf=SumUDF())
    assert np.array_equal(det["intensity"].data, flat["intensity"].data)


def test_bundle_size_bounded_by_result_bytes(ctx, monkeypatch):
    """A bundle's results (sig buffers included) stay under GROUP_RESULT_BYTES."""
    from udfkit.udf import treemerge

    data = np.ones((16, 4, 4), dtype=np.float32)
    ds = ctx.load("memory", data=data, sig_dims=2, num_partitions=16)
    run = UDFRun(plan_run(ds, [SumUDF()], executor=ctx.executor))
    per_task = 16 * np.dtype(run.specs[0]["intensity"].dtype).itemsize
    monkeypatch.setattr(treemerge, "GROUP_RESULT_BYTES", 2 * per_task)
    grouping(ctx, 8)
    try:
        bundles = group_tasks(run, run.tasks(), ctx.executor, fold=False)
    finally:
        grouping(ctx, 1)
    assert max(len(b.tasks) for b in bundles) == 2


def test_progress_of_grouped_run(ctx):
    """A grouped run reports every frame once."""
    class Rec:
        def start(self, total):
            self.total, self.n = total, 0

        def advance(self, n):
            self.n += n

        def close(self):
            pass

    data = np.ones((24, 2, 2), dtype=np.float32)
    ds = ctx.load("memory", data=data, sig_dims=2, num_partitions=12)
    rec = Rec()
    grouping(ctx, 5)
    try:
        ctx.run_udf(dataset=ds, udf=SumUDF(), progress=rec)
    finally:
        grouping(ctx, 1)
    assert rec.n == rec.total == 24


def test_group_size_bounded_by_nav_bytes(ctx, monkeypatch):
    """A group's nav block stays under GROUP_NAV_BYTES, however large the executor asks."""
    from udfkit.udf import treemerge

    data = np.ones((64, 2, 2), dtype=np.float32)
    ds = ctx.load("memory", data=data, sig_dims=2, num_partitions=16)
    run = UDFRun(plan_run(ds, [SumSigUDF()], executor=ctx.executor))
    # 4 frames per task: room for the nav rows of three tasks
    per_task = 4 * np.dtype(run.specs[0]["intensity"].dtype).itemsize
    monkeypatch.setattr(treemerge, "GROUP_NAV_BYTES", 3 * per_task)
    grouping(ctx, 8)
    try:
        groups = group_tasks(run, run.tasks(), ctx.executor)
    finally:
        grouping(ctx, 1)
    assert max(len(g.tasks) for g in groups) == 3


def test_merge_error_in_a_group_names_the_udf(ctx):
    """A merge that raises on the worker's fold comes back as itself, like any UDF error."""
    class BadMerge(UDF):
        def get_result_buffers(self):
            return {"s": self.buffer(kind="single", dtype="float64")}

        def process_frame(self, frame):
            self.results.s[:] += frame.sum()

        def merge(self, dest, src):
            raise ValueError("BadMerge.merge refuses")

    data = np.ones((8, 2, 2), dtype=np.float32)
    ds = ctx.load("memory", data=data, sig_dims=2, num_partitions=8)
    grouping(ctx, 4)
    try:
        with pytest.raises(ValueError, match="BadMerge.merge refuses"):
            ctx.run_udf(dataset=ds, udf=BadMerge())
    finally:
        grouping(ctx, 1)
