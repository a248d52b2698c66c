"""A run's parameters travel once per worker and run, not once per task (issue 18).

UDF kwargs, the ROI and the corrections are wrapped in :class:`udfkit.common.shared.Shared`;
the processes and dask executors send large ones as content-key references and ship each once
per worker (shared memory, a broadcast scatter). Checked here: the task payload does not grow
with the parameters; results equal numpy on every executor with every parameter shipped
that way; each parameter is shipped once per worker; nothing is left in ``/dev/shm`` nor
mapped by a worker after a run, an error or a killed worker; a retried task's fresh worker
gets its parameters.
"""

from __future__ import annotations

import glob
import os
import pickle
import signal
import tempfile
import time
import uuid
from math import prod
from pathlib import Path

import cloudpickle
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from udfkit import UDF, Context
from udfkit.common import shared as shared_mod
from udfkit.common.shared import Shared, collecting, resolving, share
from udfkit.executor._params import pickle_with_refs
from udfkit.executor._shipping import dumps_by_value
from udfkit.testing import SharedContexts
from udfkit.testing.profiles import examples
from udfkit.testing.strategies import assert_nav_rows, cases, load
from udfkit.udf import ApplyMasksUDF
from udfkit.udf.driver import UDFRun
from udfkit.udf.plan import plan_run

EXECUTORS = {"inline": ("inline", {}), "inline-debug": ("inline", {"debug": True}),
             "threads": ("threads", {"cpus": 2}), "processes": ("processes", {"cpus": 2}),
             "dask": ("dask", {"cpus": 2})}
shared_context = SharedContexts(EXECUTORS)
_close_shared_contexts = shared_context.closing_fixture()


def param_segments():
    """This process's segments of shared parameters in /dev/shm."""
    return sorted(glob.glob(f"/dev/shm/udfkit_{os.getpid()}_params_*"))


def mapped_param_segments(ctx):
    """Segments of shared parameters a processes worker still maps (``(deleted)`` or not)."""
    out = []
    for w in ctx.executor._workers:
        try:
            with open(f"/proc/{w.process.pid}/maps") as f:
                out += [line for line in f if f"udfkit_{os.getpid()}_params_" in line]
        except FileNotFoundError:
            pass
    return out


class Weighted(UDF):
    """Per-frame dot product with ``weights`` (sig-shaped, a large parameter) and the
    weighted sum of the frames; with ``marker_dir``, kills its worker process once, at
    ``kill_at`` (a frame index), the first time any attempt gets there."""

    def __init__(self, weights, marker_dir=None, kill_at=-1):
        super().__init__(weights=weights, marker_dir=marker_dir, kill_at=kill_at)

    def get_result_buffers(self):
        return {"dot": self.buffer(kind="nav", dtype="float64"),
                "wsum": self.buffer(kind="sig", dtype="float64")}

    def process_frame(self, frame):
        if self.params.marker_dir is not None and self.meta.frame_index[0] == self.params.kill_at:
            if not list(Path(self.params.marker_dir).glob("attempt-*")):
                Path(self.params.marker_dir, f"attempt-{uuid.uuid4().hex}").touch()
                os.kill(os.getpid(), signal.SIGKILL)
        w = self.params.weights
        self.results.dot[:] = (frame * w).sum()
        self.results.wsum[:] += frame * w

    def merge(self, dest, src):
        dest.dot[:] = src.dot
        dest.wsum[:] += src.wsum


def masks_run_tasks(mask_bytes, sig=(16, 16)):
    masks = np.ones((mask_bytes // (4 * sig[0] * sig[1]),) + sig, dtype=np.float32)
    data = np.ones((4,) + sig, dtype=np.uint8)
    with Context.make_with("inline") as ctx:
        ds = ctx.load("memory", data=data, sig_dims=2, num_partitions=4)
        run = UDFRun(plan_run(ds, [ApplyMasksUDF(mask_factories=masks)], executor=ctx.executor))
        return run.tasks()


# -- the wrapper -------------------------------------------------------------------------------

def test_shared_pickles_plainly_or_as_a_reference():
    big = np.arange(1 << 14, dtype=np.float64)  # 128 KiB
    small = np.arange(8)
    s_big, s_small = Shared(big), Shared(small)
    # plain pickling: the value travels
    np.testing.assert_array_equal(pickle.loads(cloudpickle.dumps(s_big)).value, big)
    found: dict = {}
    with collecting(found):
        blob = cloudpickle.dumps([s_big, s_small])
    assert list(found) == [s_big.key] and len(blob) < 2048
    with resolving({s_big.key: big}):
        got_big, got_small = pickle.loads(blob)
    assert got_big.value is big and np.array_equal(got_small.value, small)
    # content-addressed: same content, same key; other content, another key
    assert Shared(big.copy()).key == s_big.key != Shared(big + 1).key
    # a reference whose value was not shipped: a clear error, not a wrong value
    with pytest.raises(pickle.UnpicklingError, match="shared parameter .* not shipped"):
        pickle.loads(blob)
    assert share(3) == 3 and share(None) is None and isinstance(share(big), Shared)
    assert share(s_big) is s_big


@pytest.mark.parametrize("kind", ["processes", "dask"])
def test_payload_is_independent_of_parameter_size(kind):
    dumps = cloudpickle.dumps if kind == "processes" else dumps_by_value
    sizes = []
    for mask_bytes in (1 << 20, 64 << 20):
        tasks = masks_run_tasks(mask_bytes)
        payloads = [pickle_with_refs(t, i, "a test", dumps=dumps) for i, t in enumerate(tasks)]
        assert len({key for _, found in payloads for key in found}) == 1  # one mask stack
        sizes.append(max(len(p) for p, _ in payloads))
    assert abs(sizes[1] - sizes[0]) < 1024 and sizes[1] < 8192, sizes
    # the old way (the parameters in every task) for comparison
    assert len(cloudpickle.dumps(tasks[0])) > 64 << 20


# -- results with every parameter shipped, on every executor -----------------------------------

@pytest.fixture
def share_everything(monkeypatch):
    # every wrapped parameter goes the shipped way, however small
    monkeypatch.setattr(shared_mod, "SHARE_MIN_BYTES", 0)


@pytest.mark.parametrize("executor", sorted(EXECUTORS))
def test_results_equal_numpy_with_shipped_parameters(executor, share_everything):
    # fewer examples where a run costs milliseconds per partition
    n = examples(8 if executor in ("inline", "inline-debug", "threads") else 3)

    @settings(max_examples=n, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(case=cases(dtypes=["uint16", "float32", ">f8"], formats=["memory", "raw"],
                      max_sig_dims=2), seed=st.integers(0, 2**32 - 1))
    def check(case, seed):
        check_shipped(shared_context(executor), case, seed)

    check()


def check_shipped(ctx, case, seed):
    rng = np.random.default_rng(seed)
    weights = rng.integers(-3, 4, size=case.sig_shape).astype(np.float64)
    masks = rng.integers(-3, 4, size=(3,) + tuple(case.sig_shape)).astype(np.float64)
    with tempfile.TemporaryDirectory() as tmpdir:
        ds = load(ctx, case, tmpdir)
        res = ctx.run_udf(dataset=ds, udf=[Weighted(weights),
                                           ApplyMasksUDF(mask_factories=lambda: masks)],
                          roi=case.roi)
    flat = case.flat.reshape(case.n, prod(case.sig_shape))
    wflat = weights.reshape(-1)
    assert_nav_rows(res[0]["dot"], flat @ wflat, case, exact=True)
    np.testing.assert_array_equal(res[0]["wsum"].data, (flat * wflat).sum(axis=0).reshape(case.sig_shape))
    assert_nav_rows(res[1]["intensity"], flat @ masks.reshape(3, -1).T, case, exact=True)
    assert param_segments() == []


# -- shipped once per worker, nothing left behind ----------------------------------------------

def big_case(parts=8):
    rng = np.random.default_rng(5)
    data = rng.integers(0, 100, size=(parts * 6, 64, 64)).astype(np.float32)
    weights = rng.integers(-3, 4, size=(64, 64)).astype(np.float64)
    masks = rng.integers(-3, 4, size=(64, 64, 64)).astype(np.float32)  # 1 MiB
    return data, weights, masks


def check_big(res, data, weights, masks):
    flat = data.reshape(len(data), -1).astype(np.float64)
    np.testing.assert_array_equal(res[0]["dot"].data, flat @ weights.reshape(-1))
    np.testing.assert_allclose(res[1]["intensity"].data, flat @ masks.reshape(64, -1).T.astype(np.float64),
                               rtol=1e-5)


def test_processes_ship_each_parameter_once_per_worker(monkeypatch):
    from udfkit.executor import _params

    ctx = shared_context("processes")
    sent, names = [], set()
    original = _params.SegmentShipments.message

    def message(self, run_id, key, value):
        sent.append(key)
        msg = original(self, run_id, key, value)
        names.update(name for name, *_ in msg[4])
        return msg

    monkeypatch.setattr(_params.SegmentShipments, "message", message)
    data, weights, masks = big_case()
    ds = ctx.load("memory", data=data, sig_dims=2, num_partitions=8)
    for _ in range(2):
        sent.clear()
        res = ctx.run_udf(dataset=ds, udf=[Weighted(weights), ApplyMasksUDF(mask_factories=masks)])
        check_big(res, data, weights, masks)
        # two parameters (weights, masks), to at most two workers, for eight tasks
        assert len(set(sent)) == 2 and len(sent) <= 4
        assert param_segments() == []
    # the workers drop the run's parameters when the release message arrives (ApplyMasksUDF
    # keeps its last few mask stacks in a cache of its own: not looked at here)
    names.clear()
    res = ctx.run_udf(dataset=ds, udf=Weighted(weights))
    assert names

    def still_mapped():
        return [line for line in mapped_param_segments(ctx) if any(n in line for n in names)]

    deadline = time.monotonic() + 5
    while still_mapped() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert still_mapped() == []


def test_processes_error_and_killed_worker_leave_nothing(tmp_path):
    ctx = shared_context("processes")
    data, weights, masks = big_case(parts=2)
    ds = ctx.load("memory", data=data, sig_dims=2, num_partitions=2)
    # the worker of partition 1 dies in the middle: its retry, on a fresh worker that has
    # none of the run's parameters yet, gets them
    res = ctx.run_udf(dataset=ds, udf=[Weighted(weights, marker_dir=str(tmp_path), kill_at=9),
                                       ApplyMasksUDF(mask_factories=masks)])
    check_big(res, data, weights, masks)
    assert len(list(tmp_path.glob("attempt-*"))) == 1
    assert param_segments() == []
    with pytest.raises(ValueError, match="operands could not be broadcast"):
        ctx.run_udf(dataset=ds, udf=Weighted(np.ones((3, 3, 3))))
    assert param_segments() == []


@pytest.mark.cluster
def test_dask_scatters_once_and_a_killed_worker_gets_the_parameters(tmp_path, monkeypatch):
    ctx = shared_context("dask")
    client = ctx.executor.client
    scattered = []
    original = client.scatter

    def scatter(data, **kwargs):
        scattered.append(list(data))
        return original(data, **kwargs)

    monkeypatch.setattr(client, "scatter", scatter)
    data, weights, masks = big_case(parts=4)
    ds = ctx.load("memory", data=data, sig_dims=2, num_partitions=4)
    res = ctx.run_udf(dataset=ds, udf=[Weighted(weights, marker_dir=str(tmp_path), kill_at=9),
                                       ApplyMasksUDF(mask_factories=masks)])
    check_big(res, data, weights, masks)
    assert len(list(tmp_path.glob("attempt-*"))) == 1
    assert len(scattered) <= 3  # weights and masks, once each (again only if all copies died)
    # released at the end of the run: no parameter left on the workers
    deadline = time.monotonic() + 10
    while True:
        keys = [k for ks in client.run(lambda dask_worker: list(dask_worker.data)).values()
                for k in ks if str(k).startswith("udfkit-param-")]
        if not keys or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert keys == []


_CRASH_SCRIPT = """
import os, time, numpy as np
from udfkit import Context, UDF

class Slow(UDF):
    def __init__(self, param):
        super().__init__(param=param)

    def get_result_buffers(self):
        return {"t": self.buffer(kind="nav", dtype="float64")}

    def process_tile(self, tile):
        time.sleep(0.5)
        self.results.t[:] = self.params.param[0]

ctx = Context.make_with("processes", cpus=2)
ds = ctx.load("memory", data=np.ones((64, 8, 8), np.float32), sig_dims=2, num_partitions=8,
              tileshape=(1, 8, 8))
print(os.getpid(), flush=True)
ctx.run_udf(dataset=ds, udf=Slow(np.ones(1 << 20)))
"""


@pytest.mark.slow
def test_segments_of_a_killed_main_process_are_removed(tmp_path):
    """The main process dies in the middle of a run (SIGKILL): multiprocessing's resource
    tracker removes the run's parameter segments."""
    import subprocess
    import sys

    script = tmp_path / "crash.py"
    script.write_text(_CRASH_SCRIPT)
    proc = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        pid = int(proc.stdout.readline())
        pattern = f"/dev/shm/udfkit_{pid}_params_*"
        deadline = time.monotonic() + 60
        while not glob.glob(pattern):
            assert time.monotonic() < deadline and proc.poll() is None, proc.stderr.read()
            time.sleep(0.05)
        proc.kill()
        proc.wait()
        deadline = time.monotonic() + 30
        while glob.glob(pattern) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert glob.glob(pattern) == []
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
