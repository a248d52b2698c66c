"""The UDF interface: process methods, meta, input dtype, tiling preferences, aux data,
buffer uses, hooks, run_udf_iter, Context.map and the result objects."""

from __future__ import annotations

import threading
from math import prod

import numpy as np
import pytest

from udfkit import UDF, Context, Shape
from udfkit.executor.threads import ThreadsExecutor
from udfkit.io.tiling import TilingScheme

NAV, SIG = (3, 5), (6, 7)
NAV_SIZE = prod(NAV)

ALL_DTYPES = ["uint8", "uint16", ">u2", "int32", "float32", ">f4", "float64"]


def make_data(dtype="uint16", nav=NAV, sig=SIG, seed=0):
    rng = np.random.default_rng(seed)
    return rng.integers(0, 51, size=nav + sig).astype(dtype)


@pytest.fixture
def ctx():
    with Context.make_with("inline") as c:
        yield c


def skip_if_in_other_processes(ctx):
    if ctx.executor.kind in ("processes", "dask"):
        pytest.skip("the UDF hooks log into this process's memory; on worker processes that log "
                    "is not visible (tests/executor/test_processes.py and test_dask*.py cover the "
                    "executors)")


@pytest.fixture(scope="module")
def processes_ctx():
    # worker processes are started once for the module: a run costs milliseconds, a start
    # (with the workers' imports) about half a second
    with Context.make_with("processes", cpus=2) as c:
        yield c


@pytest.fixture(scope="module")
def dask_ctx():
    # one local cluster (scheduler in this process, two worker processes) for the module:
    # starting one costs about a second. Its workers are spawned with this process's
    # sys.path and import this module by name, like the processes executor's workers (not
    # registered with cloudpickle.register_pickle_by_value: the hook tests need the UDF
    # classes pickled by reference, so that inline and threads runs log into HOOK_LOG)
    with Context.make_with("dask", cpus=2) as c:
        yield c


@pytest.fixture(params=[("inline", {}), ("inline", {"debug": True}), ("threads", {"cpus": 2}),
                        ("processes", {}), ("dask", {})],
                ids=["inline", "inline-debug", "threads", "processes", "dask"])
def any_ctx(request):
    kind, kwargs = request.param
    if kind in ("processes", "dask"):
        yield request.getfixturevalue(f"{kind}_ctx")
        return
    with Context.make_with(kind, **kwargs) as c:
        yield c


# == the same computation through the three process methods =================================

class _Base(UDF):
    """sig sum, nav sum and nav [sum, max] (extra_shape)."""

    def get_result_buffers(self):
        return {
            "sigsum": self.buffer(kind="sig", dtype="float64"),
            "navsum": self.buffer(kind="nav", dtype="float64"),
            "stats": self.buffer(kind="nav", extra_shape=(2,), dtype="float64"),
            "nframes": self.buffer(kind="single", dtype="int64"),
        }

    def preprocess(self):
        self.results.stats[..., 1] = -np.inf

    def merge(self, dest, src):
        dest.nframes[:] += src.nframes
        dest.sigsum[:] += src.sigsum
        dest.navsum[:] = src.navsum
        dest.stats[:] = src.stats


class ByFrame(_Base):
    def process_frame(self, frame):
        assert frame.shape == SIG
        self.results.nframes[:] += 1
        self.results.sigsum[:] += frame
        self.results.navsum[:] = frame.sum()
        self.results.stats[:] = [frame.sum(), frame.max()]


class ByTile(_Base):
    def process_tile(self, tile):
        n = tile.shape[0]
        flat = tile.reshape(n, -1)
        if self.meta.sig_slice.origin == (0, 0):
            self.results.nframes[:] += n
        self.results.sigsum[:] += tile.sum(axis=0)
        self.results.navsum[:] += flat.sum(axis=1)
        self.results.stats[:, 0] += flat.sum(axis=1)
        self.results.stats[:, 1] = np.maximum(self.results.stats[:, 1], flat.max(axis=1))


class ByPartition(_Base):
    def process_partition(self, partition):
        n = partition.shape[0]
        assert partition.shape[1:] == SIG
        flat = partition.reshape(n, -1)
        self.results.nframes[:] += n
        self.results.sigsum[:] += partition.sum(axis=0)
        self.results.navsum[:] = flat.sum(axis=1)
        self.results.stats[:] = np.stack([flat.sum(axis=1), flat.max(axis=1)], axis=-1)


CONFIGS = {
    "1part": dict(num_partitions=1),
    "4parts": dict(num_partitions=4),
    "15parts": dict(num_partitions=15),
    "tile-2x3x4": dict(num_partitions=2, tileshape=(2, 3, 4)),
    "tile-4x1x7": dict(num_partitions=3, tileshape=(4, 1, 7)),
    "tile-1x6x1": dict(num_partitions=2, tileshape=(1, 6, 1)),
    "sync+2": dict(num_partitions=3, sync_offset=2, tileshape=(3, 2, 7)),
    "sync-4": dict(num_partitions=3, sync_offset=-4, tileshape=(3, 4, 3)),
}

ROIS = {
    "noroi": None,
    "checker": (np.indices(NAV).sum(axis=0) % 2).astype(bool),
    "one": np.eye(1, NAV_SIZE, 7, dtype=bool).reshape(NAV),
}


def logical(data, sync_offset=0):
    """Nav-flat frames with sync_offset applied and a has-frame mask."""
    frames = data.reshape((-1,) + data.shape[len(NAV):]).astype(np.float64)
    idx = np.arange(NAV_SIZE) + sync_offset
    has = (idx >= 0) & (idx < frames.shape[0])
    out = np.full((NAV_SIZE,) + frames.shape[1:], np.nan)
    out[has] = frames[idx[has]]
    return out, has


@pytest.mark.parametrize("roi", list(ROIS), ids=list(ROIS))
@pytest.mark.parametrize("config", list(CONFIGS), ids=list(CONFIGS))
def test_frame_tile_partition_agree(any_ctx, config, roi):
    data = make_data("uint16")
    params = CONFIGS[config]
    ds = any_ctx.load("memory", data=data, sig_dims=2, **params)
    roi_arr = ROIS[roi]
    results = {cls.__name__: any_ctx.run_udf(dataset=ds, udf=cls(), roi=roi_arr)
               for cls in (ByFrame, ByTile, ByPartition)}
    frames, has = logical(data, params.get("sync_offset", 0))
    processed = has if roi_arr is None else has & roi_arr.reshape(-1)
    sel = frames[processed]
    flat = sel.reshape(len(sel), -1)
    for name, res in results.items():
        np.testing.assert_array_equal(res["sigsum"].data, sel.sum(axis=0), err_msg=name)
        np.testing.assert_array_equal(res["navsum"].raw_data, flat.sum(axis=1), err_msg=name)
        stats = np.stack([flat.sum(axis=1), flat.max(axis=1)], -1)
        np.testing.assert_array_equal(res["stats"].raw_data, stats, err_msg=name)
        np.testing.assert_array_equal(res["navsum"].valid_mask.reshape(-1), processed, err_msg=name)
        np.testing.assert_array_equal(res["nframes"].data, [processed.sum()], err_msg=name)
    ref = results["ByFrame"]
    for name in ("ByTile", "ByPartition"):
        for buf in ("sigsum", "navsum", "stats", "nframes"):
            np.testing.assert_array_equal(results[name][buf].data, ref[buf].data,
                                          err_msg=f"{name}.{buf}")
    # all three in one pass (the partition method then decides the tiling for everybody)
    together = any_ctx.run_udf(dataset=ds, udf=[ByFrame(), ByTile(), ByPartition()], roi=roi_arr)
    for res in together:
        for buf in ("sigsum", "navsum", "stats", "nframes"):
            np.testing.assert_array_equal(res[buf].data, ref[buf].data, err_msg=buf)


# == self.meta ===============================================================================

class _MetaBase(UDF):
    """Records coordinates, slice origin/extent and partition_shape; checks the rest inline.

    ``ref`` is the logical frames array (flat nav + sig, float64) to compare data against.
    """

    def __init__(self, ref=None, expect_dtype=None, processed=None, nav=NAV):
        super().__init__(ref=ref, expect_dtype=expect_dtype, processed=processed, nav=nav)

    def get_result_buffers(self):
        nav_dims = self.meta.dataset_shape.nav.dims
        return {
            "coords": self.buffer(kind="nav", extra_shape=(nav_dims,), dtype="int64"),
            "origin": self.buffer(kind="nav", dtype="int64"),
            "extent": self.buffer(kind="nav", dtype="int64"),
            "pshape": self.buffer(kind="nav", dtype="int64"),
            "hits": self.buffer(kind="sig", dtype="int64"),
        }

    def merge(self, dest, src):
        for name in ("coords", "origin", "extent", "pshape"):
            dest[name][:] = src[name]
        dest.hits[:] += src.hits

    def check_common(self, data):
        m = self.meta
        nav = m.dataset_shape.nav.to_tuple()
        assert m.dataset_shape == Shape(self.params.nav + SIG, sig_dims=2)
        assert m.dataset_dtype == np.dtype(self.params.expect_dtype)
        if self.params.processed.all():
            assert m.roi is None or m.roi.all()
        else:
            # LiberTEM's meta.roi: the data set's nav shape
            assert m.roi.shape == nav
            np.testing.assert_array_equal(m.roi.reshape(-1), self.params.processed)
        assert m.input_dtype == data.dtype
        assert isinstance(m.tiling_scheme, TilingScheme)
        assert data.shape[0] <= m.tiling_scheme.depth
        assert isinstance(m.partition_shape, Shape)
        assert m.partition_shape.sig.to_tuple() == SIG
        coords = m.coordinates
        assert coords.shape == (data.shape[0], len(nav))
        # slice (LiberTEM's coordinates): origin = rank of the first frame among the processed
        # positions (the ROI-reduced flat nav index), first extent = number of frames
        rank = np.cumsum(self.params.processed) - 1
        assert m.slice.origin[0] == rank[np.ravel_multi_index(tuple(coords[0]), nav)]
        assert m.slice.shape[0] == data.shape[0]
        # frame_index: flat positions in the full nav space
        np.testing.assert_array_equal(m.frame_index, np.ravel_multi_index(tuple(coords.T), nav))
        # sig part of slice and sig_slice agree with the data
        assert m.slice.origin[1:] == m.sig_slice.origin
        assert m.slice.shape.to_tuple()[1:] == m.sig_slice.shape.to_tuple() == data.shape[1:]
        # the data are exactly the reference frames at these coordinates and this sig part
        flat_idx = np.ravel_multi_index(tuple(coords.T), nav)
        want = self.params.ref[flat_idx][(slice(None),) + m.sig_slice.get()]
        np.testing.assert_array_equal(data, want)
        return coords


class MetaFrame(_MetaBase):
    def process_frame(self, frame):
        coords = self.check_common(frame[np.newaxis])
        assert self.meta.sig_slice.origin == (0, 0) and self.meta.sig_slice.shape == SIG
        self.results.coords[:] = coords[0]
        self.results.origin[:] = self.meta.slice.origin[0]
        self.results.extent[:] = self.meta.slice.shape[0]
        self.results.pshape[:] = self.meta.partition_shape[0]
        self.results.hits[:] += 1


class MetaTile(_MetaBase):
    def process_tile(self, tile):
        coords = self.check_common(tile)
        self.results.coords[:] = coords
        self.results.origin[:] = self.meta.slice.origin[0]
        self.results.extent[:] = self.meta.slice.shape[0]
        self.results.pshape[:] = self.meta.partition_shape[0]
        self.results.hits[:] += tile.shape[0]  # the view is the tile's sig part


class MetaPartition(_MetaBase):
    def process_partition(self, partition):
        coords = self.check_common(partition)
        assert self.meta.partition_shape.to_tuple() == partition.shape
        assert self.meta.sig_slice.shape == SIG
        self.results.coords[:] = coords
        self.results.origin[:] = self.meta.slice.origin[0]
        self.results.extent[:] = self.meta.slice.shape[0]
        self.results.pshape[:] = self.meta.partition_shape[0]
        self.results.hits[:] += partition.shape[0]


def tile_groups(ds, processed, depth):
    """Expected (first flat index, frame count) of the tile holding every processed frame."""
    first = np.zeros(NAV_SIZE, np.int64)
    count = np.zeros(NAV_SIZE, np.int64)
    pshape = np.zeros(NAV_SIZE, np.int64)
    for p in ds.get_partitions():
        sel = np.flatnonzero(processed[p.start:p.stop]) + p.start
        for k in range(0, len(sel), depth):
            chunk = sel[k:k + depth]
            first[chunk] = chunk[0]
            count[chunk] = len(chunk)
        pshape[sel] = len(sel)
    return first, count, pshape


@pytest.mark.parametrize("roi", list(ROIS), ids=list(ROIS))
@pytest.mark.parametrize("config", ["4parts", "tile-2x3x4", "tile-4x1x7", "sync+2", "sync-4"])
@pytest.mark.parametrize("cls", [MetaFrame, MetaTile, MetaPartition],
                         ids=["frame", "tile", "partition"])
def test_meta(any_ctx, cls, config, roi):
    dtype = ">u2"
    data = make_data(dtype)
    params = CONFIGS[config]
    ds = any_ctx.load("memory", data=data, sig_dims=2, **params)
    ref, has = logical(data, params.get("sync_offset", 0))
    roi_arr = ROIS[roi]
    processed = has if roi_arr is None else has & roi_arr.reshape(-1)
    res = any_ctx.run_udf(dataset=ds, udf=cls(ref=ref, expect_dtype=dtype, processed=processed),
                          roi=roi_arr)
    pos = np.flatnonzero(processed)
    np.testing.assert_array_equal(res["coords"].raw_data, np.stack(np.unravel_index(pos, NAV), -1))
    np.testing.assert_array_equal(res["coords"].data[processed.reshape(NAV)],
                                  np.stack(np.unravel_index(pos, NAV), -1))
    np.testing.assert_array_equal(res["hits"].data, np.full(SIG, processed.sum()))
    if cls is MetaFrame:
        depth = 1
    elif cls is MetaPartition:
        depth = NAV_SIZE
    else:
        depth = params["tileshape"][0] if "tileshape" in params else None
    first, count, pshape = tile_groups(ds, processed, depth or NAV_SIZE)
    np.testing.assert_array_equal(res["pshape"].raw_data, pshape[pos])
    if depth is not None:
        # meta.slice's origin is ROI-reduced: the rank of the tile's first frame
        rank = np.cumsum(processed) - 1
        np.testing.assert_array_equal(res["origin"].raw_data, rank[first[pos]])
        np.testing.assert_array_equal(res["extent"].raw_data, count[pos])


@pytest.mark.parametrize("nav", [(15,), (3, 1, 5), (5, 3)], ids=str)
@pytest.mark.parametrize("cls", [MetaFrame, MetaTile, MetaPartition],
                         ids=["frame", "tile", "partition"])
def test_meta_coordinates_nav_dims(any_ctx, cls, nav):
    data = make_data(">u2")
    ds = any_ctx.load("memory", data=data, nav_shape=nav, sig_shape=SIG, num_partitions=3,
                      tileshape=(2, 3, 4), sync_offset=1)
    ref, has = logical(data, 1)
    roi = ROIS["checker"].reshape(nav)
    processed = has & roi.reshape(-1)
    res = any_ctx.run_udf(dataset=ds, roi=roi, udf=cls(ref=ref, expect_dtype=">u2",
                                                       processed=processed, nav=nav))
    pos = np.flatnonzero(processed)
    want = np.stack(np.unravel_index(pos, nav), -1)
    assert res["coords"].data.shape == nav + (len(nav),)
    np.testing.assert_array_equal(res["coords"].raw_data, want)
    np.testing.assert_array_equal(res["coords"].data[processed.reshape(nav)], want)
    np.testing.assert_array_equal(res["hits"].data, np.full(SIG, processed.sum()))


def test_meta_roi_and_shapes_on_main(ctx):
    """get_result_buffers runs on the main process with meta set: dataset_shape, roi, dtypes."""
    seen = {}

    class Probe(UDF):
        def get_result_buffers(self):
            seen["shape"] = self.meta.dataset_shape
            seen["roi"] = None if self.meta.roi is None else self.meta.roi.copy()
            seen["input"] = self.meta.input_dtype
            seen["stored"] = self.meta.dataset_dtype
            return {"x": self.buffer(kind="nav")}

        def process_frame(self, frame):
            self.results.x[:] = 1

    ds = ctx.load("memory", data=make_data(">u2"), sig_dims=2, sync_offset=-2)
    roi = ROIS["checker"]
    ctx.run_udf(dataset=ds, udf=Probe(), roi=roi)
    assert seen["shape"] == Shape(NAV + SIG, sig_dims=2)
    assert seen["input"] == np.float32
    assert seen["stored"] == np.dtype(">u2")
    want = roi.reshape(-1).copy()
    want[:2] = False  # no frame at the first two positions
    np.testing.assert_array_equal(seen["roi"], want.reshape(NAV))


# == input dtype =============================================================================

class DtypeUDF(UDF):
    def __init__(self, native=False, expect=None, method="tile"):
        super().__init__(native=native, expect=expect, method=method)

    def get_method(self):
        return self.params.method

    def get_preferred_input_dtype(self):
        return UDF.USE_NATIVE_DTYPE if self.params.native else super().get_preferred_input_dtype()

    def get_result_buffers(self):
        return {"first": self.buffer(kind="nav", dtype="float64"),
                "dtype_ok": self.buffer(kind="nav", dtype="bool")}

    def _check(self, data):
        ok = data.dtype == np.dtype(self.params.expect) and data.dtype.isnative \
            and self.meta.input_dtype == data.dtype
        self.results.dtype_ok[:] = ok

    def process_tile(self, tile):
        self._check(tile)
        self.results.first[:] = tile.reshape(tile.shape[0], -1)[:, 0]

    def process_frame(self, frame):
        self._check(frame)
        self.results.first[:] = frame.reshape(-1)[0]


NATIVE = {d: np.dtype(d).newbyteorder("=").str for d in ALL_DTYPES}
DEFAULT = {"uint8": "float32", "uint16": "float32", ">u2": "float32", "int32": "float64",
           "float32": "float32", ">f4": "float32", "float64": "float64"}


def _dtype_data(dtype):
    # values that differ in both bytes, so that a missing byte swap shows
    rng = np.random.default_rng(3)
    hi = 250 if np.dtype(dtype).itemsize == 1 else 40000
    if np.dtype(dtype).kind == "i":
        return rng.integers(-hi, hi, size=NAV + SIG).astype(dtype)
    return rng.integers(0, hi, size=NAV + SIG).astype(dtype)


@pytest.mark.parametrize("fmt", ["memory", "raw"])
@pytest.mark.parametrize("method", ["tile", "frame"])
@pytest.mark.parametrize("native", [True, False], ids=["native", "default"])
@pytest.mark.parametrize("dtype", ALL_DTYPES)
def test_input_dtype(any_ctx, tmp_path, dtype, native, method, fmt):
    data = _dtype_data(dtype)
    if fmt == "memory":
        ds = any_ctx.load("memory", data=data, sig_dims=2, num_partitions=2)
    else:
        path = tmp_path / "d.raw"
        data.tofile(path)
        ds = any_ctx.load("raw", path=str(path), dtype=dtype, nav_shape=NAV, sig_shape=SIG,
                          num_partitions=2)
    expect = NATIVE[dtype] if native else DEFAULT[dtype]
    res = any_ctx.run_udf(dataset=ds, udf=DtypeUDF(native=native, expect=expect, method=method))
    assert res["dtype_ok"].data.all(), f"frames did not arrive as {expect}"
    np.testing.assert_array_equal(res["first"].data, data[..., 0, 0].astype(np.float64))


@pytest.mark.parametrize("method", ["tile", "frame"])
@pytest.mark.parametrize("stored", [">u2", "<u2", "float32"])
def test_input_dtype_is_per_udf(ctx, method, stored):
    """In one pass, each UDF gets its own preference promoted with the stored dtype."""
    data = _dtype_data(stored)
    ds = ctx.load("memory", data=data, sig_dims=2, num_partitions=2)
    native = np.dtype(stored).newbyteorder("=").name
    a, b, c = ctx.run_udf(dataset=ds, udf=[DtypeUDF(native=True, expect=native, method=method),
                                           DtypeUDF(native=False, expect="float32", method=method),
                                           DtypeUDF(native=True, expect=native, method="tile")])
    for r in (a, b, c):
        assert r["dtype_ok"].data.all()
        np.testing.assert_array_equal(r["first"].data, data[..., 0, 0].astype(np.float64))


def test_float64_preference(ctx):
    class F64(DtypeUDF):
        def get_preferred_input_dtype(self):
            return np.float64

    ds = ctx.load("memory", data=_dtype_data("uint16"), sig_dims=2)
    assert ctx.run_udf(dataset=ds, udf=F64(expect="float64"))["dtype_ok"].data.all()


# == tiling preferences ======================================================================

class DepthUDF(UDF):
    def __init__(self, depth=None):
        super().__init__(depth=depth)

    def get_tiling_preferences(self):
        return {"depth": self.params.depth}

    def get_result_buffers(self):
        return {"depth": self.buffer(kind="nav", dtype="int64"),
                "sigsum": self.buffer(kind="sig", dtype="float64")}

    def process_tile(self, tile):
        self.results.depth[:] = tile.shape[0]
        self.results.sigsum[:] += tile.sum(axis=0)

    def merge(self, dest, src):
        dest.depth[:] = src.depth
        dest.sigsum[:] += src.sigsum


@pytest.mark.parametrize("fmt", ["memory", "raw"])
@pytest.mark.parametrize("depth", [1, 2, 4, 7, 100])
def test_tiling_depth_is_honoured(ctx, tmp_path, depth, fmt):
    data = make_data("uint16")
    if fmt == "memory":
        ds = ctx.load("memory", data=data, sig_dims=2, num_partitions=2)
    else:
        path = tmp_path / "d.raw"
        data.tofile(path)
        ds = ctx.load("raw", path=str(path), dtype="uint16", nav_shape=NAV, sig_shape=SIG,
                      num_partitions=2)
    res = ctx.run_udf(dataset=ds, udf=DepthUDF(depth=depth))
    got = res["depth"].raw_data
    assert got.max() <= depth
    # the smallest request wins, capped at the partition size (7 and 8 frames here)
    assert got.max() == min(depth, 8)
    np.testing.assert_array_equal(res["sigsum"].data, data.reshape(-1, *SIG).sum(axis=0))


def test_smallest_depth_request_wins(ctx):
    ds = ctx.load("memory", data=make_data(), sig_dims=2, num_partitions=1)
    a, b = ctx.run_udf(dataset=ds, udf=[DepthUDF(depth=5), DepthUDF(depth=3)])
    assert a["depth"].raw_data.max() == 3 and b["depth"].raw_data.max() == 3


# == aux data ================================================================================

class AuxUDF(UDF):
    """Copies the aux data it sees into nav buffers (one with extra_shape, one without)."""

    def __init__(self, vec=None, scalar=None, method="frame"):
        super().__init__(vec=vec, scalar=scalar, method=method)

    def get_method(self):
        return self.params.method

    def get_result_buffers(self):
        return {"vec_out": self.buffer(kind="nav", extra_shape=(2,), dtype="float64"),
                "scalar_out": self.buffer(kind="nav", dtype="float64"),
                "first": self.buffer(kind="nav", dtype="float64")}

    def _copy(self, data):
        assert self.params.vec.shape == self.results.vec_out.shape
        assert self.params.scalar.shape == self.results.scalar_out.shape
        self.results.vec_out[:] = self.params.vec
        self.results.scalar_out[:] = self.params.scalar
        if data.ndim == 2:  # a frame
            self.results.first[:] = data[0, 0]
        elif self.meta.sig_slice.origin == (0, 0):  # the tile holding pixel (0, 0)
            self.results.first[:] = data[:, 0, 0]

    def process_frame(self, frame):
        self._copy(frame)

    def process_tile(self, tile):
        self._copy(tile)

    def process_partition(self, partition):
        self._copy(partition)


@pytest.mark.parametrize("flat", [False, True], ids=["navshaped", "flat"])
@pytest.mark.parametrize("roi", list(ROIS), ids=list(ROIS))
@pytest.mark.parametrize("method", ["frame", "tile", "partition"])
def test_aux_data(any_ctx, method, roi, flat):
    data = make_data()
    ds = any_ctx.load("memory", data=data, sig_dims=2, num_partitions=3, tileshape=(2, 3, 7),
                      sync_offset=-1)
    vec = np.arange(NAV_SIZE * 2, dtype=np.float64).reshape(NAV + (2,)) + 100
    scalar = np.arange(NAV_SIZE, dtype=np.int32).reshape(NAV) * 3
    if flat:
        vec, scalar = vec.reshape(NAV_SIZE, 2), scalar.reshape(-1)
    udf = AuxUDF(vec=UDF.aux_data(vec, kind="nav", extra_shape=(2,)),
                 scalar=UDF.aux_data(scalar, kind="nav", dtype="float32"), method=method)
    roi_arr = ROIS[roi]
    res = any_ctx.run_udf(dataset=ds, udf=udf, roi=roi_arr)
    _, has = logical(data, -1)
    processed = has if roi_arr is None else has & roi_arr.reshape(-1)
    np.testing.assert_array_equal(res["vec_out"].raw_data, vec.reshape(-1, 2)[processed])
    np.testing.assert_array_equal(res["scalar_out"].raw_data, scalar.reshape(-1)[processed])
    # the aux rows belong to the frames they arrive with
    np.testing.assert_array_equal(res["first"].raw_data,
                                  data.reshape(-1, prod(SIG))[np.flatnonzero(processed) - 1, 0])


@pytest.mark.parametrize("shape", [(2, NAV_SIZE), NAV[::-1] + (2,), (3, 10)])
def test_aux_data_wrong_shape_same_size_is_an_error(ctx, shape):
    """The documented shapes are nav_shape + extra_shape or (nav_size, *extra_shape); a
    transposed array has the right size but would silently pair values with wrong frames."""
    from udfkit.errors import UDFError

    ds = ctx.load("memory", data=make_data(), sig_dims=2)
    udf = AuxUDF(vec=UDF.aux_data(np.zeros(shape), extra_shape=(2,)),
                 scalar=UDF.aux_data(np.zeros(NAV_SIZE)))
    with pytest.raises(UDFError, match="aux_data"):
        ctx.run_udf(dataset=ds, udf=udf)


def test_aux_data_wrong_size_is_an_error(ctx):
    from udfkit.errors import UDFError

    ds = ctx.load("memory", data=make_data(), sig_dims=2)
    udf = AuxUDF(vec=UDF.aux_data(np.zeros((NAV_SIZE - 1, 2)), extra_shape=(2,)),
                 scalar=UDF.aux_data(np.zeros(NAV_SIZE)))
    with pytest.raises(UDFError, match="aux_data"):
        ctx.run_udf(dataset=ds, udf=udf)


# == buffer uses =============================================================================

class UsesUDF(UDF):
    def get_result_buffers(self):
        return {
            "navsum": self.buffer(kind="nav", dtype="float64"),
            "sigsum": self.buffer(kind="sig", dtype="float64"),
            "scratch": self.buffer(kind="sig", dtype="float64", use="private"),
            "navscratch": self.buffer(kind="nav", dtype="float64", use="private"),
            "doubled": self.buffer(kind="nav", dtype="float64", use="result_only"),
            "mean": self.buffer(kind="sig", dtype="float64", use="result_only"),
            "total": self.buffer(kind="single", dtype="float64", use="result_only"),
        }

    def process_frame(self, frame):
        self.results.scratch[:] = frame  # private scratch, used for the sums
        self.results.navscratch[:] = self.results.scratch.sum()
        self.results.navsum[:] = self.results.navscratch
        self.results.sigsum[:] += self.results.scratch

    def merge(self, dest, src):
        # private buffers are merged (LiberTEM's rule), result_only ones do not exist yet
        assert "scratch" in src and "navscratch" in src
        assert "doubled" not in src and "mean" not in src
        dest.navsum[:] = src.navsum
        dest.navscratch[:] = src.navscratch
        dest.sigsum[:] += src.sigsum
        dest.scratch[:] += src.scratch

    def get_results(self):
        n = len(self.results.navsum)
        # merged private buffers are readable here
        np.testing.assert_array_equal(self.results.navscratch, self.results.navsum)
        return {"navsum": self.results.navsum, "sigsum": self.results.sigsum,
                "doubled": 2 * self.results.navsum,
                "mean": self.results.sigsum / n,
                "total": np.array([self.results.navsum.sum()])}


@pytest.mark.parametrize("roi", list(ROIS), ids=list(ROIS))
def test_private_and_result_only_buffers(any_ctx, roi):
    data = make_data()
    ds = any_ctx.load("memory", data=data, sig_dims=2, num_partitions=3)
    roi_arr = ROIS[roi]
    res = any_ctx.run_udf(dataset=ds, udf=UsesUDF(), roi=roi_arr)
    assert set(res) == {"navsum", "sigsum", "doubled", "mean", "total"}
    frames = data.reshape(-1, *SIG).astype(np.float64)
    processed = np.ones(NAV_SIZE, bool) if roi_arr is None else roi_arr.reshape(-1)
    sums = frames.reshape(NAV_SIZE, -1).sum(axis=1)
    np.testing.assert_array_equal(res["doubled"].raw_data, 2 * sums[processed])
    assert res["doubled"].data.shape == NAV
    np.testing.assert_array_equal(res["doubled"].valid_mask.reshape(-1), processed)
    assert np.isnan(res["doubled"].data.reshape(-1)[~processed]).all()
    np.testing.assert_allclose(res["mean"].data, frames[processed].mean(axis=0))
    assert res["mean"].data.shape == SIG
    np.testing.assert_allclose(res["total"].data, [sums[processed].sum()])


class PrivateDefaultResults(UDF):
    """Private buffers and the default get_results ("all public buffers")."""

    def get_result_buffers(self):
        return {"navsum": self.buffer(kind="nav", dtype="float64"),
                "tmp": self.buffer(kind="nav", dtype="float64", use="private")}

    def process_frame(self, frame):
        self.results.tmp[:] = frame.sum()
        self.results.navsum[:] = self.results.tmp


def test_private_buffer_with_default_get_results(ctx):
    data = make_data()
    ds = ctx.load("memory", data=data, sig_dims=2)
    res = ctx.run_udf(dataset=ds, udf=PrivateDefaultResults())
    assert set(res) == {"navsum"}
    np.testing.assert_array_equal(res["navsum"].data, data.reshape(NAV + (-1,)).sum(-1))


def test_get_results_may_return_full_nav_shape(ctx):
    class Full(UDF):
        def get_result_buffers(self):
            return {"x": self.buffer(kind="nav", dtype="float64"),
                    "y": self.buffer(kind="nav", dtype="float64", use="result_only")}

        def process_frame(self, frame):
            self.results.x[:] = frame.sum()

        def get_results(self):
            return {"x": self.results.x, "y": self.with_mask(self.results.x * 10).reshape(NAV)}

    data = make_data()
    ds = ctx.load("memory", data=data, sig_dims=2, num_partitions=2)
    roi = ROIS["checker"]
    res = ctx.run_udf(dataset=ds, udf=Full(), roi=roi)
    np.testing.assert_array_equal(res["y"].raw_data, 10 * res["x"].raw_data)
    np.testing.assert_array_equal(res["y"].valid_mask, roi)


class WithMask(UDF):
    def get_result_buffers(self):
        return {"x": self.buffer(kind="nav", dtype="float64"),
                "y": self.buffer(kind="nav", dtype="float64", use="result_only")}

    def process_frame(self, frame):
        self.results.x[:] = frame.sum()

    def get_results(self):
        # documented: "for use in get_results", returns nav_size entries
        return {"x": self.results.x, "y": self.with_mask(self.results.x * 10)}


@pytest.mark.parametrize("nav, sync_offset, use_roi", [
    pytest.param((15,), 0, True, id="1d-roi"),
    pytest.param((15,), -2, False, id="1d-missing"),
    pytest.param(NAV, 0, False, id="2d-noroi"),
    pytest.param(NAV, 0, True, id="2d-roi"),
    pytest.param(NAV, -2, False, id="2d-missing"),
])
def test_with_mask_in_get_results(ctx, nav, sync_offset, use_roi):
    data = make_data()
    ds = ctx.load("memory", data=data, nav_shape=nav, sig_shape=SIG, sync_offset=sync_offset,
                  num_partitions=2)
    roi = ROIS["checker"].reshape(nav) if use_roi else None
    res = ctx.run_udf(dataset=ds, udf=WithMask(), roi=roi)
    np.testing.assert_array_equal(res["y"].raw_data, 10 * res["x"].raw_data)
    np.testing.assert_array_equal(res["y"].valid_mask, res["x"].valid_mask)
    assert res["y"].data.shape == nav


def test_udf_instance_can_run_again(ctx):
    """The same instance runs twice with different ROIs; earlier results stay as they were."""
    data = make_data()
    ds = ctx.load("memory", data=data, sig_dims=2, num_partitions=3)
    vec = np.arange(NAV_SIZE * 2, dtype=np.float64).reshape(NAV + (2,))
    udf = AuxUDF(vec=UDF.aux_data(vec, extra_shape=(2,)), scalar=UDF.aux_data(np.zeros(NAV)))
    roi = ROIS["checker"]
    r1 = ctx.run_udf(dataset=ds, udf=udf, roi=roi)
    saved = r1["vec_out"].data.copy()
    r2 = ctx.run_udf(dataset=ds, udf=udf)
    r3 = ctx.run_udf(dataset=ds, udf=udf, roi=~roi)
    np.testing.assert_array_equal(r1["vec_out"].data, saved)
    np.testing.assert_array_equal(r2["vec_out"].data, vec)
    np.testing.assert_array_equal(r3["vec_out"].raw_data, vec[~roi])
    s1 = ctx.run_udf(dataset=ds, udf=ByTile())
    before = s1["sigsum"].data.copy()
    ctx.run_udf(dataset=ds, udf=ByTile())
    np.testing.assert_array_equal(s1["sigsum"].data, before)


# == hooks ===================================================================================

class MaxUDF(UDF):
    """Maximum over frames: the sig buffer must start at -inf, on the main process too."""

    def get_result_buffers(self):
        return {"maximum": self.buffer(kind="sig", dtype="float64")}

    def preprocess(self):
        self.results.maximum[:] = -np.inf

    def process_tile(self, tile):
        np.maximum(self.results.maximum, tile.max(axis=0), out=self.results.maximum)

    def merge(self, dest, src):
        np.maximum(dest.maximum, src.maximum, out=dest.maximum)


@pytest.mark.parametrize("num_partitions", [1, 3, 15])
def test_preprocess_initialises_main_and_partition_buffers(any_ctx, num_partitions):
    data = -1 - make_data("int32")  # all negative: a zero-initialised maximum would show
    ds = any_ctx.load("memory", data=data, sig_dims=2, num_partitions=num_partitions,
                      tileshape=(2, 3, 3))
    res = any_ctx.run_udf(dataset=ds, udf=MaxUDF())
    np.testing.assert_array_equal(res["maximum"].data, data.reshape(-1, *SIG).max(axis=0))


def test_preprocess_with_roi_skipping_partitions(ctx):
    """Partitions without processed frames contribute nothing (not a zero maximum)."""
    data = -1 - make_data("int32")
    ds = ctx.load("memory", data=data, sig_dims=2, num_partitions=5)
    roi = np.zeros(NAV, bool)
    roi[0, 1] = True
    res = ctx.run_udf(dataset=ds, udf=MaxUDF(), roi=roi)
    np.testing.assert_array_equal(res["maximum"].data, data[0, 1])


class PostUDF(UDF):
    def get_result_buffers(self):
        return {"navsum": self.buffer(kind="nav", dtype="float64"),
                "post": self.buffer(kind="nav", dtype="float64")}

    def process_tile(self, tile):
        self.results.navsum[:] += tile.reshape(tile.shape[0], -1).sum(axis=1)

    def postprocess(self):
        # runs with the whole partition's buffers
        assert self.results.post.shape == (self.meta.partition_shape[0],)
        self.results.post[:] = self.results.navsum * 2 + 1


def test_postprocess(any_ctx):
    data = make_data()
    ds = any_ctx.load("memory", data=data, sig_dims=2, num_partitions=4, tileshape=(2, 2, 7))
    res = any_ctx.run_udf(dataset=ds, udf=PostUDF(), roi=ROIS["checker"])
    np.testing.assert_array_equal(res["post"].raw_data, res["navsum"].raw_data * 2 + 1)
    want = data.reshape(NAV_SIZE, -1).sum(axis=1)[ROIS["checker"].reshape(-1)]
    np.testing.assert_array_equal(res["navsum"].raw_data, want)


class TaskDataUDF(UDF):
    def __init__(self, factor=1.0):
        super().__init__(factor=factor)

    def get_task_data(self):
        # meta is available here (on the worker)
        return {"weights": np.full(self.meta.dataset_shape.sig.to_tuple(), self.params.factor)}

    def get_result_buffers(self):
        return {"weighted": self.buffer(kind="nav", dtype="float64")}

    def process_frame(self, frame):
        self.results.weighted[:] = (frame * self.task_data.weights).sum()


def test_task_data(any_ctx):
    data = make_data()
    ds = any_ctx.load("memory", data=data, sig_dims=2, num_partitions=3)
    res = any_ctx.run_udf(dataset=ds, udf=TaskDataUDF(factor=2.5))
    np.testing.assert_allclose(res["weighted"].data, data.reshape(NAV + (-1,)).sum(axis=-1) * 2.5)


# module-level log: worker-side hooks run in this process with the inline executor, and
# cloudpickle pickles the classes of this importable module by reference
HOOK_LOG: list = []
#: the same as (thread id, hook): with the threads executor partitions run side by side
HOOK_EVENTS: list = []


def _log(hook):
    HOOK_LOG.append(hook)
    HOOK_EVENTS.append((threading.get_ident(), hook))


class HookUDF(UDF):
    def __init__(self, fail_at=None):
        super().__init__(fail_at=fail_at)

    def get_result_buffers(self):
        return {"x": self.buffer(kind="nav", dtype="float64")}

    def get_task_data(self):
        _log("get_task_data")
        return {}

    def preprocess(self):
        _log("preprocess")

    def process_frame(self, frame):
        _log("process")
        if self.params.fail_at is not None and self.meta.slice.origin[0] == self.params.fail_at:
            raise KeyError("boom")
        self.results.x[:] = frame.sum()

    def postprocess(self):
        _log("postprocess")

    def cleanup(self):
        _log("cleanup")


@pytest.mark.parametrize("num_partitions", [1, 3])
def test_hook_order_and_cleanup(any_ctx, num_partitions):
    skip_if_in_other_processes(any_ctx)
    HOOK_EVENTS.clear()
    ds = any_ctx.load("memory", data=make_data(), sig_dims=2, num_partitions=num_partitions)
    any_ctx.run_udf(dataset=ds, udf=HookUDF())
    events = list(HOOK_EVENTS)
    assert events[0][1] == "preprocess", "preprocess runs on the main process first"
    # a thread runs one partition at a time: split each thread's hooks into partitions
    by_thread = {}
    for thread, hook in events[1:]:
        by_thread.setdefault(thread, []).append(hook)
    chunks = []
    for hooks in by_thread.values():
        cur = []
        for hook in hooks:
            cur.append(hook)
            if hook == "cleanup":
                chunks.append(cur)
                cur = []
        assert not cur
    assert len(chunks) == num_partitions
    # each partition: task data and preprocess before processing, postprocess then cleanup last
    for chunk in chunks:
        assert set(chunk[:2]) == {"get_task_data", "preprocess"}
        assert chunk[-2:] == ["postprocess", "cleanup"]
        assert set(chunk[2:-2]) == {"process"}
    assert sum(c.count("process") for c in chunks) == NAV_SIZE


def test_cleanup_runs_when_process_raises(ctx):
    HOOK_LOG.clear()
    ds = ctx.load("memory", data=make_data(), sig_dims=2, num_partitions=1)
    with pytest.raises(KeyError, match="boom"):
        ctx.run_udf(dataset=ds, udf=HookUDF(fail_at=4))
    assert HOOK_LOG[-1] == "cleanup"
    assert HOOK_LOG.count("process") == 5


# == run_udf_iter ============================================================================

class CountingSum(UDF):
    def get_result_buffers(self):
        return {"navsum": self.buffer(kind="nav", dtype="float64"),
                "sigsum": self.buffer(kind="sig", dtype="float64")}

    def process_frame(self, frame):
        HOOK_LOG.append("process")
        self.results.navsum[:] = frame.sum()
        self.results.sigsum[:] += frame

    def merge(self, dest, src):
        dest.navsum[:] = src.navsum
        dest.sigsum[:] += src.sigsum


@pytest.mark.parametrize("roi", ["noroi", "checker"])
def test_run_udf_iter(any_ctx, roi):
    data = make_data()
    ds = any_ctx.load("memory", data=data, sig_dims=2, num_partitions=4)
    roi_arr = ROIS[roi]
    final = any_ctx.run_udf(dataset=ds, udf=CountingSum(), roi=roi_arr)
    parts = list(any_ctx.run_udf_iter(dataset=ds, udf=CountingSum(), roi=roi_arr))
    assert len(parts) == 4  # three partial results, then the complete one
    assert [p.complete for p in parts] == [False, False, False, True]
    processed = np.ones(NAV, bool) if roi_arr is None else roi_arr
    prev = np.zeros(NAV, bool)
    for p in parts:
        (res,) = p.buffers
        valid = res["navsum"].valid_mask
        assert (valid & ~processed).sum() == 0
        assert (prev & ~valid).sum() == 0 and valid.sum() > prev.sum(), "valid_mask must grow"
        np.testing.assert_array_equal(p.damage, valid)
        assert p.frames_done == valid.sum() and p.frames_total == processed.sum()
        # what is valid already holds the final value; the rest is NaN
        np.testing.assert_array_equal(res["navsum"].data[valid], final["navsum"].data[valid])
        assert np.isnan(res["navsum"].data[~valid]).all()
        prev = valid
    np.testing.assert_array_equal(prev, processed)
    last = parts[-1].buffers[0]
    for name in ("navsum", "sigsum"):
        np.testing.assert_array_equal(last[name].data, final[name].data)
        np.testing.assert_array_equal(last[name].valid_mask, final[name].valid_mask)


def test_run_udf_iter_partial_results_are_snapshots(ctx):
    """A partial result kept by the caller (e.g. list(...)) still shows its own state:
    its sig sum covers exactly the frames in its damage / frames_done."""
    data = make_data()
    ds = ctx.load("memory", data=data, sig_dims=2, num_partitions=4)
    parts = list(ctx.run_udf_iter(dataset=ds, udf=CountingSum()))
    frames = data.reshape(NAV_SIZE, *SIG).astype(np.float64)
    for p in parts:
        (res,) = p.buffers
        done = p.damage.reshape(-1)
        assert done.sum() == p.frames_done
        np.testing.assert_array_equal(res["sigsum"].data, frames[done].sum(axis=0),
                                      err_msg=f"after {p.frames_done} frames")


def test_run_udf_iter_list_of_udfs(ctx):
    ds = ctx.load("memory", data=make_data(), sig_dims=2, num_partitions=2)
    parts = list(ctx.run_udf_iter(dataset=ds, udf=[CountingSum(), ByTile()]))
    assert parts[-1].complete and len(parts[-1].buffers) == 2
    np.testing.assert_array_equal(parts[-1].buffers[0]["navsum"].data,
                                  parts[-1].buffers[1]["navsum"].data)


def test_run_udf_iter_close_early(any_ctx):
    skip_if_in_other_processes(any_ctx)
    HOOK_LOG.clear()
    data = make_data()
    ds = any_ctx.load("memory", data=data, sig_dims=2, num_partitions=5)  # 3 frames each
    gen = any_ctx.run_udf_iter(dataset=ds, udf=CountingSum())
    for p in gen:
        assert not p.complete
        break
    gen.close()
    # the remaining partitions were not run: inline runs one at a time; threads had at most
    # max_in_flight (4) partitions of 3 frames submitted, and submit no more after the close
    if isinstance(any_ctx.executor, ThreadsExecutor):
        assert 3 <= HOOK_LOG.count("process") <= 12
    else:
        assert HOOK_LOG.count("process") == 3
    # and the Context still works
    res = any_ctx.run_udf(dataset=ds, udf=CountingSum())
    np.testing.assert_array_equal(res["navsum"].data, data.reshape(NAV + (-1,)).sum(axis=-1))


# == Context.map and result objects ==========================================================

@pytest.mark.parametrize("roi", ["noroi", "checker"])
def test_map_scalar(any_ctx, roi):
    data = make_data()
    ds = any_ctx.load("memory", data=data, sig_dims=2, num_partitions=2)
    roi_arr = ROIS[roi]
    res = any_ctx.map(dataset=ds, f=lambda frame: frame.max() - frame.min(), roi=roi_arr)
    flat = data.reshape(NAV + (-1,)).astype(np.float32)
    want = flat.max(axis=-1) - flat.min(axis=-1)
    if roi_arr is None:
        np.testing.assert_array_equal(res.data, want)
    else:
        np.testing.assert_array_equal(res.data[roi_arr], want[roi_arr])
        assert np.isnan(res.data[~roi_arr]).all()


def test_map_array_output(ctx):
    data = make_data()
    ds = ctx.load("memory", data=data, sig_dims=2)
    res = ctx.map(dataset=ds, f=lambda frame: frame.sum(axis=0))
    assert res.data.shape == NAV + (SIG[1],)
    np.testing.assert_array_equal(res.data, data.sum(axis=2))


def test_masked_data_and_array_protocol(ctx):
    data = make_data()
    ds = ctx.load("memory", data=data, sig_dims=2, num_partitions=2)
    roi = ROIS["checker"]
    res = ctx.run_udf(dataset=ds, udf=ByFrame(), roi=roi)
    nav = res["navsum"]
    want = data.reshape(NAV + (-1,)).sum(axis=-1).astype(np.float64)

    md = nav.masked_data
    assert isinstance(md, np.ma.MaskedArray)
    np.testing.assert_array_equal(md.mask, ~roi)
    np.testing.assert_array_equal(md.compressed(), want[roi])
    assert md.sum() == want[roi].sum()

    arr = np.asarray(nav)
    assert arr.shape == NAV
    np.testing.assert_array_equal(arr[roi], want[roi])
    assert np.isnan(arr[~roi]).all()
    as32 = np.asarray(nav, dtype=np.float32)
    assert as32.dtype == np.float32
    np.testing.assert_array_equal(as32[roi], want[roi].astype(np.float32))

    stats = res["stats"]
    assert stats.masked_data.shape == NAV + (2,)
    np.testing.assert_array_equal(stats.masked_data.mask, ~np.repeat(roi[..., None], 2, -1))
    sig = np.asarray(res["sigsum"])
    np.testing.assert_array_equal(sig, data[roi].sum(axis=0))
    assert not res["sigsum"].masked_data.mask.any()


def test_integer_nav_result_fill_is_zero(ctx):
    class IntUDF(UDF):
        def get_result_buffers(self):
            return {"n": self.buffer(kind="nav", dtype="int32"),
                    "b": self.buffer(kind="nav", dtype="bool")}

        def process_frame(self, frame):
            self.results.n[:] = 7
            self.results.b[:] = True

    ds = ctx.load("memory", data=make_data(), sig_dims=2)
    roi = ROIS["checker"]
    res = ctx.run_udf(dataset=ds, udf=IntUDF(), roi=roi)
    np.testing.assert_array_equal(res["n"].data, np.where(roi, 7, 0))
    np.testing.assert_array_equal(res["b"].data, roi)
    np.testing.assert_array_equal(res["n"].valid_mask, roi)
