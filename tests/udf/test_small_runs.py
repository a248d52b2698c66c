"""Small runs go to the main process (the small-run rule of :func:`udfkit.udf.plan.plan_run`).

A run of one task that reads little costs less in the calling thread than a round trip to a
worker process. The rule must show in the plan, trigger exactly where it says, be possible to
turn off, and never change results.
"""

from __future__ import annotations

import os

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from udfkit import UDF, Context
from udfkit.api import _small_run_bytes
from udfkit.executor import Executor, make_executor
from udfkit.testing.profiles import examples
from udfkit.udf import StdDevUDF, SumSigUDF, SumUDF
from udfkit.udf import worksize
from udfkit.udf.plan import SMALL_RUN_BYTES, placement_of, plan_run
from udfkit.udf.worksize import cost_key


class WherePid(UDF):
    """Records the process id each frame was processed in (a nav buffer), and sums frames."""

    def get_result_buffers(self):
        return {"pid": self.buffer(kind="nav", dtype="int64"),
                "total": self.buffer(kind="sig", dtype="float64")}

    def process_frame(self, frame):
        self.results.pid[:] = os.getpid()
        self.results.total += frame

    def merge(self, dest, src):
        dest.pid[:] = src.pid
        dest.total += src.total


class Elsewhere(Executor):
    """Stands for worker processes (placement: another process, 2 workers) and runs tasks
    inline, counting them: a run that reaches it did not go to the main process."""

    kind = "processes"

    def __init__(self):
        self.runs = 0
        self._inline = make_executor("inline")

    @property
    def num_workers(self) -> int:
        return 2

    def run_tasks(self, tasks, progress=None, *, retries=None):
        self.runs += 1
        return self._inline.run_tasks(tasks, progress)


@pytest.fixture(scope="module")
def contexts():
    """``(small, plain)``: the rule on (1 MiB) and off, on a stand-in for worker processes."""
    executor = Elsewhere()
    return Context(executor=executor, small_run_bytes="1M"), Context(executor=executor)


def test_small_run_goes_to_the_main_process(contexts):
    small, plain = contexts
    data = np.arange(2 * 3 * 4 * 4, dtype="float32").reshape(2, 3, 4, 4)
    for ctx, main in ((small, True), (plain, False)):
        ds = ctx.load("memory", data=data)
        plan = ctx.plan(ds, WherePid())
        assert plan.in_main_process is main
        before = ctx.executor.runs
        res = ctx.run_udf(ds, WherePid())
        assert ctx.executor.runs == before + (not main)
        np.testing.assert_array_equal(res["total"].data, data.sum(axis=(0, 1)))
        if main:
            assert "main process" in plan.reasons["placement"]
            assert "this run: in the main process" in str(plan)
            assert plan.to_dict()["executor"] == "processes" and plan.to_dict()["in_main_process"]
            assert plan.memory.placement.in_main_process
        else:
            assert "placement" not in plan.reasons


@pytest.mark.slow
def test_small_run_on_worker_processes():
    # the real thing: the rule keeps a tiny run in this process, without it a worker runs it
    data = np.arange(2 * 3 * 4 * 4, dtype="float32").reshape(2, 3, 4, 4)
    executor = make_executor("processes", cpus=2)
    try:
        for limit, main in (("1M", True), (0, False)):
            ctx = Context(executor=executor, small_run_bytes=limit)
            res = ctx.run_udf(ctx.load("memory", data=data), WherePid())
            assert (set(res["pid"].data.ravel().tolist()) == {os.getpid()}) is main
            np.testing.assert_array_equal(res["total"].data, data.sum(axis=(0, 1)))
    finally:
        executor.close()


def test_rule_triggers_only_where_it_says(contexts):
    small, _ = contexts
    data = np.ones((4, 4, 8, 8), dtype="uint16")  # 2 KiB
    # two tasks: the workers share them
    assert not small.plan(small.load("memory", data=data, num_partitions=2), SumUDF()).in_main_process
    # more bytes than the limit
    big = Context(executor=small.executor, small_run_bytes=1024)
    assert not big.plan(big.load("memory", data=data), SumUDF()).in_main_process
    # a run cut by measured cost (64 frames, 2 workers) of a UDF whose work is not known
    frames = np.ones((64, 8, 8), dtype="uint16")
    ds = small.load("memory", data=frames, sig_dims=2)
    assert small.plan(ds, WherePid()).sizing is not None
    assert not small.plan(ds, WherePid()).in_main_process
    # ... but the built-in sums stream: their work is proportional to the bytes
    plan = small.plan(ds, [SumUDF(), SumSigUDF()])
    assert plan.in_main_process and plan.sizing is None and "stream" in plan.reasons["placement"]
    # a UDF that declares nothing next to a sum: every UDF must stream
    assert not small.plan(ds, [SumUDF(), WherePid()]).in_main_process
    # executors that run in the main process anyway: no rule to apply
    for kind in ("inline", "threads"):
        ctx = Context(executor=make_executor(kind, **({"cpus": 2} if kind == "threads" else {})),
                      small_run_bytes="1M")
        plan = ctx.plan(ctx.load("memory", data=data), SumUDF())
        assert not plan.in_main_process and plan.small_run is None
        ctx.close()


def test_known_cost_decides(contexts):
    small, _ = contexts
    ds = small.load("memory", data=np.ones((64, 8, 8), dtype="uint16"), sig_dims=2)
    udf = WherePid()
    plan = plan_run(ds, [udf], executor=small.executor)  # sets the UDF's meta
    key = cost_key(placement_of(small.executor), [udf], (8, 8), np.dtype("uint16"),
                   [plan.udfs[0].input_dtype], False)
    try:
        worksize._KNOWN[key] = (1e-6, 1e-3)  # 64 us of work: small
        assert plan_run(ds, [udf], executor=small.executor, small_run_bytes=1 << 20).in_main_process
        worksize._KNOWN[key] = (1e-3, 1e-3)  # 64 ms: the workers share it
        assert not plan_run(ds, [udf], executor=small.executor,
                            small_run_bytes=1 << 20).in_main_process
    finally:
        worksize._KNOWN.pop(key, None)


@settings(max_examples=examples(4), deadline=None)
@given(nav=st.integers(1, 40), dtype=st.sampled_from(["uint16", "float32", "int32"]),
       roi_seed=st.one_of(st.none(), st.integers(0, 100)))
def test_small_runs_equal_numpy(contexts, nav, dtype, roi_seed):
    small, _ = contexts
    data = (np.random.default_rng(nav).random((nav, 5, 6)) * 100).astype(dtype)
    roi = None if roi_seed is None else np.random.default_rng(roi_seed).random(nav) < 0.5
    ds = small.load("memory", data=data, sig_dims=2)
    udfs = [SumUDF(), SumSigUDF(), StdDevUDF()]
    # one task of a few bytes: only a run cut by measured cost stays on the workers (StdDevUDF
    # does not declare itself streaming)
    plan = small.plan(ds, udfs, roi=roi)
    assert plan.in_main_process != (plan.sizing is not None)
    res = small.run_udf(ds, udfs, roi=roi)
    sel = data if roi is None else data[roi]
    np.testing.assert_allclose(res[0]["intensity"].data, sel.sum(axis=0, dtype=np.float64))
    np.testing.assert_allclose(res[1]["intensity"].raw_data, sel.sum(axis=(1, 2), dtype=np.float64))
    if sel.shape[0]:
        np.testing.assert_allclose(res[2]["var"].data, sel.astype(np.float64).var(axis=0),
                                   rtol=1e-5, atol=1e-8)


def test_context_defaults(monkeypatch):
    monkeypatch.delenv("UDFKIT_SMALL_RUN_BYTES", raising=False)
    assert _small_run_bytes(None, own_executor=True) == SMALL_RUN_BYTES
    assert _small_run_bytes(None, own_executor=False) == 0  # an executor given: off
    assert _small_run_bytes("2M", own_executor=False) == 2 << 20
    assert _small_run_bytes(False, own_executor=True) == 0
    monkeypatch.setenv("UDFKIT_SMALL_RUN_BYTES", "0")
    assert _small_run_bytes(None, own_executor=True) == 0
    monkeypatch.setenv("UDFKIT_SMALL_RUN_BYTES", "64k")
    assert _small_run_bytes(None, own_executor=True) == 64 << 10
    with pytest.raises(ValueError, match="byte size"):
        _small_run_bytes("lots", own_executor=True)
    with Context.make_with("inline") as ctx:
        assert ctx.small_run_bytes == 0
    with Context.make_with("threads", cpus=1, small_run_bytes="1M") as ctx:
        assert ctx.small_run_bytes == 1 << 20


@pytest.mark.parametrize("dtype", ["uint16", "float32", "complex64"])
def test_sum_without_loaded_kernels_equals_numpy(monkeypatch, dtype):
    # SumUDF in a process that has not loaded numba (a small run's main process) sums small
    # tiles with numpy: pretend the kernels are not loaded
    from udfkit.udf.builtins import sum as sum_module

    monkeypatch.setattr(sum_module, "_KERNELS", "udfkit.not.loaded")
    data = (np.random.default_rng(1).random((3, 5, 7, 9)) * 1000).astype(dtype)
    with Context.make_with("inline") as ctx:
        ds = ctx.load("memory", data=data, num_partitions=2)
        res = ctx.run_udf(ds, SumUDF(), roi=np.arange(15).reshape(3, 5) % 3 != 0)
    roi = (np.arange(15).reshape(3, 5) % 3 != 0)
    ref = data[roi].sum(axis=0, dtype=np.complex128 if dtype == "complex64" else np.float64)
    np.testing.assert_allclose(res["intensity"].data, ref, rtol=1e-12)


@settings(max_examples=examples(20), deadline=None)
@given(depth=st.integers(1, 13), n=st.integers(1, 40), seed=st.integers(0, 99),
       dtype=st.sampled_from(["uint16", "float32", "float64", "complex64"]))
def test_numpy_sum_is_the_kernel_bit_for_bit(depth, n, seed, dtype):
    # a run's result must not depend on whether its process had loaded numba
    from udfkit.udf.builtins._kernels import as_rows, sum_frames
    from udfkit.udf.builtins.sum import _sum_frames_numpy

    rng = np.random.default_rng(seed)
    tile = (rng.standard_normal((depth, n)) * 1e4).astype(dtype)
    acc = (rng.standard_normal(n) * 1e3).astype("complex128" if dtype == "complex64" else "float64")
    want = acc.copy()
    sum_frames(*as_rows(tile), want)
    _sum_frames_numpy(tile, acc)
    np.testing.assert_array_equal(acc, want)


def test_large_partitions_load_the_kernel(monkeypatch):
    # the numpy path is for small partitions only: a large one loads the numba kernel, which
    # then serves the process's later runs
    from udfkit.udf.builtins import _kernels
    from udfkit.udf.builtins import sum as sum_module

    calls = []
    real = _kernels.sum_frames
    monkeypatch.setattr(sum_module, "_KERNELS", "udfkit.not.loaded")
    monkeypatch.setattr(_kernels, "sum_frames", lambda *a: calls.append(1) or real(*a))
    data = np.ones((6, 4, 4), dtype="float32")
    with Context.make_with("inline") as ctx:
        ds = ctx.load("memory", data=data, sig_dims=2)
        ctx.run_udf(ds, SumUDF())
        assert calls == []  # 96 elements: numpy
        monkeypatch.setattr(sum_module, "COLD_PARTITION_ITEMS", 50)
        res = ctx.run_udf(ds, SumUDF())
        assert calls  # the kernel
    np.testing.assert_array_equal(res["intensity"].data, data.sum(axis=0))
