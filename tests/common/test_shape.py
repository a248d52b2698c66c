"""Tests of :class:`udfkit.common.Shape`."""

import copy
import pickle

import pytest

from udfkit.common import Shape


@pytest.mark.parametrize(
    "shape, sig_dims, nav, sig",
    [
        ((16, 32, 64, 64), 2, (16, 32), (64, 64)),
        ((10, 64, 64), 2, (10,), (64, 64)),
        ((10, 100), 1, (10,), (100,)),
        ((2, 3, 4, 5, 6, 7), 3, (2, 3, 4), (5, 6, 7)),
        ((8, 8), 0, (8, 8), ()),
        ((8, 8), 2, (), (8, 8)),
    ],
)
def test_nav_sig_split(shape, sig_dims, nav, sig):
    s = Shape(shape, sig_dims=sig_dims)
    assert s.nav.to_tuple() == nav
    assert s.sig.to_tuple() == sig
    assert s.nav.sig_dims == 0
    assert s.sig.sig_dims == sig_dims
    assert s.nav_dims == len(nav)
    assert s.sig_dims == sig_dims
    assert s.to_tuple() == shape


def test_to_tuple_returns_ints():
    import numpy as np

    s = Shape(np.array([4, 5, 6]), sig_dims=1)
    t = s.to_tuple()
    assert t == (4, 5, 6)
    assert all(type(x) is int for x in t)


@pytest.mark.parametrize(
    "shape, sig_dims, flat_nav, flat_sig",
    [
        ((16, 32, 64, 64), 2, (512, 64, 64), (16, 32, 4096)),
        ((10, 64, 64), 2, (10, 64, 64), (10, 4096)),
        ((2, 3, 4, 5, 6, 7), 3, (24, 5, 6, 7), (2, 3, 4, 210)),
        ((7, 9), 1, (7, 9), (7, 9)),
    ],
)
def test_flatten(shape, sig_dims, flat_nav, flat_sig):
    s = Shape(shape, sig_dims=sig_dims)
    fn = s.flatten_nav()
    assert fn == Shape(flat_nav, sig_dims=sig_dims)
    assert fn.sig_dims == sig_dims
    assert fn.size == s.size
    fs = s.flatten_sig()
    assert fs == Shape(flat_sig, sig_dims=1)
    assert fs.sig_dims == 1
    assert fs.size == s.size


@pytest.mark.parametrize(
    "shape, size, dims",
    [((16, 32, 64, 64), 16 * 32 * 64 * 64, 4), ((5,), 5, 1), ((3, 1, 7), 21, 3)],
)
def test_size_dims_len(shape, size, dims):
    s = Shape(shape, sig_dims=1)
    assert s.size == size
    assert s.dims == dims
    assert len(s) == dims
    assert list(s) == list(shape)
    assert s[0] == shape[0]
    assert s[-1] == shape[-1]
    assert s[1:] == shape[1:]


def test_nav_and_sig_sizes():
    s = Shape((16, 32, 64, 48), sig_dims=2)
    assert s.nav.size == 512
    assert s.sig.size == 64 * 48


def test_equality_with_shape():
    a = Shape((4, 5, 6), sig_dims=2)
    assert a == Shape((4, 5, 6), sig_dims=2)
    assert a == Shape([4, 5, 6], sig_dims=2)
    assert a != Shape((4, 5, 6), sig_dims=1)
    assert a != Shape((4, 5, 7), sig_dims=2)


def test_equality_with_tuple_and_list():
    a = Shape((4, 5, 6), sig_dims=2)
    assert a == (4, 5, 6)
    assert (4, 5, 6) == a
    assert a == [4, 5, 6]
    assert a != (4, 5)
    assert a != (4, 5, 6, 1)
    assert a != (6, 5, 4)


@pytest.mark.parametrize("other", ["456", 456, None, 4.5, {4: 5}])
def test_not_equal_to_unrelated(other):
    a = Shape((4, 5, 6), sig_dims=2)
    assert not (a == other)
    assert a != other


def test_hash():
    a = Shape((4, 5, 6), sig_dims=2)
    b = Shape((4, 5, 6), sig_dims=2)
    assert hash(a) == hash(b)
    d = {a: "x"}
    assert d[b] == "x"
    assert len({a, b, Shape((4, 5, 6), sig_dims=1)}) == 2


@pytest.mark.parametrize("attr", ["_shape", "_sig_dims", "sig_dims", "new_attribute"])
def test_immutable(attr):
    s = Shape((4, 5, 6), sig_dims=2)
    with pytest.raises(AttributeError):
        setattr(s, attr, (1, 2, 3))
    assert s == Shape((4, 5, 6), sig_dims=2)


@pytest.mark.parametrize("shape, sig_dims", [((4, 5, 6), 2), ((7,), 1), ((3, 3), 0)])
def test_pickle_roundtrip(shape, sig_dims):
    s = Shape(shape, sig_dims=sig_dims)
    for proto in range(2, pickle.HIGHEST_PROTOCOL + 1):
        s2 = pickle.loads(pickle.dumps(s, protocol=proto))
        assert s2 == s
        assert s2.sig_dims == sig_dims
        assert hash(s2) == hash(s)
    assert copy.deepcopy(s) == s
    assert copy.copy(s) == s


@pytest.mark.parametrize("sig_dims", [-1, 4, 10])
def test_invalid_sig_dims(sig_dims):
    with pytest.raises(ValueError, match="sig_dims"):
        Shape((4, 5, 6), sig_dims=sig_dims)


def test_repr():
    s = Shape((4, 5, 6), sig_dims=2)
    assert repr(s) == "Shape((4, 5, 6), sig_dims=2)"
