"""Array backends of UDFs: each UDF gets its tiles in the form it asked for, and results are
equal on dense and sparse input.

The same small integer scans (exact sums in float32) are loaded from memory (dense) and
written as ``raw_csr`` files (sparse). Probe UDFs that list random backends check, for every
tile or frame, that ``meta.array_backend`` is what the plan chose by the documented rule and
that the data really are of that type and shape; their sums equal numpy's. The built-ins
with a sparse path give the same results on both data sets.
"""

from __future__ import annotations

import os
import tempfile
from math import prod

import numpy as np
import pytest
import scipy.sparse
import sparse
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from udfkit import UDF, Context
from udfkit.common import udf as backends_mod
from udfkit.errors import UDFError
from udfkit.io.formats.raw_csr import write_descriptor
from udfkit.testing import SharedContexts
from udfkit.testing.profiles import examples
from udfkit.udf import (ApplyMasksUDF, CoMUDF, PickUDF, StatsUDF, StdDevUDF, SumSigUDF,
                        SumUDF)

#: every CPU backend udfkit can hand to a UDF
CPU = backends_mod.available_backends()
DENSE_NATIVE = ("numpy",)
CSR_NATIVE = ("scipy.sparse.csr_matrix", "numpy")

shared_context = SharedContexts({"threads": ("threads", {"cpus": 2}),
                                 "processes": ("processes", {"cpus": 2})})
_close_shared_contexts = shared_context.closing_fixture()


# -- the probe -----------------------------------------------------------------------------------

def _dense(data, backend: str) -> np.ndarray:
    if backend == "numpy":
        return np.asarray(data)
    if backend.startswith("scipy.sparse"):
        return data.toarray()
    return np.asarray(data.todense())


def _type_ok(data, backend: str) -> bool:
    if backend == "numpy":
        return isinstance(data, np.ndarray)
    module, name = backend.rsplit(".", 1)
    return type(data).__module__.startswith(module) and type(data).__name__ == name


class Probe(UDF):
    """Records whether every unit arrived in ``expected`` (type, 2D/nD shape, meta) and the
    sums of its frames (nav) and pixels (sig)."""

    def __init__(self, backends=("numpy",), expected="numpy", method="tile"):
        super().__init__(backends=backends, expected=expected, method=method)

    def get_backends(self):
        return self.params.backends

    def get_method(self):
        return self.params.method

    def get_result_buffers(self):
        return {"ok": self.buffer(kind="nav", dtype="int8"),
                "rows": self.buffer(kind="nav", dtype="float64"),
                "cols": self.buffer(kind="sig", dtype="float64")}

    def _take(self, data, frames: int):
        backend = self.meta.array_backend
        sig_part = tuple(self.meta.sig_slice.shape) if self.params.method != "partition" \
            else tuple(self.meta.dataset_shape.sig)
        want = ((frames, prod(sig_part)) if backend in backends_mod.D2_BACKENDS
                else (frames,) + sig_part)
        if self.params.method == "frame" and backend not in backends_mod.D2_BACKENDS:
            want = sig_part
        ok = (backend == self.params.expected and _type_ok(data, backend)
              and tuple(data.shape) == want)
        dense = _dense(data, backend).reshape((frames,) + sig_part)
        self.results.ok[:] = np.int8(ok)
        self.results.rows[:] += dense.reshape(frames, -1).sum(axis=1)
        self.results.cols[:] += dense.sum(axis=0)

    def process_tile(self, tile):
        self._take(tile, tile.shape[0])

    def process_frame(self, frame):
        self._take(frame, 1)

    def process_partition(self, partition):
        self._take(partition, partition.shape[0])

    def merge(self, dest, src):
        dest.ok[:] = src.ok
        dest.rows[:] = src.rows
        dest.cols += src.cols


def expected_backends(lists, native) -> list:
    """The documented rule (validation.choose_backends), restated: the first native form in
    the UDF's order, else the form most such UDFs list, ties in the UDF's order."""
    chosen = [next((b for b in lst if b in native), None) for lst in lists]
    votes = {}
    for lst, c in zip(lists, chosen):
        if c is None:
            for b in lst:
                votes[b] = votes.get(b, 0) + 1
    out = []
    for lst, c in zip(lists, chosen):
        if c is None:
            best = max(votes[b] for b in lst)
            c = next(b for b in lst if votes[b] == best)
        out.append(c)
    return out


# -- data ----------------------------------------------------------------------------------------

def sparse_scan(rng, nav, sig, dtype, density):
    frames = (rng.random((prod(nav), prod(sig))) < density) * rng.integers(1, 9, (prod(nav), prod(sig)))
    return frames.astype(dtype).reshape(tuple(nav) + tuple(sig))


def write_raw_csr(directory, data, sig_dims=2) -> str:
    nav, sig = data.shape[:-sig_dims], data.shape[-sig_dims:]
    m = scipy.sparse.csr_matrix(data.reshape(prod(nav), prod(sig)))
    files = ("indptr.raw", "indices.raw", "values.raw")
    for name, arr in zip(files, (m.indptr, m.indices, m.data)):
        arr.tofile(os.path.join(directory, name))
    return write_descriptor(os.path.join(directory, "scan.toml"), nav_shape=nav, sig_shape=sig,
                            files=files, dtypes=(m.indptr.dtype, m.indices.dtype, m.data.dtype))


@st.composite
def cases(draw):
    nav = draw(st.sampled_from([(5,), (3, 4), (2, 5)]))
    sig = draw(st.sampled_from([(4, 4), (3, 5), (6, 2)]))
    dtype = draw(st.sampled_from(["uint16", "float32", "int32"]))
    seed = draw(st.integers(0, 2**16))
    density = draw(st.sampled_from([0.0, 0.05, 0.3, 1.0]))
    data = sparse_scan(np.random.default_rng(seed), nav, sig, dtype, density)
    roi = None
    if draw(st.booleans()):
        roi = np.random.default_rng(seed + 1).random(nav) < 0.5
    probes = draw(st.lists(st.tuples(
        st.lists(st.sampled_from(CPU), min_size=1, max_size=3, unique=True),
        st.sampled_from(["tile", "frame", "partition"])), min_size=1, max_size=3))
    return data, roi, probes, draw(st.integers(1, 3))


def run_probes(ctx, data, roi, probes, partitions, tmpdir):
    """Run the probes on the dense and the sparse data set; check backends and sums."""
    datasets = {"dense": (ctx.load("memory", data=data, num_partitions=partitions), DENSE_NATIVE),
                "sparse": (ctx.load("raw_csr", path=write_raw_csr(tmpdir, data),
                                    num_partitions=partitions), CSR_NATIVE)}
    nav, sig = data.shape[:-2], data.shape[-2:]
    flat = data.reshape(prod(nav), *sig).astype(np.float64)
    sel = np.ones(prod(nav), bool) if roi is None else roi.reshape(-1)
    for name, (ds, native) in datasets.items():
        wanted = expected_backends([lst for lst, _ in probes], native)
        udfs = [Probe(backends=tuple(lst), expected=exp, method=method)
                for (lst, method), exp in zip(probes, wanted)]
        plan = ctx.plan(ds, udfs, roi=roi)
        assert [u.array_backend for u in plan.udfs] == wanted, name
        for res, udf in zip(ctx.run_udf(dataset=ds, udf=udfs, roi=roi), udfs):
            where = f"{name} data set, {udf.params.method} {udf.params.backends}"
            assert res["ok"].raw_data.all(), where
            np.testing.assert_array_equal(res["rows"].raw_data, flat[sel].sum(axis=(1, 2)),
                                          err_msg=where)
            np.testing.assert_array_equal(res["cols"].data, flat[sel].sum(axis=0), err_msg=where)


# -- properties ----------------------------------------------------------------------------------

@settings(max_examples=examples(6), deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(case=cases(), debug=st.booleans())
def test_each_udf_gets_its_backend(case, debug):
    """Every UDF gets the form the rule gives it, of the right type and shape, in every
    process method, with and without ROI, on dense and sparse data; its sums equal numpy's
    (``debug``: the inline executor pickles every task and result)."""
    data, roi, probes, partitions = case
    with tempfile.TemporaryDirectory() as tmpdir:
        run_probes(Context.make_with("inline", debug=debug), data, roi, probes, partitions, tmpdir)


@settings(max_examples=examples(5), deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(case=cases())
def test_backends_on_threads(case):
    data, roi, probes, partitions = case
    with tempfile.TemporaryDirectory() as tmpdir:
        run_probes(shared_context("threads"), data, roi, probes, partitions, tmpdir)


def test_backends_on_processes(tmp_path):
    """One case on worker processes: the sparse tiles are made on the worker, the choice
    travels in the task."""
    data = sparse_scan(np.random.default_rng(3), (4, 5), (6, 6), "uint16", 0.1)
    roi = np.random.default_rng(4).random((4, 5)) < 0.6
    probes = [(["sparse.GCXS", "numpy"], "tile"), (["scipy.sparse.csr_matrix"], "frame"),
              (["numpy"], "tile"), (["scipy.sparse.coo_array", "sparse.COO"], "partition")]
    run_probes(shared_context("processes"), data, roi, probes, 3, tmp_path)


def test_stack_of_raw_csr_on_processes(tmp_path):
    """A stack of raw_csr data sets on worker processes: its partitions travel with their
    member partitions, and each UDF gets the form the rule gives it for CSR rows, with sums
    equal to numpy's."""
    data = sparse_scan(np.random.default_rng(5), (6, 5), (6, 6), "uint16", 0.1)
    members = []
    for i, part in enumerate((data[:2], data[2:])):
        (tmp_path / str(i)).mkdir()
        members.append({"filetype": "raw_csr", "path": write_raw_csr(tmp_path / str(i), part)})
    ctx = shared_context("processes")
    ds = ctx.load("stack", datasets=members, nav_shape=(6, 5), num_partitions=3)
    roi = np.random.default_rng(6).random((6, 5)) < 0.7
    lists = [["scipy.sparse.csr_matrix", "numpy"], ["sparse.COO"], ["numpy"]]
    wanted = expected_backends(lists, CSR_NATIVE)
    assert wanted[0] == "scipy.sparse.csr_matrix"
    udfs = [Probe(backends=tuple(lst), expected=exp, method="tile") for lst, exp in zip(lists, wanted)]
    flat = data.reshape(30, 6, 6).astype(np.float64)
    sel = roi.reshape(-1)
    for res in ctx.run_udf(dataset=ds, udf=udfs, roi=roi):
        assert res["ok"].raw_data.all()
        np.testing.assert_array_equal(res["rows"].raw_data, flat[sel].sum(axis=(1, 2)))
        np.testing.assert_array_equal(res["cols"].data, flat[sel].sum(axis=0))


# -- the built-ins ------------------------------------------------------------------------------

def builtins():
    masks = [lambda: np.ones((6, 7)), lambda: np.arange(42.0).reshape(6, 7) % 3 == 0,
             lambda: scipy.sparse.csr_matrix(np.eye(6, 7))]
    return [SumUDF(), SumSigUDF(), StdDevUDF(), PickUDF(), ApplyMasksUDF(mask_factories=masks),
            ApplyMasksUDF(mask_factories=[lambda: scipy.sparse.csr_matrix(np.eye(6, 7))]),
            ApplyMasksUDF(mask_factories=masks, use_sparse="sparse.pydata"),
            CoMUDF.with_params(cy=2.5, cx=3.0, r=2.5)]


SPARSE_PATH = {"SumUDF", "SumSigUDF", "StdDevUDF", "PickUDF", "ApplyMasksUDF", "CoMUDF"}


@settings(max_examples=examples(10), deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 2**16), dtype=st.sampled_from(["uint16", "float32", "int32"]),
       density=st.sampled_from([0.0, 0.01, 0.2]), use_roi=st.booleans(),
       partitions=st.integers(1, 3), executor=st.sampled_from(["inline", "threads"]))
def test_builtins_equal_on_dense_and_sparse(seed, dtype, density, use_roi, partitions, executor):
    """SumUDF, SumSigUDF, StdDevUDF, PickUDF, ApplyMasksUDF (dense, scipy and pydata masks)
    and CoMUDF take CSR rows from a raw_csr file and numpy tiles from memory; results are
    equal, and equal numpy where numpy says it in one line."""
    rng = np.random.default_rng(seed)
    data = sparse_scan(rng, (3, 4), (6, 7), dtype, density)
    roi = rng.random((3, 4)) < 0.5 if use_roi else None
    ctx = Context.make_with("inline") if executor == "inline" else shared_context("threads")
    with tempfile.TemporaryDirectory() as tmpdir:
        dense_ds = ctx.load("memory", data=data, num_partitions=partitions)
        sparse_ds = ctx.load("raw_csr", path=write_raw_csr(tmpdir, data), num_partitions=partitions)
        plan = ctx.plan(sparse_ds, builtins(), roi=roi)
        for u in plan.udfs:
            assert u.array_backend == ("scipy.sparse.csr_matrix" if u.name in SPARSE_PATH
                                       else "numpy"), u.name
        assert {u.array_backend for u in ctx.plan(dense_ds, builtins(), roi=roi).udfs} == {"numpy"}
        got = ctx.run_udf(dataset=sparse_ds, udf=builtins(), roi=roi)
    ref = ctx.run_udf(dataset=dense_ds, udf=builtins(), roi=roi)
    for udf, r, g in zip(builtins(), ref, got):
        assert r.keys() == g.keys()
        for name in r:
            assert g[name].data.dtype == r[name].data.dtype, (type(udf).__name__, name)
            np.testing.assert_allclose(g[name].data, r[name].data, rtol=1e-6, atol=1e-9,
                                       err_msg=f"{type(udf).__name__} {name}")
    frames = data.reshape(12, 6, 7).astype(np.float64)[
        slice(None) if roi is None else roi.reshape(-1)]
    np.testing.assert_array_equal(got[0]["intensity"].data, frames.sum(axis=0))
    np.testing.assert_array_equal(got[1]["intensity"].raw_data, frames.sum(axis=(1, 2)))
    np.testing.assert_allclose(got[2]["var"].data, frames.var(axis=0) if len(frames) else np.nan,
                               rtol=1e-9, atol=1e-9)
    np.testing.assert_array_equal(got[3]["intensity"].data, frames.astype(data.dtype))


def test_stats_udf_stays_dense(tmp_path):
    """StatsUDF's minimum and maximum need every pixel: numpy tiles, also from raw_csr."""
    data = sparse_scan(np.random.default_rng(0), (2, 3), (4, 4), "uint16", 0.2)
    ctx = Context.make_with("inline")
    ds = ctx.load("raw_csr", path=write_raw_csr(tmp_path, data))
    assert ctx.plan(ds, [StatsUDF(), SumUDF()]).udfs[0].array_backend == "numpy"
    res = ctx.run_udf(dataset=ds, udf=[StatsUDF(), SumUDF()])
    np.testing.assert_array_equal(res[0]["min"].data, data.reshape(6, 4, 4).min(axis=0))


# -- conversions and errors ----------------------------------------------------------------------

@pytest.mark.parametrize("source", CPU)
@pytest.mark.parametrize("target", CPU)
def test_convert_tile_round_trips(source, target):
    """Every pair of forms: converting keeps the values; scipy results are 2D, others nD."""
    arr = sparse_scan(np.random.default_rng(1), (3,), (2, 5), "float32", 0.3)
    src = backends_mod.convert_tile(arr, "numpy", source, arr.shape)
    out = backends_mod.convert_tile(src, source, target, arr.shape)
    assert _type_ok(out, target)
    assert out.shape == ((3, 10) if target in backends_mod.D2_BACKENDS else arr.shape)
    np.testing.assert_array_equal(_dense(out, target).reshape(arr.shape), arr)


def test_unknown_backend_names_udf_backend_and_known_ones():
    ctx = Context.make_with("inline")
    ds = ctx.load("memory", data=np.zeros((2, 4, 4), "float32"))
    with pytest.raises(UDFError, match=r"Probe\.get_backends\(\) returned unknown backends "
                                       r"\['scipy\.sparse\.bsr_matrix'\]; the known ones are .*"
                                       r"'numpy'.*'sparse\.GCXS'"):
        ctx.run_udf(dataset=ds, udf=Probe(backends=("scipy.sparse.bsr_matrix", "numpy")))


def test_gpu_only_backend_is_refused():
    ctx = Context.make_with("inline")
    ds = ctx.load("memory", data=np.zeros((2, 4, 4), "float32"))
    with pytest.raises(UDFError, match=r"Probe\.get_backends\(\) returned \['cupy'\], but udfkit "
                                       r"runs UDFs on the CPU"):
        ctx.run_udf(dataset=ds, udf=Probe(backends=("cupy",)))


def test_sparse_tiles_are_never_densified(tmp_path, monkeypatch):
    """On raw_csr, a run of sparse-path UDFs only reads CSR rows: the dense tile path and the
    densifier are never called."""
    from udfkit.io.formats import _csr
    from udfkit.io.formats.raw_csr import CSRPartition

    def fail(*args, **kwargs):
        raise AssertionError("densified")

    monkeypatch.setattr(CSRPartition, "get_tiles", fail)
    monkeypatch.setattr(_csr.CSRDensifier, "__call__", fail)
    data = sparse_scan(np.random.default_rng(2), (4, 4), (6, 7), "uint16", 0.05)
    ctx = Context.make_with("inline")
    ds = ctx.load("raw_csr", path=write_raw_csr(tmp_path, data), num_partitions=2)
    res = ctx.run_udf(dataset=ds, udf=[SumUDF(), ApplyMasksUDF(mask_factories=[lambda: np.ones((6, 7))])])
    np.testing.assert_array_equal(res[0]["intensity"].data, data.sum(axis=(0, 1)))
    np.testing.assert_array_equal(res[1]["intensity"].data[..., 0], data.sum(axis=(2, 3)))


class TileDepth(UDF):
    """Each frame records the depth of the tile it came in."""

    def get_backends(self):
        return self.params.backends

    def __init__(self, backends=("scipy.sparse.csr_matrix",)):
        super().__init__(backends=backends)

    def get_result_buffers(self):
        return {"depth": self.buffer(kind="nav", dtype="int64")}

    def process_tile(self, tile):
        self.results.depth[:] = tile.shape[0]


@pytest.mark.parametrize("with_dense", [False, True])
def test_sparse_tiles_are_deeper_unless_a_dense_udf_keeps_pace(tmp_path, with_dense):
    """Sparse-only runs get tiles of many frames (a tile costs its entries, not its frames);
    with a dense UDF in the run they stay at the scheme's depth, the dense UDF's tiles."""
    data = sparse_scan(np.random.default_rng(5), (32, 32), (64, 64), "uint16", 0.001)
    ctx = Context.make_with("inline")
    ds = ctx.load("raw_csr", path=write_raw_csr(tmp_path, data), num_partitions=1)
    udfs = [TileDepth()] + ([TileDepth(backends=("numpy",))] if with_dense else [])
    scheme_depth = ctx.plan(ds, udfs).scheme.depth
    assert scheme_depth < 1024
    res = ctx.run_udf(dataset=ds, udf=udfs)
    depths = {int(d) for d in np.unique(res[0]["depth"].data)}
    assert depths == ({scheme_depth} if with_dense else {1024})


def test_plan_says_which_udfs_get_sparse_tiles(tmp_path):
    data = sparse_scan(np.random.default_rng(6), (2, 3), (4, 4), "uint16", 0.2)
    ctx = Context.make_with("inline")
    ds = ctx.load("raw_csr", path=write_raw_csr(tmp_path, data))
    plan = ctx.plan(ds, [SumUDF(), StatsUDF(), Probe(backends=("sparse.COO",))])
    assert plan.reasons["array backend of SumUDF"].startswith(
        "scipy.sparse.csr_matrix, the first form it lists that the data set gives as it is")
    assert plan.reasons["array backend of Probe"].startswith("sparse.COO, converted from each tile")
    assert "array backend of StatsUDF" not in plan.reasons
    assert "array backend of SumUDF: scipy.sparse.csr_matrix" in str(plan)
    dense = ctx.plan(ctx.load("memory", data=data), [SumUDF()])
    assert not any(k.startswith("array backend") for k in dense.reasons)


def test_corrections_give_sparse_udfs_converted_corrected_tiles(tmp_path):
    """Corrected frames are dense (dark subtracted everywhere): with corrections the raw_csr
    stream is dense, and UDFs on a sparse backend get each corrected tile converted."""
    from udfkit.io.corrections import CorrectionSet

    data = sparse_scan(np.random.default_rng(7), (3, 4), (5, 6), "uint16", 0.1)
    dark = np.random.default_rng(8).random((5, 6)).astype(np.float32)
    ctx = Context.make_with("inline")
    udfs = [SumUDF(), StdDevUDF(), Probe(backends=("scipy.sparse.csr_matrix",),
                                         expected="scipy.sparse.csr_matrix")]
    res = ctx.run_udf(dataset=ctx.load("raw_csr", path=write_raw_csr(tmp_path, data),
                                       num_partitions=2),
                      udf=udfs, corrections=CorrectionSet(dark=dark))
    corrected = data.reshape(12, 5, 6) - dark
    np.testing.assert_allclose(res[0]["intensity"].data, corrected.sum(axis=0), rtol=1e-6)
    np.testing.assert_allclose(res[1]["var"].data, corrected.var(axis=0), rtol=1e-5, atol=1e-6)
    assert res[2]["ok"].raw_data.all()
    np.testing.assert_allclose(res[2]["cols"].data, corrected.sum(axis=0), rtol=1e-6)
