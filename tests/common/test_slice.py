"""Tests of :class:`udfkit.common.Slice`."""

import pickle
from math import prod

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from udfkit.common import Shape, Slice
from udfkit.testing.profiles import examples


def mk(origin, shape, sig_dims):
    return Slice(tuple(origin), Shape(tuple(shape), sig_dims=sig_dims))


# -- construction ---------------------------------------------------------------------------

def test_construction_errors():
    with pytest.raises(TypeError, match="Shape"):
        Slice((0, 0), (4, 4))
    with pytest.raises(ValueError, match="different dimensions"):
        Slice((0, 0, 0), Shape((4, 4), sig_dims=2))


def test_origin_and_shape():
    s = mk((2, 0, 4), (3, 8, 4), 2)
    assert s.origin == (2, 0, 4)
    assert s.shape == Shape((3, 8, 4), sig_dims=2)
    assert s.nav == mk((2,), (3,), 0)
    assert s.sig == mk((0, 4), (8, 4), 2)


# -- get --------------------------------------------------------------------------------------

def test_get_tuple():
    s = mk((2, 0, 4), (3, 8, 4), 2)
    assert s.get() == (slice(2, 5), slice(0, 8), slice(4, 8))
    assert s.get(nav_only=True) == (slice(2, 5),)
    assert s.get(sig_only=True) == (slice(0, 8), slice(4, 8))


def test_get_array():
    arr = np.arange(10 * 8 * 8).reshape(10, 8, 8)
    s = mk((2, 1, 4), (3, 5, 4), 2)
    np.testing.assert_array_equal(s.get(arr), arr[2:5, 1:6, 4:8])
    np.testing.assert_array_equal(s.get(arr, nav_only=True), arr[2:5])
    frame = arr[0]
    np.testing.assert_array_equal(s.get(frame, sig_only=True), frame[1:6, 4:8])


def test_get_nav_only_multi_nav():
    arr = np.arange(4 * 5 * 3 * 3).reshape(4, 5, 3, 3)
    s = mk((1, 2, 0, 1), (2, 3, 3, 2), 2)
    np.testing.assert_array_equal(s.get(arr, nav_only=True), arr[1:3, 2:5])
    np.testing.assert_array_equal(s.get(arr[0, 0], sig_only=True), arr[0, 0, 0:3, 1:3])
    np.testing.assert_array_equal(s.get(arr), arr[1:3, 2:5, 0:3, 1:3])


def test_get_nav_only_and_sig_only_exclusive():
    s = mk((0, 0, 0), (1, 2, 2), 2)
    with pytest.raises(ValueError, match="mutually exclusive"):
        s.get(nav_only=True, sig_only=True)


# -- subslices --------------------------------------------------------------------------------

def test_subslices_docstring_example():
    s = mk((0, 0), (5, 4), 2)
    assert [(x.origin, x.shape.to_tuple()) for x in s.subslices((3, 4))] == [
        ((0, 0), (3, 4)), ((3, 0), (2, 4))]


def test_subslices_ragged_2d():
    s = mk((10, 20), (5, 7), 2)
    subs = s.subslices((2, 3))
    assert [(x.origin, x.shape.to_tuple()) for x in subs] == [
        ((10, 20), (2, 3)), ((10, 23), (2, 3)), ((10, 26), (2, 1)),
        ((12, 20), (2, 3)), ((12, 23), (2, 3)), ((12, 26), (2, 1)),
        ((14, 20), (1, 3)), ((14, 23), (1, 3)), ((14, 26), (1, 1)),
    ]
    assert all(x.shape.sig_dims == 2 for x in subs)


def test_subslices_bigger_than_slice():
    s = mk((1, 2), (3, 4), 2)
    assert s.subslices((10, 10)) == [s]


@pytest.mark.parametrize("bad", [(2,), (2, 2, 2), (0, 2), (2, -1)])
def test_subslices_errors(bad):
    s = mk((0, 0), (4, 4), 2)
    with pytest.raises(ValueError):
        s.subslices(bad)


@st.composite
def slice_and_subshape(draw):
    ndim = draw(st.integers(1, 4))
    shape = draw(st.lists(st.integers(1, 9), min_size=ndim, max_size=ndim))
    origin = draw(st.lists(st.integers(0, 5), min_size=ndim, max_size=ndim))
    sub = [draw(st.integers(1, s + 2)) for s in shape]
    sig_dims = draw(st.integers(0, ndim))
    return mk(origin, shape, sig_dims), tuple(sub)


@settings(max_examples=examples(150), deadline=None)
@given(slice_and_subshape())
def test_subslices_tile_exactly_once(case):
    s, sub = case
    subs = s.subslices(sub)
    full_shape = tuple(o + e for o, e in zip(s.origin, s.shape))
    count = np.zeros(full_shape, dtype=np.int64)
    for x in subs:
        assert x.shape.sig_dims == s.shape.sig_dims
        assert all(0 < e <= m for e, m in zip(x.shape, sub))
        # inside the parent slice
        assert all(so <= xo and xo + xe <= so + se
                   for so, se, xo, xe in zip(s.origin, s.shape, x.origin, x.shape))
        count[x.get()] += 1
    expected = np.zeros(full_shape, dtype=np.int64)
    expected[s.get()] = 1
    np.testing.assert_array_equal(count, expected)
    assert len(subs) == prod(-(-e // m) for e, m in zip(s.shape, sub))


# -- shift ------------------------------------------------------------------------------------

def test_shift_same_dims():
    a = mk((5, 6, 7), (2, 3, 4), 2)
    b = mk((1, 2, 3), (10, 10, 10), 2)
    assert a.shift(b) == mk((4, 4, 4), (2, 3, 4), 2)


def test_shift_by_sig_part_only():
    tile = mk((5, 2, 3), (1, 4, 4), 2)
    sig = mk((2, 3), (4, 4), 2)
    shifted = tile.shift(sig)
    assert shifted.origin == (5, 0, 0)
    assert shifted.shape == tile.shape


def test_shift_roundtrip_indexing():
    arr = np.arange(20 * 20).reshape(20, 20)
    outer = mk((4, 5), (10, 10), 2)
    inner = mk((6, 9), (3, 2), 2)
    np.testing.assert_array_equal(inner.shift(outer).get(outer.get(arr)), inner.get(arr))


# -- intersection -----------------------------------------------------------------------------

@pytest.mark.parametrize(
    "a, b, expected",
    [
        (((0, 0), (4, 4)), ((2, 2), (4, 4)), ((2, 2), (2, 2))),
        (((0, 0), (10, 10)), ((2, 3), (4, 5)), ((2, 3), (4, 5))),  # contained
        (((5, 0), (3, 8)), ((0, 0), (5, 8)), ((5, 0), (0, 8))),  # touching edge
        (((0, 0), (2, 2)), ((5, 5), (2, 2)), ((5, 5), (0, 0))),  # far apart
    ],
)
def test_intersection_with(a, b, expected):
    sa, sb = mk(*a, 2), mk(*b, 2)
    res = sa.intersection_with(sb)
    assert res.shape.sig_dims == 2
    assert res.shape.to_tuple() == expected[1]
    if all(expected[1]):
        assert res.origin == expected[0]
        assert not res.is_null()
        assert sb.intersection_with(sa) == res
    else:
        assert res.is_null()


def test_intersection_different_dims():
    with pytest.raises(ValueError, match="different dimensions"):
        mk((0, 0), (2, 2), 2).intersection_with(mk((0,), (2,), 1))


@st.composite
def two_slices(draw):
    ndim = draw(st.integers(1, 3))

    def one():
        return mk([draw(st.integers(0, 8)) for _ in range(ndim)],
                  [draw(st.integers(1, 6)) for _ in range(ndim)], ndim)

    return one(), one()


@settings(max_examples=examples(100), deadline=None)
@given(two_slices())
def test_intersection_matches_masks(pair):
    a, b = pair
    size = (16,) * len(a.origin)
    ma = np.zeros(size, bool)
    mb = np.zeros(size, bool)
    ma[a.get()] = True
    mb[b.get()] = True
    both = ma & mb
    res = a.intersection_with(b)
    assert res.is_null() == (not both.any())
    if both.any():
        m = np.zeros(size, bool)
        m[res.get()] = True
        np.testing.assert_array_equal(m, both)


# -- flatten_nav ------------------------------------------------------------------------------

def test_flatten_nav_docstring_example():
    s = mk((1, 0, 0, 0), (2, 4, 8, 8), 2)
    f = s.flatten_nav((3, 4, 8, 8))
    assert f == mk((4, 0, 0), (8, 8, 8), 2)


def test_flatten_nav_partial_row():
    s = mk((1, 2, 0, 3), (1, 2, 8, 5), 2)
    f = s.flatten_nav((3, 4, 8, 8))
    assert f.origin == (6, 0, 3)
    assert f.shape == Shape((2, 8, 5), sig_dims=2)


def test_flatten_nav_three_nav_dims():
    s = mk((1, 1, 0, 0), (1, 2, 5, 3), 1)
    f = s.flatten_nav((2, 3, 5, 3))
    assert f.origin == (1 * 15 + 1 * 5, 0)
    assert f.shape == Shape((10, 3), sig_dims=1)


@pytest.mark.parametrize(
    "origin, shape, containing",
    [
        ((0, 1, 0, 0), (2, 2, 8, 8), (3, 4, 8, 8)),  # rectangle in the middle of rows
        ((0, 0, 0, 0), (2, 3, 8, 8), (3, 4, 8, 8)),  # rows not complete
        ((0, 3, 0, 0), (2, 1, 8, 8), (3, 4, 8, 8)),  # a column
    ],
)
def test_flatten_nav_not_contiguous(origin, shape, containing):
    with pytest.raises(ValueError, match="not contiguous"):
        mk(origin, shape, 2).flatten_nav(containing)


@st.composite
def nav_sub_rect(draw):
    nav = draw(st.lists(st.integers(1, 5), min_size=1, max_size=3))
    origin, ext = [], []
    for n in nav:
        o = draw(st.integers(0, n - 1))
        e = draw(st.integers(1, n - o))
        origin.append(o)
        ext.append(e)
    return tuple(nav), tuple(origin), tuple(ext)


@settings(max_examples=examples(150), deadline=None)
@given(nav_sub_rect())
def test_flatten_nav_property(case):
    nav, origin, ext = case
    sig = (3, 2)
    s = mk(origin + (1, 0), ext + (2, 2), 2)
    flat_idx = np.arange(prod(nav)).reshape(nav)[s.get(nav_only=True)].reshape(-1)
    contiguous = bool(np.all(np.diff(flat_idx) == 1))
    if contiguous:
        f = s.flatten_nav(nav + sig)
        assert f.origin == (int(flat_idx[0]), 1, 0)
        assert f.shape == Shape((flat_idx.size, 2, 2), sig_dims=2)
    else:
        with pytest.raises(ValueError):
            s.flatten_nav(nav + sig)


# -- value semantics --------------------------------------------------------------------------

def test_pickle_eq_hash():
    s = mk((1, 2, 3), (4, 5, 6), 2)
    s2 = pickle.loads(pickle.dumps(s))
    assert s2 == s
    assert hash(s2) == hash(s)
    assert s2.shape.sig_dims == 2
    assert s != mk((1, 2, 3), (4, 5, 6), 1)
    assert s != mk((1, 2, 4), (4, 5, 6), 2)
    assert (s == "x") is False


def test_immutable():
    s = mk((1, 2), (3, 4), 2)
    with pytest.raises(AttributeError):
        s._origin = (0, 0)
    with pytest.raises(AttributeError):
        s.origin = (0, 0)
    assert s.origin == (1, 2)


def test_is_null():
    assert mk((0, 0), (0, 3), 2).is_null()
    assert not mk((0, 0), (1, 3), 2).is_null()
