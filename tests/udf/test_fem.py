"""FEMUDF: the standard deviation of a ring of pixels of every frame, against numpy."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from udfkit import Context
from udfkit.errors import UDFError
from udfkit.testing import ALL_EXECUTORS, SharedContexts
from udfkit.testing.physics import assert_nav_full, full_frames, physics_cases, ref_fem
from udfkit.testing.profiles import examples
from udfkit.testing.strategies import load
from udfkit.udf import FEMUDF
from udfkit.udf.FEM import run_fem

SETTINGS = dict(deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                        HealthCheck.data_too_large])
FAST = ["inline", "inline-debug", "threads"]
shared_context = SharedContexts({k: ALL_EXECUTORS[k] for k in FAST})
_close_shared_contexts = shared_context.closing_fixture()


@st.composite
def rings(draw, sig_shape):
    """A ring that holds at least one pixel of the frame: the pixel ``(py, px)``."""
    h, w = sig_shape
    center = (draw(st.integers(-4, 4 * h + 4)) / 4, draw(st.integers(-4, 4 * w + 4)) / 4)
    py, px = draw(st.integers(0, h - 1)), draw(st.integers(0, w - 1))
    d = float(np.hypot(py - center[0], px - center[1]))
    rad_in = d * draw(st.integers(0, 3)) / 4
    # a pixel at the centre is in no ring; then its neighbours at distance 1 are
    rad_out = max(d, 1.0) + draw(st.integers(0, 8)) / 4
    return center, rad_in, rad_out


@settings(max_examples=examples(20), **SETTINGS)
@given(case=physics_cases(), data=st.data(), executor=st.sampled_from(FAST))
def test_fem_equals_numpy(case, data, executor, tmp_path_factory):
    center, rad_in, rad_out = data.draw(rings(case.sig_shape))
    ctx = shared_context(executor)
    ds = load(ctx, case, tmp_path_factory.mktemp("fem"))
    res = ctx.run_udf(dataset=ds, udf=FEMUDF(center=center, rad_in=rad_in, rad_out=rad_out),
                      roi=case.roi)
    assert res["intensity"].data.dtype == np.float32
    assert_nav_full(res["intensity"], ref_fem(full_frames(case), center, rad_in, rad_out), case,
                    rtol=1e-6, atol=1e-5)


@pytest.mark.parametrize("executor", FAST)
def test_center_is_y_x(executor):
    """The first value of ``center`` is the row, as in LiberTEM's code."""
    data = np.zeros((1, 2, 20, 20), dtype="float32")
    data[0, 0, 3, :] = np.arange(20)   # a graded row 3
    data[0, 1, :, 3] = np.arange(20)   # a graded column 3
    ctx = shared_context(executor)
    res = ctx.run_udf(dataset=ctx.load("memory", data=data), udf=FEMUDF(center=(3, 15), rad_in=0, rad_out=2))
    yy, xx = np.indices((20, 20))
    d2 = (yy - 3) ** 2 + (xx - 15) ** 2
    ring = (d2 > 0) & (d2 <= 4)
    np.testing.assert_allclose(res["intensity"].data[0], data[0][:, ring].std(axis=-1), rtol=1e-6)
    assert res["intensity"].data[0, 0] > 0 and res["intensity"].data[0, 1] == 0


def test_run_fem_with_roi():
    data = np.random.default_rng(0).poisson(6, (4, 4, 16, 16)).astype("uint16")
    roi = np.zeros((4, 4), bool)
    roi[1:3, 1:] = True
    ctx = Context.make_with("inline")
    res = run_fem(ctx, ctx.load("memory", data=data), center=(8, 7.5), rad_in=3, rad_out=6.5, roi=roi)
    expected = ref_fem(data.astype(float), (8, 7.5), 3, 6.5)
    np.testing.assert_allclose(res["intensity"].data[roi], expected[roi], rtol=1e-6)
    assert np.isnan(res["intensity"].data[~roi]).all()


@pytest.mark.parametrize(("kwargs", "match"), [
    (dict(center=(8, 8), rad_in=6, rad_out=4), "rad_in .* must be less than rad_out"),
    (dict(center=(8, 8), rad_in=4, rad_out=4), "rad_in .* must be less than rad_out"),
    (dict(center=8, rad_in=1, rad_out=4), r"center must be a pair \(y, x\)"),
    (dict(center=(8, 8, 1), rad_in=1, rad_out=4), r"center must be a pair \(y, x\)"),
    (dict(center=(8, None), rad_in=1, rad_out=4), r"center\[1\] must be a real number"),
    (dict(center=(8, 8), rad_in=-1, rad_out=4), "rad_in must be >= 0"),
    (dict(center=(8, 8), rad_in=1), "rad_out must be a real number"),
])
def test_bad_parameters(kwargs, match):
    with pytest.raises(UDFError, match=match):
        FEMUDF(**kwargs)


def test_ring_outside_the_frame_and_bad_data_sets():
    ctx = Context.make_with("inline")
    ds = ctx.load("memory", data=np.ones((2, 2, 8, 8)))
    with pytest.raises(UDFError, match=r"holds no pixel of the \(8, 8\) frame"):
        ctx.run_udf(dataset=ds, udf=FEMUDF(center=(40, 40), rad_in=1, rad_out=3))
    ds3 = ctx.load("memory", data=np.ones((2, 4, 8, 8)), sig_dims=3)
    with pytest.raises(UDFError, match=r"needs 2D frames.*\(4, 8, 8\)"):
        ctx.run_udf(dataset=ds3, udf=FEMUDF(center=(4, 4), rad_in=1, rad_out=3))
    dsc = ctx.load("memory", data=np.ones((2, 2, 8, 8), dtype="complex128"))
    with pytest.raises(UDFError, match="needs real data"):
        ctx.run_udf(dataset=dsc, udf=FEMUDF(center=(4, 4), rad_in=1, rad_out=3))
