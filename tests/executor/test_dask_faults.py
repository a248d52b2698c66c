"""The dask executor when things go wrong, on one local cluster for the module: a UDF that
raises, a worker killed mid-run, a UDF that kills its worker, interrupts (closing a
``run_udf_iter`` generator, KeyboardInterrupt, a real SIGINT), unpicklable parameters.
After each the next run on the same Context succeeds; after the Context is closed no
process of the cluster is left."""

import os
import signal
import subprocess
import sys
import threading
import time
import traceback

import cloudpickle
import numpy as np
import psutil
import pytest
from executor_helpers import (
    SIG,
    SIGINT_SCRIPT_HEAD,
    Boom,
    RaisesOnPartition,
    SlowTiles,
    Unpicklable,
    make_ds,
)

from udfkit import UDF, Context, UDFError
from udfkit.errors import ExecutorError
from udfkit.udf import SumSigUDF, SumUDF

# the UDF classes of this module travel by value (exceptions that must keep their type come
# from executor_helpers, which the workers import by name)
cloudpickle.register_pickle_by_value(sys.modules[__name__])


def descendants(pid=None):
    """Live processes below ``pid`` (default: this process), without multiprocessing's
    resource tracker."""
    out = set()
    try:
        procs = psutil.Process(pid).children(recursive=True)
    except psutil.NoSuchProcess:
        return out
    for p in procs:
        try:
            if p.status() != psutil.STATUS_ZOMBIE and "resource_tracker" not in " ".join(p.cmdline()):
                out.add(p)
        except psutil.NoSuchProcess:
            pass
    return out


def alive(procs):
    out = []
    for p in procs:
        try:
            if p.is_running() and p.status() != psutil.STATUS_ZOMBIE:
                out.append(p)
        except psutil.NoSuchProcess:
            pass
    return out


def worker_pids(ctx):
    return sorted(ctx.executor.client.run(os.getpid).values())


class Cluster:
    """The module's Context, and the processes its local cluster started below this one
    (the worker processes: the scheduler and the nannies of a local cluster run in this
    process)."""

    def __init__(self):
        self.before = descendants()
        self.ctx = Context.make_with("dask", cpus=2)
        self.seen = self.started()

    def started(self):
        return descendants() - self.before

    def settled(self, timeout=20):
        """Wait until the cluster has 2 workers again (a nanny restarts a dead one) and no
        other process of it is left; the worker pids."""
        deadline = time.monotonic() + timeout
        while True:
            pids = worker_pids(self.ctx)
            procs = self.started()
            self.seen |= procs
            if len(pids) == 2 and {p.pid for p in procs} == set(pids):
                return pids
            assert time.monotonic() < deadline, (pids, procs)
            time.sleep(0.1)


@pytest.fixture(scope="module")
def cluster():
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
def dctx(cluster):
    """The module's dask Context; after the test the cluster is back to 2 workers, nothing
    else runs, and a run gives correct results."""
    yield cluster.ctx
    cluster.settled()
    data, ds = make_ds(cluster.ctx)
    res = cluster.ctx.run_udf(dataset=ds, udf=SumUDF())
    np.testing.assert_array_equal(res["intensity"].data, data.sum(axis=(0, 1)))


def test_exception_keeps_type_message_and_worker_traceback(dctx):
    _, ds = make_ds(dctx)
    with pytest.raises(Boom, match=r"bad frame (24|36)") as info:
        dctx.run_udf(dataset=ds, udf=RaisesOnPartition())
    assert "process_tile" in "".join(traceback.format_exception(info.value))


def scheduler_tasks(ctx):
    return set(ctx.executor.client.run_on_scheduler(lambda dask_scheduler: list(dask_scheduler.tasks)))


def test_unpicklable_kwargs_fail_before_anything_runs(dctx):
    _, ds = make_ds(dctx)
    lock = threading.Lock()
    for kwargs in (lock, {"holds": lambda: lock}):
        before = scheduler_tasks(dctx)
        with pytest.raises(UDFError, match="cannot be pickled"):
            dctx.run_udf(dataset=ds, udf=Unpicklable(lock=kwargs), progress=Reporter())
        assert scheduler_tasks(dctx) <= before  # no task submitted


class Unloadable:
    """Pickles, but cannot be unpickled (on the worker)."""

    def __reduce__(self):
        return (_fail_to_load, ())


def _fail_to_load():
    raise LookupError("cannot be loaded here")


def test_kwargs_that_fail_to_load_on_the_worker(dctx):
    _, ds = make_ds(dctx)
    with pytest.raises(LookupError, match="cannot be loaded here"):
        dctx.run_udf(dataset=ds, udf=Unpicklable(lock=Unloadable()))


class SlowSumSig(UDF):
    """Per-frame sums, 50 ms per tile."""

    def get_result_buffers(self):
        return {"intensity": self.buffer(kind="nav", dtype="float64")}

    def process_tile(self, tile):
        time.sleep(0.05)
        self.results.intensity[:] += tile.reshape(len(tile), -1).sum(axis=1)


class Reporter:
    def start(self, total):
        self.total, self.n, self.calls = total, 0, []

    def advance(self, n):
        self.n += n
        self.calls.append(n)
        assert 0 <= n and self.n <= self.total, "progress goes back or beyond the total"

    def close(self):
        pass


class KillOnReport(Reporter):
    """Kills a worker with SIGKILL at report ``after`` (the run is under way)."""

    def __init__(self, pid, after=1):
        self.pid = pid
        self.after = after
        self.killed = False

    def advance(self, n):
        super().advance(n)
        if not self.killed and len(self.calls) >= self.after:
            self.killed = True
            os.kill(self.pid, signal.SIGKILL)


def test_killed_worker_mid_run(dctx):
    """A worker SIGKILLed in the middle of a partition: dask runs the partition again on a
    live worker (up to 3 times a task may lose its worker), so the run ends with a correct
    result — or, had it no worker left, with ExecutorError — within seconds, never a hang;
    the nanny starts a new worker. Progress counts the frames of the partition run again
    once, not twice."""
    data, ds = make_ds(dctx, num_partitions=2, tileshape=(1,) + SIG)  # 24 × 0.05 s each
    pids = worker_pids(dctx)
    rep = KillOnReport(pids[0], after=3)
    t0 = time.perf_counter()
    try:
        res = dctx.run_udf(dataset=ds, udf=SlowSumSig(), progress=rep)
    except ExecutorError as e:  # pragma: no cover - not what dask does with one kill
        assert "died" in str(e) and "partition" in "\n".join(e.__notes__)
    else:
        np.testing.assert_array_equal(res["intensity"].data, data.sum(axis=(2, 3)))
        assert rep.n == rep.total == 48
    assert rep.killed
    assert time.perf_counter() - t0 < 15
    assert pids[0] not in worker_pids(dctx) or not psutil.pid_exists(pids[0])


class KillsItsWorker(UDF):
    """A UDF that crashes its worker process (think segfault) in partitions from frame 24."""

    def get_result_buffers(self):
        return {"x": self.buffer(kind="nav")}

    def process_tile(self, tile):
        if self.meta.frame_index[0] >= 24:
            os.kill(os.getpid(), signal.SIGKILL)


def test_partition_that_kills_every_worker_is_a_clear_error(dctx):
    """Dask tries the partition on 4 workers in turn, each dies; then ExecutorError names
    the partition."""
    _, ds = make_ds(dctx, num_partitions=2, tileshape=(1,) + SIG)
    t0 = time.perf_counter()
    with pytest.raises(ExecutorError, match="task 1 failed: the dask workers running it died") as info:
        dctx.run_udf(dataset=ds, udf=KillsItsWorker())
    assert time.perf_counter() - t0 < 20
    notes = "\n".join(getattr(info.value, "__notes__", []))
    assert "partition 1" in notes and "frames [24, 48)" in notes and "MemoryDataSet" in notes


class InterruptAfter(Reporter):
    def __init__(self, frames):
        self.frames = frames

    def advance(self, n):
        super().advance(n)
        if self.n >= self.frames:
            raise KeyboardInterrupt


def check_next_run_is_prompt(ctx, data):
    """A run right after an interrupt is not held up by the partitions that were stopped."""
    _, ds = make_ds(ctx, num_partitions=2)
    t0 = time.perf_counter()
    res = ctx.run_udf(dataset=ds, udf=SumUDF())
    np.testing.assert_array_equal(res["intensity"].data, data.sum(axis=(0, 1)))
    assert time.perf_counter() - t0 < 1.5


def test_keyboard_interrupt_returns_fast(dctx):
    # 2 partitions of 24 × 0.2 s, interrupted at the first report (after ~0.2 s): the
    # stopped partitions do not hold the workers for the 4.6 s they had left
    data, ds = make_ds(dctx, num_partitions=2, tileshape=(1,) + SIG)
    t0 = time.perf_counter()
    with pytest.raises(KeyboardInterrupt):
        dctx.run_udf(dataset=ds, udf=SlowTiles(delay=0.2), progress=InterruptAfter(1))
    assert time.perf_counter() - t0 < 1.5
    check_next_run_is_prompt(dctx, data)


class SlowFromFrame12(UDF):
    """Fast on frames 0-11, 0.2 s per tile from frame 12 on."""

    def get_result_buffers(self):
        return {"x": self.buffer(kind="nav")}

    def process_tile(self, tile):
        if self.meta.frame_index[0] >= 12:
            time.sleep(0.2)


def test_close_run_udf_iter_early(dctx):
    # partition 0 is done at once, the others would take 12 × 0.2 s each
    data, ds = make_ds(dctx, num_partitions=4, tileshape=(1,) + SIG)
    gen = dctx.run_udf_iter(dataset=ds, udf=SlowFromFrame12())
    first = next(gen)
    assert not first.complete
    t0 = time.perf_counter()
    gen.close()
    assert time.perf_counter() - t0 < 1.5
    check_next_run_is_prompt(dctx, data)


def test_results_after_faults_equal_inline(dctx):
    from executor_helpers import check_equals_inline

    check_equals_inline(dctx)
    _, ds = make_ds(dctx, num_partitions=3)
    a = dctx.run_udf(dataset=ds, udf=SumSigUDF(), deterministic=True)["intensity"].data
    inline = Context.make_with("inline")
    _, ds_inline = make_ds(inline, num_partitions=3)
    assert np.array_equal(a, inline.run_udf(dataset=ds_inline, udf=SumSigUDF())["intensity"].data)


SIGINT_SCRIPT = SIGINT_SCRIPT_HEAD + """
if __name__ == "__main__":
    code = 0
    with Context.make_with("dask", cpus=2) as ctx:
        print("workers", *ctx.executor.client.run(os.getpid).values(), flush=True)
        ds = ctx.load("memory", data=np.zeros((16, 16, 8, 8)), tileshape=(1, 8, 8), num_partitions=4)
        try:
            ctx.run_udf(dataset=ds, udf=Slow(), progress=Started())
        except KeyboardInterrupt:
            # the Context is still usable after the interrupt
            t0 = time.perf_counter()
            r = ctx.run_udf(dataset=ctx.load("memory", data=np.ones((2, 2, 4, 4))), udf=Slow())
            print("interrupted, then ran", r["x"].data.shape, f"in {time.perf_counter() - t0:.2f} s",
                  flush=True)
            code = 3
    print("closed", flush=True)
    sys.exit(code)
"""


def test_real_sigint_stops_the_run(tmp_path):
    """Ctrl-C in a script with a local dask cluster: KeyboardInterrupt within a second, the
    Context still runs, and closing it leaves no process behind."""
    script = tmp_path / "sigint.py"
    script.write_text(SIGINT_SCRIPT)
    proc = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, cwd=tmp_path)
    try:
        workers = proc.stdout.readline().split()
        assert workers[:1] == ["workers"] and len(workers) == 3, proc.stderr.read()
        assert proc.stdout.readline().strip() == "started"
        time.sleep(0.5)  # the workers are busy with 12.8 s of tiles
        kids = descendants(proc.pid)
        assert {int(p) for p in workers[1:]} <= {k.pid for k in kids}
        t0 = time.perf_counter()
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:  # pragma: no cover - only on failure
            proc.kill()
            proc.wait()
    assert proc.returncode == 3, err
    assert "interrupted, then ran (2, 2)" in out and out.rstrip().endswith("closed")
    assert time.perf_counter() - t0 < 6
    ran_in = float(out.split(" in ")[1].split()[0])
    assert ran_in < 1.5, out
    deadline = time.monotonic() + 5
    while alive(kids) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not alive(kids)


@pytest.mark.slow
def test_many_kills_in_a_long_run(dctx):
    """Workers killed again and again (each replacement too) during a run of many
    partitions: every outcome is a correct result or ExecutorError, never a hang."""
    data, ds = make_ds(dctx, num_partitions=12, tileshape=(1,) + SIG)  # 4 × 0.05 s each
    for _ in range(3):
        stop = threading.Event()

        def killer(stop=stop):
            while not stop.wait(0.3):
                try:
                    os.kill(worker_pids(dctx)[0], signal.SIGKILL)
                except Exception:
                    pass

        t = threading.Thread(target=killer, daemon=True)
        t.start()
        t0 = time.perf_counter()
        try:
            res = dctx.run_udf(dataset=ds, udf=SlowSumSig())
        except ExecutorError as e:
            assert "died" in str(e)
        else:
            np.testing.assert_array_equal(res["intensity"].data, data.sum(axis=(2, 3)))
        finally:
            stop.set()
            t.join()
        assert time.perf_counter() - t0 < 60
