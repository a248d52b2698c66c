#!/usr/bin/env python3
"""Every format side by side: SumUDF and a no-op tile UDF on the same 2 GiB uint16 data,
hot page cache, default Context, next to the raw file and the naive ways, in one run.

    python benchmarks/bench_formats.py --data DIR [--work DIR2] [--cases raw,h5-chunk1,...]
        [--kinds processes,inline,threads] [--repeats 3] [--compressed-frames 4096]
        [--libertem /path/to/venv/bin/python] [--out results.jsonl]

DIR is made by ``python ../shared/bench/make_data.py DIR`` (u16.raw, u16.npy and u16.h5 with
one frame per chunk, nav 128×128 of 256×256 uint16). The other files (contiguous HDF5,
gzip/zstd HDF5, zarr uncompressed/zstd, a TIFF stack) are written once into ``--work``
(default ``DIR/formats``) from u16.raw. Compressed files hold only the first
``--compressed-frames`` frames, to keep writing them short; GB/s always count the
*uncompressed* bytes the UDF sees, per second of wall time.

Printed per case and executor: best and median GB/s of SumUDF and of the no-op tile UDF,
the ratio to the raw file's median, and the peak resident memory of any worker process
(sampled every 20 ms; for ``inline`` the main process). For compressed cases the line
also gives the single-threaded decompressor's GB/s (h5py or zarr reading the data into
memory on one core), the bound for one core.

Targets of issue 11: uncompressed HDF5 (contiguous and one frame per chunk) ≥ 90 % of raw;
zarr uncompressed ≥ 70 %; compressed HDF5/zarr bounded by decompression on both cores; a
dask array over a memmap ≥ 70 %; peak RSS per worker < 300 MiB. LiberTEM 0.16 reaches
2.0 GB/s (inline) and 3.4 (threads) on the uncompressed ``u16.h5`` (``--libertem`` runs it).
"""

import argparse
import json
import os
import subprocess
import sys
import threading
import time

import numpy as np
from bench_common import append_rows, timed

GB = 1e9
NAV, SIG, DTYPE = (128, 128), (256, 256), np.dtype("<u2")
ALL_CASES = ["raw", "npy", "h5-chunk1", "h5-contig", "h5-gzip", "h5-zstd", "zarr", "zarr-zstd",
             "tiff", "dask-memmap"]


def frames_memmap(data_dir):
    return np.memmap(os.path.join(data_dir, "u16.raw"), dtype=DTYPE, mode="r",
                     shape=(NAV[0] * NAV[1],) + SIG)


def write_inputs(data_dir, work, cases, n_compressed):
    """Write the derived files that are missing (once; they are reused by later runs)."""
    os.makedirs(work, exist_ok=True)
    src = frames_memmap(data_dir)
    step = 256

    def h5(name, n, **kwargs):
        path = os.path.join(work, name)
        if os.path.exists(path):
            return
        import h5py

        t0 = time.perf_counter()
        with h5py.File(path + ".part", "w") as f:
            ds = f.create_dataset("data", shape=(n,) + SIG, dtype=DTYPE, **kwargs)
            for i in range(0, n, step):
                ds[i:i + step] = src[i:min(n, i + step)]
        os.rename(path + ".part", path)
        print(f"wrote {name} in {time.perf_counter() - t0:.0f} s", flush=True)

    def zarr_store(name, n, compressors):
        path = os.path.join(work, name)
        if os.path.exists(path):
            return
        import zarr

        t0 = time.perf_counter()
        arr = zarr.create_array(path + ".part", shape=(n,) + SIG, dtype=DTYPE, chunks=(16,) + SIG,
                                compressors=compressors)
        for i in range(0, n, step):
            arr[i:i + step] = src[i:min(n, i + step)]
        os.rename(path + ".part", path)
        print(f"wrote {name} in {time.perf_counter() - t0:.0f} s", flush=True)

    total = src.shape[0]
    if "h5-contig" in cases:
        h5("u16_contig.h5", total)
    if "h5-gzip" in cases:
        h5("u16_gzip.h5", n_compressed, chunks=(1,) + SIG, compression="gzip", compression_opts=1)
    if "h5-zstd" in cases:
        import hdf5plugin

        h5("u16_zstd.h5", n_compressed, chunks=(1,) + SIG, **hdf5plugin.Zstd(clevel=1))
    if "zarr" in cases:
        zarr_store("u16.zarr", total, None)
    if "zarr-zstd" in cases:
        from zarr.codecs import ZstdCodec

        zarr_store("u16_zstd.zarr", n_compressed, [ZstdCodec(level=1)])
    if "tiff" in cases:
        path = os.path.join(work, "u16.tif")
        if not os.path.exists(path):
            import tifffile

            t0 = time.perf_counter()
            with tifffile.TiffWriter(path + ".part", bigtiff=True) as tw:
                for i in range(total):
                    tw.write(src[i], contiguous=True)
            os.rename(path + ".part", path)
            print(f"wrote u16.tif in {time.perf_counter() - t0:.0f} s", flush=True)


def load_params(case, data_dir, work):
    """``(filetype, params, files, frames)`` of a case."""
    j = os.path.join
    full = NAV[0] * NAV[1]
    if case == "raw":
        return "raw", dict(path=j(data_dir, "u16.raw"), dtype="uint16", nav_shape=NAV, sig_shape=SIG), \
            [j(data_dir, "u16.raw")], full
    if case == "npy":
        return "npy", dict(path=j(data_dir, "u16.npy")), [j(data_dir, "u16.npy")], full
    if case == "h5-chunk1":
        return "hdf5", dict(path=j(data_dir, "u16.h5")), [j(data_dir, "u16.h5")], full
    if case == "h5-contig":
        return "hdf5", dict(path=j(work, "u16_contig.h5")), [j(work, "u16_contig.h5")], full
    if case in ("h5-gzip", "h5-zstd"):
        name = "u16_gzip.h5" if case == "h5-gzip" else "u16_zstd.h5"
        return "hdf5", dict(path=j(work, name)), [j(work, name)], None
    if case in ("zarr", "zarr-zstd"):
        name = "u16.zarr" if case == "zarr" else "u16_zstd.zarr"
        return "zarr", dict(path=j(work, name)), [j(work, name)], None
    if case == "tiff":
        return "tiff", dict(path=j(work, "u16.tif")), [j(work, "u16.tif")], full
    if case == "dask-memmap":
        import dask.array as da

        arr = da.from_array(frames_memmap(data_dir).reshape(NAV + SIG), chunks=(4, NAV[1]) + SIG)
        return "dask", dict(dask_array=arr, sig_dims=2), [j(data_dir, "u16.raw")], full
    raise SystemExit(f"unknown case {case!r}; one of {ALL_CASES}")


def warm_all(paths):
    """Read every file once (``cat``), so that the runs find them in the page cache."""
    for path in paths:
        files = [os.path.join(d, f) for d, _, fs in os.walk(path) for f in fs] \
            if os.path.isdir(path) else [path]
        for chunk in range(0, len(files), 500):
            subprocess.run(["cat", *files[chunk:chunk + 500]], stdout=subprocess.DEVNULL, check=True)


def file_scan(path, repeats):
    """GB/s of numba summing the file as uint16 over ``np.memmap`` on one core: the page-cache
    bandwidth of *this* file, the bound for a native read of it.

    Measured per file because it differs between files of the same size in the page cache
    (on this machine 6.7 to 15.7 GB/s for 512 MiB files written by h5py, ``tofile`` or
    ``np.save``: the kernel's page-cache folio sizes), so a ratio to another file's speed
    mixes that difference into the format's.
    """
    import numba

    @numba.njit(cache=False)
    def total(a):
        t = 0
        for i in range(a.size):
            t += a[i]
        return t

    size = os.path.getsize(path) // 2
    mm = np.memmap(path, dtype=np.uint16, mode="r", shape=(size,))
    total(mm[:16])
    best = timed(lambda: total(mm), repeats)[0]
    del mm
    return size * 2 / best / GB


class PeakRSS:
    """Peak resident memory of the worker processes (children), or of this process."""

    def __init__(self, children: bool):
        import psutil

        self._me = psutil.Process()
        self._children = children
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self):
        while not self._stop.is_set():
            procs = self._me.children(recursive=True) if self._children else [self._me]
            for p in procs:
                try:
                    self.peak = max(self.peak, p.memory_info().rss)
                except Exception:  # a process that just ended
                    pass
            self._stop.wait(0.02)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()


def decompress_bound(case, params, frames):
    """GB/s of the library reading the compressed data into memory on one core."""
    n = min(frames, 1024)
    if case.startswith("h5"):
        import h5py
        import hdf5plugin  # noqa: F401 - registers the filters

        with h5py.File(params["path"], "r") as f:
            ds = f["data"]
            out = np.empty((n,) + SIG, DTYPE)
            best = timed(lambda: ds.read_direct(out, np.s_[:n]), 2)[0]
    else:
        import zarr

        arr = zarr.open_array(params["path"], mode="r")
        with zarr.config.set({"async.concurrency": 1, "threading.max_workers": 1}):
            best = timed(lambda: arr[:n], 2)[0]
    return n * np.prod(SIG) * DTYPE.itemsize / best / GB


def make_udfs():
    from udfkit import UDF
    from udfkit.udf import SumUDF

    class NoopTileUDF(UDF):
        def get_result_buffers(self):
            return {"n": self.buffer(kind="single", dtype="int64")}

        def get_preferred_input_dtype(self):
            return self.USE_NATIVE_DTYPE

        def process_tile(self, tile):
            pass

        def merge(self, dest, src):
            pass

    return {"sum": SumUDF, "noop": NoopTileUDF}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default=os.environ.get("BENCH_DATA"), required="BENCH_DATA" not in os.environ)
    ap.add_argument("--work", default=None, help="where the derived files go (default DATA/formats)")
    ap.add_argument("--cases", default=",".join(ALL_CASES))
    ap.add_argument("--kinds", default="processes", help="'processes' is the default Context")
    ap.add_argument("--cpus", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--compressed-frames", type=int, default=4096)
    ap.add_argument("--libertem", default=None, help="python of a venv with libertem 0.16")
    ap.add_argument("--out", default="", help="append JSON lines here")
    args = ap.parse_args()
    work = args.work or os.path.join(args.data, "formats")
    cases = args.cases.split(",")
    write_inputs(args.data, work, cases, args.compressed_frames)

    from udfkit import Context

    udfs = make_udfs()
    ref = np.load(os.path.join(args.data, "ref_u16_sigsum.npy"))
    rows, raw_median, scans = [], {}, {}
    for kind in args.kinds.split(","):
        ctx = Context() if kind == "processes" and args.cpus is None else \
            Context.make_with(kind, **({} if kind == "inline" else {"cpus": args.cpus}))
        try:
            for case in cases:
                filetype, params, files, frames = load_params(case, args.data, work)
                try:
                    ds = ctx.load(filetype, **params)
                except Exception as e:  # a format this checkout does not have yet
                    print(f"{kind:9s} {case:12s} cannot load: {type(e).__name__}: {e}", flush=True)
                    continue
                n = ds.shape.nav.size
                nbytes = n * int(np.prod(SIG)) * DTYPE.itemsize
                warm_all(files)
                res = ctx.run_udf(dataset=ds, udf=udfs["sum"]())  # warm-up and check
                want = ref if frames is not None else \
                    frames_memmap(args.data)[:n].sum(axis=0, dtype=np.float64)
                if not np.allclose(res["intensity"].data, want):
                    raise SystemExit(f"{case}/{kind}: SumUDF differs from the reference")
                line = {"case": case, "kind": kind, "frames": n}
                for name, udf in udfs.items():
                    with PeakRSS(children=kind != "inline") as rss:
                        best, median, _ = timed(lambda: ctx.run_udf(dataset=ds, udf=udf()), args.repeats)
                    line[f"{name}_best"] = nbytes / best / GB
                    line[f"{name}_median"] = nbytes / median / GB
                    line[f"{name}_rss_mib"] = rss.peak / 2**20
                if case == "raw":
                    raw_median[kind] = line["sum_median"], line["noop_median"]
                extra = ""
                if case in ("h5-gzip", "h5-zstd", "zarr-zstd"):
                    line["decompress_1core"] = decompress_bound(case, params, n)
                    extra = f"  one-core decompression {line['decompress_1core']:.2f}"
                if kind in raw_median:
                    line["sum_vs_raw"] = line["sum_median"] / raw_median[kind][0]
                    line["noop_vs_raw"] = line["noop_median"] / raw_median[kind][1]
                if len(files) == 1 and os.path.isfile(files[0]) and frames is not None:
                    if files[0] not in scans:
                        scans[files[0]] = file_scan(files[0], args.repeats)
                    line["file_scan_1core"] = scans[files[0]]
                    extra += f"  file memmap scan (1 core) {scans[files[0]]:.2f}"
                rows.append(line)
                print(f"{kind:9s} {case:12s} sum {line['sum_best']:6.2f} / {line['sum_median']:6.2f}"
                      f" ({line.get('sum_vs_raw', float('nan')):4.0%} of raw)  no-op "
                      f"{line['noop_best']:6.2f} / {line['noop_median']:6.2f} "
                      f"({line.get('noop_vs_raw', float('nan')):4.0%})  peak RSS "
                      f"{max(line['sum_rss_mib'], line['noop_rss_mib']):5.0f} MiB{extra}", flush=True)
        finally:
            ctx.close()
    naive(args.data, args.repeats, rows)
    if args.libertem:
        rows += libertem(args.libertem, os.path.join(args.data, "u16.h5"), args.repeats)
    append_rows(args.out, rows)


def naive(data_dir, repeats, rows):
    """The naive ways on the same data: numpy over a memmap, dask.array over h5py."""
    mm = frames_memmap(data_dir)
    nbytes = mm.nbytes
    best = timed(lambda: mm.sum(axis=0, dtype=np.float64), repeats)[0]
    print(f"naive     numpy memmap sum {nbytes / best / GB:6.2f}", flush=True)
    rows.append({"case": "numpy-memmap", "sum_best": nbytes / best / GB})
    import dask
    import dask.array as da
    import h5py

    with h5py.File(os.path.join(data_dir, "u16.h5"), "r") as f:
        arr = da.from_array(f["data"], chunks=(2, NAV[1]) + SIG)
        with dask.config.set(scheduler="threads"):
            best = timed(lambda: arr.sum(axis=0, dtype=np.float64).compute(), repeats)[0]
    print(f"naive     dask.array over h5py (threads) sum {nbytes / best / GB:6.2f}", flush=True)
    rows.append({"case": "dask-h5py", "sum_best": nbytes / best / GB})


LIBERTEM_SCRIPT = """
import json, sys, time
import numpy as np
from libertem.api import Context
from libertem.udf.sum import SumUDF
path, repeats = sys.argv[1], int(sys.argv[2])
out = {}
for kind in ("inline", "threads"):
    ctx = Context.make_with(kind, cpus=2) if kind == "threads" else Context.make_with("inline")
    ds = ctx.load("hdf5", path=path, ds_path="data")
    ctx.run_udf(dataset=ds, udf=SumUDF())
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter(); ctx.run_udf(dataset=ds, udf=SumUDF()); times.append(time.perf_counter() - t0)
    out[kind] = min(times)
    ctx.close()
print(json.dumps(out))
"""


def libertem(python, path, repeats):
    """LiberTEM 0.16's HDF5 reader on ``u16.h5`` (SumUDF), in its own venv."""
    out = subprocess.run([python, "-c", LIBERTEM_SCRIPT, path, str(repeats)], capture_output=True,
                         text=True)
    if out.returncode != 0:
        print(f"libertem: failed: {out.stderr.strip().splitlines()[-1:]}", file=sys.stderr)
        return []
    times = json.loads(out.stdout.strip().splitlines()[-1])
    nbytes = NAV[0] * NAV[1] * int(np.prod(SIG)) * DTYPE.itemsize
    rows = []
    for kind, seconds in times.items():
        print(f"libertem  {kind:9s} h5-chunk1 sum {nbytes / seconds / GB:6.2f}", flush=True)
        rows.append({"case": "libertem-h5-chunk1", "kind": kind, "sum_best": nbytes / seconds / GB})
    return rows


if __name__ == "__main__":
    main()
