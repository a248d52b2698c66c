"""Workers write their partitions' nav rows into the store themselves
(:mod:`udfkit.udf.store.direct`).

The property test runs worker processes that write concurrently, over many partitionings
and chunkings of the store (chunks smaller and larger than partitions, not aligned with
them): a write lost by two writers of one zarr chunk shows as rows that differ from numpy.
"""

from __future__ import annotations

import contextlib
import os
import time
import uuid

import numpy as np
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from udfkit import UDF, ResultStore
from udfkit.errors import ResultStoreError
from udfkit.testing import SharedContexts
from udfkit.testing.profiles import examples
from udfkit.udf.store import _layout, direct, target

shared_context = SharedContexts({"inline": ("inline", {}),
                                 "processes": ("processes", {"cpus": 2})})
_close_shared_contexts = shared_context.closing_fixture()

FORMATS = {"zarr": "r.zarr", "npy": "rdir", "hdf5": "r.h5"}


class Rows(UDF):
    """A frame in, its pixels times two out: one row of ``extra_shape`` per position.

    With ``barrier`` (a directory), partitions end in pairs: each waits (up to 0.3 s) until
    another one has ended too, so that two workers write their rows at the same moment, as
    they would on a busy machine, and a read-modify-write of a chunk they shared would lose
    one of them.
    """

    def get_result_buffers(self):
        return {"rows": self.buffer(kind="nav", extra_shape=(8,), dtype="float32")}

    def process_frame(self, frame):
        self.results.rows[:] = frame.reshape(-1) * 2

    def postprocess(self):
        d = getattr(self.params, "barrier", None)
        if d is None:
            return
        open(os.path.join(d, uuid.uuid4().hex), "w").close()
        deadline = time.monotonic() + 0.3
        while len(os.listdir(d)) % 2 and time.monotonic() < deadline:
            time.sleep(0.0002)


def expected(data, roi):
    want = (data.reshape(data.shape[:-2] + (-1,)) * 2).astype("float32")
    if roi is not None:
        want[~roi] = np.nan
    return want


@contextlib.contextmanager
def chunk_bytes(n):
    """Chunks of about ``n`` bytes (the main process makes the store and tells the workers
    their chunk length, so setting it here is enough)."""
    old = _layout.CHUNK_BYTES
    _layout.CHUNK_BYTES = n
    try:
        yield
    finally:
        _layout.CHUNK_BYTES = old


@st.composite
def runs(draw):
    nav = tuple(draw(st.lists(st.integers(1, 6), min_size=1, max_size=3)))
    size = int(np.prod(nav))
    parts = draw(st.integers(1, min(16, size)))
    entries = draw(st.integers(1, 12))  # rows per chunk, before the layout's rules
    roi = None
    if draw(st.booleans()):
        roi = np.array(draw(st.lists(st.booleans(), min_size=size, max_size=size))).reshape(nav)
    return nav, parts, entries, roi, draw(st.sampled_from(["zarr", "npy"]))


@settings(max_examples=examples(2), deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(run=runs(), seed=st.integers(0, 2**16))
# many small partitions, every boundary inside a chunk: the case a lost write shows in
# (chunks of (1, 3) rows, partitions of 2 or 3 rows)
@example(run=((6, 6), 16, 4, None, "zarr"), seed=0)
@example(run=((6, 6), 14, 3, None, "zarr"), seed=1)
@example(run=((6, 6), 16, 3, None, "zarr"), seed=2)
def test_concurrent_direct_writes_lose_nothing(tmp_path_factory, run, seed):
    nav, parts, entries, roi, fmt = run
    ctx = shared_context("processes")
    data = np.random.default_rng(seed).random(nav + (2, 4)).astype("float32")
    ds = ctx.load("memory", data=data, num_partitions=parts)
    tmp = tmp_path_factory.mktemp("direct")
    out, barrier = tmp / FORMATS[fmt], tmp / "barrier"
    barrier.mkdir()
    with chunk_bytes(entries * 8 * 4):
        res = ctx.run_udf(ds, Rows(barrier=str(barrier)), roi=roi,
                          out=ResultStore(out, direct=True))
    np.testing.assert_array_equal(np.asarray(res["rows"].data[...]), expected(data, roi))


@pytest.mark.slow
@settings(max_examples=examples(40), deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(run=runs(), seed=st.integers(0, 2**16))
def test_concurrent_direct_writes_lose_nothing_many(tmp_path_factory, run, seed):
    test_concurrent_direct_writes_lose_nothing.hypothesis.inner_test(tmp_path_factory, run, seed)


def _count_main_rows(monkeypatch):
    """Rows the main process writes into the store, recorded per call."""
    written = []
    real = target.StoreSession._write_flat

    def counting(self, run, spec, lo, hi, data):
        written.append(hi - lo)
        return real(self, run, spec, lo, hi, data)

    monkeypatch.setattr(target.StoreSession, "_write_flat", counting)
    return written


@pytest.mark.parametrize("fmt", list(FORMATS))
def test_who_writes(fmt, tmp_path, monkeypatch):
    """npy: workers write every row; zarr: all but the rows of chunks two partitions share;
    HDF5: the main process writes everything."""
    ctx = shared_context("processes")
    data = np.random.default_rng(0).random((6, 10, 2, 4)).astype("float32")
    ds = ctx.load("memory", data=data, num_partitions=3)  # 20 rows each
    written = _count_main_rows(monkeypatch)
    with chunk_bytes(8 * 8 * 4):  # 8 rows per chunk (the largest divisor of 10 that fits: 5)
        res = ctx.run_udf(ds, Rows(), out=tmp_path / FORMATS[fmt])
    np.testing.assert_array_equal(np.asarray(res["rows"].data[...]), expected(data, None))
    # zarr chunks of (1, 5) rows: partition bounds 20 and 40 are chunk bounds, no shared chunk
    assert sum(written) == {"npy": 0, "zarr": 0, "hdf5": 60}[fmt]


def test_shared_chunks_go_to_the_main_process(tmp_path, monkeypatch):
    ctx = shared_context("processes")
    data = np.random.default_rng(1).random((7, 3, 2, 4)).astype("float32")
    ds = ctx.load("memory", data=data, num_partitions=4)  # bounds 0, 6, 11, 16, 21 (or near)
    written = _count_main_rows(monkeypatch)
    with chunk_bytes(4 * 3 * 8 * 4):  # chunks of 4 x 3 = 12 rows: partitions share them
        res = ctx.run_udf(ds, Rows(), out=tmp_path / "r.zarr")
    np.testing.assert_array_equal(np.asarray(res["rows"].data[...]), expected(data, None))
    assert 0 < sum(written) < 21


def test_worker_that_does_not_see_the_store(tmp_path, monkeypatch):
    """A worker that does not find this run's token at the path (another machine): the main
    process writes its rows, or, with ``direct=True``, a clear error."""
    ctx = shared_context("inline")  # the patched token reader runs where the task runs
    data = np.random.default_rng(2).random((4, 5, 2, 4)).astype("float32")
    ds = ctx.load("memory", data=data, num_partitions=3)
    monkeypatch.setattr(direct, "read_token", lambda fmt, path: None)
    written = _count_main_rows(monkeypatch)
    res = ctx.run_udf(ds, Rows(), out=tmp_path / "a.zarr")
    np.testing.assert_array_equal(np.asarray(res["rows"].data[...]), expected(data, None))
    assert sum(written) == 20
    with pytest.raises(ResultStoreError, match="does not see the run's store.*shared file system"):
        ctx.run_udf(ds, Rows(), out=ResultStore(tmp_path / "b", direct=True))


def test_direct_false_and_hdf5(tmp_path, monkeypatch):
    ctx = shared_context("inline")
    data = np.random.default_rng(3).random((4, 5, 2, 4)).astype("float32")
    ds = ctx.load("memory", data=data, num_partitions=3)
    written = _count_main_rows(monkeypatch)
    res = ctx.run_udf(ds, Rows(), out=ResultStore(tmp_path / "a", direct=False))
    np.testing.assert_array_equal(np.asarray(res["rows"].data[...]), expected(data, None))
    assert sum(written) == 20
    with pytest.raises(ResultStoreError, match="cannot write a hdf5 store concurrently"):
        ResultStore(tmp_path / "b.h5", direct=True)


def test_plan_shows_the_store(tmp_path):
    ctx = shared_context("inline")
    ds = ctx.load("memory", data=np.zeros((6, 10, 2, 4), "float32"), num_partitions=3)
    for name, fmt, writers in [("r.zarr", "zarr", "workers write"), ("r.h5", "hdf5", "HDF5"),
                               ("rdir", "npy", "workers write")]:
        with chunk_bytes(8 * 8 * 4):
            plan = ctx.plan(ds, Rows(), out=tmp_path / name)
        assert plan.store.format == fmt and writers in plan.store.writers
        assert plan.store.nav_bytes == 60 * 8 * 4 and plan.store.main_rows == (60 if fmt == "hdf5" else 0)
        (arr,) = plan.store.arrays
        assert arr["key"] == "rows" and arr["shape"] == (6, 10, 8)
        assert arr["chunks"] == ((1, 5, 8) if fmt == "zarr" else None)
        text = str(plan)
        assert f"store        {tmp_path / name} ({fmt})" in text and "1.9 KiB of nav results" in text
        assert plan.to_dict()["store"]["format"] == fmt
        assert not (tmp_path / name).exists()  # planning writes nothing
    assert "main process writes (direct=False)" in ctx.plan(
        ds, Rows(), out=ResultStore(tmp_path / "x", direct=False)).store.writers


@pytest.mark.parametrize("fmt", ["zarr", "npy"])
def test_partitions_cut_for_small_worker_results(fmt, tmp_path, monkeypatch):
    """Partitions whose nav results exceed the limit are cut; results and resume unchanged."""
    from udfkit.udf.store import plan as store_plan

    monkeypatch.setattr(store_plan, "PARTITION_RESULT_BYTES", 5 * 8 * 4)  # 5 rows
    ctx = shared_context("inline")
    data = np.random.default_rng(4).random((4, 6, 2, 4)).astype("float32")
    ds = ctx.load("memory", data=data, num_partitions=2)
    out = tmp_path / FORMATS[fmt]
    plan = ctx.plan(ds, Rows(), out=out)
    assert len(plan.partitions) == 6 and max(p.frames for p in plan.partitions) <= 5
    assert "cut into 6 partitions (was 2)" in plan.reasons["partitions"]
    it = ctx.run_udf_iter(ds, Rows(), out=out)
    next(it)
    it.close()
    res = ctx.run_udf(ds, Rows(), out=out, resume=True)
    np.testing.assert_array_equal(np.asarray(res["rows"].data[...]), expected(data, None))


def test_zarr_writes_in_steps_of_whole_chunks(tmp_path, monkeypatch):
    """A worker assigns a few chunks at a time (memory); steps of one chunk lose nothing."""
    monkeypatch.setattr(direct, "WRITE_STEP_BYTES", 1)
    ctx = shared_context("inline")
    data = np.random.default_rng(5).random((5, 6, 2, 4)).astype("float32")
    ds = ctx.load("memory", data=data, num_partitions=2)
    with chunk_bytes(2 * 8 * 4):
        res = ctx.run_udf(ds, Rows(), roi=np.arange(30).reshape(5, 6) % 4 != 1,
                          out=tmp_path / "s.zarr")
    np.testing.assert_array_equal(np.asarray(res["rows"].data[...]),
                                  expected(data, np.arange(30).reshape(5, 6) % 4 != 1))
