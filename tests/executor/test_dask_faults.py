"""The dask executor when things go wrong, on one local cluster for the class: the
contracts of ExecutorTests (a UDF that raises, unpicklable tasks, workers killed mid-run and
idle, interrupts, early close, a real SIGINT), plus what is dask's own. After each test the
cluster is back to its two workers and a run succeeds; after the Context is closed no
process of the cluster is left."""

import os
import signal
import sys
import threading
import time

import cloudpickle
import numpy as np
import pytest

from udfkit import UDF, Context
from udfkit.errors import ExecutorError
from udfkit.testing.executors import SIG, ExecutorTests, Unpicklable, alive, live_children, make_ds

pytestmark = pytest.mark.cluster

# the UDF classes of this module travel by value (the workers cannot import a test module)
cloudpickle.register_pickle_by_value(sys.modules[__name__])


def worker_pids(ctx):
    return sorted(ctx.executor.client.run(os.getpid).values())


class Cluster:
    """The module's Context, and the processes its local cluster started below this one
    (the worker processes: the scheduler and the nannies of a local cluster run in this
    process)."""

    def __init__(self):
        self.before = live_children()
        self.ctx = Context.make_with("dask", cpus=2)
        self.seen = self.started()

    def started(self):
        return live_children() - self.before

    def settled(self, timeout=60):
        """Wait until the cluster has 2 workers again (a nanny restarts a dead one) and no
        other process of it is left; the worker pids."""
        deadline = time.monotonic() + timeout
        while True:
            # a worker slower to restart than the cluster's lost-worker timeout is dropped:
            # the executor starts it again (as it does before every run)
            self.ctx.executor._restore_workers()
            pids = worker_pids(self.ctx)
            procs = self.started()
            self.seen |= procs
            if len(pids) == 2 and {p.pid for p in procs} == set(pids):
                return pids
            assert time.monotonic() < deadline, (pids, procs)
            time.sleep(0.1)


def scheduler_tasks(ctx):
    return set(ctx.executor.client.run_on_scheduler(lambda dask_scheduler: list(dask_scheduler.tasks)))


class Unloadable:
    """Pickles, but cannot be unpickled (on the worker)."""

    def __reduce__(self):
        return (_fail_to_load, ())


def _fail_to_load():
    raise LookupError("cannot be loaded here")


class TestDask(ExecutorTests):
    kind = "dask"
    options = {"cpus": 2}
    remote = True

    @pytest.fixture(scope="class")
    @classmethod
    def cluster(cls):
        c = Cluster()
        assert c.settled(timeout=0) == sorted(p.pid for p in c.seen)
        yield c
        c.seen |= c.started()
        c.ctx.close()
        deadline = time.monotonic() + 10
        while alive(c.seen) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not alive(c.seen), "the local cluster left worker processes behind"

    @pytest.fixture
    def ctx(self, cluster):
        """The class's dask Context; after the test the cluster is back to 2 workers and
        nothing else of it runs."""
        yield cluster.ctx
        cluster.settled()

    def test_kwargs_that_fail_to_load_on_the_worker(self, ctx):
        _, ds = make_ds(ctx)
        with pytest.raises(LookupError, match="cannot be loaded here"):
            ctx.run_udf(dataset=ds, udf=Unpicklable(lock=Unloadable()))

    def test_no_task_submitted_for_unpicklable_kwargs(self, ctx):
        _, ds = make_ds(ctx)
        before = scheduler_tasks(ctx)
        with pytest.raises(Exception, match="cannot be pickled"):
            ctx.run_udf(dataset=ds, udf=Unpicklable(lock={"holds": threading.Lock()}))
        assert scheduler_tasks(ctx) <= before

    def test_workers_that_closed_themselves_are_started_again(self, ctx):
        """A worker that closes itself takes its nanny with it (what a worker that took a
        SIGINT did): the local cluster is left with closed nannies, and a run would wait for
        ever. Between runs and during one, the executor starts them again."""
        # every worker closes while the run's tasks wait (before a run, the same check
        # runs first thing in run_tasks)
        data, ds = make_ds(ctx, num_partitions=4, tileshape=(1,) + SIG)
        timer = threading.Timer(0.5, lambda: ctx.executor.client.run(_close_soon))
        timer.start()
        try:
            res = ctx.run_udf(dataset=ds, udf=SlowSumSig(), retries=3)
        except ExecutorError as e:  # a task whose worker closed under it, more than 3 times
            assert "died" in str(e)
        else:
            np.testing.assert_array_equal(res["intensity"].data, data.sum(axis=(2, 3)))
        finally:
            timer.join()

    @pytest.mark.slow
    def test_many_kills_in_a_long_run(self, ctx):
        """Workers killed again and again (each replacement too) during a run of many
        partitions: every outcome is a correct result or ExecutorError, never a hang."""
        data, ds = make_ds(ctx, num_partitions=12, tileshape=(1,) + SIG)  # 4 × 0.05 s each
        for _ in range(3):
            stop = threading.Event()

            def killer(stop=stop):
                while not stop.wait(0.3):
                    try:
                        os.kill(worker_pids(ctx)[0], signal.SIGKILL)
                    except Exception:
                        pass

            t = threading.Thread(target=killer, daemon=True)
            t.start()
            t0 = time.perf_counter()
            try:
                res = ctx.run_udf(dataset=ds, udf=SlowSumSig(), retries=3)
            except ExecutorError as e:
                assert "died" in str(e)
            else:
                np.testing.assert_array_equal(res["intensity"].data, data.sum(axis=(2, 3)))
            finally:
                stop.set()
                t.join()
            assert time.perf_counter() - t0 < 60


def _close_soon(dask_worker):
    """Run on a worker: close it a moment later, asking its nanny to close too."""
    import asyncio

    loop = asyncio.get_running_loop()
    loop.call_later(0.1, lambda: asyncio.ensure_future(dask_worker.close(nanny=True)))


class SlowSumSig(UDF):
    """Per-frame sums, 50 ms per tile."""

    def get_result_buffers(self):
        return {"intensity": self.buffer(kind="nav", dtype="float64")}

    def process_tile(self, tile):
        time.sleep(0.05)
        self.results.intensity[:] += tile.reshape(len(tile), -1).sum(axis=1)
