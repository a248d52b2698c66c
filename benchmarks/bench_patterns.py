#!/usr/bin/env python3
"""Access patterns beyond frame/tile streams: nav halo and frame stacks (issue 17).

    python benchmarks/bench_patterns.py [--data DIR] [--cases halo,fft,series] [--cpus N]
        [--executor processes] [--repeats 2] [--frames 1024] [--depths 1,4,16] [--quick]
        [--out results.jsonl]

DIR is made by ``python ../shared/bench/make_data.py DIR`` (``u16.raw``: nav 128×128, sig
256×256 uint16, 2 GiB). ``--quick`` makes a small file (nav 16×16, sig 64×64) in a temporary
directory instead, to smoke-test the script. The page cache is hot (the file is read once with
``cat`` first). Cases (one function each):

* ``halo``: a 3×3 nav-neighbourhood filter over the whole file: for every scan position the
  correlation of its frame with the mean frame of its 3×3 neighbourhood (Thunder's
  ``localcorr`` along the scan grid; ``nearest`` at the edges). udfkit: a ``get_halo`` UDF with
  ``process_frame_stack`` on ``--executor`` with ``--cpus`` workers; dask:
  ``dask.array.map_overlap`` (depth 1 on both nav axes, boundary ``nearest``) over a memmap of
  the same file, on dask's threaded scheduler with ``--cpus`` threads. Both read uint16 and
  compute in float32; the results must agree. Printed beside them: the page-cache read of
  the file on one core (the machine limit of getting the bytes). Target: udfkit faster than
  dask.
* ``fft``: a per-frame FFT UDF (power spectrum summed over frames) on the first ``--frames``
  frames, inline: ``process_frame_stack`` with stacks of each of ``--depths`` frames and with
  the negotiator's ``k`` (no preference) vs ``process_tile`` with whole-frame tiles of the same
  depths (LiberTEM's way of forcing whole frames) vs ``process_frame`` vs numpy on a memmap in
  chunks of 16 frames.

* ``series``: the per-pixel median over ``f32.raw`` (4096 frames of 256×256 float32, 1 GiB,
  read as a time series): ``bench_series.py`` run as its own script (udfkit's series mode vs
  ``dask.array`` ``rechunk`` + ``median``, peak RSS of every process; see its docstring).
"""

import argparse
import os
import subprocess
import sys
import tempfile
import time

import numpy as np
from bench_common import append_rows, page_cache_read, warm

GB = 1e9


def interleaved(fns, repeats):
    """``{name: (best, median)}`` seconds, the functions run in turn ``repeats`` times, so
    that a change of the machine's load during the run hits them all alike."""
    times = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            t0 = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t0)
    return {name: (min(t), float(np.median(t))) for name, t in times.items()}


# -- the halo case -----------------------------------------------------------------------------

def local_correlation(block, own_rows):
    """Correlation of each frame of the block's own part with the mean frame of its 3×3
    neighbourhood. ``block``: (rows + 2, cols + 2, *sig) float32 with the halo; returns
    (rows, cols) float32 for the interior, of which ``own_rows`` rows are returned."""
    rows, cols = block.shape[0] - 2, block.shape[1] - 2
    # separable 3×3 box sum: along the columns, then along the rows
    colsum = block[:, :-2] + block[:, 1:-1]
    colsum += block[:, 2:]
    nsum = colsum[:-2] + colsum[1:-1]
    nsum += colsum[2:]
    del colsum
    centre = block[1:-1, 1:-1].reshape(rows * cols, -1)
    mean = nsum.reshape(rows * cols, -1)
    mean *= np.float32(1 / 9)
    c = centre - centre.mean(axis=1, keepdims=True)
    m = mean - mean.mean(axis=1, keepdims=True)
    num = np.einsum("ij,ij->i", c, m)
    den = np.sqrt(np.einsum("ij,ij->i", c, c) * np.einsum("ij,ij->i", m, m))
    out = np.divide(num, den, out=np.zeros_like(num), where=den > 0)
    return out.reshape(rows, cols)[:own_rows]


def make_localcorr_udf():
    from udfkit import UDF

    class LocalCorrUDF(UDF):
        """3×3 nav-neighbourhood local correlation (halo of radius (1, 1), mode nearest)."""

        def get_halo(self):
            return {"radius": (1, 1), "mode": "nearest"}

        def get_tiling_preferences(self):
            return {"depth": self.params.depth}

        def get_result_buffers(self):
            return {"corr": self.buffer(kind="nav", dtype="float32")}

        def process_frame_stack(self, stack):
            shape = self.meta.halo_block_shape
            block = stack.reshape(shape + stack.shape[1:])
            corr = local_correlation(block, shape[0] - 2)
            self.results.corr[:] = corr.reshape(-1)

    return LocalCorrUDF


def dask_localcorr(path, nav, sig, cpus, rows_per_chunk):
    import dask
    import dask.array as da

    mm = np.memmap(path, dtype="<u2", mode="r", shape=tuple(nav) + tuple(sig))
    arr = da.from_array(mm, chunks=(rows_per_chunk, nav[1]) + tuple(sig)).astype(np.float32)

    def block_fn(block):
        return local_correlation(block, block.shape[0] - 2)

    res = da.map_overlap(block_fn, arr, depth={0: 1, 1: 1, 2: 0, 3: 0}, boundary="nearest",
                         trim=False, drop_axis=[2, 3], dtype=np.float32,
                         chunks=arr.chunks[:2])
    with dask.config.set(scheduler="threads", num_workers=cpus):
        return res.compute()


def case_halo(args, path, nav, sig, rows):
    from udfkit import Context

    nbytes = os.path.getsize(path)
    warm(path)
    limit = page_cache_read(path, 1)
    cls = make_localcorr_udf()
    # stacks of 4 scan rows each (plus the two halo rows), as dask's chunks below
    depth = 4 * nav[1]
    with Context.make_with(args.executor, cpus=args.cpus) as ctx:
        ds = ctx.load("raw", path=path, dtype="uint16", nav_shape=nav, sig_shape=sig)
        plan = ctx.plan(dataset=ds, udf=cls(depth=depth))
        amp = plan.halo.read_amplification
        holder = {}

        def run():
            holder["u"] = ctx.run_udf(dataset=ds, udf=cls(depth=depth))["corr"].data

        def run_dask():
            holder["d"] = dask_localcorr(path, nav, sig, args.cpus, 4)

        got = interleaved({"udfkit": run, "dask": run_dask}, args.repeats)
    t_udf, t_dask = got["udfkit"], got["dask"]
    agree = bool(np.allclose(holder["u"], holder["d"], atol=1e-4))
    rows.append(dict(case="halo", udfkit_s=t_udf[0], dask_s=t_dask[0], limit_s=limit,
                     amplification=amp, agree=agree, executor=args.executor, cpus=args.cpus))
    print(f"halo 3x3 local correlation over {nbytes / GB:.2f} GB ({nav} x {sig} uint16)")
    print(f"  page cache read (1 core)   {limit:7.2f} s  {nbytes / limit / GB:6.2f} GB/s")
    print(f"  udfkit {args.executor:<9} x{args.cpus}     {t_udf[0]:7.2f} s  "
          f"{nbytes / t_udf[0] / GB:6.2f} GB/s  (median {t_udf[1]:.2f} s; read amplification "
          f"{amp:.3f})")
    print(f"  dask map_overlap x{args.cpus}     {t_dask[0]:7.2f} s  {nbytes / t_dask[0] / GB:6.2f} "
          f"GB/s  (median {t_dask[1]:.2f} s)")
    print(f"  udfkit / dask time         {t_udf[0] / t_dask[0]:7.2f}   results agree: {agree}")


# -- the frame-stack case --------------------------------------------------------------------

def make_fft_udfs(depths):
    """``{label: UDF class}``: stacks and whole-frame tiles of each depth, and frames."""
    from udfkit import UDF

    class _Power(UDF):
        def get_result_buffers(self):
            return {"power": self.buffer(kind="sig", dtype="float64")}

        def merge(self, dest, src):
            dest.power[:] += src.power

    class FFTStackUDF(_Power):
        def __init__(self, depth=None):
            super().__init__(depth=depth)

        def get_tiling_preferences(self):
            return {} if self.params.depth is None else {"depth": self.params.depth}

        def process_frame_stack(self, stack):
            self.results.power[:] += (np.abs(np.fft.fft2(stack)) ** 2).sum(axis=0)

    class FFTTileUDF(_Power):
        def __init__(self, depth=None):
            super().__init__(depth=depth)

        def get_tiling_preferences(self):
            return {"depth": self.params.depth, "whole_frames": True}

        def process_tile(self, tile):
            self.results.power[:] += (np.abs(np.fft.fft2(tile)) ** 2).sum(axis=0)

    class FFTFrameUDF(_Power):
        def process_frame(self, frame):
            self.results.power[:] += np.abs(np.fft.fft2(frame)) ** 2

    out = {"frame_stack k=auto": lambda: FFTStackUDF()}
    for d in depths:
        out[f"frame_stack k={d}"] = lambda d=d: FFTStackUDF(depth=d)
        out[f"tile whole, depth {d}"] = lambda d=d: FFTTileUDF(depth=d)
    out["frame"] = FFTFrameUDF
    return out


def case_fft(args, path, nav, sig, rows):
    from udfkit import Context

    n = min(args.frames, int(np.prod(nav)))
    roi = np.zeros(int(np.prod(nav)), dtype=bool)
    roi[:n] = True
    roi = roi.reshape(nav)
    depth = 16  # numpy's chunks
    warm(path)
    mm = np.memmap(path, dtype="<u2", mode="r", shape=(int(np.prod(nav)),) + tuple(sig))

    def numpy_way():
        acc = np.zeros(sig)
        for i in range(0, n, depth):
            acc += (np.abs(np.fft.fft2(mm[i:i + depth].astype(np.float32))) ** 2).sum(axis=0)
        return acc

    ref = numpy_way()
    print(f"per-frame FFT power spectrum, {n} frames of {sig} uint16, inline "
          f"(best of {args.repeats}, variants run in turn)")
    with Context.make_with("inline") as ctx:
        ds = ctx.load("raw", path=path, dtype="uint16", nav_shape=nav, sig_shape=sig)
        depths = [int(d) for d in args.depths.split(",") if d.strip()]
        results = {}

        def runner(name, make):
            def run():
                results[name] = ctx.run_udf(dataset=ds, udf=make(), roi=roi)["power"].data
            return run

        variants = make_fft_udfs(depths)
        runner("warm-up", variants["frame"])()  # numba kernels compiled before timing
        fns = {"numpy memmap, chunks of 16": numpy_way}
        fns.update({name: runner(name, make) for name, make in variants.items()})
        got = interleaved(fns, args.repeats)
    for name, (best, median) in got.items():
        agree = bool(np.allclose(results.get(name, ref), ref, rtol=1e-4))
        rows.append(dict(case="fft", method=name, seconds=best, frames=n, agree=agree))
        print(f"  {name:<28} {best:7.3f} s  {n / best:8.0f} frames/s  (median {median:.3f} s; "
              f"agrees with numpy: {agree})")


# -- driver ------------------------------------------------------------------------------------

def quick_file(tmpdir):
    nav, sig = (16, 16), (64, 64)
    path = os.path.join(tmpdir, "u16.raw")
    rng = np.random.default_rng(0)
    rng.integers(0, 4096, size=nav + sig, dtype=np.uint16).astype("<u2").tofile(path)
    return path, nav, sig


def case_series(args, path, nav, sig, rows):
    """Per-pixel median over the 1 GiB float32 time stack: bench_series.py (series mode vs
    dask.array rechunk + median, peak RSS per process), run as its own script so that each
    contender's memory is measured in a process of its own."""
    cmd = [sys.executable, os.path.join(os.path.dirname(os.path.abspath(__file__)), "bench_series.py"),
           "--cpus", str(args.cpus), "--repeats", str(args.repeats)]
    cmd += ["--quick", "--executor", "inline"] if args.quick else ["--data", args.data]
    print("series (bench_series.py):", flush=True)
    out = subprocess.run(cmd, capture_output=True, text=True)
    print(out.stdout, end="")
    if out.returncode != 0:
        raise SystemExit(f"bench_series.py failed:\n{out.stderr}")
    rows.append({"case": "series", "output": out.stdout})


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default="/work/bench_data", help="directory of make_data.py's files")
    ap.add_argument("--cases", default="halo,fft,series",
                    help="comma-separated: halo, fft, series")
    ap.add_argument("--executor", default="processes", help="udfkit executor of the halo case")
    ap.add_argument("--cpus", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--frames", type=int, default=1024, help="frames of the fft case")
    ap.add_argument("--depths", default="1,4,16", help="stack/tile depths of the fft case")
    ap.add_argument("--quick", action="store_true", help="small synthetic file (smoke test)")
    ap.add_argument("--out", help="append result rows (JSON lines) to this file")
    args = ap.parse_args(argv)
    cases = {"halo": case_halo, "fft": case_fft, "series": case_series}
    wanted = [c.strip() for c in args.cases.split(",") if c.strip()]
    unknown = [c for c in wanted if c not in cases]
    if unknown:
        ap.error(f"unknown cases {unknown}; expected some of {sorted(cases)}")
    rows = []
    with tempfile.TemporaryDirectory() as tmpdir:
        if args.quick:
            path, nav, sig = quick_file(tmpdir)
        else:
            path = os.path.join(args.data, "u16.raw")
            if not os.path.exists(path):
                sys.exit(f"{path} not found: make it with python make_data.py {args.data}")
            nav, sig = (128, 128), (256, 256)
        t0 = time.perf_counter()
        for c in wanted:
            cases[c](args, path, nav, sig, rows)
        print(f"total {time.perf_counter() - t0:.1f} s")
    if args.out:
        append_rows(args.out, rows)
    return rows


if __name__ == "__main__":
    main()
