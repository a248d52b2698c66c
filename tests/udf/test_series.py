"""Series mode (``process_series``): results equal numpy along axis 0 of the whole array.

Whatever the stored dtype, nav / sig shapes, format, ``sync_offset`` (frames missing at either
end), partitioning, ROI, executor and read mode (strided reads or the rechunk pass), the
series built-ins equal the numpy computation on the processed frames; median and percentiles
exactly. Plus: meta inside ``process_series``, single buffers with a merge, partial results,
compressed formats, and the errors of the mode.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from udfkit import CorrectionSet
from udfkit.errors import UDFError
from udfkit.testing import ALL_EXECUTORS, SharedContexts
from udfkit.testing.profiles import examples
from udfkit.testing.strategies import REAL_DTYPES, BCase, cases, load
from udfkit.udf import (UDF, SeriesAggregateByIndexUDF, SeriesCorrelateUDF, SeriesNormalizeUDF,
                        SeriesStatsUDF, SumUDF)
from udfkit.udf.series import BLOCK_ENV

SETTINGS = dict(deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                        HealthCheck.data_too_large,
                                                        HealthCheck.function_scoped_fixture])
shared_context = SharedContexts(ALL_EXECUTORS)
_close_shared_contexts = shared_context.closing_fixture()

STATS = ("mean", "std", "var", "sum", "min", "max", "median")
PERCENTILES = (0, 5, 37.5, 50, 95, 100)


class WhereUDF(UDF):
    """Records, per pixel, the meta a block saw: its sig slice origin and the frames."""

    def get_result_buffers(self):
        n = self.meta.series_length
        return {"row": self.buffer(kind="sig", dtype="int64"),
                "frames": self.buffer(kind="sig", extra_shape=(n,), dtype="int64"),
                "blocks": self.buffer(kind="single", dtype="int64")}

    def process_series(self, block):
        sl = self.meta.sig_slice
        assert block.shape == (self.meta.series_length,) + sl.shape.to_tuple()
        assert self.results.row.shape == sl.shape.to_tuple()
        rows = np.arange(sl.origin[0], sl.origin[0] + sl.shape[0])
        self.results.row[...] = rows.reshape((-1,) + (1,) * (block.ndim - 2))
        self.results.frames[...] = self.meta.frame_index
        self.results.blocks[:] = 1

    def merge(self, dest, src):
        dest.row[:] = src.row
        dest.frames[:] = src.frames
        dest.blocks[:] += src.blocks


def check_stats(res, x, *, exact_dtype):
    """``res`` of SeriesStatsUDF(STATS, PERCENTILES) against numpy on ``x`` (n, *sig)."""
    x = x.astype(exact_dtype)
    for s in ("min", "max", "median"):
        ref = getattr(np, s)(x, axis=0)
        assert np.array_equal(res[s].data, ref), s
    ref = np.moveaxis(np.percentile(x, PERCENTILES, axis=0), 0, -1)
    assert np.array_equal(res["percentile"].data, ref)
    w = x.astype(np.float64)
    for s in ("mean", "std", "var", "sum"):
        ref = getattr(np, s)(w, axis=0)
        np.testing.assert_allclose(res[s].data, ref, rtol=1e-9, atol=1e-9, err_msg=s)


def run_case(ctx, case: BCase, tmpdir, reads, monkeypatch, rows=None):
    """Run the stats and meta UDFs on ``case`` and check them; ``rows``: rows per block."""
    monkeypatch.setenv("UDFKIT_SERIES_READS", reads)
    ds = load(ctx, case, tmpdir)
    udfs = [SeriesStatsUDF(stats=STATS, percentiles=PERCENTILES), WhereUDF()]
    if rows is not None:
        # a budget of exactly ``rows`` rows (of the bytes per row the plan counts)
        plan = ctx.plan(ds, udfs, roi=case.roi)
        monkeypatch.setenv(BLOCK_ENV, str(rows * plan.block_nbytes // plan.rows_per_block))
    plan = ctx.plan(ds, udfs, roi=case.roi)
    assert plan.mode == "series" and plan.read_mode == reads
    if rows is not None:
        assert plan.rows_per_block <= rows
    stats, where = ctx.run_udf(ds, udfs, roi=case.roi)
    if case.n == 0:
        # no frame processed: nothing is read, results keep their initial zeros
        assert not stats["median"].data.any()
        return
    check_stats(stats, case.native_frames, exact_dtype=case.native_dtype)
    sig = case.sig_shape
    rows = np.broadcast_to(np.arange(sig[0]).reshape((-1,) + (1,) * (len(sig) - 1)), sig)
    assert np.array_equal(where["row"].data, rows)
    positions = np.flatnonzero(case.processed)
    assert np.array_equal(where["frames"].data, np.broadcast_to(positions, sig + (case.n,)))
    assert where["blocks"].data.tolist() == [len(plan.blocks)]


@settings(max_examples=examples(30), **SETTINGS)
@given(case=cases(dtypes=REAL_DTYPES, max_sig_dims=3),
       executor=st.sampled_from(["inline", "inline-debug", "threads"]),
       reads=st.sampled_from(["strided", "rechunk"]),
       rows=st.sampled_from([None, 1, 2, 3]))
def test_series_stats_equal_numpy(case, executor, reads, rows, monkeypatch):
    """Drawn format, dtype, shapes, sync_offset, partitions, ROI, executor, read mode and block
    budget (small budgets make many blocks of one or a few rows)."""
    monkeypatch.delenv(BLOCK_ENV, raising=False)
    with tempfile.TemporaryDirectory() as tmpdir:
        run_case(shared_context(executor), case, tmpdir, reads, monkeypatch, rows)


@pytest.mark.parametrize("executor, reads", [
    ("processes", "strided"), ("dask", "rechunk"),
    pytest.param("processes", "rechunk", marks=pytest.mark.slow),
    pytest.param("dask", "strided", marks=pytest.mark.slow)])
def test_series_on_worker_processes(executor, reads, tmp_path, monkeypatch):
    """Worker processes and a dask cluster: several blocks, ROI and sync_offset."""
    rng = np.random.default_rng(7)
    nav, sig = (5, 6), (9, 4)
    roi = rng.random(nav) < 0.7
    case = BCase(nav_shape=nav, sig_shape=sig, dtype=">u2", image_count=28, sync_offset=-2,
                 num_partitions=3, roi=roi, seed=3, fmt="raw")
    run_case(shared_context(executor), case, tmp_path, reads, monkeypatch, rows=2)


def test_series_iter_partial_results(monkeypatch):
    """run_udf_iter yields after each block; the final result is complete and exact."""
    monkeypatch.setenv(BLOCK_ENV, str(2 * 8 * (30 * 4 + 8)))  # 2 rows a block
    data = np.random.default_rng(0).normal(size=(30, 8, 8)).astype("float32")
    ctx = shared_context("inline")
    ds = ctx.load("memory", data=data, sig_dims=2)
    parts = list(ctx.run_udf_iter(ds, SeriesStatsUDF(stats=("median",))))
    assert len(parts) == 4 and parts[-1].complete and not parts[0].complete
    assert parts[0].frames_done < parts[1].frames_done < parts[-1].frames_total
    assert np.array_equal(parts[-1].buffers[0]["median"].data, np.median(data, axis=0))


def _hdf5(tmp_path, data, **kw):
    h5py = pytest.importorskip("h5py")
    path = tmp_path / "data.h5"
    with h5py.File(path, "w") as f:
        f.create_dataset("x", data=data, **kw)
    return str(path)


@pytest.mark.parametrize("kw, reads", [({}, "strided"),
                                        ({"chunks": (1, 3, 4, 5), "compression": "gzip"}, "rechunk")])
def test_series_hdf5(kw, reads, tmp_path):
    """Contiguous HDF5 reads strided; gzip-compressed HDF5 goes through the rechunk pass."""
    data = np.random.default_rng(2).integers(0, 999, (2, 11, 8, 5)).astype("<i4")
    ctx = shared_context("threads")
    ds = ctx.load("hdf5", path=_hdf5(tmp_path, data, **kw), ds_path="x", sig_dims=2,
                  sync_offset=1)
    udf = SeriesStatsUDF(stats=STATS, percentiles=PERCENTILES)
    assert ctx.plan(ds, udf).read_mode == reads
    res = ctx.run_udf(ds, udf)
    frames = data.reshape(22, 8, 5)[1:]
    check_stats(res, frames, exact_dtype=frames.dtype)


def test_series_zarr_rechunk(tmp_path):
    """A chunked zarr array (chunks that cut the rows): rechunk pass, with a ROI."""
    zarr = pytest.importorskip("zarr")
    data = np.random.default_rng(4).integers(0, 50, (13, 6, 7)).astype("uint16")
    z = zarr.open(str(tmp_path / "x.zarr"), mode="w", shape=data.shape, chunks=(4, 3, 7),
                  dtype=data.dtype)
    z[:] = data
    ctx = shared_context("inline")
    ds = ctx.load("zarr", path=str(tmp_path / "x.zarr"), sig_dims=2)
    roi = np.arange(13) % 3 != 1
    udf = SeriesStatsUDF(stats=STATS, percentiles=PERCENTILES)
    assert ctx.plan(ds, udf, roi=roi).read_mode == "rechunk"
    check_stats(ctx.run_udf(ds, udf, roi=roi), data[roi], exact_dtype=data.dtype)


def test_series_tiff_fish_volume_rechunk():
    """Thunder's fish stack (PackBits TIFF volumes): rechunk pass, volumes of 2 planes."""
    ctx = shared_context("inline")
    ds = ctx.load("tiff", path=FISH, nplanes=2)
    udf = SeriesStatsUDF(stats=STATS, percentiles=PERCENTILES)
    plan = ctx.plan(ds, udf)
    assert plan.read_mode == "rechunk" and "compressed" in plan.read_reason
    assert "rechunk" in str(plan)
    check_stats(ctx.run_udf(ds, udf), fish_array(), exact_dtype=np.uint8)


# -- errors ----------------------------------------------------------------------------------

class BothUDF(UDF):
    def get_result_buffers(self):
        return {"x": self.buffer(kind="sig")}

    def process_series(self, block):
        pass

    def process_frame(self, frame):
        pass


class NavSeriesUDF(UDF):
    def get_result_buffers(self):
        return {"per_frame": self.buffer(kind="nav")}

    def process_series(self, block):
        pass


class SingleNoMergeUDF(UDF):
    def get_result_buffers(self):
        return {"count": self.buffer(kind="single")}

    def process_series(self, block):
        self.results.count[:] += block.size


@pytest.fixture
def small_ds():
    ctx = shared_context("inline")
    return ctx, ctx.load("memory", data=np.zeros((10, 6, 4), dtype="float32"), sig_dims=2)


def test_both_process_series_and_frame_method(small_ds):
    ctx, ds = small_ds
    with pytest.raises(UDFError, match=r"BothUDF defines process_series and process_frame"):
        ctx.run_udf(ds, BothUDF())


def test_block_too_big(small_ds, monkeypatch):
    ctx, ds = small_ds
    monkeypatch.setenv(BLOCK_ENV, "100")
    with pytest.raises(UDFError, match=r"SeriesStatsUDF: a series block of one row cannot fit "
                                       r"the memory budget: one row of 4 pixels × 10 frames "
                                       r"takes 192 bytes .* may take 100 bytes"):
        ctx.plan(ds, SeriesStatsUDF(stats=("mean",)))


@pytest.mark.parametrize("udfs, match", [
    (lambda: [NavSeriesUDF()], r"NavSeriesUDF: series mode allows sig buffers .* \['per_frame'\] "
                               r"is a nav buffer"),
    (lambda: [SingleNoMergeUDF()], r"SingleNoMergeUDF has single buffers \['count'\] but no "
                                   r"merge\(dest, src\)"),
    (lambda: [SeriesStatsUDF(), SumUDF()], r"series UDFs \(SeriesStatsUDF\) and frame-wise UDFs "
                                           r"\(SumUDF\) cannot share a run"),
])
def test_series_udf_errors(small_ds, udfs, match):
    ctx, ds = small_ds
    with pytest.raises(UDFError, match=match):
        ctx.run_udf(ds, udfs())


class AuxSeriesUDF(UDF):
    def __init__(self, weights=None):
        super().__init__(weights=weights)

    def get_result_buffers(self):
        return {"x": self.buffer(kind="sig")}

    def process_series(self, block):
        pass


@pytest.mark.parametrize("make, match", [
    (lambda: AuxSeriesUDF(weights=UDF.aux_data(np.ones(10), kind="nav")),
     r"AuxSeriesUDF: aux_data parameters \['weights'\] are cut per partition"),
    (lambda: SeriesCorrelateUDF(signal=np.ones(7)),
     r"SeriesCorrelateUDF: signal must have one entry per frame: 10 .* got shape \(7,\)"),
    (lambda: SeriesAggregateByIndexUDF(index=np.zeros(3)),
     r"SeriesAggregateByIndexUDF: index must have one entry per frame"),
])
def test_series_parameter_errors(small_ds, make, match):
    ctx, ds = small_ds
    with pytest.raises(UDFError, match=match):
        ctx.plan(ds, make())


@pytest.mark.parametrize("make, match", [
    (lambda: SeriesStatsUDF(stats=("mode",)), r"SeriesStatsUDF: unknown stats \['mode'\]"),
    (lambda: SeriesStatsUDF(percentiles=(101,)), r"percentiles must lie in \[0, 100\]"),
    (lambda: SeriesNormalizeUDF(method="median"), r"method must be one of"),
    (lambda: SeriesNormalizeUDF(method="mean", window=3), r"window= applies to the 'window'"),
    (lambda: SeriesCorrelateUDF(signal=np.ones((2, 2, 2))), r"signal must have 1 or 2 dimensions"),
])
def test_series_builtin_argument_errors(make, match):
    with pytest.raises(UDFError, match=match):
        make()


def test_series_builtins_refuse_complex_before_reading():
    ctx = shared_context("inline")
    ds = ctx.load("memory", data=np.zeros((4, 3, 3), dtype="complex64"), sig_dims=2)
    with pytest.raises(UDFError, match=r"SeriesStatsUDF is defined for real data, but the data "
                                       r"set holds complex64"):
        ctx.plan(ds, SeriesStatsUDF())


def test_series_refuses_corrections(small_ds):
    ctx, ds = small_ds
    with pytest.raises(UDFError, match="corrections are not applied in series mode"):
        ctx.run_udf(ds, SeriesStatsUDF(), corrections=CorrectionSet(dark=np.ones((6, 4))))


# -- fixtures shared with the Thunder parity tests -------------------------------------------

FIXTURES = Path(__file__).resolve().parents[2] / ".." / "shared" / "fixtures" / "thunder"
MOUSE = os.path.join(FIXTURES, "mouse-images")
FISH = os.path.join(FIXTURES, "fish-images")


def fish_array():
    """The fish stack read with tifffile directly: (20, 2, 76, 87) uint8."""
    tifffile = pytest.importorskip("tifffile")
    files = sorted(f for f in os.listdir(FISH) if f.endswith(".tif"))
    return np.stack([tifffile.imread(os.path.join(FISH, f)) for f in files])


# -- parameters once per worker (issue 18) ----------------------------------------------------

class WeightedSeriesUDF(UDF):
    """Per pixel: the series dotted with ``weights`` (one weight per frame, a large
    parameter) plus ``offset`` (sig-shaped, another one)."""

    def __init__(self, weights, offset):
        super().__init__(weights=weights, offset=offset)

    def get_result_buffers(self):
        return {"dot": self.buffer(kind="sig", dtype="float64")}

    def process_series(self, block):
        sl = self.meta.sig_slice
        w = np.asarray(self.params.weights)[self.meta.frame_index]
        self.results.dot[...] = np.tensordot(w, block.astype(np.float64), axes=1) \
            + self.params.offset[sl.get()]


def _weighted_case(n_frames=40, sig=(24, 32), seed=3):
    rng = np.random.default_rng(seed)
    data = rng.integers(0, 1000, size=(n_frames,) + sig).astype(np.uint16)
    weights = rng.integers(-3, 4, size=n_frames).astype(np.float64)
    offset = rng.integers(-9, 9, size=sig).astype(np.float64)
    return data, weights, offset


@pytest.mark.parametrize("kind", ["processes", "dask"])
def test_series_task_payload_is_independent_of_parameter_size(kind, monkeypatch):
    """SeriesTask wraps the UDF kwargs, ROI, positions and strided-read partitions once per
    run: every block's payload refers to one shipped copy of each, whatever their size."""
    import cloudpickle

    from udfkit.executor._params import pickle_with_refs
    from udfkit.executor._shipping import dumps_by_value
    from udfkit.udf.series import SeriesRun

    monkeypatch.setenv(BLOCK_ENV, "16K")  # several blocks
    ctx = shared_context("inline")
    dumps = cloudpickle.dumps if kind == "processes" else dumps_by_value
    sizes = []
    for n in (1 << 12, 1 << 20):  # weights of 32 KiB and 8 MiB
        data, _, offset = _weighted_case()
        weights = np.ones(n)
        ds = ctx.load("memory", data=data.reshape((4, 10) + data.shape[1:]), num_partitions=3)
        plan = ctx.plan(ds, [WeightedSeriesUDF(weights, offset)], roi=np.ones((4, 10), bool))
        tasks = SeriesRun(plan)._tasks(None)
        assert len(tasks) > 2
        payloads = [pickle_with_refs(t, i, "a test", dumps=dumps) for i, t in enumerate(tasks)]
        keys = {key for _, found in payloads for key in found}
        assert len(keys) >= 2  # the weights and the offset (and the ROI), once for all blocks
        sizes.append(max(len(p) for p, _ in payloads))
    assert abs(sizes[1] - sizes[0]) < 1024 and sizes[1] < 16384, sizes


@pytest.mark.parametrize("executor", ["inline-debug", "threads", "processes"])
def test_series_shipped_parameters_equal_numpy(executor, monkeypatch):
    """Every parameter goes the shipped way (however small): results still equal numpy."""
    from udfkit.common import shared as shared_mod

    monkeypatch.setattr(shared_mod, "SHARE_MIN_BYTES", 0)
    monkeypatch.setenv(BLOCK_ENV, "16K")
    data, weights, offset = _weighted_case()
    roi = np.random.default_rng(1).random((4, 10)) < 0.6
    ctx = shared_context(executor)
    ds = ctx.load("memory", data=data.reshape((4, 10) + data.shape[1:]), num_partitions=3)
    res = ctx.run_udf(dataset=ds, udf=WeightedSeriesUDF(weights, offset), roi=roi)
    sel = np.flatnonzero(roi.reshape(-1))
    ref = np.tensordot(weights[sel], data[sel].astype(np.float64), axes=1) + offset
    np.testing.assert_array_equal(res["dot"].data, ref)
