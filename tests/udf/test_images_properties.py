"""Property tests of Thunder's image operations (``GaussianFilterUDF``, ``UniformFilterUDF``,
``MedianFilterUDF``, ``SubsampleUDF``, ``BinUDF``, ``MaxProjectionUDF``,
``MaxMinProjectionUDF``, ``LocalCorrUDF``): whatever the stored dtype, nav / sig shapes
(1-D to 3-D frames), format, ``sync_offset``, partitioning, forced tile shape, ROI and
executor, each result equals the same operation written with numpy/scipy one frame at a time
(``_images_ref``) on the whole array."""

from __future__ import annotations

import tempfile

import numpy as np
import pytest
from _images_ref import binned, filtered, localcorr, subsample
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from udfkit import Context
from udfkit.errors import UDFParameterError
from udfkit.testing import ALL_EXECUTORS, SharedContexts
from udfkit.testing.profiles import examples
from udfkit.testing.strategies import (
    ALL_DTYPES,
    REAL_DTYPES,
    BCase,
    assert_nav_rows,
    cases,
    expected_input_dtype,
    load,
)
from udfkit.udf import (
    BinUDF,
    GaussianFilterUDF,
    LocalCorrUDF,
    MaxMinProjectionUDF,
    MaxProjectionUDF,
    MedianFilterUDF,
    SubsampleUDF,
    UniformFilterUDF,
)

SETTINGS = dict(deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                        HealthCheck.data_too_large])
# dask runs in its own cluster-marked case below
EXECUTORS = {k: v for k, v in ALL_EXECUTORS.items() if k != "dask"}
shared_context = SharedContexts(ALL_EXECUTORS)
_close_shared_contexts = shared_context.closing_fixture()

KINDS = ["gaussian", "uniform", "median", "subsample", "bin", "max", "maxmin", "localcorr"]
#: kinds that take complex data
COMPLEX_OK = {"gaussian", "uniform", "subsample", "bin"}
MODES = ["reflect", "constant", "nearest", "mirror", "wrap"]


def per_axis(elements, dims):
    return st.one_of(elements, st.lists(elements, min_size=dims, max_size=dims).map(tuple))


@st.composite
def image_ops(draw, dims, kinds=KINDS):
    """A kind and its parameters for frames with ``dims`` signal axes."""
    kind = draw(st.sampled_from(kinds))
    if kind == "gaussian":
        params = dict(sigma=draw(per_axis(st.sampled_from([0, 0.5, 1, 1.5, 2.0]), dims)),
                      order=draw(st.one_of(st.just(0), per_axis(st.integers(0, 2), dims))),
                      mode=draw(st.sampled_from(MODES)), cval=draw(st.sampled_from([0.0, 2.5])))
    elif kind in ("uniform", "median"):
        params = dict(size=draw(per_axis(st.integers(0, 4), dims)),
                      mode=draw(st.sampled_from(MODES)), cval=draw(st.sampled_from([0.0, 2.5])))
    elif kind == "subsample":
        params = dict(factor=draw(per_axis(st.integers(1, 4), dims)))
    elif kind == "bin":
        params = dict(factor=draw(per_axis(st.integers(1, 4), dims)),
                      reduce=draw(st.sampled_from(["sum", "mean"])),
                      edge=draw(st.sampled_from(["trim", "partial"])))
    elif kind in ("max", "maxmin"):
        params = dict(axis=draw(st.integers(-dims, dims - 1)))
    else:
        params = dict(size=draw(per_axis(st.integers(0, 4), dims)),
                      mode=draw(st.sampled_from(MODES)))
    return kind, params


UDFS = {"gaussian": GaussianFilterUDF, "uniform": UniformFilterUDF, "median": MedianFilterUDF,
        "subsample": SubsampleUDF, "bin": BinUDF, "max": MaxProjectionUDF,
        "maxmin": MaxMinProjectionUDF, "localcorr": LocalCorrUDF}


def make_udf(kind, params):
    return UDFS[kind](**params)


def bin_dtype(native, reduce):
    if reduce == "mean":
        return np.result_type(native, np.float32)
    if native.kind in "iub":
        return np.dtype(np.uint64 if native == np.uint64 else np.int64)
    return native


def bin_fits(case, params) -> bool:
    f = params["factor"]
    f = f if isinstance(f, tuple) else (f,) * len(case.sig_shape)
    return params["edge"] == "partial" or all(s <= n for s, n in zip(f, case.sig_shape))


def check(kind, params, res, case: BCase):
    """``res`` (the UDF's results) equals the reference of ``kind`` on ``case``."""
    native = case.native_dtype
    if kind == "localcorr":
        got = res["localcorr"].data
        want = localcorr(case.frames, params["size"], params.get("mode", "reflect"))
        assert got.shape == case.sig_shape and got.dtype == np.float64
        assert int(res["num_frames"].data[0]) == case.n
        np.testing.assert_array_equal(np.isnan(got), np.isnan(want))
        np.testing.assert_allclose(got, want, rtol=1e-9, atol=1e-9)
        return
    r = res["intensity"]
    if kind in ("gaussian", "uniform", "median"):
        in_dt = expected_input_dtype(case, [np.float32])
        want = filtered(kind, case.native_frames.astype(in_dt), params)
        assert r.data.dtype == in_dt
        tol = 1e-5 if in_dt in (np.float32, np.complex64) else 1e-12
        scale = float(np.abs(case.frames).max()) if case.n else 1.0
        assert_nav_rows(r, want, case, rtol=tol, atol=tol * (scale + abs(params.get("cval", 0.0)) + 1),
                        exact=kind == "median")
    elif kind == "subsample":
        assert r.data.dtype == native
        assert_nav_rows(r, subsample(case.native_frames, params["factor"]), case, exact=True)
    elif kind == "bin":
        want = binned(case.frames, params["factor"], params["reduce"], params["edge"])
        assert r.data.dtype == bin_dtype(native, params["reduce"])
        # the data are small integers (quarter steps): sums are exact, means round once
        exact = params["reduce"] == "sum"
        assert_nav_rows(r, want, case, rtol=1e-6, exact=exact)
    elif kind == "max":
        assert r.data.dtype == native
        want = case.native_frames.max(axis=1 + params["axis"] % len(case.sig_shape))
        assert_nav_rows(r, want, case, exact=True)
    elif kind == "maxmin":
        axis = 1 + params["axis"] % len(case.sig_shape)
        want = case.frames.max(axis=axis) + case.frames.min(axis=axis)
        assert r.data.dtype == (np.result_type(native, np.int64) if native.kind in "iub" else native)
        assert_nav_rows(r, want, case, exact=True)


def run_and_check(ctx, case, kind, params, tmpdir):
    ds = load(ctx, case, tmpdir)
    udf = make_udf(kind, params)
    if kind == "bin" and not bin_fits(case, params):
        with pytest.raises(UDFParameterError, match=r"BinUDF: factor .* larger than the frame"):
            ctx.run_udf(dataset=ds, udf=udf, roi=case.roi)
        return
    res = ctx.run_udf(dataset=ds, udf=udf, roi=case.roi)
    check(kind, params, res, case)


@st.composite
def case_and_op(draw, kinds=KINDS, formats=("memory", "raw", "npy")):
    kind_hint = draw(st.sampled_from(kinds))
    dtypes = ALL_DTYPES if kind_hint in COMPLEX_OK else REAL_DTYPES
    case = draw(cases(dtypes=dtypes, formats=list(formats), max_nav=5, max_sig=8))
    kind, params = draw(image_ops(len(case.sig_shape), kinds=[kind_hint]))
    return case, kind, params


@settings(max_examples=examples(20), **SETTINGS)
@given(drawn=case_and_op(), executor=st.sampled_from(sorted(EXECUTORS)))
def test_image_ops_equal_numpy(drawn, executor):
    case, kind, params = drawn
    with tempfile.TemporaryDirectory() as tmpdir:
        run_and_check(shared_context(executor), case, kind, params, tmpdir)


@pytest.mark.slow
@settings(max_examples=examples(300), **SETTINGS)
@given(drawn=case_and_op(), executor=st.sampled_from(sorted(EXECUTORS)))
def test_image_ops_equal_numpy_many(drawn, executor):
    """The long run of :func:`test_image_ops_equal_numpy` (``-m slow``)."""
    case, kind, params = drawn
    with tempfile.TemporaryDirectory() as tmpdir:
        run_and_check(shared_context(executor), case, kind, params, tmpdir)


@settings(max_examples=examples(10), **SETTINGS)
@given(case=cases(dtypes=REAL_DTYPES, max_nav=5, max_sig=8), data=st.data())
def test_all_image_ops_in_one_pass(case, data):
    """Every image operation side by side in one run: each keeps its own input dtype and
    tiling preference, and each equals its reference."""
    dims = len(case.sig_shape)
    ops = [data.draw(image_ops(dims, kinds=[k])) for k in KINDS]
    ops = [(k, p) for k, p in ops if k != "bin" or bin_fits(case, p)]
    with tempfile.TemporaryDirectory() as tmpdir:
        ctx = shared_context("inline")
        ds = load(ctx, case, tmpdir)
        results = ctx.run_udf(dataset=ds, udf=[make_udf(k, p) for k, p in ops], roi=case.roi)
    for (kind, params), res in zip(ops, results):
        check(kind, params, res, case)


@pytest.mark.parametrize("executor", ["dask"])
def test_image_ops_on_dask(executor, tmp_path):
    """Every operation in one pass on a real dask cluster (``cluster``-marked)."""
    roi = np.random.default_rng(7).random((3, 4)) < 0.7
    case = BCase(nav_shape=(3, 4), sig_shape=(6, 7), dtype="uint16", image_count=12,
                 num_partitions=3, roi=roi, seed=3, fmt="raw")
    ctx = shared_context(executor)
    ops = [("gaussian", dict(sigma=1.0)), ("uniform", dict(size=3)), ("median", dict(size=2)),
           ("subsample", dict(factor=2)), ("bin", dict(factor=2, reduce="sum", edge="partial")),
           ("max", dict(axis=0)), ("maxmin", dict(axis=-1)), ("localcorr", dict(size=3))]
    ds = load(ctx, case, tmp_path)
    results = ctx.run_udf(dataset=ds, udf=[make_udf(k, p) for k, p in ops], roi=case.roi)
    for (kind, params), res in zip(ops, results):
        check(kind, params, res, case)


def test_localcorr_survives_a_large_offset():
    """Centred moments merged with Chan's formula: data of 1e6 + small noise keep their
    correlation, where sums of squares in float64 would lose it to cancellation."""
    rng = np.random.default_rng(5)
    base = rng.normal(size=(120, 6, 7))
    data = 1e6 + base
    ctx = shared_context("inline")
    ds = ctx.load("memory", data=data, num_partitions=7, tileshape=(5, 6, 7))
    got = ctx.run_udf(dataset=ds, udf=LocalCorrUDF(size=3))["localcorr"].data
    np.testing.assert_allclose(got, localcorr(base, 3), rtol=1e-7, atol=1e-7)
