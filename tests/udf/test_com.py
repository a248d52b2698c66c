"""CoMUDF against numpy: known centres, masks, flip / rotation, regression, divergence and curl.

The property test compares every result with :func:`udfkit.testing.physics.ref_com` (numpy on the whole
array) over drawn data sets, ROIs, partitionings, tile shapes and parameters; the explicit
tests build frames whose centres of mass are known exactly (a spot spread bilinearly over four
pixels has its centre of mass at the spot) and check the physics: a linear descan is recovered
by the regression, a rotated / flipped field comes back, an electrostatic field has no curl.
The last test runs all four physics UDFs in one pass on the processes and dask executors.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from udfkit import Context
from udfkit.errors import UDFError
from udfkit.testing import ALL_EXECUTORS, SharedContexts
from udfkit.testing.physics import (
    assert_nav_full,
    full_frames,
    physics_cases,
    ref_com,
    ref_crystallinity,
    ref_fem,
)
from udfkit.testing.profiles import examples
from udfkit.testing.strategies import BCase, load
from udfkit.udf import FEMUDF, AutoUDF, CoMUDF, CrystallinityUDF
from udfkit.udf.com import (
    CoMParams,
    RegressionOptions,
    apply_correction,
    com_masks_factory,
    coordinate_check,
    curl_2d,
    divergence,
    guess_corrections,
)

SETTINGS = dict(deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                        HealthCheck.data_too_large])
FAST = ["inline", "inline-debug", "threads"]
shared_context = SharedContexts(ALL_EXECUTORS)
_close_shared_contexts = shared_context.closing_fixture()

NAV_NAMES = ["raw_com", "raw_shifts", "field", "field_y", "field_x", "magnitude", "divergence",
             "curl"]


def spot_frames(centres, sig_shape, weight=100.0):
    """Frames with one spot each, spread bilinearly so that its centre of mass is ``centres``."""
    nav_shape = centres.shape[:-1]
    frames = np.zeros(nav_shape + tuple(sig_shape))
    for idx in np.ndindex(*nav_shape):
        cy, cx = centres[idx]
        y0, x0 = int(np.floor(cy)), int(np.floor(cx))
        fy, fx = cy - y0, cx - x0
        for dy, wy in ((0, 1 - fy), (1, fy)):
            for dx, wx in ((0, 1 - fx), (1, fx)):
                frames[idx + (y0 + dy, x0 + dx)] += weight * wy * wx
    return frames


def run(ctx, data, udf, roi=None, **load_kw):
    ds = ctx.load("memory", data=data, **load_kw)
    return ctx.run_udf(dataset=ds, udf=udf, roi=roi)


# -- against numpy, drawn ----------------------------------------------------------------------

@st.composite
def com_params(draw, sig_shape):
    h, w = sig_shape
    kw = {}
    if draw(st.booleans()):
        kw["cy"] = draw(st.floats(-1, h, allow_nan=False).map(lambda v: round(v, 2)))
        kw["cx"] = draw(st.floats(-1, w, allow_nan=False).map(lambda v: round(v, 2)))
    if draw(st.booleans()):
        kw["r"] = draw(st.floats(0.5, max(h, w), allow_nan=False))
        if draw(st.booleans()):
            kw["ri"] = draw(st.floats(0, kw["r"] * 0.9))
    kw["scan_rotation"] = draw(st.sampled_from([0.0, 0.0, 90.0, -33.5, 180.0, 271.0]))
    kw["flip_y"] = draw(st.booleans())
    kind = draw(st.sampled_from(["none", "mean", "matrix", "enum"]))
    if kind == "mean":
        kw["regression"] = 0
    elif kind == "matrix":
        kw["regression"] = np.array(draw(st.lists(st.floats(-2, 2), min_size=6, max_size=6))).reshape(3, 2)
    elif kind == "enum":
        kw["regression"] = RegressionOptions.NO_REGRESSION
    return kw


def check_com(res, case, kw, rtol=1e-5):
    expected = ref_com(full_frames(case), **kw)
    sig_scale = max(case.sig_shape)
    for name in NAV_NAMES:
        # float32 centres of mass: absolute error a few ulp of the frame size; gradients of
        # fields that are NaN-free agree to the same absolute tolerance
        assert_nav_full(res[name], expected[name], case, rtol=rtol, atol=rtol * sig_scale)
    np.testing.assert_allclose(res["regression"].data, expected["regression"], rtol=1e-6, atol=1e-6)
    assert res["regression"].data.shape == (3, 2) and res["regression"].data.dtype == np.float64


@pytest.mark.parametrize("executors", [
    pytest.param(FAST, id="fast"),
    # worker processes and a dask cluster in the slow run only: the cluster takes seconds to start
    pytest.param(["processes", "dask"], id="workers", marks=pytest.mark.slow)])
@settings(max_examples=examples(20), **SETTINGS)
@given(case=physics_cases(max_nav=9, max_sig=20), data=st.data())
def test_com_equals_numpy(executors, case, data, tmp_path_factory):
    kw = data.draw(com_params(case.sig_shape))
    ctx = shared_context(data.draw(st.sampled_from(executors), label="executor"))
    ds = load(ctx, case, tmp_path_factory.mktemp("com"))
    res = ctx.run_udf(dataset=ds, udf=CoMUDF.with_params(**kw), roi=case.roi)
    check_com(res, case, kw)


def test_result_names_shapes_kinds_dtypes():
    data = np.random.default_rng(0).poisson(3, (3, 4, 8, 10)).astype("uint16")
    res = run(Context.make_with("inline"), data, CoMUDF())
    assert list(res) == NAV_NAMES + ["regression"]
    for name in NAV_NAMES:
        assert res[name].kind == "nav"
        extra = (2,) if name in ("raw_com", "raw_shifts", "field") else ()
        assert res[name].data.shape == (3, 4) + extra
    assert res["regression"].kind == "single"
    # integer data arrive as float32: the centres are float32, the field float64
    assert res["raw_com"].data.dtype == res["raw_shifts"].data.dtype == np.float32
    assert all(res[n].data.dtype == np.float64 for n in NAV_NAMES[2:])
    res64 = run(Context.make_with("inline"), data.astype("float64"), CoMUDF())
    assert res64["raw_com"].data.dtype == np.float64


# -- known centres ------------------------------------------------------------------------------

@pytest.mark.parametrize("executor", FAST)
def test_known_centres_whole_frame(executor):
    rng = np.random.default_rng(1)
    centres = np.stack([rng.uniform(3, 12, (5, 6)), rng.uniform(2, 14, (5, 6))], axis=-1)
    data = spot_frames(centres, (16, 17)).astype("float32")
    res = run(shared_context(executor), data, CoMUDF(), num_partitions=3)
    np.testing.assert_allclose(res["raw_com"].data, centres, atol=2e-5)
    # default reference point: the frame centre (16 // 2, 17 // 2)
    np.testing.assert_allclose(res["raw_shifts"].data, centres - (8, 8), atol=2e-5)
    np.testing.assert_allclose(res["field"].data, centres - (8, 8), atol=2e-5)
    np.testing.assert_allclose(res["magnitude"].data, np.hypot(*(centres - 8).transpose(2, 0, 1)),
                               atol=3e-5)


def test_disk_leaves_out_what_lies_outside():
    rng = np.random.default_rng(2)
    centres = np.stack([rng.uniform(9, 11, (3, 4)), rng.uniform(8, 10, (3, 4))], axis=-1)
    data = spot_frames(centres, (20, 20))
    # bright pixels just outside the disk of radius 5 around (10, 9), none inside
    d = np.hypot(*np.indices((20, 20)) - np.array([10, 9])[:, None, None])
    outside = (d > 5) & (d <= 7)
    data[..., outside] += 1000 * rng.random((3, 4, outside.sum()))
    res = run(Context.make_with("inline"), data, CoMUDF.with_params(cy=10, cx=9, r=5))
    np.testing.assert_allclose(res["raw_com"].data, centres, atol=1e-9)
    np.testing.assert_allclose(res["raw_shifts"].data, centres - (10, 9), atol=1e-9)
    # a pixel at exactly the radius belongs to the disk
    edge = np.zeros((1, 1, 20, 20))
    edge[0, 0, 10, 14] = 1  # distance 5 from (10, 9)
    res = run(Context.make_with("inline"), edge, CoMUDF.with_params(cy=10, cx=9, r=5))
    np.testing.assert_array_equal(res["raw_com"].data[0, 0], (10, 14))


def test_ring_leaves_out_the_inner_disk():
    data = spot_frames(np.array([[[6.25, 11.5]]]), (16, 16))
    data[0, 0, 7:10, 7:10] += 500  # the central beam, inside ri
    res = run(Context.make_with("inline"), data, CoMUDF.with_params(cy=8, cx=8, r=6, ri=2.5))
    np.testing.assert_allclose(res["raw_com"].data[0, 0], (6.25, 11.5), atol=1e-9)
    whole = run(Context.make_with("inline"), data, CoMUDF.with_params(cy=8, cx=8, r=6))
    assert not np.allclose(whole["raw_com"].data[0, 0], (6.25, 11.5), atol=0.1)


def test_masks_are_libertem_masks():
    """The disk and gradient masks equal udfkit.masks (LiberTEM's factories)."""
    masks = pytest.importorskip("udfkit.masks")
    disk, gy, gx = (f() for f in com_masks_factory(13, 11, cy=5.5, cx=4.25, r=3.7))
    ref = masks.circular(centerX=4.25, centerY=5.5, imageSizeX=11, imageSizeY=13, radius=3.7)
    np.testing.assert_array_equal(disk, ref)
    np.testing.assert_array_equal(gy, masks.gradient_y(imageSizeX=11, imageSizeY=13) * ref)
    np.testing.assert_array_equal(gx, masks.gradient_x(imageSizeX=11, imageSizeY=13) * ref)


def test_selection_outside_the_frame_gives_the_reference_point():
    data = np.ones((2, 3, 8, 8), dtype="uint16")
    res = run(Context.make_with("inline"), data, CoMUDF.with_params(cy=20, cx=-7.5, r=3))
    np.testing.assert_array_equal(res["raw_com"].data, np.broadcast_to((20, -7.5), (2, 3, 2)))
    np.testing.assert_array_equal(res["field"].data, 0)


def test_zero_frames_have_zero_shift():
    data = np.zeros((2, 2, 8, 8), dtype="uint16")
    data[1, 1, 2, 3] = 5
    res = run(Context.make_with("inline"), data, CoMUDF.with_params(cy=4.5, cx=3.5))
    np.testing.assert_array_equal(res["raw_com"].data[0, 0], (4.5, 3.5))
    np.testing.assert_array_equal(res["raw_shifts"].data[0, 0], (0, 0))
    np.testing.assert_array_equal(res["raw_com"].data[1, 1], (2, 3))


# -- flip_y and scan_rotation ------------------------------------------------------------------

@pytest.mark.parametrize(("rotation", "flip_y", "shift", "expected"), [
    (0, False, (1, 0), (1, 0)),
    (90, False, (0, 1), (1, 0)),      # clockwise as shown (y down): +x turns to +y
    (-90, False, (0, 1), (-1, 0)),
    (180, False, (1, 2), (-1, -2)),
    (0, True, (1, 2), (-1, 2)),       # the y component changes sign
    (90, True, (1, 0), (0, 1)),       # flip first: (-1, 0), then rotate
])
def test_flip_and_rotation(rotation, flip_y, shift, expected):
    centre = np.array([8.0, 8.0])
    data = spot_frames(np.broadcast_to(centre + shift, (2, 3, 2)).copy(), (16, 16))
    res = run(Context.make_with("inline"), data,
              CoMUDF.with_params(cy=8, cx=8, scan_rotation=rotation, flip_y=flip_y))
    np.testing.assert_allclose(res["raw_shifts"].data, np.broadcast_to(shift, (2, 3, 2)), atol=1e-12)
    np.testing.assert_allclose(res["field"].data, np.broadcast_to(expected, (2, 3, 2)), atol=1e-12)
    np.testing.assert_allclose(res["field_y"].data, expected[0], atol=1e-12)
    np.testing.assert_allclose(res["field_x"].data, expected[1], atol=1e-12)


@pytest.mark.parametrize("flip_y", [False, True])
@pytest.mark.parametrize("rotation", [0, 17.5, -120, 359])
def test_apply_correction_backward_inverts_forward(rotation, flip_y):
    rng = np.random.default_rng(3)
    y, x = rng.normal(size=(2, 4, 5))
    fy, fx = apply_correction(y, x, scan_rotation=rotation, flip_y=flip_y)
    np.testing.assert_allclose(np.hypot(fy, fx), np.hypot(y, x))
    by, bx = apply_correction(fy, fx, scan_rotation=rotation, flip_y=flip_y, forward=False)
    np.testing.assert_allclose((by, bx), (y, x), atol=1e-12)


# -- regression: descan and centre offset ------------------------------------------------------

DESCAN = np.array([[7.5, 8.25],      # offset (y, x) of the pattern at scan position (0, 0)
                   [0.05, -0.03],    # d(y, x) per scan row
                   [0.02, 0.04]])    # d(y, x) per scan column


def descan_centres(nav_shape):
    sy, sx = np.indices(nav_shape)
    design = np.stack([np.ones(nav_shape), sy, sx], axis=-1)
    return design @ DESCAN


@pytest.mark.parametrize("executor", FAST)
@pytest.mark.parametrize("with_roi", [False, True])
def test_linear_regression_recovers_descan(executor, with_roi):
    nav = (9, 11)
    data = spot_frames(descan_centres(nav), (16, 16))
    roi = (np.random.default_rng(4).random(nav) < 0.6) if with_roi else None
    res = run(shared_context(executor), data,
              CoMUDF.with_params(cy=8, cx=8, regression=RegressionOptions.SUBTRACT_LINEAR),
              roi=roi, num_partitions=4)
    expected = DESCAN.copy()
    expected[0] -= (8, 8)
    np.testing.assert_allclose(res["regression"].data, expected, atol=1e-9)
    inside = np.ones(nav, bool) if roi is None else roi
    np.testing.assert_allclose(res["field"].data[inside], 0, atol=1e-9)
    assert np.isnan(res["field"].data[~inside]).all()
    # the raw shifts still hold the descan
    np.testing.assert_allclose(res["raw_shifts"].data[inside], (descan_centres(nav) - 8)[inside],
                               atol=1e-9)


def test_linear_regression_with_rotation_is_in_scan_coordinates():
    nav = (6, 7)
    data = spot_frames(descan_centres(nav), (16, 16))
    res = run(Context.make_with("inline"), data,
              CoMUDF.with_params(cy=8, cx=8, regression=1, scan_rotation=30, flip_y=True))
    shifts = descan_centres(nav) - 8
    fy, fx = apply_correction(shifts[..., 0], shifts[..., 1], scan_rotation=30, flip_y=True)
    coef = np.linalg.lstsq(np.stack([np.ones(42), *np.indices(nav).reshape(2, -1)], axis=1),
                           np.stack([fy, fx], axis=-1).reshape(-1, 2), rcond=None)[0]
    np.testing.assert_allclose(res["regression"].data, coef, atol=1e-9)
    np.testing.assert_allclose(res["field"].data, 0, atol=1e-9)


def test_mean_regression_subtracts_the_centre_offset():
    rng = np.random.default_rng(5)
    centres = np.stack([rng.uniform(6, 9, (4, 5)), rng.uniform(7, 10, (4, 5))], axis=-1)
    data = spot_frames(centres, (16, 16))
    roi = rng.random((4, 5)) < 0.7
    res = run(Context.make_with("inline"), data, CoMUDF.with_params(cy=8, cx=8, regression=0), roi=roi)
    mean = (centres[roi] - 8).mean(axis=0)
    np.testing.assert_allclose(res["regression"].data, [mean, (0, 0), (0, 0)], atol=1e-9)
    np.testing.assert_allclose(res["field"].data[roi], centres[roi] - 8 - mean, atol=1e-9)


def test_reference_scan_regression_corrects_a_specimen_scan():
    """The descan fitted on a vacuum scan, given as a matrix, leaves only the specimen's field."""
    nav = (8, 8)
    ctx = Context.make_with("inline")
    vacuum = run(ctx, spot_frames(descan_centres(nav), (16, 16)),
                 CoMUDF.with_params(cy=8, cx=8, regression=1))
    rng = np.random.default_rng(6)
    deflection = rng.uniform(-0.4, 0.4, nav + (2,))
    specimen = spot_frames(descan_centres(nav) + deflection, (16, 16))
    res = run(ctx, specimen, CoMUDF.with_params(cy=8, cx=8, regression=vacuum["regression"].data))
    np.testing.assert_allclose(res["field"].data, deflection, atol=1e-9)
    np.testing.assert_allclose(res["regression"].data, vacuum["regression"].data)


def test_linear_regression_on_a_single_row():
    """Too few positions for a plane: the least-squares solution still removes the descan."""
    nav = (5, 6)
    roi = np.zeros(nav, bool)
    roi[2] = True
    data = spot_frames(descan_centres(nav), (16, 16))
    res = run(Context.make_with("inline"), data, CoMUDF.with_params(cy=8, cx=8, regression=1), roi=roi)
    np.testing.assert_allclose(res["field"].data[roi], 0, atol=1e-9)


def test_partial_results_fit_only_merged_frames():
    """In run_udf_iter, positions not merged yet take no part in the regression."""
    rng = np.random.default_rng(7)
    nav = (6, 5)
    centres = np.stack([rng.uniform(6, 9, nav), rng.uniform(7, 10, nav)], axis=-1)
    ctx = Context.make_with("inline")
    ds = ctx.load("memory", data=spot_frames(centres, (16, 16)), num_partitions=3)
    parts = list(ctx.run_udf_iter(dataset=ds, udf=CoMUDF.with_params(cy=8, cx=8, regression=0)))
    assert len(parts) == 3
    for part in parts:
        done = part.damage
        reg = part.buffers[0]["regression"].data
        np.testing.assert_allclose(reg[0], (centres[done] - 8).mean(axis=0), atol=1e-9)
        field = part.buffers[0]["field"].data
        np.testing.assert_allclose(field[done], centres[done] - 8 - reg[0], atol=1e-9)
        assert np.isnan(field[~done]).all()


# -- divergence and curl -----------------------------------------------------------------------

@pytest.mark.parametrize("with_roi", [False, True])
def test_divergence_and_curl_are_numpy_gradients_of_the_field(with_roi):
    rng = np.random.default_rng(8)
    nav = (7, 9)
    centres = np.stack([rng.uniform(5, 11, nav), rng.uniform(5, 11, nav)], axis=-1)
    roi = (rng.random(nav) < 0.7) if with_roi else None
    res = run(Context.make_with("inline"), spot_frames(centres, (16, 16)),
              CoMUDF.with_params(cy=8, cx=8, scan_rotation=25, flip_y=True), roi=roi)
    field = res["field"].data  # NaN outside the ROI
    fy, fx = field[..., 0], field[..., 1]
    div = np.gradient(fy, axis=0) + np.gradient(fx, axis=1)
    curl = np.gradient(fy, axis=1) - np.gradient(fx, axis=0)
    inside = np.ones(nav, bool) if roi is None else roi
    np.testing.assert_allclose(res["divergence"].data[inside], div[inside], atol=1e-12)
    np.testing.assert_allclose(res["curl"].data[inside], curl[inside], atol=1e-12)
    assert np.isnan(res["divergence"].data[~inside]).all()
    if with_roi:
        # next to a position outside the ROI the central difference is NaN, as in LiberTEM
        assert np.isnan(res["divergence"].data[inside]).any()


def test_divergence_and_curl_of_a_linear_field():
    """field_y = a*y + b*x, field_x = c*y + d*x: divergence a + d, curl b - c, everywhere."""
    nav = (6, 8)
    a, b, c, d = 0.1, -0.05, 0.08, 0.03
    sy, sx = np.indices(nav)
    centres = np.stack([8 + a * sy + b * sx, 8 + c * sy + d * sx], axis=-1)
    res = run(Context.make_with("inline"), spot_frames(centres, (16, 16)), CoMUDF.with_params(cy=8, cx=8))
    np.testing.assert_allclose(res["divergence"].data, a + d, atol=1e-9)
    np.testing.assert_allclose(res["curl"].data, b - c, atol=1e-9)
    np.testing.assert_allclose(divergence(centres[..., 0], centres[..., 1]), a + d, atol=1e-12)
    np.testing.assert_allclose(curl_2d(centres[..., 0], centres[..., 1]), b - c, atol=1e-12)


def test_line_scan_derivative_along_the_single_row_is_zero():
    centres = np.stack([8 + 0.1 * np.arange(7), 8 + 0.2 * np.arange(7)], axis=-1)[np.newaxis]
    res = run(Context.make_with("inline"), spot_frames(centres, (16, 16)), CoMUDF.with_params(cy=8, cx=8))
    np.testing.assert_allclose(res["divergence"].data, 0.2, atol=1e-9)   # d field_x / dx
    np.testing.assert_allclose(res["curl"].data, 0.1, atol=1e-9)         # d field_y / dx


# -- guess_corrections ---------------------------------------------------------------------------

def atomic_field(nav=(20, 20)):
    """Deflection towards four Gaussian 'atoms' (the gradient of their potential)."""
    yy, xx = np.mgrid[0:nav[0], 0:nav[1]].astype(float)
    pot = sum(np.exp(-((yy - y) ** 2 + (xx - x) ** 2) / 6) for y, x in [(4, 6), (10, 15), (15, 5), (13, 11)])
    gy, gx = np.gradient(pot)
    return gy, gx


@pytest.mark.parametrize(("rotation", "flip_y"), [(0, False), (40, False), (-100, True), (170, True)])
def test_guess_corrections_recovers_rotation_flip_and_offset(rotation, flip_y):
    gy, gx = atomic_field()
    # what a rotated / flipped detector sees, plus a centre offset of (0.3, -0.2) pixel
    dy, dx = apply_correction(gy, gx, scan_rotation=rotation, flip_y=flip_y, forward=False)
    centres = np.stack([8.3 + dy, 7.8 + dx], axis=-1)
    ctx = Context.make_with("inline")
    data = spot_frames(centres, (16, 16))
    res = run(ctx, data, CoMUDF.with_params(cy=8, cx=8))
    guess = guess_corrections(res["raw_shifts"].data[..., 0], res["raw_shifts"].data[..., 1])
    assert (guess.scan_rotation, guess.flip_y) == (rotation, flip_y)
    np.testing.assert_allclose((guess.cy, guess.cx), (0.3, -0.2), atol=0.01)
    straight, flipped = coordinate_check(res["raw_shifts"].data[..., 0], res["raw_shifts"].data[..., 1])
    assert (flipped if flip_y else straight)[rotation % 360] < 1e-9
    # the guess, relative to the reference point used, corrects the data
    fixed = run(ctx, data, CoMUDF.with_params(cy=8 + guess.cy, cx=8 + guess.cx,
                                              scan_rotation=guess.scan_rotation, flip_y=guess.flip_y))
    np.testing.assert_allclose(fixed["curl"].data, 0, atol=1e-9)
    np.testing.assert_allclose(fixed["field"].data, np.stack([gy, gx], axis=-1) - np.stack(
        [gy, gx], axis=-1)[:-1, :-1].mean(axis=(0, 1)), atol=1e-6)


# -- parameters and bad input --------------------------------------------------------------------

def test_constructor_forms():
    assert CoMUDF().params.com_params == CoMParams()
    udf = CoMUDF(com_params=CoMParams(cy=3, cx=4, r=2.5))
    assert udf.params.com_params.r == 2.5
    assert CoMUDF.with_params(regression=RegressionOptions.SUBTRACT_MEAN).params.com_params.regression == 0
    import udfkit.udf.com as alias

    assert alias.CoMUDF is CoMUDF


@pytest.mark.parametrize(("kwargs", "match"), [
    (dict(r=3, ri=3), "inner radius ri"),
    (dict(r=3, ri=5), "inner radius ri"),
    (dict(r=0), "radius r must be > 0"),
    (dict(r=-1), "radius r must be > 0"),
    (dict(ri=-1), "ri must be >= 0"),
    (dict(cy="middle"), "cy must be a real number"),
    (dict(cx=float("nan")), "cx must be a finite number"),
    (dict(scan_rotation=None), "scan_rotation must be a real number"),
    (dict(flip_y="yes"), "flip_y must be True or False"),
    (dict(regression=2), "regression must be -1, 0, 1"),
    (dict(regression=np.zeros((2, 2))), r"shape \(3, 2\).*got shape \(2, 2\)"),
    (dict(regression=[[np.nan, 0], [0, 0], [0, 0]]), "must be finite"),
    (dict(regression="linear"), "regression must be"),
])
def test_bad_parameters(kwargs, match):
    with pytest.raises(UDFError, match=match):
        CoMUDF.with_params(**kwargs)


def test_com_params_must_be_com_params():
    with pytest.raises(UDFError, match="com_params must be a CoMParams"):
        CoMUDF(com_params={"cy": 3})


@pytest.mark.parametrize(("shape", "match"), [
    ((12, 8, 8), r"nav shape \(12,\)"),
    ((2, 2, 3, 8, 8), r"nav shape \(2, 2, 3\)"),
    ((3, 4, 2, 8, 8), r"sig shape \(2, 8, 8\)"),
])
def test_needs_2d_nav_and_sig(shape, match):
    ctx = Context.make_with("inline")
    sig_dims = 3 if len(shape) == 5 and shape[2] == 2 else 2
    ds = ctx.load("memory", data=np.ones(shape, dtype="float32"), sig_dims=sig_dims)
    with pytest.raises(UDFError, match=match):
        ctx.run_udf(dataset=ds, udf=CoMUDF())


def test_complex_data_refused():
    ctx = Context.make_with("inline")
    ds = ctx.load("memory", data=np.ones((2, 2, 4, 4), dtype="complex64"))
    with pytest.raises(UDFError, match="needs real-valued data.*complex64"):
        ctx.run_udf(dataset=ds, udf=CoMUDF())


# -- all four physics UDFs in one pass, on every executor ---------------------------------------

def frame_stats(frame):
    return np.array([frame.sum(), frame.max()])


@pytest.mark.parametrize("executor", ["processes", pytest.param("dask", marks=pytest.mark.slow)])
def test_physics_udfs_in_one_pass_on_worker_executors(executor, tmp_path):
    """Worker processes rebuild the UDFs from pickled parameters (a module-level function for
    AutoUDF, CoMParams); dask is in the slow run only, as its cluster takes seconds to start."""
    rng = np.random.default_rng(9)
    roi = rng.random((5, 6)) < 0.6
    for use_roi in (False, True):
        case = BCase(nav_shape=(5, 6), sig_shape=(12, 14), dtype="uint16", image_count=30,
                     num_partitions=4, roi=roi if use_roi else None, fmt="raw", seed=9,
                     values=rng.poisson(4, (30, 12, 14)))
        ctx = shared_context(executor)
        ds = load(ctx, case, tmp_path)
        com_kw = dict(cy=6.5, cx=7, r=5, scan_rotation=12, regression=1)
        com, auto, fem, cryst = ctx.run_udf(dataset=ds, roi=case.roi, udf=[
            CoMUDF.with_params(**com_kw), AutoUDF(f=frame_stats),
            FEMUDF(center=(6, 7), rad_in=2, rad_out=5),
            CrystallinityUDF(rad_in=1, rad_out=4, real_center=(6, 7), real_rad=2)])
        check_com(com, case, com_kw | {"regression": 1})
        full = full_frames(case)
        stats = np.stack([full.sum(axis=(-2, -1)), full.max(axis=(-2, -1))], axis=-1)
        assert_nav_full(auto["result"], stats, case, rtol=1e-6)
        assert_nav_full(fem["intensity"], ref_fem(full, (6, 7), 2, 5), case, rtol=1e-6)
        assert_nav_full(cryst["intensity"], ref_crystallinity(full, 1, 4, (6, 7), 2), case, rtol=1e-6)


# -- a real detector file ------------------------------------------------------------------------

FIXTURES = Path(__file__).resolve().parents[2] / ".." / "shared" / "fixtures"


def test_physics_udfs_on_a_merlin_scan():
    """A 4x2 Merlin scan of 256x256 frames (rosettasciio's test file), read by udfkit's mib
    format; the reference frames come from rosettasciio's independent reader. The data set
    is real detector counts: a bright disk that does not sit at the frame centre."""
    path = FIXTURES / "mib" / "001_4x2_6bit.mib"
    if not path.is_file():
        pytest.fail(f"sample file {path} is missing: the real files live in ../shared/fixtures "
                    "next to the repository (see its README.md)")
    from rsciio.quantumdetector import load_mib_data

    # the frames in the file's row order, as udfkit and LiberTEM read them (rosettasciio's
    # file_reader turns them upside down, and takes seconds where this takes a fraction)
    frames = np.asarray(load_mib_data(str(path), return_headers=False), dtype=np.float64)
    frames = frames.reshape(2, 4, 256, 256)
    ctx = Context.make_with("inline")
    ds = ctx.load("mib", path=str(path), nav_shape=(2, 4))
    roi = np.array([[True, True, False, True], [True, False, True, True]])
    com_kw = dict(cy=136, cx=105, r=40, ri=3, scan_rotation=-15, flip_y=True, regression=1)
    for use_roi in (None, roi):
        com, fem, cryst = ctx.run_udf(dataset=ds, roi=use_roi, udf=[
            CoMUDF.with_params(**com_kw), FEMUDF(center=(136, 105), rad_in=20, rad_out=60),
            CrystallinityUDF(rad_in=10, rad_out=40, real_center=(136, 105), real_rad=15)])
        full = frames if use_roi is None else np.where(use_roi[..., None, None], frames, np.nan)
        expected = ref_com(full, **com_kw)
        inside = np.ones((2, 4), bool) if use_roi is None else use_roi
        for name in NAV_NAMES:
            np.testing.assert_allclose(com[name].data[inside], expected[name][inside], rtol=1e-5,
                                       atol=1e-4, equal_nan=True, err_msg=name)
            assert np.isnan(com[name].data[~inside]).all()
        # fitted to float32 centres of mass of about 100 px: a few 1e-6 apart
        np.testing.assert_allclose(com["regression"].data, expected["regression"], atol=1e-4)
        np.testing.assert_allclose(fem["intensity"].data[inside],
                                   ref_fem(frames, (136, 105), 20, 60)[inside], rtol=1e-6)
        np.testing.assert_allclose(cryst["intensity"].data[inside],
                                   ref_crystallinity(frames, 10, 40, (136, 105), 15)[inside], rtol=1e-6)


@pytest.mark.parametrize("kwargs", [dict(r=3, ri=3), dict(r=0), dict(ri=-1),
                                    dict(cx=float("nan")),
                                    dict(regression=[[np.nan, 0], [0, 0], [0, 0]])])
def test_bad_parameter_values_are_value_errors_too(kwargs):
    # LiberTEM raises ValueError for these: a ported ``except ValueError`` must catch them
    from udfkit.errors import UDFParameterError

    with pytest.raises(ValueError) as info:
        CoMUDF.with_params(**kwargs)
    assert isinstance(info.value, UDFParameterError) and isinstance(info.value, UDFError)
