"""Resumable runs: a run killed with SIGKILL at random moments, then resumed (and maybe
killed again), ends with results equal bit for bit to an uninterrupted run's; ``resume=True``
refuses a store of another run, naming what differs.

The run goes in a child process (``_child.py`` written here): it loads a raw file, runs a
UDF with a nav buffer (with an extra shape), a sig buffer summed in float32 (so the merge
order shows in the bits) and a single buffer, with results on disk and a journal written
after every merge; the test kills it at a random moment after it has started the run.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest

from udfkit import Context
from udfkit.errors import ResultStoreError
from udfkit.udf import SumSigUDF

CHILD = textwrap.dedent('''
    import sys, time
    import numpy as np
    import udfkit.udf.store.target as target
    from udfkit import Context, UDF

    target.CHECKPOINT_INTERVAL = 0.0  # a journal after every merge: kills land everywhere


    class SlowUDF(UDF):
        def get_result_buffers(self):
            return {"rows": self.buffer(kind="nav", extra_shape=(2,), dtype="float32"),
                    "acc": self.buffer(kind="sig", dtype="float32"),
                    "n": self.buffer(kind="single", dtype="int64")}

        def process_frame(self, frame):
            time.sleep(self.params.delay)
            self.results.rows[:] = [frame.sum(), frame.max()]
            self.results.acc[:] += frame * np.float32(1.1)
            self.results.n[:] += 1

        def merge(self, dest, src):
            dest.rows[:] = src.rows
            dest.acc[:] += src.acc
            dest.n[:] += src.n


    path, store, mode, result = sys.argv[1:5]
    ctx = Context.make_with("inline")
    ds = ctx.load("raw", path=path, nav_shape=(6, 8), sig_shape=(5, 5), dtype="float32",
                  num_partitions=12)
    roi = np.ones((6, 8), bool)
    roi[2, 3:6] = False
    udf = SlowUDF(delay=0.004)
    print("go", flush=True)
    if mode == "reference":
        res = ctx.run_udf(ds, udf, roi=roi, deterministic=True)
        rows = res["rows"].data
    else:
        res = ctx.run_udf(ds, udf, roi=roi, out=store, resume=(mode == "resume"))
        rows = np.asarray(res["rows"].data[...])
    np.savez(result, rows=rows, acc=res["acc"].data, n=res["n"].data,
             valid=res["rows"].valid_mask)
''')


@pytest.fixture
def child(tmp_path):
    script = tmp_path / "_child.py"
    script.write_text(CHILD)
    data = np.random.default_rng(7).random((48, 5, 5), dtype=np.float32) * 1000
    raw = tmp_path / "data.raw"
    data.tofile(raw)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in sys.path if p))

    def start(store, mode, result):
        return subprocess.Popen([sys.executable, str(script), str(raw), str(store), mode,
                                 str(result)], stdout=subprocess.PIPE, env=env)
    return start


def _run_to_end(start, *args):
    p = start(*args)
    out, _ = p.communicate(timeout=240)
    assert p.returncode == 0, out


def _kill_at_random(start, store, rng, result):
    """Start a run (resuming), kill it with SIGKILL at a random moment of the run."""
    p = start(store, "resume", result)
    assert p.stdout.readline().strip() == b"go"
    time.sleep(rng.uniform(0.0, 0.45))
    p.send_signal(signal.SIGKILL)
    p.communicate(timeout=60)
    return p.returncode


def _check_kill_and_resume(child, tmp_path, fmt, kills, seed):
    rng = np.random.default_rng(seed)
    _run_to_end(child, tmp_path / "unused", "reference", tmp_path / "ref.npz")
    store = tmp_path / {"zarr": "r.zarr", "hdf5": "r.h5", "npy": "rdir"}[fmt]
    killed = 0
    for _ in range(kills):
        killed += _kill_at_random(child, store, rng, tmp_path / "res.npz") == -signal.SIGKILL
    assert killed >= 1
    _run_to_end(child, store, "resume", tmp_path / "res.npz")
    ref = np.load(tmp_path / "ref.npz")
    res = np.load(tmp_path / "res.npz")
    for name in ("rows", "acc", "n", "valid"):
        # bit for bit: NaNs in the same places, every other value identical
        assert ref[name].tobytes() == res[name].tobytes(), name


@pytest.mark.parametrize("fmt", ["zarr", pytest.param("hdf5", marks=pytest.mark.slow),
                                 pytest.param("npy", marks=pytest.mark.slow)])
def test_kill_and_resume_equals_uninterrupted(child, tmp_path, fmt):
    _check_kill_and_resume(child, tmp_path, fmt, kills=2, seed=len(fmt))


@pytest.mark.slow
@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("fmt", ["zarr", "npy", "hdf5"])
def test_kill_and_resume_many(child, tmp_path, fmt, seed):
    _check_kill_and_resume(child, tmp_path, fmt, kills=8, seed=seed)


# -- refusing to resume another run ------------------------------------------------------------

class Scaled(SumSigUDF):
    def __init__(self, factor=1.0):
        super().__init__()
        self._kwargs = {"factor": factor}
        self.params.__dict__["factor"] = factor


@pytest.fixture
def ctx():
    with Context.make_with("inline") as c:
        yield c


def _interrupted(ctx, ds, out, udf, **kw):
    """A run stopped after its first partition (as a crash would leave it)."""
    it = ctx.run_udf_iter(ds, udf, out=out, **kw)
    next(it)
    it.close()


def test_resume_refuses_changed_parameters(ctx, tmp_path):
    ds = ctx.load("memory", data=np.ones((4, 4, 3, 3)), num_partitions=4)
    out = tmp_path / "r.zarr"
    _interrupted(ctx, ds, out, Scaled(factor=1.0))
    with pytest.raises(ResultStoreError, match=r"UDF 0: .*Scaled.*class or parameters differ"):
        ctx.run_udf(ds, Scaled(factor=2.0), out=out, resume=True)
    res = ctx.run_udf(ds, Scaled(factor=1.0), out=out, resume=True)
    np.testing.assert_array_equal(res["intensity"].data[...], np.full((4, 4), 9.0))


def test_resume_refuses_changed_data_and_roi(ctx, tmp_path):
    ds = ctx.load("memory", data=np.ones((4, 4, 3, 3)), num_partitions=4)
    out = tmp_path / "rdir"
    _interrupted(ctx, ds, out, SumSigUDF())
    other = ctx.load("memory", data=np.ones((4, 4, 3, 2)), num_partitions=4)
    with pytest.raises(ResultStoreError, match="data set: the store has"):
        ctx.run_udf(other, SumSigUDF(), out=out, resume=True)
    with pytest.raises(ResultStoreError, match="roi"):
        ctx.run_udf(ds, SumSigUDF(), out=out, resume=True, roi=np.eye(4, dtype=bool))
    repartitioned = ctx.load("memory", data=np.ones((4, 4, 3, 3)), num_partitions=2)
    with pytest.raises(ResultStoreError, match="partitions"):
        ctx.run_udf(repartitioned, SumSigUDF(), out=out, resume=True)


def test_resume_runs_only_missing_partitions(ctx, tmp_path):
    calls = []

    class Counting(SumSigUDF):
        def process_tile(self, tile):
            calls.append(tile.shape[0])
            super().process_tile(tile)

    ds = ctx.load("memory", data=np.arange(4 * 4 * 9.0).reshape(4, 4, 3, 3), num_partitions=4)
    out = tmp_path / "r.h5"
    _interrupted(ctx, ds, out, Counting())
    first = sum(calls)
    calls.clear()
    res = ctx.run_udf(ds, Counting(), out=out, resume=True)
    assert first + sum(calls) == 16 and sum(calls) < 16
    np.testing.assert_array_equal(res["intensity"].data[...],
                                  np.arange(4 * 4 * 9.0).reshape(4, 4, 9).sum(-1))


@pytest.mark.parametrize("name", ["r.zarr", "r.h5", "rdir"])
def test_resume_of_a_finished_run_reads_it(ctx, tmp_path, name):
    """Nothing runs again; the results (even while the first ones are alive) are the same."""
    from udfkit.udf import SumUDF

    ds = ctx.load("memory", data=np.random.default_rng(2).random((4, 4, 5, 5)), num_partitions=3)
    out = tmp_path / name
    first = ctx.run_udf(ds, [SumSigUDF(), SumUDF()], out=out)
    again = ctx.run_udf(ds, [SumSigUDF(), SumUDF()], out=out, resume=True)
    assert first[0]["intensity"].data[...].tobytes() == again[0]["intensity"].data[...].tobytes()
    assert first[1]["intensity"].data.tobytes() == again[1]["intensity"].data.tobytes()
