"""``udfkit.common.math``: LiberTEM's integer and nonzero helpers, for dense and sparse input."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
from hypothesis import given, settings
from hypothesis import strategies as st

from udfkit.common.math import count_nonzero, flat_nonzero, make_2D_square, ndenumerate, prod
from udfkit.testing.profiles import examples


@settings(max_examples=examples(50), deadline=None)
@given(st.lists(st.integers(0, 2**40), max_size=5))
def test_prod_is_exact(items):
    expected = 1
    for i in items:
        expected *= i
    assert prod(items) == expected and type(prod(items)) is int
    # numpy integers are taken exactly too, and their product does not wrap at 64 bits
    assert prod(np.array(items, dtype=np.uint64)) == expected


def test_prod_does_not_wrap_where_numpy_does():
    shape = np.array([2**20, 2**20, 2**10], dtype=np.int32)
    assert prod(shape) == 2**50
    assert prod([True, 3, np.int8(2)]) == 6


@pytest.mark.parametrize("bad", [1.5, "3", None, np.float32(2)])
def test_prod_rejects_non_integers(bad):
    with pytest.raises(ValueError, match="integers"):
        prod([2, bad])


def sparse_forms(a):
    import sparse

    forms = [("numpy", a), ("pydata", sparse.COO.from_numpy(a))]
    if a.ndim == 2:
        forms += [("csr", sp.csr_matrix(a)), ("coo_array", sp.coo_array(a)), ("csc", sp.csc_matrix(a))]
    return forms


@settings(max_examples=examples(12), deadline=None)
@given(st.integers(0, 2**32 - 1), st.sampled_from([(5,), (3, 4), (2, 3, 4)]))
def test_nonzero_helpers_on_every_form(seed, shape):
    rng = np.random.default_rng(seed)
    a = rng.integers(0, 3, size=shape) * (rng.random(shape) < 0.5)
    ref_flat = np.flatnonzero(a)
    for name, form in sparse_forms(a):
        assert count_nonzero(form) == np.count_nonzero(a), name
        np.testing.assert_array_equal(flat_nonzero(form), ref_flat, err_msg=name)
        if name == "numpy":
            assert list(ndenumerate(form)) == list(np.ndenumerate(a))
        else:
            pairs = [(idx, float(v)) for idx, v in ndenumerate(form)]
            expected = [(tuple(int(i) for i in np.unravel_index(j, shape)), float(a.flat[j]))
                        for j in ref_flat]
            assert pairs == expected, name


@pytest.mark.parametrize("shape, expected", [
    ((1,), (1, 1)), ((16,), (4, 4)), ((15,), (15,)), ((2, 8), (2, 8)), ((4096,), (64, 64)),
    ((2**40,), (2**20, 2**20)), ((2**40 + 1,), (2**40 + 1,)), ((), ()),
])
def test_make_2D_square(shape, expected):  # noqa: N802
    got = make_2D_square(shape)
    assert got == expected
    assert all(type(v) is int for v in got)


def test_make_2D_square_rejects_empty():
    with pytest.raises(ValueError, match="size"):
        make_2D_square((0,))
