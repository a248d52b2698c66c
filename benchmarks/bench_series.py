#!/usr/bin/env python3
"""Per-pixel median over a time stack: udfkit's series mode next to dask.array, same run.

    python benchmarks/bench_series.py --data DIR [--executor processes] [--cpus N]
        [--repeats 3] [--out results.jsonl]
    python benchmarks/bench_series.py --quick      # a 64 MiB stack in a temporary folder

DIR is made by ``python ../shared/bench/make_data.py DIR``; the stack is ``f32.raw`` (4096
frames of 256×256 float32, 1 GiB), read as a time series of 4096 frames. Page cache hot (read
once with ``cat``). Each contender runs in its own process, so that its peak memory is its
own; the script prints

* ``page cache read``: ``readinto`` of the whole file in 16 MiB blocks on one core;
* ``udfkit``: ``ctx.run_udf(ds, SeriesStatsUDF(stats=("median",)))`` (series mode: strided
  reads of row blocks through the memory map), best / median of ``--repeats``, with the peak
  RSS (``VmHWM``) of the main process and of every worker process;
* ``dask``: ``da.from_array(np.memmap(...), chunks=(256, 256, 256)).rechunk((-1, rows, 256))``
  then ``da.median(axis=0)`` (the way a dask user gets a per-pixel median: the time axis must
  be one chunk), threaded scheduler with ``--cpus`` workers, with its process's peak RSS;
* whether the two medians agree with each other (and, for ``--quick``, with numpy).

Targets (issue 17): faster than dask, peak RSS per process ≤ 300 MiB.
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile

import numpy as np
from bench_common import append_rows, page_cache_read, timed, warm

GB = 1e9
MiB = 1 << 20


def vm_hwm(pid="self"):
    """Peak resident set size of a process in bytes (``VmHWM``), 0 when gone."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def child_hwm():
    """``{pid: VmHWM}`` of every descendant of this process (executor workers)."""
    import psutil

    return {c.pid: vm_hwm(c.pid) for c in psutil.Process().children(recursive=True)}


def run_udfkit(args):
    from udfkit import Context
    from udfkit.udf import SeriesStatsUDF

    kw = {} if args.executor == "inline" else {"cpus": args.cpus}
    with Context.make_with(args.executor, **kw) as ctx:
        ds = ctx.load("raw", path=args.path, dtype="float32", nav_shape=(args.frames,),
                      sig_shape=tuple(args.sig))
        plan = ctx.plan(ds, SeriesStatsUDF(stats=("median",)))
        ctx.run_udf(ds, SeriesStatsUDF(stats=("median",)))  # workers up, kernels compiled
        best, med, res = timed(lambda: ctx.run_udf(ds, SeriesStatsUDF(stats=("median",))),
                               args.repeats)
        workers = child_hwm()
        np.save(args.result, res["median"].data)
    return {"best": best, "median": med, "rss_main": vm_hwm(), "rss_workers": workers,
            "plan": f"{len(plan.blocks)} blocks of {plan.block_shape}, reads {plan.read_mode}"}


def run_dask(args):
    import dask
    import dask.array as da

    mm = np.memmap(args.path, dtype="float32", mode="r",
                   shape=(args.frames,) + tuple(args.sig))
    rows = max(1, args.sig[0] // 16)

    def go():
        x = da.from_array(mm, chunks=(256,) + tuple(args.sig))
        x = x.rechunk((-1, rows) + tuple(args.sig[1:]))
        return da.median(x, axis=0).compute()

    with dask.config.set(scheduler="threads", num_workers=args.cpus):
        go()  # as udfkit: one untimed run first
        best, med, out = timed(go, args.repeats)
    np.save(args.result, out)
    return {"best": best, "median": med, "rss_main": vm_hwm(), "rss_workers": {},
            "plan": f"rechunk to (-1, {rows}, {args.sig[1]}) then median"}


def child(args):
    fn = run_udfkit if args.only == "udfkit" else run_dask
    print(json.dumps(fn(args)))


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", default="/work/bench_data", help="folder with f32.raw")
    p.add_argument("--quick", action="store_true", help="a small stack in a temporary folder")
    p.add_argument("--executor", default="processes", choices=["inline", "threads", "processes"])
    p.add_argument("--cpus", type=int, default=os.cpu_count())
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--contenders", default="udfkit,dask",
                   help="which to run, comma-separated (default: udfkit,dask)")
    p.add_argument("--out", default="", help="append result rows to this JSON-lines file")
    p.add_argument("--only", choices=["udfkit", "dask"], help=argparse.SUPPRESS)
    p.add_argument("--path", help=argparse.SUPPRESS)
    p.add_argument("--frames", type=int, help=argparse.SUPPRESS)
    p.add_argument("--sig", type=int, nargs=2, help=argparse.SUPPRESS)
    p.add_argument("--result", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.only:
        return child(args)

    tmp = tempfile.mkdtemp(prefix="bench-series-")
    if args.quick:
        frames, sig = 256, (256, 256)
        path = os.path.join(tmp, "stack.raw")
        ref_data = np.random.default_rng(0).normal(size=(frames,) + sig).astype("float32")
        ref_data.tofile(path)
        ref = np.median(ref_data, axis=0)
        del ref_data
        repeats = 1
    else:
        frames, sig = 4096, (256, 256)
        path = os.path.join(args.data, "f32.raw")
        if not os.path.exists(path):
            sys.exit(f"{path} is missing: run python ../shared/bench/make_data.py {args.data}")
        ref, repeats = None, args.repeats
    warm(path)
    size = os.path.getsize(path)
    limit = page_cache_read(path, 3)
    print(f"stack {path}: {frames} frames of {sig} float32, {size / MiB:.0f} MiB; "
          f"executor {args.executor}, cpus {args.cpus}")
    print(f"{'page cache read':<18} {limit:8.3f} s  {size / limit / GB:6.2f} GB/s")
    rows, results = [], {}
    for who in args.contenders.split(","):
        out = os.path.join(tmp, f"{who}.npy")
        cmd = [sys.executable, os.path.abspath(__file__), "--only", who, "--path", path,
               "--frames", str(frames), "--sig", *map(str, sig), "--result", out,
               "--executor", args.executor, "--cpus", str(args.cpus), "--repeats", str(repeats)]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode:
            sys.exit(f"{who} failed:\n{proc.stderr}")
        r = json.loads(proc.stdout.strip().splitlines()[-1])
        results[who] = np.load(out)
        workers = r["rss_workers"]
        peak_worker = max(workers.values(), default=0)
        print(f"{who:<18} {r['best']:8.3f} s  {size / r['best'] / GB:6.2f} GB/s  "
              f"(median {r['median']:.3f} s)  peak RSS main {r['rss_main'] / MiB:.0f} MiB"
              + (f", workers max {peak_worker / MiB:.0f} MiB ({len(workers)} processes)"
                 if workers else "") + f"  [{r['plan']}]")
        rows.append(dict(bench="series_median", who=who, seconds=r["best"],
                         median_seconds=r["median"], rss_main=r["rss_main"],
                         rss_worker_max=peak_worker, bytes=size, executor=args.executor,
                         cpus=args.cpus))
    agree = True
    if ref is not None:
        agree = all(np.array_equal(r, ref) for r in results.values())
        print(f"every result == numpy: {agree}")
    if len(results) == 2:
        agree = agree and np.array_equal(results["udfkit"], results["dask"])
        print(f"udfkit == dask: {np.array_equal(results['udfkit'], results['dask'])}")
        by = {r["who"]: r for r in rows}
        print(f"udfkit is {by['dask']['seconds'] / by['udfkit']['seconds']:.2f}x dask's speed")
    if "udfkit" in results:
        u = next(r for r in rows if r["who"] == "udfkit")
        worst = max(u["rss_main"], u["rss_worker_max"])
        print(f"largest udfkit process {worst / MiB:.0f} MiB "
              f"(target <= 300 MiB: {'met' if worst <= 300 * MiB else 'NOT met'})")
    append_rows(args.out, rows)
    import shutil

    shutil.rmtree(tmp, ignore_errors=True)
    if not agree:
        sys.exit(1)


if __name__ == "__main__":
    main()
