"""The conformance suite of executors: :class:`ExecutorTests`.

Every executor's test class in ``tests/executor/`` subclasses :class:`ExecutorTests`, names
the executor (``kind`` and ``options`` for :meth:`udfkit.Context.make_with`) and inherits the
contracts of :mod:`udfkit.executor.base`:

1. an exception raised by a task keeps its **original type**, with the worker's traceback
   (as a note where the task ran in another process), and the Context stays usable;
2. an **unpicklable task** gives :class:`~udfkit.errors.ExecutorError` naming the task
   (``task_index``) before anything runs; an unpicklable UDF parameter a ``UDFError``;
3. a **killed worker** is replaced: a task whose worker died runs again once on a fresh
   worker (the run succeeds, progress never goes back), a task that kills its worker every
   time fails with an ``ExecutorError`` naming the task and the partition, and a worker
   killed while idle does not break the next run;
4. an **interrupt** (``KeyboardInterrupt`` from the progress callback) cancels the run
   promptly and the Context stays usable;
5. an **early close** of the result iterator starts nothing more, and the executor stays
   usable;
6. results of real UDFs **equal the inline executor's** and numpy;
7. a **real SIGINT** to a script running a UDF gives ``KeyboardInterrupt`` quickly, the
   Context still runs, and no worker process is left; so does a SIGINT to the script's whole
   **process group**, as a terminal's Ctrl-C sends it (the workers get it too);
8. a script fed on **standard input** (``python - < analysis.py``) or given with
   ``python -c``, with its UDF defined there, runs (contract ``stdin_script``);
9. ``SystemExit`` or ``KeyboardInterrupt`` raised by a UDF comes back promptly with its type,
   not as a dead worker (contract ``base_exit``); an exception that cannot be sent back from
   a worker comes back with its original type or as an ``ExecutorError`` with its type name,
   message and traceback (contract ``unsendable_exception``);
10. a result handed back is **not kept** by the executor once the next one is handed back
    (contract ``releases_results``: one partition's buffers more in memory otherwise);

and progress reports of running tasks arrive on the calling thread and add up.

A contract that does not apply to an executor (threads cannot be killed alone) is named in
the class attribute ``not_applicable``; its test is then skipped with that reason (for
``unpicklable_task``, only the executor-level check is left out: tasks that run in this
process are not pickled).

The tasks and UDFs used here live in this module, so worker processes import them by name;
a test module's own classes travel to workers only if registered by value
(``cloudpickle.register_pickle_by_value``).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
import traceback
import uuid
from pathlib import Path
from typing import ClassVar

import numpy as np
import pytest

from ..api import Context
from ..errors import ExecutorError, UDFError
from ..udf import UDF

__all__ = ["ExecutorTests", "alive", "Task", "Boom", "RaisesOnPartition", "SlowTiles", "Unpicklable",
           "KillsItsWorker", "Exits", "Unsendable", "RaisesUnsendable", "Returns", "make_ds",
           "check_equals_inline", "live_children", "NAV", "SIG", "CONTRACTS"]

#: the navigation and signal shape of :func:`make_ds`'s data
NAV, SIG = (6, 8), (16, 12)

#: the names of the contracts, as ``not_applicable`` takes them
CONTRACTS = frozenset({"exception", "unpicklable_task", "killed_worker", "interrupt",
                       "early_close", "equals_inline", "real_sigint", "progress", "stdin_script",
                       "base_exit", "unsendable_exception", "releases_results"})


def make_ds(ctx, num_partitions=4, tileshape=None):
    """uint16 data of shape ``NAV + SIG`` in the memory format: ``(data, dataset)``."""
    data = np.random.default_rng(5).integers(0, 1000, NAV + SIG).astype(np.uint16)
    return data, ctx.load("memory", data=data, num_partitions=num_partitions, tileshape=tileshape)


def check_equals_inline(ctx) -> None:
    """Sum, SumSig and StdDev on ``ctx`` equal the inline executor's results and numpy."""
    from ..udf import StdDevUDF, SumSigUDF, SumUDF

    def udfs():
        return [SumUDF(), SumSigUDF(), StdDevUDF()]

    data, ds = make_ds(ctx, num_partitions=5)
    with Context.make_with("inline") as inline:
        _, ds_inline = make_ds(inline, num_partitions=5)
        ref = inline.run_udf(dataset=ds_inline, udf=udfs())
    got = ctx.run_udf(dataset=ds, udf=udfs())
    for g, r in zip(got, ref):
        for name in r:
            np.testing.assert_allclose(g[name].data, r[name].data, rtol=1e-12)
    np.testing.assert_array_equal(got[0]["intensity"].data, data.sum(axis=(0, 1)))
    np.testing.assert_array_equal(got[1]["intensity"].data, data.sum(axis=(2, 3)))


def live_children(pid=None) -> set:
    """Live processes below ``pid`` (default: this one), without multiprocessing's resource
    tracker."""
    import psutil

    out: set = set()
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


class Boom(ValueError):
    """The exception :class:`RaisesOnPartition` raises (a class the workers import)."""


class RaisesOnPartition(UDF):
    """Raises :class:`Boom` in the partitions from frame 24 on."""

    def get_result_buffers(self):
        return {"x": self.buffer(kind="nav")}

    def process_tile(self, tile):
        if self.meta.frame_index[0] >= 24:
            raise Boom(f"bad frame {self.meta.frame_index[0]}")


class SlowTiles(UDF):
    """``delay`` seconds (default 50 ms) per tile: long enough to interrupt a run."""

    def __init__(self, delay=0.05):
        super().__init__(delay=delay)

    def get_result_buffers(self):
        return {"x": self.buffer(kind="nav")}

    def process_tile(self, tile):
        time.sleep(self.params.delay)


class Unpicklable(UDF):
    """Takes a keyword argument (a lock) that cannot be pickled to a worker."""

    def __init__(self, lock=None):
        super().__init__(lock=lock)

    def get_result_buffers(self):
        return {"x": self.buffer(kind="nav")}

    def process_tile(self, tile):
        pass


class KillsItsWorker(UDF):
    """Per-frame sums, 20 ms per tile; SIGKILLs its own worker process at frame 30, every
    time, or with ``once`` only on the first attempt. Each attempt that reaches frame 30
    leaves a file ``attempt-*`` in ``marker_dir``."""

    def __init__(self, marker_dir, once=False):
        super().__init__(marker_dir=marker_dir, once=once)

    def get_result_buffers(self):
        return {"intensity": self.buffer(kind="nav", dtype="float64")}

    def process_tile(self, tile):
        time.sleep(0.02)
        if self.meta.frame_index[0] == 30:
            earlier = list(Path(self.params.marker_dir).glob("attempt-*"))
            Path(self.params.marker_dir, f"attempt-{uuid.uuid4().hex}").touch()
            if not (self.params.once and earlier):
                os.kill(os.getpid(), signal.SIGKILL)
        self.results.intensity[:] += tile.reshape(len(tile), -1).sum(axis=1)


class Exits(UDF):
    """Raises ``SystemExit(3)`` (``what="exit"``) or ``KeyboardInterrupt`` (``"interrupt"``)
    in ``process_frame``, as a UDF calling ``sys.exit`` or a library giving up would."""

    def __init__(self, what="exit"):
        super().__init__(what=what)

    def get_result_buffers(self):
        return {"x": self.buffer(kind="nav")}

    def process_frame(self, frame):
        if self.params.what == "exit":
            raise SystemExit(3)
        raise KeyboardInterrupt("raised by the UDF")


class Unsendable(Exception):
    """An exception that holds a lock: it cannot be pickled back from a worker."""

    def __init__(self, message):
        super().__init__(message)
        self.lock = threading.Lock()


class RaisesUnsendable(UDF):
    """Raises :class:`Unsendable` in ``process_tile``."""

    def get_result_buffers(self):
        return {"x": self.buffer(kind="nav")}

    def process_tile(self, tile):
        raise Unsendable(f"unsendable at frame {self.meta.frame_index[0]}")


class Returns:
    """A picklable executor task that returns a new :class:`Returned` object (for the
    ``releases_results`` contract: it can be watched through a weak reference)."""

    def __init__(self, value):
        self.value = value

    def __call__(self, progress=None):
        return Returned(self.value)


class Returned:
    """What :class:`Returns` returns."""

    def __init__(self, value):
        self.value = value


class Task:
    """A picklable executor task: records its start in ``marker_dir``, reports ``steps``
    frames ``sleep`` seconds apart, returns ``value``; ``payload`` travels along (give it
    something unpicklable)."""

    def __init__(self, value, sleep=0.0, steps=1, marker_dir=None, payload=None):
        self.value, self.sleep, self.steps = value, sleep, steps
        self.marker_dir, self.payload = marker_dir, payload

    def __call__(self, progress=None):
        if self.marker_dir is not None:
            Path(self.marker_dir, f"started-{self.value}-{uuid.uuid4().hex}").touch()
        for _ in range(self.steps):
            time.sleep(self.sleep)
            if progress is not None:
                progress(1)
        return self.value


def alive(procs) -> list:
    """The processes of ``procs`` still running (zombies count as gone)."""
    import psutil

    out = []
    for p in procs:
        try:
            if p.is_running() and p.status() != psutil.STATUS_ZOMBIE:
                out.append(p)
        except psutil.NoSuchProcess:
            pass
    return out


def _started(marker_dir) -> int:
    return len(list(Path(marker_dir).glob("started-*")))


class _Reporter:
    """A progress reporter that checks the rules of reports and can interrupt."""

    def __init__(self, interrupt_at=None):
        self.interrupt_at = interrupt_at
        self.calls = []
        self.threads = set()
        self.closed = False
        self.total = None

    def start(self, total):
        self.total = total

    def advance(self, n):
        self.calls.append(n)
        self.threads.add(threading.get_ident())
        assert n >= 0 and sum(self.calls) <= self.total, "progress goes back or beyond the total"
        if self.interrupt_at is not None and sum(self.calls) >= self.interrupt_at:
            raise KeyboardInterrupt

    def close(self):
        self.closed = True


_SIGINT_SCRIPT = """
import signal, sys, time
import numpy as np
from udfkit import Context
from udfkit.testing.executors import SlowTiles

# a background job of a non-interactive shell starts with SIGINT ignored (and Python keeps
# it so): behave like a script started from a terminal
signal.signal(signal.SIGINT, signal.default_int_handler)

class Started:
    def start(self, total):
        print("started", flush=True)
    def advance(self, n):
        pass
    def close(self):
        pass

if __name__ == "__main__":
    with Context.make_with({kind!r}, **{options!r}) as ctx:
        ds = ctx.load("memory", data=np.zeros((16, 16, 8, 8)), tileshape=(1, 8, 8), num_partitions=4)
        try:
            ctx.run_udf(dataset=ds, udf=SlowTiles(), progress=Started())
        except KeyboardInterrupt:
            t0 = time.perf_counter()
            r = ctx.run_udf(dataset=ctx.load("memory", data=np.ones((2, 2, 4, 4))), udf=SlowTiles())
            print("interrupted, then ran", r["x"].data.shape, f"in {{time.perf_counter() - t0:.2f}} s",
                  flush=True)
            sys.exit(3)
"""


_STDIN_SCRIPT = """
import numpy as np
from udfkit import Context, UDF

class FrameSums(UDF):
    # defined in a script without a file: it can only travel by value
    def get_result_buffers(self):
        return {{"s": self.buffer(kind="nav", dtype="float64")}}
    def process_frame(self, frame):
        self.results.s[:] = frame.sum()

with Context.make_with({kind!r}, **{options!r}) as ctx:
    data = np.arange(6 * 5 * 4 * 3, dtype="float64").reshape(6, 5, 4, 3)
    res = ctx.run_udf(dataset=ctx.load("memory", data=data, num_partitions=3), udf=FrameSums())
    print("equal", np.array_equal(res["s"].data, data.sum(axis=(2, 3))), flush=True)
"""


class ExecutorTests:
    """The executor contracts (see the module docstring); subclass per executor.

    Class attributes
    ----------------
    kind : str
        The executor kind for :meth:`udfkit.Context.make_with`.
    options : dict
        Its keyword arguments (``cpus``, ``debug``, ...).
    not_applicable : frozenset of str
        Contracts of :data:`CONTRACTS` that do not apply to this executor.
    remote : bool
        Tasks run in other processes: exceptions carry the worker traceback as a note.
    after_interrupt : float
        Seconds the first run after an interrupt may take.
    """

    kind: ClassVar[str] = "inline"
    options: ClassVar[dict] = {}
    not_applicable: ClassVar[frozenset] = frozenset()
    remote: ClassVar[bool] = False
    #: seconds the first run after an interrupt may take (a pool that replaces the workers it
    #: stopped waits for new ones to start)
    after_interrupt: ClassVar[float] = 2.0

    @pytest.fixture(scope="class")
    @classmethod
    def ctx(cls):
        """The class's Context (a classmethod: a class-scoped fixture runs once per class)."""
        assert cls.not_applicable <= CONTRACTS, sorted(cls.not_applicable - CONTRACTS)
        with Context.make_with(cls.kind, **cls.options) as ctx:
            yield ctx

    def applies(self, contract: str) -> None:
        """Skip the calling test when ``contract`` does not apply to this executor."""
        if contract in self.not_applicable:
            pytest.skip(f"{contract!r} does not apply to the {self.kind} executor")

    def worker_pids(self, ctx) -> list:
        """The pids of the worker processes (for the killed-worker contract): a dask
        cluster's workers, or a process pool's; override for another executor."""
        executor = ctx.executor
        if hasattr(executor, "client"):
            return sorted(executor.client.run(os.getpid).values())
        return sorted(w.process.pid for w in getattr(executor, "_workers", []))

    def check_usable(self, ctx, limit: float = 30.0) -> None:
        """A run right after a fault gives correct results within ``limit`` seconds."""
        from ..udf import SumUDF

        data, ds = make_ds(ctx, num_partitions=2)
        t0 = time.perf_counter()
        res = ctx.run_udf(dataset=ds, udf=SumUDF())
        np.testing.assert_array_equal(res["intensity"].data, data.sum(axis=(0, 1)))
        assert time.perf_counter() - t0 < limit

    # -- 1 ----------------------------------------------------------------------------------
    def test_exception_keeps_type_and_traceback(self, ctx):
        self.applies("exception")
        _, ds = make_ds(ctx)
        with pytest.raises(Boom, match=r"bad frame (24|36)") as info:
            ctx.run_udf(dataset=ds, udf=RaisesOnPartition())
        assert "process_tile" in "".join(traceback.format_exception(info.value))
        if self.remote:
            notes = "\n".join(getattr(info.value, "__notes__", []))
            assert "worker traceback" in notes and "process_tile" in notes
        self.check_usable(ctx)

    # -- 2 ----------------------------------------------------------------------------------
    def test_unpicklable_task_is_named(self, ctx, tmp_path):
        _, ds = make_ds(ctx)
        with pytest.raises(UDFError, match="cannot be pickled"):
            ctx.run_udf(dataset=ds, udf=Unpicklable(lock=threading.Lock()))
        if "unpicklable_task" in self.not_applicable:
            return  # tasks are not pickled (they run in this process)
        tasks = [Task(0, marker_dir=tmp_path), Task(1, payload=threading.Lock(), marker_dir=tmp_path)]
        with pytest.raises(ExecutorError, match="task 1 cannot be pickled") as info:
            list(ctx.executor.run_tasks(tasks))
        assert info.value.task_index == 1
        self.check_usable(ctx)

    # -- 3 ----------------------------------------------------------------------------------
    def test_killed_worker_is_retried_once(self, ctx, tmp_path):
        self.applies("killed_worker")
        # the worker of partition 1 dies once: the partition runs again on a fresh worker,
        # the result is right, and progress never goes back nor counts frames twice
        data, ds = make_ds(ctx, num_partitions=2, tileshape=(1,) + SIG)
        rep = _Reporter()
        res = ctx.run_udf(dataset=ds, udf=KillsItsWorker(str(tmp_path), once=True), progress=rep)
        np.testing.assert_array_equal(res["intensity"].data, data.sum(axis=(2, 3)))
        assert sum(rep.calls) == rep.total == 48
        assert len(list(tmp_path.glob("attempt-*"))) == 2

    def test_worker_killed_every_time_fails_naming_the_task(self, ctx, tmp_path):
        self.applies("killed_worker")
        _, ds = make_ds(ctx, num_partitions=2, tileshape=(1,) + SIG)
        t0 = time.perf_counter()
        with pytest.raises(ExecutorError, match="task 1: .*died.*tried 2 time") as info:
            ctx.run_udf(dataset=ds, udf=KillsItsWorker(str(tmp_path)), retries=1)
        assert time.perf_counter() - t0 < 30
        assert info.value.task_index == 1
        assert len(list(tmp_path.glob("attempt-*"))) == 2  # the first attempt and one retry
        # the UDF layer names the partition and the data set
        notes = "\n".join(getattr(info.value, "__notes__", []))
        assert "partition 1" in notes and "frames [24, 48)" in notes and "MemoryDataSet" in notes
        self.check_usable(ctx)

    def test_worker_killed_while_idle(self, ctx):
        self.applies("killed_worker")
        self.check_usable(ctx)  # workers started
        pids = self.worker_pids(ctx)
        assert pids, f"{type(self).__name__}.worker_pids found no worker processes"
        for pid in pids:
            os.kill(pid, signal.SIGKILL)
        time.sleep(0.2)
        self.check_usable(ctx, limit=30)

    # -- 4 ----------------------------------------------------------------------------------
    def test_interrupt_cancels_the_run(self, ctx):
        self.applies("interrupt")
        # 8 partitions of 6 tiles of 50 ms each, interrupted at the first report
        _, ds = make_ds(ctx, num_partitions=8, tileshape=(1,) + SIG)
        rep = _Reporter(interrupt_at=1)
        t0 = time.perf_counter()
        with pytest.raises(KeyboardInterrupt):
            ctx.run_udf(dataset=ds, udf=SlowTiles(), progress=rep)
        assert time.perf_counter() - t0 < 2.5
        assert rep.closed
        # the stopped partitions do not hold the workers up
        self.check_usable(ctx, limit=self.after_interrupt)

    # -- 5 ----------------------------------------------------------------------------------
    def test_early_close_starts_nothing_more(self, ctx, tmp_path):
        self.applies("early_close")
        tasks = [Task(i, sleep=0.05, steps=4, marker_dir=tmp_path) for i in range(24)]
        it = ctx.executor.run_tasks(tasks)
        next(it)
        it.close()
        # a cluster's cancellation reaches its workers a moment later
        time.sleep(0.3)
        started = _started(tmp_path)
        time.sleep(0.5)
        assert _started(tmp_path) == started < 24
        assert sorted(ctx.executor.run_tasks([Task(i) for i in range(5)])) == [(i, i) for i in range(5)]
        # the same through run_udf_iter
        from ..udf import SumUDF

        _, ds = make_ds(ctx, num_partitions=6)
        gen = ctx.run_udf_iter(dataset=ds, udf=SumUDF())
        assert not next(gen).complete
        gen.close()
        self.check_usable(ctx)

    # -- 6 ----------------------------------------------------------------------------------
    def test_results_equal_inline(self, ctx):
        self.applies("equals_inline")
        check_equals_inline(ctx)

    # -- progress ----------------------------------------------------------------------------
    def test_progress_from_running_partitions(self, ctx):
        self.applies("progress")
        # one partition of 48 frames in tiles of 2 frames: ~1.2 s, reports every 0.2 s
        _, ds = make_ds(ctx, num_partitions=1, tileshape=(2,) + SIG)
        rep = _Reporter()
        ctx.run_udf(dataset=ds, udf=SlowTiles(), progress=rep)
        assert sum(rep.calls) == rep.total == 48
        assert len(rep.calls) >= 3, rep.calls  # not just one report at the end
        assert rep.threads == {threading.get_ident()}
        assert rep.closed

    # -- 7 ----------------------------------------------------------------------------------
    def test_real_sigint_stops_the_run(self, tmp_path):
        self.applies("real_sigint")
        script = tmp_path / "sigint.py"
        script.write_text(_SIGINT_SCRIPT.format(kind=self.kind, options=self.options))
        proc = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True, cwd=tmp_path)
        try:
            assert proc.stdout.readline().strip() == "started", proc.stderr.read()
            time.sleep(0.5)  # the workers are busy with 12.8 s of tiles
            kids = live_children(proc.pid)
            t0 = time.perf_counter()
            proc.send_signal(signal.SIGINT)
            out, err = proc.communicate(timeout=60)
        finally:
            if proc.poll() is None:  # only on failure
                proc.kill()
                proc.wait()
        assert proc.returncode == 3, err
        assert "interrupted, then ran (2, 2)" in out
        assert time.perf_counter() - t0 < 8
        assert float(out.split(" in ")[1].split()[0]) < self.after_interrupt, out
        deadline = time.monotonic() + 5
        while alive(kids) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not alive(kids), "the script left worker processes behind"

    def test_sigint_to_the_process_group(self, tmp_path):
        """Ctrl-C in a terminal: SIGINT to the script and its workers at once."""
        self.applies("real_sigint")
        script = tmp_path / "sigint.py"
        script.write_text(_SIGINT_SCRIPT.format(kind=self.kind, options=self.options))
        # a session of its own: the group's SIGINT reaches none of pytest's processes
        proc = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True, cwd=tmp_path,
                                start_new_session=True)
        try:
            assert proc.stdout.readline().strip() == "started", proc.stderr.read()
            time.sleep(0.5)
            kids = live_children(proc.pid)
            os.killpg(proc.pid, signal.SIGINT)
            out, err = proc.communicate(timeout=90)
        finally:
            if proc.poll() is None:  # only on failure (a run that hangs)
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        assert proc.returncode == 3, err
        assert "interrupted, then ran (2, 2)" in out
        # a run right after the interrupt finds the workers alive: no restart to wait for
        assert float(out.split(" in ")[1].split()[0]) < max(self.after_interrupt, 5.0), out
        deadline = time.monotonic() + 5
        while alive(kids) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not alive(kids), "the script left worker processes behind"

    # -- 8 ----------------------------------------------------------------------------------
    # python -c: the main module has no file either (and never had: spawn leaves it alone)
    @pytest.mark.parametrize("how", ["stdin", pytest.param("-c", marks=pytest.mark.slow)])
    def test_script_without_a_file(self, tmp_path, how):
        self.applies("stdin_script")
        code = _STDIN_SCRIPT.format(kind=self.kind, options=self.options)
        cmd = [sys.executable, "-"] if how == "stdin" else [sys.executable, "-c", code]
        proc = subprocess.run(cmd, input=code if how == "stdin" else None, capture_output=True,
                              text=True, cwd=tmp_path, timeout=120)
        assert proc.returncode == 0, proc.stderr
        assert proc.stdout.strip() == "equal True", proc.stderr
        assert "Traceback" not in proc.stderr, proc.stderr

    # -- 9 ----------------------------------------------------------------------------------
    @pytest.mark.parametrize("what, kind", [("exit", SystemExit), ("interrupt", KeyboardInterrupt)])
    def test_system_exit_and_interrupt_from_a_udf(self, ctx, what, kind):
        self.applies("base_exit")
        _, ds = make_ds(ctx, num_partitions=2)
        t0 = time.perf_counter()
        with pytest.raises(kind) as info:
            ctx.run_udf(dataset=ds, udf=Exits(what))
        assert time.perf_counter() - t0 < 10
        if what == "exit":
            assert info.value.code == 3
        text = "".join(traceback.format_exception(info.value))
        assert "main guard" not in text and "import the script" not in text
        assert "process_frame" in text
        self.check_usable(ctx)

    def test_unsendable_exception(self, ctx):
        self.applies("unsendable_exception")
        _, ds = make_ds(ctx, num_partitions=2)
        with pytest.raises((Unsendable, ExecutorError)) as info:
            ctx.run_udf(dataset=ds, udf=RaisesUnsendable())
        text = "".join(traceback.format_exception(info.value))
        assert "unsendable at frame" in text and "process_tile" in text
        if isinstance(info.value, ExecutorError):
            assert "Unsendable" in str(info.value)
        self.check_usable(ctx)

    # -- 10 ---------------------------------------------------------------------------------
    def test_releases_results(self, ctx):
        import gc
        import weakref

        self.applies("releases_results")
        it = ctx.executor.run_tasks([Returns(i) for i in range(3)])
        _, first = next(it)
        ref = weakref.ref(first)
        del first
        next(it)
        gc.collect()
        assert ref() is None, "the executor keeps a result it has handed back"
        list(it)
