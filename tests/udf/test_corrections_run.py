"""Runs with ``corrections=``: every UDF sees the corrected frames that numpy computes.

The reference below applies the rules of :mod:`udfkit.io.corrections` literally: subtract
dark, multiply gain (in float64), then replace each excluded pixel by the mean of the valid
pixels in the smallest box around it that holds any. A recording UDF stores every frame it
receives (through ``process_frame``, ``process_tile`` or ``process_partition``), so the
comparison is frame by frame, pixel by pixel; a sum UDF and a UDF that asks for the native
dtype share the pass. Data, dark and gain values are chosen so that ``(raw - dark) * gain``
is exact in float32; only the neighbour means round (once).

Drawn: stored dtype (including big-endian), nav / sig shapes (1D to 3D signals), format
(memory, raw and npy files read through each I/O backend), ``sync_offset`` and missing
frames, partitions, ROI, forced tile shapes (memory) and tile-size preferences that cut
frames (files), the UDF method, the corrections (dark, gain, scattered / clustered / edge
excluded pixels, as a mask or as coordinates), and the executor (inline, inline with
pickling, threads). One test runs on worker processes.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from math import prod

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from udfkit import UDF, Context, CorrectionError, CorrectionSet
from udfkit.testing import SharedContexts
from udfkit.testing.profiles import examples
from udfkit.testing.strategies import ALL_DTYPES, BCase, cases
from udfkit.testing.strategies import load as load_memory
from udfkit.udf.driver import UDFRun

#: every stored dtype, complex and float16 included (the long run is the same test under the
#: ``nightly`` hypothesis profile)
DTYPES = ALL_DTYPES + ["float16"]
BACKENDS = ["mmap", "buffered", "direct"]
SETTINGS = dict(deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                        HealthCheck.data_too_large])
EXECUTORS = {"inline": ("inline", {}), "inline-debug": ("inline", {"debug": True}),
             "threads": ("threads", {"cpus": 2})}

shared_context = SharedContexts(EXECUTORS)
_close_shared_contexts = shared_context.closing_fixture()


def load(ctx, case: BCase, tmpdir, io_backend=None):
    """``case`` as its format; raw and npy files are written to ``tmpdir`` and read with
    ``io_backend`` (default mmap)."""
    if case.fmt == "memory":
        return load_memory(ctx, case, tmpdir)
    kwargs = dict(sync_offset=case.sync_offset, num_partitions=case.num_partitions,
                  nav_shape=case.nav_shape, sig_shape=case.sig_shape, io_backend=io_backend)
    if case.partial:
        kwargs["allow_partial"] = True
    path = os.path.join(str(tmpdir), f"data.{case.fmt}")
    if case.fmt == "raw":
        case.stored.tofile(path)
        return ctx.load("raw", path=path, dtype=case.dtype.str, **kwargs)
    np.save(path, case.stored)
    return ctx.load("npy", path=path, **kwargs)


# -- the reference ---------------------------------------------------------------------------

def neighbours(mask, pixel):
    r = 1
    while True:
        box = tuple(slice(max(p - r, 0), min(p + r + 1, s)) for p, s in zip(pixel, mask.shape))
        valid = ~mask[box]
        if valid.any():
            return box, valid
        r += 1


def reference(frames, corr: CorrectionSet | None):
    """Corrected frames ``(n, *sig)`` in float64 (complex128 for complex data)."""
    out = np.array(frames, dtype=np.complex128 if np.iscomplexobj(frames) else np.float64)
    if corr is None:
        return out
    if corr.dark is not None:
        out -= corr.dark
    if corr.gain is not None:
        out *= corr.gain
    mask = corr.excluded_mask(out.shape[1:])
    patched = out.copy()
    for pixel in map(tuple, np.argwhere(mask)):
        box, valid = neighbours(mask, pixel)
        patched[(slice(None),) + pixel] = out[(slice(None),) + box][:, valid].mean(axis=1)
    return patched


# -- UDFs ------------------------------------------------------------------------------------

class RecordFrames(UDF):
    """Stores every frame it receives (nav buffer with the sig shape as extra shape), through
    the method given; checks that tiles are read-only and of the announced input dtype."""

    def __init__(self, method="tile", depth=None, total_size=None, complex_=False):
        super().__init__(method=method, depth=depth, total_size=total_size, complex_=complex_)

    def get_method(self):
        return self.params.method

    def get_tiling_preferences(self):
        return {k: v for k in ("depth", "total_size") if (v := getattr(self.params, k)) is not None}

    def get_result_buffers(self):
        sig = self.meta.dataset_shape.sig.to_tuple()
        dtype = "complex128" if self.params.complex_ else "float64"
        return {"frames": self.buffer(kind="nav", extra_shape=sig, dtype=dtype),
                "dtype_ok": self.buffer(kind="single", dtype="int64")}

    def _check(self, data):
        assert not data.flags.writeable
        assert data.dtype == self.meta.input_dtype
        self.results.dtype_ok[:] += 1

    def process_frame(self, frame):
        self._check(frame)
        self.results.frames[:] = frame

    def process_tile(self, tile):
        self._check(tile)
        self.results.frames[(slice(None),) + self.meta.sig_slice.get()] = tile

    def process_partition(self, partition):
        self._check(partition)
        self.results.frames[:] = partition

    def merge(self, dest, src):
        dest.frames[:] = src.frames
        dest.dtype_ok[:] += src.dtype_ok


class SumFrames(UDF):
    """Sum over frames (sig buffer merged by adding), by tiles."""

    def get_result_buffers(self):
        dtype = "complex128" if self.meta.input_dtype.kind == "c" else "float64"
        return {"sum": self.buffer(kind="sig", dtype=dtype)}

    def process_tile(self, tile):
        self.results.sum[:] += tile.sum(axis=0)

    def merge(self, dest, src):
        dest.sum[:] += src.sum


class NativeSum(SumFrames):
    """Asks for the stored dtype; with corrections it gets float anyway."""

    def get_preferred_input_dtype(self):
        return self.USE_NATIVE_DTYPE

    def process_tile(self, tile):
        assert tile.dtype.kind in "fc" and tile.dtype == self.meta.input_dtype
        super().process_tile(tile)


# -- drawing corrections ---------------------------------------------------------------------

@st.composite
def corrections_for(draw, sig_shape):
    """A CorrectionSet for ``sig_shape`` with values exact in float32."""
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    size = prod(sig_shape)
    dark = rng.integers(-20, 21, size=sig_shape) / 4 if draw(st.booleans()) else None
    gain = rng.integers(1, 17, size=sig_shape) / 8 if draw(st.booleans()) else None
    kind = draw(st.sampled_from(["none", "scattered", "cluster", "corners", "dense"]))
    mask = np.zeros(sig_shape, bool)
    if kind == "scattered":
        mask = rng.random(sig_shape) < 0.15
    elif kind == "dense":
        mask = rng.random(sig_shape) < 0.6
    elif kind == "cluster":
        lo = [int(rng.integers(0, s)) for s in sig_shape]
        hi = [min(s, a + int(rng.integers(1, 4))) for a, s in zip(lo, sig_shape)]
        mask[tuple(slice(a, b) for a, b in zip(lo, hi))] = True
    elif kind == "corners":
        for corner in np.ndindex(*(2,) * len(sig_shape)):
            mask[tuple(c * (s - 1) for c, s in zip(corner, sig_shape))] = True
    if mask.all():
        mask.flat[int(rng.integers(0, size))] = False
    if gain is not None and mask.any() and draw(st.booleans()):
        gain[mask] = np.nan  # allowed at excluded pixels: never used
    excluded = None
    if mask.any():
        excluded = np.argwhere(mask).tolist() if draw(st.booleans()) else mask
    if dark is None and gain is None and excluded is None:
        dark = rng.integers(-20, 21, size=sig_shape) / 4
    return CorrectionSet(dark=dark, gain=gain, excluded_pixels=excluded)


def run_and_check(ctx, ds, case: BCase, corr: CorrectionSet, method="tile", depth=None,
                  total_size=None, rtol=1e-6):
    complex_ = case.dtype.kind == "c"
    udfs = [RecordFrames(method=method, depth=depth, total_size=total_size, complex_=complex_),
            SumFrames(), NativeSum()]
    res = ctx.run_udf(dataset=ds, udf=udfs, roi=case.roi, corrections=corr)
    want = reference(case.frames, corr)
    got = res[0]["frames"].raw_data
    assert got.shape == want.shape
    np.testing.assert_allclose(got, want, rtol=rtol, atol=1e-12)
    flat = res[0]["frames"].data.reshape((-1,) + case.sig_shape)
    assert np.isnan(flat[~case.processed]).all()
    assert (res[0]["dtype_ok"].data > 0).all() == (case.n > 0)
    scale = np.abs(want).sum(axis=0)  # the sums add rounded float32 terms
    for r in res[1:]:
        assert (np.abs(r["sum"].data - want.sum(axis=0)) <= rtol * scale + 1e-9).all()
    return res


# -- the properties --------------------------------------------------------------------------

@pytest.mark.parametrize("executor", sorted(EXECUTORS))
@settings(max_examples=examples(100), **SETTINGS)
@given(data=st.data(), case=cases(dtypes=DTYPES, max_sig=9),
       method=st.sampled_from(["frame", "tile", "tile", "partition"]),
       depth=st.one_of(st.none(), st.integers(1, 6)),
       total_size=st.sampled_from([None, None, 8, 16, 64, 512, 4096]),
       io_backend=st.sampled_from(BACKENDS))
def test_corrected_frames_equal_numpy(executor, data, case, method, depth, total_size, io_backend):
    corr = data.draw(corrections_for(case.sig_shape), label="corrections")
    ctx = shared_context(executor)
    with tempfile.TemporaryDirectory() as tmpdir:
        ds = load(ctx, case, tmpdir, io_backend)
        run_and_check(ctx, ds, case, corr, method, depth, total_size)
        # excluded pixels force whole frames; dark and gain alone keep the negotiated cut
        udfs = [RecordFrames(method=method, depth=depth, total_size=total_size)]
        scheme = UDFRun(ds, udfs, roi=case.roi, corrections=corr).scheme
        plain = UDFRun(ds, [RecordFrames(method=method, depth=depth, total_size=total_size)],
                       roi=case.roi).scheme
        if corr.excluded_mask(case.sig_shape).any():
            assert scheme.shape[1:] == case.sig_shape
        elif case.tileshape is not None:
            assert scheme.slices == plain.slices


@settings(max_examples=examples(25), **SETTINGS)
@given(case=cases(dtypes=["uint16", ">f4"], max_sig=6, formats=["memory", "raw"]),
       data=st.data())
def test_run_udf_iter_and_map(case, data):
    corr = data.draw(corrections_for(case.sig_shape), label="corrections")
    ctx = shared_context("inline")
    with tempfile.TemporaryDirectory() as tmpdir:
        ds = load(ctx, case, tmpdir)
        want = reference(case.frames, corr)
        parts = list(ctx.run_udf_iter(dataset=ds, udf=[RecordFrames(), SumFrames()], roi=case.roi,
                                      corrections=corr))
        assert parts[-1].complete
        np.testing.assert_allclose(parts[-1].buffers[0]["frames"].raw_data, want, rtol=1e-6, atol=1e-12)
        mapped = ctx.map(dataset=ds, f=lambda frame: frame.sum(dtype=np.float64), roi=case.roi,
                         corrections=corr)
        rows = want.reshape(case.n, prod(case.sig_shape))
        err = np.abs(mapped.raw_data.reshape(-1) - rows.sum(axis=1))
        assert (err <= 1e-6 * np.abs(rows).sum(axis=1) + 1e-9).all()  # float32 terms


# -- explicit cases --------------------------------------------------------------------------

def frames_case(sig_shape, dtype="uint16", nav_shape=(3, 4), seed=0, **kwargs):
    kwargs.setdefault("image_count", prod(nav_shape))
    return BCase(nav_shape=nav_shape, sig_shape=sig_shape, dtype=dtype, seed=seed, **kwargs)


@pytest.mark.parametrize("fmt", ["raw", "npy"])
@pytest.mark.parametrize("io_backend", BACKENDS)
def test_edges_corners_and_clusters_2d(tmp_path, fmt, io_backend):
    """Excluded pixels at all four corners, along an edge, a 3×3 cluster (its centre needs the
    5×5 box) and a whole column; the file is not modified."""
    sig = (9, 11)
    case = frames_case(sig, num_partitions=3, fmt=fmt, sync_offset=1, image_count=14,
                       roi=np.arange(12).reshape(3, 4) % 5 != 2)
    mask = np.zeros(sig, bool)
    mask[[0, 0, -1, -1], [0, -1, 0, -1]] = True
    mask[0, 3:6] = True
    mask[3:6, 4:7] = True
    mask[:, 9] = True
    rng = np.random.default_rng(3)
    corr = CorrectionSet(dark=rng.integers(0, 9, sig) / 2, gain=rng.integers(4, 12, sig) / 8,
                         excluded_pixels=mask)
    ctx = shared_context("inline")
    ds = load(ctx, case, tmp_path, io_backend)
    path = os.path.join(tmp_path, f"data.{fmt}")
    digest = hashlib.sha256(open(path, "rb").read()).hexdigest()
    for method in ("frame", "tile", "partition"):
        run_and_check(ctx, ds, case, corr, method=method)
    assert hashlib.sha256(open(path, "rb").read()).hexdigest() == digest


@pytest.mark.parametrize("sig_shape", [(40,), (5, 6, 7)])
def test_1d_and_3d_clusters(sig_shape):
    mask = np.zeros(sig_shape, bool)
    if len(sig_shape) == 1:
        mask[0:2] = mask[10:17] = mask[-1] = True  # 10:17 needs radius 4 in the middle
    else:
        mask[1:4, 1:4, 1:5] = True                   # the centre needs the 5×5×5 box
        mask[0, 0, 0] = mask[-1, -1, -1] = True
    case = frames_case(sig_shape, dtype="float32", num_partitions=2, fmt="memory")
    corr = CorrectionSet(gain=np.full(sig_shape, 0.5), excluded_pixels=mask)
    run_and_check(shared_context("inline-debug"), load(shared_context("inline-debug"), case, None),
                  case, corr)


@pytest.mark.parametrize("stored", ["uint8", "uint16", ">u2", "int32", "float16", "float32",
                                    "float64", "complex64", ">c8"])
@pytest.mark.parametrize("prefer", [None, "native", "float64"])
def test_input_dtype_is_float(stored, prefer):
    """At least float32; float64 stays float64, complex stays complex."""

    class Probe(UDF):
        def get_preferred_input_dtype(self):
            return {None: UDF.get_preferred_input_dtype(self), "native": self.USE_NATIVE_DTYPE,
                    "float64": np.float64}[self.params.prefer]

        def get_result_buffers(self):
            return {"kind": self.buffer(kind="nav", dtype="int64")}

        def process_frame(self, frame):
            self.results.kind[:] = frame.dtype.num

    case = frames_case((4, 5), dtype=stored, fmt="memory", num_partitions=2)
    ctx = shared_context("inline")
    ds = load(ctx, case, None)
    native = np.dtype(stored).newbyteorder("=")
    pref = {None: np.float32, "native": native, "float64": np.float64}[prefer]
    want = np.result_type(pref, native, np.float32)
    corr = CorrectionSet(dark=np.ones((4, 5)), excluded_pixels=[(0, 0), (2, 3)])
    udfs = [Probe(prefer=prefer), RecordFrames(complex_=native.kind == "c")]
    res = ctx.run_udf(dataset=ds, udf=udfs, corrections=corr)
    assert (res[0]["kind"].data == want.num).all()
    recorded = np.result_type(native, np.float32)  # RecordFrames keeps the default preference
    rtol = 1e-6 if recorded in (np.float32, np.complex64) else 1e-12
    np.testing.assert_allclose(res[1]["frames"].raw_data, reference(case.frames, corr), rtol=rtol)


def test_two_input_dtypes_share_one_read():
    """A float32 and a float64 UDF in one pass: each gets its own corrected tiles."""

    class Wide(RecordFrames):
        def get_preferred_input_dtype(self):
            return np.float64

    case = frames_case((6, 7), dtype="int16", fmt="memory", num_partitions=3)
    corr = CorrectionSet(dark=np.full((6, 7), 0.25), gain=np.full((6, 7), 3.0),
                         excluded_pixels=[(0, 0), (3, 3), (3, 4)])
    ctx = shared_context("inline")
    res = ctx.run_udf(dataset=load(ctx, case, None), udf=[RecordFrames(), Wide()], corrections=corr)
    want = reference(case.frames, corr)
    np.testing.assert_allclose(res[0]["frames"].raw_data, want, rtol=1e-6)
    np.testing.assert_allclose(res[1]["frames"].raw_data, want, rtol=1e-13)


@pytest.mark.parametrize("dark_dtype", ["uint16", ">i4", "float32"])
def test_integer_dark_above_the_data_goes_negative(dark_dtype):
    """No wraparound: the subtraction happens in float, whatever the dark's dtype."""
    case = frames_case((5, 6), dtype="uint16", fmt="memory", num_partitions=2)
    corr = CorrectionSet(dark=np.full((5, 6), 100, dtype=dark_dtype), excluded_pixels=[(4, 5)])
    ctx = shared_context("inline")
    res = run_and_check(ctx, load(ctx, case, None), case, corr)
    assert (res[0]["frames"].raw_data < 0).all()


def test_empty_correction_set_changes_nothing():
    case = frames_case((4, 4), fmt="memory")
    ctx = shared_context("inline")
    ds = load(ctx, case, None)
    run = UDFRun(ds, [NativeSum()], corrections=CorrectionSet(excluded_pixels=[]))
    assert run.corrections is None and run.input_dtypes == [np.dtype("uint16")]


def test_tiling_whole_frames_only_with_excluded_pixels():
    case = frames_case((6, 8), fmt="memory", tileshape=(2, 3, 4), num_partitions=2)
    ctx = shared_context("inline")
    ds = load(ctx, case, None)
    dark = np.zeros((6, 8))
    assert UDFRun(ds, [SumFrames()], corrections=CorrectionSet(dark=dark)).scheme.shape == (2, 3, 4)
    with_mask = UDFRun(ds, [SumFrames()], corrections=CorrectionSet(dark=dark, excluded_pixels=[(5, 7)]))
    assert with_mask.scheme.shape == (2, 6, 8)
    run_and_check(ctx, ds, case, CorrectionSet(dark=dark, excluded_pixels=[(5, 7)]))


# -- errors ----------------------------------------------------------------------------------

def test_errors_name_the_data_set_and_shapes(tmp_path):
    case = frames_case((6, 8), fmt="raw")
    ctx = shared_context("inline")
    ds = load(ctx, case, tmp_path)
    path = os.path.join(tmp_path, "data.raw")
    with pytest.raises(CorrectionError, match=rf"dark has shape \(8, 6\), but the sig shape of "
                                              rf"RawFileDataSet '{path}' is \(6, 8\)"):
        ctx.run_udf(dataset=ds, udf=SumFrames(), corrections=CorrectionSet(dark=np.zeros((8, 6))))
    with pytest.raises(CorrectionError, match=r"outside the sig shape \(6, 8\) of RawFileDataSet.*"
                                              r"\(6, 0\) \(row 1\)"):
        ctx.run_udf(dataset=ds, udf=SumFrames(),
                    corrections=CorrectionSet(excluded_pixels=[(0, 0), (6, 0)]))
    with pytest.raises(CorrectionError, match=r"coordinates have 1 columns, but the sig shape \(6, 8\)"):
        ctx.run_udf(dataset=ds, udf=SumFrames(), corrections=CorrectionSet(excluded_pixels=[[3]]))
    with pytest.raises(TypeError, match="corrections: expected a CorrectionSet or None, got dict"):
        ctx.run_udf(dataset=ds, udf=SumFrames(), corrections={"dark": np.zeros((6, 8))})
    # nothing was started: the context runs the next job
    run_and_check(ctx, ds, case, CorrectionSet(gain=np.full((6, 8), 2.0)))


def test_nan_gain_at_non_excluded_pixel_is_an_error():
    case = frames_case((4, 4), fmt="memory")
    ctx = shared_context("inline")
    gain = np.ones((4, 4))
    gain[2, 1] = np.nan
    with pytest.raises(CorrectionError, match=r"gain has 1 non-finite value\(s\).*at \(2, 1\)"):
        ctx.run_udf(dataset=load(ctx, case, None), udf=SumFrames(),
                    corrections=CorrectionSet(gain=gain))


# -- worker processes ------------------------------------------------------------------------

@pytest.fixture(scope="module")
def processes_ctx():
    ctx = Context.make_with("processes", cpus=2)
    yield ctx
    ctx.close()


@pytest.mark.parametrize("fmt, io_backend", [("raw", "mmap"), ("npy", "buffered")])
def test_on_worker_processes(processes_ctx, tmp_path, fmt, io_backend):
    sig = (10, 12)
    case = frames_case(sig, dtype=">u2", nav_shape=(4, 5), num_partitions=4, fmt=fmt, sync_offset=-2,
                       roi=np.arange(20).reshape(4, 5) % 3 != 0)
    mask = np.zeros(sig, bool)
    mask[0, 0] = True
    mask[4:7, 4:7] = True
    corr = CorrectionSet(dark=np.full(sig, 1.5), gain=np.linspace(0.5, 2, prod(sig)).reshape(sig),
                         excluded_pixels=mask)
    ds = load(processes_ctx, case, tmp_path, io_backend)
    for method in ("frame", "tile", "partition"):
        run_and_check(processes_ctx, ds, case, corr, method=method)


@pytest.mark.slow
def test_on_a_local_dask_cluster(tmp_path):
    case = frames_case((7, 9), dtype="uint16", nav_shape=(3, 5), num_partitions=3, fmt="raw",
                       roi=np.arange(15).reshape(3, 5) % 4 != 1)
    corr = CorrectionSet(dark=np.full((7, 9), 0.5), excluded_pixels=[(0, 0), (3, 3), (3, 4), (6, 8)])
    with Context.make_with("dask", cpus=2) as ctx:
        ds = load(ctx, case, tmp_path, "buffered")
        for method in ("frame", "tile"):
            run_and_check(ctx, ds, case, corr, method=method)
