#!/usr/bin/env python3
"""The run plan's memory estimate against the memory a run really takes.

    python benchmarks/bench_plan.py [--data DIR] [--kinds inline,processes] [--cpus 2]
        [--udfs sum,stddev,bigsig,masks16] [--io-backend mmap]

For each UDF (``SumUDF``, ``StdDevUDF``, ``BigSig``: a UDF with a 512 MiB sig buffer,
``ApplyMasksUDF`` with 16 masks) and executor, ``Context.plan`` is printed next to what the
run took: the peak, over the run, of each process's anonymous plus shared-memory resident
set (``RssAnon + RssShmem`` of ``/proc/PID/status``, sampled every 0.5 ms by a thread) minus
its value just before the run, for the busiest worker process and for the main process.
That is what the estimate counts: memory the run adds. File pages mapped by the ``mmap``
backend (``RssFile``) are page cache that the kernel reclaims, and not counted; the
interpreter's own 60-100 MB are there before the run. ``VmHWM`` (the kernel's exact peak,
reset through ``/proc/PID/clear_refs`` before each run) is printed too; it includes the
file pages. Target (issue 14): the estimate within 25 % of the measured peak.

The data: ``u16.raw`` (128×128 nav, 256×256 sig, uint16) of ``--data DIR`` (or
``$BENCH_DATA``, or ``/work/bench_data``); without it a smaller synthetic file of the same
frame size (32×32 nav) is written to a temporary directory.
"""

import argparse
import os
import sys
import tempfile
import threading
import time

import numpy as np

from udfkit import UDF, Context
from udfkit.udf import SumSigUDF

MIB = 1 << 20
WARM_FRAMES = 64
#: glibc's malloc keeps freed memory for later allocations and raises its mmap threshold
#: after large frees: RSS deltas would then show what earlier runs left, not what this run
#: allocates. A fixed threshold (set before any process starts; workers inherit it) makes
#: every array of 128 KiB or more its own mapping, given back when freed.
MALLOC_ENV = {"MALLOC_MMAP_THRESHOLD_": "131072", "MALLOC_TRIM_THRESHOLD_": "131072"}
SPEC = dict(file="u16.raw", dtype="uint16", nav_shape=(128, 128), sig_shape=(256, 256))


class BigSig(UDF):
    """A sig buffer of 512 MiB (256×256 pixels × 1024 float64): the per-tile sum goes into
    entry 0, and every entry is written once per partition, so all of its pages are used."""

    def get_result_buffers(self):
        return {"big": self.buffer(kind="sig", extra_shape=(1024,), dtype="float64")}

    def process_tile(self, tile):
        self.results.big[..., 0] += tile.sum(axis=0)

    def postprocess(self):
        self.results.big[..., 1:] = 1.0

    def merge(self, dest, src):
        dest.big += src.big


def make_udf(name, sig_shape):
    from udfkit.udf import ApplyMasksUDF, StdDevUDF, SumUDF

    if name == "sum":
        return SumUDF()
    if name == "stddev":
        return StdDevUDF()
    if name == "bigsig":
        return BigSig()
    if name == "masks16":
        masks = np.random.default_rng(0).random((16,) + tuple(sig_shape)).astype(np.float32)
        return ApplyMasksUDF(mask_factories=masks)
    raise SystemExit(f"unknown UDF {name!r}; expected sum, stddev, bigsig, masks16")


# -- memory of processes ----------------------------------------------------------------------

def status(pid) -> dict:
    """``{field: bytes}`` of the memory lines of ``/proc/PID/status``."""
    out = {}
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                key, _, rest = line.partition(":")
                if key in ("VmRSS", "VmHWM", "RssAnon", "RssFile", "RssShmem"):
                    out[key] = int(rest.split()[0]) * 1024
    except OSError:
        pass
    return out


def private(pid) -> int:
    s = status(pid)
    return s.get("RssAnon", 0) + s.get("RssShmem", 0)


def children(pid) -> list:
    """Processes whose parent is ``pid`` (the executor's workers, the resource tracker)."""
    out = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            out.append(int(entry))
    return out


def reset_hwm(pid) -> None:
    try:
        with open(f"/proc/{pid}/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        pass


class Sampler:
    """Peak of :func:`private` per process while running, sampled by a thread."""

    def __init__(self, pids, interval=0.0005):
        self.pids = list(pids)
        self.interval = interval
        self.base = {p: private(p) for p in self.pids}
        self.peak = dict(self.base)
        self.rss = {p: status(p).get("VmRSS", 0) for p in self.pids}
        for p in self.pids:
            reset_hwm(p)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        while not self._stop.is_set():
            for p in self.pids:
                self.peak[p] = max(self.peak[p], private(p))
            time.sleep(self.interval)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        for p in self.pids:
            self.peak[p] = max(self.peak[p], private(p))
        self.hwm = {p: status(p).get("VmHWM", 0) - self.rss[p] for p in self.pids}

    def delta(self, pid) -> int:
        return self.peak[pid] - self.base[pid]


def fmt(n):
    return f"{n / MIB:8.1f}"


def ratio(est, got):
    return f"{(est - got) / got * 100:+6.0f} %" if got > 0 else "     - "


def main():
    if any(os.environ.get(k) != v for k, v in MALLOC_ENV.items()):
        os.execve(sys.executable, [sys.executable, *sys.argv], {**os.environ, **MALLOC_ENV})
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default=os.environ.get("BENCH_DATA", "/work/bench_data"))
    ap.add_argument("--kinds", default="inline,processes")
    ap.add_argument("--cpus", type=int, default=2)
    ap.add_argument("--udfs", default="sum,stddev,bigsig,masks16")
    ap.add_argument("--io-backend", default=None, help="mmap (default), buffered or direct")
    ap.add_argument("--show-plans", action="store_true", help="print every plan in full")
    args = ap.parse_args()

    spec = dict(SPEC)
    path = os.path.join(args.data, spec["file"]) if args.data else ""
    tmp = None
    if not os.path.isfile(path):
        tmp = tempfile.TemporaryDirectory()
        path = os.path.join(tmp.name, "u16.raw")
        spec["nav_shape"] = (32, 32)
        rng = np.random.default_rng(1)
        rng.integers(0, 1000, spec["nav_shape"] + spec["sig_shape"], dtype=np.uint16).tofile(path)
        print(f"no {SPEC['file']} in {args.data!r}: a synthetic {spec['nav_shape']} scan instead")
    size = os.path.getsize(path)
    warm_dir = tempfile.TemporaryDirectory()
    warm_path = os.path.join(warm_dir.name, "warm.raw")
    np.ones((WARM_FRAMES,) + spec["sig_shape"], dtype=spec["dtype"]).tofile(warm_path)
    print(f"{path}: {size / 2**30:.2f} GiB, nav {spec['nav_shape']} x sig {spec['sig_shape']} uint16")
    print()
    header = (f"{'executor':<10} {'UDF':<9} {'':<7} {'plan MiB':>8} {'run MiB':>8} {'error':>8} "
              f"{'VmHWM':>8}")
    print(header)
    print("-" * len(header))
    me = os.getpid()
    for kind in args.kinds.split(","):
        kwargs = {} if kind == "inline" else {"cpus": args.cpus}
        with Context.make_with(kind, **kwargs) as ctx:
            load = dict(path=path, dtype=spec["dtype"], nav_shape=spec["nav_shape"],
                        sig_shape=spec["sig_shape"])
            if args.io_backend:
                load["io_backend"] = args.io_backend
            ds = ctx.load("raw", **load)
            names = args.udfs.split(",")
            # warm-up on a small file of the same frames, read the same way (zero-copy or
            # not, same dtypes): imports, compiled kernels, BLAS buffers, mask caches
            # (many small partitions, so that every worker process gets some)
            small = ctx.load("raw", **dict(load, path=warm_path, nav_shape=(WARM_FRAMES,),
                                           num_partitions=WARM_FRAMES // 2))
            ctx.run_udf(small, [make_udf(n, spec["sig_shape"]) for n in names])
            for name in names:
                udf = make_udf(name, spec["sig_shape"])
                plan = ctx.plan(ds, udf)
                if args.show_plans:
                    print(plan)
                # every worker's last task of the previous run is freed when its next
                # task arrives: tiny tasks first, so the baseline holds none of it
                ctx.run_udf(small, SumSigUDF())
                workers = [] if kind == "inline" else children(me)
                sampler = Sampler([me, *workers])
                with sampler:
                    t0 = time.perf_counter()
                    ctx.run_udf(ds, udf)
                    elapsed = time.perf_counter() - t0
                m = plan.memory
                if workers:
                    busiest = max(workers, key=sampler.delta)
                    got = sampler.delta(busiest)
                    print(f"{kind:<10} {name:<9} {'worker':<7} {fmt(m.per_worker)} {fmt(got)} "
                          f"{ratio(m.per_worker, got)} {fmt(sampler.hwm[busiest])}")
                got = sampler.delta(me)
                print(f"{kind:<10} {name:<9} {'main':<7} {fmt(m.main_bytes)} {fmt(got)} "
                      f"{ratio(m.main_bytes, got)} {fmt(sampler.hwm[me])}   ({elapsed:.2f} s)")
    warm_dir.cleanup()
    if tmp is not None:
        tmp.cleanup()


if __name__ == "__main__":
    main()
