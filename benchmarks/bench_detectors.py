#!/usr/bin/env python3
"""Detector formats next to a plain raw file: SumUDF on the default Context, hot page cache.

    python benchmarks/bench_detectors.py --data DIR [--frames 4096] [--repeats 3]
        [--kinds processes] [--cpus 2] [--cases raw,mib-u16-quad,mib-r12-quad,mib-r1-quad]
        [--libertem VENV/bin/python] [--out results.jsonl]

    # the small proof run (128 MiB per file):
    python benchmarks/bench_detectors.py --data DIR --frames 256 --repeats 2

The files are written once into ``DIR/detectors`` (reused by later runs of the same
``--frames``): ``--frames`` quad frames of 512×512 12-bit counts (4096 frames: 2 GiB as
uint16), as

* ``raw``: a plain little-endian uint16 raw file (the reference);
* ``mib-u16-quad``: a Merlin quad MIB in the decoded 12-bit layout (``U16``, big-endian, a
  768-byte header per frame): read in place by udfkit's I/O backends, target >= 85 % of raw;
* ``mib-r12-quad``: the same counts in the bit-packed raw layout (``R64``, 12 bit);
* ``mib-r1-quad``: the counts' lowest bit in the raw 1-bit layout (1/16 of the bytes).

GB/s count the *decoded* frames as uint16 (pixels × 2 bytes per second of wall time), so all
cases compare as pixels per second; the line also gives the file's own bytes per second. The
bit-packed layouts are bounded by the numba decode: the line gives the decode kernel's
single-thread rate (decoded uint16 GB/s, float32 output as SumUDF asks) beside it. Every
SumUDF result is checked against the sum computed while writing.

``--libertem`` runs LiberTEM 0.16 (``ctx.load("mib"/"raw", ...)``, SumUDF, inline and threads
with ``--cpus``) on the same files in a subprocess.
"""

import argparse
import json
import os
import subprocess
import sys

import numpy as np
from bench_common import append_rows, timed, warm

GB = 1e9
SIG = (512, 512)
ROW = 64  # frames per scan row (Frames per Trigger in the .hdr)
ALL_CASES = ["raw", "mib-u16-quad", "mib-r12-quad", "mib-r1-quad"]
# names that are no numbered series of each other ("r1" + digits would take in "r12")
CASE_FILES = {"raw": "u16.raw", "mib-u16-quad": "u16_quad.mib", "mib-r12-quad": "r12_quad.mib",
              "mib-r1-quad": "r1_quad.mib"}


def write_inputs(work, frames, cases):
    """Write the missing files of ``cases``; returns the reference sums (12-bit and 1-bit)."""
    from udfkit.io.formats._mib_decode import encode_raw
    from udfkit.io.formats._mib_write import frame_header, write_hdr

    os.makedirs(work, exist_ok=True)
    ref_path = os.path.join(work, "ref_sums.npz")
    missing = [c for c in cases if not os.path.exists(os.path.join(work, CASE_FILES[c]))]
    if not missing and os.path.exists(ref_path):
        ref = np.load(ref_path)
        return ref["sum12"], ref["sum1"]
    rng = np.random.default_rng(0)
    sum12 = np.zeros(SIG, np.float64)
    sum1 = np.zeros(SIG, np.float64)
    handles = {c: open(os.path.join(work, CASE_FILES[c]) + ".part", "wb") for c in ALL_CASES}
    try:
        step = 64
        for lo in range(0, frames, step):
            n = min(step, frames - lo)
            # counts like a diffraction pattern on a background, 12 bit
            block = rng.poisson(20, size=(n,) + SIG).astype(np.uint16)
            block[:, 200:312, 200:312] += rng.integers(0, 3000, size=(n, 112, 112), dtype=np.uint16)
            sum12 += block.sum(axis=0, dtype=np.float64)
            sum1 += (block & 1).sum(axis=0, dtype=np.float64)
            handles["raw"].write(block.astype("<u2").tobytes())
            u16 = block.astype(">u2").reshape(n, -1)
            r12 = encode_raw(block, 12, quad=True)
            r1 = encode_raw(block & 1, 1, quad=True)
            for k in range(n):
                seq = lo + k + 1
                handles["mib-u16-quad"].write(frame_header(seq, SIG, depth=12, quad=True))
                handles["mib-u16-quad"].write(u16[k].tobytes())
                handles["mib-r12-quad"].write(frame_header(seq, SIG, depth=12, raw=True, quad=True))
                handles["mib-r12-quad"].write(r12[k].tobytes())
                handles["mib-r1-quad"].write(frame_header(seq, SIG, depth=1, raw=True, quad=True))
                handles["mib-r1-quad"].write(r1[k].tobytes())
    finally:
        for h in handles.values():
            h.close()
    for c in ALL_CASES:
        os.replace(os.path.join(work, CASE_FILES[c]) + ".part", os.path.join(work, CASE_FILES[c]))
    for c, depth in (("mib-u16-quad", 12), ("mib-r12-quad", 12), ("mib-r1-quad", 1)):
        write_hdr(os.path.join(work, CASE_FILES[c][:-4] + ".hdr"), frames=frames,
                  frames_per_trigger=ROW, depth=depth, quad=True)
    np.savez(ref_path, sum12=sum12, sum1=sum1)
    return sum12, sum1


def load_params(case, work, frames):
    path = os.path.join(work, CASE_FILES[case])
    nav = (frames // ROW, ROW)
    if case == "raw":
        return "raw", dict(path=path, dtype="<u2", nav_shape=nav, sig_shape=SIG)
    return "mib", dict(path=path[:-4] + ".hdr")


def decode_bound(case):
    """Single-thread decode rate, as decoded uint16 GB/s (float32 output, as SumUDF reads)."""
    from udfkit.io.formats._mib_decode import BITS_STORED, decode_bytes_per_second

    depth = {"mib-r12-quad": 12, "mib-r1-quad": 1}.get(case)
    if depth is None:
        return None
    stored = decode_bytes_per_second(depth=depth, quad=True, frames=32, dtype="float32")
    return stored * 16 / BITS_STORED[depth] / GB


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default=os.environ.get("BENCH_DATA"), required="BENCH_DATA" not in os.environ)
    ap.add_argument("--frames", type=int, default=4096, help="quad frames (4096: 2 GiB as uint16)")
    ap.add_argument("--cases", default=",".join(ALL_CASES))
    ap.add_argument("--kinds", default="default", help="'default' is Context(); or inline,threads,...")
    ap.add_argument("--cpus", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--libertem", default=None, help="python of a venv with libertem 0.16")
    ap.add_argument("--out", default="", help="append JSON lines here")
    args = ap.parse_args()
    if args.frames % ROW:
        raise SystemExit(f"--frames must be a multiple of {ROW} (the scan row)")
    cases = args.cases.split(",")
    work = os.path.join(args.data, "detectors", f"f{args.frames}")
    sum12, sum1 = write_inputs(work, args.frames, cases)

    from udfkit import Context
    from udfkit.udf import SumUDF

    logical = args.frames * SIG[0] * SIG[1] * 2
    rows, raw_median = [], {}
    for kind in args.kinds.split(","):
        ctx = Context() if kind == "default" else \
            Context.make_with(kind, **({} if kind == "inline" else {"cpus": args.cpus}))
        try:
            for case in cases:
                filetype, params = load_params(case, work, args.frames)
                ds = ctx.load(filetype, **params)
                path = os.path.join(work, CASE_FILES[case])
                warm(path)
                res = ctx.run_udf(dataset=ds, udf=SumUDF())  # warm-up and check
                want = sum1 if case == "mib-r1-quad" else sum12
                if not np.array_equal(res["intensity"].data, want):
                    raise SystemExit(f"{case}/{kind}: SumUDF differs from the reference sum")
                best, median, _ = timed(lambda: ctx.run_udf(dataset=ds, udf=SumUDF()), args.repeats)
                line = {"case": case, "kind": kind, "frames": args.frames,
                        "file_bytes": os.path.getsize(path),
                        "sum_best": logical / best / GB, "sum_median": logical / median / GB,
                        "file_gbs_median": os.path.getsize(path) / median / GB}
                if case == "raw":
                    raw_median[kind] = line["sum_median"]
                if kind in raw_median:
                    line["sum_vs_raw"] = line["sum_median"] / raw_median[kind]
                bound = decode_bound(case)
                extra = ""
                if bound is not None:
                    line["decode_1thread"] = bound
                    extra = f"  numba decode, one thread: {bound:6.2f}"
                rows.append(line)
                print(f"{kind:9s} {case:13s} sum {line['sum_best']:6.2f} / {line['sum_median']:6.2f} "
                      f"GB/s as uint16 ({line.get('sum_vs_raw', float('nan')):4.0%} of raw; file "
                      f"{line['file_gbs_median']:6.2f} GB/s){extra}", flush=True)
        finally:
            ctx.close()
    if args.libertem:
        rows += libertem(args.libertem, work, cases, args.frames, args.repeats, args.cpus, logical)
    append_rows(args.out, rows)


LIBERTEM_SCRIPT = """
import json, sys, time
from libertem.api import Context
from libertem.udf.sum import SumUDF
cases, repeats, cpus = json.loads(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
out = {}
for kind in ("inline", "threads"):
    ctx = Context.make_with(kind, cpus=cpus) if kind == "threads" else Context.make_with("inline")
    for case, (filetype, params) in cases.items():
        try:
            ds = ctx.load(filetype, **params)
            ctx.run_udf(dataset=ds, udf=SumUDF())
        except Exception as e:
            out[f"{kind}/{case}"] = f"error: {type(e).__name__}: {e}"
            continue
        times = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            ctx.run_udf(dataset=ds, udf=SumUDF())
            times.append(time.perf_counter() - t0)
        out[f"{kind}/{case}"] = sorted(times)[len(times) // 2]
    ctx.close()
print(json.dumps(out))
"""


def libertem(python, work, cases, frames, repeats, cpus, logical):
    """LiberTEM 0.16 on the same files (SumUDF, median seconds), in its own venv."""
    spec = {}
    for case in cases:
        filetype, params = load_params(case, work, frames)
        if filetype == "raw":
            params = dict(params, dtype="uint16")
        spec[case] = (filetype, params)
    out = subprocess.run([python, "-c", LIBERTEM_SCRIPT, json.dumps(spec), str(repeats), str(cpus)],
                         capture_output=True, text=True)
    if out.returncode != 0:
        print(f"libertem: failed: {out.stderr.strip().splitlines()[-1:]}", file=sys.stderr)
        return []
    rows = []
    for key, seconds in json.loads(out.stdout.strip().splitlines()[-1]).items():
        kind, case = key.split("/")
        if isinstance(seconds, str):
            print(f"libertem  {kind:9s} {case:13s} {seconds}", flush=True)
            rows.append({"case": f"libertem-{case}", "kind": kind, "error": seconds})
            continue
        print(f"libertem  {kind:9s} {case:13s} sum {logical / seconds / GB:6.2f} GB/s as uint16",
              flush=True)
        rows.append({"case": f"libertem-{case}", "kind": kind, "sum_median": logical / seconds / GB})
    return rows


if __name__ == "__main__":
    main()
