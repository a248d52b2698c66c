"""The raw_csr format: the conformance suite on CSR files written here (with unsorted column
indices, explicit zeros and duplicate entries), whole-array comparisons against scipy.sparse
reading the three files with np.fromfile, the windowed array reads of every I/O backend, the
CSR row blocks of a partition, the descriptor's defaults and overrides, "auto", stacks, bad
input, and (with $LIBERTEM_PYTHON) LiberTEM 0.16's reader on the same files."""

from __future__ import annotations

import json
import os
import subprocess
from math import prod
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from udfkit import UDF
from udfkit.errors import DataSetError, DataSetFileNotFoundError
from udfkit.io.backends import get_backend
from udfkit.io.formats import detect_format
from udfkit.io.formats._csr import CHUNK_ITEMS, FlatArray, WindowReader
from udfkit.io.formats.raw_csr import read_descriptor, write_descriptor
from udfkit.testing import DataSetTests, read_all
from udfkit.testing.profiles import examples
from udfkit.udf import SumSigUDF, SumUDF

BACKENDS = ("mmap", "buffered", "direct")
#: (indptr, indices) dtypes the writer cycles through, LiberTEM's cases among them
INDEX_DTYPES = (("<i4", "<i4"), ("<i8", "<i4"), ("<u8", "<u8"), (">i4", ">i4"), ("<i8", "<u2"))
FILES = ("indptr.raw", "indices.raw", "values.raw")


def messy_csr(frames: np.ndarray, seed: int):
    """CSR arrays of ``frames`` (n, pixels) as a detector might write them: entries of a row in
    any order, some explicit zeros, some pixels split into two entries that add up."""
    rng = np.random.default_rng(seed)
    indptr = [0]
    indices, values = [], []
    for row in frames:
        cols = np.flatnonzero(row)
        vals = row[cols]
        if cols.size and rng.random() < 0.5:
            # a duplicate: an explicit zero entry for a pixel that also has its value
            k = rng.integers(cols.size)
            cols = np.append(cols, cols[k])
            vals = np.append(vals, np.zeros(1, row.dtype))
        if rng.random() < 0.3 and row.size:
            cols = np.append(cols, rng.integers(row.size))  # an explicit zero
            vals = np.append(vals, np.zeros(1, row.dtype))
        order = rng.permutation(cols.size)
        indices.append(cols[order])
        values.append(vals[order].astype(row.dtype))
        indptr.append(indptr[-1] + cols.size)
    return (np.array(indptr), np.concatenate(indices) if indices else np.zeros(0, int),
            np.concatenate(values) if values else np.zeros(0, frames.dtype))


def write_csr(directory, indptr, indices, values, *, nav_shape=None, sig_shape=None,
              dtypes=None, name="scan.toml", files=FILES, **params) -> str:
    """The three arrays (in ``dtypes``) and a descriptor; returns the TOML path."""
    directory = Path(directory)
    dtypes = dtypes or (indptr.dtype, indices.dtype, values.dtype)
    for fname, arr, dt in zip(files, (indptr, indices, values), dtypes):
        np.asarray(arr).astype(dt).tofile(directory / fname)
    return write_descriptor(directory / name, nav_shape=nav_shape, sig_shape=sig_shape,
                            files=files, dtypes=dtypes, **params)


def scipy_dense(toml: str) -> np.ndarray:
    """The independent reader: np.fromfile of the three files into scipy.sparse, densified."""
    desc = read_descriptor(toml)
    indptr, indices, values = (np.fromfile(f, dtype=dt) for f, dt in zip(desc.files, desc.dtypes))
    n = indptr.size - 1
    # scipy.sparse has no float16: exact in float32 (the values are small integers)
    native = np.float32 if values.dtype.kind == "f" and values.dtype.itemsize == 2 \
        else values.dtype.newbyteorder("=")
    m = scipy.sparse.csr_matrix((values.astype(native),
                                 indices.astype(np.int64), indptr.astype(np.int64)),
                                shape=(n, prod(desc.sig_shape)))
    return m.toarray().reshape((n,) + tuple(desc.sig_shape))


class TestRawCSRConformance(DataSetTests):
    format = "raw_csr"
    io_backends = BACKENDS
    sig_dims = (1, 2)

    def write(self, tmp_path, data, *, sig_dims):
        nav = data.shape[:data.ndim - sig_dims]
        sig = data.shape[data.ndim - sig_dims:]
        frames = data.reshape(prod(nav), prod(sig))
        indptr, indices, values = messy_csr(frames, seed=frames.size)
        ptr_dt, idx_dt = INDEX_DTYPES[(frames.size + len(nav)) % len(INDEX_DTYPES)]
        toml = write_csr(tmp_path, indptr, indices, values, nav_shape=nav, sig_shape=sig,
                         dtypes=(ptr_dt, idx_dt, data.dtype))
        return {"path": toml}

    def corrupt(self, params):
        values = os.path.join(os.path.dirname(params["path"]), FILES[2])
        os.truncate(values, os.path.getsize(values) // 2)

    def file_names(self, params):
        return list(FILES)


@pytest.mark.slow
class TestStackOfRawCSRConformance(DataSetTests):
    """A stack of up to three raw_csr members passes the conformance suite too (every
    executor, ROI, sync_offset, partitions; sparse UDFs get the members' CSR rows). The
    default run has the fast property test ``test_stack_of_csr_data_sets_gives_csr_rows``."""

    format = "stack"
    sig_dims = (1, 2)

    def write(self, tmp_path, data, *, sig_dims):
        nav = data.shape[:data.ndim - sig_dims]
        sig = data.shape[data.ndim - sig_dims:]
        frames = data.reshape(prod(nav), prod(sig))
        members = []
        for i, part in enumerate(np.array_split(frames, min(3, len(frames)))):
            d = os.path.join(tmp_path, f"m{i}")
            os.makedirs(d, exist_ok=True)
            toml = write_csr(d, *messy_csr(part, seed=part.size + i), nav_shape=(len(part),),
                             sig_shape=sig, dtypes=("<i8", "<i4", data.dtype))
            members.append({"filetype": "raw_csr", "path": toml})
        return {"datasets": members, "nav_shape": nav}

    def corrupt(self, params):
        values = os.path.join(os.path.dirname(params["datasets"][0]["path"]), FILES[2])
        os.truncate(values, os.path.getsize(values) // 2)

    def file_names(self, params):
        return [FILES[2]]


# -- against the independent reader ------------------------------------------------------------


@st.composite
def sparse_cases(draw):
    n = draw(st.integers(1, 40))
    sig = draw(st.sampled_from([(7,), (4, 5), (16, 16), (3, 70)]))
    density = draw(st.sampled_from([0.0, 0.02, 0.3, 1.0]))
    # float16 values take the numpy path of the densify kernel
    dtype = draw(st.sampled_from(["uint16", ">i4", "float32", "<f8", ">c8", "uint64", "<f2"]))
    ptr_dt, idx_dt = draw(st.sampled_from(INDEX_DTYPES))
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    dense = rng.integers(1, 9, size=(n, prod(sig))) * (rng.random((n, prod(sig))) < density)
    roi = rng.random(n) < draw(st.sampled_from([0.2, 0.8]))
    sync = draw(st.integers(-n + 1, n - 1))
    return dict(dense=dense.astype(dtype), sig=sig, dtypes=(ptr_dt, idx_dt, dtype), seed=seed,
                roi=roi if draw(st.booleans()) else None, sync_offset=sync,
                backend=draw(st.sampled_from(BACKENDS)), parts=draw(st.integers(1, 5)),
                depth=draw(st.integers(1, 9)), gap=draw(st.sampled_from([0, 2, 64])))


@settings(max_examples=examples(25), deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(case=sparse_cases())
def test_whole_array_equals_scipy(inline_ctx, tmp_path_factory, case):
    """Tiles of the whole data set equal scipy.sparse's densified matrix of the same three files
    (np.fromfile), with ROI, sync_offset, partitions and depth drawn, on every backend; rows
    of a block read as one span or several (``MAX_GAP_ROWS``)."""
    from udfkit.io.formats._csr import RowReader
    from udfkit.io.tiling import TilingScheme

    gap = RowReader.MAX_GAP_ROWS
    RowReader.MAX_GAP_ROWS = case["gap"]
    try:
        _check_against_scipy(inline_ctx, tmp_path_factory, case, TilingScheme)
    finally:
        RowReader.MAX_GAP_ROWS = gap


def _check_against_scipy(inline_ctx, tmp_path_factory, case, TilingScheme):

    tmp = tmp_path_factory.mktemp("csr")
    dense = case["dense"]
    n = dense.shape[0]
    toml = write_csr(tmp, *messy_csr(dense, case["seed"]), sig_shape=case["sig"],
                     nav_shape=(n,), dtypes=case["dtypes"])
    ref = scipy_dense(toml)
    np.testing.assert_array_equal(ref.reshape(n, -1), dense)
    ds = inline_ctx.load("raw_csr", path=toml, io_backend=case["backend"],
                         sync_offset=case["sync_offset"], num_partitions=case["parts"])
    want = np.result_type(np.float32, ds.native_dtype)
    scheme = TilingScheme.make(case["sig"], case["sig"], case["depth"], "tile")
    out, hits = read_all(ds, want, scheme, case["roi"])
    positions = np.arange(n) + case["sync_offset"]
    has = (positions >= 0) & (positions < n)
    sel = has if case["roi"] is None else has & case["roi"]
    assert (hits[sel] == 1).all() and (hits[~sel] == 0).all()
    np.testing.assert_array_equal(out[sel], ref[positions[sel]].astype(want))


@settings(max_examples=examples(20), deadline=None)
@given(length=st.integers(1, 3 * CHUNK_ITEMS + 50), window=st.sampled_from([1, 5000, 1 << 20]),
       backend=st.sampled_from(BACKENDS), dtype=st.sampled_from(["<u1", ">i2", "<f8"]),
       ranges=st.lists(st.tuples(st.floats(0, 1), st.floats(0, 1)), min_size=1, max_size=8))
def test_window_reader_ranges(tmp_path_factory, length, window, backend, dtype, ranges):
    """Element ranges across chunk boundaries and the tail, in windows of any size, through each
    backend (buffered with a buffer smaller than a window), equal np.fromfile."""
    path = tmp_path_factory.mktemp("arr") / "a.raw"
    data = (np.arange(length) % 251).astype(dtype)
    data.tofile(path)
    spec = get_backend(backend) if backend == "mmap" else \
        type(get_backend(backend))(buffer_size=3 * CHUNK_ITEMS * 8 // 2)
    reader = WindowReader(FlatArray(str(path), np.dtype(dtype), length, "data"), spec,
                          window_bytes=window)
    try:
        for a, b in ranges:
            lo, hi = sorted((int(a * length), int(b * length)))
            got = reader.get(lo, hi)
            assert not got.flags.writeable
            np.testing.assert_array_equal(got, data[lo:hi])
    finally:
        reader.close()


def test_csr_blocks_are_the_rows(inline_ctx, tmp_path):
    """A partition's sparse read: per block the CSR triple of the processed rows, equal to
    scipy's row selection, with and without ROI gaps; row readers give any range."""
    rng = np.random.default_rng(3)
    dense = (rng.integers(0, 5, (50, 36)) * (rng.random((50, 36)) < 0.1)).astype("uint16")
    toml = write_csr(tmp_path, *messy_csr(dense, 4), nav_shape=(5, 10), sig_shape=(6, 6))
    m = scipy.sparse.csr_matrix(dense)
    ds = inline_ctx.load("raw_csr", path=toml, sync_offset=3, num_partitions=3)
    roi = rng.random(50) < 0.4
    for p in ds.get_partitions():
        proi = roi[p.start:p.stop]
        for use_roi in (None, proi):
            seen = []
            for positions, indptr, indices, values in p.csr_blocks(4, use_roi):
                assert indptr[0] == 0 and indptr.size == positions.size + 1
                got = scipy.sparse.csr_matrix((values, indices, indptr),
                                              shape=(positions.size, 36)).toarray()
                np.testing.assert_array_equal(got, m[positions + p.start + 3].toarray())
                seen.extend(positions.tolist())
            assert seen == p.selected_positions(use_roi).tolist()
    with ds.get_partitions()[0].open_rows() as rows:
        indptr, indices, values = rows.rows(7, 19)
        got = scipy.sparse.csr_matrix((values, indices, indptr), shape=(12, 36)).toarray()
        np.testing.assert_array_equal(got, dense[7:19])


def _sparse_scan(tmp_path, n, pixels, per_row, seed=5):
    """CSR files of ``n`` frames of ``pixels`` uint16 pixels with ``per_row`` entries each."""
    rng = np.random.default_rng(seed)
    indptr = np.arange(n + 1) * per_row
    indices = np.sort(rng.integers(0, pixels, (n, per_row)), axis=1).ravel()
    return write_csr(tmp_path, indptr, indices, rng.integers(1, 9, n * per_row),
                     nav_shape=(n,), sig_shape=(pixels,), dtypes=("<i8", "<i4", "<u2"))


def test_partitions_are_sized_by_stored_bytes(inline_ctx, tmp_path, monkeypatch):
    """Partitions follow the bytes of the CSR arrays the frames read, not the dense frames:
    a 512 MiB (dense) scan stored in 1 MiB is one partition where dense frames would give two;
    sync_offset and a shorter nav_shape count only the rows read; the plan says why."""
    from udfkit.io import partitioning

    n, pixels, per_row = 4096, 256 * 256, 40
    toml = _sparse_scan(tmp_path, n, pixels, per_row)
    ds = inline_ctx.load("raw_csr", path=toml)
    stored = (n + 1) * 8 + n * per_row * (4 + 2)
    assert ds.meta.metadata["stored_bytes"] == stored
    assert len(partitioning.partition_bounds(n, pixels * 2)) == 2  # as dense frames
    assert ds.get_num_partitions() == 1
    reason = inline_ctx.plan(ds, SumUDF()).partition_reason
    assert "CSR arrays stored for the frames" in reason and reason.endswith(": 1 partition")
    # fewer rows read: fewer stored bytes
    part = inline_ctx.load("raw_csr", path=toml, sync_offset=1000, nav_shape=(1000,))
    assert part.meta.metadata["stored_bytes"] == 1001 * 8 + 1000 * per_row * 6
    # more stored bytes than the smallest partition's: cut by them
    monkeypatch.setattr(partitioning, "MIN_PARTITION_BYTES", stored // 3)
    ds = inline_ctx.load("raw_csr", path=toml)
    assert ds.get_num_partitions() == 2  # two per worker, at most stored // MIN = 3
    assert inline_ctx.plan(ds, SumUDF()).partition_reason.startswith(
        "two partitions per worker (1 worker)")
    assert inline_ctx.load("raw_csr", path=toml, num_partitions=5).get_num_partitions() == 5


# -- the descriptor ----------------------------------------------------------------------------


def small(tmp_path, **kw):
    dense = np.arange(6 * 12).reshape(6, 12) % 5
    toml = write_csr(tmp_path, *messy_csr(dense.astype("uint8"), 0), **kw)
    return toml, dense


def test_descriptor_defaults_and_overrides(inline_ctx, tmp_path):
    """nav_shape from the TOML (else one axis of all rows), fewer frames on request, sig_shape of
    the same pixel count, sync_offset from the TOML unless given."""
    toml, dense = small(tmp_path, sig_shape=(3, 4), sync_offset=2)
    ds = inline_ctx.load("raw_csr", path=toml)
    assert ds.shape.to_tuple() == (6, 3, 4) and ds.sync_offset == 2
    out, hits = read_all(ds)
    np.testing.assert_array_equal(out[:4].reshape(4, 12), dense[2:])
    assert (hits[4:] == 0).all()
    ds = inline_ctx.load("raw_csr", path=toml, sync_offset=0, nav_shape=(2, 2), sig_shape=(12,))
    assert ds.shape.to_tuple() == (2, 2, 12) and ds.sync_offset == 0
    np.testing.assert_array_equal(read_all(ds)[0].reshape(4, 12), dense[:4])
    res = inline_ctx.run_udf(dataset=ds, udf=SumSigUDF())
    np.testing.assert_array_equal(res["intensity"].data.reshape(-1), dense[:4].sum(axis=1))


def test_auto_detects_the_descriptor(inline_ctx, tmp_path):
    toml, dense = small(tmp_path, nav_shape=(2, 3), sig_shape=(3, 4))
    assert detect_format({"path": toml}) == "raw_csr"
    other = tmp_path / "pyproject.toml"
    other.write_text('[project]\nname = "x"\n')
    with pytest.raises(DataSetError, match="none of the formats recognises it"):
        detect_format({"path": str(other)})
    ds = inline_ctx.load("auto", path=toml)
    assert ds.format_name == "raw_csr" and ds.shape.to_tuple() == (2, 3, 3, 4)


class CSRProbe(UDF):
    """Sums frames and pixels of CSR tiles; records per frame whether the tile was a
    ``csr_matrix`` announced by ``meta.array_backend``."""

    def get_backends(self):
        return (self.BACKEND_SCIPY_CSR, self.BACKEND_NUMPY)

    def get_result_buffers(self):
        return {"frames": self.buffer(kind="nav", dtype="float64"),
                "pixels": self.buffer(kind="sig", dtype="float64"),
                "csr": self.buffer(kind="nav", dtype="bool")}

    def process_tile(self, tile):
        csr = (self.meta.array_backend == self.BACKEND_SCIPY_CSR
               and isinstance(tile, scipy.sparse.csr_matrix))
        self.results.csr[:] = csr
        if not csr:
            tile = tile.reshape(tile.shape[0], -1)
        self.results.frames[:] = np.asarray(tile.sum(axis=1)).ravel()
        self.results.pixels[:] += np.asarray(tile.sum(axis=0)).reshape(self.results.pixels.shape)

    def merge(self, dest, src):
        dest.frames[:] = src.frames
        dest.csr[:] = src.csr
        dest.pixels[:] += src.pixels


@st.composite
def stack_cases(draw):
    sig = draw(st.sampled_from([(5,), (4, 6)]))
    counts = draw(st.lists(st.integers(1, 12), min_size=1, max_size=3))
    total = sum(counts)
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    frames = [(rng.integers(1, 9, (c, prod(sig))) * (rng.random((c, prod(sig))) < 0.3))
              .astype(draw(st.sampled_from(["uint16", ">i4", "float32"]))) for c in counts]
    frames = [f.astype(frames[0].dtype) for f in frames]
    return dict(sig=sig, frames=frames, seed=seed, sync_offset=draw(st.integers(-total + 1, total - 1)),
                parts=draw(st.sampled_from([None, 1, 2, 5])), backend=draw(st.sampled_from(BACKENDS)),
                roi=(rng.random(total) < 0.6) if draw(st.booleans()) else None)


@settings(max_examples=examples(15), deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(case=stack_cases())
def test_stack_of_csr_data_sets_gives_csr_rows(inline_ctx, tmp_path_factory, case):
    """A stack of raw_csr data sets hands CSR row blocks to sparse UDFs as one raw_csr data set
    does (every tile a csr_matrix, ``meta.array_backend`` says so), with results equal to numpy
    on the densified frames, across members, partitions, sync_offset, ROI and I/O backends; its
    partitions' ``csr_blocks`` are the rows of the members."""
    tmp = tmp_path_factory.mktemp("stack")
    sig, frames = case["sig"], case["frames"]
    members = []
    for i, f in enumerate(frames):
        (tmp / str(i)).mkdir()
        toml = write_csr(tmp / str(i), *messy_csr(f, case["seed"] + i), nav_shape=(len(f),),
                         sig_shape=sig)
        members.append({"filetype": "raw_csr", "path": toml, "io_backend": case["backend"]})
    dense = np.concatenate(frames).astype(np.float64)
    total = len(dense)
    ds = inline_ctx.load("stack", datasets=members, sync_offset=case["sync_offset"],
                         num_partitions=case["parts"])
    assert ds.array_backends == ("scipy.sparse.csr_matrix", "numpy")
    positions = np.arange(total) + case["sync_offset"]
    has = (positions >= 0) & (positions < total)
    roi = case["roi"]
    sel = has if roi is None else has & roi
    probe, sums, pixels = inline_ctx.run_udf(dataset=ds, udf=[CSRProbe(), SumSigUDF(), SumUDF()],
                                             roi=roi)
    assert probe["csr"].raw_data.all() and probe["csr"].raw_data.size == sel.sum()
    np.testing.assert_array_equal(probe["frames"].data[sel], dense[positions[sel]].sum(axis=1))
    np.testing.assert_array_equal(sums["intensity"].data[sel], dense[positions[sel]].sum(axis=1))
    want = dense[positions[sel]].sum(axis=0).reshape(sig)
    np.testing.assert_array_equal(probe["pixels"].data, want)
    np.testing.assert_array_equal(pixels["intensity"].data, want)
    for p in ds.get_partitions():
        assert p.sparse_backend == "scipy.sparse.csr_matrix"
        proi = None if roi is None else roi[p.start:p.stop]
        seen = []
        for block, indptr, indices, values in p.csr_blocks(3, proi):
            got = scipy.sparse.csr_matrix((values, indices, indptr),
                                          shape=(block.size, prod(sig))).toarray()
            np.testing.assert_array_equal(got, dense[positions[block + p.start]])
            seen.extend(block.tolist())
        assert seen == p.selected_positions(proi).tolist()


def test_stack_of_csr_and_dense_data_sets(inline_ctx, tmp_path):
    """A stack of raw_csr and dense members gives dense tiles (numpy is what all of them
    give); raw_csr members are read densified through their frame sources."""
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    toml_a, dense = small(tmp_path / "a", sig_shape=(3, 4))
    toml_b, _ = small(tmp_path / "b", sig_shape=(3, 4))
    ds = inline_ctx.load("stack", datasets=[inline_ctx.load("raw_csr", path=toml_a),
                                            {"filetype": "raw_csr", "path": toml_b}])
    res = inline_ctx.run_udf(dataset=ds, udf=SumUDF())
    np.testing.assert_array_equal(res["intensity"].data, 2 * dense.sum(axis=0).reshape(3, 4))
    mixed = inline_ctx.load("stack", datasets=[
        {"filetype": "raw_csr", "path": toml_a},
        {"filetype": "memory", "data": dense.reshape(6, 3, 4).astype("uint8")}])
    assert mixed.array_backends == ("numpy",)
    probe, total = inline_ctx.run_udf(dataset=mixed, udf=[CSRProbe(), SumUDF()])
    assert not probe["csr"].raw_data.any()
    np.testing.assert_array_equal(total["intensity"].data, 2 * dense.sum(axis=0).reshape(3, 4))


def test_stack_of_csr_partitions_by_stored_bytes(inline_ctx, tmp_path):
    """A stack of raw_csr members is cut by their stored bytes, as each member would be."""
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    members = [{"filetype": "raw_csr", "path": _sparse_scan(tmp_path / d, 2048, 256 * 256, 40)}
               for d in "ab"]
    ds = inline_ctx.load("stack", datasets=members)
    # as dense frames (1 GiB in all) the stack would get four partitions
    assert ds.get_num_partitions() == 2  # one per member, at least
    reason = inline_ctx.plan(ds, SumUDF()).partition_reason
    assert "data stored by the members" in reason and reason.endswith(": 2")


# -- bad input ---------------------------------------------------------------------------------


def _text(path, text):
    Path(path).write_text(text)
    return str(path)


@pytest.mark.parametrize("text, match", [
    ("[params\n", r"scan\.toml.*not valid TOML"),
    ('[other]\nx = 1\n', r"scan\.toml.*expected a \[params\] table.*found tables \['other'\]"),
    ('[params]\nfiletype = "raw"\n', r"scan\.toml.*filetype: expected \"raw_csr\", found 'raw'"),
    ('[params]\nfiletype = "raw_csr"\nsig_shape = [3, 4]\n',
     r"scan\.toml.*expected a \[raw_csr\] table"),
    ('[params]\nfiletype = "raw_csr"\n[raw_csr]\nindptr_file = "p"\nindptr_dtype = "<i4"\n',
     r"lacks indices_file, indices_dtype, data_file, data_dtype"),
    ('[params]\nfiletype = "raw_csr"\n[raw_csr]\nindptr_file = "p"\nindptr_dtype = "<f4"\n'
     'indices_file = "i"\nindices_dtype = "<i4"\ndata_file = "v"\ndata_dtype = "<u2"\n',
     r"indptr_dtype: expected an integer dtype, found '<f4'"),
    ('[params]\nfiletype = "raw_csr"\nsig_shape = [0, 4]\n[raw_csr]\nindptr_file = "p"\n'
     'indptr_dtype = "<i4"\nindices_file = "i"\nindices_dtype = "<i4"\ndata_file = "v"\n'
     'data_dtype = "<u2"\n', r"sig_shape"),
])
def test_bad_descriptor(inline_ctx, tmp_path, text, match):
    path = _text(tmp_path / "scan.toml", text)
    with pytest.raises(DataSetError, match=match):
        inline_ctx.load("raw_csr", path=path)


@pytest.mark.parametrize("check_items", [2, 1 << 20])
def test_bad_arrays(inline_ctx, tmp_path, monkeypatch, check_items):
    """Array files that do not fit the descriptor or each other: errors name the file, what
    was expected and what was found (indptr checked in windows of 2 entries too, so that a
    decrease across a window border is found)."""
    from udfkit.io.formats import raw_csr

    monkeypatch.setattr(raw_csr, "_CHECK_ITEMS", check_items)
    indptr = np.array([0, 2, 2, 5])
    indices = np.array([1, 3, 0, 2, 11])
    values = np.arange(1, 6)
    kw = dict(nav_shape=(3,), sig_shape=(3, 4), dtypes=("<i8", "<i4", "<u2"))

    toml = write_csr(tmp_path, indptr, indices, values, **kw)
    assert inline_ctx.load("raw_csr", path=toml).shape.to_tuple() == (3, 3, 4)

    os.remove(tmp_path / FILES[1])
    with pytest.raises(DataSetFileNotFoundError, match=r"indices file .*indices\.raw.* does not exist"):
        inline_ctx.load("raw_csr", path=toml)

    write_csr(tmp_path, indptr, indices, values[:4], **kw)
    with pytest.raises(DataSetError, match=r"indices\.raw.* holds 5 entries.*values\.raw.* holds 4"):
        inline_ctx.load("raw_csr", path=toml)

    write_csr(tmp_path, indptr, indices, values, **kw)
    with open(tmp_path / FILES[0], "ab") as f:
        f.write(b"\0\0\0")
    with pytest.raises(DataSetError, match=r"indptr\.raw.* has 35 bytes.*whole number of <i8"):
        inline_ctx.load("raw_csr", path=toml)

    write_csr(tmp_path, np.array([0, 3, 2, 5]), indices, values, **kw)
    with pytest.raises(DataSetError, match=r"indptr\.raw.*entry 2 \(2\) is smaller than entry 1 "
                                           r"\(3\); expected a non-decreasing"):
        inline_ctx.load("raw_csr", path=toml)

    write_csr(tmp_path, np.array([0, 2, 2, 6]), indices, values, **kw)
    with pytest.raises(DataSetError, match=r"indptr\.raw.*entry 3 is 6.*holds 5 entries; expected "
                                           r"at most 5"):
        inline_ctx.load("raw_csr", path=toml)

    write_csr(tmp_path, indptr, indices, values, **kw)
    with pytest.raises(DataSetError, match=r"holds 3 frames .*indptr\.raw.*nav_shape \(4,\) needs 4"):
        inline_ctx.load("raw_csr", path=toml, nav_shape=(4,))
    with pytest.raises(DataSetError, match=r"sig_shape \(5, 5\) has 25 pixels.*\(3, 4\) has 12"):
        inline_ctx.load("raw_csr", path=toml, sig_shape=(5, 5))

    # an index past the frame's pixels is found while reading, naming the file and frame
    write_csr(tmp_path, indptr, np.array([1, 3, 0, 2, 12]), values, **kw)
    ds = inline_ctx.load("raw_csr", path=toml)
    with pytest.raises(DataSetError, match=r"indices\.raw.*entry 4 \(of frame 2\) is 12; expected "
                                           r"a pixel index from 0 to 11"):
        inline_ctx.run_udf(dataset=ds, udf=SumUDF())
    # ... and the Context stays usable
    write_csr(tmp_path, indptr, indices, values, **kw)
    res = inline_ctx.run_udf(dataset=inline_ctx.load("raw_csr", path=toml), udf=SumUDF())
    assert res["intensity"].data.sum() == values.sum()


class DenseSum(UDF):
    """Takes numpy tiles only: the dense read path of raw_csr."""

    def get_result_buffers(self):
        return {"total": self.buffer(kind="single", dtype="float64")}

    def process_tile(self, tile):
        self.results.total[:] += tile.sum()

    def merge(self, dest, src):
        dest.total[:] += src.total


_TABLE = ('[raw_csr]\nindptr_file = "indptr.raw"\nindptr_dtype = "<i8"\nindices_file = "indices.raw"\n'
          'indices_dtype = "<i4"\ndata_file = "values.raw"\ndata_dtype = "<u2"\n')


@pytest.mark.parametrize("case, match", [
    ("one_indptr_entry", r"indptr\.raw.* holds 1 entries; expected one more than the number of "
                         r"frames \(at least 2\)"),
    ("negative_indptr", r"indptr\.raw.*: entry 0 is -1; expected offsets >= 0"),
    ("no_sig_shape", r"scan\.toml.*\[params\] has no sig_shape; add it there or pass sig_shape="),
    ("file_not_a_name", r"scan\.toml.*indices_file: expected a file name, found 3"),
    ("data_dtype_not_numeric", r"scan\.toml.*data_dtype"),
    ("array_is_a_directory", r"the data file .*values\.raw.* is not a regular file"),
])
def test_bad_descriptor_or_arrays_more(inline_ctx, tmp_path, case, match):
    """The rest of the issue's bad-input list: fields missing or inconsistent with the array
    files, each a DataSetError naming the file, what was expected and what was found."""
    indptr, indices, values = np.array([0, 2, 2, 5]), np.array([1, 3, 0, 2, 11]), np.arange(1, 6)
    kw = dict(nav_shape=(3,), sig_shape=(3, 4), dtypes=("<i8", "<i4", "<u2"))
    toml = write_csr(tmp_path, indptr, indices, values, **kw)
    if case == "one_indptr_entry":
        write_csr(tmp_path, np.array([0]), indices[:0], values[:0], sig_shape=(3, 4),
                  dtypes=kw["dtypes"])
    elif case == "negative_indptr":
        write_csr(tmp_path, np.array([-1, 2, 2, 5]), indices, values, **kw)
    elif case == "no_sig_shape":
        toml = _text(tmp_path / "scan.toml", '[params]\nfiletype = "raw_csr"\n' + _TABLE)
    elif case == "file_not_a_name":
        toml = _text(tmp_path / "scan.toml", '[params]\nfiletype = "raw_csr"\nsig_shape = [3, 4]\n'
                     + _TABLE.replace('indices_file = "indices.raw"', "indices_file = 3"))
    elif case == "data_dtype_not_numeric":
        toml = _text(tmp_path / "scan.toml", '[params]\nfiletype = "raw_csr"\nsig_shape = [3, 4]\n'
                     + _TABLE.replace('data_dtype = "<u2"', 'data_dtype = "<U4"'))
    else:
        os.remove(tmp_path / FILES[2])
        os.mkdir(tmp_path / FILES[2])
    with pytest.raises(DataSetError, match=match):
        inline_ctx.load("raw_csr", path=toml)


@pytest.mark.parametrize("bad", [12, -1])
@pytest.mark.parametrize("udf", [SumUDF, DenseSum])
def test_pixel_index_out_of_range(inline_ctx, tmp_path, bad, udf):
    """A pixel index past the frame or negative is refused while reading, on the sparse tile
    path (SumUDF takes CSR rows) and on the dense one (a numpy UDF), naming the file, the
    entry and its frame; the Context stays usable."""
    indptr, values = np.array([0, 2, 2, 5]), np.arange(1, 6)
    kw = dict(nav_shape=(3,), sig_shape=(3, 4), dtypes=("<i8", "<i4", "<u2"))
    toml = write_csr(tmp_path, indptr, np.array([1, 3, 0, bad, 2]), values, **kw)
    ds = inline_ctx.load("raw_csr", path=toml)
    with pytest.raises(DataSetError, match=rf"indices\.raw.*entry 3 \(of frame 2\) is {bad}; "
                                           r"expected a pixel index from 0 to 11"):
        inline_ctx.run_udf(dataset=ds, udf=udf())
    write_csr(tmp_path, indptr, np.array([1, 3, 0, 5, 2]), values, **kw)
    res = inline_ctx.run_udf(dataset=inline_ctx.load("raw_csr", path=toml), udf=udf())
    assert float(np.sum(res[list(res)[0]].data)) == values.sum()


# -- LiberTEM ----------------------------------------------------------------------------------

LT_SCRIPT = """
import json, sys
import libertem.api as lt
from libertem.udf.sumsigudf import SumSigUDF
from libertem.udf.sum import SumUDF

out = {}
with lt.Context.make_with("inline") as ctx:
    for name, kw in json.loads(open("cases.json").read()).items():
        ds = ctx.load("raw_csr", **kw)
        roi = kw.pop("roi", None)
        sums = ctx.run_udf(dataset=ds, udf=SumSigUDF())["intensity"].data
        total = ctx.run_udf(dataset=ds, udf=SumUDF())["intensity"].data
        out[name] = {"shape": [int(n) for n in ds.shape], "sums": sums.ravel().tolist(),
                     "total": total.ravel().tolist()}
print(json.dumps(out))
"""


@pytest.mark.slow
def test_same_as_libertem(inline_ctx, tmp_path):
    """LiberTEM 0.16 (its own venv) reads the same files to the same shapes and sums, with the
    index dtypes of its own tests (int32, uint64, big-endian), nav_shape/sig_shape overrides
    and sync_offset; and it reads what ``ctx.export(..., "x.toml")`` writes."""
    lt_python = os.environ.get("LIBERTEM_PYTHON", "")
    if not lt_python or not os.path.isfile(lt_python):
        pytest.skip("set LIBERTEM_PYTHON to the python of a venv with libertem==0.16.0 to compare "
                    "with LiberTEM")
    rng = np.random.default_rng(12)
    dense = (rng.integers(1, 100, (13 * 17, 24 * 19)) * (rng.random((13 * 17, 24 * 19)) < 0.05))
    cases = {}
    for k, (ptr_dt, idx_dt) in enumerate(INDEX_DTYPES[:4]):
        d = tmp_path / f"c{k}"
        d.mkdir()
        toml = write_csr(d, *messy_csr(dense, k), nav_shape=(13, 17), sig_shape=(24, 19),
                         dtypes=(ptr_dt, idx_dt, "<i4" if k % 2 else ">u2"))
        cases[f"plain{k}"] = {"path": toml}
    cases["reshaped"] = {"path": cases["plain0"]["path"], "nav_shape": [17, 13], "sig_shape": [19, 24]}
    cases["fewer"] = {"path": cases["plain1"]["path"], "nav_shape": [10, 10]}
    cases["sync+"] = {"path": cases["plain2"]["path"], "sync_offset": 9}
    cases["sync-"] = {"path": cases["plain3"]["path"], "sync_offset": -5}
    # what udfkit's export writes
    exported = inline_ctx.export(inline_ctx.load("memory", data=dense.reshape(13, 17, 24, 19)),
                                 tmp_path / "exported.toml")
    cases["exported"] = {"path": str(exported)}
    (tmp_path / "cases.json").write_text(json.dumps(cases))
    (tmp_path / "lt.py").write_text(LT_SCRIPT)
    done = subprocess.run([lt_python, "lt.py"], cwd=tmp_path, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    theirs = json.loads(done.stdout.strip().splitlines()[-1])
    for name, kw in cases.items():
        ds = inline_ctx.load("raw_csr", **kw)
        assert list(ds.shape) == theirs[name]["shape"], name
        sums, total = inline_ctx.run_udf(dataset=ds, udf=[SumSigUDF(), SumUDF()])
        # LiberTEM leaves positions without a frame at 0, udfkit reports them NaN and invalid
        ours = np.nan_to_num(sums["intensity"].data.ravel())
        np.testing.assert_allclose(ours, theirs[name]["sums"], rtol=1e-6, err_msg=name)
        np.testing.assert_allclose(total["intensity"].data.ravel(), theirs[name]["total"],
                                   rtol=1e-6, err_msg=name)
