#!/usr/bin/env python3
"""Core benchmark: a tile-based sum-over-frames UDF on the inline executor, next to numpy.

    python benchmarks/bench_core.py --data DIR [--repeats 5] [--datasets u16,f32]

DIR holds ``u16.raw`` (nav 128×128, sig 256×256 uint16, 2 GiB) and ``f32.raw`` (nav 64×64,
float32, 1 GiB); make them with ``python ../shared/bench/make_data.py DIR`` or pass ``--make``
to have this script write them. Every figure comes from the same run, page cache hot
(the file is read once with ``cat`` before each block):

* ``udfkit``: ``ctx.run_udf`` of a user ``process_tile`` UDF summing over frames, measured in a
  child process so that its peak RSS is not polluted by the numpy anchors (which map the
  whole file);
* ``np.memmap(...).sum(axis=(0, 1))``: the naive numpy way, with a new mapping per run (what a
  script does) and repeated on one mapping whose page tables are already filled (no page
  faults: an upper bound for any mmap reader);
* ``page cache read``: ``readinto`` of the whole file in 16 MiB blocks (the physical limit of
  getting the bytes out of the page cache on one core);
* ``in-RAM numpy sum`` of the array already in memory (memory bandwidth of a numpy reduction);
* ``import udfkit`` and a tiny run (8×8 nav, 32×32 sig, memory data set) per ``run_udf``.

Results are printed as a table and, with ``--out FILE``, appended as JSON lines.
"""

import argparse
import json
import os
import subprocess
import sys
import time

import numpy as np
from bench_common import append_rows, timed, warm

GB = 1e9
DATASETS = {
    "u16": dict(file="u16.raw", dtype="uint16", nav_shape=(128, 128), sig_shape=(256, 256)),
    "f32": dict(file="f32.raw", dtype="float32", nav_shape=(64, 64), sig_shape=(256, 256)),
}


def make_files(datadir):
    os.makedirs(datadir, exist_ok=True)
    rng = np.random.default_rng(0)
    for key, spec in DATASETS.items():
        path = os.path.join(datadir, spec["file"])
        nbytes = (int(np.prod(spec["nav_shape"]) * np.prod(spec["sig_shape"]))
                  * np.dtype(spec["dtype"]).itemsize)
        if os.path.exists(path) and os.path.getsize(path) == nbytes:
            continue
        with open(path, "wb") as f:
            for _ in range(spec["nav_shape"][0]):
                shape = (spec["nav_shape"][1],) + spec["sig_shape"]
                if key == "u16":
                    block = rng.integers(0, 4096, size=shape, dtype=np.uint16)
                else:
                    block = rng.normal(100, 10, size=shape).astype(np.float32)
                f.write(block.tobytes())


USER_UDF = r"""
import numpy as np
from udfkit import Context, UDF

class TileSumUDF(UDF):
    def get_result_buffers(self):
        return {"intensity": self.buffer(kind="sig", dtype=np.float32)}
    def process_tile(self, tile):
        self.results.intensity[:] += np.sum(tile, axis=0)
    def merge(self, dest, src):
        dest.intensity[:] += src.intensity
"""

CHILD = USER_UDF + r"""
import json, sys, time

def peak_rss_mib():
    # VmHWM of this process image; ru_maxrss would include the parent's peak from before exec
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024

spec = json.loads(sys.argv[1]); repeats = int(sys.argv[2])
ctx = Context.make_with("inline")
ds = ctx.load("raw", path=spec["path"], dtype=spec["dtype"], nav_shape=spec["nav_shape"],
              sig_shape=spec["sig_shape"])
t0 = time.perf_counter(); res = ctx.run_udf(dataset=ds, udf=TileSumUDF()); first = time.perf_counter() - t0
times = []
for _ in range(repeats):
    t0 = time.perf_counter()
    res = ctx.run_udf(dataset=ds, udf=TileSumUDF())
    times.append(time.perf_counter() - t0)
from udfkit.udf.driver import UDFRun
scheme = UDFRun(ds, [TileSumUDF()]).scheme
print(json.dumps(dict(first=first, times=times, tile=list(scheme.shape),
                      partitions=ds.get_num_partitions(),
                      maxrss_mib=peak_rss_mib(),
                      total=float(res["intensity"].data.astype(np.float64).sum()))))
"""

TINY = r"""
import time, numpy as np
from udfkit import Context, UDF
class TileSumUDF(UDF):
    def get_result_buffers(self):
        return {"intensity": self.buffer(kind="sig", dtype=np.float32)}
    def process_tile(self, tile):
        self.results.intensity[:] += np.sum(tile, axis=0)
    def merge(self, dest, src):
        dest.intensity[:] += src.intensity
ctx = Context.make_with("inline")
ds = ctx.load("memory", data=np.ones((8, 8, 32, 32), dtype=np.float32))
for _ in range(20):
    ctx.run_udf(dataset=ds, udf=TileSumUDF())
ts = []
for _ in range(200):
    t0 = time.perf_counter(); ctx.run_udf(dataset=ds, udf=TileSumUDF()); ts.append(time.perf_counter() - t0)
print(np.median(ts), min(ts))
"""


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default=os.environ.get("BENCH_DATA"), help="data directory")
    ap.add_argument("--make", action="store_true", help="write the data files if missing")
    ap.add_argument("--datasets", default="u16,f32")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--out", default=None, help="append JSON lines here")
    args = ap.parse_args()
    if not args.data:
        sys.exit("pass --data DIR (or set BENCH_DATA)")
    if args.make:
        make_files(args.data)
    rows = []

    def report(case, seconds, nbytes=None, **extra):
        row = dict(case=case, seconds=seconds, **extra)
        msg = f"{case:<44s} {seconds * 1e3:9.2f} ms"
        if nbytes:
            row["gbps"] = nbytes / seconds / GB
            msg += f"  {row['gbps']:7.2f} GB/s"
        for k, v in extra.items():
            msg += f"  {k}={v}"
        print(msg, flush=True)
        rows.append(row)

    for key in args.datasets.split(","):
        spec = dict(DATASETS[key])
        spec["path"] = os.path.join(args.data, spec.pop("file"))
        shape = tuple(spec["nav_shape"]) + tuple(spec["sig_shape"])
        nbytes = int(np.prod(shape)) * np.dtype(spec["dtype"]).itemsize
        warm(spec["path"])
        out = subprocess.run([sys.executable, "-c", CHILD, json.dumps(spec), str(args.repeats)],
                             capture_output=True, text=True, check=True)
        child = json.loads(out.stdout.strip().splitlines()[-1])
        report(f"{key}/udfkit inline tile sum (first run)", child["first"], nbytes)
        report(f"{key}/udfkit inline tile sum", min(child["times"]), nbytes,
               median_gbps=round(nbytes / float(np.median(child["times"])) / GB, 2),
               tile=tuple(child["tile"]), partitions=child["partitions"],
               peak_rss_mib=round(child["maxrss_mib"]))

        def memmap_sum():
            return np.memmap(spec["path"], dtype=spec["dtype"], mode="r", shape=shape).sum(axis=(0, 1))
        t, _, ref = timed(memmap_sum, args.repeats)
        report(f"{key}/np.memmap sum(axis=(0, 1)), new map", t, nbytes)
        rel = abs(child["total"] - float(ref.astype(np.float64).sum())) / abs(float(ref.sum()))
        print(f"{'':44s} udfkit vs numpy: relative difference of totals {rel:.1e}")
        mm = np.memmap(spec["path"], dtype=spec["dtype"], mode="r", shape=shape)
        mm.sum(axis=(0, 1))
        t, _, _ = timed(lambda: mm.sum(axis=(0, 1)), args.repeats)
        report(f"{key}/np.memmap sum, same map (no page faults)", t, nbytes)
        del mm

        buf = bytearray(16 << 20)

        def read_all():
            with open(spec["path"], "rb", buffering=0) as f:
                while f.readinto(buf):
                    pass
        t, _, _ = timed(read_all, args.repeats)
        report(f"{key}/limit: page-cache readinto 16 MiB", t, nbytes)
        ram = np.fromfile(spec["path"], dtype=spec["dtype"]).reshape(shape)
        t, _, _ = timed(lambda: ram.sum(axis=(0, 1)), args.repeats)
        report(f"{key}/in-RAM numpy sum(axis=(0, 1))", t, nbytes)
        del ram

    ts = []
    for _ in range(5):
        t0 = time.perf_counter()
        subprocess.run([sys.executable, "-c", "import udfkit"], check=True)
        ts.append(time.perf_counter() - t0)
    base = []
    for _ in range(5):
        t0 = time.perf_counter()
        subprocess.run([sys.executable, "-c", "import numpy"], check=True)
        base.append(time.perf_counter() - t0)
    report("python -c 'import udfkit' (whole process)", min(ts))
    report("python -c 'import numpy' (whole process)", min(base))
    out = subprocess.run([sys.executable, "-c", TINY], capture_output=True, text=True, check=True)
    median, fastest = map(float, out.stdout.split())
    report("tiny run_udf (8x8 nav, 32x32 sig, memory)", median, fastest_ms=round(fastest * 1e3, 3))
    append_rows(args.out, rows)


if __name__ == "__main__":
    main()
