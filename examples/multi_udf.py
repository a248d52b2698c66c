"""Several UDFs in one pass over the data, and how long that takes compared with one run each.

``ctx.run_udf(dataset=ds, udf=[a, b, c])`` reads every tile once and hands it to all UDFs;
it returns a list with one result dict per UDF, in order.

Run it with ``python examples/multi_udf.py [--out DIR]``; the raw data file (32 MiB) goes to
DIR (default: a temporary directory).
"""

import argparse
import os
import tempfile
import time

import numpy as np

from udfkit import Context
from udfkit.udf import ApplyMasksUDF, StdDevUDF, SumSigUDF, SumUDF

NAV, SIG = (64, 64), (64, 64)


def central_disk():
    y, x = np.indices(SIG)
    return (np.hypot(y - 32, x - 32) < 10).astype("float32")


def make_udfs():
    return [SumUDF(), SumSigUDF(), StdDevUDF(), ApplyMasksUDF(mask_factories=[central_disk])]


def best_of(n, f):
    """Shortest of ``n`` timed calls of ``f()``, and its last result."""
    times = []
    for _ in range(n):
        t0 = time.perf_counter()
        result = f()
        times.append(time.perf_counter() - t0)
    return min(times), result


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--out", default=None, help="directory for the data (default: temporary)")
    out = ap.parse_args(argv).out or tempfile.mkdtemp(prefix="udfkit-multi-")
    os.makedirs(out, exist_ok=True)
    path = os.path.join(out, "scan.raw")
    data = np.random.default_rng(4).poisson(3, size=NAV + SIG).astype("uint16")
    data.tofile(path)

    with Context.make_with("inline") as ctx:
        ds = ctx.load("raw", path=path, dtype="uint16", nav_shape=NAV, sig_shape=SIG)
        ctx.run_udf(dataset=ds, udf=make_udfs())        # warm-up: numba kernels, page cache

        # one pass: a list in, a list of result dicts out, in the same order
        t_one_pass, (total, per_frame, stats, virtual) = best_of(
            3, lambda: ctx.run_udf(dataset=ds, udf=make_udfs()))
        t_separate, separate = best_of(
            3, lambda: [ctx.run_udf(dataset=ds, udf=udf) for udf in make_udfs()])

    # One pass reads (and converts) each tile once. That pays most when reading is the
    # bottleneck: files much larger than the page cache, slow disks, network file systems.
    # Here the file is small and cached, so the difference is small. Each UDF gets its own
    # input dtype: SumUDF reads uint16 while ApplyMasksUDF gets float32 tiles of the same frames.
    print(f"data {NAV + SIG} uint16, {data.nbytes / 2**20:.0f} MiB, 4 UDFs")
    print(f"one pass:      {t_one_pass * 1e3:7.1f} ms")
    print(f"separate runs: {t_separate * 1e3:7.1f} ms")
    for udf, res in zip(make_udfs(), (total, per_frame, stats, virtual)):
        print(f"  {type(udf).__name__:14s}", ", ".join(f"{k} {v.data.shape}" for k, v in res.items()))

    assert np.array_equal(total["intensity"].data, data.sum(axis=(0, 1)))
    assert np.array_equal(per_frame["intensity"].data, data.sum(axis=(2, 3)))
    assert np.allclose(stats["std"].data, data.std(axis=(0, 1)))
    assert np.allclose(virtual["intensity"].data[..., 0], (data * central_disk()).sum(axis=(2, 3)))
    # one pass or separate runs: the same numbers (up to rounding: tiles may differ)
    for together, alone in zip([total, per_frame, stats, virtual], separate):
        for name in together:
            assert np.allclose(together[name].data, alone[name].data, rtol=1e-6), name
    print("results equal numpy, and one pass equals separate runs")


if __name__ == "__main__":
    main()
