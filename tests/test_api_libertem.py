"""The Context as LiberTEM 0.16 scripts call it: executor names, positional load parameters,
``backends=``, ``sync=False``, ``export_dataset``, ``ds.diagnostics`` and the analyses.

Every number is checked against numpy on the whole array; every LiberTEM argument udfkit
does not offer must give one line naming it and the udfkit alternative.
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import numpy as np
import pytest

from udfkit import Context, DataSetError, UDFError
from udfkit import masks as udfkit_masks
from udfkit.errors import ExecutorSpecError, UdfkitWarning
from udfkit.udf import SumSigUDF, SumUDF

DATA = np.random.default_rng(7).integers(0, 1000, (4, 5, 8, 9)).astype(np.uint16)


@pytest.fixture(scope="module")
def ctx():
    with Context.make_with("inline") as c:
        yield c


def _sums_equal(ctx):
    ds = ctx.load("memory", data=DATA, num_partitions=3)
    res_sum, res_sig = ctx.run_udf(ds, [SumUDF(), SumSigUDF()])
    np.testing.assert_allclose(res_sum["intensity"].data, DATA.sum(axis=(0, 1), dtype=np.float64))
    np.testing.assert_allclose(res_sig["intensity"].data, DATA.sum(axis=(2, 3), dtype=np.float64))


# -- make_with ------------------------------------------------------------------------------

@pytest.mark.parametrize("kind, args, executor", [
    ("synchronous", {}, "InlineExecutor"),
    ("inline", {}, "InlineExecutor"),
    ("threads", {"cpus": 2}, "ThreadsExecutor"),
    ("threads", {"cpus": [0, 1]}, "ThreadsExecutor"),
    ("threads", {"cpus": 2, "gpus": 0}, "ThreadsExecutor"),
    pytest.param("pipelined", {"cpus": 1}, "ProcessesExecutor", marks=pytest.mark.slow),
    pytest.param("dask", {"cpus": 1}, "DaskExecutor", marks=pytest.mark.slow),
    pytest.param("dask-make-default", {"cpus": 1}, "DaskExecutor", marks=pytest.mark.slow),
])
def test_make_with_libertem_kinds(kind, args, executor):
    with Context.make_with(kind, **args) as c:
        assert type(c.executor).__name__ == executor
        if "cpus" in args:
            cpus = args["cpus"]
            assert c.executor.num_workers == (cpus if isinstance(cpus, int) else len(cpus))
        _sums_equal(c)


def test_make_with_without_kind_is_the_default_executor():
    """LiberTEM's examples call make_with(cpus=4): udfkit's default executor, processes."""
    with Context.make_with(cpus=2) as c:  # workers start with the first run only
        assert type(c.executor).__name__ == "ProcessesExecutor"
        assert c.executor.num_workers == 2


def test_make_with_executor_spec_keyword():
    with Context.make_with(executor_spec="threads", cpus=1) as c:
        assert type(c.executor).__name__ == "ThreadsExecutor"


@pytest.mark.slow
def test_make_with_dask_integration_joins_running_client():
    from distributed import Client, LocalCluster

    with LocalCluster(n_workers=1, threads_per_worker=1, processes=False,
                      dashboard_address=None) as cluster, Client(cluster) as client:
        with Context.make_with("dask-integration") as c:
            assert c.executor.client is client
            _sums_equal(c)
        assert client.status == "running"  # not ours to close


@pytest.mark.parametrize("kind, args, match", [
    ("inline", {"cpus": 2}, r"make_with\('inline'\): cpus=2 is not offered: .*make_with\('threads', "
                            r"cpus=2\)"),
    ("synchronous", {"cpus": [0]}, "cpus=.0. is not offered"),
    ("threads", {"gpus": 1}, r"gpus=1 is not offered: udfkit computes on CPUs"),
    ("dask", {"gpus": [0, 1]}, r"gpus=\[0, 1\] is not offered"),
    ("pipelined", {"gpus": 2}, "gpus=2 is not offered"),
    ("inline", {"main_process_gpu": True}, "main_process_gpu=True is not offered"),
    ("delayed", {}, r"make_with\('delayed'\) is not offered: .*use 'dask'"),
    ("dask-integration", {"cpus": 2}, r"use make_with\('dask', cpus=2\)"),
    ("threads", {"cpus": 0}, "expected at least one worker"),
    ("threads", {"cpus": "two"}, "cpus: expected a number of workers"),
    ("cluster", {}, "executor kind: expected one of"),
])
def test_make_with_refuses_in_one_line(kind, args, match):
    with pytest.raises(ExecutorSpecError, match=match) as info:
        Context.make_with(kind, **args)
    assert "\n" not in str(info.value)
    assert isinstance(info.value, ValueError)


def test_make_with_dask_integration_without_client():
    with pytest.raises(ExecutorSpecError, match="no running dask.distributed client"):
        Context.make_with("dask-integration")


def test_make_with_snooze_timeout_warns():
    with pytest.warns(UdfkitWarning, match="snooze_timeout=1 is not offered"):
        Context.make_with("inline", snooze_timeout=1).close()


def test_context_plot_class_parameter():
    from udfkit.viz import Dummy2DPlot

    with Context.make_with("inline", plot_class=Dummy2DPlot) as c:
        assert c.plot_class is Dummy2DPlot
    with Context(plot_class=Dummy2DPlot, executor=Context.make_with("inline").executor) as c:
        assert c.plot_class is Dummy2DPlot


# -- load -----------------------------------------------------------------------------------

def test_load_positional_like_libertem(ctx, tmp_path):
    raw = tmp_path / "scan.raw"
    DATA.tofile(raw)
    npy = tmp_path / "scan.npy"
    np.save(npy, DATA)
    loaded = [
        ctx.load("raw", raw, "uint16", nav_shape=(4, 5), sig_shape=(8, 9)),
        ctx.load("raw", str(raw), dtype="uint16", scan_size=(4, 5), detector_size=(8, 9)),
        ctx.load("raw", raw, "uint16", (4, 5), (8, 9)),  # LiberTEM's scan_size, detector_size
        ctx.load("raw", raw, "uint16", nav_shape=(4, 5), sig_shape=(8, 9), enable_direct=True),
        ctx.load("npy", npy),
        ctx.load("npy", npy, 2),  # sig_dims
        ctx.load("auto", npy),
        ctx.load("memory", data=DATA, io_backend=None),  # LiberTEM passes io_backend=None
    ]
    for ds in loaded:
        assert tuple(ds.shape) == DATA.shape and ds.shape.sig.dims == 2
        assert ds.dtype == np.dtype("uint16")
        res = ctx.run_udf(ds, SumSigUDF())
        np.testing.assert_allclose(res["intensity"].data, DATA.sum(axis=(2, 3), dtype=np.float64))
    assert loaded[3].io_backend.name == "direct"


def test_load_hdf5_positional(ctx, tmp_path):
    h5py = pytest.importorskip("h5py")
    path = tmp_path / "scan.h5"
    with h5py.File(path, "w") as f:
        f["entry/data"] = DATA
    ds = ctx.load("hdf5", path, "entry/data")
    np.testing.assert_allclose(ctx.run_udf(ds, SumUDF())["intensity"].data,
                               DATA.sum(axis=(0, 1), dtype=np.float64))


@pytest.mark.parametrize("args, kwargs, match", [
    (("a.raw", "uint16", (4, 5), (8, 9), 0), {}, r"5 positional parameters, but it takes at most 4 "
                                                 r"\(path, dtype, scan_size, detector_size\)"),
    (("a.raw",), {"path": "b.raw"}, "path given by position and by name"),
    (("a.raw", "uint16"), {"nav_shape": (4, 5), "sig_shape": (8, 9), "tileshape": (1, 8, 9)},
     r"tileshape= is not offered by udfkit: .*get_tiling_preferences\(\)"),
    (("a.raw", "uint16"), {"nav_shape": (4, 5), "scan_size": (4, 5)}, "give nav_shape="),
    (("a.raw", "uint16"), {"crop_detector_to": (4, 4)}, "crop_detector_to= is not offered"),
    (("a.raw", "uint16"), {"enable_direct": True, "io_backend": "mmap"}, "give one"),
])
def test_load_refuses_in_one_line(ctx, tmp_path, args, kwargs, match):
    os.chdir(tmp_path)
    DATA.tofile("a.raw")
    with pytest.raises(DataSetError, match=match) as info:
        ctx.load("raw", *args, **kwargs)
    assert "\n" not in str(info.value)


def test_hdf5_target_size_points_to_num_partitions(ctx, tmp_path):
    with pytest.raises(DataSetError, match="target_size= is not offered by udfkit: pass num_partitions="):
        ctx.load("hdf5", tmp_path / "x.h5", "data", target_size=1 << 20)


# -- dataset attributes ---------------------------------------------------------------------

def test_shape_dtype_diagnostics(ctx, tmp_path):
    path = tmp_path / "scan.npy"
    np.save(path, DATA.reshape(20, 8, 9))
    ds = ctx.load("npy", path, nav_shape=(4, 5), sync_offset=3)
    assert ds.shape.nav.to_tuple() == (4, 5) and ds.shape.sig.to_tuple() == (8, 9)
    assert ds.dtype == np.uint16
    diag = ds.diagnostics
    assert isinstance(diag, list) and all(set(d) == {"name", "value"} for d in diag)
    by_name = {d["name"]: d["value"] for d in diag}
    assert by_name["dtype"] == "uint16"
    assert by_name["Number of frames skipped at the beginning"] == 3
    assert by_name["Number of blank frames inserted at the end"] == 3
    assert by_name["Number of frames ignored at the end"] == 0
    assert int(by_name["Number of partitions"]) == ds.get_num_partitions()


# -- run_udf --------------------------------------------------------------------------------

@pytest.mark.parametrize("backends", [None, "numpy", ("numpy",), ["numpy", "cupy"],
                                      ("cuda", "numpy")])
def test_backends_with_numpy_run(ctx, backends):
    ds = ctx.load("memory", data=DATA)
    res = ctx.run_udf(ds, SumUDF(), backends=backends)
    np.testing.assert_allclose(res["intensity"].data, DATA.sum(axis=(0, 1), dtype=np.float64))
    res = ctx.map(ds, lambda frame: frame.max(), backends=backends)
    np.testing.assert_array_equal(res.data, DATA.max(axis=(2, 3)))


@pytest.mark.parametrize("backends, match", [
    (("cupy",), r"asks for CuPy \(GPU\) only: udfkit runs UDFs on the CPU with \['numpy', .*\]; "
                r"pass backends=None or some of these"),
    ("cuda", r"asks for CUDA \(GPU\) only"),
    (("numpy", "tensorflow"), "unknown array back-end 'tensorflow'"),
])
def test_backends_without_a_cpu_backend_refused(ctx, backends, match):
    ds = ctx.load("memory", data=DATA)
    with pytest.raises(UDFError, match=match) as info:
        ctx.run_udf(ds, SumUDF(), backends=backends)
    assert "\n" not in str(info.value)


def test_udf_without_numpy_backend_refused(ctx):
    class CupyOnly(SumUDF):
        def get_backends(self):
            return ("cupy",)

    ds = ctx.load("memory", data=DATA)
    with pytest.raises(UDFError, match=r"CupyOnly.get_backends\(\) returned \['cupy'\], but udfkit "
                                       r"runs UDFs on the CPU .*backends= limits the run to \['numpy'\]"):
        ctx.run_udf(ds, CupyOnly(), backends=("numpy",))


@pytest.mark.parametrize("backends, expected", [(("scipy.sparse.csr_matrix",), "scipy.sparse.csr_matrix"),
                                                (("numpy",), "numpy"),
                                                (("sparse.COO", "numpy"), "numpy")])
def test_backends_limit_what_the_udf_gets(ctx, backends, expected):
    """LiberTEM's meaning: ``backends=`` restricts the run to a subset of what the UDF supports
    (SumUDF lists CSR first, then numpy); the plan shows the choice and the result is the same."""
    ds = ctx.load("memory", data=DATA)
    plan = ctx.plan(ds, SumUDF(), backends=backends)
    assert plan.udfs[0].array_backend == expected
    res = ctx.run_udf(ds, SumUDF(), backends=backends)
    np.testing.assert_allclose(res["intensity"].data, DATA.sum(axis=(0, 1), dtype=np.float64))


def test_run_udf_positional_like_libertem(ctx):
    ds = ctx.load("memory", data=DATA)
    res = ctx.run_udf(ds, SumSigUDF(), (2, 3), None, False, ("numpy",), None, True)
    np.testing.assert_allclose(res["intensity"].raw_data, [DATA[2, 3].sum(dtype=np.float64)])


def test_run_udf_sync_false_is_awaitable(ctx):
    ds = ctx.load("memory", data=DATA, num_partitions=3)
    roi = np.zeros((4, 5), bool)
    roi[1:3] = True

    async def main():
        one = await ctx.run_udf(ds, SumSigUDF(), roi=roi, sync=False)
        both = await ctx.run_udf(dataset=ds, udf=[SumUDF(), SumSigUDF()], sync=False)
        return one, both

    one, (s, ss) = asyncio.run(main())
    np.testing.assert_allclose(one["intensity"].raw_data,
                               DATA[1:3].sum(axis=(2, 3), dtype=np.float64).reshape(-1))
    np.testing.assert_allclose(s["intensity"].data, DATA.sum(axis=(0, 1), dtype=np.float64))
    np.testing.assert_allclose(ss["intensity"].data, DATA.sum(axis=(2, 3), dtype=np.float64))


def test_run_udf_iter_async(ctx):
    ds = ctx.load("memory", data=DATA, num_partitions=4)

    async def main():
        parts = []
        async for part in ctx.run_udf_iter(ds, [SumUDF(), SumSigUDF()], sync=False):
            parts.append(part)
        return parts

    parts = asyncio.run(main())
    assert len(parts) == 4 and parts[-1].complete and not any(p.complete for p in parts[:-1])
    done = [p.frames_done for p in parts]
    assert done == sorted(done) and done[-1] == 20
    np.testing.assert_allclose(parts[-1].buffers[0]["intensity"].data,
                               DATA.sum(axis=(0, 1), dtype=np.float64))
    # a partial result covers exactly the frames merged so far
    first = parts[0].buffers[1]["intensity"]
    valid = first.valid_mask
    assert 0 < valid.sum() < 20
    np.testing.assert_allclose(first.data[valid], DATA.sum(axis=(2, 3), dtype=np.float64)[valid])


def test_run_udf_iter_async_aclose_stops(ctx):
    ds = ctx.load("memory", data=DATA, num_partitions=4)

    async def main():
        it = ctx.run_udf_iter(ds, SumUDF(), sync=False)
        first = await it.__anext__()
        await it.aclose()
        return first

    first = asyncio.run(main())
    assert not first.complete
    _sums_equal(ctx)  # the Context is usable afterwards


def test_export_dataset_libertem_call(ctx, tmp_path):
    ds = ctx.load("memory", data=DATA)
    ctx.export_dataset(ds, path=tmp_path / "out.npy")
    np.testing.assert_array_equal(np.load(tmp_path / "out.npy"), DATA)
    with pytest.raises(FileExistsError):
        ctx.export_dataset(ds, path=tmp_path / "out.npy")
    ctx.export_dataset(ds, path=tmp_path / "out.npy", overwrite=True, progress=False)


# -- analyses -------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def ds(ctx):
    return ctx.load("memory", data=DATA, num_partitions=3)


def test_sum_analysis(ctx, ds):
    res = ctx.run(ctx.create_sum_analysis(dataset=ds))
    assert res.keys() == ["intensity", "intensity_lin"]
    np.testing.assert_allclose(res.intensity.raw_data, DATA.sum(axis=(0, 1), dtype=np.float64))
    np.testing.assert_allclose(np.asarray(res["intensity_lin"]), DATA.sum(axis=(0, 1), dtype=np.float64))
    assert res.intensity.visualized.shape == (8, 9, 4)


def test_sum_analysis_with_roi(ctx, ds):
    roi = ds.roi[1:3, 2]
    res = ctx.run(ctx.create_sum_analysis(dataset=ds), roi=roi)
    np.testing.assert_allclose(res.intensity.raw_data, DATA[1:3, 2].sum(axis=0, dtype=np.float64))


def test_complex_sum_analysis_keys(ctx):
    data = (DATA + 1j * DATA[:, :, ::-1]).astype(np.complex64)
    res = ctx.run(ctx.create_sum_analysis(dataset=ctx.load("memory", data=data)))
    assert res.keys() == ["intensity_lin", "intensity", "intensity_real", "intensity_imag",
                          "intensity_angle", "intensity_complex"]
    want = data.astype(np.complex128).sum(axis=(0, 1))
    np.testing.assert_allclose(res.intensity_complex.raw_data, want)
    np.testing.assert_allclose(res.intensity.raw_data, np.abs(want))


@pytest.mark.parametrize("nav, kwargs, index", [
    ((4, 5), {"x": 3, "y": 2}, (2, 3)),
    ((20,), {"x": 7}, (7,)),
    ((2, 2, 5), {"x": 4, "y": 1, "z": 1}, (1, 1, 4)),
])
def test_pick_analysis(ctx, nav, kwargs, index):
    data = DATA.reshape(nav + (8, 9))
    res = ctx.run(ctx.create_pick_analysis(dataset=ctx.load("memory", data=data), **kwargs))
    assert res.keys() == ["intensity", "intensity_lin"]
    np.testing.assert_array_equal(res.intensity.raw_data, data[index])


@pytest.mark.parametrize("kwargs, match", [
    ({"x": 3}, r"a data set with 2 nav dimensions needs y, x \(and no other\), got z=None, y=None, x=3"),
    ({"x": 3, "y": 1, "z": 0}, "needs y, x"),
    ({"x": 9, "y": 1}, r"x=9 is outside the nav shape \(4, 5\)"),
])
def test_pick_analysis_bad_coordinates(ctx, ds, kwargs, match):
    with pytest.raises(UDFError, match=match):
        ctx.run(ctx.create_pick_analysis(dataset=ds, **kwargs))


def test_disk_ring_point_analyses(ctx, ds):
    frames = DATA.astype(np.float64)
    disk = ctx.run(ctx.create_disk_analysis(dataset=ds, cx=4, cy=3, r=2.5))
    assert disk.keys() == ["intensity", "intensity_log"]
    m = udfkit_masks.circular(centerX=4, centerY=3, imageSizeX=9, imageSizeY=8, radius=2.5)
    np.testing.assert_allclose(disk.intensity.raw_data, (frames * m).sum(axis=(2, 3)), rtol=1e-6)

    ring = ctx.run(ctx.create_ring_analysis(dataset=ds, cx=4, cy=4, ri=1, ro=3))
    m = udfkit_masks.ring(centerX=4, centerY=4, imageSizeX=9, imageSizeY=8, radius=3, radius_inner=1)
    np.testing.assert_allclose(ring.intensity.raw_data, (frames * m).sum(axis=(2, 3)), rtol=1e-6)

    point = ctx.run(ctx.create_point_analysis(dataset=ds, x=6, y=1))
    np.testing.assert_allclose(point.intensity.raw_data, frames[:, :, 1, 6])


def test_mask_analysis_defaults_like_libertem(ctx, ds):
    """Defaults: disk at the centre with r = 0.15 * min side, ring ro = min side / 2, ri = 0.8 ro."""
    frames = DATA.astype(np.float64)
    disk = ctx.create_disk_analysis(dataset=ds)
    assert (disk.parameters["cx"], disk.parameters["cy"], disk.parameters["r"]) == (4.5, 4.0, 1.2)
    ring = ctx.create_ring_analysis(dataset=ds, ro=3)
    assert ring.parameters["ri"] == pytest.approx(2.4)
    masks_res = ctx.run(ctx.create_mask_analysis(
        factories=[lambda: np.ones((8, 9)), lambda: np.eye(8, 9)], dataset=ds))
    assert masks_res.keys() == ["mask_0", "mask_1"]
    assert [r.title for r in masks_res] == ["mask 0", "mask 1"]
    np.testing.assert_allclose(masks_res.mask_0.raw_data, frames.sum(axis=(2, 3)), rtol=1e-6)
    np.testing.assert_allclose(masks_res[1].raw_data, (frames * np.eye(8, 9)).sum(axis=(2, 3)),
                               rtol=1e-6)


def test_run_refuses_a_udf(ctx, ds):
    with pytest.raises(UDFError, match=r"ctx.run: expected an analysis .* ctx.run_udf"):
        ctx.run(SumUDF())


def test_analysis_needs_2d_signal(ctx):
    ds1 = ctx.load("memory", data=DATA.reshape(4, 5, 72), sig_dims=1)
    with pytest.raises(UDFError, match=r"create_disk_analysis: needs two signal dimensions"):
        ctx.create_disk_analysis(dataset=ds1)


def _numpy_com(data, cy, cx, r=np.inf):
    """Shifts (y, x) of every frame's centre of mass from (cy, cx), pixels within r."""
    ny, nx = data.shape[-2:]
    yy, xx = np.mgrid[:ny, :nx]
    inside = (yy - cy) ** 2 + (xx - cx) ** 2 <= r ** 2
    w = data.astype(np.float64) * inside
    total = w.sum(axis=(-2, -1))
    return (w * yy).sum(axis=(-2, -1)) / total - cy, (w * xx).sum(axis=(-2, -1)) / total - cx


@pytest.mark.parametrize("kwargs", [{}, {"cx": 4, "cy": 3, "mask_radius": 3.5},
                                    {"cx": 4.5, "cy": 4, "flip_y": True}])
def test_com_analysis_equals_numpy(ctx, ds, kwargs):
    res = ctx.run(ctx.create_com_analysis(dataset=ds, **kwargs))
    assert res.keys() == ["field", "magnitude", "divergence", "curl", "x", "y"]
    cy, cx = kwargs.get("cy", 4.0), kwargs.get("cx", 4.5)  # defaults: frame centre, as LiberTEM
    dy, dx = _numpy_com(DATA, cy, cx, kwargs.get("mask_radius", np.inf))
    if kwargs.get("flip_y"):
        dy = -dy
    np.testing.assert_allclose(res.x.raw_data, dx, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(res.y.raw_data, dy, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(res.magnitude.raw_data, np.hypot(dy, dx), rtol=1e-5, atol=1e-5)
    want_div = np.gradient(dy, axis=0) + np.gradient(dx, axis=1)
    np.testing.assert_allclose(res.divergence.raw_data, want_div, rtol=1e-4, atol=1e-4)
    x, y = res.field.raw_data
    np.testing.assert_array_equal(x, res.x.raw_data)
    assert res.field.visualized.shape == (4, 5, 3)


def test_com_analysis_is_comudf(ctx, ds):
    """Ring and rotation: the same numbers as CoMUDF with LiberTEM's parameter mapping."""
    from udfkit.udf import CoMUDF

    res = ctx.run(ctx.create_com_analysis(dataset=ds, cx=4, cy=4, mask_radius=4,
                                          mask_radius_inner=1.5, scan_rotation=30.0))
    udf = CoMUDF.with_params(cy=4, cx=4, r=4, ri=1.5, scan_rotation=30.0)
    direct = ctx.run_udf(ds, udf)
    np.testing.assert_array_equal(res.x.raw_data, direct["field_x"].data)
    np.testing.assert_array_equal(res.curl.raw_data, direct["curl"].data)


def test_com_analysis_refusals(ctx, ds):
    with pytest.raises(UDFError, match="mask_radius_inner needs mask_radius"):
        ctx.create_com_analysis(dataset=ds, mask_radius_inner=1)
    ds3 = ctx.load("memory", data=DATA.reshape(20, 8, 9), sig_dims=2)
    with pytest.raises(UDFError, match=r"needs two nav and two signal dimensions.*nav shape \(20,\)"):
        ctx.create_com_analysis(dataset=ds3)


# -- LiberTEM's executor classes ------------------------------------------------------------

def test_libertem_executor_classes():
    from udfkit.executor.concurrent import ConcurrentJobExecutor
    from udfkit.executor.inline import InlineJobExecutor

    for executor in (InlineJobExecutor(), InlineJobExecutor(debug=True),
                     ConcurrentJobExecutor.make_local(n_threads=2)):
        with Context(executor=executor) as c:
            _sums_equal(c)
    assert InlineJobExecutor(inline_threads=2).threads == 2
    with pytest.raises(ExecutorSpecError, match="inline_threads: expected an integer"):
        InlineJobExecutor(inline_threads=0)
    with pytest.raises(ExecutorSpecError, match="main_process_gpu=0 is not offered"):
        ConcurrentJobExecutor.make_local(main_process_gpu=0)


@pytest.mark.slow
def test_dask_job_executor_make_local():
    from udfkit.executor.dask import DaskJobExecutor

    with Context(executor=DaskJobExecutor.make_local(cluster_kwargs={"n_workers": 1})) as c:
        assert c.executor.num_workers == 1
        _sums_equal(c)


def test_dask_job_executor_refusals():
    from udfkit.executor.dask import DaskJobExecutor

    with pytest.raises(ExecutorSpecError, match=r"spec= is not offered; use Context.make_with\('dask'"):
        DaskJobExecutor.make_local(spec={"cpus": 2})
    with pytest.raises(ExecutorSpecError, match=r"cluster_kwargs \['memory_limit'\] are not offered"):
        DaskJobExecutor.make_local(cluster_kwargs={"memory_limit": "1G"})


def test_display_lists_buffers_without_reading(ctx, ds):
    from udfkit.udf import PickUDF, StdDevUDF

    info = ctx.display(ds, StdDevUDF())
    text = str(info)
    assert text.splitlines()[0] == "StdDevUDF"
    assert "std: kind=sig extra_shape=() shape=(8, 9)" in text
    html = info._repr_html_()
    assert "<table>" in html and "<td>std</td>" in html
    # shapes that depend on the ROI come out for that ROI
    assert "shape=(2, 8, 9)" in str(ctx.display(ds, PickUDF(), roi=[(0, 0), (1, 1)]))


def test_udfs_as_any_iterable(ctx, ds):
    """LiberTEM takes any iterable of UDFs and returns one result dict per UDF."""
    res = ctx.run_udf(ds, (u for u in [SumUDF(), SumSigUDF()]))
    assert len(res) == 2
    np.testing.assert_allclose(res[1]["intensity"].data, DATA.sum(axis=(2, 3), dtype=np.float64))


def test_libertem_progress_reporter(ctx, ds):
    from udfkit.common.progress import ProgressReporter, ProgressState

    class Recorder(ProgressReporter):
        def __init__(self):
            self.calls = []

        def start(self, state):
            self.calls.append(("start", state))

        def update(self, state):
            self.calls.append(("update", state))

        def end(self, state):
            self.calls.append(("end", state))

    rec = Recorder()
    ctx.run_udf(ds, SumUDF(), progress=rec)
    kinds = [k for k, _ in rec.calls]
    assert kinds[0] == "start" and kinds[-1] == "end" and "update" in kinds
    assert all(isinstance(s, ProgressState) and s.num_frames_total == 20 for _, s in rec.calls)
    done = [s.num_frames_complete for _, s in rec.calls]
    assert done == sorted(done) and done[0] == 0 and done[-1] == 20
    assert len({s.progress_id for _, s in rec.calls}) == 1


# -- LiberTEM's examples/basic.py, ported -----------------------------------------------------

FIXTURES = Path(__file__).resolve().parents[1] / ".." / "shared" / "fixtures"


@pytest.mark.parametrize("make", ["inline", pytest.param("cpus", marks=pytest.mark.slow)])
def test_libertem_basic_example_ported(make):
    """LiberTEM's examples/basic.py with ``libertem`` replaced by ``udfkit`` (and a real Merlin
    file whose header needs nav_shape): ``make_with(cpus=N)``, ``ctx.load('mib', path=...)``,
    ``create_disk_analysis``, ``ctx.run(..., progress=True)``; numbers against numpy on the
    frames read by rosettasciio."""
    import udfkit.api as lt

    path = FIXTURES / "mib" / "001_4x2_6bit.mib"
    if not path.is_file():
        pytest.fail(f"sample file {path} is missing: the real files live in ../shared/fixtures "
                    "next to the repository (see its README.md)")
    from rsciio.quantumdetector import load_mib_data

    frames = np.asarray(load_mib_data(str(path), return_headers=False), dtype=np.float64)
    frames = frames.reshape(4, 2, 256, 256)
    context = lt.Context.make_with(cpus=2) if make == "cpus" else lt.Context.make_with("inline")
    with context as ctx:
        ds = ctx.load('mib', path=str(path), nav_shape=(4, 2))
        disk_sum_analysis = ctx.create_disk_analysis(ds, cx=32, cy=32, r=8)
        disk_sum_result = ctx.run(disk_sum_analysis, progress=False)
    disk = udfkit_masks.circular(centerX=32, centerY=32, imageSizeX=256, imageSizeY=256, radius=8)
    np.testing.assert_allclose(disk_sum_result.intensity.raw_data, (frames * disk).sum(axis=(2, 3)))
    # LiberTEM 0.16 gives 4113 for the whole image (benchmarks/compare_libertem.py style check)
    assert disk_sum_result.intensity.raw_data.sum() == 4113
