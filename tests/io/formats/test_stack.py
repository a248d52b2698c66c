"""The stack format: members of several formats read as one data set, without copying."""

import os

import dask.array as da
import h5py
import numpy as np
import pytest

from udfkit.errors import DataSetError, DataSetFileNotFoundError
from udfkit.io.formats.stack import StackDataSet, StackPartition
from udfkit.testing import DataSetTests
from udfkit.testing.contexts import ALL_EXECUTORS, SharedContexts
from udfkit.udf import SumSigUDF, SumUDF

shared = SharedContexts(ALL_EXECUTORS)
_close_contexts = shared.closing_fixture()

KINDS = ("raw", "npy", "memory", "dask", "hdf5")


def member(kind, tmp_path, frames, i):
    """Load parameters of ``frames`` (``(n, *sig)``) written as one member of ``kind``."""
    path = os.path.join(tmp_path, f"part{i}")
    if kind == "raw":
        frames.tofile(path + ".raw")
        return {"filetype": "raw", "path": path + ".raw", "dtype": frames.dtype.str,
                "nav_shape": frames.shape[:1], "sig_shape": frames.shape[1:]}
    if kind == "npy":
        np.save(path + ".npy", frames)
        return {"filetype": "npy", "path": path + ".npy", "sig_dims": frames.ndim - 1}
    if kind == "memory":
        return {"filetype": "memory", "data": frames, "sig_dims": frames.ndim - 1}
    if kind == "dask":
        return {"filetype": "dask", "dask_array": da.from_array(frames, chunks=(2,) + frames.shape[1:]),
                "sig_dims": frames.ndim - 1}
    with h5py.File(path + ".h5", "w") as f:
        f.create_dataset("entry/data", data=frames, chunks=(1,) + frames.shape[1:])
    return {"filetype": "hdf5", "path": path + ".h5", "ds_path": "/entry/data",
            "sig_dims": frames.ndim - 1}


class TestStack(DataSetTests):
    """Frames split into up to five members: raw, npy, memory, dask and hdf5."""

    format = "stack"
    sig_dims = (1, 2)
    dtypes = ("uint8", "uint16", ">u2", "int32", "float32", ">f4", "float64")

    @pytest.fixture(scope="class")
    @classmethod
    def contexts(cls):
        return shared

    def write(self, tmp_path, data, *, sig_dims):
        nav = data.shape[:-sig_dims]
        frames = data.reshape((-1,) + data.shape[-sig_dims:])
        parts = np.array_split(frames, min(len(KINDS), len(frames)))
        datasets = [member(kind, tmp_path, part, i) for i, (kind, part) in enumerate(zip(KINDS, parts))]
        return dict(datasets=datasets, nav_shape=nav)

    def corrupt(self, params):
        # the first member is a raw file
        path = params["datasets"][0]["path"]
        os.truncate(path, os.path.getsize(path) // 2)

    def file_names(self, params):
        return [os.path.basename(params["datasets"][0]["path"])]


@pytest.fixture
def data():
    return np.arange(17 * 4 * 3, dtype=">u2").reshape(17, 4, 3)


def _mixed(tmp_path, data, kinds=KINDS):
    cuts = np.array_split(np.arange(len(data)), len(kinds))
    return [member(kind, tmp_path, data[c[0]:c[-1] + 1], i) for i, (kind, c) in
            enumerate(zip(kinds, cuts))]


def _check_sums(ctx, ds, frames, roi=None):
    sig, whole = ctx.run_udf(dataset=ds, udf=[SumSigUDF(), SumUDF()], roi=roi)
    ref = frames.reshape(len(frames), -1).astype(np.float64)
    keep = np.ones(len(frames), bool) if roi is None else roi.reshape(-1)
    got = sig["intensity"].data.reshape(-1)
    np.testing.assert_array_equal(got[keep], ref.sum(axis=1)[keep])
    assert np.isnan(got[~keep]).all()
    np.testing.assert_array_equal(whole["intensity"].data.reshape(-1), ref[keep].sum(axis=0))


@pytest.mark.parametrize("executor", ["inline", "threads", "processes", "dask"])
def test_mixed_members_on_every_executor(tmp_path, data, executor):
    ctx = shared(executor)
    ds = ctx.load("stack", datasets=_mixed(tmp_path, data), num_partitions=6)
    assert ds.shape.to_tuple() == (17, 4, 3) and ds.dtype.str == ">u2"
    _check_sums(ctx, ds, data)
    roi = np.random.default_rng(3).random(17) < 0.5
    _check_sums(ctx, ds, data, roi=roi)


def test_partitions_delegate_to_one_member_each(tmp_path, data):
    ctx = shared("inline")
    little = data.astype("<u2")
    members = _mixed(tmp_path, data, kinds=("raw", "npy", "memory"))
    members[2]["data"] = little[members[2]["data"].shape[0] * -1:]  # native byte order here
    ds = ctx.load("stack", datasets=members, num_partitions=5)
    members = ds.members
    ends = np.cumsum([m.shape.nav.size for m in members])
    for p in ds.get_partitions():
        assert isinstance(p, StackPartition)
        k = p.member_index
        first = 0 if k == 0 else ends[k - 1]
        assert first <= p.start and p.stop <= ends[k], "a partition spans two members"
        # the member's own partition: its stored byte order and zero-copy support
        assert type(p.member) is type(members[k].get_partitions()[0])
        assert p.raw_dtype == members[k].dtype
        assert p.supports_zero_copy == p.member.supports_zero_copy
    assert {p.raw_dtype.str for p in ds.get_partitions()} == {">u2", "<u2"}
    _check_sums(ctx, ds, data)


def test_members_keep_their_own_partitioning(tmp_path, data):
    ctx = shared("inline")
    first = ctx.load("memory", data=data[:9], num_partitions=1)
    ds = ctx.load("stack", datasets=[first, {"filetype": "memory", "data": data[9:]}],
                  num_partitions=8)
    assert ds.get_num_partitions() > 2
    assert first.get_num_partitions() == 1


@pytest.mark.parametrize("sync_offset", [-5, -1, 3, 9])
def test_sync_offset_and_nav_shape(tmp_path, data, sync_offset):
    ctx = shared("inline")
    ds = ctx.load("stack", datasets=_mixed(tmp_path, data), nav_shape=(4, 4),
                  sync_offset=sync_offset, num_partitions=4)
    assert ds.shape.nav.to_tuple() == (4, 4)
    sums = ctx.run_udf(dataset=ds, udf=SumSigUDF())["intensity"].data.reshape(-1)
    ref = data.reshape(17, -1).astype(np.float64).sum(axis=1)
    for i in range(16):
        f = i + sync_offset
        if 0 <= f < 17:
            assert sums[i] == ref[f]
        else:
            assert np.isnan(sums[i])


def test_members_with_sync_offset_inside_are_read_from_the_right_frames(tmp_path, data):
    # a member that skips its first frames itself (all its positions still have a frame)
    ctx = shared("inline-debug")
    inner = ctx.load("memory", data=data[:10], nav_shape=(6,), sync_offset=4)
    ds = ctx.load("stack", datasets=[inner, {"filetype": "memory", "data": data[10:]}],
                  num_partitions=3)
    _check_sums(ctx, ds, np.concatenate([data[4:10], data[10:]]))


def test_hdf5_files_as_one_data_set(tmp_path):
    """HDF5's "list of paths": a stack of the same dataset in several files, checked against h5py."""
    rng = np.random.default_rng(0)
    paths = []
    for i, n in enumerate((3, 5, 2)):
        path = tmp_path / f"scan_{i}.h5"
        with h5py.File(path, "w") as f:
            f.create_dataset("entry/data/data", data=rng.integers(0, 1000, (n, 8, 6), dtype="u2"),
                             chunks=(1, 8, 6), compression="gzip" if i == 1 else None)
        paths.append(path)
    ctx = shared("processes")
    ds = ctx.load("stack", datasets=[{"filetype": "hdf5", "path": str(p), "ds_path": "entry/data/data"}
                                     for p in paths], nav_shape=(2, 5))
    expect = []
    for p in paths:
        with h5py.File(p, "r") as f:
            expect.append(f["entry/data/data"][()])
    expect = np.concatenate(expect)
    _check_sums(ctx, ds, expect)
    assert [m["format"] for m in ds.layout_info()["members"]] == ["hdf5"] * 3


def test_no_file_handle_leaks(tmp_path, data):
    ctx = shared("inline-debug")  # partitions pickled and unpickled, as on a worker
    members = _mixed(tmp_path, data, kinds=("raw", "npy", "hdf5"))
    ctx.run_udf(dataset=ctx.load("stack", datasets=members), udf=SumUDF())  # warm up
    before = len(os.listdir("/proc/self/fd"))
    for backend in ("mmap", "buffered", "direct"):
        with_backend = [dict(m, io_backend=backend) for m in members]
        ds = ctx.load("stack", datasets=with_backend, num_partitions=4)
        _check_sums(ctx, ds, data)
    assert len(os.listdir("/proc/self/fd")) <= before


def test_auto_picks_stack_for_datasets(tmp_path, data):
    ds = shared("inline").load("auto", datasets=[{"filetype": "memory", "data": data}])
    assert isinstance(ds, StackDataSet)


# -- bad input ----------------------------------------------------------------------------------

def test_members_of_another_frame_shape_or_dtype(tmp_path, data):
    ctx = shared("inline")
    np.save(tmp_path / "other.npy", np.zeros((3, 4, 4), dtype=">u2"))
    with pytest.raises(DataSetError, match=r"datasets\[1\] \(NPYDataSet '.*other.npy'\) has frames "
                                           r"of shape \(4, 4\); expected \(4, 3\)"):
        ctx.load("stack", datasets=[{"filetype": "memory", "data": data},
                                    {"filetype": "npy", "path": str(tmp_path / "other.npy")}])
    with pytest.raises(DataSetError, match=r"datasets\[1\] .* has dtype float32; expected >u2"):
        ctx.load("stack", datasets=[{"filetype": "memory", "data": data},
                                    {"filetype": "memory", "data": data.astype(np.float32)}])


def test_members_with_missing_frames_are_refused(data):
    ctx = shared("inline")
    holes = ctx.load("memory", data=data, sync_offset=-2)
    with pytest.raises(DataSetError, match=r"datasets\[0\].*without a frame.*sync_offset"):
        ctx.load("stack", datasets=[holes])


def test_member_errors_name_the_member_and_keep_their_type(tmp_path):
    ctx = shared("inline")
    with pytest.raises(DataSetFileNotFoundError, match=r"datasets\[0\] \(npy\).*missing.npy"):
        ctx.load("stack", datasets=[{"filetype": "npy", "path": str(tmp_path / "missing.npy")}])


@pytest.mark.parametrize("datasets, match", [
    ([], "non-empty list"),
    (np.zeros((3, 4, 4)), "non-empty list"),
    ([np.zeros((3, 4, 4))], r"datasets\[0\]: expected a loaded data set or a dict"),
    ([{"data": np.zeros((3, 4, 4))}], r"with keys \['data'\]"),
    ([{"filetype": "memroy", "data": np.zeros((3, 4, 4))}], "did you mean 'memory'"),
])
def test_bad_datasets(datasets, match):
    with pytest.raises(DataSetError, match=match):
        shared("inline").load("stack", datasets=datasets)


def test_nav_shape_larger_than_the_members(data):
    with pytest.raises(DataSetError, match=r"holds 17 frames .* nav_shape \(5, 4\) needs 20"):
        shared("inline").load("stack", datasets=[{"filetype": "memory", "data": data}],
                              nav_shape=(5, 4))
