"""Property tests of the built-in UDFs: every result equals numpy on the whole array.

Whatever the stored dtype (including big-endian and complex), nav / sig dimensions, file
format, ``sync_offset`` (frames missing at either end count as positions outside the ROI),
number of partitions, forced tile shape (including tiles that cut rows), ROI and executor
(inline, and inline with ``debug=True``, which pickles every task and result), and whatever
other UDFs share the pass (each gets its own input dtype: the stored one for most built-ins,
float32 or wider for ApplyMasksUDF and MapUDF), the results of SumUDF,
SumSigUDF, StdDevUDF, StatsUDF, PickUDF, ApplyMasksUDF, LogsumUDF, MapUDF and RecordUDF
equal the numpy computation on the processed frames (:mod:`udfkit.testing.strategies`).
"""

from __future__ import annotations

import json
import os
import tempfile
import warnings
from math import prod

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from udfkit import Context
from udfkit.testing import ALL_EXECUTORS, SharedContexts
from udfkit.testing.profiles import examples
from udfkit.testing.strategies import (
    REAL_DTYPES,
    BCase,
    assert_nav_rows,
    build_masks,
    cases,
    check_stddev,
    expected_input_dtype,
    load,
    masks_spec,
    ref_logsum,
    ref_masks,
    ref_sum,
    ref_sumsig,
)
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

SETTINGS = dict(deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                        HealthCheck.data_too_large])
EXECUTORS = ALL_EXECUTORS
shared_context = SharedContexts(EXECUTORS)
_close_shared_contexts = shared_context.closing_fixture()


UDF_NAMES = ["sum", "sumsig", "stddev", "stats", "pick", "logsum", "masks", "map", "record"]
NATIVE = {"sum", "sumsig", "stddev", "stats", "pick", "logsum", "record"}


def mask_spec_dtype(spec) -> np.dtype:
    """The dtype of the masks ``build_masks`` makes for ``spec`` (bool, complex or float)."""
    values = spec[2]
    return np.dtype(bool if values == "bool" else np.complex128 if values == "complex" else np.float64)


def map_f(frame):
    """MapUDF function: (sum, max |x|) of a frame."""
    return np.stack([frame.sum(), np.abs(frame).max()])


# -- one run of a drawn list of built-in UDFs, checked against numpy -------------------------

class Plan:
    """The UDFs of one run (built fresh for every run) and their checks."""

    def __init__(self, case: BCase, names, mask_spec=None, use_sparse=None, mask_dtype=None,
                 tmpdir=None, record_fmt="npy"):
        self.case = case
        self.names = list(names)
        self.mask_spec = mask_spec
        self.use_sparse = use_sparse
        self.mask_dtype = mask_dtype
        self.record_path = None
        if "record" in self.names:
            self.record_path = os.path.join(str(tmpdir), "out.npy" if record_fmt == "npy"
                                            else "out.bin")
        if "masks" in self.names:
            self.factories, self.matrix = build_masks(case.sig_shape, mask_spec)
            # LiberTEM's rule: the masks' own dtype unless mask_dtype is given; the input is
            # float32 promoted with it, so mask_dt is what the product runs in at least
            own = mask_spec_dtype(mask_spec)
            self.mask_dt = np.dtype(np.result_type(np.float32, own if mask_dtype is None else mask_dtype))
        # each UDF of a run gets its own preference promoted with the stored dtype
        self.input_dtypes = {}
        for name in self.names:
            pref = [] if name in NATIVE else [self.mask_dt if name == "masks" else np.float32]
            self.input_dtypes[name] = expected_input_dtype(case, pref)
        self.name = None

    @property
    def input_dtype(self):
        """The input dtype of the UDF being checked (or of the only UDF)."""
        return self.input_dtypes[self.name or self.names[0]]

    def udfs(self):
        out = []
        for name in self.names:
            if name == "sum":
                out.append(SumUDF())
            elif name == "sumsig":
                out.append(SumSigUDF())
            elif name == "stddev":
                out.append(StdDevUDF())
            elif name == "stats":
                out.append(StatsUDF())
            elif name == "pick":
                out.append(PickUDF())
            elif name == "logsum":
                out.append(LogsumUDF())
            elif name == "masks":
                out.append(ApplyMasksUDF(mask_factories=self.factories, use_sparse=self.use_sparse,
                                         mask_dtype=self.mask_dtype))
            elif name == "map":
                out.append(MapUDF(f=map_f))
            elif name == "record":
                out.append(RecordUDF(path=self.record_path, overwrite=True))
        return out

    def check(self, results):
        assert len(results) == len(self.names)
        for name, res in zip(self.names, results):
            self.name = name
            getattr(self, f"check_{name}")(res)
        self.name = None

    # the checks, one per UDF
    def check_sum(self, res):
        c = self.case
        r = res["intensity"]
        assert r.data.shape == c.sig_shape
        assert r.data.dtype == (np.complex128 if self.input_dtype.kind == "c" else np.float64)
        np.testing.assert_allclose(r.data, ref_sum(c), rtol=1e-12, atol=0)
        assert r.valid_mask.all()

    def check_sumsig(self, res):
        r = res["intensity"]
        assert r.data.dtype == (np.complex128 if self.input_dtype.kind == "c" else np.float64)
        assert_nav_rows(r, ref_sumsig(self.case), self.case, rtol=1e-12)

    def check_stddev(self, res):
        check_stddev(res, self.case, input_dtype=self.input_dtype)

    def check_stats(self, res):
        check_stddev(res, self.case, minmax=self.case.n > 0, input_dtype=self.input_dtype)
        assert res["min"].data.dtype == self.input_dtype
        assert res["max"].data.dtype == self.input_dtype

    def check_pick(self, res):
        c = self.case
        r = res["intensity"]
        assert r.data.shape == (c.n,) + c.sig_shape
        # the stored dtype in native byte order, whatever the other UDFs of the run want
        assert r.data.dtype == self.input_dtype == c.native_dtype
        np.testing.assert_array_equal(r.data, c.native_frames)

    def check_logsum(self, res):
        r = res["logsum"]
        assert r.data.dtype == np.float64 and r.data.shape == self.case.sig_shape
        np.testing.assert_allclose(r.data, ref_logsum(self.case), rtol=1e-10, atol=1e-9)

    def check_masks(self, res):
        c = self.case
        r = res["intensity"]
        count = self.matrix.shape[0]
        assert r.data.dtype == np.result_type(self.input_dtype, self.mask_dt)
        expected, scale = ref_masks(c, self.matrix)
        # double precision masks and computation: (nearly) exact; else float32 (rtol ~1e-4)
        double = (np.dtype(np.float64), np.dtype(np.complex128))
        tol = 1e-12 if self.mask_dt in double and self.input_dtype in double else 2e-4
        assert_nav_rows(r, expected.reshape(c.n, count), c, rtol=0,
                        atol=tol * (float(scale.max()) if scale.size else 0) + 1e-300)
        got = r.data.reshape(-1, count)[c.processed]
        assert (np.abs(got - expected) <= tol * scale + 1e-300).all()

    def check_map(self, res):
        c = self.case
        r = res["result"]
        frames = c.frames.astype(self.input_dtype)
        expected = np.stack([map_f(f) for f in frames]) if c.n else np.zeros((0, 2))
        assert r.data.shape == c.nav_shape + (2,)
        assert_nav_rows(r, expected, c, rtol=1e-6, atol=1e-6)

    def check_record(self, res):
        c = self.case
        assert int(res["frames_written"].data[0]) == c.n
        if self.record_path.endswith(".npy"):
            written = np.load(self.record_path)
        else:
            with open(self.record_path + ".json") as f:
                side = json.load(f)
            assert tuple(side["sig_shape"]) == c.sig_shape
            written = np.fromfile(self.record_path, dtype=np.dtype(side["dtype"]))
            written = written.reshape(tuple(side["nav_shape"]) + tuple(side["sig_shape"]))
        if c.roi is None and c.has_frame.all():
            assert written.shape == c.nav_shape + c.sig_shape
        else:
            assert written.shape == (c.n,) + c.sig_shape
        assert written.dtype == self.input_dtype == c.native_dtype
        np.testing.assert_array_equal(written.reshape((c.n,) + c.sig_shape), c.native_frames)


@st.composite
def plans(draw, case_strategy=None, names=None, min_udfs=1, max_udfs=4):
    """A case plus a drawn list of built-in UDFs to run on it in one pass."""
    case = draw(case_strategy if case_strategy is not None else cases())
    complex_ = case.dtype.kind == "c"
    allowed = [n for n in (names or UDF_NAMES)
               if not (complex_ and n in ("stats", "logsum"))]
    chosen = draw(st.lists(st.sampled_from(allowed), min_size=min_udfs, max_size=max_udfs,
                           unique=True))
    kw = {}
    if "masks" in chosen:
        spec = draw(masks_spec(case.sig_shape))
        complex_masks = spec[2] == "complex"
        dtypes = [None, "complex64", "complex128"] if complex_masks \
            else [None, "float32", "float64"]
        kw = dict(mask_spec=spec, use_sparse=draw(st.sampled_from([None, True, False])),
                  mask_dtype=draw(st.sampled_from(dtypes)))
    kw["record_fmt"] = draw(st.sampled_from(["npy", "raw"]))
    return case, chosen, kw


def run_plan(ctx, case, names, kw, tmpdir, fmt=None):
    plan = Plan(case, names, tmpdir=tmpdir, **kw)
    ds = load(ctx, case, tmpdir, fmt=fmt)
    results = ctx.run_udf(dataset=ds, udf=plan.udfs(), roi=case.roi)
    plan.check(results)
    return plan, ds, results


# -- the central property --------------------------------------------------------------------

@settings(max_examples=examples(100), **SETTINGS)
@given(drawn=plans(max_udfs=6), executor=st.sampled_from(sorted(EXECUTORS)))
def test_builtins_equal_numpy(drawn, executor):
    """A drawn list of up to six built-in UDFs in one pass over a drawn data set equals numpy
    (``--hypothesis-profile=nightly`` runs ten times the examples)."""
    case, names, kw = drawn
    with tempfile.TemporaryDirectory() as tmpdir:
        run_plan(shared_context(executor), case, names, kw, tmpdir)


@settings(max_examples=examples(60), **SETTINGS)
@given(case=cases(formats=["raw"]), debug=st.booleans())
def test_each_builtin_alone_on_raw_files_with_sync_offset(case, debug):
    """Every built-in on its own (each gets its preferred input dtype: native for most)."""
    names = [n for n in UDF_NAMES if n not in ("record",)
             and not (case.dtype.kind == "c" and n in ("stats", "logsum"))
             and not (n == "pick" and case.n == 0)]
    with tempfile.TemporaryDirectory() as tmpdir:
        with Context.make_with("inline", debug=debug) as ctx:
            ds = load(ctx, case, tmpdir)
            for name in names:
                kw = {}
                if name == "masks":
                    kw = dict(mask_spec=("stack", 2, "int", 1))
                plan = Plan(case, [name], tmpdir=tmpdir, **kw)
                if name == "pick":
                    assert plan.input_dtype == case.native_dtype
                plan.check(ctx.run_udf(dataset=ds, udf=plan.udfs(), roi=case.roi))


# -- tiles that cut rows ---------------------------------------------------------------------

TILE_UDFS = ["sum", "sumsig", "stddev", "stats", "masks"]


@settings(max_examples=examples(40), **SETTINGS)
@given(dtype=st.sampled_from(REAL_DTYPES + ["complex64"]),
       tileshape=st.one_of(st.just((2, 3, 5)),
                           st.tuples(st.integers(1, 7), st.integers(1, 16), st.integers(1, 12))),
       nav_shape=st.sampled_from([(5, 7), (3, 4), (36,), (2, 3, 4)]),
       num_partitions=st.integers(1, 5), seed=st.integers(0, 2**32 - 1),
       roi_kind=st.sampled_from([None, "random"]), debug=st.booleans(),
       udf_names=st.lists(st.sampled_from(TILE_UDFS), min_size=1, max_size=5, unique=True))
def test_forced_tiles_cutting_rows(dtype, tileshape, nav_shape, num_partitions, seed, roi_kind,
                                   debug, udf_names):
    """Tile-based built-ins with a forced tile shape such as (2, 3, 5) on a (16, 12) frame:
    the scheme really cuts rows, and the results still equal numpy."""
    if np.dtype(dtype).kind == "c" and "stats" in udf_names:
        udf_names = [n for n in udf_names if n != "stats"] or ["sum"]
    nav_size = prod(nav_shape)
    roi = None
    if roi_kind == "random":
        roi = np.random.default_rng(seed).random(nav_shape) < 0.6
    case = BCase(nav_shape=nav_shape, sig_shape=(16, 12), dtype=dtype, image_count=nav_size,
                 num_partitions=num_partitions, tileshape=tileshape, roi=roi, seed=seed)
    kw = {}
    if "masks" in udf_names:
        kw = dict(mask_spec=("mixed", 3, "normal", seed), mask_dtype="float64")
    with Context.make_with("inline", debug=debug) as ctx:
        ds = load(ctx, case, None)
        plan = Plan(case, udf_names, **kw)
        udfs = plan.udfs()
        plan.check(ctx.run_udf(dataset=ds, udf=udfs, roi=roi))
    scheme = udfs[0].meta.tiling_scheme
    # the forced shape is used as given (depth capped at the largest partition)
    assert scheme.shape[1:] == tuple(tileshape[1:])
    assert scheme.depth <= tileshape[0]


# -- ApplyMasksUDF ---------------------------------------------------------------------------

@settings(max_examples=examples(120), **SETTINGS)
@given(case=cases(dtypes=["uint8", "uint16", ">u2", "int16", "int32", "float32", ">f4",
                          "float64", "complex64"], max_sig_dims=3),
       data=st.data(), debug=st.booleans())
def test_apply_masks(case, data, debug):
    """Dense arrays, stacks, callables, scipy.sparse matrices and arrays (2D signals: of the
    signal shape; other signals: (k, pixels) rows), mixed; use_sparse True / False / None;
    mask_dtype default (the masks' own: bool -> float32, float64 / complex128 nearly exact),
    float32 (rtol ~1e-4), float64, complex."""
    spec = data.draw(masks_spec(case.sig_shape), label="masks")
    complex_masks = spec[2] == "complex"
    mask_dtype = data.draw(st.sampled_from(
        [None, "complex64", "complex128"] if complex_masks else [None, "float32", "float64"]),
        label="mask_dtype")
    use_sparse = data.draw(st.sampled_from([None, True, False]), label="use_sparse")
    with tempfile.TemporaryDirectory() as tmpdir:
        with Context.make_with("inline", debug=debug) as ctx:
            plan, _, results = run_plan(ctx, case, ["masks"], dict(
                mask_spec=spec, use_sparse=use_sparse, mask_dtype=mask_dtype), tmpdir)
    r = results[0]["intensity"]
    assert r.data.shape == case.nav_shape + (plan.matrix.shape[0],)


@pytest.mark.parametrize("use_sparse", [None, True, False])
@pytest.mark.parametrize("mask_dtype", [None, "float64"])
def test_apply_masks_float_masks_on_float64_data(use_sparse, mask_dtype):
    """Random float masks on float64 data: float32 computation within ~1e-4, float64 exact."""
    import scipy.sparse as sp

    rng = np.random.default_rng(7)
    data = rng.normal(size=(6, 7, 16, 12))
    masks = rng.normal(size=(3, 16, 12))
    masks[rng.random(masks.shape) < 0.5] = 0
    factories = [masks[0], sp.csr_matrix(masks[1]), lambda: masks[2]]
    ctx = Context.make_with("inline")
    ds = ctx.load("memory", data=data, num_partitions=3, tileshape=(4, 5, 7))
    res = ctx.run_udf(dataset=ds, udf=ApplyMasksUDF(mask_factories=factories,
                                                    use_sparse=use_sparse, mask_dtype=mask_dtype))
    got = res["intensity"].data
    expected = np.einsum("abij,kij->abk", data, masks)
    if mask_dtype == "float64":
        assert got.dtype == np.float64
        np.testing.assert_allclose(got, expected, rtol=1e-12, atol=1e-12)
    else:
        # float64 data promote the computation to float64; only the masks are float32
        assert got.dtype == np.float64
        np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("mask_dtype, result", [(None, np.float64), (np.float32, np.float32)])
def test_apply_masks_dtype_follows_masks_as_libertem(mask_dtype, result):
    """float64 masks compute in float64 (LiberTEM's rule); mask_dtype=float32 keeps float32."""
    rng = np.random.default_rng(3)
    data = rng.integers(0, 4000, size=(5, 6, 20, 20)).astype("uint16")
    masks = rng.random((4, 20, 20)).astype(np.float64)
    ctx = Context.make_with("inline", debug=True)
    ds = ctx.load("memory", data=data, num_partitions=4)
    udf = ApplyMasksUDF(mask_factories=masks, mask_dtype=mask_dtype)
    got = ctx.run_udf(dataset=ds, udf=udf)["intensity"].data
    assert got.dtype == result
    expected = np.einsum("abij,kij->abk", data.astype(np.float64), masks)
    np.testing.assert_allclose(got, expected, rtol=1e-12 if result == np.float64 else 1e-4)


@pytest.mark.parametrize("container", ["array", "list"])
def test_apply_masks_sees_masks_changed_in_place(container):
    data = np.arange(2 * 3 * 4 * 4, dtype="float32").reshape(2, 3, 4, 4)
    ctx = Context.make_with("inline")
    ds = ctx.load("memory", data=data)
    mask = np.ones((4, 4))
    factories = mask if container == "array" else [mask]
    first = ctx.run_udf(dataset=ds, udf=ApplyMasksUDF(mask_factories=factories))["intensity"]
    np.testing.assert_allclose(first.data[..., 0], data.sum(axis=(2, 3)))
    mask[:2] = 0  # the user edits the mask and runs again
    again = ctx.run_udf(dataset=ds, udf=ApplyMasksUDF(mask_factories=factories))["intensity"]
    np.testing.assert_allclose(again.data[..., 0], data[..., 2:, :].sum(axis=(2, 3)))


# -- StdDevUDF / StatsUDF numerics -----------------------------------------------------------

@pytest.mark.parametrize("fmt", ["memory", "raw"])
@pytest.mark.parametrize("offset", [1e6, -1e6, 1e7, 0.0])
def test_stddev_float32_large_offset(tmp_path, fmt, offset):
    """float32 data offset + N(0, 1): var equals numpy's float64 var of the whole array to 1e-6,
    over many frames, partitions and tiles (no E[x²] - E[x]² cancellation)."""
    rng = np.random.default_rng(11)
    nav, sig = (48, 50), (8, 8)
    data = (offset + rng.normal(size=nav + sig)).astype(np.float32)
    ctx = Context.make_with("inline")
    if fmt == "memory":
        ds = ctx.load("memory", data=data, num_partitions=7, tileshape=(13, 3, 5))
    else:
        path = tmp_path / "noise.raw"
        data.tofile(path)
        ds = ctx.load("raw", path=str(path), dtype="float32", nav_shape=nav, sig_shape=sig,
                      num_partitions=5)
    for udf in (StdDevUDF(), StatsUDF()):
        res = ctx.run_udf(dataset=ds, udf=udf)
        wide = data.astype(np.float64)
        assert int(res["num_frames"].data[0]) == prod(nav)
        np.testing.assert_allclose(res["var"].data, wide.var(axis=(0, 1)), rtol=1e-6)
        np.testing.assert_allclose(res["std"].data, wide.std(axis=(0, 1)), rtol=1e-6)
        np.testing.assert_allclose(res["mean"].data, wide.mean(axis=(0, 1)), rtol=1e-12, atol=1e-9)
        np.testing.assert_allclose(res["sum"].data, wide.sum(axis=(0, 1)), rtol=1e-12)
    np.testing.assert_array_equal(res["min"].data, data.min(axis=(0, 1)))
    np.testing.assert_array_equal(res["max"].data, data.max(axis=(0, 1)))


@settings(max_examples=examples(50), **SETTINGS)
@given(dtype=st.sampled_from(["uint16", ">u2", "int16", "uint32", "int32", ">i4"]),
       num_partitions=st.integers(1, 6), seed=st.integers(0, 2**32 - 1),
       tileshape=st.one_of(st.none(), st.tuples(st.integers(1, 9), st.integers(1, 6),
                                                st.integers(1, 5))),
       spread=st.sampled_from([0, 1, 2, 5]), debug=st.booleans())
def test_stddev_integers_with_large_offset(dtype, num_partitions, seed, tileshape, spread, debug):
    """uint16 around 60000 (int16 around 30000) with tiny variance: (nearly) exact.
    32-bit integers around 2e9 / 4e9: within 1e-6 (mean**2 / var is ~1e19 there; see
    test_stddev_32bit_integers_with_large_offset_exact for the exact expectation)."""
    dt = np.dtype(dtype)
    base = {2: 60000 if dt.kind == "u" else 30000,
            4: 4_000_000_000 if dt.kind == "u" else 2_000_000_000}[dt.itemsize]
    rtol = 1e-10 if dt.itemsize == 2 else 1e-6
    rng = np.random.default_rng(seed)
    shape = (7, 9, 6, 5)
    values = base - rng.integers(0, spread + 1, size=shape)
    data = values.astype(dt)
    ctx = Context.make_with("inline", debug=debug)
    ds = ctx.load("memory", data=data, num_partitions=num_partitions, tileshape=tileshape)
    res = ctx.run_udf(dataset=ds, udf=StatsUDF())
    ref = values.astype(np.float64)
    np.testing.assert_array_equal(res["sum"].data, ref.sum(axis=(0, 1)))
    np.testing.assert_allclose(res["var"].data, ref.var(axis=(0, 1)), rtol=rtol, atol=1e-12)
    np.testing.assert_allclose(res["mean"].data, ref.mean(axis=(0, 1)), rtol=1e-15)
    if spread == 0:
        np.testing.assert_array_equal(res["var"].data, 0)
    np.testing.assert_array_equal(res["min"].data, values.min(axis=(0, 1)))
    np.testing.assert_array_equal(res["max"].data, values.max(axis=(0, 1)))


@pytest.mark.parametrize("dtype", ["uint32", "int32"])
def test_stddev_32bit_integers_with_large_offset_exact(dtype):
    base = 4_000_000_000 if dtype == "uint32" else 2_000_000_000
    values = base - np.random.default_rng(0).integers(0, 2, size=(7, 9, 6, 5))
    ctx = Context.make_with("inline")
    ds = ctx.load("memory", data=values.astype(dtype), num_partitions=2)
    res = ctx.run_udf(dataset=ds, udf=StdDevUDF())
    np.testing.assert_allclose(res["var"].data, values.astype(np.float64).var(axis=(0, 1)),
                               rtol=1e-10)


@pytest.mark.parametrize("how", ["one_frame_dataset", "single_position_roi", "sync_offset"])
@pytest.mark.parametrize("dtype", ["uint16", "float32", ">f8", "complex64"])
def test_stddev_single_frame(tmp_path, how, dtype):
    """One processed frame: num_frames 1, mean = the frame, var = std = 0 exactly."""
    rng = np.random.default_rng(5)
    frames = (rng.integers(0, 1000, size=(6, 4, 3)) + (1j if dtype == "complex64" else 0))
    frames = frames.astype(dtype)
    ctx = Context.make_with("inline", debug=True)
    roi = None
    if how == "one_frame_dataset":
        ds = ctx.load("memory", data=frames[:1], nav_shape=(1,), sig_shape=(4, 3))
        frame = frames[0]
    elif how == "single_position_roi":
        ds = ctx.load("memory", data=frames, nav_shape=(2, 3), sig_shape=(4, 3), num_partitions=2)
        roi = np.zeros((2, 3), bool)
        roi[1, 1] = True
        frame = frames[4]
    else:  # only the last nav position has a frame
        path = tmp_path / "f.raw"
        frames.tofile(path)
        ds = ctx.load("raw", path=str(path), dtype=np.dtype(dtype).str, nav_shape=(6,),
                      sig_shape=(4, 3), sync_offset=-5, num_partitions=3)
        frame = frames[0]
    res = ctx.run_udf(dataset=ds, udf=StdDevUDF(), roi=roi)
    assert int(res["num_frames"].data[0]) == 1
    np.testing.assert_array_equal(res["mean"].data, frame.astype(res["mean"].data.dtype))
    np.testing.assert_array_equal(res["var"].data, 0)
    np.testing.assert_array_equal(res["std"].data, 0)
    np.testing.assert_array_equal(res["varsum"].data, 0)


@pytest.mark.parametrize("udf_cls", [StdDevUDF, StatsUDF])
@pytest.mark.parametrize("debug", [False, True])
def test_stddev_all_false_roi(udf_cls, debug):
    """No frame selected: no exception, no warning, num_frames 0, sum 0, mean/var/std NaN."""
    data = np.random.default_rng(0).integers(0, 9, size=(3, 4, 5, 6)).astype("uint16")
    ctx = Context.make_with("inline", debug=debug)
    ds = ctx.load("memory", data=data, num_partitions=2)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        res = ctx.run_udf(dataset=ds, udf=udf_cls(), roi=np.zeros((3, 4), bool))
    assert int(res["num_frames"].data[0]) == 0
    np.testing.assert_array_equal(res["sum"].data, 0)
    np.testing.assert_array_equal(res["varsum"].data, 0)
    for name in ("mean", "var", "std"):
        assert res[name].data.shape == (5, 6)
        assert np.isnan(res[name].data).all(), name


@settings(max_examples=examples(60), **SETTINGS)
@given(case=cases(dtypes=["float32", "float64", ">f4", ">f8"], max_nav_dims=2, max_sig_dims=2),
       nan_density=st.sampled_from([0.02, 0.1, 0.5]), inf=st.booleans(), data=st.data())
def test_stats_nan_propagates_like_numpy(case, nan_density, inf, data):
    """NaN in float data: min/max of a pixel are NaN exactly where np.min / np.max say so
    (also when the NaN is in the first frame of a tile or partition), and so are sum, mean and
    var. With ±inf in the data as well, min and max still equal numpy's."""
    rng = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1), label="nan seed"))
    values = case.stored.astype(np.float64)
    values[rng.random(values.shape) < nan_density] = np.nan
    if inf:
        values[rng.random(values.shape) < 0.05] = np.inf
        values[rng.random(values.shape) < 0.05] = -np.inf
    case = BCase(nav_shape=case.nav_shape, sig_shape=case.sig_shape, dtype=case.dtype,
                 image_count=case.image_count, sync_offset=case.sync_offset,
                 num_partitions=case.num_partitions, tileshape=case.tileshape, roi=case.roi,
                 fmt=case.fmt, values=values)
    with tempfile.TemporaryDirectory() as tmpdir:
        ctx = Context.make_with("inline")
        with warnings.catch_warnings():
            # inf - inf in the merge of moments (the result is NaN there, as in numpy)
            warnings.simplefilter("ignore", RuntimeWarning)
            res = ctx.run_udf(dataset=load(ctx, case, tmpdir), udf=StatsUDF(), roi=case.roi)
    f = case.frames
    if case.n == 0:
        return
    np.testing.assert_array_equal(res["min"].data, np.min(f, axis=0))
    np.testing.assert_array_equal(res["max"].data, np.max(f, axis=0))
    if inf:
        return  # sum / mean with inf: test_stddev_sum_with_inf
    ref_var = f.var(axis=0)
    np.testing.assert_allclose(res["sum"].data, f.sum(axis=0), rtol=1e-12)
    np.testing.assert_allclose(res["mean"].data, f.mean(axis=0), rtol=1e-12)
    if case.n > 1:  # one frame: test_stddev_single_frame_nan
        np.testing.assert_array_equal(np.isnan(res["var"].data), np.isnan(ref_var))
    finite = ~np.isnan(ref_var)
    np.testing.assert_allclose(res["var"].data[finite], ref_var[finite], rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("value", [np.nan, np.inf])
def test_stddev_single_frame_nan(value):
    data = np.array([[[1.0, value]]], dtype=np.float32)  # nav (1,), sig (1, 2)
    ctx = Context.make_with("inline")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        res = ctx.run_udf(dataset=ctx.load("memory", data=data, sig_dims=2), udf=StdDevUDF())
        ref = data.astype(np.float64).var(axis=0)
    np.testing.assert_array_equal(res["var"].data, ref)


def test_stddev_sum_with_inf():
    data = np.array([[[np.inf, 1.0]], [[2.0, 3.0]], [[4.0, np.inf]]], dtype=np.float32)
    ctx = Context.make_with("inline")
    ds = ctx.load("memory", data=data, sig_dims=2)  # nav (3,), sig (1, 2)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        res = ctx.run_udf(dataset=ds, udf=StdDevUDF())
    np.testing.assert_array_equal(res["sum"].data, data.astype(np.float64).sum(axis=0))
    np.testing.assert_array_equal(res["mean"].data, data.astype(np.float64).mean(axis=0))


# -- run_udf_iter ----------------------------------------------------------------------------

@settings(max_examples=examples(80), **SETTINGS)
@given(case=cases(dtypes=["uint16", ">u2", "float32", "float64", "int32", "complex64"],
                  formats=["memory", "raw"], max_nav=8),
       debug=st.booleans())
def test_run_udf_iter_partial_results_consistent(case, debug):
    """Every partial StdDevUDF / SumUDF / SumSigUDF result is the numpy result over the frames
    merged so far (``damage``); the last equals run_udf."""
    with tempfile.TemporaryDirectory() as tmpdir:
        ctx = Context.make_with("inline", debug=debug)
        ds = load(ctx, case, tmpdir)
        udfs = lambda: [StdDevUDF(), SumUDF(), SumSigUDF()]  # noqa: E731
        final = ctx.run_udf(dataset=ds, udf=udfs(), roi=case.roi)
        parts = list(ctx.run_udf_iter(dataset=ds, udf=udfs(), roi=case.roi))
    assert parts and parts[-1].complete and not any(p.complete for p in parts[:-1])
    nav_size = prod(case.nav_shape)
    logical = np.zeros((nav_size,) + case.sig_shape, case.values.dtype)
    logical[case.has_frame] = case.values[case.file_idx[case.has_frame]]
    prev = 0
    for p in parts:
        damage = p.damage.reshape(-1)
        assert not (damage & ~case.processed).any()
        assert damage.sum() >= prev
        prev = damage.sum()
        sub = BCase(nav_shape=(int(damage.sum()),), sig_shape=case.sig_shape, dtype=case.dtype,
                    image_count=int(damage.sum()), values=logical[damage])
        check_stddev(p.buffers[0], sub)
        np.testing.assert_allclose(p.buffers[1]["intensity"].data, ref_sum(sub), rtol=1e-12)
        r = p.buffers[2]["intensity"]
        np.testing.assert_array_equal(r.valid_mask.reshape(-1), damage)
        np.testing.assert_allclose(r.data.reshape(-1)[damage], ref_sumsig(sub), rtol=1e-12)
    np.testing.assert_array_equal(parts[-1].damage.reshape(-1), case.processed)
    for got, want in zip(parts[-1].buffers, final):
        assert got.keys() == want.keys()
        for name in want:
            np.testing.assert_array_equal(got[name].data, want[name].data, err_msg=name)


# -- PickUDF ---------------------------------------------------------------------------------

@settings(max_examples=examples(60), **SETTINGS)
@given(case=cases(roi_kinds=("random", "single", "full", "none")), debug=st.booleans())
def test_pick_native_dtype(case, debug):
    """PickUDF alone: (n_selected, *sig) frames in flat nav order, the stored dtype in native
    byte order, bit-exact."""
    if case.n == 0:
        return  # test_pick_empty_selection
    with tempfile.TemporaryDirectory() as tmpdir:
        ctx = Context.make_with("inline", debug=debug)
        res = ctx.run_udf(dataset=load(ctx, case, tmpdir), udf=PickUDF(), roi=case.roi)
    r = res["intensity"]
    assert r.data.dtype == case.native_dtype and r.data.dtype.isnative
    assert r.data.shape == (case.n,) + case.sig_shape
    np.testing.assert_array_equal(r.data, case.native_frames)


@pytest.mark.parametrize("how", ["roi", "sync_offset_and_roi"])
def test_pick_empty_selection(how):
    data = np.arange(3 * 4 * 2 * 5, dtype="uint16").reshape(12, 2, 5)
    ctx = Context.make_with("inline")
    if how == "roi":
        ds = ctx.load("memory", data=data, nav_shape=(3, 4), sig_shape=(2, 5))
        roi = np.zeros((3, 4), bool)
    else:  # the ROI selects only positions without a frame
        ds = ctx.load("memory", data=data, nav_shape=(3, 4), sig_shape=(2, 5), sync_offset=4)
        roi = np.zeros((3, 4), bool)
        roi[2, 3] = True
    res = ctx.run_udf(dataset=ds, udf=PickUDF(), roi=roi)
    assert res["intensity"].data.shape == (0, 2, 5)
    assert res["intensity"].data.dtype == np.uint16


# -- LogsumUDF -------------------------------------------------------------------------------

@settings(max_examples=examples(50), **SETTINGS)
@given(case=cases(dtypes=REAL_DTYPES), debug=st.booleans())
def test_logsum(case, debug):
    """sum over frames of log(frame - min(frame) + 1), float64, for every real dtype (negative
    values, big 32-bit integers, 1- to 3-dimensional signals)."""
    with tempfile.TemporaryDirectory() as tmpdir:
        with Context.make_with("inline", debug=debug) as ctx:
            run_plan(ctx, case, ["logsum"], {}, tmpdir)


# -- MapUDF / ctx.map ------------------------------------------------------------------------

@settings(max_examples=examples(50), **SETTINGS)
@given(case=cases(dtypes=["uint8", "uint16", ">u2", "int32", "float32", "float64", "complex64"],
                  max_sig_dims=2),
       which=st.sampled_from(["scalar", "vector", "int", "frame"]), debug=st.booleans())
def test_ctx_map(case, which, debug):
    """ctx.map(dataset=, f=): f applied to every processed frame (float32 by default, or wider),
    nav-shaped with f's output shape as extra shape; NaN / 0 elsewhere."""
    fs = {"scalar": lambda fr: fr.sum(),
          "vector": lambda fr: np.stack([fr.real.min(), fr.real.max(), fr.real.mean()]),
          "int": lambda fr: np.count_nonzero(fr),
          "frame": lambda fr: fr.reshape(-1)[::-1] * 2}
    f = fs[which]
    input_dtype = expected_input_dtype(case, [np.float32])
    with tempfile.TemporaryDirectory() as tmpdir:
        with Context.make_with("inline", debug=debug) as ctx:
            r = ctx.map(dataset=load(ctx, case, tmpdir), f=f, roi=case.roi)
    frames = case.frames.astype(input_dtype)
    out0 = np.asarray(f(np.zeros(case.sig_shape, input_dtype)))
    expected = np.stack([np.asarray(f(fr)) for fr in frames]) if case.n \
        else np.zeros((0,) + out0.shape, out0.dtype)
    assert r.data.dtype == out0.dtype
    if which == "int":
        assert_nav_rows(r, expected, case, exact=True)
    else:
        assert_nav_rows(r, expected, case, rtol=1e-6, atol=1e-6)


# -- RecordUDF -------------------------------------------------------------------------------

@settings(max_examples=examples(60), **SETTINGS)
@given(case=cases(dtypes=REAL_DTYPES + ["complex64"], formats=["memory", "raw", "npy"]),
       target=st.sampled_from(["npy", "raw"]), debug=st.booleans(), via=st.sampled_from(
           ["udf", "export"]))
def test_record_roundtrip(case, target, debug, via):
    """RecordUDF / ctx.export writes the processed frames, bit-exact in the stored dtype (native
    byte order): the data set's shape without ROI and missing frames, otherwise (n, *sig) in
    flat nav order; the written file loads back and gives the same sum."""
    with tempfile.TemporaryDirectory() as tmpdir:
        with Context.make_with("inline", debug=debug) as ctx:
            ds = load(ctx, case, tmpdir)
            path = os.path.join(tmpdir, "rec.npy" if target == "npy" else "rec.dat")
            if via == "udf":
                res = ctx.run_udf(dataset=ds, udf=RecordUDF(path=path), roi=case.roi)
                assert int(res["frames_written"].data[0]) == case.n
            else:
                out = ctx.export(ds, path, roi=case.roi)
                assert os.fspath(out) == path
            if target == "npy":
                written = np.load(path)
            else:
                with open(path + ".json") as f:
                    side = json.load(f)
                written = np.fromfile(path, dtype=np.dtype(side["dtype"]))
                assert written.size == case.n * prod(case.sig_shape)
                written = written.reshape(tuple(side["nav_shape"]) + tuple(side["sig_shape"]))
                assert tuple(side["sig_shape"]) == case.sig_shape
            if case.roi is None and case.has_frame.all():
                assert written.shape == case.nav_shape + case.sig_shape
            else:
                assert written.shape == (case.n,) + case.sig_shape
            assert written.dtype == case.native_dtype
            np.testing.assert_array_equal(written.reshape((case.n,) + case.sig_shape),
                                          case.native_frames)
            # the copy is a data set again
            if case.n and target == "npy":
                again = ctx.run_udf(dataset=ctx.load("npy", path=path, sig_dims=len(case.sig_shape)),
                                    udf=SumUDF())
                np.testing.assert_allclose(again["intensity"].data, ref_sum(case), rtol=1e-12)


@pytest.mark.parametrize("target", ["npy", "raw"])
def test_record_overwrite_true_replaces(tmp_path, target):
    data = np.arange(2 * 3 * 4 * 5, dtype=">i4").reshape(2, 3, 4, 5)
    path = tmp_path / ("x.npy" if target == "npy" else "x.bin")
    path.write_bytes(b"old content that is longer than nothing" * 100)
    ctx = Context.make_with("inline")
    ds = ctx.load("memory", data=data, num_partitions=2)
    roi = np.zeros((2, 3), bool)
    roi[0, 1] = roi[1, 2] = True
    ctx.run_udf(dataset=ds, udf=RecordUDF(path=path, overwrite=True), roi=roi)
    if target == "npy":
        written = np.load(path)
    else:
        written = np.fromfile(path, dtype=json.loads((tmp_path / "x.bin.json").read_text())["dtype"])
        written = written.reshape(2, 4, 5)
    np.testing.assert_array_equal(written, data.reshape(6, 4, 5)[[1, 5]])
    assert written.dtype == np.dtype("int32")


def test_record_keeps_stored_dtype_next_to_other_udfs(tmp_path):
    """RecordUDF writes the stored dtype even when ApplyMasksUDF in the same run reads float32."""
    data = np.arange(2 * 3 * 4 * 5, dtype="uint16").reshape(2, 3, 4, 5)
    ctx = Context.make_with("inline")
    ds = ctx.load("memory", data=data)
    path = tmp_path / "x.npy"
    ctx.run_udf(dataset=ds, udf=[RecordUDF(path=path), ApplyMasksUDF(mask_factories=np.ones((4, 5)))])
    written = np.load(path)
    np.testing.assert_array_equal(written, data)
    assert written.dtype == np.uint16


# -- several UDFs in one pass, explicitly ----------------------------------------------------

@pytest.mark.parametrize("dtype", ["uint16", ">u2", "int16", "uint32", ">i4", "float64"])
@pytest.mark.parametrize("sync_offset, image_count", [(-2, 33), (3, 28)])
@pytest.mark.parametrize("debug", [False, True])
def test_one_pass_mixed_input_dtypes(tmp_path, dtype, sync_offset, image_count, debug):
    """ApplyMasksUDF (float32 masks) and MapUDF (float32) next to UDFs that read the stored
    dtype: each UDF gets its own preference promoted with the stored dtype (float32 for 16-bit
    data, float64 for 32-bit integers, so values of the whole uint32 range stay exact; the
    stored dtype in native byte order for the others); all results equal numpy."""
    dt = np.dtype(dtype)
    big = dt.kind in "iu" and dt.itemsize == 4
    # a raw file with frames missing at the start (negative offset) or at the end
    case = BCase(nav_shape=(5, 6), sig_shape=(16, 12), dtype=dt, image_count=image_count,
                 sync_offset=sync_offset, num_partitions=4, roi=None, seed=3, fmt="raw", big=big)
    assert not case.has_frame.all()
    names = ["sum", "stats", "pick", "logsum", "masks", "sumsig", "map", "record"]
    with Context.make_with("inline", debug=debug) as ctx:
        # float32 masks: mask_dtype, since the masks' own dtype (float64) would decide otherwise
        plan, _, results = run_plan(ctx, case, names, dict(mask_spec=("list", 2, "int", 0),
                                                           mask_dtype="float32"), tmp_path)
    wide = np.result_type(dt.newbyteorder("="), np.float32)
    assert plan.input_dtypes["masks"] == plan.input_dtypes["map"] == wide
    by_name = dict(zip(names, results))
    assert by_name["pick"]["intensity"].data.dtype == dt.newbyteorder("=")
    assert by_name["stats"]["min"].data.dtype == dt.newbyteorder("=")
    assert by_name["masks"]["intensity"].data.dtype == wide


@pytest.mark.parametrize("dtype", ["uint8", "int8", "uint16", ">u2", "int16"])
def test_sum_small_integers_exact_past_the_int32_run(dtype):
    """SumUDF on 8/16-bit integers sums each tile in int32 runs of at most SMALL_INT_DEPTH
    frames: a tile deeper than that, of the dtype's extreme values, still sums exactly."""
    from udfkit.udf.builtins._kernels import SMALL_INT_DEPTH

    info = np.iinfo(np.dtype(dtype))
    n = SMALL_INT_DEPTH + 70
    rng = np.random.default_rng(n)
    data = np.where(rng.random((n, 2, 3)) < 0.9, info.max, info.min).astype(dtype)
    data[:, 0, 0] = info.max  # the largest possible column sum
    ctx = Context.make_with("inline")
    ds = ctx.load("memory", data=data, sig_dims=2, num_partitions=1, tileshape=(n, 2, 3))
    got = ctx.run_udf(dataset=ds, udf=SumUDF())["intensity"].data
    np.testing.assert_array_equal(got, data.astype(np.int64).sum(axis=0))


@pytest.mark.parametrize("dtype", ["uint16", "int16", "<i2", ">u2", "uint8"])
def test_stddev_small_integers_exact_past_the_kernel_run(dtype):
    """StdDevUDF on 8/16-bit integers (the unshifted integer kernel, in runs of at most
    SMALL_INT_MOMENTS_DEPTH frames): extreme values in a tile deeper than a run, frames split
    over partitions, still give numpy's float64 moments."""
    from udfkit.udf.builtins._kernels import SMALL_INT_MOMENTS_DEPTH

    info = np.iinfo(np.dtype(dtype))
    n = SMALL_INT_MOMENTS_DEPTH + 90
    rng = np.random.default_rng(n)
    data = rng.choice(np.array([info.min, info.max, info.max - 1]), size=(n, 2, 3)).astype(dtype)
    data[:, 0, 0] = info.max  # constant: variance exactly 0
    ctx = Context.make_with("inline")
    for parts, depth in ((1, n), (3, 70)):
        ds = ctx.load("memory", data=data, sig_dims=2, num_partitions=parts, tileshape=(depth, 2, 3))
        res = ctx.run_udf(dataset=ds, udf=StdDevUDF())
        ref = data.astype(np.float64)
        np.testing.assert_array_equal(res["sum"].data, ref.sum(axis=0))
        np.testing.assert_allclose(res["var"].data, ref.var(axis=0), rtol=1e-13, atol=0)
        assert res["var"].data[0, 0] == 0
