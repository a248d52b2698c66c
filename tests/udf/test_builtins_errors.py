"""Bad input to the built-in UDFs gives a clear exception (``udfkit.errors.UDFError`` and
friends, never a bare AssertionError or a numba typing error), raised before any data is
read, naming what was expected and what was found; nothing is lost and the Context stays
usable afterwards."""

from __future__ import annotations

import os
import threading
import warnings

import numpy as np
import pytest
import scipy.sparse as sp

from udfkit import Context
from udfkit.errors import ROIError, UDFError, UdfkitError, UdfkitWarning
from udfkit.udf import (
    ApplyMasksUDF,
    LogsumUDF,
    MapUDF,
    PickUDF,
    RecordUDF,
    StatsUDF,
    StdDevUDF,
    SumSigUDF,
    SumUDF,
)

SIG = (5, 6)


@pytest.fixture(params=[False, True], ids=["inline", "inline-debug"])
def ctx(request):
    with Context.make_with("inline", debug=request.param) as c:
        yield c


@pytest.fixture
def ds(ctx):
    data = np.arange(3 * 4 * 5 * 6, dtype="uint16").reshape(3, 4, *SIG)
    return ctx.load("memory", data=data, num_partitions=2)


def plain_ds(ctx):
    data = np.arange(3 * 4 * 5 * 6, dtype="uint16").reshape(3, 4, *SIG)
    return ctx.load("memory", data=data, num_partitions=2)


def still_usable(ctx, ds):
    """After an error the same Context and data set give correct results."""
    res = ctx.run_udf(dataset=ds, udf=SumUDF())
    expected = np.arange(3 * 4 * 5 * 6, dtype=np.float64).reshape(12, *SIG).sum(axis=0)
    np.testing.assert_array_equal(res["intensity"].data, expected)


def raises_clear(exc, fn, *, match=None):
    """``fn()`` raises ``exc`` (with ``match``) and not an AssertionError in disguise."""
    with pytest.raises(exc, match=match) as info:
        fn()
    assert not isinstance(info.value, AssertionError)
    assert str(info.value), "the message must say what is wrong"
    return info.value


# -- ApplyMasksUDF ---------------------------------------------------------------------------

WRONG_MASKS = {
    "dense_transposed": ([np.ones((6, 5))], r"\(6, 5\)"),
    "dense_flat": ([np.ones(30)], r"\(30,\)"),
    "stack_wrong_sig": (np.ones((2, 6, 5)), r"\(2, 6, 5\)"),
    "callable_wrong": ([lambda: np.ones((4, 4))], r"\(4, 4\)"),
    "second_of_three": ([np.ones(SIG), np.ones((5, 7)), np.ones(SIG)], r"mask 1.*\(5, 7\)"),
    "sparse_wrong": ([sp.csr_matrix(np.ones((6, 5)))], r"\(6, 5\)"),
    "sparse_rows_wrong": ([sp.csr_matrix(np.ones((2, 29)))], r"\(2, 29\)"),
    "scalar": ([np.float64(1.0)], r"\(\)"),
}


@pytest.mark.parametrize("which", sorted(WRONG_MASKS))
def test_apply_masks_wrong_shape(ctx, ds, which):
    factories, shape_re = WRONG_MASKS[which]
    err = raises_clear(UDFError, lambda: ctx.run_udf(dataset=ds, udf=ApplyMasksUDF(
        mask_factories=factories)), match=shape_re)
    msg = str(err)
    assert "ApplyMasksUDF" in msg and "(5, 6)" in msg, msg  # names the UDF and the sig shape
    still_usable(ctx, ds)


@pytest.mark.parametrize("factories, count, found", [
    ([np.ones(SIG)], 2, 1),
    (np.ones((3,) + SIG), 2, 3),
    ([lambda: np.ones((2,) + SIG), np.ones(SIG)], 4, 3),
    ([sp.csr_matrix(np.ones(SIG))], 0, 1),
])
def test_apply_masks_count_mismatch(ctx, ds, factories, count, found):
    err = raises_clear(UDFError, lambda: ctx.run_udf(dataset=ds, udf=ApplyMasksUDF(
        mask_factories=factories, mask_count=count)), match="mask_count")
    assert str(count) in str(err) and str(found) in str(err)
    still_usable(ctx, ds)


def test_apply_masks_count_match_is_fine(ctx, ds):
    res = ctx.run_udf(dataset=ds, udf=ApplyMasksUDF(mask_factories=np.ones((3,) + SIG),
                                                    mask_count=3))
    assert res["intensity"].data.shape == (3, 4, 3)


def test_apply_masks_no_masks_at_all():
    raises_clear(UDFError, lambda: ApplyMasksUDF(), match="mask_factories")
    raises_clear(UDFError, lambda: ApplyMasksUDF(mask_factories=None), match="mask_factories")


@pytest.mark.parametrize("empty", [
    [], (),
    pytest.param(np.empty((0,) + SIG), id="empty_stack"),
    pytest.param(lambda: np.empty((0,) + SIG), id="callable_empty_stack"),
])
def test_apply_masks_no_masks(ctx, ds, empty):
    raises_clear(UDFError, lambda: ctx.run_udf(
        dataset=ds, udf=ApplyMasksUDF(mask_factories=empty)), match="no masks")
    still_usable(ctx, ds)


@pytest.mark.parametrize("value", ["yes", "auto", 2, 0.5, "True"])
def test_apply_masks_bad_use_sparse(value):
    err = raises_clear(UDFError, lambda: ApplyMasksUDF(mask_factories=[np.ones(SIG)],
                                                        use_sparse=value), match="use_sparse")
    assert repr(value) in str(err)


@pytest.mark.parametrize("factories, match", [
    (5, "int"),
    ([np.full(SIG, "a", dtype=object)], "dtype object"),
    (["abc"], r"shape \(\)"),
])
def test_apply_masks_not_masks(ctx, ds, factories, match):
    raises_clear(UDFError, lambda: ctx.run_udf(dataset=ds, udf=ApplyMasksUDF(
        mask_factories=factories)), match=match)
    still_usable(ctx, ds)


def test_apply_masks_unpicklable_factories(ctx, ds):
    lock = threading.Lock()
    raises_clear(UDFError, lambda: ctx.run_udf(dataset=ds, udf=ApplyMasksUDF(
        mask_factories=[lambda: (lock, np.ones(SIG))[1]])), match="pickle")
    still_usable(ctx, ds)


@pytest.mark.parametrize("sparse", [False, True])
def test_apply_masks_complex_masks_real_mask_dtype(sparse):
    mask = np.ones(SIG) * 1j
    ctx = Context.make_with("inline")
    ds = plain_ds(ctx)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(UDFError, match="complex"):
            ctx.run_udf(dataset=ds, udf=ApplyMasksUDF(
                mask_factories=[sp.csr_matrix(mask) if sparse else mask], mask_dtype="float32"))


@pytest.mark.parametrize("kw", [{"mask_dtype": "bogus"}, {"mask_count": "x"}])
def test_apply_masks_bad_mask_dtype_or_count(kw):
    ctx = Context.make_with("inline")
    ds = plain_ds(ctx)
    name = next(iter(kw))
    with pytest.raises(UDFError, match=name):
        ctx.run_udf(dataset=ds, udf=ApplyMasksUDF(mask_factories=[np.ones(SIG)], **kw))


# -- StatsUDF / LogsumUDF on complex data ----------------------------------------------------

@pytest.mark.parametrize("dtype", ["complex64", "complex128", ">c8"])
@pytest.mark.parametrize("udf_cls, match", [(StatsUDF, "complex"), (LogsumUDF, "complex")])
def test_complex_data_rejected(ctx, dtype, udf_cls, match):
    data = (np.arange(2 * 3 * 4) + 1j).astype(dtype).reshape(2, 3, 2, 2)
    cds = ctx.load("memory", data=data)
    err = raises_clear(UDFError, lambda: ctx.run_udf(dataset=cds, udf=udf_cls()), match=match)
    assert udf_cls.__name__ in str(err)
    # StdDevUDF is fine with complex data, in the same Context
    res = ctx.run_udf(dataset=cds, udf=StdDevUDF())
    flat = data.reshape(6, 2, 2).astype(np.complex128)
    np.testing.assert_allclose(res["var"].data, flat.var(axis=0), rtol=1e-12)


# -- RecordUDF -------------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["existing.npy", "existing.raw", "existing"])
@pytest.mark.parametrize("via", ["udf", "udf_with_others", "export"])
def test_record_refuses_existing_path(ctx, ds, tmp_path, name, via):
    path = tmp_path / name
    content = b"precious bytes \x00\x01" * 1000
    path.write_bytes(content)
    os.utime(path, (1_000_000_000, 1_000_000_000))
    before = os.stat(path)

    def run():
        if via == "udf":
            ctx.run_udf(dataset=ds, udf=RecordUDF(path=path))
        elif via == "udf_with_others":
            ctx.run_udf(dataset=ds, udf=[SumUDF(), RecordUDF(path=str(path)), StdDevUDF()])
        else:
            ctx.export(ds, path)

    err = raises_clear(FileExistsError, run)
    assert str(path) in str(err)
    assert "overwrite" in str(err)
    after = os.stat(path)
    assert path.read_bytes() == content
    assert (after.st_size, after.st_mtime_ns) == (before.st_size, before.st_mtime_ns)
    assert not (tmp_path / (name + ".json")).exists()  # no sidecar either
    assert sorted(os.listdir(tmp_path)) == [name]
    still_usable(ctx, ds)
    # and with overwrite=True it is replaced
    ctx.run_udf(dataset=ds, udf=RecordUDF(path=path, overwrite=True))
    assert path.read_bytes() != content


def test_record_bad_parameters():
    raises_clear(UDFError, lambda: RecordUDF(), match="path")
    raises_clear(UDFError, lambda: RecordUDF(path="x.h5", format="tiff"), match="format")


@pytest.mark.parametrize("fmt", ["raw", "npy"])
def test_record_onto_its_own_source_refused(tmp_path, fmt):
    data = np.arange(3 * 4 * 5 * 6, dtype="uint16").reshape(3, 4, 5, 6)
    ctx = Context.make_with("inline")
    if fmt == "raw":
        path = tmp_path / "src.raw"
        data.tofile(path)
        src = ctx.load("raw", path=str(path), dtype="uint16", nav_shape=(3, 4), sig_shape=(5, 6))
    else:
        path = tmp_path / "src.npy"
        np.save(path, data)
        src = ctx.load("npy", path=str(path))
    original = path.read_bytes()
    with pytest.raises((UdfkitError, ValueError, OSError)):
        ctx.run_udf(dataset=src, udf=RecordUDF(path=path, overwrite=True))
    assert path.read_bytes() == original


# -- PickUDF ---------------------------------------------------------------------------------

def test_pick_without_roi_small_data_no_warning(ctx, ds):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        res = ctx.run_udf(dataset=ds, udf=PickUDF())
    assert res["intensity"].data.shape == (12,) + SIG


def test_pick_warns_above_threshold(ctx, ds, monkeypatch):
    """The 1 GiB threshold, lowered for the test: a UdfkitWarning naming the size and the fix;
    with a ROI that picks fewer frames, none."""
    import udfkit.udf.builtins.pick as pick

    monkeypatch.setattr(pick, "_WARN_BYTES", 12 * 30 * 2 - 1)
    with pytest.warns(UdfkitWarning, match="ROI"):
        res = ctx.run_udf(dataset=ds, udf=PickUDF())
    assert res["intensity"].data.shape == (12,) + SIG
    roi = np.zeros((3, 4), bool)
    roi[1, 2] = True
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ctx.run_udf(dataset=ds, udf=PickUDF(), roi=roi)


# -- MapUDF ----------------------------------------------------------------------------------

@pytest.mark.parametrize("f", [None, 5, "sum"])
def test_map_without_callable(f):
    ctx = Context.make_with("inline")
    ds = plain_ds(ctx)
    with pytest.raises(UDFError, match="f"):
        ctx.run_udf(dataset=ds, udf=MapUDF(f=f))


def test_map_function_error_propagates(ctx, ds):
    """An exception raised by the user's function reaches the caller as itself."""
    def boom(frame):
        if frame.sum() > 0:
            raise KeyError("from f")
        return 0.0

    with pytest.raises(KeyError, match="from f"):
        ctx.map(dataset=ds, f=boom)
    still_usable(ctx, ds)


# -- dtypes the kernels do not take ----------------------------------------------------------

@pytest.mark.parametrize("udf_cls", [SumUDF, SumSigUDF, StdDevUDF, StatsUDF, LogsumUDF])
@pytest.mark.parametrize("dtype", ["float16"])
def test_float16_data(udf_cls, dtype):
    data = (np.arange(2 * 3 * 4 * 5) % 7).astype(dtype).reshape(2, 3, 4, 5)
    ctx = Context.make_with("inline")
    ds16 = ctx.load("memory", data=data)
    try:
        res = ctx.run_udf(dataset=ds16, udf=udf_cls())
    except UDFError:
        return  # a clear refusal is acceptable
    frames = data.reshape(6, 4, 5).astype(np.float64)
    key, ref = {SumUDF: ("intensity", frames.sum(axis=0)),
                SumSigUDF: ("intensity", frames.sum(axis=(1, 2)).reshape(2, 3)),
                StdDevUDF: ("var", frames.var(axis=0)),
                StatsUDF: ("max", frames.max(axis=0)),
                LogsumUDF: ("logsum", np.log(frames - frames.min(axis=(1, 2), keepdims=True)
                                             + 1).sum(axis=0))}[udf_cls]
    np.testing.assert_allclose(res[key].data, ref, rtol=1e-6)


def test_logsum_bool_data():
    data = (np.arange(2 * 3 * 4 * 5) % 3 == 0).reshape(2, 3, 4, 5)
    ctx = Context.make_with("inline")
    try:
        res = ctx.run_udf(dataset=ctx.load("memory", data=data), udf=LogsumUDF())
    except UDFError:
        return
    frames = data.reshape(6, 4, 5).astype(np.float64)
    ref = np.log(frames - frames.min(axis=(1, 2), keepdims=True) + 1).sum(axis=0)
    np.testing.assert_allclose(res["logsum"].data, ref)


# -- ROI -------------------------------------------------------------------------------------

@pytest.mark.parametrize("udf_cls", [SumUDF, StdDevUDF, PickUDF, LogsumUDF])
@pytest.mark.parametrize("roi", [np.zeros((4, 3), bool), np.zeros(11, bool),
                                 np.full((3, 4), 2, dtype=np.uint8)],  # 0/1 would be a ROI
                         ids=["shape", "flat", "dtype"])
def test_bad_roi(ctx, ds, udf_cls, roi):
    raises_clear(ROIError, lambda: ctx.run_udf(dataset=ds, udf=udf_cls(), roi=roi), match="roi")
    still_usable(ctx, ds)


def test_record_onto_any_file_of_a_multi_file_source_refused(tmp_path):
    data = np.arange(4 * 5 * 6, dtype="uint16").reshape(4, 5, 6)
    paths = []
    for i in range(2):
        path = tmp_path / f"part{i}.raw"
        data[2 * i:2 * i + 2].tofile(path)
        paths.append(path)
    ctx = Context.make_with("inline")
    src = ctx.load("raw", path=[str(p) for p in paths], dtype="uint16", nav_shape=(4,), sig_shape=(5, 6))
    original = paths[1].read_bytes()
    with pytest.raises((UdfkitError, ValueError, OSError), match="part1"):
        ctx.run_udf(dataset=src, udf=RecordUDF(path=paths[1], format="raw", overwrite=True))
    assert paths[1].read_bytes() == original
