#!/usr/bin/env python3
"""I/O backends side by side: SumUDF on the 2 GiB uint16 raw file, page cache hot and cold,
next to ``dd`` in the same run.

    python benchmarks/bench_io.py --data DIR [--backends mmap,buffered,direct,...]
        [--kinds inline,processes] [--cpus 2] [--repeats 3] [--no-cold] [--no-hot]

DIR is made by ``python ../shared/bench/make_data.py DIR``. A backend is a name
(``mmap``, ``buffered``, ``direct``) or ``buffered:SIZE[:ra]`` / ``direct:SIZE[:nora]``
for a buffer size (``16MiB``) with or without read-ahead.

* **hot**: the file is read once with ``cat`` first (after evicting it, unless it is fully
  cached already); best of ``--repeats`` runs.
* **cold**: before each run the file's pages are dropped from the page cache with
  ``posix_fadvise(POSIX_FADV_DONTNEED)``; best of ``--repeats`` runs.
* **dd**: ``dd if=FILE of=/dev/null bs=16M`` (hot, and cold after the same eviction) and
  ``dd ... iflag=direct``, timed the same way; the targets of issue 5 are cold buffered ≥ 90 %
  of cold ``dd`` and direct ≥ 90 % of ``dd iflag=direct``, hot buffered within 15 % of mmap.

GB/s are bytes of the file per second of wall time (10^9 bytes).
"""

import argparse
import os
import re
import subprocess
import time

from bench_common import evict, timed, warm

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
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--no-cold", action="store_true")
    ap.add_argument("--no-hot", action="store_true")
    args = ap.parse_args()

    import numpy as np

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

    print(f"{path}: {nbytes / 2**30:.1f} GiB, {args.repeats} runs each, best shown (GB/s)")
    line = []
    if not args.no_hot:
        warm(path)
        line.append(f"hot dd bs=16M {rate(timed(lambda: dd_seconds(path), args.repeats)[0]):.2f}")
    if not args.no_cold:
        cold_dd = timed(lambda: dd_seconds(path), args.repeats, lambda: evict(path))[0]
        direct_dd = timed(lambda: dd_seconds(path, "iflag=direct"), args.repeats)[0]
        line.append(f"cold dd bs=16M {rate(cold_dd):.2f}, dd iflag=direct {rate(direct_dd):.2f}")
    print("limits: " + ", ".join(line), flush=True)
    print(f"{'executor':10s} {'backend':24s} {'hot':>7s} {'cold':>7s}")
    for kind in args.kinds.split(","):
        kwargs = {} if kind == "inline" else {"cpus": args.cpus}
        with Context.make_with(kind, **kwargs) as ctx:
            for spec in args.backends.split(","):
                ds = ctx.load("raw", path=path, dtype=SPEC["dtype"], nav_shape=SPEC["nav_shape"],
                              sig_shape=SPEC["sig_shape"], io_backend=make_backend(spec))
                out = {}

                def run(ds=ds, out=out):
                    out["res"] = ctx.run_udf(dataset=ds, udf=SumUDF())

                hot = cold = float("nan")
                if not args.no_hot:
                    warm(path)
                    run()  # workers started, kernels compiled
                    hot = rate(timed(run, args.repeats)[0])
                if not args.no_cold:
                    cold = rate(timed(run, args.repeats, lambda: evict(path))[0])
                if ref is not None and not np.allclose(out["res"]["intensity"].data, ref):
                    raise SystemExit(f"{kind}/{spec}: result differs from the reference sum")
                print(f"{kind:10s} {spec:24s} {hot:7.2f} {cold:7.2f}", flush=True)


if __name__ == "__main__":
    main()
