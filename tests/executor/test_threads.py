"""The threads executor, and progress reports while partitions run (inline and threads)."""

import threading
import time

import numpy as np
import pytest
from executor_helpers import SIG, Boom, RaisesOnPartition, SlowTiles, check_equals_inline, make_ds

from udfkit import UDF, Context
from udfkit.executor import make_executor
from udfkit.executor.threads import ThreadsExecutor
from udfkit.udf import SumUDF


@pytest.fixture
def threads_ctx():
    with Context.make_with("threads", cpus=2) as ctx:
        yield ctx


def test_results_equal_inline(threads_ctx):
    check_equals_inline(threads_ctx)


def test_default_workers_and_bad_cpus():
    ex = make_executor("threads")
    assert ex.num_workers >= 1
    ex.close()
    with pytest.raises(ValueError, match="cpus"):
        ThreadsExecutor(cpus=0)
    with pytest.raises(RuntimeError, match="closed"):
        list(ex.run_tasks([lambda: 1]))




def test_exception_reaches_caller_and_context_stays_usable(threads_ctx):
    data, ds = make_ds(threads_ctx)
    with pytest.raises(Boom, match="bad frame"):
        threads_ctx.run_udf(dataset=ds, udf=RaisesOnPartition())
    res = threads_ctx.run_udf(dataset=ds, udf=SumUDF())
    np.testing.assert_array_equal(res["intensity"].data, data.sum(axis=(0, 1)))


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



class Recorder:
    def __init__(self, stop_after=None):
        self.calls = []
        self.threads = set()
        self.stop_after = stop_after

    def start(self, total):
        self.total = total

    def advance(self, n):
        self.calls.append(n)
        self.threads.add(threading.get_ident())
        if self.stop_after is not None and sum(self.calls) >= self.stop_after:
            raise KeyboardInterrupt

    def close(self):
        self.closed = True


@pytest.mark.parametrize("kind", ["inline", "threads"])
def test_progress_while_partitions_run(kind):
    """Reports arrive during a partition, in the calling thread, and add up to the total."""
    with Context.make_with(kind) as ctx:
        # one partition of 48 frames in tiles of 2 frames: ~0.7 s, reports every 0.2 s
        _, ds = make_ds(ctx, num_partitions=1, tileshape=(2,) + SIG)
        rec = Recorder()
        ctx.run_udf(dataset=ds, udf=SlowTiles(), progress=rec)
    assert sum(rec.calls) == rec.total == 48
    assert len(rec.calls) >= 3, rec.calls  # not just one report at the end
    assert rec.threads == {threading.get_ident()}
    assert rec.closed


@pytest.mark.parametrize("kind", ["inline", "threads"])
def test_interrupt_stops_the_run_and_context_stays_usable(kind):
    with Context.make_with(kind) as ctx:
        data, ds = make_ds(ctx, num_partitions=8, tileshape=(2,) + SIG)
        rec = Recorder(stop_after=1)
        t0 = time.perf_counter()
        with pytest.raises(KeyboardInterrupt):
            ctx.run_udf(dataset=ds, udf=SlowTiles(), progress=rec)
        assert time.perf_counter() - t0 < 2.0
        assert rec.closed
        res = ctx.run_udf(dataset=ds, udf=SumUDF())
        np.testing.assert_array_equal(res["intensity"].data, data.sum(axis=(0, 1)))
