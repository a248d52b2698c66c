#!/usr/bin/env python3
"""First-run latency: a fresh Python process makes a Context and runs SumUDF once. (issue 18)

    python benchmarks/bench_first_run.py [--repeats 5] [--kinds default,inline] [--pause 0]
        [--quick]

Each repeat is a new interpreter (``python -c``), so imports, worker start and kernel loading
are paid as a user's script pays them. Printed per Context kind: ``import udfkit``, the
``Context()`` call, the first ``run_udf`` (SumUDF on a 16x16 scan of 32x32 uint16 frames in
memory), a second run, ``close()``, and the time from the return of ``Context()`` to the end
of the first run (``first run``; target: <= 0.5 s for the default Context). Next to them, the floor a
worker process cannot go below: a fresh interpreter that imports ``udfkit.udf`` and loads the
cached kernels, and one that only starts Python and imports numpy.
"""

import argparse
import json
import os
import subprocess
import sys

import numpy as np

SCRIPT = r"""
import json, sys, time
t0 = time.perf_counter()
import numpy as np
from udfkit import Context
from udfkit.udf import SumUDF
t1 = time.perf_counter()
kind = sys.argv[1]
ctx = Context() if kind == "default" else Context.make_with(kind)
t_made = time.perf_counter()
time.sleep(float(sys.argv[2]))  # a script that does something else first
t2 = time.perf_counter()
ds = ctx.load("memory", data=np.ones((16, 16, 32, 32), "uint16"))
res = ctx.run_udf(ds, SumUDF())
t3 = time.perf_counter()
assert res["intensity"].data[0, 0] == 256
ctx.run_udf(ds, SumUDF())
t4 = time.perf_counter()
ctx.close()
t5 = time.perf_counter()
print(json.dumps({"import": t1 - t0, "Context()": t_made - t1, "first run": t3 - t2,
                  "second run": t4 - t3, "close": t5 - t4}))
"""

FLOOR = r"""
import json, time
t0 = time.perf_counter()
import udfkit.udf
try:
    from udfkit.udf.warmup import load_cached_kernels
except ImportError:  # an older udfkit, for a comparison: load the kernels by a first run
    from udfkit import Context
    from udfkit.udf import SumUDF
    import numpy as np
    c = Context.make_with("inline")
    c.run_udf(c.load("memory", data=np.ones((2, 2, 4, 4), "uint16")), SumUDF())
else:
    load_cached_kernels()
print(json.dumps({"worker warm-up": time.perf_counter() - t0}))
"""

PYTHON = r"""
import json, time
t0 = time.perf_counter()
import numpy
print(json.dumps({"python + numpy": time.perf_counter() - t0}))
"""


def run(code, *args):
    out = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True,
                         timeout=300, env=dict(os.environ))
    if out.returncode != 0:
        raise SystemExit(out.stderr)
    return json.loads(out.stdout.strip().splitlines()[-1])


def summary(rows):
    keys = rows[0].keys()
    return {k: (min(r[k] for r in rows), float(np.median([r[k] for r in rows]))) for k in keys}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--kinds", default="default,inline")
    ap.add_argument("--pause", type=float, default=0.0,
                    help="seconds the script sleeps between Context() and loading its data "
                         "(0: runs at once; the workers warm up in the background meanwhile)")
    ap.add_argument("--quick", action="store_true", help="one repeat, inline only (smoke test)")
    args = ap.parse_args()
    if args.quick:
        args.repeats, args.kinds = 1, "inline"
    print(f"load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores; best / median of "
          f"{args.repeats} fresh processes (seconds)")
    for name, code in (("floor", FLOOR), ("python", PYTHON)):
        s = summary([run(code) for _ in range(args.repeats)])
        print("  " + "  ".join(f"{k} {b:.3f} / {m:.3f}" for k, (b, m) in s.items()))
    for kind in args.kinds.split(","):
        s = summary([run(SCRIPT, kind, str(args.pause)) for _ in range(args.repeats)])
        print(f"{kind:>8}: " + "  ".join(f"{k} {b:.3f} / {m:.3f}" for k, (b, m) in s.items()))
        if kind == "default":
            print(f"{'':>8}  ('first run' counts from the return of Context()"
                  f"{f', after a pause of {args.pause} s' if args.pause else ''}; target <= 0.5 s)")
    print(f"load average after: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
