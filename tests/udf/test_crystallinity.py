"""CrystallinityUDF: the Fourier amplitude summed over a ring of frequencies, against numpy."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from udfkit import Context
from udfkit.errors import UDFError
from udfkit.testing import ALL_EXECUTORS, SharedContexts
from udfkit.testing.physics import assert_nav_full, full_frames, physics_cases, ref_crystallinity
from udfkit.testing.profiles import examples
from udfkit.testing.strategies import load
from udfkit.udf import CrystallinityUDF
from udfkit.udf.crystallinity import run_analysis_crystall

SETTINGS = dict(deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                        HealthCheck.data_too_large])
FAST = ["inline", "inline-debug", "threads"]
shared_context = SharedContexts({k: ALL_EXECUTORS[k] for k in FAST})
_close_shared_contexts = shared_context.closing_fixture()


@st.composite
def params(draw, sig_shape):
    h, w = sig_shape
    rad_in = draw(st.integers(0, 2 * max(h, w))) / 4
    rad_out = rad_in + draw(st.integers(1, 2 * max(h, w))) / 4 + 0.5
    real_center = real_rad = None
    if draw(st.booleans()):
        real_center = (draw(st.integers(0, 4 * h)) / 4, draw(st.integers(0, 4 * w)) / 4)
        real_rad = draw(st.integers(0, 2 * max(h, w))) / 4
    elif draw(st.booleans()):
        real_rad = 2.0  # without real_center nothing is masked, as in LiberTEM
    return dict(rad_in=rad_in, rad_out=rad_out, real_center=real_center, real_rad=real_rad)


def ring_is_empty(sig_shape, rad_in, rad_out):
    """No frequency of the half spectrum lies in the ring (drawn as in ref_crystallinity)."""
    h, w = sig_shape
    yy, xx = np.indices(sig_shape)
    d2 = (yy - h / 2) ** 2 + (xx - w / 2) ** 2
    ring = (d2 <= rad_out ** 2) & (d2 > rad_in ** 2)
    return not np.fft.fftshift(ring)[:, : w // 2 + 1].any()


@settings(max_examples=examples(20), **SETTINGS)
@given(case=physics_cases(), data=st.data(), executor=st.sampled_from(FAST))
def test_crystallinity_equals_numpy(case, data, executor, tmp_path_factory):
    kw = data.draw(params(case.sig_shape))
    ctx = shared_context(executor)
    ds = load(ctx, case, tmp_path_factory.mktemp("cryst"))
    if ring_is_empty(case.sig_shape, kw["rad_in"], kw["rad_out"]):
        with pytest.raises(UDFError, match="holds no frequency"):
            ctx.run_udf(dataset=ds, udf=CrystallinityUDF(**kw), roi=case.roi)
        return
    res = ctx.run_udf(dataset=ds, udf=CrystallinityUDF(**kw), roi=case.roi)
    assert res["intensity"].data.dtype == np.float32
    expected = ref_crystallinity(full_frames(case), **kw)
    assert_nav_full(res["intensity"], expected, case, rtol=1e-6, atol=1e-6 * np.nanmax(expected, initial=1))


@pytest.mark.parametrize("shape", [(16, 16), (15, 17), (12, 9)])
def test_lattice_peak(shape):
    """A cosine lattice of frequency k puts amplitude h*w/2 at k and nothing elsewhere but 0."""
    h, w = shape
    yy, xx = np.indices(shape)
    lattice = 1 + np.cos(2 * np.pi * 3 * xx / w)   # 3 periods across the frame
    flat = np.ones(shape)
    data = np.stack([lattice, flat, 2 * lattice]).reshape(1, 3, h, w)
    ctx = Context.make_with("inline")
    # odd sizes sit half a pixel off zero frequency (k = 3 is drawn at 3.5): a wider ring there
    rad_in, rad_out = (2.6, 3.6) if w % 2 == 0 else (2.1, 4.1)
    res = ctx.run_udf(dataset=ctx.load("memory", data=data),
                      udf=CrystallinityUDF(rad_in=rad_in, rad_out=rad_out))
    # rfft2 keeps the positive frequency (3) only: amplitude h * w / 2
    np.testing.assert_allclose(res["intensity"].data[0], [h * w / 2, 0, h * w], rtol=1e-6, atol=1e-3)


def test_real_space_mask_removes_the_central_disk():
    yy, xx = np.indices((16, 16))
    frame = np.exp(-((yy - 8) ** 2 + (xx - 8) ** 2) / 4)   # a central beam only
    ctx = Context.make_with("inline")
    ds = ctx.load("memory", data=frame.reshape(1, 1, 16, 16))
    masked = run_analysis_crystall(ctx, ds, rad_in=0, rad_out=8, real_center=(8, 8), real_rad=6)
    unmasked = run_analysis_crystall(ctx, ds, rad_in=0, rad_out=8)
    # only the far tail of the beam, beyond radius 6, is left
    assert masked["intensity"].data[0, 0] < 0.01 * unmasked["intensity"].data[0, 0]
    np.testing.assert_allclose(masked["intensity"].data,
                               ref_crystallinity(frame[None, None], 0, 8, (8, 8), 6), rtol=1e-6)
    np.testing.assert_allclose(unmasked["intensity"].data, ref_crystallinity(frame[None, None], 0, 8),
                               rtol=1e-6)


@pytest.mark.parametrize("executor", FAST)
def test_with_roi(executor):
    data = np.random.default_rng(3).poisson(5, (5, 4, 10, 12)).astype("uint16")
    roi = np.random.default_rng(4).random((5, 4)) < 0.5
    ctx = shared_context(executor)
    res = ctx.run_udf(dataset=ctx.load("memory", data=data, num_partitions=3), roi=roi,
                      udf=CrystallinityUDF(rad_in=1, rad_out=4, real_center=(5, 6), real_rad=2))
    expected = ref_crystallinity(data.astype(float), 1, 4, (5, 6), 2)
    np.testing.assert_allclose(res["intensity"].data[roi], expected[roi], rtol=1e-6)
    assert np.isnan(res["intensity"].data[~roi]).all()


@pytest.mark.parametrize(("kwargs", "match"), [
    (dict(rad_in=4, rad_out=2), "rad_in .* must be less than rad_out"),
    (dict(rad_in=-1, rad_out=2), "rad_in must be >= 0"),
    (dict(rad_in=1, rad_out="3"), "rad_out must be a real number"),
    (dict(rad_in=1, rad_out=3, real_center=5, real_rad=2), r"real_center must be a pair \(y, x\)"),
    (dict(rad_in=1, rad_out=3, real_center=(5, 5), real_rad=-2), "real_rad must be >= 0"),
])
def test_bad_parameters(kwargs, match):
    with pytest.raises(UDFError, match=match):
        CrystallinityUDF(**kwargs)


def test_bad_data_sets():
    ctx = Context.make_with("inline")
    with pytest.raises(UDFError, match=r"holds no frequency of the spectrum of a \(8, 8\) frame"):
        ctx.run_udf(dataset=ctx.load("memory", data=np.ones((2, 2, 8, 8))),
                    udf=CrystallinityUDF(rad_in=20, rad_out=30))
    with pytest.raises(UDFError, match="needs real data"):
        ctx.run_udf(dataset=ctx.load("memory", data=np.ones((2, 2, 8, 8), dtype="complex64")),
                    udf=CrystallinityUDF(rad_in=1, rad_out=3))
    with pytest.raises(UDFError, match=r"needs 2D frames"):
        ctx.run_udf(dataset=ctx.load("memory", data=np.ones((2, 3, 8, 8)), sig_dims=3),
                    udf=CrystallinityUDF(rad_in=1, rad_out=3))
