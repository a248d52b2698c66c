"""Halo UDFs (``get_halo``): results equal numpy with ``np.pad`` on the whole array.

The reference of every property test is the same computation on the data set's whole nav
grid, with positions that are not processed (outside the ROI, without a frame because of
``sync_offset`` or a short file) set to NaN and the grid padded by ``np.pad`` in the UDF's mode
("nan": constant NaN, "reflect", "nearest": "edge"); the run must give it at every processed
position, whatever the partitioning, executor, ROI, radius, method and stack depth.
"""

from __future__ import annotations

import tempfile
from math import prod

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from udfkit import UDF, Context
from udfkit.errors import UDFError
from udfkit.io.corrections import CorrectionSet
from udfkit.testing import SharedContexts
from udfkit.testing.profiles import examples
from udfkit.testing.strategies import REAL_DTYPES, cases, load
from udfkit.udf.halo import normalize_halo

EXECUTORS = {"inline-debug": ("inline", {"debug": True}), "threads": ("threads", {"cpus": 2}),
             "processes": ("processes", {"cpus": 2}), "dask": ("dask", {"cpus": 2})}
shared_context = SharedContexts(EXECUTORS)
_close_shared_contexts = shared_context.closing_fixture()

NP_MODES = {"nan": dict(mode="constant", constant_values=np.nan), "reflect": dict(mode="reflect"),
            "nearest": dict(mode="edge")}


# -- the computations, shared by the UDFs and the whole-array references ----------------------

def neighbourhood(grid, radius):
    """``(nansum, count of non-NaN)`` over the (2r+1)-neighbourhood of every interior position
    of ``grid`` (nav axes first, then any trailing axes); interior = grid shrunk by radius."""
    nd = len(radius)
    inner = tuple(n - 2 * r for n, r in zip(grid.shape[:nd], radius))
    total = np.zeros(inner + grid.shape[nd:])
    count = np.zeros(inner + grid.shape[nd:])
    for shift in np.ndindex(*(2 * r + 1 for r in radius)):
        part = grid[tuple(slice(s, s + n) for s, n in zip(shift, inner))]
        ok = ~np.isnan(part)
        total += np.where(ok, part, 0)
        count += ok
    return total, count


def correlation(a, b):
    """Pearson correlation of the frames ``a[i]`` and ``b[i]`` (0 where one is constant)."""
    n = a.shape[0]
    a = a.reshape(n, prod(a.shape[1:]))
    b = b.reshape(n, prod(b.shape[1:]))
    a = a - a.mean(axis=1, keepdims=True)
    b = b - b.mean(axis=1, keepdims=True)
    num = (a * b).sum(axis=1)
    den = np.sqrt((a * a).sum(axis=1) * (b * b).sum(axis=1))
    return np.divide(num, den, out=np.zeros_like(num), where=den > 1e-12)


def local_stats(grid, radius, sig_dims):
    """Per interior position: neighbourhood sum and count of the frame sums, and the
    correlation of the frame with the mean frame of its neighbourhood (Thunder's localcorr
    along nav). ``grid``: nav + sig, NaN where there is no frame."""
    nd = len(radius)
    sums = grid.sum(axis=tuple(range(nd, nd + sig_dims)))
    nsum, ncount = neighbourhood(sums, radius)
    fsum, fcount = neighbourhood(grid, radius)
    mean = fsum / np.maximum(fcount, 1)
    centre = grid[tuple(slice(r, n - r) for r, n in zip(radius, grid.shape))]
    flat = centre.reshape((-1,) + centre.shape[nd:])
    valid = ~np.isnan(flat.reshape(flat.shape[0], -1)).any(axis=1)
    corr = np.full(flat.shape[0], np.nan)
    corr[valid] = correlation(flat[valid], mean.reshape(flat.shape)[valid])
    return nsum, ncount, corr.reshape(nsum.shape)


class LocalUDF(UDF):
    """Neighbourhood sum/count of frame sums and local correlation, on its halo block."""

    def __init__(self, radius, mode="nan", method="frame_stack", depth=None):
        super().__init__(radius=radius, mode=mode, method=method, depth=depth)

    def get_halo(self):
        return {"radius": tuple(self.params.radius), "mode": self.params.mode}

    def get_method(self):
        return self.params.method

    def get_preferred_input_dtype(self):
        return np.float64

    def get_tiling_preferences(self):
        return {} if self.params.depth is None else {"depth": self.params.depth}

    def get_result_buffers(self):
        return {"nsum": self.buffer(kind="nav", dtype="float64"),
                "ncount": self.buffer(kind="nav", dtype="float64"),
                "corr": self.buffer(kind="nav", dtype="float64"),
                "pos": self.buffer(kind="nav", dtype="int64"),
                "origin": self.buffer(kind="nav", dtype="int64")}

    def process_frame_stack(self, stack):
        self._compute(stack)

    def process_partition(self, partition):
        self._compute(partition)

    def _compute(self, stack):
        meta = self.meta
        radius = tuple(self.params.radius)
        shape = meta.halo_block_shape
        sig = stack.shape[1:]
        assert stack.shape[0] == prod(shape) == meta.coordinates.shape[0]
        assert meta.frame_index.shape == (stack.shape[0],)
        grid = stack.reshape(shape + sig)
        nsum, ncount, corr = local_stats(grid, radius, len(sig))
        own = meta.own_frames
        # own frames in block coordinates -> interior coordinates of the statistics
        local = np.unravel_index(own, shape)
        inner = np.ravel_multi_index(tuple(c - r for c, r in zip(local, radius)), nsum.shape)
        self.results.nsum[:] = nsum.reshape(-1)[inner]
        self.results.ncount[:] = ncount.reshape(-1)[inner]
        self.results.corr[:] = corr.reshape(-1)[inner]
        self.results.pos[:] = meta.frame_index[own]
        coords = meta.coordinates[own]
        assert (np.ravel_multi_index(tuple(coords.T), meta.dataset_shape.nav.to_tuple())
                == meta.frame_index[own]).all()
        self.results.origin[:] = meta.slice.origin[0] + np.arange(meta.slice.shape[0])


class FrameSums(UDF):
    """A UDF without a halo, run next to halo UDFs (gets the own frames only)."""

    def get_result_buffers(self):
        return {"s": self.buffer(kind="nav", dtype="float64")}

    def get_preferred_input_dtype(self):
        return np.float64

    def process_frame(self, frame):
        self.results.s[:] = frame.sum()


class StackSums(FrameSums):
    """Frame sums from stacks of at most two whole frames (no halo)."""

    def get_tiling_preferences(self):
        return {"depth": 2}

    def process_frame_stack(self, stack):
        assert stack.shape[0] <= 2
        self.results.s[:] = stack.reshape(stack.shape[0], -1).sum(axis=1)


def reference(case, radius, mode):
    """The statistics of :func:`local_stats` on the whole (NaN-filled, padded) array."""
    nav_size = prod(case.nav_shape)
    full = np.full((nav_size,) + case.sig_shape, np.nan)
    full[case.processed] = case.frames
    full = full.reshape(case.nav_shape + case.sig_shape)
    widths = [(r, r) for r in radius] + [(0, 0)] * len(case.sig_shape)
    padded = np.pad(full, widths, **NP_MODES[mode])
    return local_stats(padded, radius, len(case.sig_shape))


def check(res, case, radius, mode):
    nsum, ncount, corr = reference(case, radius, mode)
    sel = case.processed.reshape(case.nav_shape)
    r = res[0] if isinstance(res, list) else res
    np.testing.assert_allclose(r["nsum"].data[sel], nsum[sel], rtol=1e-12, atol=1e-9)
    np.testing.assert_array_equal(r["ncount"].data[sel], ncount[sel])
    np.testing.assert_allclose(r["corr"].data[sel], corr[sel], rtol=1e-9, atol=1e-9)
    np.testing.assert_array_equal(r["pos"].raw_data, np.flatnonzero(case.processed))
    np.testing.assert_array_equal(r["origin"].raw_data, np.arange(case.n))


@st.composite
def halo_cases(draw, max_nav_dims=2):
    case = draw(cases(dtypes=REAL_DTYPES, max_nav_dims=max_nav_dims, max_nav=6, max_sig=4,
                      max_sig_dims=2))
    radius = tuple(draw(st.integers(0, min(2, n - 1))) for n in case.nav_shape)
    mode = draw(st.sampled_from(sorted(NP_MODES)))
    method = draw(st.sampled_from(["frame_stack", "frame_stack", "partition"]))
    depth = draw(st.one_of(st.none(), st.integers(1, 13)))
    return case, radius, mode, method, depth


def run_case(ctx, case, radius, mode, method, depth, fmt=None, with_plain=False):
    with tempfile.TemporaryDirectory() as tmpdir:
        ds = load(ctx, case, tmpdir, fmt)
        udfs = [LocalUDF(radius=radius, mode=mode, method=method, depth=depth)]
        if with_plain:
            udfs.append(FrameSums())
        res = ctx.run_udf(dataset=ds, udf=udfs, roi=case.roi)
    check(res[0], case, radius, mode)
    if with_plain:
        np.testing.assert_array_equal(res[1]["s"].raw_data, case.flat.sum(axis=1))


@settings(max_examples=examples(30), deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(args=halo_cases(max_nav_dims=3), with_plain=st.booleans())
def test_halo_equals_numpy_pad_inline(args, with_plain):
    """Every format, dtype, sync_offset, short file, partitioning, forced tile shape, ROI,
    radius, mode, method and stack depth, on the inline executor with pickled round trips."""
    run_case(shared_context("inline-debug"), *args, with_plain=with_plain)


def check_stacks_without_halo(ctx, case):
    """Frame stacks of a run without a halo on the same executor (the plain stream)."""
    with tempfile.TemporaryDirectory() as tmpdir:
        res = ctx.run_udf(dataset=load(ctx, case, tmpdir), udf=StackSums(), roi=case.roi)
    np.testing.assert_array_equal(res["s"].raw_data, case.flat.sum(axis=1))


@pytest.mark.parametrize("executor", ["threads", "processes"])
@settings(max_examples=examples(3), deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(args=halo_cases())
def test_halo_equals_numpy_pad_executors(executor, args):
    ctx = shared_context(executor)
    run_case(ctx, *args, with_plain=True)
    check_stacks_without_halo(ctx, args[0])


@pytest.mark.cluster
@settings(max_examples=examples(2), deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(args=halo_cases())
def test_halo_equals_numpy_pad_dask(args):
    """The fast dask case: a local cluster's workers get the units and their sources (and,
    in a run without a halo, frame stacks)."""
    ctx = shared_context("dask")
    run_case(ctx, *args, with_plain=True)
    check_stacks_without_halo(ctx, args[0])


@pytest.mark.parametrize("mode", sorted(NP_MODES))
@pytest.mark.parametrize("radius, num_partitions", [((1, 1), 1), ((2, 1), 3), ((0, 3), 7)])
def test_halo_grid(mode, radius, num_partitions):
    """A fixed grid of cases next to the drawn ones (each radius, mode and partitioning)."""
    from udfkit.testing.strategies import BCase

    case = BCase(nav_shape=(7, 5), sig_shape=(3, 4), dtype="uint16", image_count=35,
                 num_partitions=num_partitions, seed=3)
    run_case(shared_context("inline-debug"), case, radius, mode, "frame_stack", 3)


def test_halo_with_corrections():
    """Corrections apply to the halo frames as to the own ones."""
    rng = np.random.default_rng(0)
    data = rng.integers(0, 50, size=(5, 6, 4, 4)).astype("uint16")
    dark = rng.random((4, 4))
    ctx = shared_context("inline-debug")
    ds = ctx.load("memory", data=data, num_partitions=3)
    res = ctx.run_udf(dataset=ds, udf=LocalUDF(radius=(1, 1), mode="reflect"),
                      corrections=CorrectionSet(dark=dark))
    corrected = data.astype(np.float64) - dark.astype(np.float32)
    padded = np.pad(corrected, [(1, 1), (1, 1), (0, 0), (0, 0)], mode="reflect")
    nsum, _, corr = local_stats(padded, (1, 1), 2)
    np.testing.assert_allclose(res["nsum"].data, nsum, rtol=1e-6)
    np.testing.assert_allclose(res["corr"].data, corr, rtol=1e-5, atol=1e-6)


def test_meta_for_halo_blocks():
    """halo_block_shape, own_frames and coordinates of one stack, by hand."""
    seen = []

    class Look(LocalUDF):
        def process_frame_stack(self, stack):
            m = self.meta
            seen.append((m.halo_block_shape, m.own_frames.tolist(), m.coordinates[0].tolist(),
                         m.frame_index[:3].tolist(), m.slice.origin[0], m.slice.shape[0]))
            super().process_frame_stack(stack)

    ctx = Context.make_with("inline")
    ds = ctx.load("memory", data=np.zeros((4, 3, 2, 2)), num_partitions=2)
    ctx.run_udf(dataset=ds, udf=Look(radius=(1, 1), depth=3))
    # rows of one stack (depth 3 = one row of 3 frames), plus a row above and below,
    # plus a column left and right
    assert seen[0] == ((3, 5), [6, 7, 8], [-1, -1], [-1, -1, -1], 0, 3)
    assert seen[1][0] == (3, 5) and seen[1][2] == [0, -1] and seen[1][4] == 3
    assert len(seen) == 4


def test_plan_reports_read_amplification():
    ctx = Context.make_with("inline")
    ds = ctx.load("memory", data=np.zeros((8, 4, 2, 2)), num_partitions=4)
    plan = ctx.plan(dataset=ds, udf=LocalUDF(radius=(1, 1)))
    # 4 units of 2 rows each: the inner ones read 4 rows, the outer ones 3
    assert plan.halo.frames_owned == 32 and plan.halo.frames_read == 56
    assert plan.halo.read_amplification == pytest.approx(56 / 32)
    assert "read amplification 1.750" in str(plan)
    assert plan.to_dict()["halo"]["read_amplification"] == pytest.approx(1.75)
    assert [(p.start, p.stop) for p in plan.partitions] == [(0, 8), (8, 16), (16, 24), (24, 32)]
    assert ctx.plan(dataset=ds, udf=FrameSums()).halo is None


def test_partitions_become_whole_rows():
    ctx = Context.make_with("inline")
    ds = ctx.load("memory", data=np.zeros((6, 5, 2, 2)), num_partitions=4)
    plan = ctx.plan(dataset=ds, udf=LocalUDF(radius=(1, 0)))
    assert all(p.start % 5 == 0 and p.stop % 5 == 0 for p in plan.partitions)
    assert plan.partitions[-1].stop == 30


# -- bad input -------------------------------------------------------------------------------

class OnlyFrame(UDF):
    def get_halo(self):
        return {"radius": (1, 1), "mode": "nan"}

    def get_result_buffers(self):
        return {"s": self.buffer(kind="nav")}

    def process_frame(self, frame):
        self.results.s[:] = frame.sum()


class FrameMethod(LocalUDF):
    def process_frame(self, frame):
        pass

    def get_method(self):
        return "frame"


class NativeDtype(LocalUDF):
    def get_preferred_input_dtype(self):
        return self.USE_NATIVE_DTYPE


@pytest.fixture
def small_ds():
    ctx = Context.make_with("inline")
    return ctx, ctx.load("memory", data=np.zeros((4, 3, 2, 2), dtype="uint16"))


@pytest.mark.parametrize("udf, match", [
    (LocalUDF(radius=(4, 1)), r"LocalUDF.*radius \(4, 1\) is larger than the data set: nav shape "
                              r"\(4, 3\).*axis 0: 4 >= 4"),
    (LocalUDF(radius=(1, 3)), r"radius \(1, 3\).*axis 1: 3 >= 3"),
    (LocalUDF(radius=(1,)), r"LocalUDF.*radius \(1,\) has 1 axis, but the data set has 2 nav "
                            r"axes \(nav shape \(4, 3\)\)"),
    (LocalUDF(radius=(1, 1, 1)), r"has 3 axes, but the data set has 2 nav axes"),
    (OnlyFrame(), r"OnlyFrame declares a halo .* neither process_frame_stack nor "
                  r"process_partition"),
    (FrameMethod(radius=(1, 1)), r"FrameMethod declares a halo .* runs process_frame"),
    (NativeDtype(radius=(1, 1), mode="nan"), r"NativeDtype.*NaN.*input dtype is uint16"),
])
def test_bad_halo_is_a_clear_error(small_ds, udf, match):
    ctx, ds = small_ds
    with pytest.raises(UDFError, match=match):
        ctx.run_udf(dataset=ds, udf=udf)


def test_native_dtype_without_nan_is_fine(small_ds):
    ctx, ds = small_ds
    res = ctx.run_udf(dataset=ds, udf=NativeDtype(radius=(1, 1), mode="nearest"))
    assert res["ncount"].data.min() == 9
    with pytest.raises(UDFError, match="outside the ROI or without a frame are NaN"):
        ctx.run_udf(dataset=ds, udf=NativeDtype(radius=(1, 1), mode="nearest"),
                    roi=np.ones((4, 3), bool))


@pytest.mark.parametrize("value, match", [
    ([1, 1], "expected None or a dict"),
    ({"radius": (1, -1)}, "non-negative integers"),
    ({"radius": (1, 1), "mode": "wrap"}, r"mode: expected one of \['nan', 'nearest', 'reflect'\]"),
    ({"radius": (1, 1), "size": 3}, r"unknown keys \['size'\]"),
])
def test_normalize_halo_errors(value, match):
    with pytest.raises(UDFError, match=match):
        normalize_halo(value, "X.get_halo()")
