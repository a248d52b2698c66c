"""numpy references and hypothesis strategies for the physics UDFs (CoM, FEM, crystallinity, auto).

Every reference works on the whole data set at once: :func:`full_frames` is the nav-shaped
stack of frames as float64, NaN at positions that are not processed (outside the ROI or
without a frame in the file). The formulas are written out here from their definitions
(pixel ``(i, j)`` at the point ``(i, j)``; a disk holds distance ``<= r``; a ring
``r_in < d <= r_out``; rotation as a complex multiplication), not taken from udfkit.

Examples
--------
>>> case = BCase(nav_shape=(1, 3), sig_shape=(2, 2), dtype="uint8", image_count=3, sync_offset=1)
>>> np.isnan(full_frames(case)[0, :, 0, 0]).tolist()
[False, False, True]
"""

from __future__ import annotations

from math import prod

import numpy as np
from hypothesis import strategies as st

from .strategies import BCase, rois

__all__ = ["physics_cases", "full_frames", "ref_com", "ref_fem", "ref_crystallinity",
           "assert_nav_full", "positive_values"]

DTYPES = ["uint8", "uint16", ">u2", "int32", "float32", "float64", ">f8"]


def positive_values(dtype, shape, seed):
    """Non-negative small integers (quarter steps for floats), with zeros and bright spots."""
    rng = np.random.default_rng(seed)
    values = rng.integers(0, 40, size=shape).astype(np.float64)
    if np.dtype(dtype).kind == "f":
        values += rng.integers(0, 4, size=shape) / 4
    values[rng.random(shape) < 0.15] = 0
    values[rng.random(shape) < 0.02] = 200
    return values


@st.composite
def physics_cases(draw, formats=("memory", "memory", "raw", "npy"), dtypes=DTYPES, max_nav=6,
                  min_sig=2, max_sig=12, partial=True):
    """A :class:`BCase` with a 2D nav and a 2D sig of non-negative values."""
    fmt = draw(st.sampled_from(formats))
    nav_shape = (draw(st.integers(1, max_nav)), draw(st.integers(1, max_nav)))
    sig_shape = (draw(st.integers(min_sig, max_sig)), draw(st.integers(min_sig, max_sig)))
    nav_size = prod(nav_shape)
    image_count = nav_size
    sync_offset = 0
    if partial and draw(st.booleans()):
        image_count = draw(st.integers(max(1, nav_size - 3), nav_size + 3))
        sync_offset = draw(st.integers(max(-2, 1 - nav_size), min(2, image_count - 1)))
    dtype = np.dtype(draw(st.sampled_from(dtypes)))
    tileshape = None
    if fmt == "memory":
        tileshape = draw(st.one_of(st.none(), st.tuples(st.integers(1, 5), st.integers(1, sig_shape[0]),
                                                        st.integers(1, sig_shape[1]))))
    seed = draw(st.integers(0, 2**32 - 1))
    return BCase(nav_shape=nav_shape, sig_shape=sig_shape, dtype=dtype, image_count=image_count,
                 sync_offset=sync_offset, num_partitions=draw(st.integers(1, min(nav_size + 1, 5))),
                 tileshape=tileshape, roi=draw(rois(nav_shape)), seed=seed, fmt=fmt,
                 nav_shaped_input=draw(st.booleans()),
                 values=positive_values(dtype, (image_count,) + sig_shape, seed))


def full_frames(case: BCase) -> np.ndarray:
    """``nav_shape + sig_shape`` float64 frames, NaN where a position is not processed."""
    full = np.full((prod(case.nav_shape),) + case.sig_shape, np.nan)
    full[case.processed] = case.frames
    return full.reshape(case.nav_shape + case.sig_shape)


def _squared_distance(sig_shape, cy, cx):
    yy, xx = np.indices(sig_shape, dtype=np.float64)
    return (yy - cy) ** 2 + (xx - cx) ** 2


def ref_com(full, *, cy=None, cx=None, r=np.inf, ri=0.0, scan_rotation=0.0, flip_y=False,
            regression=-1):
    """CoMUDF's results on the full nav grid (NaN where not processed), from the definitions."""
    nav_shape, sig_shape = full.shape[:2], full.shape[2:]
    cy = sig_shape[0] // 2 if cy is None else cy
    cx = sig_shape[1] // 2 if cx is None else cx
    d2 = _squared_distance(sig_shape, cy, cx)
    sel = d2 <= r * r
    if ri is not None and not np.isclose(ri, 0.0):  # LiberTEM: ri within 1e-8 of 0 is no ring
        sel &= d2 > ri * ri
    yy, xx = np.indices(sig_shape)
    w = full * sel
    total = w.sum(axis=(-2, -1))
    with np.errstate(invalid="ignore", divide="ignore"):
        com_y = np.where(total == 0, cy, (w * yy).sum(axis=(-2, -1)) / total)
        com_x = np.where(total == 0, cx, (w * xx).sum(axis=(-2, -1)) / total)
    dy, dx = com_y - cy, com_x - cx
    # y points down: multiplying x + iy by exp(i phi) turns x towards y, i.e. clockwise
    z = (dx + 1j * (-dy if flip_y else dy)) * np.exp(1j * np.deg2rad(scan_rotation))
    field = np.stack([z.imag, z.real], axis=-1)
    valid = ~np.isnan(field[..., 0])
    sy, sx = np.indices(nav_shape)
    design = np.stack([np.ones(nav_shape), sy, sx], axis=-1)
    coef = np.zeros((3, 2))
    if isinstance(regression, np.ndarray):
        coef = regression
    elif regression == 0 and valid.any():
        coef[0] = field[valid].mean(axis=0)
    elif regression == 1 and valid.any():
        x = design[valid]
        coef = np.linalg.solve(x.T @ x, x.T @ field[valid])  # normal equations
    field[valid] -= design[valid] @ coef

    def grad(a, axis):
        return np.gradient(a, axis=axis) if a.shape[axis] > 1 else np.zeros_like(a)

    fy, fx = field[..., 0], field[..., 1]
    return {
        "raw_com": np.stack([com_y, com_x], axis=-1),
        "raw_shifts": np.stack([dy, dx], axis=-1),
        "field": field, "field_y": fy, "field_x": fx,
        "magnitude": np.hypot(fy, fx),
        "divergence": grad(fy, 0) + grad(fx, 1),
        "curl": grad(fy, 1) - grad(fx, 0),
        "regression": coef,
    }


def ref_fem(full, center, rad_in, rad_out):
    """Population standard deviation of the ring ``rad_in < d <= rad_out`` around ``center`` (y, x)."""
    d2 = _squared_distance(full.shape[-2:], *center)
    ring = (d2 <= rad_out ** 2) & (d2 > rad_in ** 2)
    return full[..., ring].std(axis=-1)


def ref_crystallinity(full, rad_in, rad_out, real_center=None, real_rad=None):
    """Sum of ``|FFT|`` over the ring of the half spectrum, as LiberTEM defines it.

    The ring is drawn around ``(h / 2, w / 2)`` on the centred spectrum, moved with
    ``fftshift`` (as LiberTEM does; for odd sizes that is half a pixel off the inverse shift)
    and cut to the ``w // 2 + 1`` columns of ``rfft2``.
    """
    h, w = full.shape[-2:]
    frames = full
    if real_center is not None and real_rad is not None:
        frames = full * (_squared_distance((h, w), *real_center) > real_rad ** 2)
    d2 = _squared_distance((h, w), h / 2, w / 2)
    ring = ((d2 <= rad_out ** 2) & (d2 > rad_in ** 2)).astype(float)
    half = np.fft.fftshift(ring)[:, : w // 2 + 1]
    spectrum = np.abs(np.fft.rfft2(frames, axes=(-2, -1)))
    return (spectrum * half).sum(axis=(-2, -1))


def assert_nav_full(res, expected, case: BCase, *, rtol, atol=0.0):
    """A nav result equals ``expected`` (nav-shaped, NaN where not processed) and is valid
    exactly at the processed positions."""
    expected = np.asarray(expected)
    assert res.data.shape == expected.shape
    flat = res.data.reshape((prod(case.nav_shape), -1))
    want = expected.reshape(flat.shape)
    # NaN where the reference is NaN (e.g. a derivative next to a position left out)
    np.testing.assert_allclose(flat[case.processed], want[case.processed], rtol=rtol, atol=atol,
                               equal_nan=True)
    assert np.isnan(flat[~case.processed]).all()
    assert res.raw_data.shape[0] == case.n
    valid = res.valid_mask.reshape(flat.shape)
    np.testing.assert_array_equal(valid, np.broadcast_to(case.processed[:, None], flat.shape))
