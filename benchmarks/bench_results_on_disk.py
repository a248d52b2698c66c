#!/usr/bin/env python3
"""Results on disk: a binning-by-2 transform of the 2 GiB uint16 file into a result store.

    python benchmarks/bench_results_on_disk.py --data DIR [--out DIR] [--quick] [--repeats 1]

DIR is made by ``python ../shared/bench/make_data.py DIR`` (``u16.raw``: 128 x 128 frames of
256 x 256 uint16). Each frame is binned 2 x 2 (sum, float32: 64 KiB per frame, 1 GiB in all)
and written with the default Context (worker processes, one per core) into zarr and HDF5,
uncompressed and with a fast compressor (``blosc`` lz4 for zarr, ``lzf`` for HDF5). Printed
beside them, in the same run: reading the file (``readinto`` on one core, page cache hot)
and dask.array's pipeline of the same computation (``from_array`` of a memory map, reshape,
sum, ``to_zarr``, threaded scheduler, the same chunking and compressor). Every
configuration runs in its own process, so the peak RSS of that process (and of its
workers) is its own. Target (issue 16): within 1.3x of dask's time, peak RSS per process
<= 300 MiB.

Workers write their partitions' chunks into the zarr stores themselves (HDF5: the main
process writes); ``udfkit-zarr-main`` (not in the default list) is ``udfkit-zarr`` with
``ResultStore(direct=False)``, for an A/B of direct writes in the same run.

``--quick`` uses a small file of 1024 frames (written next to the outputs) to smoke-test.
``--num-partitions N`` cuts the file into N partitions for udfkit (default: the data set's
choice, 8 for this file, which a run with results on disk cuts into 32 so that a worker
holds at most 32 MiB of results, :mod:`udfkit.udf.store.plan`).
"""

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time

import numpy as np
from bench_common import page_cache_read, warm

SPEC = dict(file="u16.raw", dtype="uint16", nav_shape=(128, 128), sig_shape=(256, 256))
CONFIGS = ["dask-zarr", "dask-zarr-blosc", "udfkit-zarr", "udfkit-zarr-blosc", "udfkit-h5",
           "udfkit-h5-lzf"]


def _bin2_class():
    from udfkit import UDF

    class Bin2(UDF):
        """2 x 2 binning of every frame (sum), one result frame per position."""

        def get_result_buffers(self):
            sy, sx = self.meta.dataset_shape.sig
            return {"binned": self.buffer(kind="nav", extra_shape=(sy // 2, sx // 2),
                                          dtype="float32")}

        def get_preferred_input_dtype(self):
            return self.USE_NATIVE_DTYPE

        def process_frame(self, frame):
            # frames stream through (a partition is never whole in a worker's memory)
            sy, sx = frame.shape
            v = frame.reshape(sy // 2, 2, sx // 2, 2)
            np.sum(v, axis=(1, 3), dtype=np.float32, out=self.results.binned)

    return Bin2


def _peak_mib():
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    return own, children


def _udfkit(path, spec, target, compression, num_partitions=None, direct=None):
    from udfkit import Context, ResultStore

    with Context() as ctx:
        # workers started and warm (dask's threads need no start), not timed
        from udfkit.udf import SumUDF

        ctx.run_udf(ctx.load("memory", data=np.ones((4, 8, 8), "uint16")), SumUDF())
        ds = ctx.load("raw", path=path, dtype=spec["dtype"], nav_shape=spec["nav_shape"],
                      sig_shape=spec["sig_shape"], num_partitions=num_partitions)
        t0 = time.perf_counter()
        res = ctx.run_udf(ds, _bin2_class()(), out=ResultStore(target, compression=compression,
                                                                 direct=direct))
        took = time.perf_counter() - t0
        check = np.asarray(res["binned"].data[0, 0])
    return took, check


def _dask(path, spec, target, compression, num_partitions=None, direct=None):
    import dask.array as da
    import zarr
    from zarr import codecs

    ny, nx = spec["nav_shape"]
    sy, sx = spec["sig_shape"]
    mm = np.memmap(path, dtype=spec["dtype"], mode="r", shape=(ny, nx, sy, sx))
    # a chunk of 16 frames per task, as dask users write it; output chunks of 1 MiB (16 frames)
    x = da.from_array(mm, chunks=(1, 16, sy, sx))
    binned = x.reshape(ny, nx, sy // 2, 2, sx // 2, 2).sum(axis=(3, 5), dtype=np.float32)
    comp = None if compression is None else codecs.BloscCodec(cname="lz4", clevel=1,
                                                             shuffle="shuffle")
    t0 = time.perf_counter()
    z = zarr.create_array(store=target, shape=binned.shape, chunks=(1, 16, sy // 2, sx // 2),
                          dtype="float32", compressors=comp)
    da.store(binned, z, lock=False, scheduler="threads")
    took = time.perf_counter() - t0
    return took, np.asarray(zarr.open_array(target, mode="r")[0, 0])


def one(config, path, spec, outdir, num_partitions=None):
    """Run one configuration (in this process); print a JSON line."""
    fmt = "h5" if "-h5" in config else "zarr"
    compression = {"udfkit-zarr-blosc": "blosc:1", "udfkit-h5-lzf": "lzf",
                   "dask-zarr-blosc": "blosc"}.get(config)
    target = os.path.join(outdir, f"{config}.{fmt}")
    runner = _dask if config.startswith("dask") else _udfkit
    took, check = runner(path, spec, target, compression, num_partitions,
                         direct=False if config.endswith("-main") else None)
    frame = np.fromfile(path, dtype=spec["dtype"], count=int(np.prod(spec["sig_shape"])))
    sy, sx = spec["sig_shape"]
    want = frame.reshape(sy // 2, 2, sx // 2, 2).sum(axis=(1, 3), dtype=np.float32)
    assert np.array_equal(check, want), config
    size = sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(target) for f in fs) \
        if os.path.isdir(target) else os.path.getsize(target)
    own, children = _peak_mib()
    print(json.dumps({"config": config, "seconds": took, "rss_main_mib": own,
                      "rss_workers_mib": children, "out_bytes": size}))


def quick_file(outdir):
    spec = dict(SPEC, nav_shape=(16, 64))
    path = os.path.join(outdir, "quick_u16.raw")
    rng = np.random.default_rng(0)
    rng.integers(0, 4096, (16 * 64,) + SPEC["sig_shape"], dtype=np.uint16).tofile(path)
    return path, spec


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default=os.environ.get("BENCH_DATA"))
    ap.add_argument("--out", default=None, help="where the stores go (default: a temporary "
                    "directory next to the data)")
    ap.add_argument("--quick", action="store_true", help="a small file of 1024 frames")
    ap.add_argument("--configs", default=",".join(CONFIGS))
    ap.add_argument("--num-partitions", type=int, default=None,
                    help="udfkit: partitions of the file (default: the data set's choice)")
    ap.add_argument("--one", help=argparse.SUPPRESS)
    ap.add_argument("--path", help=argparse.SUPPRESS)
    ap.add_argument("--spec", help=argparse.SUPPRESS)
    args = ap.parse_args()

    if args.one:
        one(args.one, args.path, json.loads(args.spec), args.out, args.num_partitions)
        return
    if not args.quick and not args.data:
        ap.error("--data DIR is needed (or --quick)")
    outdir = tempfile.mkdtemp(prefix="bench_results_on_disk_",
                              dir=args.out or (None if args.quick else args.data))
    try:
        if args.quick:
            path, spec = quick_file(outdir)
        else:
            path, spec = os.path.join(args.data, SPEC["file"]), SPEC
        nbytes = os.path.getsize(path)
        warm(path)
        read_s = page_cache_read(path, 2)
        print(f"{path}: {nbytes / 2**30:.2f} GiB, {os.cpu_count()} cores; binned results "
              f"{nbytes / 4 * 2 / 2**30:.2f} GiB float32")
        print(f"{'read (readinto, 1 core)':28s} {read_s:7.2f} s  {nbytes / read_s / 1e9:6.2f} GB/s")
        print(f"{'configuration':28s} {'seconds':>7s}  {'GB/s in':>6s} {'x dask':>7s} "
              f"{'RSS main':>9s} {'RSS worker':>10s} {'out MiB':>8s}")
        rows = {}
        for config in args.configs.split(","):
            warm(path)
            p = subprocess.run([sys.executable, __file__, "--one", config, "--path", path,
                                "--spec", json.dumps(spec), "--out", outdir]
                               + ([] if args.num_partitions is None
                                  else ["--num-partitions", str(args.num_partitions)]),
                               capture_output=True, text=True, cwd=os.path.dirname(__file__))
            if p.returncode != 0:
                print(f"{config:28s} failed: {p.stderr.strip().splitlines()[-1:]}")
                continue
            row = json.loads(p.stdout.strip().splitlines()[-1])
            rows[config] = row
            for f in os.listdir(outdir):
                if f.startswith(config + "."):
                    full = os.path.join(outdir, f)
                    shutil.rmtree(full) if os.path.isdir(full) else os.remove(full)
            ref = rows.get("dask-zarr-blosc" if "blosc" in config or "lzf" in config
                           else "dask-zarr")
            ratio = f"{row['seconds'] / ref['seconds']:6.2f}x" if ref else "      -"
            print(f"{config:28s} {row['seconds']:7.2f}  {nbytes / row['seconds'] / 1e9:6.2f} "
                  f"{ratio:>7s} {row['rss_main_mib']:7.0f}Mi {row['rss_workers_mib']:8.0f}Mi "
                  f"{row['out_bytes'] / 2**20:8.0f}")
        for config in ("udfkit-zarr", "udfkit-zarr-blosc", "udfkit-h5", "udfkit-h5-lzf"):
            ref = rows.get("dask-zarr-blosc" if ("blosc" in config or "lzf" in config)
                           else "dask-zarr")
            if config in rows and ref:
                print(f"{config}: {rows[config]['seconds'] / ref['seconds']:.2f}x dask's time "
                      "(target <= 1.3x)")
    finally:
        shutil.rmtree(outdir, ignore_errors=True)


if __name__ == "__main__":
    main()
