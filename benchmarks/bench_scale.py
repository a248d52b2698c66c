#!/usr/bin/env python3
"""How a dask run's fixed costs grow with workers (issue 18; the model is docs/scaling.rst).

    python benchmarks/bench_scale.py [--workers 1,2,4,8] [--parts 128] [--sig 256]
        [--param-mib 64] [--repeats 3] [--quick]

The data sets are raw files (a memory data set's tasks would carry their frames). On local
dask clusters of 1, 2, 4 and 8 single-threaded workers (oversubscribed on purpose on
a small machine: the point is the per-partition overhead and the main process's share, not
throughput), printed per cluster size, in the same run:

* **scheduler cost per task**: ``--parts`` no-op tasks through ``client.submit`` and the
  run loop's way of waiting, per task, against one such task;
* **per-partition cost of a run**: SumUDF over ``--parts`` one-frame partitions of 16×16
  float32, ``(t(N) - t(1)) / N``;
* **merge cost per partition**: the same with ``--sig``×``--sig`` frames (a float64 sig
  buffer of ``8 · sig²`` bytes per partition travels back and is merged on the main process),
  minus the 16×16 figure; and the main process's part of it, timed in the run's own merge;
* both run figures twice: **flat** (every partition a dask task, its result merged on the
  main process, as ``deterministic=True`` runs go) and with the **tree merge** (the default:
  groups of consecutive partitions merged on the workers, :mod:`udfkit.udf.treemerge`;
  grouped from ``8 ×`` workers partitions on);
* **parameter shipping**: a run over ``2 ×`` workers partitions of a UDF with a
  ``--param-mib`` MiB parameter that it barely reads, minus the same run with a 4-byte one:
  hashing the parameter, scattering it once to every worker and unpickling it there;
* for comparison, numpy's sum of the same frames (the work itself).
"""

import argparse
import os
import tempfile
import time

import numpy as np
from bench_overhead import best, big_param_udf


def scheduler_cost(ctx, parts, repeats):
    """Seconds per no-op task through the executor's own run loop (submit, wait, gather)."""
    ex = ctx.executor

    def run(n):
        return list(ex.run_tasks([_Noop() for _ in range(n)]))

    run(4)
    t1 = best(lambda: run(1), repeats)
    tn = best(lambda: run(parts), repeats)
    return (tn - t1) / (parts - 1)


class _Noop:
    def __call__(self, progress=None):
        return None


def merge_main_cost(ctx, sig, repeats):
    """Main-process seconds per merge of one partition's SumUDF sig buffer (sig x sig)."""
    from udfkit.udf import SumUDF
    from udfkit.udf.driver import UDFRun
    from udfkit.udf.plan import plan_run
    from udfkit.udf.runner import PartitionResult

    data = np.ones((8, sig, sig), dtype=np.float32)
    ds = ctx.load("memory", data=data, sig_dims=2, num_partitions=8)
    run = UDFRun(plan_run(ds, [SumUDF()], executor=ctx.executor))
    run.partitions_by_index = {p.index: i for i, p in enumerate(run.partitions)}
    run._allocate()
    src = {"intensity": np.ones((sig, sig), dtype=run.specs[0]["intensity"].dtype)}
    n = 200
    t = best(lambda: [run._merge(PartitionResult(i % 8, [src], 1)) for i in range(n)], repeats)
    return t / n


def raw(tmpdir, name, data):
    """``data`` as a raw file (a memory data set's tasks would carry their frames)."""
    path = os.path.join(tmpdir, name)
    data.tofile(path)
    return dict(path=path, dtype=str(data.dtype), nav_shape=data.shape[:1], sig_shape=data.shape[1:])


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--workers", default="1,2,4,8")
    ap.add_argument("--parts", type=int, default=128)
    ap.add_argument("--sig", type=int, default=256)
    ap.add_argument("--param-mib", type=int, default=64)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--quick", action="store_true", help="1 and 2 workers, small sizes")
    args = ap.parse_args(argv)
    if args.quick:
        args.workers, args.parts, args.sig, args.param_mib, args.repeats = "1,2", 16, 64, 4, 1

    from udfkit import Context
    from udfkit.udf import SumUDF

    parts = args.parts
    tmp = tempfile.TemporaryDirectory()
    small = raw(tmp.name, "small.raw", np.random.default_rng(0).random((parts, 16, 16)).astype(np.float32))
    big_data = np.random.default_rng(1).random((parts, args.sig, args.sig)).astype(np.float32)
    big = raw(tmp.name, "big.raw", big_data)
    work = best(lambda: big_data.sum(axis=0), args.repeats)
    del big_data
    udf_class = big_param_udf()
    param = np.ones(args.param_mib << 18, dtype=np.float32)
    tiny_param = param[:1].copy()
    print(f"dask, {parts} partitions; per-task figures in ms; numpy sum of the {args.sig}x{args.sig} "
          f"frames: {work * 1e3:.2f} ms")
    print("flat: one dask task per partition, merged on the main process; tree: groups of "
          "partitions merged on the workers")
    print(f"{'workers':>7} {'sched/task':>11} {'run/part':>9} {'tree':>6} {'sig run/part':>13} "
          f"{'tree':>6} {'merge/part':>11} {'tree':>6} {'main merge':>11} "
          f"{'ship ' + str(args.param_mib) + ' MiB':>13} {'per worker':>11}")
    with tmp:
        for w in [int(x) for x in args.workers.split(",") if x]:
            with Context.make_with("dask", cpus=w) as ctx:
                c_sched = scheduler_cost(ctx, parts, args.repeats)
                ds1 = ctx.load("raw", **small, num_partitions=1)
                dsn = ctx.load("raw", **small, num_partitions=parts)
                bg1 = ctx.load("raw", **big, num_partitions=1)
                bgn = ctx.load("raw", **big, num_partitions=parts)
                for ds in (ds1, dsn, bg1, bgn):
                    ctx.run_udf(dataset=ds, udf=SumUDF())
                t1 = best(lambda: ctx.run_udf(dataset=ds1, udf=SumUDF()), args.repeats)
                b1 = best(lambda: ctx.run_udf(dataset=bg1, udf=SumUDF()), args.repeats)
                figures = {}
                for tree in (False, True):
                    ctx.executor.tree_merge = tree
                    tn = best(lambda: ctx.run_udf(dataset=dsn, udf=SumUDF()), args.repeats)
                    bn = best(lambda: ctx.run_udf(dataset=bgn, udf=SumUDF()), args.repeats)
                    figures[tree] = ((tn - t1) / (parts - 1), (bn - b1) / (parts - 1))
                (per_part, per_part_sig), (tree_part, tree_part_sig) = figures[False], figures[True]
                c_merge_main = merge_main_cost(ctx, args.sig, args.repeats)
                pds = ctx.load("raw", **small, num_partitions=2 * w)
                ctx.run_udf(dataset=pds, udf=udf_class(tiny_param))
                t_small = best(lambda: ctx.run_udf(dataset=pds, udf=udf_class(tiny_param)), args.repeats)
                t_big = best(lambda: ctx.run_udf(dataset=pds, udf=udf_class(param)), args.repeats)
            ship = max(0.0, t_big - t_small)
            print(f"{w:>7} {c_sched * 1e3:11.2f} {per_part * 1e3:9.2f} {tree_part * 1e3:6.2f} "
                  f"{per_part_sig * 1e3:13.2f} {tree_part_sig * 1e3:6.2f} "
                  f"{(per_part_sig - per_part) * 1e3:11.2f} {(tree_part_sig - tree_part) * 1e3:6.2f} "
                  f"{c_merge_main * 1e3:11.3f} "
                  f"{ship * 1e3:13.1f} {ship / w * 1e3:11.1f}", flush=True)


if __name__ == "__main__":
    main()
