"""BLAS runs single-threaded inside tasks that run side by side, with one thread per core in
a task that runs alone (inline, a threads run of one task), and keeps its threads outside."""

import numpy as np
from threadpoolctl import threadpool_info

from udfkit import UDF, Context
from udfkit.executor.inline import InlineExecutor, InlineJobExecutor
from udfkit.executor.threadpools import _cached, machine_threads


def blas_threads():
    return [i["num_threads"] for i in threadpool_info() if i["user_api"] == "blas"]


class BlasThreadsUDF(UDF):
    def get_result_buffers(self):
        return {"threads": self.buffer(kind="single", dtype="int64")}

    def process_partition(self, partition):
        self.results.threads[:] = max(blas_threads() or [1])

    def merge(self, dest, src):
        dest.threads[:] = np.maximum(dest.threads, src.threads)


def test_blas_threads_inside_tasks_only():
    before = blas_threads()
    ctx = Context.make_with("inline")
    ds = ctx.load("memory", data=np.zeros((4, 4, 8, 8)), num_partitions=2)
    res = ctx.run_udf(dataset=ds, udf=BlasThreadsUDF())
    # inline: a task alone has the machine (the cores others leave free)
    assert 1 <= int(res["threads"].data[0]) <= max(before or [1])
    assert blas_threads() == before
    with Context.make_with("processes", cpus=2) as pctx:
        # worker processes run side by side: one thread each
        ds = pctx.load("memory", data=np.zeros((4, 4, 8, 8)), num_partitions=2)
        assert int(pctx.run_udf(dataset=ds, udf=BlasThreadsUDF())["threads"].data[0]) == 1


def _threads_in_task(ctx, num_partitions):
    ds = ctx.load("memory", data=np.zeros((4, 4, 8, 8)), num_partitions=num_partitions)
    return int(ctx.run_udf(dataset=ds, udf=BlasThreadsUDF())["threads"].data[0])


def test_a_task_alone_gets_the_machine(monkeypatch):
    import os

    from udfkit.executor.base import default_workers

    if not blas_threads():
        return  # no BLAS library with a thread pool loaded: nothing to limit
    before = blas_threads()
    monkeypatch.setattr(os, "getloadavg", lambda: (0.5, 0.5, 0.5))  # an idle machine
    monkeypatch.setitem(_cached, "load_at", -1e9)  # read it again (both restored after)
    monkeypatch.setitem(_cached, "load", 0.0)
    assert machine_threads() == default_workers()
    with Context.make_with("inline") as ctx:
        assert _threads_in_task(ctx, 2) == min(machine_threads(), max(before))
    with Context(executor=InlineExecutor(threads=1)) as ctx:
        assert _threads_in_task(ctx, 1) == 1
    with Context(executor=InlineJobExecutor(inline_threads=1)) as ctx:
        assert _threads_in_task(ctx, 1) == 1
    with Context.make_with("threads", cpus=2) as ctx:
        # side by side: one each; a single task runs alone
        assert _threads_in_task(ctx, 2) == 1
        assert _threads_in_task(ctx, 1) == min(machine_threads(), max(before))
    assert blas_threads() == before


def test_cores_busy_with_others_are_not_counted(monkeypatch):
    import os

    from udfkit.executor.base import default_workers

    monkeypatch.setattr(os, "getloadavg", lambda: (1.0 + default_workers(), 0.0, 0.0))
    monkeypatch.setitem(_cached, "load_at", -1e9)  # read it again (both restored after)
    monkeypatch.setitem(_cached, "load", 0.0)
    assert machine_threads() == 1
    with Context.make_with("inline") as ctx:
        assert _threads_in_task(ctx, 1) == 1
