"""ROI forms LiberTEM accepts, through ``run_udf``: results equal numpy on the same positions.

Every form (bool array of the nav shape or flat, 0/1 int and float arrays, a ``(y, x)``
coordinate, a list of coordinates, LiberTEM's ``[((y, x), value), ...]``, scipy.sparse and
pydata ``sparse`` arrays, ``ds.roi[...]``) is turned into the bool mask it means, and the
results of a run with it are compared with numpy on that mask. Bad forms raise one
:class:`~udfkit.errors.ROIError` that names what was given.
"""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse
import sparse
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from udfkit import Context, ROIError
from udfkit.common import parse_roi
from udfkit.testing import SharedContexts
from udfkit.testing.profiles import examples
from udfkit.udf import SumSigUDF, SumUDF

shared_context = SharedContexts({"threads": ("threads", {"cpus": 2}),
                                 "processes": ("processes", {"cpus": 2})})
_close_shared_contexts = shared_context.closing_fixture()


@pytest.fixture(scope="module")
def ctx():
    with Context.make_with("inline") as c:
        yield c


def _forms(mask: np.ndarray) -> dict:
    """Every way of writing the nav-shaped bool ``mask`` (2D nav)."""
    coords = [tuple(int(i) for i in c) for c in np.argwhere(mask)]
    forms = {
        "bool": mask,
        "bool-flat": mask.reshape(-1),
        "int": mask.astype(np.int64),
        "uint8-flat": mask.reshape(-1).astype(np.uint8),
        "float": mask.astype(np.float32),
        "coords": coords,
        "pairs-true": [(c, True) for c in coords],
        "pairs-false": [(tuple(int(i) for i in c), False) for c in np.argwhere(~mask)],
        "scipy-csr": scipy.sparse.csr_matrix(mask),
        "scipy-coo-array": scipy.sparse.coo_array(mask),
        "scipy-flat-row": scipy.sparse.csr_matrix(mask.reshape(1, -1)),
        "sparse-coo": sparse.COO.from_numpy(mask),
        "sparse-gcxs": sparse.GCXS.from_numpy(mask),
        "nested-list": mask.tolist(),
    }
    if len(coords) == 1:
        forms["tuple"] = coords[0]
        forms["list-of-ints"] = list(coords[0])
    if not (~mask).any():
        del forms["pairs-false"]  # an empty list of excluded points means "nothing", not "all"
    return forms


def _check(ctx, data, roi, mask):
    ds = ctx.load("memory", data=data, num_partitions=3)
    res_sum, res_sig = ctx.run_udf(ds, [SumUDF(), SumSigUDF()], roi)
    flat = mask.reshape(-1)
    frames = data.reshape((-1,) + data.shape[2:])[flat].astype(np.float64)
    np.testing.assert_allclose(res_sum["intensity"].data, frames.sum(axis=0))
    sig = res_sig["intensity"]
    np.testing.assert_array_equal(sig.valid_mask, mask)
    np.testing.assert_allclose(sig.raw_data, frames.sum(axis=(1, 2)))
    assert np.isnan(sig.data[~mask]).all()


@pytest.mark.parametrize("form", sorted(_forms(np.eye(3, 4, dtype=bool))))
def test_every_form_gives_numpy_results(ctx, form):
    data = np.arange(3 * 4 * 5 * 6, dtype=np.uint16).reshape(3, 4, 5, 6)
    mask = np.eye(3, 4, dtype=bool)
    _check(ctx, data, _forms(mask)[form], mask)


@pytest.mark.parametrize("form", ["tuple", "list-of-ints", "coords", "pairs-true", "sparse-coo"])
def test_single_position_forms(ctx, form):
    data = np.arange(3 * 4 * 2 * 2, dtype=np.float32).reshape(3, 4, 2, 2)
    mask = np.zeros((3, 4), dtype=bool)
    mask[2, 1] = True
    _check(ctx, data, _forms(mask)[form], mask)


def test_dataset_roi_shortcut(ctx):
    data = np.arange(4 * 5 * 2 * 2, dtype=np.int32).reshape(4, 5, 2, 2)
    ds = ctx.load("memory", data=data)
    mask = np.zeros((4, 5), dtype=bool)
    mask[1:3, 2:] = True
    np.testing.assert_array_equal(ds.roi[1:3, 2:], mask)
    _check(ctx, data, ds.roi[1:3, 2:], mask)


def test_one_dimensional_nav(ctx):
    data = np.arange(7 * 3 * 3, dtype=np.uint8).reshape(7, 3, 3)
    ds = ctx.load("memory", data=data, sig_dims=2)
    for roi in [(4,), [(1,), (4,)], [((1,), True), ((4,), True)]]:
        res = ctx.run_udf(ds, SumSigUDF(), roi=roi)["intensity"]
        pos = [4] if roi == (4,) else [1, 4]
        np.testing.assert_array_equal(np.flatnonzero(res.valid_mask), pos)
        np.testing.assert_allclose(res.raw_data, data[pos].sum(axis=(1, 2)))


def test_nested_lists_are_masks_not_coordinates(ctx):
    """``mask.astype(int).tolist()`` is a mask even where its rows look like (y, x) pairs."""
    mask = np.array([[1, 1], [0, 0], [0, 1]])
    data = np.arange(3 * 2 * 2 * 2, dtype=np.uint8).reshape(3, 2, 2, 2)
    _check(ctx, data, mask.tolist(), mask.astype(bool))
    # as tuples, the same numbers are coordinates
    coords = np.zeros((3, 2), bool)
    coords[1, 1] = coords[0, 0] = True
    np.testing.assert_array_equal(parse_roi([(1, 1), (0, 0)], (3, 2)), coords.reshape(-1))


def test_roi_is_copied(ctx):
    """Changing the user's array after the call changes nothing (LiberTEM copies too)."""
    roi = np.zeros((3, 3), dtype=bool)
    roi[0, 0] = True
    parsed = parse_roi(roi, (3, 3))
    roi[:] = True
    assert parsed.sum() == 1


@settings(max_examples=examples(25), deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_forms_agree_with_bool_mask(data):
    """Property: every form parses to exactly the mask it was made from."""
    ny = data.draw(st.integers(1, 5))
    nx = data.draw(st.integers(1, 5))
    bits = data.draw(st.lists(st.booleans(), min_size=ny * nx, max_size=ny * nx))
    mask = np.array(bits, dtype=bool).reshape(ny, nx)
    forms = _forms(mask)
    name = data.draw(st.sampled_from(sorted(forms)))
    np.testing.assert_array_equal(parse_roi(forms[name], (ny, nx)), mask.reshape(-1), err_msg=name)


@settings(max_examples=examples(15), deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_runs_with_drawn_forms_equal_numpy(ctx, data):
    """Property: a run with any form of a drawn mask, over drawn partitions, equals numpy."""
    ny = data.draw(st.integers(1, 4))
    nx = data.draw(st.integers(1, 5))
    bits = data.draw(st.lists(st.booleans(), min_size=ny * nx, max_size=ny * nx))
    mask = np.array(bits, dtype=bool).reshape(ny, nx)
    forms = _forms(mask)
    name = data.draw(st.sampled_from(sorted(forms)))
    parts = data.draw(st.integers(1, ny * nx))
    frames = np.arange(ny * nx * 3 * 2, dtype=np.int16).reshape(ny, nx, 3, 2) - 20
    ds = ctx.load("memory", data=frames, num_partitions=parts)
    res = ctx.run_udf(ds, SumSigUDF(), roi=forms[name])["intensity"]
    np.testing.assert_array_equal(res.valid_mask, mask, err_msg=name)
    np.testing.assert_array_equal(res.raw_data, frames[mask].sum(axis=(1, 2)), err_msg=name)


@pytest.mark.parametrize("roi, match", [
    ((3, 0), r"coordinate \(3, 0\) lies outside the nav shape \(3, 4\)"),
    ([(0, 0), (0, 9)], r"coordinate \(0, 9\) lies outside"),
    ([((0, 0), True), ((1, 1), False)], "one truth value for all, got both True and False"),
    (np.full((3, 4), 2), r"\(or one of 0 and 1\), got dtype int64 with values \[2\]"),
    (np.full((3, 4), np.nan), "got dtype float64 with values"),
    (np.ones((4, 3), bool), r"nav shape \(3, 4\) or flat with 12 entries, got shape \(4, 3\)"),
    (scipy.sparse.csr_matrix(np.ones((2, 2))), r"got shape \(2, 2\)"),
    (sparse.COO.from_numpy(np.ones(5, bool)), r"got shape \(5,\)"),
    ("all", "got str 'all'"),
    (1, "got int 1"),
    ({"y": 1}, "got dict"),
    ([(0, 0, 0)], "expected"),
])
def test_bad_forms_raise_one_clear_error(ctx, roi, match):
    ds = ctx.load("memory", data=np.zeros((3, 4, 2, 2)))
    with pytest.raises(ROIError, match=match) as info:
        ctx.run_udf(ds, SumSigUDF(), roi=roi)
    assert "roi" in str(info.value)
    assert "\n" not in str(info.value)
    # and the Context stays usable
    assert ctx.run_udf(ds, SumSigUDF())["intensity"].data.shape == (3, 4)


def test_empty_coordinate_list_selects_nothing(ctx):
    ds = ctx.load("memory", data=np.ones((2, 2, 2, 2)))
    res = ctx.run_udf(ds, SumSigUDF(), roi=[])["intensity"]
    assert res.raw_data.shape == (0,)
    assert not res.valid_mask.any()


@pytest.mark.parametrize("kind", ["threads", pytest.param("processes", marks=pytest.mark.slow)])
def test_roi_on_worker_executors(kind):
    """The sparse and coordinate forms reach workers as masks: same results everywhere."""
    data = np.arange(4 * 4 * 3 * 3, dtype=np.uint16).reshape(4, 4, 3, 3)
    mask = np.zeros((4, 4), dtype=bool)
    mask[[0, 1, 3], [2, 0, 3]] = True
    c = shared_context(kind)
    for roi in (sparse.COO.from_numpy(mask), [(0, 2), (1, 0), (3, 3)]):
        _check(c, data, roi, mask)
