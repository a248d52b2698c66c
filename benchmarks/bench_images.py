#!/usr/bin/env python3
"""Thunder's per-frame image operations: udfkit next to dask.array and a numpy loop, same run.

    python benchmarks/bench_images.py --data DIR [--frames 2048] [--ops gaussian,bin2]
        [--executors threads,processes] [--cpus 2] [--repeats 3] [--quick] [--out results.jsonl]

DIR is made by ``python ../shared/bench/make_data.py DIR``; the script uses ``u16.raw``
(nav 128 x 128, sig 256 x 256 uint16, 2 GiB) and processes its first ``--frames`` frames
(2048 frames = a 256 MiB slice, selected with a ROI), page cache hot (the file is read once
with ``cat`` first). ``--quick`` makes a small file of its own instead (64 frames of 64 x 64)
so that the script can be smoke-tested in seconds.

Operations (each result kept in memory, one output frame per input frame):

* ``gaussian``: ``GaussianFilterUDF(sigma=2)``, float32 output (Thunder's
  ``gaussian_filter``);
* ``bin2``: ``BinUDF(2)``, sum of 2 x 2 blocks, int64 output.

For each, the script prints the best / median seconds of ``--repeats`` runs and GB/s of input
data for

* udfkit on each executor of ``--executors`` (``--cpus`` workers);
* dask.array: ``from_array`` on an ``np.memmap`` of the slice in chunks of 64 frames,
  ``map_blocks`` of the same scipy/numpy function, ``da.store`` into a preallocated array
  (threaded scheduler, ``--cpus`` workers);
* a numpy loop: the same function frame by frame on the memmap, into a preallocated array,
  on one core;
* the page-cache read limit of the slice (``readinto`` in 16 MiB blocks, one core);

and whether udfkit's result equals the numpy loop's.
"""

import argparse
import os
import sys
import tempfile

import numpy as np
from bench_common import append_rows, page_cache_read, timed, warm

GB = 1e9
NAV, SIG = (128, 128), (256, 256)
DASK_CHUNK = 64


def frame_fn(op):
    """The per-frame function of ``op`` (the numpy loop's and, over a stack, dask's)."""
    from scipy import ndimage

    if op == "gaussian":
        def one(frame):
            return ndimage.gaussian_filter(frame.astype(np.float32), 2)

        def stack(block):
            return ndimage.gaussian_filter(block.astype(np.float32), (0, 2, 2))
        return one, stack, np.float32, lambda s: s
    if op == "bin2":
        def one(frame):
            h, w = frame.shape[0] // 2, frame.shape[1] // 2
            return frame[:2 * h, :2 * w].reshape(h, 2, w, 2).sum(axis=(1, 3), dtype=np.int64)

        def stack(block):
            h, w = block.shape[1] // 2, block.shape[2] // 2
            return block[:, :2 * h, :2 * w].reshape(-1, h, 2, w, 2).sum(axis=(2, 4),
                                                                         dtype=np.int64)
        return one, stack, np.int64, lambda s: (s[0] // 2, s[1] // 2)
    raise ValueError(op)


def make_udf(op):
    from udfkit.udf import BinUDF, GaussianFilterUDF

    return GaussianFilterUDF(sigma=2) if op == "gaussian" else BinUDF(2)


def numpy_loop(mm, op):
    one, _, dtype, out_shape = frame_fn(op)
    out = np.empty((mm.shape[0],) + out_shape(mm.shape[1:]), dtype)
    for i in range(mm.shape[0]):
        out[i] = one(mm[i])
    return out


def dask_way(mm, op, cpus):
    import dask
    import dask.array as da

    _, stack, dtype, out_shape = frame_fn(op)
    src = da.from_array(mm, chunks=(DASK_CHUNK,) + mm.shape[1:])
    res = src.map_blocks(stack, dtype=dtype, chunks=(DASK_CHUNK,) + out_shape(mm.shape[1:]))
    out = np.empty(res.shape, dtype)
    with dask.config.set(scheduler="threads", num_workers=cpus):
        da.store(res, out, lock=False)
    return out


def udfkit_way(ctx, ds, roi, op, frames):
    res = ctx.run_udf(dataset=ds, udf=make_udf(op), roi=roi)["intensity"]
    return res.raw_data[:frames]


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default=os.environ.get("BENCH_DATA"))
    ap.add_argument("--frames", type=int, default=2048)
    ap.add_argument("--ops", default="gaussian,bin2")
    ap.add_argument("--executors", default="threads,processes")
    ap.add_argument("--cpus", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--quick", action="store_true", help="a small file of its own, for a smoke test")
    ap.add_argument("--out")
    args = ap.parse_args()

    from udfkit import Context

    tmp = None
    if args.quick:
        tmp = tempfile.TemporaryDirectory(prefix="udfkit-bench-images-")
        nav, sig, frames = (8, 8), (64, 64), 64
        path = os.path.join(tmp.name, "u16.raw")
        np.random.default_rng(0).integers(0, 4096, (frames,) + sig, dtype=np.uint16).tofile(path)
        repeats = 1
    else:
        if not args.data:
            ap.error("--data DIR (or BENCH_DATA) is needed unless --quick")
        nav, sig, frames, repeats = NAV, SIG, args.frames, args.repeats
        path = os.path.join(args.data, "u16.raw")
        warm(path)
    n_total = int(np.prod(nav))
    frames = min(frames, n_total)
    nbytes = frames * int(np.prod(sig)) * 2
    mm = np.memmap(path, dtype=np.uint16, mode="r", shape=(n_total,) + sig)[:frames]
    roi = np.zeros(n_total, bool)
    roi[:frames] = True
    roi = roi.reshape(nav)

    rows = []

    def report(op, way, best, median, same=""):
        print(f"  {way:<22} best {best:7.3f} s  median {median:7.3f} s  "
              f"{nbytes / GB / best:6.2f} GB/s {same}")
        rows.append(dict(bench="images", op=op, way=way, frames=frames, bytes=nbytes, best=best,
                         median=median, gbps=nbytes / GB / best, same=same))

    print(f"{path}: first {frames} frames of {sig} uint16 ({nbytes / 2**20:.0f} MiB), "
          f"{args.cpus} cpus, {os.cpu_count()} cores on the machine")
    limit = page_cache_read(path, repeats) * nbytes / os.path.getsize(path)
    print(f"  page cache read limit  {limit:7.3f} s  {nbytes / GB / limit:6.2f} GB/s (one core)")
    contexts = {kind: Context.make_with(kind, cpus=args.cpus) for kind in args.executors.split(",")}
    try:
        for op in args.ops.split(","):
            print(f"{op}:")
            numpy_loop(mm[:DASK_CHUNK], op)  # first calls: imports, caches
            dask_way(mm[:DASK_CHUNK], op, args.cpus)
            best, median, ref = timed(lambda: numpy_loop(mm, op), repeats)
            report(op, "numpy loop (1 core)", best, median)
            best, median, out = timed(lambda: dask_way(mm, op, args.cpus), repeats)
            report(op, f"dask.array ({args.cpus} thr)", best, median,
                   "equal" if np.array_equal(out, ref) else "DIFFERENT")
            del out
            for kind, ctx in contexts.items():
                ds = ctx.load("raw", path=path, dtype="uint16", nav_shape=nav, sig_shape=sig)
                udfkit_way(ctx, ds, roi, op, frames)  # first run: imports, pools
                best, median, out = timed(lambda: udfkit_way(ctx, ds, roi, op, frames), repeats)
                report(op, f"udfkit {kind} ({args.cpus})", best, median,
                       "equal" if np.allclose(out, ref, rtol=1e-6, atol=1e-3) else "DIFFERENT")
                del out
            del ref
    finally:
        for ctx in contexts.values():
            ctx.close()
        del mm
        if tmp is not None:
            tmp.cleanup()
    append_rows(args.out, rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
