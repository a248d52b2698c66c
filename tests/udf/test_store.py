"""Results on disk (``run_udf(out=...)``): disk results equal in-memory results.

Whatever the executor, partitioning, nav dimensions, missing frames, ROI and store format
(zarr, HDF5, npy directory), every nav result read back from the store equals the in-memory
run's result (NaN / 0 where nothing was processed) and has the same ``valid_mask``; sig and
single results are equal and saved in the store too. A lost or misplaced write of any
partition's box fails the comparison.
"""

from __future__ import annotations

import json

import h5py
import numpy as np
import pytest
import zarr
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from udfkit import UDF, ResultStore
from udfkit.testing import ALL_EXECUTORS, SharedContexts
from udfkit.testing.profiles import examples
from udfkit.testing.strategies import cases, load
from udfkit.udf import MapUDF, SumSigUDF, SumUDF
from udfkit.udf.store import DiskBufferResult

SETTINGS = dict(deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                        HealthCheck.function_scoped_fixture,
                                                        HealthCheck.data_too_large])
shared_context = SharedContexts(ALL_EXECUTORS)
_close_shared_contexts = shared_context.closing_fixture()

FORMATS = {"zarr": "r.zarr", "hdf5": "r.h5", "npy": "rdir"}
#: fewer examples where a run costs more (worker processes, a cluster)
EXAMPLES = {"inline": 6, "inline-debug": 3, "threads": 4, "processes": 2, "dask": 1}


class VecUDF(UDF):
    """A nav buffer with an extra shape and an int dtype, and a single buffer (a frame count)."""

    def get_result_buffers(self):
        return {"vec": self.buffer(kind="nav", extra_shape=(3,), dtype="int64"),
                "count": self.buffer(kind="single", dtype="int64")}

    def process_frame(self, frame):
        self.results.vec[:] = [round(float(frame.sum())), frame.size, round(float(frame.max()))]
        self.results.count[:] += 1

    def merge(self, dest, src):
        dest.vec[:] = src.vec
        dest.count[:] += src.count


def map_f(frame):
    return frame.reshape(-1)[:2] * 2


def udfs():
    return [SumSigUDF(), SumUDF(), MapUDF(f=map_f), VecUDF()]


def assert_same(disk, mem):
    assert len(disk) == len(mem)
    for d, m in zip(disk, mem):
        assert set(d) == set(m)
        for name in m:
            if m[name].kind == "nav":
                assert isinstance(d[name], DiskBufferResult)
                got = np.asarray(d[name].data[...])
            else:
                got = d[name].data
            np.testing.assert_array_equal(got, m[name].data, err_msg=name)
            np.testing.assert_array_equal(d[name].valid_mask, m[name].valid_mask, err_msg=name)


def _check_disk_equals_memory(ctx, tmp_path_factory, n_examples):
    @settings(max_examples=n_examples, **SETTINGS)
    @given(case=cases(dtypes=["uint16", "float32", ">i4"], formats=["memory", "raw"],
                      max_nav=7, max_sig=4, max_sig_dims=2),
           fmt=st.sampled_from(list(FORMATS)))
    def check(case, fmt):
        tmp = tmp_path_factory.mktemp("store")
        ds = load(ctx, case, tmp)
        mem = ctx.run_udf(ds, udfs(), roi=case.roi)
        out = tmp / FORMATS[fmt]
        disk = ctx.run_udf(ds, udfs(), roi=case.roi, out=out)
        assert_same(disk, mem)
        # sig and single results are in the store as well, under the UDFs' groups
        if fmt == "zarr":
            root = zarr.open_group(str(out), mode="r")
            assert root.attrs["udfkit"]["complete"] is True
            np.testing.assert_array_equal(root["SumUDF/intensity"][...], mem[1]["intensity"].data)
            np.testing.assert_array_equal(root["VecUDF/count"][...], mem[3]["count"].data)
        elif fmt == "hdf5":
            with h5py.File(out, "r") as f:
                assert json.loads(f.attrs["udfkit"])["complete"] is True
                np.testing.assert_array_equal(f["SumUDF/intensity"][...], mem[1]["intensity"].data)
        else:
            with open(out / "udfkit.json") as f:
                assert json.load(f)["complete"] is True
            np.testing.assert_array_equal(np.load(out / "SumUDF" / "intensity.npy"),
                                          mem[1]["intensity"].data)

    check()


@pytest.mark.parametrize("executor", list(ALL_EXECUTORS))
def test_disk_equals_memory(executor, tmp_path_factory):
    _check_disk_equals_memory(shared_context(executor), tmp_path_factory,
                              examples(EXAMPLES[executor]))


@pytest.mark.slow
@pytest.mark.parametrize("executor", list(ALL_EXECUTORS))
def test_disk_equals_memory_many(executor, tmp_path_factory):
    _check_disk_equals_memory(shared_context(executor), tmp_path_factory,
                              examples(10 * EXAMPLES[executor]))


@pytest.mark.parametrize("fmt", list(FORMATS))
def test_partial_results_read_the_store(fmt, tmp_path):
    ctx = shared_context("inline")
    data = np.arange(6 * 5 * 4, dtype="float32").reshape(6, 5, 4)
    ds = ctx.load("memory", data=data, num_partitions=3, sig_dims=1)
    parts = list(ctx.run_udf_iter(ds, SumSigUDF(), out=tmp_path / FORMATS[fmt]))
    assert [p.complete for p in parts] == [False, False, True]
    first = parts[0].buffers[0]["intensity"]
    assert first.valid_mask.sum() == 10
    np.testing.assert_array_equal(np.asarray(parts[-1].buffers[0]["intensity"].data[...]),
                                  data.sum(axis=-1))


@pytest.mark.parametrize("compression", ["zarr:zstd", "zarr:blosc", "hdf5:gzip", "hdf5:lzf"])
def test_compressed_stores(compression, tmp_path):
    fmt, comp = compression.split(":")
    ctx = shared_context("inline")
    data = np.random.default_rng(1).integers(0, 100, (4, 6, 8, 8)).astype("uint16")
    ds = ctx.load("memory", data=data, num_partitions=3)
    out = tmp_path / FORMATS[fmt]
    res = ctx.run_udf(ds, MapUDF(f=lambda f: f[::2, ::2]), out=ResultStore(out, compression=comp))
    np.testing.assert_array_equal(np.asarray(res["result"].data[...]),
                                  data[:, :, ::2, ::2].astype("float32"))


@st.composite
def flat_ranges(draw):
    shape = tuple(draw(st.lists(st.integers(1, 5), min_size=1, max_size=4)))
    n = int(np.prod(shape))
    a = draw(st.integers(0, n))
    return shape, a, draw(st.integers(a, n))


@settings(max_examples=examples(20), deadline=None)
@given(flat_ranges())
def test_flat_boxes_cover_the_range_once(args):
    from udfkit.udf.store._layout import flat_boxes

    shape, a, b = args
    seen = np.zeros(shape, int)
    for offset, slices in flat_boxes(shape, a, b):
        box = seen[slices]
        flat = np.arange(box.size) + offset + a + 1
        assert (box == 0).all()
        seen[slices] = flat.reshape(box.shape)
    want = np.zeros(int(np.prod(shape)), int)
    want[a:b] = np.arange(a, b) + 1
    np.testing.assert_array_equal(seen.reshape(-1), want)


def bin2(frame):
    h, w = frame.shape
    return frame.reshape(h // 2, 2, w // 2, 2).sum(axis=(1, 3))


@pytest.mark.parametrize("fmt", list(FORMATS))
def test_data_set_out_loads_again(fmt, tmp_path):
    """A frame per position (binning by 2) is a new data set: ``ctx.load`` opens it."""
    ctx = shared_context("inline")
    data = np.random.default_rng(3).integers(0, 50, (3, 5, 8, 6)).astype("uint16")
    ds = ctx.load("memory", data=data, num_partitions=4)
    out = tmp_path / FORMATS[fmt]
    res = ctx.map(ds, bin2, out=out)
    want = data.reshape(3, 5, 4, 2, 3, 2).sum(axis=(3, 5)).astype("float32")
    np.testing.assert_array_equal(np.asarray(res.data[...]), want)
    path = out / "result.npy" if fmt == "npy" else out
    binned = ctx.load("auto", path=path)
    assert binned.shape.to_tuple() == (3, 5, 4, 3) and binned.shape.sig_dims == 2
    np.testing.assert_array_equal(ctx.run_udf(binned, SumUDF())["intensity"].data,
                                  want.sum(axis=(0, 1)))


@pytest.mark.parametrize("fmt", list(FORMATS))
def test_unfinished_store_is_not_loaded(fmt, tmp_path):
    from udfkit.errors import DataSetError

    ctx = shared_context("inline")
    ds = ctx.load("memory", data=np.ones((4, 4, 4, 4), "float32"), num_partitions=4)
    out = tmp_path / FORMATS[fmt]
    it = ctx.run_udf_iter(ds, MapUDF(f=bin2), out=out)
    next(it)
    it.close()
    path = out / "result.npy" if fmt == "npy" else out
    with pytest.raises(DataSetError, match="has not finished.*resume=True"):
        ctx.load("auto", path=path)


def test_progress_reports_written_bytes(tmp_path, capsys):
    class Reporter:
        def __init__(self):
            self.frames = 0
            self.bytes = []

        def start(self, total):
            self.total = total

        def advance(self, frames):
            self.frames += frames

        def written(self, nbytes):
            self.bytes.append(nbytes)

        def close(self):
            pass

    ctx = shared_context("inline")
    ds = ctx.load("memory", data=np.ones((4, 8, 4, 4), "float32"), num_partitions=4)
    rep = Reporter()
    ctx.run_udf(ds, MapUDF(f=lambda f: f), out=tmp_path / "r.zarr", progress=rep)
    assert rep.frames == 32
    assert rep.bytes == sorted(rep.bytes) and rep.bytes[-1] == 32 * 16 * 4
    ctx.run_udf(ds, MapUDF(f=lambda f: f), out=tmp_path / "s.zarr", progress=True)
    assert "2.0 KiB written" in capsys.readouterr().err
