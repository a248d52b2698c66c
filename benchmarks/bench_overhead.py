#!/usr/bin/env python3
"""Fixed costs of a run: per partition, per task payload, per shared parameter (issue 18).

    python benchmarks/bench_overhead.py [--kinds inline,processes,dask,default] [--cpus 2]
        [--parts 256] [--mask-mib 256] [--repeats 5] [--quick]

Printed, in the same run:

* **tiny run**: SumUDF on a 4×4×8×8 memory data set (one partition), per executor, and on
  the default ``Context()`` (kind ``default``), which runs such a small run in the main process;
* **per-partition cost**: SumUDF over ``--parts`` one-frame partitions of 16×16 float32
  against the same data in one partition, ``(t(N) - t(1)) / N`` (target: ≤ 1 ms on
  ``processes``, ≤ 3 ms on ``dask``); the numpy sum of the same array as the floor; dask
  three times: with partitions merged on the workers in groups (the default),
  ``deterministic=True`` (``dask det``: partitions in bundles, merged on the main process
  in order) and ``dask flat`` (``tree_merge=False``: one task per partition);
* **task payload**: the pickled size of one partition's task of ApplyMasksUDF with a
  ``--mask-mib`` MiB float32 mask stack, the way it travelled before parameters were shared
  (the whole task pickled) and the way the processes and dask executors send it now (shared
  parameters as content-key references), and the main process's one-off cost to hash and
  pickle the stack;
* **a run with a large parameter** (``--mask-mib`` MiB) on the processes and dask executors,
  over 1 and over ``4 × cpus`` partitions, the way it travels now and the way it travelled
  before (inside every task; the same run with the sharing threshold set out of reach): the
  difference is what each extra partition costs with large parameters.
"""

import argparse
import os
import tempfile
import time

import numpy as np


def best(fn, repeats):
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def payload_sizes(mask_mib):
    import cloudpickle

    from udfkit import Context
    from udfkit.common.shared import collecting
    from udfkit.executor._shipping import dumps_by_value
    from udfkit.udf import ApplyMasksUDF
    from udfkit.udf.driver import UDFRun
    from udfkit.udf.plan import plan_run

    n_masks = max(1, (mask_mib << 20) // (64 * 64 * 4))
    masks = np.ones((n_masks, 64, 64), dtype=np.float32)
    # a raw file: a memory data set's task would carry its frames
    tmp = tempfile.TemporaryDirectory()
    path = os.path.join(tmp.name, "frames.raw")
    np.ones((4, 64, 64), dtype=np.float32).tofile(path)
    with tmp, Context.make_with("inline") as ctx:
        ds = ctx.load("raw", path=path, dtype="float32", nav_shape=(4,), sig_shape=(64, 64),
                      num_partitions=4)
        run = UDFRun(plan_run(ds, [ApplyMasksUDF(mask_factories=lambda: masks)],
                              executor=ctx.executor))
        tasks = run.tasks()
        t0 = time.perf_counter()
        before = len(cloudpickle.dumps(tasks[0]))
        t_before = time.perf_counter() - t0
        found: dict = {}
        t0 = time.perf_counter()
        with collecting(found):
            after_proc = len(cloudpickle.dumps(tasks[0]))
        t_first = time.perf_counter() - t0  # hashes and pickles the stack once
        t0 = time.perf_counter()
        with collecting(found):
            after_proc2 = len(cloudpickle.dumps(tasks[1]))
        t_next = time.perf_counter() - t0
        with collecting(found):
            after_dask = len(dumps_by_value(tasks[1]))
    print(f"task payload, ApplyMasksUDF with a {masks.nbytes / 2**20:.0f} MiB mask stack "
          f"({n_masks} masks of 64x64 float32):")
    print(f"  before (parameters in every task):   {before:>12,d} B   pickled in {t_before * 1e3:8.1f} ms per task")
    print(f"  now, processes (first / next task):  {after_proc:>12,d} B / {after_proc2:,d} B   "
          f"first {t_first * 1e3:.1f} ms (hash + pickle once per run), next {t_next * 1e3:.2f} ms")
    print(f"  now, dask:                           {after_dask:>12,d} B")
    return masks


def cpu_seconds():
    """``(main process, its child processes)`` CPU seconds so far (user + system), the
    children alive now included: a machine shared with other work inflates wall times, not
    these."""
    import psutil

    me = psutil.Process()
    t = me.cpu_times()
    kids = 0.0
    for child in me.children(recursive=True):
        try:
            c = child.cpu_times()
            kids += c.user + c.system
        except psutil.NoSuchProcess:
            pass
    return t.user + t.system, kids


def cpu_per_run(fn, repeats):
    """Main-process and worker CPU seconds of one call of ``fn`` (mean of ``repeats``)."""
    m0, k0 = cpu_seconds()
    for _ in range(repeats):
        fn()
    m1, k1 = cpu_seconds()
    return (m1 - m0) / repeats, (k1 - k0) / repeats


def per_partition(kinds, cpus, parts, repeats):
    from udfkit import Context

    tiny = np.random.default_rng(0).random((4, 4, 8, 8)).astype(np.float32)
    data = np.random.default_rng(1).random((parts, 16, 16)).astype(np.float32)
    floor = best(lambda: data.sum(axis=0), repeats)
    print(f"\nper-partition cost: SumUDF over {parts} one-frame partitions of 16x16 float32 "
          f"(numpy sum of the whole: {floor * 1e3:.3f} ms)")
    print("  (wall time; then CPU time per partition of the main process and of the workers, "
          "which a busy machine does not inflate)")
    print(f"  {'executor':<10} {'tiny run':>10} {'1 part':>10} {f'{parts} parts':>12} {'per part':>10} "
          f"{'main CPU':>10} {'worker CPU':>11}")
    for kind in kinds:
        if kind == "default":
            # Context(): its own worker processes, with small runs in the main process (the
            # tiny run is one); the partitioned runs are not small and go to the workers
            with Context() as ctx:
                ds_tiny = ctx.load("memory", data=tiny, sig_dims=2)
                ctx.run_udf(dataset=ds_tiny, udf=SumUDF())
                t_tiny = best(lambda: ctx.run_udf(dataset=ds_tiny, udf=SumUDF()), repeats * 4)
                where = "main process" if ctx.plan(ds_tiny, SumUDF()).in_main_process else "workers"
            print(f"  {kind:<10} {t_tiny * 1e3:8.2f}ms   (Context(); the tiny run in the {where}; "
                  "otherwise as processes)")
            continue
        kw = {} if kind == "inline" else {"cpus": cpus}
        with Context.make_with(kind, **kw) as ctx:
            # dask, in the same cluster: also deterministic (partitions in bundles, merged
            # here in order) and without any grouping (every partition a task of its own)
            variants = ([("dask", True, False), ("dask det", True, True),
                         ("dask flat", False, False)] if kind == "dask" else [(kind, True, False)])
            for label, tree, det in variants:
                if kind == "dask":
                    ctx.executor.tree_merge = tree
                _per_partition_row(ctx, label, tiny, data, parts, repeats, det)


def _per_partition_row(ctx, label, tiny, data, parts, repeats, det=False):
    from udfkit.udf import SumUDF

    ctx = _Deterministic(ctx) if det else ctx

    ds_tiny = ctx.load("memory", data=tiny, sig_dims=2)
    ds1 = ctx.load("memory", data=data, sig_dims=2, num_partitions=1)
    dsn = ctx.load("memory", data=data, sig_dims=2, num_partitions=parts)
    for ds in (ds_tiny, ds1, dsn):
        ctx.run_udf(dataset=ds, udf=SumUDF())  # warm up workers and caches
    t_tiny = best(lambda: ctx.run_udf(dataset=ds_tiny, udf=SumUDF()), repeats * 4)
    t1 = best(lambda: ctx.run_udf(dataset=ds1, udf=SumUDF()), repeats)
    tn = best(lambda: ctx.run_udf(dataset=dsn, udf=SumUDF()), repeats)
    m1, k1 = cpu_per_run(lambda: ctx.run_udf(dataset=ds1, udf=SumUDF()), repeats)
    mn, kn = cpu_per_run(lambda: ctx.run_udf(dataset=dsn, udf=SumUDF()), repeats)
    print(f"  {label:<10} {t_tiny * 1e3:8.2f}ms {t1 * 1e3:8.2f}ms {tn * 1e3:10.1f}ms "
          f"{(tn - t1) / (parts - 1) * 1e3:8.3f}ms {(mn - m1) / (parts - 1) * 1e3:8.3f}ms "
          f"{(kn - k1) / (parts - 1) * 1e3:9.3f}ms", flush=True)


class _Deterministic:
    """A context whose ``run_udf`` asks for ``deterministic=True``."""

    def __init__(self, ctx):
        self.ctx = ctx
        self.load = ctx.load

    def run_udf(self, **kw):
        return self.ctx.run_udf(deterministic=True, **kw)


def big_param_udf():
    from udfkit import UDF

    class BigParamSum(UDF):
        """Sum of the frames plus one element of a large parameter: what a partition costs
        beyond its data when the run has large parameters."""

        def __init__(self, param):
            super().__init__(param=param)

        def get_result_buffers(self):
            return {"total": self.buffer(kind="single", dtype="float64")}

        def process_tile(self, tile):
            self.results.total[:] += tile.sum() + self.params.param[0]

        def merge(self, dest, src):
            dest.total[:] += src.total

    return BigParamSum


def large_params(kinds, cpus, mib, repeats):
    from udfkit import Context
    from udfkit.common import shared

    udf_class = big_param_udf()
    param = np.ones(mib << 18, dtype=np.float32)  # mib MiB
    data = np.ones((64, 16, 16), dtype=np.float32)
    many = 4 * cpus
    print(f"\na run with a {param.nbytes / 2**20:.0f} MiB parameter (a sum of 64 frames of 16x16 "
          f"that reads one element of it), over 1 and over {many} partitions; 'before' sends the "
          f"parameter inside every task, as before parameters were shared")
    print(f"  {'executor':<10} {'way':<7} {'1 part':>10} {f'{many} parts':>10} {'per extra part':>15}")
    saved = shared.SHARE_MIN_BYTES
    for kind in kinds:
        if kind in ("inline", "threads", "default"):
            continue  # nothing is pickled (default: as processes): no cost to measure
        with Context.make_with(kind, cpus=cpus) as ctx:
            ds1 = ctx.load("memory", data=data, sig_dims=2, num_partitions=1)
            dsn = ctx.load("memory", data=data, sig_dims=2, num_partitions=many)
            for way, limit in (("before", 1 << 62), ("now", saved)):
                shared.SHARE_MIN_BYTES = limit
                try:
                    ctx.run_udf(dataset=ds1, udf=udf_class(param))
                    t1 = best(lambda: ctx.run_udf(dataset=ds1, udf=udf_class(param)), repeats)
                    tn = best(lambda: ctx.run_udf(dataset=dsn, udf=udf_class(param)), repeats)
                finally:
                    shared.SHARE_MIN_BYTES = saved
                print(f"  {kind:<10} {way:<7} {t1 * 1e3:8.1f}ms {tn * 1e3:8.1f}ms "
                      f"{(tn - t1) / (many - 1) * 1e3:13.1f}ms")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--kinds", default="inline,processes,dask,default")
    ap.add_argument("--cpus", type=int, default=2)
    ap.add_argument("--parts", type=int, default=256)
    ap.add_argument("--mask-mib", type=int, default=256)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--quick", action="store_true",
                    help="small sizes, one repeat: a smoke test of the script")
    args = ap.parse_args(argv)
    if args.quick:
        args.parts, args.mask_mib, args.repeats = 16, 4, 1
    kinds = [k for k in args.kinds.split(",") if k]
    payload_sizes(args.mask_mib)
    per_partition(kinds, args.cpus, args.parts, args.repeats)
    large_params(kinds, args.cpus, args.mask_mib, args.repeats)


if __name__ == "__main__":
    main()
