"""Result buffers: checked against the memory available before a run allocates anything
(udfkit.udf.memory), and no more copies of them alive than a UDF's buffer and the merged one
(udfkit.udf.driver / runner, udfkit.common.allocation, udfkit.executor._shm).

Peak memory is measured with tracemalloc, which sees numpy's allocations (at their full
size, touched or not) in every thread of this process: a regression that keeps one more
partition result alive shows as one more buffer in the peak.
"""

import os
import subprocess
import sys
import textwrap
import time
import tracemalloc

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from udfkit import UDF, Context
from udfkit.common import allocation
from udfkit.errors import UDFError
from udfkit.executor import _shm
from udfkit.testing.profiles import examples
from udfkit.udf import memory
from udfkit.udf.memory import AvailableMemory, buffer_needs, check_memory
from udfkit.udf.plan import placement_of, plan_run
from udfkit.udf.runner import GATE_MIN_BYTES

GIB = 1 << 30
MIB = 1 << 20


class SigBuffer(UDF):
    """A float32 sig buffer of ``sig × depth``: per-frame sum in entry 0, 1.0 elsewhere."""

    def __init__(self, depth=1, fail_in=None):
        super().__init__(depth=depth, fail_in=fail_in)

    def get_result_buffers(self):
        return {"big": self.buffer(kind="sig", extra_shape=(self.params.depth,), dtype="float32")}

    def process_frame(self, frame):
        self.results.big[..., 0] += frame

    def postprocess(self):
        if self.params.fail_in is not None and self.meta.slice.origin[0] >= self.params.fail_in:
            raise ValueError(f"fails in the partition at {self.meta.slice.origin[0]}")
        self.results.big[..., 1:] = 1.0

    def merge(self, dest, src):
        dest.big += src.big


class NavExtra(UDF):
    """A nav buffer with a large extra shape."""

    def __init__(self, extra=1):
        super().__init__(extra=extra)

    def get_result_buffers(self):
        return {"wide": self.buffer(kind="nav", extra_shape=(self.params.extra,), dtype="float64")}

    def process_frame(self, frame):
        self.results.wide[:] = frame.sum()


class Fake:
    """An executor as the plan sees it (kind, workers), without workers."""

    def __init__(self, kind, n):
        self.kind, self.num_workers = kind, n


def depth_for(nbytes, sig=(16, 16)):
    return nbytes // (sig[0] * sig[1] * 4)


@pytest.fixture(autouse=True)
def check_on(monkeypatch):
    monkeypatch.delenv(memory.ENV_VAR, raising=False)


@pytest.fixture(scope="module")
def data():
    return np.random.default_rng(3).random((8, 16, 16), dtype=np.float32)


# -- refused before allocation ------------------------------------------------------------

@pytest.mark.parametrize("kind", ["inline", "threads", "processes"])
def test_50_gib_sig_buffer_refused_at_once(kind, data):
    import psutil

    # 50 GiB, or more on a machine where twice that would fit
    size = max(50 * GIB, psutil.virtual_memory().total // GIB * GIB)
    kwargs = {} if kind == "inline" else {"cpus": 2}
    with Context.make_with(kind, **kwargs) as ctx:
        ds = ctx.load("memory", data=data, num_partitions=2)
        tracemalloc.start()
        t0 = time.perf_counter()
        try:
            with pytest.raises(UDFError) as info:
                ctx.run_udf(ds, SigBuffer(depth=depth_for(size)))
            elapsed = time.perf_counter() - t0
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
    msg = str(info.value)
    assert "SigBuffer's sig buffer 'big' (float32" in msg and f"{size / GIB:.1f} GiB" in msg
    assert "available memory of this machine" in msg or "cgroup" in msg
    assert "UDFKIT_MEMORY_CHECK=0" in msg
    # nothing of the buffer's size was allocated (a few MiB: the message, the plan)
    assert peak < 8 * MIB
    assert elapsed < 5


def test_huge_nav_extra_shape_refused(data):
    ctx = Context.make_with("inline")
    ds = ctx.load("memory", data=data, num_partitions=2)
    with pytest.raises(UDFError, match=r"NavExtra's nav buffer 'wide' \(float64, extra_shape "
                                       r"\(4294967296,\), shape per partition \(4, 4294967296\)"):
        ctx.run_udf(ds, NavExtra(extra=1 << 32))


def test_message_names_the_limits(data):
    ctx = Context.make_with("inline")
    ds = ctx.load("memory", data=data, num_partitions=2)
    plan = ctx.plan(ds, SigBuffer(depth=depth_for(64 * MIB)))
    small = AvailableMemory(system=100 * MIB, system_source="available memory of this machine",
                            process=70 * MIB, process_source="RLIMIT_AS 1.0 GiB with 954 MiB in "
                                                             "use (VmSize)")
    with pytest.raises(UDFError) as info:
        check_memory(plan, small)
    msg = str(info.value)
    # 64 MiB full + 64 MiB for the task on the main process
    assert "128.0 MiB on the main process, where 70.0 MiB is left under RLIMIT_AS" in msg
    assert "where 100.0 MiB is the available memory of this machine" in msg
    assert "full buffers 64.0 MiB, partition buffers 64.0 MiB" in msg
    check_memory(plan, AvailableMemory(system=129 * MIB, system_source="x", process=None))


def test_environment_variable_and_parameter_turn_it_off(data, monkeypatch):
    ctx = Context.make_with("inline")
    ds = ctx.load("memory", data=data, num_partitions=2)
    monkeypatch.setattr(memory, "available_memory",
                        lambda: AvailableMemory(system=4096, system_source="test"))
    udf = SigBuffer(depth=depth_for(16 * MIB))
    with pytest.raises(UDFError, match=r"need 32.0 MiB in all \(32.0 MiB on the main process\)"):
        ctx.run_udf(ds, udf)
    for off in ("0", "off", "False", "no"):
        monkeypatch.setenv(memory.ENV_VAR, off)
        assert not memory.memory_check_enabled()
        res = ctx.run_udf(ds, udf)
        np.testing.assert_allclose(res["big"].data[..., 0], data.sum(axis=0), rtol=1e-5)
    monkeypatch.setenv(memory.ENV_VAR, "1")
    from udfkit.udf.driver import UDFRun

    run = UDFRun(plan_run(ds, [udf], executor=ctx.executor))
    *_, final = run.execute(ctx.executor, check_memory=False)
    np.testing.assert_allclose(final.buffers[0]["big"].data[..., 0], data.sum(axis=0), rtol=1e-5)


def test_small_runs_do_not_look_up_the_memory(data, monkeypatch):
    def fail():
        raise AssertionError("looked up")

    monkeypatch.setattr(memory, "available_memory", fail)
    ctx = Context.make_with("inline")
    ds = ctx.load("memory", data=data, num_partitions=2)
    # 8 MiB full + 8 MiB for the task: under CHECK_FROM
    assert memory.CHECK_FROM == 2 * 8 * MIB
    ctx.run_udf(ds, SigBuffer(depth=depth_for(8 * MIB) - 1))
    with pytest.raises(AssertionError, match="looked up"):
        ctx.run_udf(ds, SigBuffer(depth=depth_for(8 * MIB)))


def test_needs_per_executor_kind(data):
    ctx = Context.make_with("inline")
    ds = ctx.load("memory", data=data, num_partitions=4)  # 2 frames per partition
    big = SigBuffer(depth=depth_for(32 * MIB))
    size = 32 * MIB

    def needs(kind, n, udf=big):
        return buffer_needs(plan_run(ds, [udf], executor=Fake(kind, n)))

    inline = needs("inline", 1)
    assert (inline.main, inline.per_worker, inline.workers_here) == (2 * size, 0, 0)
    # threads: one set per thread (32 MiB >= the gate's size: no result waits beyond that)
    assert size >= GATE_MIN_BYTES
    assert needs("threads", 3).main == 4 * size
    small = SigBuffer(depth=4)  # 4 KiB per set: no gate, one more set may wait
    assert needs("threads", 3, small).main_parts["partition buffers"] == 4 * 16 * 16 * 4 * 4
    procs = needs("processes", 3)
    assert (procs.main, procs.per_worker, procs.workers_here, procs.shm) == (
        2 * size, size, 3, 3 * size)
    assert procs.total == 5 * size
    dask = needs("dask", 3)
    # a copy for the transport; the workers are not counted against this machine
    assert (dask.main, dask.per_worker, dask.workers_here) == (2 * size, 2 * size, 0)
    nav = needs("processes", 2, NavExtra(extra=1 << 14))
    # partition-sized: 2 frames x 16384 float64 (256 KiB), allocated in shared memory
    assert nav.per_worker == 2 << 17 and nav.shm == 2 * (2 << 17)
    assert nav.main == 8 * (1 << 14) * 8 + (2 << 17)
    tiny = needs("processes", 2, NavExtra(extra=1))
    # 2 float64 per partition: copied into the message, no shared memory
    assert (tiny.per_worker, tiny.shm) == (2 * 2 * 8, 0)


def test_worker_and_shared_memory_limits(data):
    ctx = Context.make_with("inline")
    ds = ctx.load("memory", data=data, num_partitions=4)
    plan = plan_run(ds, [SigBuffer(depth=depth_for(32 * MIB))], executor=Fake("processes", 4))
    plenty = 10 * GIB
    check_memory(plan, AvailableMemory(system=plenty, system_source="s", shm=plenty))
    with pytest.raises(UDFError, match=r"128.0 MiB of shared memory for the results of 4 worker "
                                       r"processes, where /dev/shm has 100.0 MiB free"):
        check_memory(plan, AvailableMemory(system=plenty, system_source="s", shm=100 * MIB))
    with pytest.raises(UDFError, match=r"192.0 MiB in all \(64.0 MiB on the main process and "
                                       r"32.0 MiB in each of 4 worker processes\)"):
        check_memory(plan, AvailableMemory(system=150 * MIB, system_source="s"))
    with pytest.raises(UDFError, match=r"64.0 MiB on the main process, where 20.0 MiB is left "
                                       r"under RLIMIT_DATA; and 32.0 MiB in each worker process"):
        check_memory(plan, AvailableMemory(system=plenty, system_source="s", process=20 * MIB,
                                           process_source="RLIMIT_DATA"))
    # the executor of the run, when it is not the plan's
    inline = placement_of(Context.make_with("inline").executor)
    check_memory(plan, AvailableMemory(system=70 * MIB, system_source="s"), placement=inline)


@pytest.mark.parametrize("version", [1, 2])
def test_cgroup_limits_are_read(tmp_path, version):
    proc = tmp_path / "cgroup"
    if version == 2:
        proc.write_text("0::/job/step\n")
        leaf = tmp_path / "job" / "step"
        leaf.mkdir(parents=True)
        (leaf / "memory.max").write_text("max\n")
        (tmp_path / "job" / "memory.max").write_text(f"{4 * GIB}\n")
        (tmp_path / "job" / "memory.current").write_text(f"{3 * GIB}\n")
        (tmp_path / "job" / "memory.stat").write_text(f"anon 1\ninactive_file {GIB // 2}\n")
    else:
        proc.write_text("9:pids:/\n4:memory:/job\n")
        # inside a container the mount's root is the process's cgroup
        root = tmp_path / "memory"
        root.mkdir()
        (root / "memory.limit_in_bytes").write_text(f"{2 * GIB}\n")
        (root / "memory.usage_in_bytes").write_text(f"{GIB}\n")
        (root / "memory.stat").write_text(f"total_inactive_file {GIB // 4}\n")
    left, path = memory._cgroup_available(str(proc), str(tmp_path))
    if version == 2:
        assert left == 4 * GIB - (3 * GIB - GIB // 2) and path.endswith("job/memory.max")
    else:
        assert left == 2 * GIB - (GIB - GIB // 4) and path.endswith("memory.limit_in_bytes")
    proc.write_text("0::/\n")
    assert memory._cgroup_available(str(proc), str(tmp_path / "none")) is None


def test_available_memory_of_this_process():
    import psutil

    got = memory.available_memory()
    assert 0 < got.system <= psutil.virtual_memory().total
    assert got.shm is None or got.shm >= 0


def test_rlimit_as_refuses_a_smaller_buffer_in_a_subprocess(tmp_path):
    # a limit on this process's address space: 256 MiB above what it uses now, after a
    # first run (imports, compiled kernels); a 512 MiB sig buffer is refused at once, one
    # of 8 MiB runs
    script = textwrap.dedent("""
        import resource, numpy as np
        from udfkit import Context
        from udfkit.errors import UDFError
        from test_buffer_limits import SigBuffer, depth_for

        ctx = Context.make_with("inline")
        data = np.ones((4, 16, 16), dtype="float32")
        ds = ctx.load("memory", data=data, num_partitions=2)
        ctx.run_udf(ds, SigBuffer(depth=4))
        with open("/proc/self/status") as f:
            vm = [int(l.split()[1]) * 1024 for l in f if l.startswith("VmSize:")][0]
        resource.setrlimit(resource.RLIMIT_AS, (vm + (256 << 20), resource.RLIM_INFINITY))
        try:
            ctx.run_udf(ds, SigBuffer(depth=depth_for(512 << 20)))
        except UDFError as e:
            print("REFUSED", e)
        res = ctx.run_udf(ds, SigBuffer(depth=depth_for(8 << 20)))
        assert np.allclose(res["big"].data[..., 0], 4.0)
        print("SMALL OK")
    """)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        [os.path.dirname(__file__), os.environ.get("PYTHONPATH", "")]))
    env.pop(memory.ENV_VAR, None)
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                         timeout=120, env=env, cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert "REFUSED SigBuffer's sig buffer 'big'" in out.stdout
    assert "1.0 GiB on the main process, where" in out.stdout
    assert "left under RLIMIT_AS" in out.stdout
    assert "SMALL OK" in out.stdout


# -- copies alive at once ------------------------------------------------------------------

def traced_peak(ctx, ds, udf):
    """Peak of traced memory while ``udf`` runs, minus what was traced before; the result."""
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        tracemalloc.reset_peak()
        res = ctx.run_udf(ds, udf)
        return tracemalloc.get_traced_memory()[1] - before, res
    finally:
        tracemalloc.stop()


@pytest.mark.parametrize("kind,cpus,copies", [("inline", 1, 2), ("threads", 1, 2),
                                              ("threads", 2, 3)])
def test_sig_buffer_copies_in_the_main_process(kind, cpus, copies, data):
    # 32 MiB: a buffer for each task running at once plus the merged one, nothing more
    size = 32 * MIB
    kwargs = {} if kind == "inline" else {"cpus": cpus}
    with Context.make_with(kind, **kwargs) as ctx:
        ds = ctx.load("memory", data=data, num_partitions=4)
        ctx.run_udf(ds, SigBuffer(depth=4))  # warm: imports, kernels
        peak, res = traced_peak(ctx, ds, SigBuffer(depth=depth_for(size)))
    assert res["big"].data.shape == (16, 16, depth_for(size))
    np.testing.assert_allclose(res["big"].data[..., 0], data.sum(axis=0), rtol=1e-5)
    np.testing.assert_array_equal(res["big"].data[..., 1:], 4.0)
    assert copies * size <= peak < copies * size + 4 * MIB, f"{peak / size:.2f} buffers"


@settings(max_examples=examples(8), deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(parts=st.integers(1, 6), depth=st.sampled_from([1, 3, 64, 1024]),
       kind=st.sampled_from(["inline", "threads"]), frames=st.integers(1, 12))
def test_property_results_and_at_most_two_copies(parts, depth, kind, frames):
    data = np.random.default_rng(frames).random((frames, 16, 16), dtype=np.float32)
    size = 16 * 16 * depth * 4
    kwargs = {} if kind == "inline" else {"cpus": 1}
    with Context.make_with(kind, **kwargs) as ctx:
        ds = ctx.load("memory", data=data, num_partitions=min(parts, frames))
        peak, res = traced_peak(ctx, ds, SigBuffer(depth=depth))
    np.testing.assert_allclose(res["big"].data[..., 0], data.sum(axis=0), rtol=1e-5)
    np.testing.assert_array_equal(res["big"].data[..., 1:], float(min(parts, frames)))
    # below the gate's size a threads run may hold one more set
    copies = 3 if kind == "threads" and size < GATE_MIN_BYTES else 2
    assert peak < copies * size + 2 * MIB


def test_threads_gate_opens_when_the_run_ends_early(data):
    depth = depth_for(GATE_MIN_BYTES)
    with Context.make_with("threads", cpus=2) as ctx:
        ds = ctx.load("memory", data=data, num_partitions=8)
        it = ctx.run_udf_iter(ds, SigBuffer(depth=depth))
        next(it)
        it.close()  # tasks waiting for a place must not wait for merges that never come
        with pytest.raises(ValueError, match="fails in the partition"):
            ctx.run_udf(ds, SigBuffer(depth=depth, fail_in=3))
        t0 = time.perf_counter()
        res = ctx.run_udf(ds, SigBuffer(depth=depth))
        assert time.perf_counter() - t0 < 30
    np.testing.assert_array_equal(res["big"].data[..., 1:], 8.0)


# -- shared-memory results of a processes worker ------------------------------------------

@pytest.fixture
def segment_allocator():
    previous = allocation.set_result_allocator(_shm._ALLOCATOR)
    try:
        yield _shm._ALLOCATOR
    finally:
        _shm._ALLOCATOR.forget_all()
        allocation.set_result_allocator(previous)


def shm_entries(pids=None):
    """This process's segments in /dev/shm (or those of ``pids``): other test runs on the
    machine make their own."""
    prefixes = tuple(f"udfkit_{p}_" for p in (pids or [os.getpid()]))
    return {e for e in os.listdir("/dev/shm") if e.startswith(prefixes)}


@pytest.mark.skipif(not os.path.isdir("/dev/shm"), reason="no /dev/shm")
def test_result_in_a_segment_travels_without_a_copy(segment_allocator):
    from udfkit.udf.runner import PartitionResult

    before = shm_entries()
    big = allocation.result_zeros((256, 256), "float64")  # 512 KiB: a segment of its own
    small = allocation.result_zeros((8,), "float64")  # numpy: copied into the pickle
    assert len(segment_allocator.live) == 1 and not isinstance(small.base, memoryview)
    big[...] = np.arange(big.size).reshape(big.shape)
    small[:] = 3
    data, segments = _shm.dumps(PartitionResult(1, [{"big": big, "view": big[128:],
                                                     "small": small}], 5))
    # the segment goes by name (twice: the buffer and a view into it), nothing copied
    assert [(n, o) for n, _, o in segments] == [(segments[0][0], 0),
                                                (segments[0][0], 128 * 256 * 8)]
    assert len(shm_entries() - before) == 1 and not segment_allocator.live
    out = _shm.loads(data, segments)
    assert shm_entries() == before  # unlinked on arrival
    np.testing.assert_array_equal(out.buffers[0]["big"], big)
    np.testing.assert_array_equal(out.buffers[0]["view"], big[128:])
    np.testing.assert_array_equal(out.buffers[0]["small"], 3)


@pytest.mark.skipif(not os.path.isdir("/dev/shm"), reason="no /dev/shm")
def test_segments_of_a_failed_task_are_removed(segment_allocator, data):
    from udfkit.udf.driver import UDFRun

    before = shm_entries()
    ctx = Context.make_with("inline")
    ds = ctx.load("memory", data=data, num_partitions=2)
    run = UDFRun(plan_run(ds, [SigBuffer(depth=1024, fail_in=0)], executor=ctx.executor))
    task = run.tasks()[0]
    with pytest.raises(ValueError, match="fails in the partition"):
        task()
    assert shm_entries() == before and not segment_allocator.live
    # a segment a result did not take is removed at the next send
    allocation.result_zeros((1 << 16,), "uint8")
    assert len(shm_entries() - before) == 1
    _shm.discard(_shm.dumps({"nothing": 1})[1])
    assert shm_entries() == before


def test_full_shared_memory_is_a_memory_error(segment_allocator, monkeypatch):
    def no_space(fd, offset, length):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "posix_fallocate", no_space)
    before = shm_entries()
    with pytest.raises(MemoryError, match=r"1.0 MiB \(float32, shape \(512, 512\)\) does not "
                                          r"fit in shared memory \(/dev/shm: .* free; No space"):
        allocation.result_zeros((512, 512), "float32")
    assert shm_entries() == before


@pytest.mark.skipif(not os.path.isdir("/dev/shm"), reason="no /dev/shm")
def test_processes_run_leaves_no_segments(data):
    import psutil

    with Context.make_with("processes", cpus=1) as ctx:
        ds = ctx.load("memory", data=data, num_partitions=4)
        res = ctx.run_udf(ds, SigBuffer(depth=256))  # 256 KiB: in shared memory
        np.testing.assert_allclose(res["big"].data[..., 0], data.sum(axis=0), rtol=1e-5)
        np.testing.assert_array_equal(res["big"].data[..., 1:], 4.0)
        workers = [c.pid for c in psutil.Process().children(recursive=True)]
        with pytest.raises(ValueError, match="fails in the partition"):
            ctx.run_udf(ds, SigBuffer(depth=256, fail_in=4))
        # the worker is alive and idle: what it made for the failed task is gone
        assert workers and not shm_entries(workers)
        again = ctx.run_udf(ds, SigBuffer(depth=256))
        np.testing.assert_array_equal(again["big"].data, res["big"].data)
