"""``udfkit.masks``: every mask factory against an independent numpy formula (the distance of
each pixel centre from the centre, written out per pixel), for drawn geometries; LiberTEM's
documented properties (rings that sum to 1, balanced templates); bad arguments."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from udfkit import masks as m
from udfkit.errors import MaskError, UdfkitError
from udfkit.testing.profiles import examples

FAST = settings(max_examples=examples(40), deadline=None)


def distances(cx, cy, sx, sy):
    """Distance of every pixel centre ``(y, x)`` from ``(cy, cx)``, pixel by pixel."""
    out = np.empty((sy, sx))
    for y in range(sy):
        for x in range(sx):
            out[y, x] = np.sqrt((y - cy) ** 2 + (x - cx) ** 2)
    return out


@st.composite
def geometry(draw):
    sx = draw(st.integers(1, 24))
    sy = draw(st.integers(1, 24))
    whole = draw(st.booleans())
    coord = st.integers(-4, 28) if whole else st.floats(-4, 28, allow_nan=False)
    cx, cy = float(draw(coord)), float(draw(coord))
    radius = draw(st.floats(0.2, 20))
    inner = draw(st.floats(0, 0.95)) * radius
    return sx, sy, cx, cy, radius, inner


@FAST
@given(g=geometry())
def test_circular_and_ring(g):
    sx, sy, cx, cy, r, ri = g
    d = distances(cx, cy, sx, sy)
    disk = m.circular(cx, cy, sx, sy, r)
    assert disk.shape == (sy, sx) and disk.dtype == bool
    # the test's distance and the mask's squared distance may round differently right at r
    edge = np.isclose(d, r, rtol=1e-12, atol=1e-12)
    np.testing.assert_array_equal(disk[~edge], (d <= r)[~edge])
    ring = m.ring(cx, cy, sx, sy, r, ri)
    edge |= np.isclose(d, ri, rtol=1e-12, atol=1e-12)
    np.testing.assert_array_equal(ring[~edge], ((d > ri) & (d <= r))[~edge])


@FAST
@given(g=geometry())
def test_antialiased_disk_and_ring_ramp_at_the_edge(g):
    """Weight 1 well inside, 0 well outside, ``r + 1/2 - d`` on the one-pixel edge band."""
    sx, sy, cx, cy, r, ri = g
    d = distances(cx, cy, sx, sy)
    disk = m.circular(cx, cy, sx, sy, r, antialiased=True)
    expected = np.clip(r + 0.5 - d, 0, 1)
    centre = (int(np.round(cy)), int(np.round(cx)))
    if 0 <= centre[0] < sy and 0 <= centre[1] < sx:
        expected[centre] = 1  # the patched centre pixel
    np.testing.assert_allclose(disk, expected, atol=1e-12)
    ring = m.ring(cx, cy, sx, sy, r, ri, antialiased=True)
    mid, half = (r + ri) / 2, (r - ri) / 2
    expected = np.clip(half + 0.5 - np.abs(d - mid), 0, 1)
    if ri < 0.5 and 0 <= centre[0] < sy and 0 <= centre[1] < sx:
        expected[centre] = 1 - ri
    np.testing.assert_allclose(ring, expected, atol=1e-12)


@FAST
@given(g=geometry())
def test_radial_gradient(g):
    sx, sy, cx, cy, r, _ = g
    d = distances(cx, cy, sx, sy)
    got = m.radial_gradient(cx, cy, sx, sy, r)
    edge = np.isclose(d, r, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(got[~edge], np.where(d <= r, d / r, 0)[~edge], atol=1e-12)
    smooth = m.radial_gradient(cx, cy, sx, sy, r, antialiased=True)
    ref = np.where(d < r - 0.5, d / r, np.where(d < r + 0.5, (r - d) / 0.5, 0))
    np.testing.assert_allclose(smooth, ref, atol=1e-12)


def test_radial_gradient_libertem_values():
    """LiberTEM's own check: i/17 along both axes for i < 17, 0 beyond."""
    for aa in (False, True):
        t = m.radial_gradient(centerX=30, centerY=33, imageSizeX=65, imageSizeY=66, radius=17,
                              antialiased=aa)
        assert t.shape == (66, 65)
        for i in range(17):
            for y, x in ((33, 30 + i), (33, 30 - i), (33 + i, 30), (33 - i, 30)):
                assert np.isclose(t[y, x], i / 17)
        for i in range(18, 30):
            for y, x in ((33, 30 + i), (33, 30 - i), (33 + i, 30), (33 - i, 30)):
                assert t[y, x] == 0


@FAST
@given(g=geometry())
def test_background_subtraction(g):
    sx, sy, cx, cy, r, ri = g
    d = distances(cx, cy, sx, sy)
    outer, inner = r + 1.5, ri + 0.5
    disk = d <= inner
    ring = (d > inner) & (d <= outer)
    if ring.sum() == 0:
        with pytest.raises(MaskError, match="ring"):
            m.background_subtraction(cx, cy, sx, sy, outer, inner)
        return
    got = m.background_subtraction(cx, cy, sx, sy, outer, inner)
    expected = disk - ring * (disk.sum() / ring.sum())
    edge = np.isclose(d, inner, rtol=1e-12, atol=1e-12) | np.isclose(d, outer, rtol=1e-12, atol=1e-12)
    if not edge.any():
        np.testing.assert_allclose(got, expected, atol=1e-12)
    assert np.isclose(got.sum(), 0, atol=1e-9)


def test_background_subtraction_libertem_case():
    mask = m.background_subtraction(10, 10, 20, 20, 5, 3)
    assert np.isclose(mask.sum(), 0) and mask.max() == 1


@FAST
@given(x=st.integers(-8, 12), y=st.integers(-8, 12), w=st.integers(-10, 10), h=st.integers(-10, 10),
       sx=st.integers(1, 10), sy=st.integers(1, 10))
def test_rectangular(x, y, w, h, sx, sy):
    got = m.rectangular(x, y, w, h, sx, sy)
    expected = np.zeros((sy, sx), bool)
    if w != 0 and h != 0:
        for yy in range(sy):
            for xx in range(sx):
                # both edges included, as LiberTEM
                expected[yy, xx] = (min(y, y + h) <= yy <= max(y, y + h)
                                    and min(x, x + w) <= xx <= max(x, x + w))
    np.testing.assert_array_equal(got, expected)


def test_rectangular_libertem_cases():
    rect = np.zeros((5, 5))
    cases = {(3, 3): (slice(2, 5), slice(2, 5)), (-3, 3): (slice(2, 5), slice(0, 3)),
             (3, -3): (slice(0, 3), slice(2, 5)), (-3, -3): (slice(0, 3), slice(0, 3))}
    for (w, h), (ys, xs) in cases.items():
        expected = rect.copy()
        expected[ys, xs] = 1
        np.testing.assert_array_equal(m.rectangular(2, 2, w, h, 5, 5), expected)
    for w, h in ((0, 3), (3, 0), (0, 0)):
        assert not m.rectangular(2, 2, w, h, 5, 5).any()


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.int16])
def test_gradients(dtype):
    gx, gy = m.gradient_x(5, 3, dtype=dtype), m.gradient_y(5, 3, dtype=dtype)
    assert gx.shape == gy.shape == (3, 5) and gx.dtype == gy.dtype == dtype
    yy, xx = np.mgrid[0:3, 0:5]
    np.testing.assert_array_equal(gx, xx)
    np.testing.assert_array_equal(gy, yy)
    assert gx.flags.writeable and gy.flags.writeable


@FAST
@given(g=geometry(), stretch=st.floats(0.5, 3), angle=st.floats(-4, 4))
def test_polar_map(g, stretch, angle):
    sx, sy, cx, cy, _, _ = g
    r, phi = m.polar_map(cx, cy, sx, sy)
    np.testing.assert_allclose(r, distances(cx, cy, sx, sy), atol=1e-12)
    yy, xx = np.mgrid[0:sy, 0:sx]
    np.testing.assert_allclose(phi, np.arctan2(yy - cy, xx - cx), atol=1e-12)
    # stretched: rotate (dy, dx) by angle, then divide the y component by stretch
    r2, phi2 = m.polar_map(cx, cy, sx, sy, stretchY=stretch, angle=angle)
    dy, dx = yy - cy, xx - cx
    ry = (dy * np.cos(angle) - dx * np.sin(angle)) / stretch
    rx = dx * np.cos(angle) + dy * np.sin(angle)
    np.testing.assert_allclose(r2, np.hypot(ry, rx), atol=1e-12)
    np.testing.assert_allclose(phi2, np.arctan2(ry, rx), atol=1e-12)


def test_polar_map_libertem_symmetry():
    r0, _ = m.polar_map(10, 10, 21, 21, stretchY=1.5, angle=0.)
    r1, _ = m.polar_map(10, 10, 21, 21, stretchY=1.5, angle=np.pi)
    r2, _ = m.polar_map(10, 10, 21, 21, stretchY=1.5, angle=np.pi / 4)
    r3, _ = m.polar_map(10, 10, 21, 21, stretchY=1.5, angle=-np.pi / 4)
    np.testing.assert_allclose(r0, r1)
    np.testing.assert_allclose(r2, np.flip(r3, axis=1))


def test_radial_gradient_background_subtraction_and_balance():
    radius, _ = m.polar_map(10, 10, 21, 21, stretchY=1.5, angle=np.pi / 4)
    t = m.radial_gradient_background_subtraction(r=radius, r0=5, r_outer=7)
    ref = np.where(radius < 4.5, radius / 5, np.where(radius < 5.5, (5 - radius) / 0.5,
                                                     np.where(radius <= 7, -1.0, 0.0)))
    np.testing.assert_allclose(t, ref, atol=1e-12)
    b = m.balance(t)
    assert np.isclose(b.sum(), 0)
    np.testing.assert_array_equal(b[t > 0], t[t > 0])
    neg = t < 0
    np.testing.assert_allclose(b[neg], t[neg] * t[t > 0].sum() / -t[neg].sum())
    assert np.all(b[radius > 7] == 0)
    with pytest.raises(MaskError, match="negative"):
        m.balance(np.ones(3))


@pytest.mark.parametrize("cx, cy, sx, sy", [(0, 0, 3, 4), (10, 10, 21, 21), (-3, 2.5, 7, 9)])
def test_bounding_radius_covers_the_image(cx, cy, sx, sy):
    br = m.bounding_radius(cx, cy, sx, sy)
    assert isinstance(br, int)
    assert distances(cx, cy, sx, sy).max() < br
    assert br == int(np.ceil(np.hypot(max(cy, sy - cy), max(cx, sx - cx)))) + 1


@FAST
@given(g=geometry(), n_bins=st.integers(1, 6), normalize=st.booleans(), sparse=st.booleans())
def test_radial_bins(g, n_bins, normalize, sparse):
    sx, sy, cx, cy, r, ri = g
    r = r + 0.5  # at least half a pixel wide
    bins = m.radial_bins(cx, cy, sx, sy, radius=r, radius_inner=ri, n_bins=n_bins,
                         normalize=normalize, use_sparse=sparse)
    assert bins.shape == (n_bins, sy, sx)
    assert m.is_sparse(bins) == sparse
    dense = m.to_dense(bins)
    d = distances(cx, cy, sx, sy)
    width = (r - ri) / n_bins
    expected = np.stack([np.clip(width / 2 + 0.5 - np.abs(d - (ri + (i + 0.5) * width)), 0, 1)
                         for i in range(n_bins)])
    if normalize:
        sums = expected.sum(axis=(1, 2), keepdims=True)
        expected = np.where(np.isclose(sums, 0), expected, expected / np.where(sums == 0, 1, sums))
    yy, xx = int(np.round(cy)), int(np.round(cx))
    if ri < 0.5 and 0 <= yy < sy and 0 <= xx < sx:
        expected[0, yy, xx] = 1 - ri
    np.testing.assert_allclose(dense, expected, atol=1e-12)


def test_radial_bins_sum_to_one_as_in_libertem():
    bins = m.radial_bins(35, 37, 80, 80, n_bins=42)
    assert m.is_sparse(bins) and bins.shape == (42, 80, 80)
    np.testing.assert_allclose(m.to_dense(bins).sum(axis=0), 1)
    dense = m.radial_bins(40, 41, 80, 80, n_bins=2)
    assert isinstance(dense, np.ndarray) and dense.shape == (2, 80, 80)
    np.testing.assert_allclose(dense.sum(axis=0), 1)
    assert m.radial_bins(40, 41, 80, 80, n_bins=2, dtype=np.float32).dtype == np.float32


def test_sparse_template_multi_stack_as_in_libertem():
    stack = m.sparse_template_multi_stack(mask_index=(0, 1, 2), offsetY=(13, 14, 15),
                                          offsetX=(15, 14, 13), template=np.ones((2, 3)),
                                          imageSizeY=32, imageSizeX=32)
    expected = np.zeros((3, 32, 32))
    expected[0, 13:15, 15:18] = 1
    expected[1, 14:16, 14:17] = 1
    expected[2, 15:17, 13:16] = 1
    np.testing.assert_array_equal(stack.todense(), expected)


@FAST
@given(cxs=st.lists(st.integers(-3, 14), min_size=1, max_size=4), cy=st.integers(-3, 14),
       radius=st.floats(0.5, 4))
def test_sparse_circular_multi_stack(cxs, cy, radius):
    """Each mask is the disk around an integer centre, cut at the image border."""
    n = len(cxs)
    stack = m.sparse_circular_multi_stack(list(range(n)), cxs, [cy] * n, 11, 9, radius)
    got = m.to_dense(stack)
    box = int(2 * np.ceil(radius) + 1)
    mid = (box - 1) // 2
    for i, cx in enumerate(cxs):
        d = distances(cx, cy, 11, 9)
        yy, xx = np.mgrid[0:9, 0:11]
        inside_box = (np.abs(yy - cy) <= mid) & (np.abs(xx - cx) <= mid)
        np.testing.assert_array_equal(got[i], (d <= radius) & inside_box)


def test_to_sparse_to_dense_is_sparse():
    import scipy.sparse as sp
    import sparse

    a = np.arange(6.0).reshape(2, 3)
    for form in (a, sp.csr_matrix(a), sp.coo_array(a), sparse.COO.from_numpy(a)):
        np.testing.assert_array_equal(m.to_dense(form), a)
        s = m.to_sparse(form)
        assert isinstance(s, sparse.COO)
        np.testing.assert_array_equal(s.todense(), a)
    assert not m.is_sparse(a) and m.is_sparse(sp.csr_matrix(a)) and m.is_sparse(sparse.COO.from_numpy(a))
    roi = m.to_sparse([(0, 1), (1, 2)], shape=(2, 3)).todense()
    np.testing.assert_array_equal(roi, [[False, True, False], [False, False, True]])
    inverted = m.to_sparse([((0, 1), False)], shape=(2, 3)).todense()
    np.testing.assert_array_equal(inverted, [[True, False, True], [True, True, True]])
    with pytest.raises(MaskError, match="shape"):
        m.to_sparse([(0, 1)])
    with pytest.raises(MaskError, match="truth"):
        m.to_sparse([((0, 1), True), ((1, 1), False)], shape=(2, 3))


@pytest.mark.parametrize("call, match", [
    (lambda: m.circular(1, 1, -3, 4, 1), "imageSizeX"),
    (lambda: m.ring(1, 1, 4, 2.5, 2, 1), "imageSizeY"),
    (lambda: m.radial_bins(2, 2, 5, 5, radius=1, radius_inner=2), "radius_inner"),
    (lambda: m.radial_bins(2, 2, 5, 5, radius=3, n_bins=0), "n_bins"),
    (lambda: m.background_subtraction(100, 100, 5, 5, 2, 1), "ring"),
    (lambda: m.sparse_template_multi_stack([0, 1], [0], [0], np.ones((2, 2)), 4, 4), "same"),
    (lambda: m.sparse_template_multi_stack([0], [0], [0], np.ones(3), 4, 4), "2D"),
])
def test_bad_arguments(call, match):
    with pytest.raises(MaskError, match=match) as info:
        call()
    assert isinstance(info.value, (UdfkitError, ValueError))
