"""Fuzz test over load and run parameters: every format, every executor (issue 15).

Each example writes a small data set with the writer of the format's own conformance suite
(``tests/io/formats``: its dtypes, signal dimensions, shapes and I/O backends), loads it
with drawn load parameters (``num_partitions``, ``sync_offset``, ``io_backend``, the stored
``dtype`` in each spelling, ``nav_shape`` reshaped, shorter than the file or longer with
``allow_partial``, the memory format's ``tileshape``; numpy integers and arrays where ints
and tuples go) and runs a drawn built-in UDF (``SumUDF``, ``SumSigUDF``, ``StdDevUDF``,
``ApplyMasksUDF``, ``PickUDF``, ``SumUDF`` with drawn tiling preferences) with a drawn ROI
(every form :func:`udfkit.common.parse_roi` takes) and corrections (dark, gain, excluded
pixels as a mask or coordinates). At most one drawn value is invalid:

* all valid: the result equals numpy on the whole array the file was written from;
* one invalid (``num_partitions``, ``sync_offset``, ``io_backend``, ``nav_shape``,
  ``sig_shape``, ``dtype``, an unknown parameter, ``roi``, ``dark``, ``gain``,
  ``excluded_pixels``, masks of the wrong shape, tiling preferences ``depth`` /
  ``total_size``): a :class:`~udfkit.errors.UdfkitError`, ``TypeError`` or ``ValueError``
  whose message names the parameter or shows its value.

Every example runs under a watchdog (:func:`udfkit.testing.fuzz.deadline`); after all
examples of a test, no child process, file descriptor or ``/dev/shm`` segment is left that
was not there before. Default run: a few examples per format and executor; the ``slow``
variant draws many more (scaled again by the hypothesis profile, see
:func:`udfkit.testing.profiles.examples`).
"""

from __future__ import annotations

import gc
import importlib
import os
import sys
import tempfile
import time
from math import prod
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, event, given, note, settings
from hypothesis import strategies as st

from udfkit import CorrectionSet
from udfkit.errors import UdfkitError
from udfkit.io.formats import BUILTIN_FORMATS, get_format
from udfkit.testing.contexts import ALL_EXECUTORS, SharedContexts
from udfkit.testing.fuzz import PrefersTiles, Resources, correct, deadline, names_parameter
from udfkit.testing.profiles import examples
from udfkit.udf import ApplyMasksUDF, PickUDF, StdDevUDF, SumSigUDF, SumUDF

#: the four executors, and inline with every task and result pickled (pickling bugs show
#: without processes)
EXECUTORS = ("inline", "inline-debug", "threads", "processes", "dask")
shared = SharedContexts({name: ALL_EXECUTORS[name] for name in EXECUTORS})
_close_shared_contexts = shared.closing_fixture()

#: format → (module in tests/io/formats, its conformance class): the writer, the dtypes, the
#: signal dimensions and I/O backends each format's own suite uses
SUITES = {
    "raw": ("test_raw", "TestRaw"),
    "npy": ("test_npy", "TestNPY"),
    "memory": ("test_memory", "TestMemory"),
    "hdf5": ("test_hdf5", "TestContiguous"),
    "dask": ("test_dask", "TestDask"),
    "stack": ("test_stack", "TestStack"),
    "zarr": ("test_zarr", "TestZarrV3"),
    "tiff": ("test_tiff", "TestTIFFFile"),
    "binary": ("test_binary", "TestBinary"),
    "mrc": ("test_mrc", "TestMRC"),
    "blo": ("test_blo", "TestBLO"),
    "empad": ("test_empad", "TestEMPAD"),
    "seq": ("test_seq", "TestSEQ"),
    "tvips": ("test_tvips", "TestTVIPS"),
    "ser": ("test_ser", "TestSER"),
    "dm": ("test_dm", "TestDMOneFile"),
    "mib": ("test_mib", "TestMIBDecoded"),
    "raw_csr": ("test_raw_csr", "TestRawCSRConformance"),
}

#: seconds one example may take (a processes or dask run on a loaded 2-core machine takes
#: well under one)
EXAMPLE_TIMEOUT = 60

#: invalid values whose error does not name the parameter yet (reported, not drawn until
#: fixed); empty since tiling preferences' errors name depth / total_size
KNOWN_DEFECTS: set = set()

#: what a rejected parameter may raise
ALLOWED = (UdfkitError, TypeError, ValueError)


def test_every_format_is_fuzzed():
    assert sorted(SUITES) == sorted(BUILTIN_FORMATS)


def _suite(fmt: str):
    """An instance of the format's conformance class (for its writer and knobs), imported as
    pytest imports it (``formats.test_x``, with ``tests/io`` on ``sys.path``), so that both
    share one module object."""
    module, cls = SUITES[fmt]
    root = str(Path(__file__).parent / "io")
    if root not in sys.path:
        sys.path.insert(0, root)
    return getattr(importlib.import_module(f"formats.{module}"), cls)()


# -- drawing -----------------------------------------------------------------------------------

class Example:
    """One drawn example: the written case, the load keyword arguments, the nav shape they
    give, the UDF, ROI (and its flat meaning), corrections, how the run is driven, and which
    parameter (if any) was made invalid, with its value."""

    def __init__(self, case, load_kw, nav_shape, udf_kind, udf_kw, roi, roi_flat, corrections,
                 *, also_sumsig=False, mode="run", bad=None):
        self.case = case
        self.load_kw = load_kw
        self.nav_shape = nav_shape
        self.udf_kind = udf_kind
        self.udf_kw = udf_kw
        self.roi = roi
        self.roi_flat = roi_flat
        self.corrections = corrections
        self.also_sumsig = also_sumsig  # SumSigUDF in the same pass
        self.mode = mode                # "run", "iter" or "iter_closed_early"
        self.bad = bad                  # None or (parameter name, value)

    def __repr__(self):
        return (f"Example({self.case!r}, load_kw={self.load_kw}, udf={self.udf_kind}"
                f"({self.udf_kw}){' + sumsig' if self.also_sumsig else ''}, mode={self.mode}, "
                f"roi={_short(self.roi)}, corrections={self.corrections}, "
                f"bad={self.bad and (self.bad[0], _short(self.bad[1]))})")


def _short(value):
    if isinstance(value, np.ndarray):
        return f"array{value.shape}:{value.astype(int).tolist() if value.size < 40 else '...'}"
    return value


@st.composite
def valid_rois(draw, nav_shape):
    """A ROI in one of the forms ``parse_roi`` takes, and its flat bool meaning."""
    n = prod(nav_shape)
    flat = np.asarray(draw(st.lists(st.booleans(), min_size=n, max_size=n)), bool)
    kind = draw(st.sampled_from(["none", "nav", "flat", "int01", "coordinate", "coordinates",
                                 "libertem", "libertem_false", "sparse", "pydata", "tolist"]))
    coords = [tuple(int(c) for c in np.unravel_index(i, nav_shape)) for i in np.flatnonzero(flat)]
    if kind == "none":
        return None, np.ones(n, bool)
    if kind == "nav":
        return flat.reshape(nav_shape), flat
    if kind == "flat":
        return flat, flat
    if kind == "int01":
        return flat.astype(draw(st.sampled_from(["uint8", "int64", "float32"]))).reshape(nav_shape), flat
    if kind == "coordinate":
        i = draw(st.integers(0, n - 1))
        one = np.zeros(n, bool)
        one[i] = True
        return tuple(int(c) for c in np.unravel_index(i, nav_shape)), one
    if kind == "coordinates" and coords:
        return coords, flat
    if kind == "libertem" and coords:
        return [(c, True) for c in coords], flat
    if kind == "libertem_false" and coords:
        return [(c, False) for c in coords], ~flat
    if kind == "sparse" and len(nav_shape) == 2:
        import scipy.sparse

        return scipy.sparse.csr_matrix(flat.reshape(nav_shape)), flat
    if kind == "pydata":
        import sparse

        return sparse.COO.from_numpy(flat.reshape(nav_shape)), flat
    if kind == "tolist" and len(nav_shape) == 2:
        return flat.reshape(nav_shape).tolist(), flat   # a list of lists is read as an array
    return flat.reshape(nav_shape), flat


def invalid_rois(nav_shape):
    n = prod(nav_shape)
    return st.sampled_from([
        np.ones(n + 1, bool),                                   # one entry too many
        np.ones(nav_shape + (2,), bool),                        # an axis too many
        tuple(s + 1 for s in nav_shape),                        # coordinate outside
        tuple(0 for _ in nav_shape) + (5,),                     # coordinate of the wrong rank
        "all",
        np.full(nav_shape, 0.5),                                # neither 0 nor 1
    ])


@st.composite
def corrections(draw, sig_shape):
    """``(CorrectionSet or None, dark, gain, excluded mask)``, all valid."""
    if draw(st.integers(0, 2)) == 0:
        return None, None, None, None
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    dark = gain = mask = None
    if draw(st.booleans()):
        dark = rng.integers(-3, 4, size=sig_shape).astype(np.float64)
    if draw(st.booleans()):
        gain = rng.integers(1, 9, size=sig_shape) / 4
    n_px = prod(sig_shape)
    if n_px > 1 and draw(st.booleans()):
        mask = np.zeros(n_px, bool)
        mask[draw(st.lists(st.integers(0, n_px - 1), min_size=1, max_size=n_px - 1))] = True
        mask = mask.reshape(sig_shape)
    excluded = mask
    if mask is not None and draw(st.booleans()):
        excluded = [tuple(int(c) for c in p) for p in np.argwhere(mask)]   # coordinate form
    if dark is None and gain is None and mask is None:
        dark = np.zeros(sig_shape)
    return CorrectionSet(dark=dark, gain=gain, excluded_pixels=excluded), dark, gain, mask


def invalid_corrections(sig_shape):
    wrong = tuple(sig_shape[:-1]) + (sig_shape[-1] + 1,)
    outside = [tuple(s for s in sig_shape)]
    return st.sampled_from([
        ("dark", lambda: CorrectionSet(dark=np.zeros(wrong))),
        ("gain", lambda: CorrectionSet(gain=np.ones(wrong))),
        ("excluded_pixels", lambda: CorrectionSet(excluded_pixels=outside)),
        ("excluded_pixels", lambda: CorrectionSet(excluded_pixels=np.ones(sig_shape, bool))),
    ])


def _masks(sig_shape, count, seed):
    return np.random.default_rng(seed).integers(-3, 4, size=(count,) + tuple(sig_shape)).astype(float)


@st.composite
def fuzz_examples(draw, fmt: str, suite):
    """An :class:`Example` of ``fmt``, written by ``suite``; about half with one invalid value."""
    case = draw(suite._cases(roi_kinds=("none",)))
    accepted = {p.name for p in get_format(fmt).params}
    sig = case.sig_shape
    n_file = case.nav_size
    load_kw = {"num_partitions": case.num_partitions}
    # the nav shape: as written, another shape of the same size, fewer positions than the
    # file has frames, or more (allow_partial: the last positions have no frame)
    nav = case.nav_shape
    variants = ["written"]
    if "nav_shape" in accepted and suite.supports_nav_reshape:
        variants += ["reshaped", "fewer"] + (["more"] if "allow_partial" in accepted else [])
    variant = draw(st.sampled_from(variants))
    if variant == "reshaped":
        d = draw(st.sampled_from([d for d in range(1, n_file + 1) if n_file % d == 0]))
        nav = draw(st.sampled_from([(n_file,), (d, n_file // d)]))
    elif variant == "fewer" and n_file > 1:
        nav = (draw(st.integers(1, n_file - 1)),)
    elif variant == "more":
        nav = (n_file + draw(st.integers(1, 3)),)
        load_kw["allow_partial"] = True
    if nav != case.nav_shape:
        load_kw["nav_shape"] = nav
    n = prod(nav)
    if suite.supports_sync_offset:
        # valid: more than -(nav positions), less than the frames in the file
        load_kw["sync_offset"] = case.sync_offset if -n < case.sync_offset < n_file else 0
    if case.io_backend is not None:
        load_kw["io_backend"] = case.io_backend
    if "tileshape" in accepted and draw(st.booleans()):
        load_kw["tileshape"] = (draw(st.integers(1, 4)),) + tuple(draw(st.integers(1, s))
                                                                  for s in sig)

    # the same values as numpy integers and arrays, as a script computes them
    if draw(st.booleans()):
        int_type = draw(st.sampled_from([np.int64, np.int32, np.uint16]))
        for key in ("num_partitions", "sync_offset"):
            if key in load_kw and (load_kw[key] >= 0 or int_type is not np.uint16):
                load_kw[key] = int_type(load_kw[key])
        if "nav_shape" in load_kw:
            load_kw["nav_shape"] = draw(st.sampled_from([list, np.array]))(load_kw["nav_shape"])

    if "dtype" in accepted and draw(st.booleans()):
        # the stored dtype in each form a user may spell it
        forms = [case.dtype, case.dtype.str] + ([case.dtype.type, case.dtype.name]
                                                 if case.dtype.isnative else [])
        load_kw["dtype"] = draw(st.sampled_from(forms))

    # candidates for the one invalid value: parameter → values
    bad_load = {"num_partitions": [0, -2, 1.5, "two", np.float64(2.5)],
                "nav_shap": [(n,)]}   # an unknown parameter, as a typo gives it
    if suite.supports_sync_offset and "sync_offset" in accepted:
        bad_load["sync_offset"] = [n_file, -n, n_file + 3, -n - 2, "1", 0.5, float("nan")]
    if "io_backend" in accepted and suite.io_backends:
        bad_load["io_backend"] = ["nope", 3]
    if "nav_shape" in accepted:
        bad_load["nav_shape"] = [(0,), (-2, n), ("x",)] + \
            ([] if load_kw.get("allow_partial") else [(n_file + 1,)])
    if "sig_shape" in accepted and fmt not in ("stack",):
        # more elements per frame than the whole data set has (a sig_shape that divides it
        # is a valid reinterpretation, the nav shape then follows from it)
        bad_load["sig_shape"] = [(0,) + sig[1:], (n_file * prod(sig) + 1,)]
    if "dtype" in accepted:
        bad_load["dtype"] = ["q9", ("i4", -1)]
    if "tileshape" in accepted:
        # (a tile larger than the frame is clamped to it, by design: not drawn as invalid)
        bad_load["tileshape"] = [(0,) + sig, (1,) + sig + (1,), (2,) + sig[:-1]]

    udf_kind = draw(st.sampled_from(["sum", "sumsig", "stddev", "masks", "pick", "tiles"]))
    udf_kw = {}
    if udf_kind == "masks":
        udf_kw = dict(count=draw(st.integers(1, 3)), seed=draw(st.integers(0, 2**16)))
    elif udf_kind == "tiles":
        udf_kw = dict(depth=draw(st.one_of(st.none(), st.integers(1, 5))),
                      total_size=draw(st.sampled_from([None, 16, 4096, "1k"])),
                      whole_frames=draw(st.booleans()))
    roi, roi_flat = draw(valid_rois(nav))
    corr = draw(corrections(sig))

    bad = None
    choice = draw(st.sampled_from(["valid", "valid", "load", "run"]))
    if choice == "load":
        name = draw(st.sampled_from(sorted(bad_load)))
        value = draw(st.sampled_from(bad_load[name]))
        load_kw[name] = value
        bad = (name, value)
    elif choice == "run":
        what = draw(st.sampled_from(["roi", "corrections", "masks", "depth", "total_size"]))
        if what == "roi":
            roi = draw(invalid_rois(nav))
            roi_flat = None
            bad = ("roi", roi)
        elif what == "corrections":
            name, make = draw(invalid_corrections(sig))
            corr = (make, None, None, None)
            bad = (name, None)
        elif what == "masks":
            udf_kind = "masks"
            wrong = sig[:-1] + (sig[-1] + 1,)
            udf_kw = dict(count=1, seed=0, shape=wrong)
            bad = ("mask", None)
        else:
            udf_kind = "tiles"
            values = [0, -3, "deep"] if what == "depth" else [v for v in (-1, 0, "lots")
                                                             if (what, v) not in KNOWN_DEFECTS]
            value = draw(st.sampled_from(values))
            udf_kw = dict(depth=value if what == "depth" else None,
                          total_size=value if what == "total_size" else None, whole_frames=False)
            bad = (what, value)
    # one pass for two UDFs; the results as they come (run_udf_iter), or a loop that stops
    # after the first partial result
    return Example(case, load_kw, nav, udf_kind, udf_kw, roi, roi_flat, corr,
                   also_sumsig=draw(st.booleans()),
                   mode=draw(st.sampled_from(["run", "run", "iter", "iter_closed_early"])), bad=bad)


# -- running and checking ------------------------------------------------------------------------

def _make_udf(ex: Example):
    kind, kw = ex.udf_kind, ex.udf_kw
    if kind == "sum":
        return SumUDF()
    if kind == "sumsig":
        return SumSigUDF()
    if kind == "stddev":
        return StdDevUDF()
    if kind == "pick":
        return PickUDF()
    if kind == "tiles":
        return PrefersTiles(**kw)
    shape = kw.get("shape", ex.case.sig_shape)
    return ApplyMasksUDF(mask_factories=list(_masks(shape, kw["count"], kw["seed"])))


def _expected_frames(ex: Example):
    """``(processed, frames)``: per flat nav position whether it is processed, and the
    processed frames (corrected) in flat nav order as float64 / complex128."""
    case = ex.case
    wide = np.complex128 if case.dtype.kind == "c" else np.float64
    stored = case.frames.astype(wide)
    src = np.arange(prod(ex.nav_shape)) + ex.load_kw.get("sync_offset", 0)
    has = (src >= 0) & (src < case.nav_size)
    processed = has & ex.roi_flat
    frames = stored[src[processed]]
    corr, dark, gain, mask = ex.corrections
    if corr is not None:
        frames = correct(frames, dark, gain, mask)
    return processed, frames


def _check_nav(result, processed, rows, nav_shape, rtol, atol):
    rows = np.asarray(rows)
    extra = rows.shape[1:]
    data = np.asarray(result.data)
    assert data.shape == tuple(nav_shape) + extra
    flat = data.reshape((-1,) + extra)
    np.testing.assert_allclose(flat[processed], rows, rtol=rtol, atol=atol)
    valid = np.asarray(result.valid_mask).reshape((len(processed), -1))
    assert (valid.all(axis=1) == processed).all(), "valid_mask is not the processed positions"


def _check_result(ex: Example, res):
    case = ex.case
    processed, frames = _expected_frames(ex)
    nav_shape = ex.nav_shape
    scale = float(np.abs(frames).max()) + 1 if frames.size else 1.0
    # float32 input (the default), means of excluded pixels: a few float32 roundings
    rtol, atol = 1e-5, 1e-5 * scale * max(1, len(frames))
    sig = case.sig_shape
    if ex.udf_kind in ("sum", "tiles"):
        np.testing.assert_allclose(res["intensity"].data, frames.sum(axis=0).reshape(sig),
                                   rtol=rtol, atol=atol)
    elif ex.udf_kind == "sumsig":
        _check_nav(res["intensity"], processed, frames.reshape(len(frames), prod(sig)).sum(axis=1),
                   nav_shape, rtol, atol)
    elif ex.udf_kind == "stddev":
        assert int(res["num_frames"].data[0]) == len(frames)
        if len(frames):
            np.testing.assert_allclose(res["sum"].data, frames.sum(axis=0), rtol=rtol, atol=atol)
            np.testing.assert_allclose(res["mean"].data, frames.mean(axis=0), rtol=rtol,
                                       atol=1e-5 * scale)
            np.testing.assert_allclose(res["var"].data, frames.var(axis=0), rtol=1e-4,
                                       atol=1e-4 * scale ** 2)
    elif ex.udf_kind == "pick":
        got = res["intensity"].data
        assert got.shape == (len(frames),) + sig
        np.testing.assert_allclose(got, frames, rtol=rtol, atol=1e-5 * scale)
    elif ex.udf_kind == "masks":
        masks = _masks(sig, ex.udf_kw["count"], ex.udf_kw["seed"]).reshape(ex.udf_kw["count"], -1)
        rows = frames.reshape(len(frames), prod(sig)) @ masks.T
        _check_nav(res["intensity"], processed, rows, nav_shape, rtol, atol * 4)
    else:
        raise AssertionError(ex.udf_kind)


def run_example(ctx, fmt: str, suite, ex: Example, executor: str) -> None:
    """Write, load and run ``ex``; assert the numpy result or a clear error."""
    note(repr(ex))
    event(f"udf {ex.udf_kind}")
    event("valid" if ex.bad is None else f"invalid {ex.bad[0]}")
    corr = ex.corrections[0]
    with tempfile.TemporaryDirectory() as tmp, deadline(EXAMPLE_TIMEOUT, f"{fmt} on {executor}"):
        params = suite.write(Path(tmp), ex.case.data, sig_dims=len(ex.case.sig_shape))
        try:
            ds = ctx.load(fmt, **{**params, **ex.load_kw})
            if callable(corr):
                corr = corr()
            udfs = [_make_udf(ex)] + ([SumSigUDF()] if ex.also_sumsig else [])
            kw = dict(dataset=ds, udf=udfs, roi=ex.roi, corrections=corr)
            if ex.mode == "run":
                res = ctx.run_udf(**kw)
            elif ex.mode == "iter":
                parts = ctx.run_udf_iter(**kw)
                *_, last = parts
                assert last.complete
                res = last.buffers
            else:  # a loop left after the first partial result: the run stops, nothing stays
                parts = ctx.run_udf_iter(**kw)
                next(parts)
                parts.close()
                res = None
        except ALLOWED as err:
            if ex.bad is None:
                raise AssertionError(f"valid parameters refused: {type(err).__name__}: {err}") \
                    from err
            name, value = ex.bad
            assert str(err).strip(), f"{type(err).__name__} without a message for {name}"
            assert names_parameter(err, name, value), \
                f"the error for {name}={_short(value)!r} does not name it: {type(err).__name__}: {err}"
            return
        finally:
            ds = None
        if ex.bad is not None:
            raise AssertionError(f"{ex.bad[0]}={_short(ex.bad[1])!r} was accepted")
        if res is not None:
            _check_result(ex, res[0])
            if ex.also_sumsig:
                processed, frames = _expected_frames(ex)
                rows = frames.reshape(len(frames), prod(ex.case.sig_shape)).sum(axis=1)
                scale = float(np.abs(frames).max()) + 1 if frames.size else 1.0
                _check_nav(res[1]["intensity"], processed, rows, ex.nav_shape, 1e-5,
                           1e-5 * scale * prod(ex.case.sig_shape))


#: executors and formats that have had their first run in this process
_warmed: set = set()


def fuzz(fmt: str, executor: str, n: int) -> None:
    """``n`` examples (scaled by the profile) of ``fmt`` on ``executor``, then the leak check."""
    suite = _suite(fmt)
    ctx = shared(executor)
    # the first run on an executor starts its workers, the first run of a format what its
    # library keeps for the process (zarr's event loop and its socket pair): count what is
    # there after them
    firsts = {("executor", executor), ("format", fmt)}
    if firsts - _warmed:
        with deadline(EXAMPLE_TIMEOUT * 2, f"the first {fmt} run on {executor}"), \
                tempfile.TemporaryDirectory() as tmp:
            case = suite._fixed_case(suite.io_backends[0] if suite.io_backends else None)
            params = suite.write(Path(tmp), case.data, sig_dims=len(case.sig_shape))
            ctx.run_udf(dataset=ctx.load(fmt, **params), udf=SumUDF())
        _warmed.update(firsts)
    before = Resources()

    @settings(max_examples=examples(n), deadline=None,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                     HealthCheck.filter_too_much])
    @given(ex=fuzz_examples(fmt, suite))
    def check(ex):
        run_example(ctx, fmt, suite, ex, executor)

    check()
    assert_nothing_left(before, executor)


def assert_nothing_left(before: Resources, executor: str) -> None:
    """No child process, file descriptor or segment more than ``before``. A leak stays; what
    goes away within a second is not one (workers that exit after a cancel, and /proc files
    that monitoring threads of the dask cluster read now and then)."""
    clean = {"children": [], "fds": {}, "shm": []}
    # a dask cluster of this module (its Context opened by an earlier case) opens and closes
    # sockets of its own client on its own schedule, also while an inline case runs
    cluster = executor == "dask" or "dask" in shared._open
    for _ in range(20):
        leaked = Resources().leaked_since(before, ignore_sockets=cluster)
        if leaked == clean:
            return
        gc.collect()  # only then: a full collection costs ~0.1 s with dask and h5py loaded
        time.sleep(0.05)
    assert leaked == clean, f"left behind: {leaked}"


#: the slow variant's examples, as a multiple of the default run's
LONG_EXAMPLES = int(os.environ.get("UDFKIT_FUZZ_FACTOR", "10"))

#: examples per format in the default run: more in-process, fewer where every run costs
#: worker round trips
DEFAULT_EXAMPLES = {"inline": 10, "inline-debug": 3, "threads": 5, "processes": 5, "dask": 2}

#: the executors as parameters; dask's cases are marked ``cluster`` (``-m "not cluster"``
#: leaves them out; tests/conftest.py would mark them too)
EXECUTOR_PARAMS = [pytest.param(e, marks=[pytest.mark.cluster] if e == "dask" else [], id=e)
                   for e in EXECUTORS]


@pytest.mark.parametrize("executor", EXECUTOR_PARAMS)
@pytest.mark.parametrize("fmt", sorted(SUITES))
def test_fuzz(fmt, executor):
    """A few examples of every format on every executor."""
    fuzz(fmt, executor, DEFAULT_EXAMPLES[executor])


@pytest.mark.slow
@pytest.mark.parametrize("executor", EXECUTOR_PARAMS)
@pytest.mark.parametrize("fmt", sorted(SUITES))
def test_fuzz_long(fmt, executor):
    """Many examples of every format on every executor."""
    fuzz(fmt, executor, LONG_EXAMPLES * DEFAULT_EXAMPLES[executor])

