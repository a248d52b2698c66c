"""ApplyMasksUDF's numba paths (``udfkit.udf.builtins._mask_paths``) against numpy.

The dense 4×4-blocked kernel (float32 masks) and the gather kernel (integer data,
masks that are zero on most pixels) read 8/16-bit integers and float32 as stored; every
drawn case asserts which path ran and compares with the float64 product on the whole array,
within float32 rounding (the tolerance of ``test_builtins_properties.check_masks``).
"""

from __future__ import annotations

import tempfile
from math import prod

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from udfkit import Context, CorrectionSet
from udfkit.testing import ALL_EXECUTORS, SharedContexts
from udfkit.testing.profiles import examples
from udfkit.testing.strategies import assert_nav_rows, cases, load
from udfkit.udf import ApplyMasksUDF
from udfkit.udf.builtins import _mask_paths
from udfkit.udf.builtins._mask_paths import choose_path, gather_plan

SETTINGS = dict(deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                        HealthCheck.data_too_large])
EXECUTORS = {k: ALL_EXECUTORS[k] for k in ("inline", "inline-debug", "threads", "processes")}
shared_context = SharedContexts(EXECUTORS)
_close_shared_contexts = shared_context.closing_fixture()

#: the stored dtypes of the brief: all read as stored by the kernels except uint32 / float64,
#: which keep the float32-then-BLAS (or float64) path and check that the choice holds
DTYPES = ["uint8", "int8", "uint16", ">u2", "int16", "uint32", "float32", ">f4", "float64"]


@st.composite
def kernel_masks(draw, sig_shape):
    """``(kind, stack)``: ``"dense"`` 1-9 float or bool masks, or ``"support"``: 1-4 masks that
    are non-zero on at most a fifth of the pixels (maybe none)."""
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    n_px = prod(sig_shape)
    kind = draw(st.sampled_from(["dense", "support"]))
    if kind == "dense":
        count = draw(st.integers(1, 9))
        if draw(st.booleans()):
            return kind, rng.random((count,) + sig_shape) < 0.5
        return kind, rng.integers(-8, 9, size=(count,) + sig_shape) / 4
    count = draw(st.integers(1, 4))
    used = draw(st.integers(0, n_px // 5))
    pixels = rng.choice(n_px, size=used, replace=False)
    stack = np.zeros((count, n_px))
    stack[:, pixels] = rng.integers(-8, 9, size=(count, used)) / 4
    return kind, stack.reshape((count,) + sig_shape)


def expected_path(stack, dtype, compute):
    """The path the rules of ``_mask_paths`` give for the drawn case."""
    if np.result_type(dtype, compute) != compute:
        return "blas"
    density = np.any(stack.reshape(len(stack), -1) != 0, axis=0).mean()
    if density <= _mask_paths.GATHER_MAX_DENSITY and dtype.kind in "iu":
        return "gather"
    return "dense" if compute == np.float32 and (dtype.kind in "iu" or len(stack) >= 2) else "blas"


def check_product(res, case, stack, *, frames=None, tol=2e-4):
    flat = case.flat if frames is None else frames
    matrix = stack.reshape(stack.shape[0], -1).astype(np.float64)
    expected = flat @ matrix.T
    scale = np.abs(flat) @ np.abs(matrix).T
    r = res["intensity"]
    assert_nav_rows(r, expected, case, rtol=0, atol=tol * float(scale.max(initial=0)) + 1e-300)
    got = r.data.reshape(-1, stack.shape[0])[case.processed]
    assert (np.abs(got - expected) <= tol * scale + 1e-300).all()


@settings(max_examples=examples(80), **SETTINGS)
@given(case=cases(dtypes=DTYPES, max_sig_dims=2, max_sig=12), data=st.data(),
       executor=st.sampled_from(sorted(EXECUTORS)))
def test_kernel_paths_equal_numpy(case, data, executor):
    """Drawn data sets (formats, partitions, tile shapes, ROIs, sync_offset, missing frames),
    dense and small-support masks, mask_dtype None (the masks' float64 / bool) or float32:
    the result equals numpy's product, has LiberTEM's dtype (float32 input promoted with the
    masks) and the expected path ran."""
    kind, stack = data.draw(kernel_masks(case.sig_shape), label="masks")
    mask_dtype = data.draw(st.sampled_from([None, "float32"]), label="mask_dtype")
    own = stack.dtype if mask_dtype is None else np.dtype(mask_dtype)
    udf = ApplyMasksUDF(mask_factories=lambda: stack, mask_dtype=mask_dtype)
    with tempfile.TemporaryDirectory() as tmpdir:
        ctx = shared_context(executor)
        ds = load(ctx, case, tmpdir)
        res = ctx.run_udf(dataset=ds, udf=udf, roi=case.roi)
        plan = ctx.plan(dataset=ds, udf=ApplyMasksUDF(mask_factories=lambda: stack,
                                                      mask_dtype=mask_dtype), roi=case.roi)
    native = case.native_dtype.newbyteorder("=")
    path = expected_path(stack, native, np.result_type(np.float32, own))
    compute = np.result_type(np.float32, own, native)
    assert res["intensity"].data.dtype == compute
    assert plan.udfs[0].input_dtype == (native if path != "blas" else compute)
    check_product(res, case, stack, tol=2e-4 if compute == np.float32 else 1e-12)


@pytest.mark.parametrize("kind", ["dense", "support"])
@pytest.mark.parametrize("dtype", ["uint16", "int16", "float32"])
def test_kernel_paths_with_corrections(kind, dtype):
    """Dark and gain make the frames float32; the kernels then read those."""
    rng = np.random.default_rng(5)
    data = rng.integers(0, 3000, size=(5, 7, 13, 11)).astype(dtype)
    dark = rng.integers(-20, 21, size=(13, 11)) / 4
    gain = rng.integers(1, 17, size=(13, 11)) / 8
    if kind == "dense":
        stack = rng.integers(-8, 9, size=(6, 13, 11)).astype(np.float32) / 4
    else:
        stack = np.zeros((2, 13, 11), np.float32)
        stack[:, 3:6, 2:5] = rng.integers(1, 9, size=(2, 3, 3))
    ctx = Context.make_with("inline")
    ds = ctx.load("memory", data=data, num_partitions=3, tileshape=(4, 5, 11))
    res = ctx.run_udf(dataset=ds, udf=ApplyMasksUDF(mask_factories=stack),
                      corrections=CorrectionSet(dark=dark, gain=gain))
    frames = ((data.astype(np.float64) - dark) * gain).reshape(35, -1)
    expected = frames @ stack.reshape(len(stack), -1).T.astype(np.float64)
    got = res["intensity"].data.reshape(35, -1)
    assert got.dtype == np.float32
    scale = np.abs(frames) @ np.abs(stack.reshape(len(stack), -1)).T
    assert (np.abs(got - expected) <= 2e-4 * scale + 1e-30).all()


def test_gather_reads_only_used_pixels():
    """A disk mask on a memory-mapped uint16 file: the gather path runs and the result is
    exact (small integer sums in float32)."""
    from udfkit.masks import circular

    rng = np.random.default_rng(2)
    data = rng.integers(0, 1000, size=(4, 6, 32, 32)).astype(np.uint16)
    disk = circular(16, 16, 32, 32, 5)
    with tempfile.TemporaryDirectory() as tmpdir:
        path = f"{tmpdir}/d.raw"
        data.tofile(path)
        ctx = Context.make_with("inline")
        ds = ctx.load("raw", path=path, dtype="uint16", nav_shape=(4, 6), sig_shape=(32, 32))
        udf = ApplyMasksUDF(mask_factories=[lambda: disk])
        assert udf is not None
        res = ctx.run_udf(dataset=ds, udf=udf)
        assert choose_path(udf.masks, np.uint16, np.float32, None) == "gather"
    expected = (data.astype(np.float64) * disk).sum(axis=(2, 3))
    np.testing.assert_array_equal(res["intensity"].data[..., 0], expected)


def test_float_data_with_small_support_keeps_nan_like_numpy():
    """On float data a NaN where the mask is 0 still gives NaN (numpy's 0 * NaN), so the
    gather path, which skips such pixels, is not taken for floats."""
    data = np.ones((2, 3, 8, 8), np.float32)
    data[0, 0, 7, 7] = np.nan
    mask = np.zeros((8, 8), np.float32)
    mask[:2, :2] = 1
    ctx = Context.make_with("inline")
    res = ctx.run_udf(dataset=ctx.load("memory", data=data),
                      udf=ApplyMasksUDF(mask_factories=[lambda: mask]))
    got = res["intensity"].data[..., 0]
    assert np.isnan(got[0, 0]) and np.isnan(data[0, 0].ravel() @ mask.ravel())
    np.testing.assert_array_equal(got.ravel()[1:], 4.0)


@pytest.mark.parametrize("width", [1, 3, 7])
def test_gather_plan_runs_stay_in_rows(width):
    rng = np.random.default_rng(width)
    cut = np.where(rng.random((3, 5 * width)) < 0.3, rng.normal(size=(3, 5 * width)), 0)
    starts, lengths, values = gather_plan(cut, width)
    used = np.flatnonzero(np.any(cut != 0, axis=0))
    pixels = np.concatenate([np.arange(s, s + n) for s, n in zip(starts, lengths)] or [[]])
    np.testing.assert_array_equal(pixels, used)
    assert all((s // width) == ((s + n - 1) // width) for s, n in zip(starts, lengths))
    np.testing.assert_array_equal(values, cut[:, used])


def test_explicit_sparse_format_keeps_blas():
    masks = np.zeros((1, 8, 8))
    masks[0, 1, 1] = 1
    udf = ApplyMasksUDF(mask_factories=masks, use_sparse=True)
    ctx = Context.make_with("inline")
    ds = ctx.load("memory", data=np.ones((2, 2, 8, 8), np.uint16))
    ctx.run_udf(dataset=ds, udf=udf)
    assert choose_path(udf.masks, np.uint16, np.float32, True) == "blas"
    assert _mask_paths.mask_density(udf.masks) == 1 / 64


@pytest.mark.parametrize("kind", ["dense", "support"])
@pytest.mark.parametrize("threads", [2, 3])
def test_kernels_split_frames_over_blas_threads(monkeypatch, kind, threads):
    """Where BLAS may use several threads, the kernels split the frames as many ways."""
    from udfkit.udf.builtins import masks as masks_module

    monkeypatch.setattr(masks_module, "_BIG_PARTITION", 0)
    monkeypatch.setattr(masks_module, "blas_threads", lambda: threads)
    calls = []
    run = _mask_paths._run
    monkeypatch.setattr(_mask_paths, "_run", lambda k, t, o: (calls.append(t.shape[0]), run(k, t, o)))
    rng = np.random.default_rng(11)
    data = rng.integers(0, 500, size=(7, 9, 10, 12)).astype(np.uint16)
    stack = rng.integers(-4, 5, size=(5, 10, 12)).astype(np.float32)
    if kind == "support":
        stack[:, 2:] = 0
    ctx = Context.make_with("inline")
    ds = ctx.load("memory", data=data, num_partitions=2, tileshape=(31, 10, 12))
    got = ctx.run_udf(dataset=ds, udf=ApplyMasksUDF(mask_factories=stack))["intensity"].data
    expected = np.einsum("abij,kij->abk", data.astype(np.float64), stack.astype(np.float64))
    np.testing.assert_allclose(got, expected, rtol=1e-6)
    assert max(calls) < 31 and len(calls) > 2


@pytest.mark.parametrize("executor", ["inline", "threads"])
@pytest.mark.parametrize("kind", ["dense", "support", "blas"])
def test_array_masks_hashed_once_per_run_and_changes_in_place_seen(monkeypatch, executor, kind):
    """Array masks are looked up by content once per run (planning), not per task, nor are
    the kernels' cuts made again per task; masks changed in place between runs are seen."""
    from udfkit.udf.builtins import masks as masks_module

    hashes, cuts = [], []
    content_hash = masks_module._content_hash
    monkeypatch.setattr(masks_module, "_content_hash", lambda obj: (hashes.append(1), content_hash(obj))[1])
    padded = _mask_paths.padded_masks
    monkeypatch.setattr(_mask_paths, "padded_masks", lambda c: (cuts.append(1), padded(c))[1])
    plan = _mask_paths.gather_plan
    monkeypatch.setattr(_mask_paths, "gather_plan", lambda c, w: (cuts.append(1), plan(c, w))[1])
    # other masks in every case: the containers of earlier cases stay cached in the process
    rng = np.random.default_rng(["inline", "threads"].index(executor) * 3
                                + ["dense", "support", "blas"].index(kind) + 40)
    data = rng.integers(0, 500, size=(4, 6, 10, 12)).astype(np.uint16 if kind != "blas" else np.float64)
    stack = rng.integers(-4, 5, size=(3, 10, 12)).astype(np.float32 if kind != "blas" else np.float64)
    if kind == "support":
        stack[:, 1:] = 0
    ctx = shared_context(executor)
    ds = ctx.load("memory", data=data, num_partitions=6, tileshape=(2, 5, 12))
    for run in range(2):
        udf = ApplyMasksUDF(mask_factories=stack)
        got = ctx.run_udf(dataset=ds, udf=udf)["intensity"].data
        expected = np.einsum("abij,kij->abk", data.astype(np.float64), stack.astype(np.float64))
        np.testing.assert_allclose(got, expected, rtol=1e-6)
        assert len(hashes) == run + 1, hashes  # planning only
        stack *= 2  # in place: the next run must see it
    if kind != "blas":
        assert len(cuts) == 2 * 2  # two sig slices, once per content


def test_one_mask_array_in_two_settings_hashed_once_per_run_each(monkeypatch):
    """Two ApplyMasksUDFs of one run share a mask array with other settings (dense and
    sparse): each setting is looked up by content once per run, not once per task."""
    from udfkit.udf.builtins import masks as masks_module

    hashes = []
    content_hash = masks_module._content_hash
    monkeypatch.setattr(masks_module, "_content_hash", lambda obj: (hashes.append(1), content_hash(obj))[1])
    rng = np.random.default_rng(77)
    data = rng.integers(0, 500, size=(3, 8, 6, 5)).astype(np.uint16)
    stack = rng.integers(-4, 5, size=(2, 6, 5)).astype(np.float32)
    ctx = shared_context("inline")
    ds = ctx.load("memory", data=data, num_partitions=6)
    udfs = [ApplyMasksUDF(mask_factories=stack, use_sparse=False),
            ApplyMasksUDF(mask_factories=stack, use_sparse=True)]
    res = ctx.run_udf(dataset=ds, udf=udfs)
    expected = np.einsum("abij,kij->abk", data.astype(np.float64), stack.astype(np.float64))
    for r in res:
        np.testing.assert_allclose(r["intensity"].data, expected, rtol=1e-6)
    assert len(hashes) == 2, hashes
