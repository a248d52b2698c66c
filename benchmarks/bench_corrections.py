#!/usr/bin/env python3
"""SumUDF with detector corrections, next to SumUDF without them and to numpy, in one run.

    python benchmarks/bench_corrections.py --data DIR [--excluded 100] [--repeats 3]
        [--out results.jsonl]

DIR holds ``u16.raw`` (nav 128×128, sig 256×256 uint16, 2 GiB; made by
``python ../shared/bench/make_data.py DIR``). Inline Context, page cache hot (the file is read
once with ``cat`` first). Printed, in GB/s of file data (best / median of ``--repeats`` runs
after one run that compiles the kernels):

* ``page cache read``: ``readinto`` of the whole file in 16 MiB blocks on one core;
* ``sum``: SumUDF without corrections (reads the stored uint16 directly);
* ``sum + dark/gain``: with a float32 dark frame and gain map (tiles may cut frames);
* ``sum + dark/gain/excluded``: the same plus ``--excluded`` randomly placed excluded pixels
  (tiles hold whole frames);
* ``numpy``: the naive way on an ``np.memmap``, 256 frames at a time: convert to float32,
  subtract, multiply, replace each excluded pixel by the mean of its neighbours (one fancy
  index per pixel), sum in float64. It also checks the udfkit result.
"""

import argparse
import os
import sys
import time

import numpy as np
from bench_common import append_rows, page_cache_read, timed, warm

GB = 1e9
CHUNK = 256
NAV, SIG = (128, 128), (256, 256)


def make_corrections(n_excluded, seed=0):
    rng = np.random.default_rng(seed)
    dark = rng.normal(20, 2, SIG).astype(np.float32)
    gain = rng.normal(1, 0.05, SIG).astype(np.float32)
    flat = rng.choice(SIG[0] * SIG[1], size=n_excluded, replace=False)
    coords = np.stack(np.unravel_index(flat, SIG), axis=-1)
    return dark, gain, coords


def numpy_way(mm, dark, gain, neighbour_lists):
    """Corrected sum over frames, in chunks, written the obvious numpy way."""
    flat = mm.reshape(-1, SIG[0] * SIG[1])
    d, g = dark.reshape(-1), gain.reshape(-1)
    acc = np.zeros(SIG[0] * SIG[1])
    for i in range(0, flat.shape[0], CHUNK):
        c = (flat[i:i + CHUNK].astype(np.float32) - d) * g
        patched = c.copy()
        for p, nbrs in neighbour_lists:
            patched[:, p] = c[:, nbrs].mean(axis=1)
        acc += patched.sum(axis=0, dtype=np.float64)
    return acc.reshape(SIG)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default=os.environ.get("BENCH_DATA"), required="BENCH_DATA" not in os.environ)
    ap.add_argument("--excluded", type=int, default=100)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--out")
    args = ap.parse_args()

    from udfkit import Context, CorrectionSet
    from udfkit.udf import SumUDF
    from udfkit.udf.driver import UDFRun

    path = os.path.join(args.data, "u16.raw")
    nbytes = os.path.getsize(path)
    warm(path)
    limit = page_cache_read(path, args.repeats)
    print(f"{path} ({nbytes / 2**30:.1f} GiB), page cache read {nbytes / limit / GB:.1f} GB/s, "
          f"{args.excluded} excluded pixels")
    print(f"{'run':28s} {'GB/s (best / median)':>22s}  {'first run s':>11s}  tile shape")

    dark, gain, coords = make_corrections(args.excluded)
    variants = {
        "sum": None,
        "sum + dark/gain": CorrectionSet(dark=dark, gain=gain),
        "sum + dark/gain/excluded": CorrectionSet(dark=dark, gain=gain, excluded_pixels=coords),
    }
    ctx = Context.make_with("inline")
    ds = ctx.load("raw", path=path, dtype="uint16", nav_shape=NAV, sig_shape=SIG)
    rows, results = [], {}
    for name, corr in variants.items():
        t0 = time.perf_counter()
        ctx.run_udf(dataset=ds, udf=SumUDF(), corrections=corr)
        first = time.perf_counter() - t0
        best, median, res = timed(lambda: ctx.run_udf(dataset=ds, udf=SumUDF(), corrections=corr),
                                  args.repeats)
        results[name] = res["intensity"].data
        scheme = UDFRun(ds, [SumUDF()], corrections=corr).scheme
        row = dict(run=name, gbs=nbytes / best / GB, median_gbs=nbytes / median / GB, first_s=first,
                   tile=list(scheme.shape), page_cache_gbs=nbytes / limit / GB)
        rows.append(row)
        print(f"{name:28s} {row['gbs']:>9.2f} / {row['median_gbs']:<10.2f}  {first:>11.2f}  "
              f"{tuple(scheme.shape)}")
        sys.stdout.flush()

    plan = variants["sum + dark/gain/excluded"].plan(SIG)
    neighbour_lists = [(int(p), plan.neighbours_of(k)) for k, p in enumerate(plan.excluded)]
    mm = np.memmap(path, dtype="uint16", mode="r", shape=NAV + SIG)
    best, median, ref = timed(lambda: numpy_way(mm, dark, gain, neighbour_lists), args.repeats)
    del mm
    got = results["sum + dark/gain/excluded"]
    agree = bool(np.allclose(got, ref, rtol=1e-5, atol=1e-5 * float(np.abs(ref).max())))
    row = dict(run="numpy (dark/gain/excluded)", gbs=nbytes / best / GB, median_gbs=nbytes / median / GB,
               agree=agree)
    rows.append(row)
    print(f"{row['run']:28s} {row['gbs']:>9.2f} / {row['median_gbs']:<10.2f}  {'':>11s}  "
          f"chunks of {CHUNK} frames; udfkit agrees: {agree}")
    append_rows(args.out, rows)


if __name__ == "__main__":
    main()
