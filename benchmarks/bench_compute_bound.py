#!/usr/bin/env python3
"""A compute-bound UDF on a small data set: do all workers get work? (issue 18)

    python benchmarks/bench_compute_bound.py [--frames 1024] [--ms 2] [--cpus 2]
        [--kinds inline,threads,processes,dask] [--udfs python,numba] [--repeats 3] [--quick]

1024 frames of 64x64 uint16 (8 MiB, in memory) and a UDF that spends ``--ms`` of CPU per
frame: ``python`` spins in Python (holds the GIL, so a threads pool cannot gain), ``numba``
runs a calibrated ``nogil`` numba loop (a compiled kernel: threads gain too). Printed for
each executor: the best of ``--repeats`` runs (after one warm-up run, which also measures the
cost that the next runs start from), its ratio to inline and the partitions the run
executed; next to them the same work as a plain loop over the frames without udfkit (one
core) and that divided by ``--cpus`` (the machine limit). Target: processes/threads/dask
<= 0.55 x inline on 2 workers. The load average is printed: the machine may be shared.
"""

import argparse
import os
import time

import numpy as np
from bench_common import timed
from spin_udfs import NumbaSpinUDF, PythonSpinUDF, _spin, calibrate

from udfkit import Context


def make_udf(kind, ms, iterations):
    return PythonSpinUDF(ms=ms) if kind == "python" else NumbaSpinUDF(iterations=iterations)


def plain_loop(data, kind, ms, iterations):
    frames = data.reshape(-1, *data.shape[-2:])
    out = np.empty(len(frames))
    for i, frame in enumerate(frames):
        if kind == "python":
            end = time.thread_time() + ms / 1e3
            while time.thread_time() < end:
                pass
        else:
            _spin(iterations, 1)
        out[i] = frame.astype(np.float32).sum()
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--frames", type=int, default=1024)
    ap.add_argument("--ms", type=float, default=2.0)
    ap.add_argument("--cpus", type=int, default=2)
    ap.add_argument("--kinds", default="inline,threads,processes,dask")
    ap.add_argument("--udfs", default="python,numba")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--quick", action="store_true", help="64 frames, 0.5 ms, one repeat (smoke test)")
    args = ap.parse_args()
    if args.quick:
        args.frames, args.ms, args.repeats = 64, 0.5, 1
    side = int(np.sqrt(args.frames))
    nav = (side, args.frames // side) if side * (args.frames // side) == args.frames else (args.frames,)
    data = np.random.default_rng(0).integers(0, 1000, nav + (64, 64)).astype("uint16")
    ref = data.reshape(-1, 64, 64).astype(np.float64).sum(axis=(1, 2)).reshape(nav)
    iterations = calibrate(args.ms)
    print(f"{args.frames} frames of 64x64 uint16 ({data.nbytes / 2**20:.0f} MiB), {args.ms} ms "
          f"per frame, {args.cpus} workers; load average {os.getloadavg()[0]:.2f} "
          f"on {os.cpu_count()} cores")
    for udf_kind in args.udfs.split(","):
        best_plain = timed(lambda: plain_loop(data, udf_kind, args.ms, iterations), args.repeats)[0]
        print(f"\n{udf_kind} spin: plain loop without udfkit {best_plain:.3f} s (one core), "
              f"machine limit {best_plain / args.cpus:.3f} s ({args.cpus} cores)")
        inline = None
        for kind in args.kinds.split(","):
            ctx = (Context.make_with("inline") if kind == "inline"
                   else Context.make_with(kind, cpus=args.cpus))
            with ctx:
                ds = ctx.load("memory", data=data)

                def run():
                    for r in ctx.run_udf_iter(ds, make_udf(udf_kind, args.ms, iterations)):
                        pass
                    return r
                run()  # warm-up: workers, imports, and the cost the next runs start from
                best, median, r = timed(run, args.repeats)
            assert np.allclose(r.buffers[0]["s"].data, ref)
            if kind == "inline":
                inline = best
            ratio = f"{best / inline:.2f} x inline" if inline else ""
            parts = getattr(r, "partitions", None)  # (not reported by older udfkit)
            where = "" if not parts else (
                f"{len(parts)} partitions ({min(p.processed for p in parts)}-"
                f"{max(p.processed for p in parts)} frames)")
            print(f"  {kind:<10} best {best:.3f} s  median {median:.3f} s  {ratio:<14} {where}")
    print(f"\nload average after: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
