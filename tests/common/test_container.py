"""``udfkit.common.container.MaskContainer``: the factory forms LiberTEM and udfkit accept,
lazy evaluation, dtype and sparse-format resolution, and the per-slice cuts (every format)
against numpy slicing of the stacked masks."""

from __future__ import annotations

import pickle

import cloudpickle
import numpy as np
import pytest
import scipy.sparse as sp
from hypothesis import given, settings
from hypothesis import strategies as st

from udfkit.common import Shape, Slice
from udfkit.common.container import SPARSE_FORMATS, MaskContainer
from udfkit.errors import MaskError, UDFError
from udfkit.io.tiling import TilingScheme
from udfkit.testing.profiles import examples

SIG = (6, 5)
RNG = np.random.default_rng(11)
STACK = RNG.normal(size=(3,) + SIG) * (RNG.random((3,) + SIG) < 0.6)


class Counting:
    """A factory that counts its calls (to check that masks are made lazily)."""

    def __init__(self, value):
        self.value = value
        self.calls = 0

    def __call__(self):
        self.calls += 1
        return self.value


def forms():
    import sparse

    return {
        "callables": [(lambda i=i: STACK[i]) for i in range(3)],
        "one_callable_stack": lambda: STACK,
        "callable_returning_list": lambda: [STACK[0], STACK[1], STACK[2]],
        "array_stack": STACK,
        "list_of_arrays": [STACK[0], STACK[1], STACK[2]],
        "scipy": [(lambda i=i: sp.csr_matrix(STACK[i])) for i in range(3)],
        "pydata": [(lambda i=i: sparse.COO.from_numpy(STACK[i])) for i in range(3)],
        "pydata_stack": lambda: sparse.COO.from_numpy(STACK),
        "mixed": [STACK[0], lambda: sp.coo_array(STACK[1]), sparse.COO.from_numpy(STACK[2])],
    }


ALL_SPARSE = {"scipy", "pydata", "pydata_stack"}


@pytest.mark.parametrize("form", sorted(forms()))
@pytest.mark.parametrize("sig_shape", [None, SIG], ids=["libertem_rule", "with_sig_shape"])
def test_forms_stack_the_same_masks(form, sig_shape):
    c = MaskContainer(forms()[form], sig_shape=sig_shape)
    assert len(c) == 3
    assert c.use_sparse == ("scipy.sparse" if form in ALL_SPARSE else False)
    assert c.dtype == np.float64
    computed = c.computed_masks
    dense = computed if isinstance(computed, np.ndarray) else computed.todense()
    np.testing.assert_array_equal(dense, STACK)


def cut_reference(sl: Slice, transpose=True):
    part = STACK[(slice(None),) + sl.get()].reshape(3, -1)
    return part.T if transpose else part


def to_array(x):
    if isinstance(x, np.ndarray):
        return x
    return x.toarray() if hasattr(x, "toarray") else x.todense()


@settings(max_examples=examples(15), deadline=None)
@given(y0=st.integers(0, 5), x0=st.integers(0, 4), h=st.integers(1, 6), w=st.integers(1, 5),
       fmt=st.sampled_from([False, *SPARSE_FORMATS]), transpose=st.booleans(),
       dtype=st.sampled_from([None, np.float32, np.complex128]))
def test_cuts_equal_numpy_slicing(y0, x0, h, w, fmt, transpose, dtype):
    import sparse

    h, w = min(h, SIG[0] - y0), min(w, SIG[1] - x0)
    sl = Slice((y0, x0), Shape((h, w), sig_dims=2))
    c = MaskContainer([(lambda i=i: STACK[i]) for i in range(3)], use_sparse=fmt, dtype=dtype)
    got = c.get(sl, transpose=transpose)
    expected_type = {False: np.ndarray, "scipy.sparse": sp.csr_matrix, "scipy.sparse.csr": sp.csr_matrix,
                     "scipy.sparse.csc": sp.csc_matrix, "sparse.pydata": sparse.COO,
                     "sparse.pydata.GCXS": sparse.GCXS}[fmt]
    assert isinstance(got, expected_type)
    assert got.dtype == np.dtype(np.float64 if dtype is None else dtype)
    np.testing.assert_allclose(to_array(got), cut_reference(sl, transpose), rtol=1e-6)
    # cached: the same object for the same request
    assert c.get(sl, transpose=transpose) is got


def test_get_discards_nav_and_get_for_idx_walks_a_scheme():
    c = MaskContainer(lambda: STACK, dtype=np.float32)
    tile_slice = Slice((7, 2, 0), Shape((4, 3, 5), sig_dims=2))  # frames 7-10, rows 2-4
    np.testing.assert_array_equal(c.get(tile_slice), cut_reference(tile_slice.sig).astype(np.float32))
    scheme = TilingScheme.make(SIG, (2, 5), depth=4, intent="tile")
    pieces = [c.get_for_idx(scheme, i) for i in range(len(scheme))]
    np.testing.assert_array_equal(np.concatenate(pieces, axis=0), STACK.reshape(3, -1).T.astype(np.float32))
    with pytest.raises(MaskError, match="Slice"):
        c.get((slice(0, 2), slice(0, 5)))


def test_lazy_factories_and_count():
    f = Counting(STACK)
    c = MaskContainer(f, count=3, dtype=np.float32, use_sparse=False)
    assert (len(c), c.dtype, c.use_sparse) == (3, np.float32, False)
    assert f.calls == 0, "count, dtype and use_sparse given: no factory call needed"
    c.get_for_sig_slice(Slice((0, 0), Shape(SIG, sig_dims=2)))
    assert f.calls == 1
    c.get_for_sig_slice(Slice((0, 0), Shape((1, 5), sig_dims=2)))
    assert f.calls == 1, "the stack is made once"


def test_pickle_leaves_the_masks_behind():
    big = np.zeros((50, 60, 50))
    c = MaskContainer(lambda: big + 1, use_sparse=False)  # builds a new 1.2 MB stack
    before = len(cloudpickle.dumps(c))
    assert len(c) == 50
    c.get_for_sig_slice(Slice((0, 0), Shape((60, 50), sig_dims=2)))  # a cut of the same size
    after = len(cloudpickle.dumps(c))
    assert after == before, "computed masks and cuts must not travel"
    again = cloudpickle.loads(cloudpickle.dumps(c))
    np.testing.assert_array_equal(again.computed_masks, big + 1)
    assert pickle.loads(pickle.dumps(MaskContainer(STACK))).dtype == np.float64


def test_dtype_promotion_and_default_sparse():
    c = MaskContainer([lambda: np.ones(SIG, bool), lambda: np.ones(SIG, np.int16)])
    assert c.dtype == np.int16
    c = MaskContainer([lambda: np.ones(SIG, bool)], use_sparse=True, default_sparse="scipy.sparse.csc")
    assert c.use_sparse == "scipy.sparse.csc"
    assert isinstance(c.get_for_sig_slice(Slice((0, 0), Shape(SIG, sig_dims=2))), sp.csc_matrix)
    # all sparse, use_sparse None: the default format; any dense mask: dense
    assert MaskContainer([sp.csr_matrix(STACK[0])]).use_sparse == "scipy.sparse"
    assert MaskContainer([sp.csr_matrix(STACK[0]), STACK[1]]).use_sparse is False


def test_rows_form_for_non_2d_signals():
    sig = (2, 3, 4)
    masks = RNG.normal(size=(2,) + sig)
    c = MaskContainer([sp.csr_matrix(masks.reshape(2, -1))], sig_shape=sig)
    assert len(c) == 2
    np.testing.assert_array_equal(c.computed_masks.todense(), masks)


@pytest.mark.parametrize("kwargs, match", [
    (dict(mask_factories=None), "mask_factories"),
    (dict(mask_factories=[STACK[0]], use_sparse="dense"), "use_sparse"),
    (dict(mask_factories=[STACK[0]], use_sparse=1), "use_sparse"),
    (dict(mask_factories=[STACK[0]], backend="cupy"), "numpy"),
    (dict(mask_factories=[STACK[0]], count=-1), "count"),
    (dict(mask_factories=[STACK[0]], dtype="U3"), "numeric"),
    (dict(mask_factories=[STACK[0]], default_sparse="csr"), "default_sparse"),
])
def test_bad_arguments(kwargs, match):
    with pytest.raises(MaskError, match=match):
        MaskContainer(**kwargs)


@pytest.mark.parametrize("factories, kwargs, match", [
    ([STACK[0], np.ones((5, 6))], {}, r"mask 1 .*\(5, 6\).*\(6, 5\)"),
    ([np.ones((5, 6))], {"sig_shape": SIG}, r"\(5, 6\)"),
    (lambda: np.ones(4), {}, "at least 2 axes"),
    ([], {}, "no masks"),
    ([STACK[0]], {"count": 2}, "mask_count=2.*1 masks"),
    ([np.full(SIG, "text")], {}, "dtype <U4"),
    (["text"], {}, r"shape \(\)"),
    (7, {}, "got int"),
])
def test_bad_masks(factories, kwargs, match):
    c = MaskContainer(factories, **kwargs)
    with pytest.raises(MaskError, match=match) as info:
        len(c) if "count" not in kwargs else c.computed_masks  # noqa: B018
    assert isinstance(info.value, UDFError) and isinstance(info.value, ValueError)
