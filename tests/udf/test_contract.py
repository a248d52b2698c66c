"""The UDF contract is checked before any data is read, with clear errors; errors raised by a
UDF propagate unchanged and leave the Context usable.

"Before any data is read" is shown twice over: the data set's file is deleted after loading
(reading it would raise a DataSetError "disappeared"), and every process method records its
calls in a module-level log that must stay empty.
"""

from __future__ import annotations

import io
import os
import threading

import numpy as np
import pytest

from udfkit import UDF, Context
from udfkit.errors import DataSetError, ROIError, UDFError, UDFResultError

NAV, SIG = (3, 5), (6, 7)

CALLS: list = []  # process calls of the UDFs below (inline executor: same process)


@pytest.fixture(autouse=True)
def _clear_calls():
    CALLS.clear()
    yield


@pytest.fixture(params=[False, True], ids=["inline", "inline-debug"])
def ctx(request):
    with Context.make_with("inline", debug=request.param) as c:
        yield c


def _data():
    return np.arange(np.prod(NAV + SIG), dtype="uint16").reshape(NAV + SIG) % 50


@pytest.fixture
def good_ds(ctx, tmp_path):
    path = tmp_path / "good.raw"
    _data().tofile(path)
    return ctx.load("raw", path=str(path), dtype="uint16", nav_shape=NAV, sig_shape=SIG,
                    num_partitions=2)


@pytest.fixture
def gone_ds(ctx, tmp_path):
    """A raw data set whose file was deleted after loading: reading it is an error."""
    path = tmp_path / "gone.raw"
    _data().tofile(path)
    ds = ctx.load("raw", path=str(path), dtype="uint16", nav_shape=NAV, sig_shape=SIG,
                  num_partitions=2)
    os.remove(path)
    return ds


# -- UDFs -----------------------------------------------------------------------------------

class Good(UDF):
    def get_result_buffers(self):
        return {"navsum": self.buffer(kind="nav", dtype="float64")}

    def process_frame(self, frame):
        CALLS.append("process_frame")
        self.results.navsum[:] = frame.sum()


def assert_usable(ctx, good_ds):
    res = ctx.run_udf(dataset=good_ds, udf=Good())
    np.testing.assert_array_equal(res["navsum"].data, _data().reshape(NAV + (-1,)).sum(-1))


class Recording(UDF):
    """Base of the broken UDFs: every process method records its call."""

    def process_frame(self, frame):
        CALLS.append("process_frame")

    def process_tile(self, tile):
        CALLS.append("process_tile")

    def process_partition(self, partition):
        CALLS.append("process_partition")

    def get_result_buffers(self):
        return {"x": self.buffer(kind="nav")}


class NoProcess(UDF):
    def get_result_buffers(self):
        return {"x": self.buffer(kind="nav")}


class FrameOnlyAsksTile(UDF):
    def get_method(self):
        return "tile"

    def get_result_buffers(self):
        return {"x": self.buffer(kind="nav")}

    def process_frame(self, frame):
        CALLS.append("process_frame")


class UnknownMethod(Recording):
    def get_method(self):
        return "pixel"


class BuffersList(Recording):
    def get_result_buffers(self):
        return [self.buffer(kind="nav")]


class BuffersNone(Recording):
    def get_result_buffers(self):
        return None


class BuffersArray(Recording):
    def get_result_buffers(self):
        return {"x": np.zeros(3)}


class BuffersEmpty(Recording):
    def get_result_buffers(self):
        return {}


class BadName(Recording):
    def __init__(self, name=None):
        super().__init__(name=name)

    def get_result_buffers(self):
        return {self.params.name: self.buffer(kind="nav")}


class SigNoMerge(Recording):
    def get_result_buffers(self):
        return {"x": self.buffer(kind="nav"), "s": self.buffer(kind="sig")}


class SingleNoMerge(Recording):
    def get_result_buffers(self):
        return {"total": self.buffer(kind="single", extra_shape=(2,))}


class ResultOnlyNoGetResults(Recording):
    def get_result_buffers(self):
        return {"x": self.buffer(kind="nav"), "y": self.buffer(kind="nav", use="result_only")}


class BadKind(Recording):
    def get_result_buffers(self):
        return {"x": self.buffer(kind="frame")}


class BadUse(Recording):
    def get_result_buffers(self):
        return {"x": self.buffer(kind="nav", use="public")}


class BadDtype(Recording):
    def get_result_buffers(self):
        return {"x": self.buffer(kind="nav", dtype="float17")}


class BadExtraShape(Recording):
    def get_result_buffers(self):
        return {"x": self.buffer(kind="nav", extra_shape=(2, -1))}


class BadInputDtype(Recording):
    def get_preferred_input_dtype(self):
        return "not a dtype"


class ObjectInputDtype(Recording):
    def get_preferred_input_dtype(self):
        return object


class PrefsNotDict(Recording):
    def get_tiling_preferences(self):
        return [("depth", 4)]


class PrefsUnknownKey(Recording):
    def get_tiling_preferences(self):
        return {"depth": 4, "width": 3}


class PrefsZeroDepth(Recording):
    def get_tiling_preferences(self):
        return {"depth": 0}


class PrefsBadSize(Recording):
    def get_tiling_preferences(self):
        return {"total_size": "lots"}


class WithKwargs(Recording):
    """Takes arbitrary keyword arguments (for the picklability and aux_data checks)."""


class AuxClash(Recording):
    def get_result_buffers(self):
        return {"weights": self.buffer(kind="nav")}


class NoSuperInit(Recording):
    def __init__(self, factor=2):  # forgets super().__init__(...)
        self.factor = factor


class NeedsPositional(Recording):
    """Cannot be rebuilt on a worker: its argument does not travel in the kwargs."""

    def __init__(self, factor):
        super().__init__()
        self.factor = factor


def _open_file(tmp_path):
    return open(tmp_path / "somefile.txt", "w")  # noqa: SIM115 - closed by the test


INVALID = {
    # id: (factory(tmp_path), error message pattern)
    "no-process-method": (lambda t: NoProcess(), r"NoProcess has no process method"),
    "get_method-unimplemented": (
        lambda t: FrameOnlyAsksTile(),
        r"get_method\(\) returned 'tile'.*does not implement process_tile"),
    "get_method-unknown": (lambda t: UnknownMethod(), r"get_method\(\) returned 'pixel'"),
    "buffers-list": (lambda t: BuffersList(),
                     r"get_result_buffers\(\) returned list; expected a dict"),
    "buffers-none": (lambda t: BuffersNone(), r"get_result_buffers\(\) returned NoneType"),
    "buffers-array-value": (lambda t: BuffersArray(), r"\['x'\] is ndarray; expected self.buffer"),
    "buffers-empty": (lambda t: BuffersEmpty(), r"declared no buffer"),
    "name-underscore": (lambda t: BadName(name="_x"), r"'_x' is not usable as an attribute name"),
    "name-space": (lambda t: BadName(name="not valid"),
                   r"'not valid' is not usable as an attribute name"),
    "name-keyword": (lambda t: BadName(name="class"), r"'class' is not usable"),
    "name-int": (lambda t: BadName(name=3), r"3 is not usable"),
    "name-clashes-aux": (lambda t: AuxClash(weights=UDF.aux_data(np.ones(NAV))),
                         r"'weights' clashes with the aux_data parameter"),
    "sig-without-merge": (lambda t: SigNoMerge(), r"sig buffers \['s'\] but no merge"),
    "single-without-merge": (lambda t: SingleNoMerge(), r"single buffers \['total'\] but no merge"),
    "result_only-without-get_results": (lambda t: ResultOnlyNoGetResults(),
                                        r"result_only buffers \['y'\].*get_results"),
    "buffer-kind": (lambda t: BadKind(), r"buffer kind: expected one of .*'frame'"),
    "buffer-use": (lambda t: BadUse(), r"buffer use: expected one of .*'public'"),
    "buffer-dtype": (lambda t: BadDtype(), r"buffer dtype.*float17"),
    "buffer-extra_shape": (lambda t: BadExtraShape(), r"extra_shape"),
    "input-dtype-garbage": (lambda t: BadInputDtype(), r"get_preferred_input_dtype\(\) returned"),
    "input-dtype-object": (lambda t: ObjectInputDtype(), r"expected a numeric dtype"),
    "prefs-not-dict": (lambda t: PrefsNotDict(), r"get_tiling_preferences\(\) returned list"),
    "prefs-unknown-key": (lambda t: PrefsUnknownKey(), r"unknown keys \['width'\]"),
    "prefs-zero-depth": (lambda t: PrefsZeroDepth(), r"depth"),
    "prefs-bad-size": (lambda t: PrefsBadSize(), r"lots"),
    "kwarg-lock": (lambda t: WithKwargs(lock=threading.Lock()),
                   r"WithKwargs: its parameters cannot be pickled.*lock"),
    "kwarg-open-file": (lambda t: WithKwargs(out=_open_file(t)),
                        r"WithKwargs: its parameters cannot be pickled"),
    "kwarg-rlock-in-list": (lambda t: WithKwargs(things=[1, threading.RLock()]),
                              r"cannot be pickled"),
    "not-a-udf": (lambda t: object(), r"expected a UDF instance, got object"),
    "no-super-init": (lambda t: NoSuperInit(), r"NoSuperInit.__init__ did not call super"),
}


@pytest.mark.parametrize("case", list(INVALID), ids=list(INVALID))
def test_contract_violation_before_reading(ctx, gone_ds, good_ds, tmp_path, case):
    factory, pattern = INVALID[case]
    udf = factory(tmp_path)
    try:
        with pytest.raises(UDFError, match=pattern):
            ctx.run_udf(dataset=gone_ds, udf=udf)
    finally:
        for v in getattr(udf, "_kwargs", {}).values():
            if isinstance(v, io.IOBase):
                v.close()
    assert CALLS == [], "no process method may run before the contract is checked"
    assert_usable(ctx, good_ds)


@pytest.mark.parametrize("case", ["sig-without-merge", "kwarg-lock", "no-process-method"])
def test_contract_violation_in_a_list_stops_the_whole_run(ctx, gone_ds, tmp_path, case):
    factory, pattern = INVALID[case]
    with pytest.raises(UDFError, match=pattern):
        ctx.run_udf(dataset=gone_ds, udf=[Good(), factory(tmp_path)])
    assert CALLS == []


@pytest.mark.parametrize("case", ["sig-without-merge", "get_method-unimplemented"])
def test_contract_violation_in_run_udf_iter(ctx, gone_ds, tmp_path, case):
    factory, pattern = INVALID[case]
    with pytest.raises(UDFError, match=pattern):
        list(ctx.run_udf_iter(dataset=gone_ds, udf=factory(tmp_path)))
    assert CALLS == []


def test_udf_that_cannot_be_rebuilt_from_kwargs(ctx, gone_ds):
    with pytest.raises(UDFError, match="NeedsPositional"):
        ctx.run_udf(dataset=gone_ds, udf=NeedsPositional(3))
    assert CALLS == []


def test_unread_file_fixture_really_cannot_be_read(ctx, gone_ds):
    """The fixture above proves something only if reading it fails."""
    with pytest.raises(DataSetError, match="disappeared"):
        ctx.run_udf(dataset=gone_ds, udf=Good())


def test_udf_error_is_a_type_error():
    assert issubclass(UDFError, TypeError)
    assert issubclass(UDFResultError, UDFError)


def test_missing_get_result_buffers_is_named(ctx, gone_ds):
    class NoBuffers(UDF):
        def process_frame(self, frame):
            CALLS.append("process_frame")

    with pytest.raises((UDFError, NotImplementedError), match="get_result_buffers"):
        ctx.run_udf(dataset=gone_ds, udf=NoBuffers())
    assert CALLS == []


def test_empty_udf_list(ctx, gone_ds):
    with pytest.raises(ValueError, match="non-empty list"):
        ctx.run_udf(dataset=gone_ds, udf=[])


# -- what the contract allows ---------------------------------------------------------------

class PrivateSigNoMerge(UDF):
    def get_result_buffers(self):
        return {"x": self.buffer(kind="nav", dtype="float64"),
                "scratch": self.buffer(kind="sig", dtype="float64", use="private")}

    def process_frame(self, frame):
        self.results.scratch[:] = frame
        self.results.x[:] = self.results.scratch.sum()


class ResultOnlySig(UDF):
    def get_result_buffers(self):
        return {"x": self.buffer(kind="nav", dtype="float64"),
                "img": self.buffer(kind="sig", dtype="float64", use="result_only")}

    def process_frame(self, frame):
        self.results.x[:] = frame.sum()

    def get_results(self):
        return {"x": self.results.x, "img": np.zeros(SIG)}


class BothMethods(UDF):
    def get_result_buffers(self):
        return {"which": self.buffer(kind="nav", dtype="int64")}

    def process_frame(self, frame):
        self.results.which[:] = 1

    def process_tile(self, tile):
        self.results.which[:] = 2


class BothMethodsFrame(BothMethods):
    def get_method(self):
        return "frame"


@pytest.mark.parametrize("udf_cls", [
    pytest.param(PrivateSigNoMerge, id="PrivateSigNoMerge"),
    pytest.param(ResultOnlySig, id="ResultOnlySig")])
def test_private_and_result_only_sig_buffers_need_no_merge(ctx, good_ds, udf_cls):
    res = ctx.run_udf(dataset=good_ds, udf=udf_cls())
    np.testing.assert_array_equal(res["x"].data, _data().reshape(NAV + (-1,)).sum(-1))
    assert "scratch" not in res


@pytest.mark.parametrize("udf_cls, want", [(BothMethods, 2), (BothMethodsFrame, 1)])
def test_get_method_picks_the_process_method(ctx, good_ds, udf_cls, want):
    assert (ctx.run_udf(dataset=good_ds, udf=udf_cls())["which"].data == want).all()


def test_picklable_kwargs_pass(ctx, good_ds):
    # lambdas and closures travel by cloudpickle
    k = 3
    udf = WithKwargs(f=lambda x: x * k, arr=np.ones(4), nested={"a": [1, 2]})
    ctx.run_udf(dataset=good_ds, udf=udf)
    assert CALLS.count("process_tile") > 0


# -- get_results is checked against the declarations ----------------------------------------

class ResultsUDF(UDF):
    def __init__(self, variant=None):
        super().__init__(variant=variant)

    def get_result_buffers(self):
        return {"x": self.buffer(kind="nav", dtype="float64"),
                "s": self.buffer(kind="sig", dtype="float64"),
                "scratch": self.buffer(kind="nav", use="private"),
                "extra": self.buffer(kind="nav", dtype="float64", use="result_only")}

    def process_frame(self, frame):
        self.results.x[:] = frame.sum()
        self.results.s[:] += frame

    def merge(self, dest, src):
        dest.x[:] = src.x
        dest.s[:] += src.s

    def get_results(self):
        x, s = self.results.x, self.results.s
        ok = {"x": x, "s": s, "extra": x * 2}
        v = self.params.variant
        if v == "undeclared":
            return dict(ok, bogus=x)
        if v == "private":
            # private buffers are not offered to get_results; returning one anyway is an error
            return dict(ok, scratch=np.zeros_like(x))
        if v == "nav-shape":
            return dict(ok, x=np.zeros(len(x) + 1))
        if v == "sig-shape":
            return dict(ok, s=s.T)
        if v == "missing-result_only":
            return {"x": x, "s": s}
        if v == "not-a-dict":
            return [x, s]
        if v == "complex-into-float":
            return dict(ok, extra=x * 1j)
        return ok


RESULT_ERRORS = {
    "undeclared": r"returned \['bogus'\], which are not declared",
    "private": r"\['scratch'\] are private buffers",
    "nav-shape": r"\['x'\] has shape \(16,\); the nav buffer needs \(15,\) or \(3, 5\)",
    "sig-shape": r"\['s'\] has shape \(7, 6\); the sig buffer needs \(6, 7\)",
    "missing-result_only": r"did not return its result_only buffers \['extra'\]",
    "not-a-dict": r"returned list; expected a dict",
    "complex-into-float": r"\['extra'\] has dtype complex128.*float64",
}


@pytest.mark.parametrize("variant", list(RESULT_ERRORS))
def test_get_results_checked(ctx, good_ds, variant):
    with pytest.raises(UDFResultError, match=RESULT_ERRORS[variant]):
        ctx.run_udf(dataset=good_ds, udf=ResultsUDF(variant=variant))
    assert_usable(ctx, good_ds)


def test_get_results_ok_variant(ctx, good_ds):
    res = ctx.run_udf(dataset=good_ds, udf=ResultsUDF())
    assert set(res) == {"x", "s", "extra"}
    np.testing.assert_array_equal(res["extra"].data, 2 * res["x"].data)


# -- ROI errors -----------------------------------------------------------------------------

BAD_ROIS = {
    "wrong-shape": (np.ones((5, 3), bool), r"nav shape \(3, 5\).*got shape \(5, 3\)"),
    "too-many-dims": (np.ones((3, 5, 1), bool), r"nav shape \(3, 5\).*got shape \(3, 5, 1\)"),
    "flat-wrong-size": (np.ones(14, bool), r"flat with 15 entries, got shape \(14,\)"),
    # 0/1 numbers are a ROI as in LiberTEM; other numbers are not
    "int-dtype": (np.full(NAV, 2, np.int64), r"nav shape \(3, 5\).*got dtype int64"),
    "float-dtype": (np.full(NAV, 0.5, np.float32), r"nav shape \(3, 5\).*got dtype float32"),
    "uint8-dtype": (np.full(NAV, 7, np.uint8), r"got dtype uint8"),
}


@pytest.mark.parametrize("case", list(BAD_ROIS), ids=list(BAD_ROIS))
def test_roi_errors(ctx, gone_ds, good_ds, case):
    roi, pattern = BAD_ROIS[case]
    with pytest.raises(ROIError, match=pattern):
        ctx.run_udf(dataset=gone_ds, udf=Good(), roi=roi)
    assert CALLS == []
    assert issubclass(ROIError, ValueError)
    assert_usable(ctx, good_ds)


@pytest.mark.parametrize("form", ["nav-shaped", "flat", "list"])
def test_roi_accepted_forms(ctx, good_ds, form):
    roi = np.zeros(NAV, bool)
    roi[1, 2] = roi[2, 4] = True
    arg = {"nav-shaped": roi, "flat": roi.reshape(-1), "list": roi.tolist()}[form]
    res = ctx.run_udf(dataset=good_ds, udf=Good(), roi=arg)
    np.testing.assert_array_equal(res["navsum"].valid_mask, roi)
    assert CALLS.count("process_frame") == 2


# -- exceptions raised by a UDF -------------------------------------------------------------

class MyError(Exception):
    pass


EXCEPTIONS = {
    "KeyError": KeyError,
    "ValueError": ValueError,
    "ZeroDivisionError": ZeroDivisionError,
    "MyError": MyError,
}


class Raising(UDF):
    def __init__(self, exc=None, where="process", method="frame", at=7):
        super().__init__(exc=exc, where=where, method=method, at=at)

    def get_method(self):
        return self.params.method

    def get_result_buffers(self):
        return {"x": self.buffer(kind="nav", dtype="float64"),
                "s": self.buffer(kind="sig", dtype="float64")}

    def _maybe_raise(self, where):
        if self.params.where == where:
            raise self.params.exc(f"boom in {where} #42")

    def _process(self, data):
        CALLS.append("process")
        idx = self.meta.coordinates
        flat = np.ravel_multi_index(tuple(idx.T), NAV)
        if self.params.where == "process" and self.params.at in flat:
            raise self.params.exc("boom in process #42")

    def process_frame(self, frame):
        self._process(frame[None])

    def process_tile(self, tile):
        self._process(tile)

    def process_partition(self, partition):
        self._process(partition)

    def get_task_data(self):
        self._maybe_raise("get_task_data")
        return {}

    def postprocess(self):
        self._maybe_raise("postprocess")

    def merge(self, dest, src):
        self._maybe_raise("merge")
        dest.x[:] = src.x
        dest.s[:] += src.s

    def get_results(self):
        self._maybe_raise("get_results")
        return super().get_results()


@pytest.mark.parametrize("method", ["frame", "tile", "partition"])
@pytest.mark.parametrize("exc", list(EXCEPTIONS))
def test_exception_in_process_propagates(ctx, good_ds, exc, method):
    exc_type = EXCEPTIONS[exc]
    with pytest.raises(exc_type, match="boom in process #42") as info:
        ctx.run_udf(dataset=good_ds, udf=Raising(exc=exc_type, method=method))
    assert type(info.value) is exc_type
    assert "process" in CALLS
    assert_usable(ctx, good_ds)


@pytest.mark.parametrize("where", ["get_task_data", "postprocess", "merge", "get_results"])
def test_exception_in_hooks_propagates(ctx, good_ds, where):
    with pytest.raises(MyError, match=f"boom in {where} #42"):
        ctx.run_udf(dataset=good_ds, udf=Raising(exc=MyError, where=where))
    assert_usable(ctx, good_ds)


def test_exception_with_another_udf_in_the_list(ctx, good_ds):
    with pytest.raises(ZeroDivisionError, match="boom in process #42"):
        ctx.run_udf(dataset=good_ds, udf=[Good(), Raising(exc=ZeroDivisionError)])
    assert_usable(ctx, good_ds)


def test_exception_in_run_udf_iter(ctx, good_ds):
    gen = ctx.run_udf_iter(dataset=good_ds, udf=Raising(exc=KeyError, at=12))  # 2nd partition
    first = next(gen)
    assert not first.complete
    with pytest.raises(KeyError, match="boom in process #42"):
        next(gen)
    assert_usable(ctx, good_ds)


# -- tiles are read-only --------------------------------------------------------------------

class Writer(UDF):
    def __init__(self, native=False, method="tile"):
        super().__init__(native=native, method=method)

    def get_method(self):
        return self.params.method

    def get_preferred_input_dtype(self):
        return UDF.USE_NATIVE_DTYPE if self.params.native else np.float32

    def get_result_buffers(self):
        return {"x": self.buffer(kind="nav")}

    def process_tile(self, tile):
        tile[...] = 0

    def process_frame(self, frame):
        frame[...] = 0

    def process_partition(self, partition):
        partition[...] = 0


@pytest.mark.parametrize("method", ["tile", "frame", "partition"])
@pytest.mark.parametrize("native", [True, False], ids=["zero-copy", "decoded"])
@pytest.mark.parametrize("fmt", ["memory", "raw"])
def test_tiles_are_read_only(ctx, tmp_path, fmt, native, method):
    data = _data()
    before = data.copy()
    if fmt == "memory":
        ds = ctx.load("memory", data=data, sig_dims=2)
    else:
        path = tmp_path / "d.raw"
        data.tofile(path)
        ds = ctx.load("raw", path=str(path), dtype="uint16", nav_shape=NAV, sig_shape=SIG)
    with pytest.raises(ValueError, match="read-only"):
        ctx.run_udf(dataset=ds, udf=Writer(native=native, method=method))
    np.testing.assert_array_equal(data, before)
    if fmt == "raw":
        np.testing.assert_array_equal(np.fromfile(path, dtype="uint16").reshape(data.shape), before)
