"""Context: construction, executors, progress reporting, result types."""

import numpy as np
import pytest

from udfkit import UDF, Context
from udfkit.executor.progress import ProgressReporter, make_reporter


class SumSig(UDF):
    def get_result_buffers(self):
        return {"s": self.buffer(kind="nav", dtype="float64")}

    def process_tile(self, tile):
        self.results.s[:] = tile.reshape(tile.shape[0], -1).sum(axis=1)


class Recorder(ProgressReporter):
    def __init__(self):
        self.calls = []

    def start(self, total_frames):
        self.calls.append(("start", total_frames))

    def advance(self, frames):
        self.calls.append(("advance", frames))

    def close(self):
        self.calls.append(("close",))


@pytest.fixture
def data():
    return np.arange(6 * 5 * 4 * 3, dtype=np.float32).reshape(6, 5, 4, 3)


def test_default_context_is_processes_and_closes(data):
    import time

    import psutil

    from udfkit.executor.processes import ProcessesExecutor

    t0 = time.perf_counter()
    with Context() as ctx:
        assert isinstance(ctx.executor, ProcessesExecutor)
        assert ctx.load("memory", data=data).shape.nav.size == 30
    assert time.perf_counter() - t0 < 0.5  # start + close, no run
    with Context() as ctx:
        res = ctx.run_udf(dataset=ctx.load("memory", data=data), udf=SumSig())
    np.testing.assert_array_equal(res["s"].data, data.sum(axis=(2, 3)))
    workers = [p for p in psutil.Process().children(recursive=True)
               if "resource_tracker" not in " ".join(p.cmdline())]
    assert workers == []


def test_make_with_unknown_kind():
    with pytest.raises(ValueError, match="executor kind: expected one of .*'inline'.*got 'cluster'"):
        Context.make_with("cluster")


def test_context_rejects_non_executor():
    with pytest.raises(TypeError, match="expected an Executor"):
        Context(executor="inline")


@pytest.mark.parametrize("num_partitions", [1, 3])
def test_progress_reporter_sees_every_frame(data, num_partitions):
    ctx = Context.make_with("inline")
    ds = ctx.load("memory", data=data, num_partitions=num_partitions)
    roi = np.zeros((6, 5), bool)
    roi[1:4] = True
    rec = Recorder()
    ctx.run_udf(dataset=ds, udf=SumSig(), roi=roi, progress=rec)
    assert rec.calls[0] == ("start", 15)
    assert rec.calls[-1] == ("close",)
    assert sum(c[1] for c in rec.calls if c[0] == "advance") == 15


def test_progress_true_makes_a_tqdm_bar(data, capsys):
    ctx = Context.make_with("inline")
    ds = ctx.load("memory", data=data)
    ctx.run_udf(dataset=ds, udf=SumSig(), progress=True)
    assert "30/30" in capsys.readouterr().err


def test_progress_rejects_other_objects():
    with pytest.raises(TypeError, match="progress: expected True/False or a reporter"):
        make_reporter("yes")


def test_run_udf_list_returns_list_and_single_returns_dict(data):
    ctx = Context.make_with("inline")
    ds = ctx.load("memory", data=data)
    one = ctx.run_udf(dataset=ds, udf=SumSig())
    both = ctx.run_udf(dataset=ds, udf=[SumSig(), SumSig()])
    assert isinstance(one, dict) and isinstance(both, list) and len(both) == 2
    for res in both:
        np.testing.assert_array_equal(res["s"].data, one["s"].data)


def test_empty_udf_list_is_an_error(data):
    ctx = Context.make_with("inline")
    ds = ctx.load("memory", data=data)
    with pytest.raises(ValueError, match="non-empty list"):
        ctx.run_udf(dataset=ds, udf=[])


def test_empty_roi_gives_unprocessed_results(data):
    ctx = Context.make_with("inline")
    ds = ctx.load("memory", data=data)
    res = ctx.run_udf(dataset=ds, udf=SumSig(), roi=np.zeros((6, 5), bool))
    assert np.isnan(res["s"].data).all()
    assert not res["s"].valid_mask.any()
    assert res["s"].raw_data.shape == (0,)


def test_import_is_light():
    import subprocess
    import sys

    code = ("import sys, udfkit; heavy = [m for m in ('numba', 'dask', 'distributed', 'h5py', "
            "'cloudpickle', 'tqdm') if m in sys.modules]; print(heavy)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_map_probe_on_zeros_does_not_warn():
    """Context.map calls f once on a frame of zeros: a division by zero there is not reported."""
    import warnings

    data = np.random.default_rng(0).random((3, 4, 5, 6)) + 0.5
    ctx = Context.make_with("inline")
    ds = ctx.load("memory", data=data)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        res = ctx.map(dataset=ds, f=lambda fr: (np.indices(fr.shape) * fr).sum(axis=(1, 2)) / fr.sum())
    weighted = (np.indices((5, 6))[None, None] * data[:, :, None]).sum(axis=(3, 4))
    ref = weighted / data.sum(axis=(2, 3))[..., None]
    np.testing.assert_allclose(res.data, ref)


def test_export_refuses_its_own_source(tmp_path):
    from udfkit.errors import UDFError

    path = tmp_path / "d.npy"
    data = np.arange(2 * 2 * 3 * 3, dtype="uint16").reshape(2, 2, 3, 3)
    np.save(path, data)
    ctx = Context.make_with("inline")
    with pytest.raises(UDFError, match="file of the data set"):
        ctx.export(ctx.load("npy", path=str(path)), path, overwrite=True)
    np.testing.assert_array_equal(np.load(path), data)
