"""The inline and threads executors: the contracts of ExecutorTests, and what is theirs."""

import threading
import time

import pytest

from udfkit import UDF, Context
from udfkit.errors import ExecutorSpecError
from udfkit.executor import make_executor
from udfkit.executor.threads import ThreadsExecutor
from udfkit.testing.executors import ExecutorTests, make_ds

#: tasks run in this process: no worker of their own can die, nothing is pickled
IN_PROCESS = frozenset({"killed_worker", "real_sigint", "unpicklable_task"})


class TestInline(ExecutorTests):
    kind = "inline"
    not_applicable = IN_PROCESS


class TestInlineDebug(ExecutorTests):
    """Pickles every task and result as a worker process would: the pickling contracts."""

    kind = "inline"
    options = {"debug": True}
    not_applicable = frozenset({"killed_worker", "real_sigint", "interrupt", "early_close",
                                "progress"})


class TestThreads(ExecutorTests):
    kind = "threads"
    options = {"cpus": 2}
    not_applicable = IN_PROCESS


def test_default_workers_and_bad_arguments():
    ex = make_executor("threads")
    assert ex.num_workers >= 1
    ex.close()
    for kwargs in ({"cpus": 0}, {"cpus": 1.5}, {"cpus": True}, {"cpus": 2, "max_in_flight": 0}):
        with pytest.raises(ExecutorSpecError, match="cpus|max_in_flight"):
            ThreadsExecutor(**kwargs)
    # an ExecutorSpecError is a ValueError: callers that caught ValueError still do
    with pytest.raises(ValueError, match="cpus: expected an integer of at least 1, got 0"):
        ThreadsExecutor(cpus=0)
    with pytest.raises(RuntimeError, match="closed"):
        list(ex.run_tasks([lambda: 1]))
    with pytest.raises(ExecutorSpecError, match="executor kind: expected one of .*'nope'"):
        make_executor("nope")


class Concurrency(UDF):
    """Records how many partitions run at the same time."""
    lock = threading.Lock()
    running = [0, 0]  # now, peak

    def get_result_buffers(self):
        return {"x": self.buffer(kind="nav")}

    def process_partition(self, partition):
        with Concurrency.lock:
            Concurrency.running[0] += 1
            Concurrency.running[1] = max(Concurrency.running[1], Concurrency.running[0])
        time.sleep(0.02)
        with Concurrency.lock:
            Concurrency.running[0] -= 1


def test_partitions_run_in_parallel_but_bounded():
    Concurrency.running[:] = [0, 0]
    with Context.make_with("threads", cpus=3) as ctx:
        _, ds = make_ds(ctx, num_partitions=12)
        ctx.run_udf(dataset=ds, udf=Concurrency())
    assert 2 <= Concurrency.running[1] <= 3


def test_in_flight_tasks_are_bounded():
    """At most max_in_flight tasks are submitted before the first result is taken."""
    submitted = []
    ex = ThreadsExecutor(cpus=2, max_in_flight=3)

    def task(i):
        def run():
            submitted.append(i)
            return i
        return run

    it = ex.run_tasks([task(i) for i in range(10)])
    next(it)
    time.sleep(0.1)
    assert len(submitted) <= 3 + 1
    it.close()
    ex.close()


def test_an_early_end_stops_the_running_tasks():
    """Threads cannot be interrupted, but a task of a run that ended early stops at its next
    progress report instead of running on beside the next run."""
    steps = []

    def task(progress=None):
        for _ in range(500):  # 10 s unless stopped
            time.sleep(0.02)
            steps.append(1)
            progress(1)
        return 1

    ex = ThreadsExecutor(cpus=2)
    try:
        it = ex.run_tasks([lambda progress=None: 0, task])
        assert next(it) == (0, 0)
        t0 = time.perf_counter()
        it.close()
        assert time.perf_counter() - t0 < 0.5
        done = len(steps)
        time.sleep(0.1)
        assert len(steps) == done < 500
    finally:
        ex.close()
