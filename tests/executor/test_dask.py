"""The dask executor: a local cluster, and a real scheduler with ``udfkit worker`` /
``dask worker`` processes on loopback."""

import json
import os
import subprocess
import sys
import time
import warnings

import cloudpickle
import numpy as np
import pytest

from udfkit import UDF, Context
from udfkit.udf import ApplyMasksUDF, StdDevUDF, SumSigUDF, SumUDF

NAV, SIG = (8, 8), (16, 16)

# UDF classes of this module travel by value: a separate scheduler process cannot import a
# test module (a user's script classes, defined in __main__, travel by value anyway)
cloudpickle.register_pickle_by_value(sys.modules[__name__])


@pytest.fixture(scope="module")
def raw_file(tmp_path_factory):
    data = np.random.default_rng(3).integers(0, 4000, NAV + SIG).astype(np.uint16)
    path = tmp_path_factory.mktemp("dask") / "scan.raw"
    data.tofile(path)
    return data, str(path)


def load(ctx, path):
    return ctx.load("raw", path=path, dtype="uint16", nav_shape=NAV, sig_shape=SIG, num_partitions=4)


def check_results(ctx, data, path):
    masks = np.random.default_rng(4).random((3,) + SIG).astype(np.float32)
    res = ctx.run_udf(dataset=load(ctx, path),
                      udf=[SumUDF(), SumSigUDF(), StdDevUDF(), ApplyMasksUDF(mask_factories=masks)])
    ref = data.astype(np.float64)
    np.testing.assert_array_equal(res[0]["intensity"].data, ref.sum(axis=(0, 1)))
    np.testing.assert_array_equal(res[1]["intensity"].data, ref.sum(axis=(2, 3)))
    np.testing.assert_allclose(res[2]["var"].data, ref.var(axis=(0, 1)), rtol=1e-10)
    np.testing.assert_allclose(res[3]["intensity"].data, np.einsum("yxij,mij->yxm", ref, masks),
                               rtol=1e-5)


class Raises(UDF):
    def get_result_buffers(self):
        return {"x": self.buffer(kind="nav")}

    def process_tile(self, tile):
        # a built-in type: a class of this module travels by value and comes back as a copy
        raise LookupError("from a dask worker")


def check_failure_and_progress(ctx, data, path):
    with pytest.raises(LookupError, match="from a dask worker"):
        ctx.run_udf(dataset=load(ctx, path), udf=Raises())

    class Rec:
        def start(self, total):
            self.total, self.n = total, 0

        def advance(self, n):
            self.n += n

        def close(self):
            pass

    rec = Rec()
    ctx.run_udf(dataset=load(ctx, path), udf=SumUDF(), progress=rec)
    assert rec.n == rec.total == 64


@pytest.mark.cluster
def test_local_cluster(raw_file):
    data, path = raw_file
    with Context.make_with("dask", cpus=2) as ctx:
        assert ctx.executor.num_workers == 2
        check_results(ctx, data, path)
        check_failure_and_progress(ctx, data, path)
        # a second local cluster at the same time: each scheduler serves HTTP on a port of
        # its own, so it starts without the warning "Port 8787 is already in use", which
        # with warnings as errors would stop it from starting at all (so would a dask
        # dashboard already open on 8787)
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            with Context.make_with("dask", cpus=1) as other:
                res = other.run_udf(dataset=load(other, path), udf=SumUDF())
                np.testing.assert_array_equal(res["intensity"].data, data.sum(axis=(0, 1)))


def start_scheduler(tmp_path):
    sched_file = tmp_path / "scheduler.json"
    log = open(tmp_path / "scheduler.log", "w")
    proc = subprocess.Popen([sys.executable, "-m", "distributed.cli.dask_scheduler", "--host",
                             "127.0.0.1", "--port", "0", "--no-dashboard", "--scheduler-file",
                             str(sched_file)], stdout=log, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 60
    while not sched_file.exists() or not sched_file.read_text().strip():
        if time.monotonic() > deadline or proc.poll() is not None:
            proc.kill()
            raise RuntimeError(f"dask scheduler did not start: {(tmp_path / 'scheduler.log').read_text()}")
        time.sleep(0.1)
    time.sleep(0.2)
    return proc, json.loads(sched_file.read_text())["address"]


def stop(*procs):
    for p in procs:
        p.terminate()
    for p in procs:
        try:
            p.wait(timeout=20)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


@pytest.mark.cluster
# `udfkit worker` in the default run; dask's own `dask worker` command (same preload) is the
# long variant: each case starts a scheduler and a worker (about 11 s)
@pytest.mark.parametrize("worker_cmd", ["udfkit", pytest.param("dask", marks=pytest.mark.slow)])
def test_remote_scheduler_and_workers(raw_file, tmp_path, worker_cmd):
    data, path = raw_file
    sched, address = start_scheduler(tmp_path)
    log = open(tmp_path / "workers.log", "w")
    if worker_cmd == "udfkit":
        cmd = [sys.executable, "-m", "udfkit", "worker", address, "--nworkers", "2"]
    else:
        cmd = [sys.executable, "-m", "distributed.cli.dask_worker", address, "--nworkers", "2",
               "--nthreads", "1", "--no-dashboard"]
    workers = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=dict(os.environ))
    try:
        from udfkit.executor.dask import DaskExecutor

        executor = DaskExecutor.connect(address)
        executor.client.wait_for_workers(2, timeout=60)
        with Context(executor=executor) as ctx:
            assert ctx.executor.num_workers == 2
            check_results(ctx, data, path)
            check_failure_and_progress(ctx, data, path)
        if worker_cmd == "udfkit":
            # the workers run with one BLAS thread and udfkit preloaded
            text = (tmp_path / "workers.log").read_text()
            assert "udfkit.preload" in text or "preload" in text.lower()
    finally:
        stop(workers, sched)
    assert workers.returncode is not None and sched.returncode is not None


def test_connect_to_nothing_is_a_clear_error():
    from udfkit.errors import ExecutorError

    t0 = time.perf_counter()
    with pytest.raises(ExecutorError, match=r"cannot connect .*127\.0\.0\.1:1.* within 1s"):
        Context.make_with("dask", scheduler="tcp://127.0.0.1:1", connect_timeout="1s")
    assert time.perf_counter() - t0 < 8  # the timeout is used, not the default of 10 s
