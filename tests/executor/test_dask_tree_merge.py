"""The dask executor's groups of partitions merged on the workers (udfkit.udf.treemerge) on a
real local cluster of two workers."""

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from udfkit import Context
from udfkit.executor import dask as dask_executor
from udfkit.testing.profiles import examples
from udfkit.udf import StdDevUDF, SumSigUDF, SumUDF

pytestmark = pytest.mark.cluster

SETTINGS = dict(deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                        HealthCheck.function_scoped_fixture])


@pytest.fixture(scope="module")
def ctx():
    with Context.make_with("dask", cpus=2) as c:
        # the workers' first run (imports, kernels) is not part of any test's time
        c.run_udf(dataset=c.load("memory", data=np.ones((4, 2, 2), "float32"), sig_dims=2),
                  udf=SumUDF())
        yield c


@pytest.fixture
def submitted(monkeypatch):
    """The dask tasks each run submits."""
    counts = []
    submit = dask_executor._DaskRun.submit

    def counting(self, index, task):
        counts.append(index)
        return submit(self, index, task)

    monkeypatch.setattr(dask_executor._DaskRun, "submit", counting)
    return counts


def test_group_size_policy(ctx):
    ex = ctx.executor
    workers = ex.num_workers
    assert ex.tasks_per_group(dask_executor.GROUP_FROM_TASKS_PER_WORKER * workers) == 1
    assert ex.tasks_per_group(64 * workers) == 64 // dask_executor.GROUPS_PER_WORKER
    ex.tree_merge = False
    try:
        assert ex.tasks_per_group(64 * workers) == 1
    finally:
        ex.tree_merge = True


def run_tree_and_flat(ctx, submitted, n, roi_seed, data_seed, flat=True):
    """One-frame partitions, more than the grouping threshold: fewer dask tasks than
    partitions, and the same numbers as numpy and (``flat``) as the flat merge
    (integer-valued data: the sums are exact, so the two merges agree bit for bit)."""
    data = np.random.default_rng(data_seed).integers(0, 1000, (n, 4, 4)).astype(np.float32)
    roi = None if roi_seed is None else np.random.default_rng(roi_seed).random(n) < 0.7
    sel = data if roi is None else data[roi]
    ds = ctx.load("memory", data=data, sig_dims=2, num_partitions=n)
    udfs = [SumUDF(), SumSigUDF(), StdDevUDF()]
    submitted.clear()
    tree = ctx.run_udf(dataset=ds, udf=udfs, roi=roi)
    processed = len(sel)
    if processed > dask_executor.GROUP_FROM_TASKS_PER_WORKER * 2:
        assert len(submitted) < processed
    np.testing.assert_array_equal(tree[0]["intensity"].data, sel.sum(axis=0))
    np.testing.assert_array_equal(tree[1]["intensity"].raw_data, sel.sum(axis=(1, 2)))
    np.testing.assert_allclose(tree[2]["var"].data, sel.astype(np.float64).var(axis=0),
                               rtol=1e-9)
    if not flat:
        return
    ctx.executor.tree_merge = False
    try:
        submitted.clear()
        flat = ctx.run_udf(dataset=ds, udf=udfs, roi=roi)
        assert len(submitted) == processed
    finally:
        ctx.executor.tree_merge = True
    for a, b in zip(tree, flat):
        for name in ("intensity",) if "intensity" in a else ("sum", "num_frames"):
            np.testing.assert_array_equal(a[name].raw_data, b[name].raw_data)


@pytest.mark.slow  # ~0.7 s an example; test_tree_merge_equals_flat is the fast one
@settings(max_examples=examples(6), **SETTINGS)
@given(n=st.integers(17, 60), roi_seed=st.one_of(st.none(), st.integers(0, 2**16)),
       data_seed=st.integers(0, 2**16))
def test_tree_merge_equals_numpy(ctx, submitted, n, roi_seed, data_seed):
    run_tree_and_flat(ctx, submitted, n, roi_seed, data_seed, flat=False)


def test_tree_merge_equals_flat(ctx, submitted):
    run_tree_and_flat(ctx, submitted, 24, 5, 6)


def test_deterministic_run_is_bundled_and_equals_inline(ctx, submitted):
    """deterministic=True runs partitions in bundles (fewer dask tasks), merged one by one
    on the main process in partition order: bit-identical to inline on float data."""
    data = np.random.default_rng(7).random((20, 4, 4)).astype(np.float32)
    ds = ctx.load("memory", data=data, sig_dims=2, num_partitions=20)
    submitted.clear()
    det = ctx.run_udf(dataset=ds, udf=SumUDF(), deterministic=True)
    assert len(submitted) < 20
    with Context.make_with("inline") as inline:
        ref = inline.run_udf(dataset=inline.load("memory", data=data, sig_dims=2,
                                                 num_partitions=20), udf=SumUDF())
    assert np.array_equal(det["intensity"].data, ref["intensity"].data)
