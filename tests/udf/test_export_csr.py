"""``ctx.export(..., format="raw_csr")``: dense data sets written as LiberTEM's sparse format.

Round trips dense → raw_csr → load, compared with numpy on the whole array and with scipy.sparse
reading the written files (np.fromfile): dtypes, ROI, sync_offset both ways, several partitions
on every executor, the threshold; partitions merged out of order; options and their errors;
overwrite; the data set's own files; no spool left after a failed run.
"""

from __future__ import annotations

import os

import numpy as np
import pytest
import scipy.sparse
from hypothesis import given, settings
from hypothesis import strategies as st

from udfkit.errors import DataSetError, UDFError, UDFParameterError
from udfkit.io.formats.raw_csr import read_descriptor
from udfkit.testing import SharedContexts
from udfkit.testing.profiles import examples
from udfkit.udf import RecordUDF
from udfkit.udf.builtins._export_chunked import spool_dir
from udfkit.udf.builtins._export_csr import array_paths

shared = SharedContexts({"inline": ("inline", {}), "threads": ("threads", {"cpus": 2}),
                         "processes": ("processes", {"cpus": 2}), "dask": ("dask", {"cpus": 2})})
_close_shared_contexts = shared.closing_fixture()


def sparse_data(shape, dtype, density, seed):
    rng = np.random.default_rng(seed)
    data = rng.integers(-3, 9, size=shape) * (rng.random(shape) < density)
    if np.dtype(dtype).kind == "u":
        data = np.abs(data)
    return data.astype(dtype)


def read_with_scipy(toml):
    """The independent reader of the written files."""
    desc = read_descriptor(toml)
    indptr, indices, values = (np.fromfile(f, dtype=dt) for f, dt in zip(desc.files, desc.dtypes))
    assert indptr[0] == 0 and indptr[-1] == indices.size == values.size
    m = scipy.sparse.csr_matrix((values, indices, indptr),
                                shape=(indptr.size - 1, int(np.prod(desc.sig_shape))))
    m.check_format(full_check=True)  # sorted, in range
    return m, desc


@settings(max_examples=examples(12), deadline=None)
@given(nav=st.sampled_from([(7,), (3, 5), (4, 4)]), sig=st.sampled_from([(6,), (5, 4), (8, 8)]),
       dtype=st.sampled_from(["uint16", "int32", "float32", ">f8", "complex64"]),
       density=st.sampled_from([0.0, 0.05, 0.5, 1.0]), sync=st.integers(-3, 3),
       use_roi=st.booleans(), parts=st.integers(1, 4), seed=st.integers(0, 2**16))
def test_round_trip(tmp_path_factory, nav, sig, dtype, density, sync, use_roi, parts, seed):
    """Export from a memory data set (sync_offset, ROI, partitions drawn): the files are a valid
    CSR matrix of the processed frames, exact zeros dropped, and load back to the same array."""
    ctx = shared("inline")
    tmp = tmp_path_factory.mktemp("exp")
    data = sparse_data(nav + sig, dtype, density, seed)
    n = int(np.prod(nav))
    sync = max(-(n - 1), min(sync, n - 1))
    ds = ctx.load("memory", data=data, sig_dims=len(sig), sync_offset=sync, num_partitions=parts)
    positions = np.arange(n) + sync
    keep = (positions >= 0) & (positions < n)
    roi = None
    if use_roi:
        roi = np.random.default_rng(seed).random(nav) < 0.6
        keep &= roi.reshape(-1)
    out = ctx.export(ds, tmp / "out.toml", roi=roi)
    if not keep.any():
        # as the other formats (test_export_formats.test_empty_roi): a valid file of no
        # frames, which the reader refuses to open as a data set
        m, desc = read_with_scipy(str(out))
        assert m.shape == (0, int(np.prod(sig))) and desc.nav_shape == (0,)
        with pytest.raises(DataSetError, match="nav_shape"):
            ctx.load("raw_csr", path=str(out))
        return
    frames = data.reshape((n, -1))[positions[keep]].astype(ds.native_dtype)
    m, desc = read_with_scipy(str(out))
    whole = keep.all()
    assert desc.nav_shape == (nav if whole else (int(keep.sum()),))
    assert desc.sig_shape == sig
    assert desc.dtypes[2] == ds.native_dtype
    np.testing.assert_array_equal(m.toarray(), frames.reshape(len(frames), -1))
    assert m.nnz == np.count_nonzero(frames)
    if frames.size:
        back = ctx.load("raw_csr", path=str(out))
        res = ctx.run_udf(dataset=back, udf=RecordUDF(path=str(tmp / "back.npy")))
        assert int(res["frames_written"].data[0]) == len(frames)
        np.testing.assert_array_equal(np.load(tmp / "back.npy").reshape(frames.shape), frames)
    assert not os.path.exists(spool_dir(str(out)))


@pytest.mark.parametrize("executor", ["threads", "processes", "dask"])
def test_round_trip_executors(tmp_path, executor):
    """Partitions written by worker processes (a shared directory) and merged as they finish."""
    ctx = shared(executor)
    data = sparse_data((6, 9, 16, 16), "uint16", 0.01, 1)
    path = tmp_path / "src.raw"
    data.tofile(path)
    ds = ctx.load("raw", path=str(path), dtype="uint16", nav_shape=(6, 9), sig_shape=(16, 16),
                  num_partitions=7, sync_offset=2)
    out = ctx.export(ds, tmp_path / "out.toml")
    m, desc = read_with_scipy(str(out))
    expect = np.zeros((54, 256), "uint16")
    expect[:52] = data.reshape(54, 256)[2:]
    assert desc.nav_shape == (52,)
    np.testing.assert_array_equal(m.toarray(), expect[:52])
    assert not os.path.exists(spool_dir(str(out)))


def test_threshold(tmp_path):
    ctx = shared("inline")
    data = np.array([[[0, 1, 2], [3, -4, 0.5]]], dtype="float32").repeat(3, axis=0)
    out = ctx.export(ctx.load("memory", data=data, sig_dims=2), tmp_path / "t.toml", threshold=2)
    m, _ = read_with_scipy(str(out))
    kept = np.where(np.abs(data) > 2, data, 0).reshape(3, -1)
    np.testing.assert_array_equal(m.toarray(), kept)
    assert m.nnz == 6


def test_partitions_merged_out_of_order(tmp_path):
    """The main process appends partitions in row order, whatever order their results come in."""
    ctx = shared("inline")
    data = sparse_data((20, 4, 4), "int32", 0.3, 5)
    ds = ctx.load("memory", data=data, num_partitions=5)
    udf = RecordUDF(path=str(tmp_path / "o.toml"))
    ctx.run_udf(dataset=ds, udf=udf)  # a reference run, then the merges by hand in reverse
    target = udf._target
    os.remove(target.path)
    target.create()
    parts = ds.get_partitions()
    for p in parts:
        target.open(p.num_frames)
        for r in range(p.start, p.stop, 3):
            target.write(r, data[r:min(r + 3, p.stop)])
        target.finish()
        target.close()
    for p in reversed(parts):
        target.merge(p.start, p.num_frames)
    target.finalize()
    m, _ = read_with_scipy(target.path)
    np.testing.assert_array_equal(m.toarray(), data.reshape(20, -1))


def test_options_and_errors(tmp_path):
    ctx = shared("inline")
    ds = ctx.load("memory", data=np.ones((2, 3, 4), "uint8"))
    with pytest.raises(UDFParameterError, match=r"only format='raw_csr' takes one, got threshold=1 "
                                                r"for npy"):
        ctx.export(ds, tmp_path / "x.npy", threshold=1)
    for bad in (-1, float("nan"), "2", True):
        with pytest.raises(ValueError, match=r"threshold must be a finite number >= 0"):
            ctx.export(ds, tmp_path / "x.toml", threshold=bad)
    with pytest.raises(UDFParameterError, match=r"raw_csr"):
        ctx.export(ds, tmp_path / "x.toml", format="csr")
    out = ctx.export(ds, tmp_path / "x.bin", format="raw_csr")
    assert [os.path.basename(p) for p in read_descriptor(str(out)).files] == \
        ["x.bin.indptr.raw", "x.bin.indices.raw", "x.bin.data.raw"]


def test_overwrite_and_own_source(tmp_path):
    ctx = shared("inline")
    ds = ctx.load("memory", data=sparse_data((4, 5, 5), "uint8", 0.2, 2))
    out = ctx.export(ds, tmp_path / "a.toml")
    with pytest.raises(FileExistsError, match=r"a\.toml exists; pass overwrite=True"):
        ctx.export(ds, tmp_path / "a.toml")
    ds2 = ctx.load("memory", data=sparse_data((2, 5, 5), "uint8", 0.2, 3))
    ctx.export(ds2, tmp_path / "a.toml", overwrite=True)
    m, desc = read_with_scipy(str(out))
    assert desc.nav_shape == (2,) and m.shape == (2, 25)
    src = ctx.load("raw_csr", path=str(out))
    with pytest.raises(UDFError, match=r"is the file of the data set being read"):
        ctx.export(src, out, overwrite=True)
    # another descriptor whose array files would be the source's
    (tmp_path / "a").mkdir()
    with pytest.raises(UDFError, match=r"array file .*a\.indptr\.raw.* is a file of the data set"):
        ctx.export(src, tmp_path / "a", format="raw_csr", overwrite=True)
    assert ctx.run_udf(dataset=ctx.load("raw_csr", path=str(out)), udf=RecordUDF(
        path=str(tmp_path / "ok.npy")))["frames_written"].data[0] == 2


def test_failed_run_leaves_no_spool(tmp_path):
    ctx = shared("processes")
    data = sparse_data((8, 6, 6), "float32", 0.2, 9)
    path = tmp_path / "src.raw"
    data.tofile(path)
    ds = ctx.load("raw", path=str(path), dtype="float32", nav_shape=(8,), sig_shape=(6, 6),
                  num_partitions=4)
    os.truncate(path, path.stat().st_size // 2)
    with pytest.raises(Exception, match=r"src\.raw"):
        ctx.export(ds, tmp_path / "f.toml")
    assert not os.path.exists(spool_dir(str(tmp_path / "f.toml")))
    # the array files may hold the partitions merged before the failure, but without the
    # descriptor (written last) they are no data set
    assert not os.path.exists(tmp_path / "f.toml")
    assert all(os.path.exists(p) for p in array_paths(str(tmp_path / "f.toml")))
    # the Context stays usable
    ctx.export(ctx.load("memory", data=data), tmp_path / "g.toml")
    np.testing.assert_array_equal(read_with_scipy(str(tmp_path / "g.toml"))[0].toarray(),
                                  data.reshape(8, -1))


def test_export_of_a_csr_file_keeps_it(tmp_path):
    """raw_csr → raw_csr (another path) gives the same matrix, canonical (sorted, no zeros)."""
    ctx = shared("inline")
    data = sparse_data((3, 4, 7, 7), "uint16", 0.1, 11)
    first = ctx.export(ctx.load("memory", data=data), tmp_path / "a.toml")
    second = ctx.export(ctx.load("raw_csr", path=str(first), io_backend="buffered"),
                        tmp_path / "b.toml")
    for p in (first, second):
        m, desc = read_with_scipy(str(p))
        assert desc.nav_shape == (3, 4)
        np.testing.assert_array_equal(m.toarray(), data.reshape(12, -1))
