"""``ctx.export`` to hdf5, zarr and Thunder binary stacks (besides npy/raw).

Every written target is read back with an independent reader (h5py, zarr, numpy) and
compared with numpy's view of the source: with and without ROI, with ``sync_offset`` both
ways, on every executor, with chunks that straddle partitions. Then: options and their
errors, overwrite, no spool files or file handles left behind (also when a run fails), the
CLI, LiberTEM's ``export_dataset`` and Thunder's real binary stack.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import h5py
import numpy as np
import pytest

from udfkit import Context
from udfkit.cli import main as cli_main
from udfkit.errors import UDFError, UdfkitError
from udfkit.testing import SharedContexts
from udfkit.udf import RecordUDF, SumUDF

NAV = (5, 7)
SIG = (4, 6)
FIXTURES = Path(__file__).parents[2] / ".." / "shared" / "fixtures"

shared = SharedContexts({"inline-debug": ("inline", {"debug": True}),
                         "threads": ("threads", {"cpus": 2}),
                         "processes": ("processes", {"cpus": 2}),
                         "dask": ("dask", {"cpus": 2})})
_close_shared_contexts = shared.closing_fixture()

#: target name → (file name, export keywords); chunks are chosen to straddle partitions
TARGETS = {
    "npy": ("t.npy", {}),
    "raw": ("t.dat", {}),
    "hdf5": ("t.h5", {}),
    "hdf5-gzip": ("t.h5", {"compression": "gzip", "ds_path": "/entry/data"}),
    "hdf5-lzf-chunks": ("t.hdf5", {"compression": "lzf", "chunks": (2, 3, 4, 6)}),
    "hdf5-zstd": ("t.h5", {"compression": "zstd:5"}),
    "hdf5-blosc-sigchunks": ("t.h5", {"compression": "blosc", "chunks": (1, 4, 2, 3)}),
    "hdf5-chunked-plain": ("t.h5", {"chunks": (1, 2, 4, 6)}),
    "zarr": ("t.zarr", {}),
    "zarr-blosc-chunks": ("t.zarr", {"compression": "blosc", "chunks": (2, 3, 3, 6),
                                     "array_path": "g/arr"}),
    "zarr2-gzip": ("t.zarr", {"compression": "gzip:3", "zarr_format": 2}),
    "binary": ("stack", {"format": "binary"}),
}


def _source(ctx, kind, tmp_path, dtype):
    """``(dataset, flat frames as udfkit sees them or None where missing, roi)``."""
    n = int(np.prod(NAV))
    data = (np.arange(n * int(np.prod(SIG))) % 251).astype(dtype).reshape(NAV + SIG)
    flat = data.reshape((n,) + SIG)
    if kind == "memory":
        return ctx.load("memory", data=data, num_partitions=3), flat, None
    path = tmp_path / "src.raw"
    data.tofile(path)
    sync = {"raw": 0, "raw-roi": 0, "raw-sync+": 3, "raw-sync-": -2}[kind]
    ds = ctx.load("raw", path=str(path), dtype=dtype, nav_shape=NAV, sig_shape=SIG,
                  sync_offset=sync, num_partitions=4)
    frames = [None] * n
    for i in range(n):
        j = i + sync
        if 0 <= j < n:
            frames[i] = flat[j]
    roi = None
    if kind == "raw-roi":
        roi = np.zeros(NAV, dtype=bool)
        roi.flat[[0, 1, 2, 9, 10, 11, 12, 13, 20, 33, 34]] = True
    return ds, frames, roi


def _expected(frames, roi, dtype):
    """What the export must hold: the nav shape when every frame is there, else (n, *sig)."""
    keep = [i for i, f in enumerate(frames) if f is not None and (roi is None or roi.flat[i])]
    out = np.stack([frames[i] for i in keep]).astype(np.dtype(dtype).newbyteorder("="))
    if len(keep) == len(frames):
        return out.reshape(NAV + SIG)
    return out


def _read_back(path, name, kwargs):
    """The written array, read with an independent reader."""
    path = str(path)
    if name == "npy":
        return np.load(path)
    if name == "raw":
        with open(path + ".json") as f:
            side = json.load(f)
        return np.fromfile(path, dtype=side["dtype"]).reshape(side["nav_shape"] + side["sig_shape"])
    if name.startswith("hdf5"):
        with h5py.File(path, "r") as f:
            return f[kwargs.get("ds_path", "data")][()]
    if name.startswith("zarr"):
        import zarr

        return zarr.open_array(store=path, path=kwargs.get("array_path", "data"), mode="r")[...]
    with open(os.path.join(path, "conf.json")) as f:
        conf = json.load(f)
    names = sorted(n for n in os.listdir(path) if n.endswith(".bin"))
    assert os.path.exists(os.path.join(path, "SUCCESS"))
    return np.stack([np.fromfile(os.path.join(path, n), dtype=conf["dtype"]).reshape(conf["shape"])
                     for n in names])


def _check_clean(tmp_path, target):
    """Only the source and the target (and a raw sidecar) are left: no spool files."""
    left = sorted(os.listdir(tmp_path))
    allowed = {"src.raw", target, target + ".json"}
    assert set(left) <= allowed, left


def _export_and_check(ctx, tmp_path, source, target, dtype="uint16"):
    name, kwargs = TARGETS[target][0], dict(TARGETS[target][1])
    ds, frames, roi = _source(ctx, source, tmp_path, dtype)
    if "chunks" in kwargs and (roi is not None or source.startswith("raw-sync")):
        # the frames are written as (n, *sig): chunks of an odd number of frames
        c = kwargs["chunks"]
        kwargs["chunks"] = (c[0] * c[1] + 1,) + c[2:]
    out = ctx.export(ds, tmp_path / name, roi=roi, **kwargs)
    assert out == tmp_path / name
    got = _read_back(out, target, kwargs)
    want = _expected(frames, roi, dtype)
    if target == "binary":  # a stack of images: the nav shape is not kept
        want = want.reshape((-1,) + SIG)
    assert got.shape == want.shape
    assert got.dtype == want.dtype
    np.testing.assert_array_equal(got, want)
    _check_clean(tmp_path, name)
    return out


@pytest.mark.parametrize("target", list(TARGETS))
@pytest.mark.parametrize("source, dtype", [("memory", "uint16"), ("raw", ">i4"),
                                           ("raw-roi", "float32"), ("raw-sync+", "uint8"),
                                           ("raw-sync-", "int16")])
def test_roundtrip_inline(tmp_path, source, dtype, target):
    _export_and_check(shared("inline-debug"), tmp_path, source, target, dtype)


@pytest.mark.parametrize("target", ["hdf5", "hdf5-gzip", "hdf5-lzf-chunks", "zarr",
                                    "zarr-blosc-chunks", "binary", "npy"])
@pytest.mark.parametrize("executor", ["threads", "processes", "dask"])
def test_roundtrip_executors(tmp_path, executor, target):
    _export_and_check(shared(executor), tmp_path, "raw-roi", target, ">u2")


@pytest.mark.parametrize("target", ["hdf5-zstd", "zarr2-gzip", "hdf5-chunked-plain"])
def test_roundtrip_processes_full_shape(tmp_path, target):
    # no ROI: the written array has the nav shape, and chunks straddle the 3 partitions
    _export_and_check(shared("processes"), tmp_path, "memory", target, "complex64")


def test_hdf5_layouts(tmp_path):
    ctx = shared("inline-debug")
    ds, _, _ = _source(ctx, "memory", tmp_path, "uint16")
    plain = ctx.export(ds, tmp_path / "plain.h5")
    packed = ctx.export(ds, tmp_path / "packed.h5", compression="gzip:7")
    with h5py.File(plain, "r") as f:
        d = f["data"]
        # contiguous and allocated: readers map it without decoding
        assert d.chunks is None and d.compression is None and d.id.get_offset() is not None
    with h5py.File(packed, "r") as f:
        d = f["data"]
        assert d.chunks == (1, 7, 4, 6)  # whole frames, one nav row (< 1 MiB)
        assert (d.compression, d.compression_opts) == ("gzip", 7)


def test_exports_load_back_with_udfkit(tmp_path):
    """udfkit's own readers take the exports (and agree with the data)."""
    ctx = shared("inline-debug")
    ds, frames, _ = _source(ctx, "memory", tmp_path, "uint16")
    want = _expected(frames, None, "uint16")
    ref = want.reshape(-1, *SIG).sum(axis=0)
    loads = {
        "a.h5": {"filetype": "hdf5", "ds_path": "/entry/data"},
        "b.h5": {"filetype": "hdf5"},
        "c.zarr": {"filetype": "zarr"},
        "stack": {"filetype": "binary", "nav_shape": NAV},
    }
    ctx.export(ds, tmp_path / "a.h5", ds_path="entry/data")
    ctx.export(ds, tmp_path / "b.h5", compression="gzip")
    ctx.export(ds, tmp_path / "c.zarr", compression="zstd")
    ctx.export(ds, tmp_path / "stack", format="binary")
    for name, params in loads.items():
        params = dict(params)
        again = ctx.load(params.pop("filetype"), path=str(tmp_path / name), **params)
        assert again.shape.to_tuple() == NAV + SIG, name
        res = ctx.run_udf(dataset=again, udf=SumUDF())
        np.testing.assert_array_equal(res["intensity"].data, ref, err_msg=name)


def test_chunks_larger_than_the_array_and_one_frame(tmp_path):
    ctx = shared("inline-debug")
    data = np.arange(3 * 2 * 2, dtype="int32").reshape(3, 2, 2)
    ds = ctx.load("memory", data=data, sig_dims=2, num_partitions=2)
    for name in ("big.h5", "big.zarr"):
        out = ctx.export(ds, tmp_path / name, chunks=(100, 100, 100))
        np.testing.assert_array_equal(_read_back(out, "hdf5" if name.endswith("h5") else "zarr",
                                                 {}), data)
    one = ctx.load("memory", data=data[:1], sig_dims=2)
    out = ctx.export(one, tmp_path / "one.h5", compression="lzf")
    np.testing.assert_array_equal(_read_back(out, "hdf5", {}), data[:1])


def test_empty_roi(tmp_path):
    ctx = shared("inline-debug")
    ds, _, _ = _source(ctx, "memory", tmp_path, "uint16")
    roi = np.zeros(NAV, dtype=bool)
    for name, kwargs in [("e.npy", {}), ("e.h5", {}), ("g.h5", {"compression": "gzip"}),
                         ("e.zarr", {}), ("s", {"format": "binary"})]:
        out = ctx.export(ds, tmp_path / name, roi=roi, **kwargs)
        assert os.path.exists(out)
    assert np.load(tmp_path / "e.npy").shape == (0,) + SIG
    for name in ("e.h5", "g.h5"):
        with h5py.File(tmp_path / name, "r") as f:
            assert f["data"].shape == (0,) + SIG
    assert json.loads((tmp_path / "s" / "conf.json").read_text())["shape"] == list(SIG)


# -- options and their errors ---------------------------------------------------------------

@pytest.mark.parametrize("kwargs, needle", [
    ({"format": "tiff"}, "format must be one of"),
    ({"format": "hdf5", "compression": "szip"}, "'gzip', 'lzf', 'zstd', 'blosc'"),
    ({"format": "zarr", "compression": "lzf"}, "'gzip', 'zstd', 'blosc'"),
    ({"format": "npy", "compression": "gzip"}, "cannot be compressed"),
    ({"format": "hdf5", "compression": "gzip:12"}, "level in 0..9"),
    ({"format": "hdf5", "compression": "lzf:3"}, "takes no level"),
    ({"format": "hdf5", "compression": 4}, "compression must be a name"),
    ({"format": "raw", "chunks": (1, 2)}, "not chunked"),
    ({"format": "hdf5", "chunks": (0, 2)}, "positive ints"),
    ({"format": "hdf5", "chunks": "big"}, "positive ints"),
    ({"format": "zarr", "zarr_format": 4}, "zarr_format must be 2 or 3"),
    ({"format": "binary", "ds_path": "x"}, "binary format has none"),
    ({"format": "hdf5", "ds_path": "a/../b"}, "ds_path must be a name"),
])
def test_bad_options(tmp_path, kwargs, needle):
    with pytest.raises(UDFError, match=None) as info:
        RecordUDF(path=tmp_path / "t", **kwargs)
    assert needle in str(info.value)
    assert os.listdir(tmp_path) == []


def test_bad_options_through_export(tmp_path):
    ctx = shared("inline-debug")
    ds, _, _ = _source(ctx, "memory", tmp_path, "uint16")
    with pytest.raises(UDFError, match="compression for zarr"):
        ctx.export(ds, tmp_path / "x.zarr", compression="lzf")
    with pytest.raises(UDFError, match="same thing"):
        ctx.export(ds, tmp_path / "x.h5", ds_path="a", array_path="b")
    os.mkdir(tmp_path / "adir")
    with pytest.raises(UDFError, match="format='binary'"):
        ctx.export(ds, tmp_path / "adir")
    with pytest.raises(UDFError, match="chunks .* one entry per axis"):
        ctx.export(ds, tmp_path / "x.h5", chunks=(1, 2))
    assert sorted(os.listdir(tmp_path)) == ["adir"]


def test_missing_zarr_names_the_extra(monkeypatch, tmp_path):
    import builtins

    real_import = builtins.__import__

    def no_zarr(name, *args, **kwargs):
        if name == "zarr" or name.startswith("zarr."):
            raise ImportError("No module named 'zarr'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_zarr)
    monkeypatch.delitem(__import__("sys").modules, "zarr", raising=False)
    with pytest.raises(UDFError) as info:
        RecordUDF(path=tmp_path / "x.zarr")
    msg = str(info.value)
    assert "pip install 'udfkit[zarr]'" in msg and "\n" not in msg


@pytest.mark.parametrize("target", ["hdf5-gzip", "zarr", "binary", "hdf5"])
def test_existing_target_refused_then_overwritten(tmp_path, target):
    ctx = shared("inline-debug")
    ds, frames, _ = _source(ctx, "memory", tmp_path, "uint16")
    name, kwargs = TARGETS[target]
    out = ctx.export(ds, tmp_path / name, **kwargs)
    before = sorted(os.listdir(tmp_path))
    with pytest.raises(FileExistsError, match="overwrite=True"):
        ctx.export(ds, out, **kwargs)
    assert sorted(os.listdir(tmp_path)) == before
    roi = np.zeros(NAV, dtype=bool)
    roi.flat[3:5] = True
    ctx.export(ds, out, roi=roi, overwrite=True, **kwargs)
    np.testing.assert_array_equal(_read_back(out, target, kwargs), _expected(frames, roi, "uint16"))
    if target == "binary":  # the old stack's surplus files are gone
        assert len([n for n in os.listdir(out) if n.endswith(".bin")]) == 2
    _check_clean(tmp_path, name)


def test_overwrite_keeps_foreign_directories(tmp_path):
    ctx = shared("inline-debug")
    ds, _, _ = _source(ctx, "memory", tmp_path, "uint16")
    foreign = tmp_path / "mine.zarr"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("keep me")
    with pytest.raises(UDFError, match="not a zarr store"):
        ctx.export(ds, foreign, overwrite=True)
    assert (foreign / "notes.txt").read_text() == "keep me"
    # a binary export into a directory with other files replaces only the stack's files
    stack = tmp_path / "stack"
    stack.mkdir()
    (stack / "notes.txt").write_text("keep me")
    ctx.export(ds, stack, format="binary", overwrite=True)
    assert (stack / "notes.txt").read_text() == "keep me"
    # an empty directory is a fine target without overwrite
    (tmp_path / "empty").mkdir()
    ctx.export(ds, tmp_path / "empty", format="binary")
    assert len(list((tmp_path / "empty").glob("*.bin"))) == 35


def test_own_source_refused(tmp_path):
    ctx = shared("inline-debug")
    ds, _, _ = _source(ctx, "memory", tmp_path, "uint16")
    ctx.export(ds, tmp_path / "s.h5")
    ctx.export(ds, tmp_path / "stack", format="binary")
    for path, params in [(tmp_path / "s.h5", {}), (tmp_path / "stack", {"format": "binary"})]:
        src = ctx.load("auto", path=str(path))
        before = sorted(os.listdir(tmp_path))
        with pytest.raises(UDFError, match="file of the data set"):
            ctx.export(src, path, overwrite=True, **params)
        assert sorted(os.listdir(tmp_path)) == before


# -- failures leave nothing behind ----------------------------------------------------------

def _open_files(under):
    """This process's open file descriptors that point under the folder ``under``."""
    out = []
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:  # closed meanwhile (the listing's own fd)
            continue
        if target.startswith(str(under)):
            out.append(target)
    return out


class _FailOnSecondPartition(SumUDF):
    def process_tile(self, tile):
        if int(self.meta.frame_index[0]) >= 12:
            raise RuntimeError("boom in partition 2")
        super().process_tile(tile)


@pytest.mark.parametrize("executor, target", [("inline-debug", "hdf5-gzip"), ("inline-debug", "zarr"),
                                              ("inline-debug", "hdf5"), ("processes", "hdf5-gzip")])
def test_failed_run_leaves_no_spool_or_handles(tmp_path, executor, target):
    ctx = shared(executor)
    name, kwargs = TARGETS[target]
    ds, frames, _ = _source(ctx, "raw", tmp_path, "uint16")
    # RecordUDF run directly next to a UDF that fails: the spool stays, as documented ...
    with pytest.raises(RuntimeError, match="boom"):
        ctx.run_udf(dataset=ds, udf=[RecordUDF(path=tmp_path / name, **kwargs),
                                     _FailOnSecondPartition()])
    # ... and the next export to the same target removes it
    out = ctx.export(ds, tmp_path / name, overwrite=True, **kwargs)
    np.testing.assert_array_equal(_read_back(out, target, kwargs), _expected(frames, None, "uint16"))
    _check_clean(tmp_path, name)
    # ctx.export itself cleans up when the data set fails under it
    os.truncate(tmp_path / "src.raw", 10 * int(np.prod(SIG)) * 2)
    with pytest.raises(UdfkitError):
        ctx.export(ds, tmp_path / name, overwrite=True, **kwargs)
    _check_clean(tmp_path, name)
    # (the processes executor's own pipes come and go as it replaces workers: count files)
    assert _open_files(tmp_path) == []


def test_spool_directory_is_hidden_next_to_target(tmp_path):
    from udfkit.udf.builtins._export_chunked import spool_dir

    assert spool_dir(str(tmp_path / "a.zarr")) == str(tmp_path / ".a.zarr.udfkit-spool")
    assert spool_dir(str(tmp_path / "a.zarr") + "/") == str(tmp_path / ".a.zarr.udfkit-spool")


# -- command line, LiberTEM's name, Thunder's data ------------------------------------------

@pytest.mark.parametrize("args, target", [(["--compression", "gzip:2"], "o.h5"),
                                          (["--compression", "zstd"], "o.zarr"),
                                          (["--format", "binary"], "o")])
def test_cli_export(tmp_path, capsys, monkeypatch, args, target):
    # the command's default Context would start worker processes: inline is enough here
    monkeypatch.setattr("udfkit.api.Context", lambda: Context.make_with("inline"))
    data = (np.arange(2 * 3 * 4 * 5) % 7).astype("uint16").reshape(2, 3, 4, 5)
    np.save(tmp_path / "src.npy", data)
    code = cli_main(["export", str(tmp_path / "src.npy"), "-o",
                     str(tmp_path / target), "--no-progress", *args])
    out, err = capsys.readouterr()
    assert code == 0, err
    assert "wrote" in out
    kind = "hdf5" if target.endswith("h5") else "zarr" if target.endswith("zarr") else "binary"
    got = _read_back(tmp_path / target, kind, {})
    np.testing.assert_array_equal(got.reshape(data.shape), data)


def test_cli_export_bad_compression(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr("udfkit.api.Context", lambda: Context.make_with("inline"))
    np.save(tmp_path / "src.npy", np.zeros((2, 2, 3, 3), dtype="uint8"))
    code = cli_main(["export", str(tmp_path / "src.npy"), "-o",
                     str(tmp_path / "o.h5"), "--compression", "bzip2"])
    err = capsys.readouterr().err
    assert code != 0 and "compression for hdf5 must be one of" in err
    assert not (tmp_path / "o.h5").exists()


def test_export_dataset_as_in_libertem(tmp_path):
    ctx = shared("inline-debug")
    ds, frames, _ = _source(ctx, "memory", tmp_path, "uint16")
    out = ctx.export_dataset(ds, path=tmp_path / "d.npy", progress=False, overwrite=False)
    np.testing.assert_array_equal(np.load(out), _expected(frames, None, "uint16"))
    with pytest.raises(FileExistsError):
        ctx.export_dataset(ds, path=tmp_path / "d.npy")
    with pytest.raises(TypeError):
        ctx.export_dataset(ds, tmp_path / "e.npy")  # path is keyword-only, as in LiberTEM
    out = ctx.export_dataset(ds, path=tmp_path / "d.h5", compression="lzf")
    np.testing.assert_array_equal(_read_back(out, "hdf5", {}), _expected(frames, None, "uint16"))


def test_thunder_mouse_stack_round_trips_byte_for_byte(tmp_path):
    """Thunder's example binary stack, exported as binary again, gives the same files."""
    src = FIXTURES / "thunder" / "mouse-images"
    if not src.is_dir():
        pytest.fail(f"the shared fixtures are missing: expected {src} (../shared/fixtures)")
    ctx = shared("processes")
    ds = ctx.load("binary", path=str(src))
    out = ctx.export(ds, tmp_path / "mouse", format="binary")
    names = sorted(n for n in os.listdir(src) if n.endswith(".bin"))
    assert sorted(n for n in os.listdir(out) if n.endswith(".bin")) == names
    for n in names:
        assert (out / n).read_bytes() == (src / n).read_bytes(), n
    conf = json.loads((out / "conf.json").read_text())
    assert conf == {"shape": [64, 64], "dtype": "int16"}


@pytest.mark.parametrize("kwargs", [{"format": "tiff"}, {"format": "zarr", "compression": "lzf"},
                                    {"format": "hdf5", "compression": "gzip:12"},
                                    {"format": "hdf5", "chunks": (0, 2)},
                                    {"format": "zarr", "zarr_format": 4}])
def test_bad_option_values_are_value_errors(tmp_path, kwargs):
    # an option of the right kind with a value out of range: ValueError (and UDFError)
    from udfkit.errors import UDFParameterError

    with pytest.raises(ValueError) as info:
        RecordUDF(path=tmp_path / "t", **kwargs)
    assert isinstance(info.value, UDFParameterError)
