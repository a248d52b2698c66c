#!/usr/bin/env python3
"""Executors side by side: SumUDF (and StdDevUDF) on the 2 GiB uint16 raw file, and the fixed
cost of a Context (start + a tiny run + close), in the same run.

    python benchmarks/bench_executors.py --data DIR [--kinds inline,threads,processes,dask]
        [--cpus 2] [--repeats 3]

DIR is made by ``python ../shared/bench/make_data.py DIR``. Page cache hot (the file is read
once with ``cat`` first, after evicting it). Printed next to the figures: ``readinto`` of the file in 16 MiB
blocks on one core, and the same with one reader thread per worker over disjoint halves
(the page-cache limit for that many cores). Target (issue 4): SumUDF ≥ 16 GB/s with
``processes`` and 2 workers; Context start + close ≤ 0.5 s.
"""

import argparse
import os
import threading
import time

import numpy as np
from bench_common import warm

GB = 1e9
SPEC = dict(file="u16.raw", dtype="uint16", nav_shape=(128, 128), sig_shape=(256, 256))


def readers(path, n, repeats):
    size = os.path.getsize(path)

    def read(lo, hi):
        buf = bytearray(16 << 20)
        mv = memoryview(buf)
        with open(path, "rb", buffering=0) as f:
            f.seek(lo)
            left = hi - lo
            while left > 0:
                got = f.readinto(mv[:min(len(mv), left)])
                if not got:
                    break
                left -= got

    best = 1e9
    for _ in range(repeats):
        bounds = [(i * size // n, (i + 1) * size // n) for i in range(n)]
        threads = [threading.Thread(target=read, args=b) for b in bounds]
        t0 = time.perf_counter()
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        best = min(best, time.perf_counter() - t0)
    return size / best / GB


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default=os.environ.get("BENCH_DATA"), required="BENCH_DATA" not in os.environ)
    ap.add_argument("--kinds", default="inline,threads,processes,dask")
    ap.add_argument("--cpus", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()

    from udfkit import Context
    from udfkit.udf import StdDevUDF, SumUDF

    path = os.path.join(args.data, SPEC["file"])
    nbytes = os.path.getsize(path)
    warm(path)
    print(f"{path}: {nbytes / 2**30:.1f} GiB; page cache read: 1 thread "
          f"{readers(path, 1, args.repeats):.1f} GB/s, {args.cpus} threads "
          f"{readers(path, args.cpus, args.repeats):.1f} GB/s")
    print(f"{'executor':10s} {'start s':>8s} {'tiny run ms':>12s} {'close s':>8s} "
          f"{'Sum GB/s':>9s} {'StdDev GB/s':>12s}")
    tiny = np.ones((8, 8, 32, 32), dtype=np.uint16)
    for kind in args.kinds.split(","):
        kwargs = {} if kind == "inline" else {"cpus": args.cpus}
        t0 = time.perf_counter()
        ctx = Context.make_with(kind, **kwargs)
        start = time.perf_counter() - t0
        ds_tiny = ctx.load("memory", data=tiny)
        ctx.run_udf(dataset=ds_tiny, udf=SumUDF())  # workers ready, kernels loaded
        t0 = time.perf_counter()
        for _ in range(10):
            ctx.run_udf(dataset=ds_tiny, udf=SumUDF())
        tiny_ms = (time.perf_counter() - t0) / 10 * 1e3
        ds = ctx.load("raw", path=path, dtype=SPEC["dtype"], nav_shape=SPEC["nav_shape"],
                      sig_shape=SPEC["sig_shape"])
        rates = []
        for udf in (SumUDF, StdDevUDF):
            ctx.run_udf(dataset=ds, udf=udf())
            best = 1e9
            for _ in range(args.repeats):
                t0 = time.perf_counter()
                ctx.run_udf(dataset=ds, udf=udf())
                best = min(best, time.perf_counter() - t0)
            rates.append(nbytes / best / GB)
        t0 = time.perf_counter()
        ctx.close()
        close = time.perf_counter() - t0
        print(f"{kind:10s} {start:8.3f} {tiny_ms:12.2f} {close:8.3f} {rates[0]:9.2f} {rates[1]:12.2f}",
              flush=True)


if __name__ == "__main__":
    main()
