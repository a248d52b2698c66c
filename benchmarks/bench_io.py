#!/usr/bin/env python3
"""I/O backends side by side: SumUDF on the 2 GiB uint16 raw file, page cache hot and cold,
next to ``dd`` in the same run.

    python benchmarks/bench_io.py --data DIR [--backends mmap,buffered,direct,...]
        [--kinds inline,processes,threads] [--cpus 2] [--repeats 5] [--no-cold] [--no-hot]

DIR is made by ``python ../shared/bench/make_data.py DIR``. A backend is a name
(``mmap``, ``buffered``, ``direct``) or ``buffered:SIZE[:ra]`` / ``direct:SIZE[:nora]``
for a buffer size (``16MiB``) with or without read-ahead.

The speed of a shared VM drifts, and its disk switches between two speeds about 2x apart
within seconds. So every measurement is made in *rounds*: in each round every executor ×
backend runs once (and ``dd``), in turns, the order reversed every other round; figures are
the best and the median over the rounds, and ratios compare medians (or per-round times).

* **hot**: the file is evicted and read once with ``cat`` first (see ``bench_common.warm``).
  "vs mmap" is the median over the rounds of mmap's time over the backend's, same executor.
* **cold**: before each run the file's pages are dropped from the page cache with
  ``posix_fadvise(POSIX_FADV_DONTNEED)``. ``dd if=FILE of=/dev/null bs=16M`` and the same
  with ``iflag=direct`` take part in the rounds; "vs dd" is the backend's median over dd's
  median (``iflag=direct`` for the direct backend).
* The one-core line shows what one core can do hot: numpy, the copy out of the page cache,
  the sum kernel on a cached block, and copy then sum (the bound for ``buffered`` inline).

The targets of issue 5: cold buffered ≥ 90 % of cold ``dd``, direct ≥ 90 % of
``dd iflag=direct``, hot buffered within 15 % of mmap.

GB/s are bytes of the file per second of wall time (10^9 bytes).
"""

import argparse
import os
import re
import subprocess
import time

import numpy as np
from bench_common import evict, page_cache_read, timed, warm

GB = 1e9
SPEC = dict(file="u16.raw", dtype="uint16", nav_shape=(128, 128), sig_shape=(256, 256))


def dd_seconds(path, *flags):
    t0 = time.perf_counter()
    out = subprocess.run(["dd", f"if={path}", "of=/dev/null", "bs=16M", *flags],
                         capture_output=True, text=True, check=True).stderr
    wall = time.perf_counter() - t0
    m = re.search(r"copied, ([0-9.]+) s", out)
    return float(m.group(1)) if m else wall


def make_backend(spec):
    from udfkit.io.backends.buffered import BufferedBackend
    from udfkit.io.backends.direct import DirectBackend

    name, *rest = spec.split(":")
    if not rest:
        return name
    cls = {"buffered": BufferedBackend, "direct": DirectBackend}[name]
    kwargs = {"buffer_size": rest[0]}
    if len(rest) > 1:
        kwargs["readahead"] = rest[1] == "ra"
    return cls(**kwargs)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default=os.environ.get("BENCH_DATA"), required="BENCH_DATA" not in os.environ)
    ap.add_argument("--backends", default="mmap,buffered,buffered:16MiB:ra,direct,direct:16MiB:nora")
    ap.add_argument("--kinds", default="inline,processes")
    ap.add_argument("--cpus", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=5, help="rounds")
    ap.add_argument("--no-cold", action="store_true")
    ap.add_argument("--no-hot", action="store_true")
    args = ap.parse_args()

    from udfkit import Context
    from udfkit.udf import SumUDF

    path = os.path.join(args.data, SPEC["file"])
    nbytes = os.path.getsize(path)
    ref = None
    ref_path = os.path.join(args.data, "ref_u16_sigsum.npy")
    if os.path.exists(ref_path):
        ref = np.load(ref_path)

    def rate(seconds):
        return nbytes / seconds / GB

    print(f"{path}: {nbytes / 2**30:.1f} GiB, {args.repeats} rounds (GB/s)", flush=True)
    if not args.no_hot:
        warm(path)
        one_core_bound(path, args.repeats, rate)
    specs = args.backends.split(",")
    contexts, runs = [], {}
    try:
        for kind in args.kinds.split(","):
            ctx = Context.make_with(kind, **({} if kind == "inline" else {"cpus": args.cpus}))
            contexts.append(ctx)
            for spec in specs:
                ds = ctx.load("raw", path=path, dtype=SPEC["dtype"], nav_shape=SPEC["nav_shape"],
                              sig_shape=SPEC["sig_shape"], io_backend=make_backend(spec))
                runs[kind, spec] = lambda ctx=ctx, ds=ds: ctx.run_udf(dataset=ds, udf=SumUDF())
        warm(path)
        for (kind, spec), run in runs.items():  # workers started, kernels compiled, results right
            res = run()
            if ref is not None and not np.allclose(res["intensity"].data, ref):
                raise SystemExit(f"{kind}/{spec}: result differs from the reference sum")
        hot = cold = None
        if not args.no_hot:
            warm(path)
            hot = rounds({**runs, "dd": lambda: dd_seconds(path)}, args.repeats)
        if not args.no_cold:
            cold = rounds({**runs, "dd": lambda: dd_seconds(path),
                           "dd direct": lambda: dd_seconds(path, "iflag=direct")},
                          args.repeats, setup=lambda: evict(path))
    finally:
        for ctx in contexts:
            ctx.close()
    report(runs, hot, cold, rate)


def rounds(fns, repeats, setup=None):
    """Seconds of each of ``fns`` over ``repeats`` rounds, in turns, the order reversed every
    other round (``dd`` returns its own time; ``setup`` runs untimed before each call)."""
    times = {key: [] for key in fns}
    order = list(fns)
    for r in range(repeats):
        for key in (order if r % 2 == 0 else order[::-1]):
            if setup is not None:
                setup()
            t0 = time.perf_counter()
            got = fns[key]()
            elapsed = time.perf_counter() - t0
            times[key].append(got if isinstance(got, float) else elapsed)
    return {key: np.array(t) for key, t in times.items()}


def report(runs, hot, cold, rate):
    nan = float("nan")
    if hot is not None:
        print(f"hot: dd bs=16M best {rate(hot['dd'].min()):.2f}")
    if cold is not None:
        print(f"cold: dd bs=16M best {rate(cold['dd'].min()):.2f} median {rate(np.median(cold['dd'])):.2f}; "
              f"dd iflag=direct best {rate(cold['dd direct'].min()):.2f} "
              f"median {rate(np.median(cold['dd direct'])):.2f}")
    print(f"{'executor':10s} {'backend':20s} {'hot best':>8s} {'hot med':>8s} {'vs mmap':>8s} "
          f"{'cold best':>9s} {'cold med':>9s} {'vs dd':>6s}")
    for kind, spec in runs:
        h_best = h_med = vs_mmap = c_best = c_med = vs_dd = nan
        if hot is not None:
            t = hot[kind, spec]
            h_best, h_med = rate(t.min()), rate(np.median(t))
            if (kind, "mmap") in hot:
                vs_mmap = float(np.median(hot[kind, "mmap"] / t))
        if cold is not None:
            t = cold[kind, spec]
            c_best, c_med = rate(t.min()), rate(np.median(t))
            dd = cold["dd direct" if spec.startswith("direct") else "dd"]
            vs_dd = float(np.median(dd) / np.median(t))
        print(f"{kind:10s} {spec:20s} {h_best:8.2f} {h_med:8.2f} {vs_mmap:8.0%} "
              f"{c_best:9.2f} {c_med:9.2f} {vs_dd:6.0%}", flush=True)


def one_core_bound(path, repeats, rate):
    """What one core can do hot: numpy, the copy out of the page cache, the sum kernel.

    ``buffered`` on one core copies a block out of the page cache, then sums it while it is
    still in the CPU cache; it cannot beat the two one after the other. ``mmap`` sums straight
    from the page cache and pays neither the copy nor its second pass over the data.
    """
    from udfkit.udf.builtins._kernels import sum_frames

    frame = SPEC["sig_shape"][0] * SPEC["sig_shape"][1]
    data = np.memmap(path, dtype=SPEC["dtype"], mode="r").reshape(-1, frame)
    numpy_sum = timed(lambda: data.sum(axis=0, dtype=np.float64), repeats)[0]
    block = 4 << 20
    copy = page_cache_read(path, repeats, block)
    buf = np.ones(block // 2, dtype=SPEC["dtype"])
    acc = np.zeros(frame)
    n_blocks = os.path.getsize(path) // block

    def sum_cached():
        for _ in range(n_blocks):
            sum_frames(buf, frame, buf.size // frame, frame, acc)

    sum_cached()
    kernel = timed(sum_cached, repeats)[0]
    print(f"one core, hot: numpy memmap sum {rate(numpy_sum):.2f}; copy out of the page cache in "
          f"4 MiB blocks {rate(copy):.2f}; sum kernel on a cached 4 MiB block {rate(kernel):.2f}; "
          f"copy then sum (the bound for buffered) {rate(copy + kernel):.2f}")

if __name__ == "__main__":
    main()
