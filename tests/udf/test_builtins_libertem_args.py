"""The built-in UDFs with LiberTEM's arguments, against numpy on several executors, with and
without a ROI: ApplyMasksUDF (use_sparse in every spelling, mask_count, mask_dtype,
preferred_dtype, backends, use_torch, shifts constant and per frame), StdDevUDF(dtype,
use_numba), SumUDF / SumSigUDF(dtype), RecordUDF(filename, _is_master), LiberTEM's run_*
helpers, and the LiberTEM module paths (udfkit.udf.sum, .sumsigudf, .stddev, .masks,
.logsum, .raw, .record)."""

from __future__ import annotations

import importlib
from functools import partial

import numpy as np
import pytest
import scipy.sparse as sp

from udfkit import masks as mk
from udfkit.errors import UDFError
from udfkit.testing import ALL_EXECUTORS, SharedContexts
from udfkit.udf import ApplyMasksUDF, LogsumUDF, PickUDF, RecordUDF, StdDevUDF, SumSigUDF, SumUDF

EXECUTORS = ["inline", "inline-debug", "threads", "processes"]
shared_context = SharedContexts({name: ALL_EXECUTORS[name] for name in EXECUTORS})
#: the detailed tests run inline by default and on the other executors with -m slow;
#: test_every_argument_in_one_pass covers every executor in the default run
EACH_EXECUTOR = ["inline"] + [pytest.param(e, marks=pytest.mark.slow) for e in EXECUTORS[1:]]
_close_contexts = shared_context.closing_fixture()

NAV, SIG = (5, 6), (9, 8)
DATA = np.random.default_rng(5).integers(0, 1000, NAV + SIG).astype(np.uint16)
ROI = np.random.default_rng(6).random(NAV) < 0.4
ROI[0, 0] = True


def run(executor, udf, roi=None, data=DATA, **load):
    ctx = shared_context(executor)
    ds = ctx.load("memory", data=data, num_partitions=3, **load)
    return ctx.run_udf(dataset=ds, udf=udf, roi=roi)


def selected(res_data, roi):
    """The rows of a nav-shaped result at the processed positions."""
    rows = res_data.reshape((-1,) + res_data.shape[len(NAV):])
    return rows if roi is None else rows[roi.reshape(-1)]


def frames(roi, data=DATA):
    flat = data.reshape((-1,) + data.shape[len(NAV):])
    return flat if roi is None else flat[roi.reshape(-1)]


def disk():
    return mk.circular(centerX=4, centerY=4, imageSizeX=SIG[1], imageSizeY=SIG[0], radius=3)


def ring():
    return mk.ring(centerX=3.5, centerY=5, imageSizeX=SIG[1], imageSizeY=SIG[0], radius=4, radius_inner=2)


def gradient():
    return mk.gradient_x(SIG[1], SIG[0], dtype=np.float64) - 3.5


MASKS = np.stack([disk(), ring(), gradient()]).astype(np.float64)


# -- every executor, one pass ----------------------------------------------------------------

@pytest.mark.parametrize("executor", EXECUTORS)
@pytest.mark.parametrize("roi", [None, ROI], ids=["all", "roi"])
def test_every_argument_in_one_pass(executor, roi):
    """LiberTEM's arguments of every built-in, all UDFs in one run per executor and ROI."""
    shifts = np.random.default_rng(9).integers(-4, 5, size=NAV + (2,))
    udfs = [
        ApplyMasksUDF(mask_factories=[disk, ring, gradient], use_sparse="scipy.sparse.csc", mask_count=3),
        ApplyMasksUDF(mask_factories=[disk, ring, gradient], use_sparse="sparse.pydata",
                      mask_dtype=np.float32, backends=("numpy",), use_torch=False),
        ApplyMasksUDF(mask_factories=lambda: MASKS, shifts=(2, -3)),
        ApplyMasksUDF(mask_factories=[disk, ring, gradient], use_sparse=True,
                      shifts=ApplyMasksUDF.aux_data(shifts, kind="nav", extra_shape=(2,), dtype=int)),
        StdDevUDF(dtype=np.float32, use_numba=False),
        StdDevUDF(use_numba=True),
        SumUDF(dtype="int64"),
        SumSigUDF(dtype="float32"),
        ApplyMasksUDF(mask_factories=[disk, ring, gradient], backends=("sparse.COO",)),
    ]
    res = run(executor, udfs, roi)
    f = frames(roi)
    f64 = f.astype(np.float64)
    plain = np.einsum("npq,kpq->nk", f64, MASKS)
    np.testing.assert_allclose(selected(res[0]["intensity"].data, roi), plain, rtol=1e-12, atol=1e-9)
    assert res[1]["intensity"].data.dtype == np.float32
    np.testing.assert_allclose(selected(res[1]["intensity"].data, roi), plain, rtol=1e-5, atol=1e-2)
    np.testing.assert_allclose(selected(res[2]["intensity"].data, roi),
                               shifted_reference(f, MASKS, [(2, -3)] * len(f)), rtol=1e-12, atol=1e-9)
    np.testing.assert_allclose(selected(res[3]["intensity"].data, roi),
                               shifted_reference(f, MASKS, selected(shifts, roi)), rtol=1e-12, atol=1e-9)
    assert res[4]["var"].data.dtype == np.float32
    np.testing.assert_allclose(res[4]["var"].data, f64.var(axis=0), rtol=1e-4)
    np.testing.assert_allclose(res[5]["var"].data, f64.var(axis=0), rtol=1e-10)
    np.testing.assert_array_equal(res[6]["intensity"].data, f.sum(axis=0, dtype=np.int64))
    np.testing.assert_allclose(selected(res[7]["intensity"].data, roi), f64.sum(axis=(1, 2)), rtol=1e-6)
    np.testing.assert_allclose(selected(res[8]["intensity"].data, roi), plain, rtol=1e-12, atol=1e-9)


# -- ApplyMasksUDF -----------------------------------------------------------------------------

@pytest.mark.parametrize("executor", EACH_EXECUTOR)
@pytest.mark.parametrize("use_sparse", [None, False, True, "scipy.sparse", "scipy.sparse.csr",
                                        "scipy.sparse.csc", "sparse.pydata", "sparse.pydata.GCXS"])
@pytest.mark.parametrize("roi", [None, ROI], ids=["all", "roi"])
def test_apply_masks_use_sparse(executor, use_sparse, roi):
    udf = ApplyMasksUDF(mask_factories=[disk, ring, gradient], use_sparse=use_sparse)
    res = run(executor, udf, roi)["intensity"]
    # float64 masks (the gradient) compute in float64, as in LiberTEM
    assert res.data.dtype == np.float64 and res.data.shape == NAV + (3,)
    expected = np.einsum("npq,kpq->nk", frames(roi).astype(np.float64), MASKS)
    np.testing.assert_allclose(selected(res.data, roi), expected, rtol=1e-12, atol=1e-9)
    if roi is not None:
        assert np.isnan(res.data[~ROI]).all()


@pytest.mark.parametrize("executor", ["inline", pytest.param("processes", marks=pytest.mark.slow)])
def test_apply_masks_libertem_doc_forms(executor):
    """LiberTEM's documented forms: one callable returning a list of masks, one returning a
    stack, bool masks from udfkit.masks (float32 result), scipy.sparse masks."""
    def my_masks():
        return [np.ones(SIG), np.zeros(SIG)]

    def my_masks_2():
        masks = np.zeros((2,) + SIG)
        masks[1] = 1
        return masks

    res = run(executor, ApplyMasksUDF(mask_factories=my_masks))["intensity"].data
    assert res.shape == NAV + (2,)
    np.testing.assert_allclose(res[..., 0], DATA.sum(axis=(2, 3)))
    assert np.all(res[..., 1] == 0)
    res2 = run(executor, ApplyMasksUDF(mask_factories=my_masks_2))["intensity"].data
    np.testing.assert_allclose(res2[..., ::-1], res)
    boolean = run(executor, ApplyMasksUDF(mask_factories=[disk, ring]))["intensity"].data
    assert boolean.dtype == np.float32
    np.testing.assert_allclose(boolean, np.einsum("abpq,kpq->abk", DATA.astype(np.float64), MASKS[:2]),
                               rtol=1e-6)
    sparse_res = run(executor, ApplyMasksUDF(mask_factories=[lambda: sp.csr_matrix(disk())]))
    np.testing.assert_allclose(sparse_res["intensity"].data[..., 0], boolean[..., 0], rtol=1e-6)


@pytest.mark.parametrize("mask_dtype, preferred_dtype, data_dtype, result", [
    (None, None, np.uint16, np.float64),          # float64 masks
    (np.float32, None, np.uint16, np.float32),    # LiberTEM: mask_dtype keeps float64 masks float32
    (np.complex64, None, np.uint16, np.complex64),
    (np.int64, np.int64, np.uint16, np.int64),    # integers all the way: exact
    (None, np.float64, np.float32, np.float64),
    (np.float32, ApplyMasksUDF.USE_NATIVE_DTYPE, np.float32, np.float32),
])
@pytest.mark.parametrize("roi", [None, ROI], ids=["all", "roi"])
def test_apply_masks_dtypes(mask_dtype, preferred_dtype, data_dtype, result, roi):
    data = DATA.astype(data_dtype)
    int_masks = np.stack([disk(), ring()]).astype(np.int64) * 3 - 1
    udf = ApplyMasksUDF(mask_factories=lambda: int_masks if mask_dtype == np.int64 else MASKS,
                        mask_dtype=mask_dtype, preferred_dtype=preferred_dtype,
                        mask_count=2 if mask_dtype == np.int64 else 3)
    res = run("inline", udf, roi, data=data)["intensity"].data
    assert res.dtype == result
    masks = int_masks if mask_dtype == np.int64 else MASKS
    expected = np.einsum("npq,kpq->nk", frames(roi, data).astype(np.float64), masks)
    got = selected(res, roi)
    if result == np.int64:
        np.testing.assert_array_equal(got, expected.astype(np.int64))
    else:
        rtol = 1e-12 if result == np.float64 else 1e-5
        np.testing.assert_allclose(got, expected, rtol=rtol, atol=rtol * np.abs(expected).max())


def test_apply_masks_backends_and_torch():
    default = ApplyMasksUDF(mask_factories=[disk])
    assert "numpy" in default.get_backends() and "cupy" in default.get_backends()
    assert ApplyMasksUDF(mask_factories=[disk], backends=("numpy",)).get_backends() == ("numpy",)
    assert ApplyMasksUDF(mask_factories=[disk], backends="numpy").get_backends() == ("numpy",)
    with pytest.raises(UDFError, match="backends.*GPU.*numpy"):
        ApplyMasksUDF(mask_factories=[disk], backends=("cupy", "cuda"))
    a = run("inline", ApplyMasksUDF(mask_factories=[disk], use_torch=True))["intensity"].data
    b = run("inline", ApplyMasksUDF(mask_factories=[disk], use_torch=False))["intensity"].data
    np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("executor", EACH_EXECUTOR)
@pytest.mark.parametrize("backend", ["scipy.sparse.csr_matrix", "scipy.sparse.csc_matrix", "sparse.COO"])
@pytest.mark.parametrize("use_sparse", [None, False, "scipy.sparse", "sparse.pydata"])
@pytest.mark.parametrize("shifted", [False, True])
def test_apply_masks_on_sparse_backends(executor, backend, use_sparse, shifted):
    """backends= without numpy: udfkit hands the UDF sparse tiles, as LiberTEM does."""
    roi = ROI if shifted else None
    udf = ApplyMasksUDF(mask_factories=[disk, ring, gradient], backends=(backend, "cupy"),
                        use_sparse=use_sparse, shifts=(1, -2) if shifted else None)
    res = run(executor, udf, roi)["intensity"].data
    f = frames(roi)
    expected = (shifted_reference(f, MASKS, [(1, -2)] * len(f)) if shifted
                else np.einsum("npq,kpq->nk", f.astype(np.float64), MASKS))
    np.testing.assert_allclose(selected(res, roi), expected, rtol=1e-12, atol=1e-9)


def shifted_reference(data_frames, masks, shifts):
    """``sum_p frame[p] * mask[p - s]`` over the overlap, frame by frame, pixel by pixel."""
    out = np.zeros((len(data_frames), len(masks)))
    sy, sx = data_frames.shape[1:]
    for i, (frame, (dy, dx)) in enumerate(zip(data_frames.astype(np.float64), shifts)):
        for y in range(sy):
            for x in range(sx):
                my, mx = y - dy, x - dx
                if 0 <= my < sy and 0 <= mx < sx:
                    out[i] += frame[y, x] * masks[:, my, mx]
    return out


@pytest.mark.parametrize("executor", EACH_EXECUTOR)
@pytest.mark.parametrize("shift", [(0, 0), (2, -3), (-4, 1), (9, 0), (0, -8), (1.7, -2.2)])
@pytest.mark.parametrize("use_sparse", [None, True, "sparse.pydata"])
def test_apply_masks_constant_shift(executor, shift, use_sparse):
    roi = ROI if executor == "threads" else None
    udf = ApplyMasksUDF(mask_factories=[disk, ring, gradient], shifts=shift, use_sparse=use_sparse)
    res = run(executor, udf, roi)["intensity"].data
    n = len(frames(roi))
    expected = shifted_reference(frames(roi), MASKS, [tuple(int(s) for s in shift)] * n)
    np.testing.assert_allclose(selected(res, roi), expected, rtol=1e-12, atol=1e-9)


@pytest.mark.parametrize("executor", EACH_EXECUTOR)
@pytest.mark.parametrize("roi", [None, ROI], ids=["all", "roi"])
def test_apply_masks_shifts_per_frame(executor, roi):
    shifts = np.random.default_rng(8).integers(-5, 6, size=NAV + (2,))
    udf = ApplyMasksUDF(mask_factories=[disk, ring, gradient],
                        shifts=ApplyMasksUDF.aux_data(shifts, kind="nav", extra_shape=(2,),
                                                      dtype=shifts.dtype))
    res = run(executor, udf, roi)["intensity"].data
    expected = shifted_reference(frames(roi), MASKS, selected(shifts, roi))
    np.testing.assert_allclose(selected(res, roi), expected, rtol=1e-12, atol=1e-9)


@pytest.mark.parametrize("kwargs, match", [
    (dict(shifts=(1, 2, 3)), "shifts has 3 entries"),
    (dict(shifts="up"), "shifts"),
    (dict(shifts=[[1, 2]]), "shifts"),
    (dict(use_sparse="scipy.sparse.coo"), "use_sparse"),
    (dict(preferred_dtype="text"), "preferred_dtype"),
    (dict(mask_dtype=object), "mask_dtype"),
])
def test_apply_masks_bad_arguments(kwargs, match):
    with pytest.raises(UDFError, match=match):
        run("inline", ApplyMasksUDF(mask_factories=[disk], **kwargs))


# -- StdDevUDF ---------------------------------------------------------------------------------

@pytest.mark.parametrize("executor", EACH_EXECUTOR)
@pytest.mark.parametrize("dtype", [None, np.float32, np.float64])
@pytest.mark.parametrize("use_numba", [True, False])
@pytest.mark.parametrize("roi", [None, ROI], ids=["all", "roi"])
def test_stddev_dtype_and_use_numba(executor, dtype, use_numba, roi):
    data = (DATA.astype(np.float32) + 1e4) if dtype == np.float32 else DATA
    res = run(executor, StdDevUDF(dtype=dtype, use_numba=use_numba), roi, data=data)
    f = frames(roi, data).astype(np.float64)
    base = np.dtype(np.float64 if dtype is None else dtype)
    assert res["varsum"].data.dtype == res["var"].data.dtype == res["std"].data.dtype == base
    assert res["sum"].data.dtype == res["mean"].data.dtype == np.result_type(data.dtype, base)
    rtol = 1e-12 if base == np.float64 else 1e-5
    assert int(res["num_frames"].data[0]) == len(f)
    np.testing.assert_allclose(res["sum"].data, f.sum(axis=0), rtol=rtol)
    np.testing.assert_allclose(res["mean"].data, f.mean(axis=0), rtol=rtol)
    np.testing.assert_allclose(res["var"].data, f.var(axis=0), rtol=1e-9 if base == np.float64 else 1e-3)
    np.testing.assert_allclose(res["std"].data, f.std(axis=0), rtol=1e-9 if base == np.float64 else 1e-3)
    np.testing.assert_allclose(res["varsum"].data, f.var(axis=0) * len(f),
                               rtol=1e-9 if base == np.float64 else 1e-3)


def test_stddev_numpy_path_matches_numba_path_on_hard_data():
    """Large offset, inf and NaN: use_numba=False gives the numba kernel's numbers."""
    data = np.random.default_rng(1).normal(1e6, 1.0, NAV + SIG).astype(np.float32)
    data[1, 2, 3, 4] = np.inf
    data[2, 2, 0, 0] = np.nan
    a = run("inline", StdDevUDF(use_numba=True), data=data)
    b = run("inline", StdDevUDF(use_numba=False), data=data)
    for name in ("sum", "varsum", "mean", "var", "std"):
        np.testing.assert_allclose(a[name].data, b[name].data, rtol=1e-9, equal_nan=True, err_msg=name)
    ref = data.reshape(-1, *SIG).astype(np.float64)
    with np.errstate(invalid="ignore"):
        np.testing.assert_allclose(b["var"].data, ref.var(axis=0), rtol=1e-6, equal_nan=True)


@pytest.mark.parametrize("kwargs, match", [(dict(dtype="int32"), "float dtype"),
                                           (dict(dtype="nope"), "float dtype"),
                                           (dict(use_numba="yes"), "use_numba")])
def test_stddev_bad_arguments(kwargs, match):
    with pytest.raises(UDFError, match=match):
        StdDevUDF(**kwargs)


# -- SumUDF / SumSigUDF ------------------------------------------------------------------------

@pytest.mark.parametrize("executor", EACH_EXECUTOR)
@pytest.mark.parametrize("dtype, data_dtype, result", [
    ("float32", np.uint16, np.float32), ("float64", np.uint16, np.float64), ("int64", np.uint16, np.int64),
    ("uint64", np.uint8, np.uint64), ("int64", np.float32, np.float64), ("float32", np.float64, np.float64),
    ("complex64", np.int16, np.complex64), ("float32", np.int32, np.float64),
])
@pytest.mark.parametrize("roi", [None, ROI], ids=["all", "roi"])
def test_sum_and_sumsig_dtype(executor, dtype, data_dtype, result, roi):
    data = DATA.astype(data_dtype) if data_dtype != np.uint8 else (DATA % 256).astype(np.uint8)
    total, per_frame = run(executor, [SumUDF(dtype=dtype), SumSigUDF(dtype=dtype)], roi, data=data)
    f = frames(roi, data)
    for r in (total["intensity"].data, per_frame["intensity"].data):
        assert r.dtype == result
    if np.dtype(result).kind in "iu":
        np.testing.assert_array_equal(total["intensity"].data, f.sum(axis=0, dtype=np.int64))
        np.testing.assert_array_equal(selected(per_frame["intensity"].data, roi),
                                      f.reshape(len(f), -1).sum(axis=1, dtype=np.int64))
    else:
        rtol = 1e-6 if np.dtype(result) in (np.float32, np.complex64) else 1e-12
        np.testing.assert_allclose(total["intensity"].data, f.astype(np.float64).sum(axis=0), rtol=rtol)
        np.testing.assert_allclose(selected(per_frame["intensity"].data, roi),
                                   f.reshape(len(f), -1).astype(np.float64).sum(axis=1), rtol=rtol)


@pytest.mark.parametrize("cls", [SumUDF, SumSigUDF])
def test_sum_bad_dtype(cls):
    with pytest.raises(UDFError, match="dtype.*'U3'|dtype must be"):
        cls(dtype="U3")


# -- RecordUDF with LiberTEM's signature --------------------------------------------------------

@pytest.mark.parametrize("executor", ["inline", "processes"])
def test_record_libertem_signature_overwrites(executor, tmp_path):
    target = tmp_path / "rec.npy"
    target.write_bytes(b"old content")
    res = run(executor, RecordUDF(str(target)))
    assert int(res["frames_written"].data[0]) == DATA.shape[0] * DATA.shape[1]
    np.testing.assert_array_equal(np.load(target), DATA)
    # _is_master is accepted (and the keyword form too)
    run(executor, RecordUDF(filename=target, _is_master=False), roi=ROI)
    np.testing.assert_array_equal(np.load(target), DATA[ROI])


def test_record_udfkit_form_still_refuses_and_conflicts_are_named(tmp_path):
    target = tmp_path / "rec.npy"
    target.write_bytes(b"old content")
    with pytest.raises(FileExistsError, match="overwrite"):
        run("inline", RecordUDF(path=target))
    assert target.read_bytes() == b"old content"
    with pytest.raises(FileExistsError, match="overwrite"):
        run("inline", RecordUDF(filename=target, overwrite=False))
    with pytest.raises(UDFError, match="filename.*path"):
        RecordUDF(filename=tmp_path / "a.npy", path=tmp_path / "b.npy")
    with pytest.raises(UDFError, match="_is_master"):
        RecordUDF(filename=tmp_path / "a.npy", _is_master="yes")
    with pytest.raises(UDFError, match="path is required"):
        RecordUDF()


# -- LiberTEM's module paths and run_* helpers ---------------------------------------------------

ALIASES = {
    "udfkit.udf.sum": ["SumUDF"],
    "udfkit.udf.sumsigudf": ["SumSigUDF", "run_sumsig"],
    "udfkit.udf.stddev": ["StdDevUDF", "run_stddev", "consolidate_result"],
    "udfkit.udf.masks": ["ApplyMasksUDF"],
    "udfkit.udf.logsum": ["LogsumUDF", "run_logsum"],
    "udfkit.udf.raw": ["PickUDF"],
    "udfkit.udf.record": ["RecordUDF"],
}


@pytest.mark.parametrize("module", sorted(ALIASES))
def test_libertem_module_paths(module):
    import udfkit.udf as udf_pkg

    mod = importlib.import_module(module)
    assert sorted(mod.__all__) == sorted(ALIASES[module])
    for name in ALIASES[module]:
        obj = getattr(mod, name)
        if name.endswith("UDF"):
            assert obj is getattr(udf_pkg, name), f"{module}.{name} is not udfkit.udf.{name}"


@pytest.mark.parametrize("roi", [None, ROI], ids=["all", "roi"])
def test_run_helpers(roi):
    from udfkit.udf.logsum import run_logsum
    from udfkit.udf.stddev import consolidate_result, run_stddev
    from udfkit.udf.sumsigudf import run_sumsig

    ctx = shared_context("inline")
    ds = ctx.load("memory", data=DATA, num_partitions=3)
    f = frames(roi).astype(np.float64)
    for use_numba in (True, False):
        res = run_stddev(ctx, ds, roi=roi, use_numba=use_numba)
        assert type(res["num_frames"]) is int and res["num_frames"] == len(f)
        np.testing.assert_allclose(res["var"], f.var(axis=0), rtol=1e-10)
        np.testing.assert_allclose(res["mean"], f.mean(axis=0), rtol=1e-12)
        assert set(res) == {"num_frames", "varsum", "sum", "var", "std", "mean"}
    raw = ctx.run_udf(dataset=ds, udf=StdDevUDF(), roi=roi)
    np.testing.assert_array_equal(consolidate_result(raw)["std"], raw["std"].data)
    sums = run_sumsig(ctx, ds, roi=roi)["intensity"].data
    np.testing.assert_allclose(selected(sums, roi), f.sum(axis=(1, 2)))
    logsum = run_logsum(ctx, ds, roi=roi)["logsum"].data
    ref = np.log(f - f.min(axis=(1, 2), keepdims=True) + 1).sum(axis=0)
    np.testing.assert_allclose(logsum, ref, rtol=1e-10)


def test_libertem_script_with_replaced_imports():
    """A LiberTEM-style script, imports changed from libertem to udfkit and nothing else."""
    from udfkit.masks import circular, ring
    from udfkit.udf.masks import ApplyMasksUDF as AM
    from udfkit.udf.raw import PickUDF as Pick
    from udfkit.udf.sum import SumUDF as Sum

    ctx = shared_context("inline")
    dataset = ctx.load("memory", data=DATA)
    sy, sx = tuple(dataset.shape.sig)
    bf = partial(circular, centerX=sx // 2, centerY=sy // 2, imageSizeX=sx, imageSizeY=sy, radius=2)
    df = partial(ring, centerX=sx // 2, centerY=sy // 2, imageSizeX=sx, imageSizeY=sy, radius=4,
                 radius_inner=2)
    virtual, total = ctx.run_udf(dataset=dataset, udf=[AM(mask_factories=[bf, df]), Sum()])
    np.testing.assert_allclose(virtual["intensity"].data[..., 0], (DATA * bf()).sum(axis=(2, 3)), rtol=1e-6)
    np.testing.assert_allclose(virtual["intensity"].data[..., 1], (DATA * df()).sum(axis=(2, 3)), rtol=1e-6)
    np.testing.assert_array_equal(total["intensity"].data, DATA.sum(axis=(0, 1)))
    roi = np.zeros(NAV, bool)
    roi[2, 3] = True
    picked = ctx.run_udf(dataset=dataset, udf=Pick(), roi=roi)["intensity"]
    assert picked.raw_data[0].shape == SIG
    np.testing.assert_array_equal(picked.data[0], DATA[2, 3])
    assert isinstance(LogsumUDF(), LogsumUDF) and PickUDF is Pick
