"""The user's own modules on a remote dask cluster (issue 15, item 7).

A real scheduler and a worker, started as separate processes in a directory of their own,
without the directory of the user's modules on their path: the UDF class, a module next to
it, a function given to ``MapUDF`` and an exception class of the user's module all travel by
value (udfkit.executor._shipping); installed modules (numpy, udfkit) keep going by name.
"""

import importlib.util
import json
import os
import subprocess
import sys
import textwrap
import time

import cloudpickle
import numpy as np
import pytest

from udfkit import Context
from udfkit.executor import _shipping
from udfkit.udf import MapUDF

ANALYSIS = '''
import numpy as np
from udfkit import UDF

from helper_mod import weight  # a module next to the script's module


class AnalysisError(Exception):
    """An exception class of the user's module."""


class WeightedSum(UDF):
    def get_result_buffers(self):
        return {"s": self.buffer(kind="nav", dtype="float64")}

    def process_frame(self, frame):
        self.results.s[:] = weight(frame)


class Fails(UDF):
    def get_result_buffers(self):
        return {"s": self.buffer(kind="nav")}

    def process_frame(self, frame):
        raise AnalysisError("raised in the user's module")


def frame_max(frame):
    return np.max(frame)
'''

HELPER = '''
def weight(frame):
    return 2.0 * float(frame.sum())
'''


def _start(cmd, cwd, log, env):
    return subprocess.Popen(cmd, cwd=cwd, stdout=log, stderr=subprocess.STDOUT, env=env)


def _stop(*procs):
    for p in procs:
        p.terminate()
    for p in procs:
        try:
            p.wait(timeout=20)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


@pytest.fixture
def user_modules(tmp_path):
    """``myanalysis`` and ``helper_mod`` in a directory only this (the client) process has
    on its path; removed from sys.path, sys.modules and cloudpickle afterwards."""
    where = tmp_path / "analysis"
    where.mkdir()
    (where / "myanalysis.py").write_text(textwrap.dedent(ANALYSIS))
    (where / "helper_mod.py").write_text(textwrap.dedent(HELPER))
    sys.path.insert(0, str(where))
    try:
        import myanalysis

        yield myanalysis
    finally:
        sys.path.remove(str(where))
        for name in ("myanalysis", "helper_mod"):
            module = sys.modules.pop(name, None)
            _shipping._decided.pop(name, None)
            if name in cloudpickle.list_registry_pickle_by_value():
                cloudpickle.unregister_pickle_by_value(module)


@pytest.fixture
def remote_cluster(tmp_path):
    """A scheduler and one worker process (``dask worker --preload udfkit.preload``) on
    loopback, started in ``tmp_path/cluster`` with an environment without PYTHONPATH."""
    cwd = tmp_path / "cluster"
    cwd.mkdir()
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    log = open(cwd / "cluster.log", "w")
    sched_file = cwd / "scheduler.json"
    sched = _start([sys.executable, "-m", "distributed.cli.dask_scheduler", "--host", "127.0.0.1",
                    "--port", "0", "--no-dashboard", "--scheduler-file", str(sched_file)],
                   cwd, log, env)
    procs = [sched]
    try:
        deadline = time.monotonic() + 60
        while not sched_file.exists() or not sched_file.read_text().strip():
            assert time.monotonic() < deadline and sched.poll() is None, \
                (cwd / "cluster.log").read_text()
            time.sleep(0.1)
        address = json.loads(sched_file.read_text())["address"]
        procs.append(_start([sys.executable, "-m", "distributed.cli.dask_worker", address,
                             "--nthreads", "1", "--no-dashboard", "--host", "127.0.0.1",
                             "--preload", "udfkit.preload"], cwd, log, env))
        yield address
    finally:
        _stop(*reversed(procs))
        log.close()


@pytest.mark.cluster
def test_user_module_runs_on_a_remote_cluster(user_modules, remote_cluster):
    from udfkit.executor.dask import DaskExecutor

    executor = DaskExecutor.connect(remote_cluster, connect_timeout="30s")
    executor.client.wait_for_workers(1, timeout=60)
    with Context(executor=executor) as ctx:
        # the premise: the worker cannot import the user's modules
        found = executor.client.run(importlib.util.find_spec, "myanalysis")
        assert list(found.values()) == [None]
        found = executor.client.run(importlib.util.find_spec, "helper_mod")
        assert list(found.values()) == [None]

        data = np.random.default_rng(11).integers(0, 500, (4, 6, 5, 3)).astype(np.float64)
        ds = ctx.load("memory", data=data, num_partitions=3)
        res = ctx.run_udf(dataset=ds, udf=user_modules.WeightedSum())
        np.testing.assert_array_equal(res["s"].data, 2.0 * data.sum(axis=(2, 3)))
        res = ctx.run_udf(dataset=ds, udf=MapUDF(f=user_modules.frame_max))
        np.testing.assert_array_equal(res["result"].data, data.max(axis=(2, 3)))
        # an exception class of the user's module comes back as that class
        with pytest.raises(user_modules.AnalysisError, match="raised in the user's module"):
            ctx.run_udf(dataset=ds, udf=user_modules.Fails())
        # the scheduler and worker stop at once (terminating them one by one takes seconds)
        executor.client.shutdown()
    # installed modules went by name, the user's by value
    assert _shipping._decided["myanalysis"] and _shipping._decided["helper_mod"]
    assert not _shipping.ships_by_value("numpy") and not _shipping.ships_by_value("udfkit.udf")


def test_the_rule(tmp_path, user_modules):
    """Which modules travel by value: the user's, not installed or standard ones, nor
    udfkit (an editable install here), nor one without a file."""
    import types

    assert _shipping.ships_by_value("myanalysis")
    assert _shipping.ships_by_value("helper_mod")
    for name in ("numpy", "json", "sys", "udfkit", "udfkit.executor.dask", "__main__", None):
        assert not _shipping.ships_by_value(name), name
    sys.modules["made_at_run_time"] = types.ModuleType("made_at_run_time")
    try:
        assert not _shipping.ships_by_value("made_at_run_time")
    finally:
        del sys.modules["made_at_run_time"]
        _shipping._decided.pop("made_at_run_time", None)
    # a by-value pickle holds the code: it loads where the module cannot be imported
    payload = _shipping.dumps_by_value(user_modules.WeightedSum())
    # the registration lasts only for the dump: later pickles of this process (the inline
    # executor's debug round trip, processes tasks) refer to the module by name again
    assert user_modules.__name__ not in cloudpickle.list_registry_pickle_by_value()
    assert b"WeightedSum" in cloudpickle.dumps(user_modules.WeightedSum)
    assert len(cloudpickle.dumps(user_modules.WeightedSum)) < len(payload)
    probe = ("import sys, cloudpickle; u = cloudpickle.loads(sys.stdin.buffer.read()); "
             "print(type(u).__name__, u.process_frame.__globals__['weight'](__import__('numpy').ones(3)))")
    out = subprocess.run([sys.executable, "-c", probe], input=payload, capture_output=True,
                         cwd=tmp_path, timeout=60)
    assert out.stdout.decode().split() == ["WeightedSum", "6.0"], out.stderr.decode()
