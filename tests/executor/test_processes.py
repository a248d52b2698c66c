"""The processes executor: results, failures, cancellation, no leaks."""

import os
import signal
import threading
import time

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
    check_equals_inline,
    make_ds,
)

from udfkit import UDF, Context, UDFError
from udfkit.errors import ExecutorError
from udfkit.udf import SumUDF


def shm_segments():
    return sorted(n for n in os.listdir("/dev/shm") if n.startswith(("udfkit_", "psm_")))


def children():
    """Live worker processes of this process (not multiprocessing's resource tracker)."""
    out = []
    for p in psutil.Process().children(recursive=True):
        try:
            if p.status() != psutil.STATUS_ZOMBIE and "resource_tracker" not in " ".join(p.cmdline()):
                out.append(p)
        except psutil.NoSuchProcess:
            pass
    return out


@pytest.fixture(scope="module")
def pctx():
    before = shm_segments()
    ctx = Context.make_with("processes", cpus=2)
    yield ctx
    ctx.close()
    assert shm_segments() == before



def test_results_equal_inline(pctx):
    check_equals_inline(pctx)


def test_large_results_travel_through_shared_memory(pctx):
    # per-partition buffers of 4 MiB: out of band, and nothing left in /dev/shm afterwards
    class Big(UDF):
        def get_result_buffers(self):
            return {"frames": self.buffer(kind="nav", extra_shape=(256, 256), dtype="float64")}

        def process_tile(self, tile):
            self.results.frames[:] = tile.reshape(len(tile), -1).sum(axis=1)[:, None, None]

    data, ds = make_ds(pctx, num_partitions=2)
    before = shm_segments()
    res = pctx.run_udf(dataset=ds, udf=Big())
    np.testing.assert_allclose(res["frames"].data[..., 0, 0], data.sum(axis=(2, 3)))
    assert shm_segments() == before




def test_exception_keeps_type_and_worker_traceback(pctx):
    data, ds = make_ds(pctx)
    with pytest.raises(Boom, match="bad frame") as info:
        pctx.run_udf(dataset=ds, udf=RaisesOnPartition())
    notes = "\n".join(getattr(info.value, "__notes__", []))
    assert "worker traceback" in notes and "process_tile" in notes
    res = pctx.run_udf(dataset=ds, udf=SumUDF())
    np.testing.assert_array_equal(res["intensity"].data, data.sum(axis=(0, 1)))


def test_unpicklable_kwargs_fail_before_anything_runs(pctx):
    _, ds = make_ds(pctx)
    with pytest.raises(UDFError, match="pickle"):
        pctx.run_udf(dataset=ds, udf=Unpicklable(lock=threading.Lock()))



class KillOnFirstReport:
    """A progress reporter that kills a busy worker once the run is under way."""

    def __init__(self, executor):
        self.executor = executor
        self.done = False

    def start(self, total):
        pass

    def advance(self, n):
        if not self.done:
            self.done = True
            busy = [w for w in self.executor._workers if w.busy is not None]
            os.kill(busy[0].process.pid, signal.SIGKILL)

    def close(self):
        pass


def test_killed_worker_gives_clear_error_and_is_replaced(pctx):
    data, ds = make_ds(pctx, num_partitions=2, tileshape=(1,) + SIG)
    pids = sorted(w.process.pid for w in pctx.executor._workers)
    t0 = time.perf_counter()
    with pytest.raises(ExecutorError, match="died .*killed by signal 9.*replaced"):
        pctx.run_udf(dataset=ds, udf=SlowTiles(), progress=KillOnFirstReport(pctx.executor))
    assert time.perf_counter() - t0 < 10
    assert sorted(w.process.pid for w in pctx.executor._workers) != pids
    assert len(children()) == 2
    res = pctx.run_udf(dataset=ds, udf=SumUDF())
    np.testing.assert_array_equal(res["intensity"].data, data.sum(axis=(0, 1)))


class InterruptAfter:
    def __init__(self, frames):
        self.frames = frames
        self.seen = 0

    def start(self, total):
        pass

    def advance(self, n):
        self.seen += n
        if self.seen >= self.frames:
            raise KeyboardInterrupt

    def close(self):
        pass


def test_interrupt_returns_fast_and_context_stays_usable(pctx):
    data, ds = make_ds(pctx, num_partitions=2, tileshape=(1,) + SIG)  # 24 × 0.05 s per partition
    t0 = time.perf_counter()
    with pytest.raises(KeyboardInterrupt):
        pctx.run_udf(dataset=ds, udf=SlowTiles(), progress=InterruptAfter(4))
    assert time.perf_counter() - t0 < 2.5
    assert len(children()) == 2
    res = pctx.run_udf(dataset=ds, udf=SumUDF())
    np.testing.assert_array_equal(res["intensity"].data, data.sum(axis=(0, 1)))


def test_progress_from_running_partitions(pctx):
    _, ds = make_ds(pctx, num_partitions=1, tileshape=(2,) + SIG)
    calls = []

    class Rec:
        def start(self, total):
            self.total = total

        def advance(self, n):
            calls.append((n, threading.get_ident()))

        def close(self):
            pass

    rec = Rec()
    pctx.run_udf(dataset=ds, udf=SlowTiles(), progress=rec)
    assert sum(n for n, _ in calls) == rec.total == 48
    assert len(calls) >= 3
    assert {t for _, t in calls} == {threading.get_ident()}


def test_close_early_iter_then_run_again(pctx):
    data, ds = make_ds(pctx, num_partitions=6)
    gen = pctx.run_udf_iter(dataset=ds, udf=SumUDF())
    next(gen)
    gen.close()
    res = pctx.run_udf(dataset=ds, udf=SumUDF())
    np.testing.assert_array_equal(res["intensity"].data, data.sum(axis=(0, 1)))


def test_soak_no_growth(pctx):
    _, ds = make_ds(pctx, num_partitions=2)
    me = psutil.Process()
    for _ in range(20):
        pctx.run_udf(dataset=ds, udf=SumUDF())
    rss0, fds0 = me.memory_info().rss, me.num_fds()
    for _ in range(200):
        pctx.run_udf(dataset=ds, udf=SumUDF())
    assert me.memory_info().rss - rss0 < 50 << 20
    assert me.num_fds() - fds0 <= 2


def test_start_and_close_are_fast_and_leave_nothing():
    before = children()
    t0 = time.perf_counter()
    ctx = Context.make_with("processes", cpus=2)
    ctx.close()
    assert time.perf_counter() - t0 < 1.0
    assert children() == before


def test_bad_cpus():
    with pytest.raises(ValueError, match="cpus"):
        Context.make_with("processes", cpus=0)


class FloatSum(UDF):
    """float32 sums whose rounding depends on the merge order."""

    def get_result_buffers(self):
        return {"total": self.buffer(kind="sig", dtype="float32")}

    def process_tile(self, tile):
        self.results.total[:] += tile.sum(axis=0)

    def merge(self, dest, src):
        dest.total[:] += src.total


@pytest.mark.parametrize("kind", ["threads", "processes"])
def test_deterministic_merge_is_bit_identical_to_inline(kind, pctx):
    data = (np.random.default_rng(9).random((16, 16) + SIG) * 1e4).astype(np.float32)
    ref_ctx = Context.make_with("inline")
    ref = ref_ctx.run_udf(dataset=ref_ctx.load("memory", data=data, num_partitions=16),
                          udf=FloatSum())["total"].data
    ctx = pctx if kind == "processes" else Context.make_with("threads", cpus=2)
    ds = ctx.load("memory", data=data, num_partitions=16)
    for _ in range(3):
        got = ctx.run_udf(dataset=ds, udf=FloatSum(), deterministic=True)["total"].data
        assert np.array_equal(got, ref)


def test_dead_worker_error_names_the_partition(pctx):
    _, ds = make_ds(pctx, num_partitions=2, tileshape=(1,) + SIG)
    with pytest.raises(ExecutorError) as info:
        pctx.run_udf(dataset=ds, udf=SlowTiles(), progress=KillOnFirstReport(pctx.executor))
    notes = "\n".join(getattr(info.value, "__notes__", []))
    assert "partition" in notes and "frames [" in notes and "MemoryDataSet" in notes


def test_script_without_main_guard_gets_a_hint(tmp_path):
    """The default Context spawns workers, which import the script: without a main guard
    the user gets an error that says so (not a hang)."""
    import subprocess
    import sys

    script = tmp_path / "noguard.py"
    script.write_text("import numpy as np\nfrom udfkit import Context\nfrom udfkit.udf import SumUDF\n"
                      "ctx = Context()\nds = ctx.load('memory', data=np.ones((4, 4, 8, 8)))\n"
                      "ctx.run_udf(dataset=ds, udf=SumUDF())\n")
    r = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=120,
                       cwd=tmp_path)
    assert r.returncode != 0
    assert "ExecutorError" in r.stderr and '__name__ == "__main__"' in r.stderr


SIGINT_SCRIPT = SIGINT_SCRIPT_HEAD + """
if __name__ == "__main__":
    with Context() as ctx:
        ds = ctx.load("memory", data=np.zeros((16, 16, 8, 8)), tileshape=(1, 8, 8), num_partitions=4)
        try:
            ctx.run_udf(dataset=ds, udf=Slow(), progress=Started())
        except KeyboardInterrupt:
            # the Context is still usable after the interrupt
            r = ctx.run_udf(dataset=ctx.load("memory", data=np.ones((2, 2, 4, 4))), udf=Slow())
            print("interrupted, then ran", r["x"].data.shape, flush=True)
            sys.exit(3)
"""


def test_real_sigint_stops_the_run(tmp_path):
    import subprocess
    import sys

    script = tmp_path / "sigint.py"
    script.write_text(SIGINT_SCRIPT)
    proc = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, cwd=tmp_path)
    assert proc.stdout.readline().strip() == "started"
    time.sleep(0.5)  # the workers are busy with 12.8 s of tiles
    kids = psutil.Process(proc.pid).children(recursive=True)
    t0 = time.perf_counter()
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 3, err
    assert "interrupted, then ran (2, 2)" in out
    assert time.perf_counter() - t0 < 5
    time.sleep(0.2)
    assert not [k for k in kids if k.is_running() and k.status() != psutil.STATUS_ZOMBIE
                and "resource_tracker" not in " ".join(k.cmdline())]
