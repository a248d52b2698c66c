#!/usr/bin/env python3
"""What a large sig buffer costs in memory: the overhead factor of result buffers.

    python benchmarks/bench_buffers.py [--kinds inline,threads,processes,dask] [--cpus 1]
        [--mib 512] [--partitions 4] [--repeat 1]

A UDF with one float32 sig buffer of ``--mib`` MiB (256×256 pixels × extra_shape) runs over a
small synthetic data set (16 frames of 256×256 float32, ``--partitions`` partitions). Every
partition writes every entry of its buffer, so all of its pages are used, and the merge
adds it into the full buffer in place (``dest.big += src.big``, no temporary of its own).

Measured, while the run goes, by a thread that samples every 0.5 ms:

* ``main`` / ``worker``: the peak of ``RssAnon + RssShmem`` (``/proc/PID/status``) of the
  main process and of the busiest worker process, minus their values just before the run;
* ``total``: the peak of the sum over all of them of ``Pss_Anon + Pss_Shmem``
  (``/proc/PID/smaps_rollup``) minus its value before the run: the physical memory the run
  took, shared-memory pages counted once however many processes map them.

``factor`` is each of these divided by the buffer's size; ``time`` is the median run time.
The floor is 2 (the partition buffer a UDF writes into and the full buffer it is merged
into); a process that only merges or only computes needs 1. With ``--cpus N`` > 1, N tasks
run at once and each has its own buffer, so the total floor is N + 1.

Figures on a shared 2-core machine (512 MiB, 4 partitions; factors of main / busiest worker
/ all processes), before and after issue 15's fix:

==========  =====================  =====================  =======================
executor    before, cpus=1         after, cpus=1          before -> after, cpus=2
==========  =====================  =====================  =======================
inline      3.00                   2.00                   3.00 -> 2.00
threads     3.00                   2.00                   4.90 -> 3.00
processes   2.00 / 1.99 / 4.00     1.99 / 0.98 / 2.00     total 4.58 -> 2.47
dask        4.00 / 5.97 / 8.00     3.00 / 5.00 / 6.99     (the executor's share, below)
==========  =====================  =====================  =======================

On dask the workers keep a task's result until the client releases its future, and two
tasks per worker are in flight; that is the executor's to change.

File pages (``RssFile``) are not counted: the data are read through the page cache. glibc's
malloc is told to give large freed blocks back at once (see ``MALLOC_ENV``), so the numbers
show what this run holds, not what earlier runs left in malloc's free lists.
"""

import argparse
import os
import sys
import tempfile
import threading
import time

import numpy as np

from udfkit import UDF, Context

MIB = 1 << 20
SIG = (256, 256)
MALLOC_ENV = {"MALLOC_MMAP_THRESHOLD_": "131072", "MALLOC_TRIM_THRESHOLD_": "131072"}


class BigSig(UDF):
    """One float32 sig buffer of ``256 × 256 × depth`` entries; every entry written once per
    partition; merged in place."""

    def __init__(self, depth=2048):
        super().__init__(depth=depth)

    def get_result_buffers(self):
        return {"big": self.buffer(kind="sig", extra_shape=(self.params.depth,),
                                   dtype="float32")}

    def process_tile(self, tile):
        self.results.big[..., 0] += tile.sum(axis=0)

    def postprocess(self):
        self.results.big[..., 1:] = 1.0

    def merge(self, dest, src):
        dest.big += src.big


class Tiny(UDF):
    """Warm-up: imports, compiled kernels, worker processes started."""

    def get_result_buffers(self):
        return {"s": self.buffer(kind="nav", dtype="float32")}

    def process_frame(self, frame):
        self.results.s[:] = frame.sum()


def status(pid) -> int:
    """``RssAnon + RssShmem`` of ``pid`` in bytes."""
    out = 0
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(("RssAnon:", "RssShmem:")):
                    out += int(line.split()[1]) * 1024
    except OSError:
        pass
    return out


def pss(pid) -> int:
    """``Pss_Anon + Pss_Shmem`` of ``pid`` in bytes (shared pages split among their users)."""
    out = 0
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            for line in f:
                if line.startswith(("Pss_Anon:", "Pss_Shmem:")):
                    out += int(line.split()[1]) * 1024
    except OSError:
        pass
    return out


def descendants(pid) -> list:
    """Processes below ``pid``: workers, and a dask cluster's nannies and their workers."""
    parent = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        parent[int(entry)] = int(fields[1])
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        kids = [c for c, pp in parent.items() if pp == p]
        out.extend(kids)
        todo.extend(kids)
    return out


class Sampler:
    """Peaks of :func:`status` per process and of the summed :func:`pss`, from a thread."""

    def __init__(self, pids, interval=0.0005):
        self.pids = list(pids)
        self.interval = interval
        self.base = {p: status(p) for p in self.pids}
        self.peak = dict(self.base)
        self.total_base = sum(pss(p) for p in self.pids)
        self.total_peak = self.total_base
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _sample(self):
        total = 0
        for p in self.pids:
            self.peak[p] = max(self.peak[p], status(p))
            total += pss(p)
        self.total_peak = max(self.total_peak, total)

    def _run(self):
        while not self._stop.is_set():
            self._sample()
            time.sleep(self.interval)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self._sample()

    def delta(self, pid) -> int:
        return self.peak[pid] - self.base[pid]

    @property
    def total(self) -> int:
        return self.total_peak - self.total_base


def main():
    if any(os.environ.get(k) != v for k, v in MALLOC_ENV.items()):
        os.execve(sys.executable, [sys.executable, *sys.argv], {**os.environ, **MALLOC_ENV})
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--kinds", default="inline,threads,processes")
    ap.add_argument("--cpus", type=int, default=1)
    ap.add_argument("--mib", type=int, default=512, help="size of the sig buffer (MiB)")
    ap.add_argument("--partitions", type=int, default=4)
    ap.add_argument("--repeat", type=int, default=1,
                    help="runs per executor (the worst memory and the median time shown)")
    args = ap.parse_args()

    depth = args.mib * MIB // (SIG[0] * SIG[1] * 4)
    size = SIG[0] * SIG[1] * depth * 4
    tmp = tempfile.TemporaryDirectory()
    path = os.path.join(tmp.name, "f32.raw")
    frames = 16
    np.random.default_rng(0).random((frames,) + SIG, dtype=np.float32).tofile(path)
    print(f"sig buffer {size / MIB:.0f} MiB (float32 {SIG} x {depth}); {frames} frames, "
          f"{args.partitions} partitions; cpus={args.cpus}")
    header = (f"{'executor':<10} {'main MiB':>9} {'factor':>6} {'worker MiB':>10} {'factor':>6} "
              f"{'total MiB':>9} {'factor':>6} {'time':>7}")
    print(header)
    print("-" * len(header))
    me = os.getpid()
    for kind in args.kinds.split(","):
        kwargs = {} if kind == "inline" else {"cpus": args.cpus}
        with Context.make_with(kind, **kwargs) as ctx:
            ds = ctx.load("raw", path=path, dtype="float32", nav_shape=(frames,), sig_shape=SIG,
                          num_partitions=args.partitions)
            ctx.run_udf(ds, [Tiny(), BigSig(depth=4)])
            worst = None
            times = []
            for _ in range(args.repeat):
                workers = [] if kind in ("inline", "threads") else descendants(me)
                sampler = Sampler([me, *workers])
                with sampler:
                    t0 = time.perf_counter()
                    res = ctx.run_udf(ds, BigSig(depth=depth))
                    elapsed = time.perf_counter() - t0
                    # the result is the caller's: counted while it is alive, then dropped
                    assert res["big"].data.shape == SIG + (depth,)
                    del res
                main_d = sampler.delta(me)
                worker_d = max((sampler.delta(w) for w in workers), default=None)
                times.append(elapsed)
                row = (main_d, worker_d, sampler.total, elapsed)
                if worst is None or row[2] > worst[2]:
                    worst = row
            main_d, worker_d, total, _ = worst
            elapsed = float(np.median(times))
            w = (f"{worker_d / MIB:>10.1f} {worker_d / size:>6.2f}" if worker_d is not None
                 else f"{'-':>10} {'-':>6}")
            print(f"{kind:<10} {main_d / MIB:>9.1f} {main_d / size:>6.2f} {w} "
                  f"{total / MIB:>9.1f} {total / size:>6.2f} {elapsed:>6.2f}s", flush=True)
    tmp.cleanup()


if __name__ == "__main__":
    main()
