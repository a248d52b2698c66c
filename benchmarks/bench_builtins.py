#!/usr/bin/env python3
"""Built-in UDFs on the inline executor, next to numpy on the same file, in the same run.

    python benchmarks/bench_builtins.py --data DIR [--datasets u16,f32] [--udfs sum,...]
        [--repeats 3] [--executor inline] [--out results.jsonl]

DIR is made by ``python ../shared/bench/make_data.py DIR`` (``u16.raw``: nav 128×128, sig
256×256 uint16, 2 GiB; ``f32.raw``: nav 64×64, float32, 1 GiB). Page cache hot: each file is
read once with ``cat`` before its block. Per data set the script prints

* ``page cache read``: ``readinto`` of the whole file in 16 MiB blocks on one core (the
  physical limit of getting the bytes to a single-threaded reader);
* per built-in: udfkit (best / median of ``--repeats`` warm runs after one run that compiles
  the kernels) and the naive numpy way on an ``np.memmap`` of the same file (the same result,
  computed in chunks of 256 frames so that it streams too), GB/s of file data, and whether
  the two results agree.

Targets (issue 3, inline, hot): Sum and SumSig ≥ 8 GB/s on uint16, StdDev ≥ 4 on uint16 and
float32, ApplyMasks with 16 dense masks ≥ 2.5 on uint16. ``disk`` is one virtual-detector
mask (a disk covering 1 % of the frame: the gather path on integer data). ``--executor``
runs the same on ``threads``, ``processes`` or ``default`` (``Context()``).

``--limits`` adds, per data set, what the kernels and BLAS achieve on an in-RAM copy of the
first 256 MiB of frames, in the same run (no file, no framework): the numba streaming read
(``sum_signal``), SumUDF's and StdDevUDF's kernels on tiles of the shape their runs use, the
16-mask dense kernel, and numpy/BLAS ``sgemm`` of the float32 frames with 16 masks on 1 and on
all cores -- each as GB/s of wall time and of one thread's CPU time (``cpu``: what the code
would do on a core of its own, the figure to compare on a machine that others load), with the
load average beside it.
"""

import argparse
import os
import sys
import time

import numpy as np
from bench_common import append_rows, page_cache_read, timed, warm

GB = 1e9
CHUNK = 256
DATASETS = {
    "u16": dict(file="u16.raw", dtype="uint16", nav_shape=(128, 128), sig_shape=(256, 256)),
    "f32": dict(file="f32.raw", dtype="float32", nav_shape=(64, 64), sig_shape=(256, 256)),
}
ALL = ["sum", "sumsig", "stddev", "stats", "masks1", "masks16", "disk", "logsum", "pick"]


def masks(n, sig_shape, seed=1):
    rng = np.random.default_rng(seed)
    return rng.random((n,) + tuple(sig_shape), dtype=np.float32)


def make_udf(name, sig_shape):
    from udfkit import udf

    if name == "sum":
        return udf.SumUDF(), "intensity"
    if name == "sumsig":
        return udf.SumSigUDF(), "intensity"
    if name == "stddev":
        return udf.StdDevUDF(), "var"
    if name == "stats":
        return udf.StatsUDF(), "max"
    if name.startswith("masks"):
        m = masks(int(name[5:]), sig_shape)
        return udf.ApplyMasksUDF(mask_factories=lambda: m, mask_dtype=np.float32), "intensity"
    if name == "disk":
        return udf.ApplyMasksUDF(mask_factories=[lambda: disk(sig_shape)]), "intensity"
    if name == "logsum":
        return udf.LogsumUDF(), "logsum"
    if name == "pick":
        return udf.PickUDF(), "intensity"
    raise ValueError(name)


def disk(sig_shape):
    """A virtual bright-field detector: a disk of radius 20 pixels in the middle (1 % of a
    256×256 frame), as a float32 array of 0 and 1."""
    y, x = np.ogrid[:sig_shape[0], :sig_shape[1]]
    return (((y - sig_shape[0] // 2) ** 2 + (x - sig_shape[1] // 2) ** 2) <= 20 ** 2).astype(np.float32)


def pick_roi(nav_shape):
    roi = np.zeros(nav_shape, dtype=bool)
    roi.reshape(-1)[:: max(1, roi.size // 64)] = True  # 64 frames spread over the scan
    return roi


def numpy_way(name, mm, sig_shape):
    """The same result with numpy on a memmap, in chunks of frames."""
    flat = mm.reshape(-1, *sig_shape)
    n = flat.shape[0]
    chunks = [flat[i:i + CHUNK] for i in range(0, n, CHUNK)]
    if name == "sum":
        acc = np.zeros(sig_shape)
        for c in chunks:
            acc += c.sum(axis=0, dtype=np.float64)
        return acc
    if name == "sumsig":
        return np.concatenate([c.sum(axis=(1, 2), dtype=np.float64) for c in chunks])
    if name in ("stddev", "stats"):
        s1 = np.zeros(sig_shape)
        s2 = np.zeros(sig_shape)
        lo = None
        hi = None
        for c in chunks:
            c64 = c.astype(np.float64)
            s1 += c64.sum(axis=0)
            s2 += (c64 * c64).sum(axis=0)
            if name == "stats":
                lo = c.min(axis=0) if lo is None else np.minimum(lo, c.min(axis=0))
                hi = c.max(axis=0) if hi is None else np.maximum(hi, c.max(axis=0))
        return hi if name == "stats" else s2 / n - (s1 / n) ** 2
    if name.startswith("masks"):
        m = masks(int(name[5:]), sig_shape).reshape(int(name[5:]), -1)
        return np.concatenate([c.reshape(len(c), -1).astype(np.float32) @ m.T for c in chunks])
    if name == "disk":
        m = disk(sig_shape).reshape(1, -1)
        return np.concatenate([c.reshape(len(c), -1).astype(np.float32) @ m.T for c in chunks])
    if name == "logsum":
        acc = np.zeros(sig_shape)
        for c in chunks:
            c64 = c.astype(np.float64)
            acc += np.log(c64 - c64.min(axis=(1, 2), keepdims=True) + 1).sum(axis=0)
        return acc
    if name == "pick":
        return flat[pick_roi(mm.shape[:-len(sig_shape)]).reshape(-1)]
    raise ValueError(name)


def _rate(fn, nbytes, repeats):
    """``(wall GB/s, CPU GB/s)`` of the best of ``repeats`` calls (after one warm-up)."""
    fn()
    wall, cpu = [], []
    for _ in range(repeats):
        t, c = time.perf_counter(), time.thread_time()
        fn()
        cpu.append(time.thread_time() - c)
        wall.append(time.perf_counter() - t)
    return nbytes / min(wall) / GB, nbytes / max(min(cpu), 1e-9) / GB


def in_ram_limits(key, path, spec, repeats):
    """Kernel and BLAS rates on an in-RAM copy of the first 256 MiB of ``path`` (see the
    module docstring); returns rows for ``--out``."""
    from threadpoolctl import threadpool_limits

    from udfkit.udf.builtins import _kernels as K
    from udfkit.udf.builtins import _mask_kernels as MK

    dtype = np.dtype(spec["dtype"])
    sig = tuple(spec["sig_shape"])
    npx = int(np.prod(sig))
    frames = min(int(np.prod(spec["nav_shape"])), (256 << 20) // (npx * dtype.itemsize))
    data = np.fromfile(path, dtype=dtype, count=frames * npx).reshape((frames,) + sig)
    nbytes = data.nbytes
    small_int = dtype.kind in "iu" and dtype.itemsize <= 2

    def tiles(depth, rows):
        for q in range(0, sig[0], rows):
            for f in range(0, frames, depth):
                yield q, K.as_rows(data[f:f + depth, q:q + rows])

    acc = np.zeros(npx)
    scratch = np.empty(npx, np.int32)

    def kernel_sum():
        for _, (flat, stride, depth, n) in tiles(128, sig[0]):
            if small_int:
                K.sum_frames_small_int(flat, stride, depth, n, acc, scratch)
            else:
                K.sum_frames(flat, stride, depth, n, acc)

    rows = 16384 // sig[1]
    tot, var = np.zeros(npx), np.zeros(npx)
    s3 = (np.empty(rows * sig[1]), np.empty(rows * sig[1]), np.empty(rows * sig[1]))
    isum = np.empty(rows * sig[1], np.int32)

    def kernel_stddev():
        seen = {}
        for q, (flat, stride, depth, n) in tiles(64, rows):
            a, b = tot[q * sig[1]:q * sig[1] + n], var[q * sig[1]:q * sig[1] + n]
            if small_int:
                K.moments_small_int(flat, stride, depth, n, seen.get(q, 0), a, b, isum, s3[1])
            else:
                K.moments(flat, stride, depth, n, seen.get(q, 0), a, b, *s3)
            seen[q] = seen.get(q, 0) + depth

    m16 = masks(16, sig).reshape(16, -1)
    cuts = {q: np.ascontiguousarray(m16[:, q * sig[1]:q * sig[1] + rows * sig[1]])
            for q in range(0, sig[0], rows)}
    out = np.zeros((frames, 16), np.float32)

    def kernel_masks():
        for f in range(0, frames, 64):
            for q in range(0, sig[0], rows):
                flat, stride, depth, n = K.as_rows(data[f:f + 64, q:q + rows])
                MK.dense_product(flat, stride, depth, n, cuts[q], out[f:f + 64])

    flat_all = data.reshape(frames, -1)
    f32 = flat_all.astype(np.float32)
    nav_sums = np.zeros(frames)
    cases = [("numba read (sum_signal)", lambda: K.sum_signal(*K.as_rows(data), nav_sums)),
             ("SumUDF kernel", kernel_sum), ("StdDevUDF kernel", kernel_stddev),
             ("16 masks dense kernel", kernel_masks),
             ("16 masks sgemm, 1 thread", lambda: f32 @ m16.T)]
    if dtype != np.float32:
        cases.append(("16 masks decode + sgemm, 1 thread", lambda: flat_all.astype(np.float32) @ m16.T))
    print(f"  in RAM, {frames} frames ({nbytes / 2**20:.0f} MiB), load average "
          f"{os.getloadavg()[0]:.1f}:  GB/s wall / cpu (one thread's CPU time)")
    out_rows = []
    for name, fn in cases:
        with threadpool_limits(1):
            wall, cpu = _rate(fn, nbytes, repeats)
        out_rows.append(dict(dataset=key, limit=name, wall_gbs=wall, cpu_gbs=cpu))
        print(f"  {name:36s} {wall:6.2f} / {cpu:6.2f}")
    cores = os.cpu_count() or 1
    with threadpool_limits(cores):
        wall, _ = _rate(lambda: f32 @ m16.T, nbytes, repeats)
    out_rows.append(dict(dataset=key, limit=f"16 masks sgemm, {cores} threads", wall_gbs=wall))
    print(f"  {'16 masks sgemm, %d threads' % cores:36s} {wall:6.2f} (wall)")
    return out_rows


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default=os.environ.get("BENCH_DATA"), required="BENCH_DATA" not in os.environ)
    ap.add_argument("--datasets", default="u16,f32")
    ap.add_argument("--udfs", default=",".join(ALL))
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--executor", default="inline",
                    help="inline (default), threads, processes or default (Context())")
    ap.add_argument("--limits", action="store_true",
                    help="also measure the kernels and BLAS on in-RAM data (module docstring)")
    ap.add_argument("--out")
    args = ap.parse_args()

    from udfkit import Context

    ctx = Context() if args.executor == "default" else Context.make_with(args.executor)
    rows = []
    for key in args.datasets.split(","):
        spec = DATASETS[key]
        path = os.path.join(args.data, spec["file"])
        nbytes = os.path.getsize(path)
        warm(path)
        limit = page_cache_read(path, args.repeats)
        print(f"\n{key}: {path} ({nbytes / 2**30:.1f} GiB), page cache read {nbytes / limit / GB:.1f} GB/s")
        print(f"{'udf':10s} {'udfkit GB/s (best / median)':>28s} {'numpy memmap GB/s':>18s}  "
              f"{'first run s':>11s}  tile shape        agree")
        if args.limits:
            rows += in_ram_limits(key, path, spec, args.repeats)
        ds = ctx.load("raw", path=path, dtype=spec["dtype"], nav_shape=spec["nav_shape"],
                      sig_shape=spec["sig_shape"])
        for name in [u for u in args.udfs.split(",") if u]:
            roi = pick_roi(spec["nav_shape"]) if name == "pick" else None
            share = 1.0 if roi is None else roi.sum() / roi.size
            t0 = time.perf_counter()
            udf, result = make_udf(name, spec["sig_shape"])
            ctx.run_udf(dataset=ds, udf=udf, roi=roi)
            first = time.perf_counter() - t0
            best, median, res = timed(
                lambda: ctx.run_udf(dataset=ds, udf=make_udf(name, spec["sig_shape"])[0], roi=roi),
                args.repeats)
            from udfkit.udf.driver import UDFRun

            scheme = UDFRun(ds, [make_udf(name, spec["sig_shape"])[0]], roi=roi).scheme
            mm = np.memmap(path, dtype=spec["dtype"], mode="r",
                           shape=tuple(spec["nav_shape"]) + tuple(spec["sig_shape"]))
            np_best, _, ref = timed(lambda: numpy_way(name, mm, spec["sig_shape"]), args.repeats)
            del mm
            got = res[result].raw_data if name in ("sumsig", "masks1", "masks16", "disk") else res[result].data
            got = np.asarray(got).reshape(np.shape(ref))
            tol = 1e-4 if name.startswith("masks") or name == "disk" else 1e-6
            agree = bool(np.allclose(got, ref, rtol=tol, atol=tol * float(np.abs(ref).max())))
            data_bytes = nbytes * share
            row = dict(dataset=key, udf=name, executor=args.executor, udfkit_gbs=data_bytes / best / GB,
                       udfkit_median_gbs=data_bytes / median / GB, numpy_gbs=data_bytes / np_best / GB,
                       page_cache_gbs=nbytes / limit / GB, first_s=first, tile=list(scheme.shape),
                       agree=agree)
            rows.append(row)
            print(f"{name:10s} {row['udfkit_gbs']:>13.2f} / {row['udfkit_median_gbs']:<12.2f} "
                  f"{row['numpy_gbs']:>18.2f}  {first:>11.2f}  {str(tuple(scheme.shape)):17s} {agree}")
            sys.stdout.flush()
    ctx.close()
    append_rows(args.out, rows)


if __name__ == "__main__":
    main()
