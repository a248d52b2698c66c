"""Property tests of the central invariant: UDF results equal numpy on the whole array.

Whatever the nav/sig shapes, stored dtype (including big-endian), partitioning, tiling, ROI,
``sync_offset``, missing frames, file format and executor, the results of a run must equal the
numpy computation on the "logical" frames array (position ``i`` holds file frame
``i + sync_offset`` when the file has it; positions without a frame are excluded like
positions outside the ROI).

Data values are small integers (and quarter steps for float dtypes) so that every sum below is
exactly representable in float32: any difference to numpy is a real error, not rounding.
"""

from __future__ import annotations

import tempfile
from math import prod

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from udfkit import UDF, Context
from udfkit.testing import SharedContexts
from udfkit.testing.profiles import examples
from udfkit.testing.strategies import load as load_case

DTYPES = ["uint8", "uint16", "int32", "float32", "float64", ">u2", ">f4",
          # beyond the brief: more byte orders and sizes, float16 (decoded through numpy)
          "int8", "uint32", ">i4", ">f8", "float16"]
FORMATS = ["memory", "raw", "npy"]
EXECUTORS = {"inline": {}, "inline-debug": {"debug": True}}
# executors with workers (threads, worker processes, a local dask cluster): one Context each
# for the whole module, closed at its end. Worker processes are spawned with this process's
# sys.path and import this module's UDF classes by name (registered by value with
# cloudpickle, every task would carry them, and the inline-debug runs took twice as long)
WORKER_EXECUTORS = {"threads": ("threads", {"cpus": 2}), "processes": ("processes", {"cpus": 2}),
                    "dask": ("dask", {"cpus": 2})}

MAX_ELEMENTS = 20_000

shared_context = SharedContexts(WORKER_EXECUTORS)
_close_shared_contexts = shared_context.closing_fixture()


# -- UDFs under test -------------------------------------------------------------------------

class TilingPrefsFromParams:
    """get_tiling_preferences from the ``depth`` / ``total_size`` parameters (None = no wish)."""

    def get_tiling_preferences(self):
        prefs = {}
        if self.params.depth is not None:
            prefs["depth"] = self.params.depth
        if self.params.total_size is not None:
            prefs["total_size"] = self.params.total_size
        return prefs


class SumUDF(TilingPrefsFromParams, UDF):
    """Sum over all processed frames (sig buffer, process_tile, merge adds), and a sig buffer
    with extra_shape (sum, sum of squares) seen through the tiles' signal slices."""

    def __init__(self, depth=None, total_size=None):
        super().__init__(depth=depth, total_size=total_size)

    def get_result_buffers(self):
        return {"intensity": self.buffer(kind="sig", dtype="float64"),
                "moments": self.buffer(kind="sig", extra_shape=(2,), dtype="float64")}

    def process_tile(self, tile):
        t = tile.astype(np.float64)
        self.results.intensity[:] += t.sum(axis=0)
        self.results.moments[..., 0] += t.sum(axis=0)
        self.results.moments[..., 1] += (t * t).sum(axis=0)

    def merge(self, dest, src):
        dest.intensity[:] += src.intensity
        dest.moments[:] += src.moments


class SumSigUDF(TilingPrefsFromParams, UDF):
    """Per-frame sum (nav buffer) and [min, max] (nav, extra_shape), accumulated over the signal
    parts of the tiles; preprocess initialises the minimum / maximum."""

    def __init__(self, depth=None, total_size=None):
        super().__init__(depth=depth, total_size=total_size)

    def get_result_buffers(self):
        return {"intensity": self.buffer(kind="nav", dtype="float64"),
                "minmax": self.buffer(kind="nav", extra_shape=(2,), dtype="float64")}

    def preprocess(self):
        self.results.minmax[:] = [np.inf, -np.inf]

    def process_tile(self, tile):
        flat = tile.reshape(tile.shape[0], -1)
        self.results.intensity[:] += flat.sum(axis=1, dtype=np.float64)
        mm = self.results.minmax
        np.minimum(mm[:, 0], flat.min(axis=1), out=mm[:, 0])
        np.maximum(mm[:, 1], flat.max(axis=1), out=mm[:, 1])


class StatsUDF(UDF):
    """Buffers with extra_shape (nav and sig) and an integer nav buffer, via process_frame."""

    def get_result_buffers(self):
        return {
            "stats": self.buffer(kind="nav", extra_shape=(2,), dtype="float64"),
            "nonzero": self.buffer(kind="nav", dtype="int64"),
            "moments": self.buffer(kind="sig", extra_shape=(2,), dtype="float64"),
        }

    def process_frame(self, frame):
        f = frame.astype(np.float64)
        self.results.stats[:] = [f.sum(), f.max()]
        self.results.nonzero[:] = np.count_nonzero(frame)
        self.results.moments[..., 0] += f
        self.results.moments[..., 1] += f * f

    def merge(self, dest, src):
        dest.stats[:] = src.stats
        dest.nonzero[:] = src.nonzero
        dest.moments[:] += src.moments


# -- the reference ---------------------------------------------------------------------------

class Case:
    """One drawn example: data, load parameters, ROI and the numpy reference."""

    def __init__(self, *, nav_shape, sig_shape, dtype, image_count, sync_offset, num_partitions,
                 tileshape, roi, depth, total_size, seed, nav_shaped_input=False):
        self.nav_shape = tuple(nav_shape)
        self.sig_shape = tuple(sig_shape)
        self.dtype = np.dtype(dtype)
        self.image_count = image_count
        self.sync_offset = sync_offset
        self.num_partitions = num_partitions
        self.tileshape = tileshape
        self.roi = roi
        self.depth = depth
        self.total_size = total_size
        # give the data in their nav + sig shape and let the format infer the shapes
        self.nav_shaped_input = nav_shaped_input and image_count == prod(self.nav_shape)
        rng = np.random.default_rng(seed)
        shape = (image_count,) + self.sig_shape
        if self.dtype.kind == "u":
            values = rng.integers(0, 51, size=shape)
        elif self.dtype.kind == "i":
            values = rng.integers(-50, 51, size=shape)
        else:  # quarter steps: exact in float32
            values = rng.integers(-200, 201, size=shape) / 4
        # a few zeros so that count_nonzero is not trivially the frame size
        values[rng.random(shape) < 0.1] = 0
        self.values = values.astype(np.float64)  # the numbers, whatever the storage
        self.stored = values.astype(self.dtype)  # what goes into memory / onto disk

        nav_size = prod(self.nav_shape)
        file_idx = np.arange(nav_size) + sync_offset
        self.has_frame = (file_idx >= 0) & (file_idx < image_count)
        roi_flat = np.ones(nav_size, bool) if roi is None else roi.reshape(-1)
        self.processed = self.has_frame & roi_flat  # flat bool per position
        # logical frames array over the whole nav axis (NaN where there is no frame)
        logical = np.full((nav_size,) + self.sig_shape, np.nan)
        logical[self.has_frame] = self.values[file_idx[self.has_frame]]
        self.frames = logical[self.processed]  # processed frames in flat nav order

    @property
    def partial(self):
        return self.image_count < prod(self.nav_shape)

    def __repr__(self):
        return (f"Case(nav={self.nav_shape}, sig={self.sig_shape}, dtype={self.dtype.str}, "
                f"image_count={self.image_count}, sync_offset={self.sync_offset}, "
                f"num_partitions={self.num_partitions}, tileshape={self.tileshape}, "
                f"depth={self.depth}, total_size={self.total_size}, "
                f"nav_shaped_input={self.nav_shaped_input}, "
                f"roi={'None' if self.roi is None else self.roi.astype(int).tolist()})")


@st.composite
def cases(draw):
    nav_shape = tuple(draw(st.lists(st.integers(1, 6), min_size=1, max_size=3)))
    sig_shape = tuple(draw(st.lists(st.integers(1, 9), min_size=1, max_size=3)))
    nav_size = prod(nav_shape)
    # a few frames more or (with allow_partial) fewer than the nav shape needs
    image_count = draw(st.one_of(st.just(nav_size),
                                 st.integers(max(1, nav_size - 3), nav_size + 3)))
    if (image_count + 3) * prod(sig_shape) > MAX_ELEMENTS:
        sig_shape = sig_shape[-1:]
    dtype = draw(st.sampled_from(DTYPES))
    sync_offset = draw(st.one_of(st.just(0), st.integers(-nav_size + 1, image_count - 1)))
    num_partitions = draw(st.integers(1, min(nav_size + 2, 8)))  # more than frames: capped
    tileshape = draw(st.one_of(
        st.none(),
        st.tuples(st.integers(1, 6), *[st.integers(1, s) for s in sig_shape])))
    depth = draw(st.one_of(st.none(), st.integers(1, 5)))
    total_size = draw(st.sampled_from([None, 8, 64, 256, 4096]))
    seed = draw(st.integers(0, 2**32 - 1))
    roi_density = draw(st.sampled_from([None, None, 0.0, 0.3, 0.8, 0.8, 1.0]))
    if roi_density is None:
        roi = None
    else:
        roi = np.random.default_rng(seed + 1).random(nav_shape) < roi_density
        if roi_density > 0 and not roi.any():
            roi.flat[nav_size // 2] = True
    return Case(nav_shape=nav_shape, sig_shape=sig_shape, dtype=dtype, image_count=image_count,
                sync_offset=sync_offset, num_partitions=num_partitions, tileshape=tileshape,
                roi=roi, depth=depth, total_size=total_size, seed=seed,
                nav_shaped_input=draw(st.booleans()))


def load(ctx, case: Case, fmt: str, tmpdir: str):
    """``case`` loaded as ``fmt`` (the loader of the built-in tests, which takes any case with
    the same attributes), in the stored dtype."""
    ds = load_case(ctx, case, tmpdir, fmt)
    assert ds.dtype == case.dtype
    return ds


# -- checks ----------------------------------------------------------------------------------

def assert_nav(res, expected_rows, case: Case, fill):
    """``res`` is a nav result whose processed rows must equal ``expected_rows``."""
    nav_shape, processed = case.nav_shape, case.processed
    extra = expected_rows.shape[1:]
    assert res.data.shape == nav_shape + extra
    # raw_data: one row per processed frame, in flat nav order
    assert res.raw_data.shape == (int(processed.sum()),) + extra
    np.testing.assert_allclose(res.raw_data, expected_rows, rtol=1e-6, atol=0)
    flat = res.data.reshape((-1,) + extra)
    np.testing.assert_allclose(flat[processed], expected_rows, rtol=1e-6, atol=0)
    if np.isnan(fill):
        assert np.isnan(flat[~processed]).all(), "positions not processed must be NaN"
    else:
        assert (flat[~processed] == fill).all(), f"positions not processed must be {fill}"
    want_mask = np.broadcast_to(processed.reshape(nav_shape + (1,) * len(extra)),
                                nav_shape + extra)
    np.testing.assert_array_equal(res.valid_mask, want_mask)


def check_sum(res, case: Case):
    r = res["intensity"]
    assert r.data.shape == case.sig_shape
    np.testing.assert_allclose(r.data, case.frames.sum(axis=0), rtol=1e-6, atol=0)
    assert r.valid_mask.shape == case.sig_shape and r.valid_mask.all()
    moments = np.stack([case.frames.sum(axis=0), (case.frames ** 2).sum(axis=0)], axis=-1)
    assert res["moments"].data.shape == case.sig_shape + (2,)
    np.testing.assert_allclose(res["moments"].data, moments, rtol=1e-6, atol=0)


def check_sumsig(res, case: Case):
    flat = case.frames.reshape(case.frames.shape[0], prod(case.sig_shape))
    assert_nav(res["intensity"], flat.sum(axis=1), case, np.nan)
    minmax = np.stack([flat.min(axis=1, initial=np.inf), flat.max(axis=1, initial=-np.inf)], -1)
    assert_nav(res["minmax"], minmax.reshape(-1, 2), case, np.nan)


def check_stats(res, case: Case):
    flat = case.frames.reshape(case.frames.shape[0], prod(case.sig_shape))
    stats = np.stack([flat.sum(axis=1), flat.max(axis=1, initial=-np.inf)], axis=-1)
    assert_nav(res["stats"], stats.reshape(-1, 2), case, np.nan)
    assert res["nonzero"].data.dtype == np.int64
    assert_nav(res["nonzero"], np.count_nonzero(flat, axis=1), case, 0)
    moments = np.stack([case.frames.sum(axis=0), (case.frames ** 2).sum(axis=0)], axis=-1)
    assert res["moments"].data.shape == case.sig_shape + (2,)
    np.testing.assert_allclose(res["moments"].data, moments, rtol=1e-6, atol=0)


def tile_udfs(case: Case):
    return [SumUDF(depth=case.depth, total_size=case.total_size),
            SumSigUDF(depth=case.depth, total_size=case.total_size)]


def run_all(ctx, ds, case: Case):
    """The three UDFs as a list in one pass, and each on its own."""
    udfs = tile_udfs(case) + [StatsUDF()]
    together = ctx.run_udf(dataset=ds, udf=udfs, roi=case.roi)
    assert isinstance(together, list) and len(together) == 3
    for res, check in zip(together, (check_sum, check_sumsig, check_stats)):
        check(res, case)
    for udf, check in zip(tile_udfs(case) + [StatsUDF()], (check_sum, check_sumsig, check_stats)):
        check(ctx.run_udf(dataset=ds, udf=udf, roi=case.roi), case)


def check_iter(ctx, ds, case: Case):
    """run_udf_iter: one partial result per merged partition, valid_mask growing, nav values
    final as soon as they are valid, the last result complete and equal to run_udf."""
    final = ctx.run_udf(dataset=ds, udf=tile_udfs(case) + [StatsUDF()], roi=case.roi)
    parts = list(ctx.run_udf_iter(dataset=ds, udf=tile_udfs(case) + [StatsUDF()], roi=case.roi))
    nonempty = sum(bool(case.processed[p.start:p.stop].any()) for p in ds.get_partitions())
    assert len(parts) == max(1, nonempty)
    assert [p.complete for p in parts] == [False] * (len(parts) - 1) + [True]
    processed = case.processed.reshape(case.nav_shape)
    prev = np.zeros(case.nav_shape, bool)
    for p in parts:
        valid = p.buffers[1]["intensity"].valid_mask
        np.testing.assert_array_equal(p.damage, valid)
        assert not (valid & ~processed).any() and not (prev & ~valid).any()
        for i, name in ((1, "intensity"), (1, "minmax"), (2, "stats"), (2, "nonzero")):
            r, f = p.buffers[i][name], final[i][name]
            np.testing.assert_array_equal(r.data[r.valid_mask], f.data[r.valid_mask])
        prev = valid
    np.testing.assert_array_equal(prev, processed)
    for got, want in zip(parts[-1].buffers, final):
        for name in want:
            np.testing.assert_array_equal(got[name].data, want[name].data, err_msg=name)
            np.testing.assert_array_equal(got[name].valid_mask, want[name].valid_mask)


# -- the properties --------------------------------------------------------------------------

@pytest.mark.parametrize("executor", sorted(EXECUTORS))
@pytest.mark.parametrize("fmt", FORMATS)
@settings(max_examples=examples(100), deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(case=cases())
def test_results_equal_numpy(fmt, executor, case):
    with tempfile.TemporaryDirectory() as tmpdir:
        with Context.make_with("inline", **EXECUTORS[executor]) as ctx:
            ds = load(ctx, case, fmt, tmpdir)
            run_all(ctx, ds, case)
            check_iter(ctx, ds, case)


@pytest.mark.parametrize("executor", sorted(WORKER_EXECUTORS))
@settings(max_examples=examples(20), deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(case=cases(), fmt=st.sampled_from(FORMATS))
def test_executors_equal_inline(executor, fmt, case):
    """The central property on threads, worker processes and a local dask cluster (fewer
    examples: a run there costs milliseconds per partition), and bit-identical results to
    the inline executor's with ``deterministic=True``."""
    ctx = shared_context(executor)
    with tempfile.TemporaryDirectory() as tmpdir:
        ds = load(ctx, case, fmt, tmpdir)
        run_all(ctx, ds, case)
        check_iter(ctx, ds, case)
        inline = Context.make_with("inline")
        ref = inline.run_udf(dataset=load(inline, case, fmt, tmpdir),
                             udf=tile_udfs(case) + [StatsUDF()], roi=case.roi)
        got = ctx.run_udf(dataset=ds, udf=tile_udfs(case) + [StatsUDF()], roi=case.roi,
                          deterministic=True)
        for r, g in zip(ref, got):
            assert r.keys() == g.keys()
            for name in r:
                np.testing.assert_array_equal(g[name].data, r[name].data, err_msg=name)
                np.testing.assert_array_equal(g[name].valid_mask, r[name].valid_mask, err_msg=name)


@settings(max_examples=examples(100), deadline=None)
@given(case=cases(), fmt=st.sampled_from(["raw", "npy"]))
def test_formats_agree_exactly(case, fmt):
    """The same data give bit-identical results from memory and from a file."""
    with tempfile.TemporaryDirectory() as tmpdir:
        ctx = Context.make_with("inline")
        ref = ctx.run_udf(dataset=load(ctx, case, "memory", tmpdir),
                          udf=tile_udfs(case) + [StatsUDF()], roi=case.roi)
        got = ctx.run_udf(dataset=load(ctx, case, fmt, tmpdir),
                          udf=tile_udfs(case) + [StatsUDF()], roi=case.roi)
        for r, g in zip(ref, got):
            assert r.keys() == g.keys()
            for name in r:
                np.testing.assert_array_equal(g[name].data, r[name].data, err_msg=name)
                np.testing.assert_array_equal(g[name].valid_mask, r[name].valid_mask, err_msg=name)


# -- explicit cases that the properties may not hit every time -------------------------------

@pytest.mark.parametrize("sync_offset", [-3, 0, 2])
@pytest.mark.parametrize("dtype", DTYPES)
def test_allow_partial_raw_file(tmp_path, dtype, sync_offset):
    """A raw file with fewer frames than nav_shape needs: missing positions NaN and invalid."""
    nav_shape, sig_shape = (4, 5), (3, 4)
    frames = 13  # of 20
    case = Case(nav_shape=nav_shape, sig_shape=sig_shape, dtype=dtype, image_count=frames,
                sync_offset=sync_offset, num_partitions=3, tileshape=None, roi=None, depth=2,
                total_size=None, seed=1)
    path = tmp_path / "partial.raw"
    case.stored.tofile(path)
    ctx = Context.make_with("inline")
    ds = ctx.load("raw", path=str(path), dtype=dtype, nav_shape=nav_shape, sig_shape=sig_shape,
                  sync_offset=sync_offset, num_partitions=3, allow_partial=True)
    run_all(ctx, ds, case)
    res = ctx.run_udf(dataset=ds, udf=SumSigUDF())["intensity"]
    n_valid = min(20, frames - sync_offset) - max(0, -sync_offset)
    assert res.valid_mask.sum() == n_valid
    flat_valid = res.valid_mask.reshape(-1)
    # the valid positions are one contiguous run: [max(0, -s), frames - s)
    np.testing.assert_array_equal(np.flatnonzero(flat_valid),
                                  np.arange(max(0, -sync_offset), min(20, frames - sync_offset)))
    assert np.isnan(res.data.reshape(-1)[~flat_valid]).all()


def test_partial_file_without_allow_partial_is_an_error(tmp_path):
    from udfkit.errors import DataSetError

    path = tmp_path / "partial.raw"
    np.zeros((13, 3, 4), dtype="uint16").tofile(path)
    ctx = Context.make_with("inline")
    with pytest.raises(DataSetError, match="allow_partial"):
        ctx.load("raw", path=str(path), dtype="uint16", nav_shape=(4, 5), sig_shape=(3, 4))


@pytest.mark.parametrize("fmt", FORMATS)
def test_empty_roi(tmp_path, fmt):
    """No processed frame at all: sums are zero, every nav entry NaN and invalid."""
    case = Case(nav_shape=(3, 4), sig_shape=(5, 6), dtype="uint16", image_count=12,
                sync_offset=0, num_partitions=3, tileshape=None,
                roi=np.zeros((3, 4), bool), depth=None, total_size=None, seed=2)
    ctx = Context.make_with("inline", debug=True)
    run_all(ctx, load(ctx, case, fmt, str(tmp_path)), case)
