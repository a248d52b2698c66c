"""The processes executor: the contracts of ExecutorTests, and what is its own (shared
memory, no leaks, fast start and close, workers that import only what they are told)."""

import os
import signal
import time

import numpy as np
import psutil
import pytest

from udfkit import UDF, Context
from udfkit.errors import ExecutorSpecError
from udfkit.executor.processes import ProcessesExecutor
from udfkit.testing.executors import SIG, ExecutorTests, make_ds
from udfkit.udf import SumUDF


def shm_segments():
    """Shared-memory segments of udfkit, without those of other programs' live workers (other
    test runs or benchmarks on the machine): ours, or left by a process that is gone."""
    mine = {p.pid for p in psutil.Process().children(recursive=True)}
    out = []
    for n in os.listdir("/dev/shm"):
        if not n.startswith(("udfkit_", "psm_")):
            continue
        pid = n.split("_")[1]
        if n.startswith("udfkit_") and pid.isdigit() and int(pid) not in mine \
                and psutil.pid_exists(int(pid)):
            continue  # a live worker of another program
        out.append(n)
    return sorted(out)


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


def test_bad_arguments():
    with pytest.raises(ValueError, match="cpus"):
        Context.make_with("processes", cpus=0)
    for kwargs in ({"cpus": 0}, {"cpus": "2"}, {"retries": -1}, {"retries": 0.5}):
        with pytest.raises(ExecutorSpecError, match="cpus|retries"):
            ProcessesExecutor(**kwargs)
    with Context.make_with("inline") as ctx:
        _, ds = make_ds(ctx)
        with pytest.raises(ExecutorSpecError, match="retries: expected an integer of at least 0"):
            ctx.run_udf(dataset=ds, udf=SumUDF(), retries=-1)


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


def test_script_without_main_guard_runs(tmp_path):
    """The default Context's workers are spawned, but they do not run the script again
    (udfkit.executor._spawn): a script without a main guard works, its work done once."""
    import subprocess
    import sys

    script = tmp_path / "noguard.py"
    script.write_text("import numpy as np\nfrom udfkit import Context\nfrom udfkit.udf import SumUDF\n"
                      "print('script body', flush=True)\n"
                      "ctx = Context.make_with('processes', cpus=2)\n"
                      "data = np.arange(4 * 4 * 8 * 8, dtype='float64').reshape(4, 4, 8, 8)\n"
                      "ds = ctx.load('memory', data=data, num_partitions=4)\n"
                      "res = ctx.run_udf(dataset=ds, udf=SumUDF())\n"
                      "print('equal', np.array_equal(res['intensity'].data, data.sum(axis=(0, 1))))\n"
                      "ctx.close()\n")
    r = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=120,
                       cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert r.stdout.split("\n")[:2] == ["script body", "equal True"], r.stdout
    assert r.stderr == ""


def test_other_processes_keep_their_main(tmp_path):
    """Only udfkit's workers start without the main module: a user's own spawned process
    still runs the script as ``__mp_main__`` (multiprocessing's documented behaviour)."""
    import subprocess
    import sys

    script = tmp_path / "own.py"
    script.write_text("import multiprocessing as mp\nfrom udfkit import Context\n"
                      "MARK = 'main ran'\n"
                      "def child(q):\n    import sys\n"
                      "    q.put(getattr(sys.modules.get('__mp_main__'), 'MARK', None))\n"
                      "if __name__ == '__main__':\n"
                      "    ctx = Context.make_with('processes', cpus=1)\n"
                      "    c = mp.get_context('spawn'); q = c.Queue()\n"
                      "    p = c.Process(target=child, args=(q,)); p.start(); print(q.get()); p.join()\n"
                      "    ctx.close()\n")
    r = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=120,
                       cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "main ran"


class TestProcesses(ExecutorTests):
    kind = "processes"
    options = {"cpus": 2}
    remote = True
    # the workers busy with the stopped run stop its tasks at their next report, or skip
    # them if they had not started; a Context's workers may still be importing their warm-up
    # modules then, which the next run waits for (seconds on a busy machine)
    after_interrupt = 10.0


def test_workers_import_what_they_are_told():
    """warm_modules (the Context names udfkit.udf) makes present and future workers import
    what they are told before their first task."""
    def has(name):
        return lambda: name in __import__("sys").modules

    ex = ProcessesExecutor(cpus=1)
    try:
        assert list(ex.run_tasks([has("colorsys")])) == [(0, False)]
        ex.warm_modules(["colorsys"])
        assert list(ex.run_tasks([has("colorsys")])) == [(0, True)]
        os.kill(ex._workers[0].process.pid, signal.SIGKILL)  # its replacement imports it too
        ex._workers[0].process.join()
        assert list(ex.run_tasks([has("colorsys")])) == [(0, True)]
    finally:
        ex.close()
    with Context(executor=ProcessesExecutor(cpus=1)) as ctx:
        # and, on worker processes, the module that loads the cached kernels at their start
        assert ctx.executor._warm == ["udfkit.udf", "udfkit.udf._warm_kernels"]


def test_worker_code_does_not_import_udfs():
    """Executors know nothing of UDFs: the worker loop and the dask preload import no part
    of udfkit.udf (the Context tells them what to warm)."""
    import ast

    import udfkit.executor._worker
    import udfkit.preload

    for module in (udfkit.executor._worker, udfkit.preload):
        tree = ast.parse(open(module.__file__).read())
        names = [n.module or "" for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)]
        names += [a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names]
        assert not [n for n in names if n.endswith("udf") or ".udf." in n], (module, names)


class _BrokenPipe:
    """A worker's pipe whose next send fails as it does when the worker has just died."""

    def __init__(self, conn):
        self.conn = conn

    def send(self, msg):
        raise BrokenPipeError(32, "Broken pipe")

    def __getattr__(self, name):
        return getattr(self.conn, name)


def test_task_sent_to_a_dead_worker_goes_to_its_replacement(pctx):
    """A worker that dies between the look and the send (BrokenPipeError) is replaced and
    the task, which never started, goes to the replacement (no retry used up)."""
    ex = pctx.executor
    ex._ensure_started()
    broken = ex._workers[0]
    broken.conn = _BrokenPipe(broken.conn)
    assert sorted(ex.run_tasks([lambda: 1, lambda: 2], retries=0)) == [(0, 1), (1, 2)]
    assert broken not in ex._workers and len(ex._workers) == 2


def test_worker_killed_every_time_names_the_partition_and_file(pctx, tmp_path):
    """A UDF that kills its worker every time: after the retry, an ExecutorError whose notes
    name the partition, its frames and the data set's file."""
    from udfkit.errors import ExecutorError

    class KillsFromFrame24(UDF):
        def get_result_buffers(self):
            return {"x": self.buffer(kind="nav")}

        def process_tile(self, tile):
            if self.meta.frame_index[0] >= 24:
                os.kill(os.getpid(), signal.SIGKILL)

    path = tmp_path / "scan.raw"
    np.zeros((6, 8, 16, 12), dtype=np.uint16).tofile(path)
    ds = pctx.load("raw", path=str(path), dtype="uint16", nav_shape=(6, 8), sig_shape=(16, 12),
                   num_partitions=2)
    with pytest.raises(ExecutorError, match=r"task 1: .*died.*tried 2 time") as info:
        pctx.run_udf(dataset=ds, udf=KillsFromFrame24(), retries=1)
    notes = "\n".join(getattr(info.value, "__notes__", []))
    assert "partition 1" in notes and "frames [24, 48)" in notes and str(path) in notes, notes


def test_an_early_end_stops_running_tasks_and_keeps_their_workers():
    """A run left early (here: closed after its first result) tells the task still running
    to stop; it stops at its next progress report and its worker serves the next run (it
    used to be killed and respawned)."""
    from udfkit.executor._cancel import GRACE
    from udfkit.testing.executors import Task

    ex = ProcessesExecutor(cpus=2)
    try:
        assert sorted(ex.run_tasks([Task(0), Task(1)])) == [(0, 0), (1, 1)]  # both started
        pids = sorted(w.process.pid for w in ex._workers)
        it = ex.run_tasks([Task(0), Task(1, sleep=0.02, steps=500)])  # 10 s unless stopped
        assert next(it) == (0, 0)
        t0 = time.perf_counter()
        it.close()
        assert time.perf_counter() - t0 < GRACE
        assert sorted(w.process.pid for w in ex._workers) == pids
        assert sorted(ex.run_tasks([Task(i) for i in range(4)])) == [(i, i) for i in range(4)]
        # a task that cannot be told (it takes no progress argument) costs its worker
        import functools

        it = ex.run_tasks([Task(0), functools.partial(time.sleep, 5)])
        assert next(it) == (0, 0)
        # closed once the worker runs it (a task not started yet is skipped, worker kept)
        t0 = time.perf_counter()
        while not any(w.current.value for w in ex._workers) and time.perf_counter() - t0 < 10:
            time.sleep(0.005)
        t0 = time.perf_counter()
        it.close()
        assert GRACE <= time.perf_counter() - t0 < 4
        assert len(set(w.process.pid for w in ex._workers) - set(pids)) == 1
        assert sorted(ex.run_tasks([Task(i) for i in range(2)])) == [(0, 0), (1, 1)]
    finally:
        ex.close()
