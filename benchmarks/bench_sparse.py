#!/usr/bin/env python3
"""Sparse data: the same synthetic scan as a dense raw file and as raw_csr, SumUDF and
ApplyMasksUDF (4 masks) on both, next to scipy.sparse on the matrix in memory.

    python benchmarks/bench_sparse.py [--dir DIR] [--nav 128,128] [--sig 256,256]
        [--density 0.001] [--executor default] [--repeats 3] [--num-partitions N]
        [--quick] [--out results.jsonl]

The scan (uint16 counts, ``--density`` of the pixels non-zero, 0.1 % by default: a low-dose
4D STEM or event-detector scan) is written once into DIR (default: a temporary directory),
streamed a few hundred frames at a time: ``dense.raw`` (nav × sig uint16, 2 GiB for the
defaults, the size of the other benchmarks' files) and ``sparse.toml`` with its three CSR
arrays (about 1/300 of that). A DIR that holds the scan of the same options already
(``scan.json``) is reused. Page cache hot: each file is read once with ``cat`` first.
``--quick`` is a smoke test (a 16×16 × 32×32 scan, one repeat).
Per UDF the script prints

* ``dense``: udfkit on the raw file (best / median of ``--repeats`` runs after one warm-up);
* ``sparse``: udfkit on the raw_csr files, the same UDF, and the array backend its tiles
  came in (``csr``: the file's CSR rows as they are, the sparse tile path);
* ``scipy``: the one-liner on the in-memory ``scipy.sparse.csr_matrix`` (``m.sum(axis=0)``,
  ``m @ masks.T``), timed in the same run: the floor for work proportional to the non-zeros;
* ``sparse/dense``: how much faster the sparse file is, and whether all three agree.

Target (issue 19): sparse ≥ 10× faster than the dense file for the same result. SumUDF and
ApplyMasksUDF list scipy CSR first, so on raw_csr they get CSR row blocks (never densified)
and do work proportional to the stored entries; what is left is the fixed cost of a run
(planning, opening the three files, building the tiles, merging the sig-sized sum), which is
why the ratio grows with the scan (``--nav 64,64``, 512 MiB dense, gives a smaller one). raw_csr
sizes its partitions by the stored bytes (6 MiB here: one partition, paid once), and the
default Context runs such a small run in the main process, without a round trip to a worker
(``Context(small_run_bytes=...)``, see the scaling docs); ``--num-partitions`` overrides the
partitioning for the sparse file to compare.
"""

import argparse
import json
import os
import sys
import tempfile
import time

import numpy as np
from bench_common import append_rows, timed, warm

UDFS = ("sum", "masks4")


def parse_shape(text):
    return tuple(int(x) for x in text.split(","))


def write_scan(directory, nav, sig, density, seed=0, block=256):
    """Write ``dense.raw`` and ``sparse.toml`` (+ arrays) of one synthetic scan, streamed;
    return ``(toml, raw, csr matrix in memory)``."""
    import scipy.sparse

    from udfkit.io.formats.raw_csr import write_descriptor

    rng = np.random.default_rng(seed)
    n, pixels = int(np.prod(nav)), int(np.prod(sig))
    raw = os.path.join(directory, "dense.raw")
    names = ("sparse.indptr.raw", "sparse.indices.raw", "sparse.data.raw")
    dtypes = (np.dtype("<i8"), np.dtype("<i4"), np.dtype("<u2"))
    parts = []
    nnz = 0
    with open(raw, "wb") as fd, open(os.path.join(directory, names[0]), "wb") as fp, \
            open(os.path.join(directory, names[1]), "wb") as fi, \
            open(os.path.join(directory, names[2]), "wb") as fv:
        np.zeros(1, dtypes[0]).tofile(fp)
        for start in range(0, n, block):
            k = min(block, n - start)
            hits = rng.random((k, pixels)) < density
            frames = np.zeros((k, pixels), dtype=np.uint16)
            frames[hits] = rng.integers(1, 20, size=int(hits.sum()))
            frames.tofile(fd)
            m = scipy.sparse.csr_matrix(frames)
            m.sort_indices()
            (m.indptr[1:].astype(np.int64) + nnz).tofile(fp)
            m.indices.astype(dtypes[1]).tofile(fi)
            m.data.astype(dtypes[2]).tofile(fv)
            nnz += m.nnz
            parts.append(m)
    toml = write_descriptor(os.path.join(directory, "sparse.toml"), nav_shape=nav, sig_shape=sig,
                            files=names, dtypes=dtypes)
    with open(os.path.join(directory, "scan.json"), "w") as f:
        json.dump(scan_key(nav, sig, density, seed), f)
    return toml, raw, scipy.sparse.vstack(parts, format="csr")


def load_scan(directory, nav, sig, density, seed=0):
    """The scan written by :func:`write_scan` with the same options into ``directory``
    before (``scan.json`` says which), as ``write_scan`` returns it; ``None`` if there is none."""
    import scipy.sparse

    from udfkit.io.formats.raw_csr import read_descriptor

    try:
        with open(os.path.join(directory, "scan.json")) as f:
            written = json.load(f)
    except (OSError, ValueError):
        return None
    if written != scan_key(nav, sig, density, seed):
        return None
    desc = read_descriptor(os.path.join(directory, "sparse.toml"))
    ptr, idx, val = (np.fromfile(f, dtype=dt) for f, dt in zip(desc.files, desc.dtypes))
    m = scipy.sparse.csr_matrix((val, idx, ptr), shape=(ptr.size - 1, int(np.prod(sig))))
    return desc.path, os.path.join(directory, "dense.raw"), m


def scan_key(nav, sig, density, seed):
    return {"nav": list(nav), "sig": list(sig), "density": density, "seed": seed}


def make_masks(sig, seed=1):
    """Four dense float32 masks (built on each worker from the seed, not shipped)."""
    return np.random.default_rng(seed).random((4,) + tuple(sig), dtype=np.float32)


def make_udf(name, sig):
    from udfkit.udf import ApplyMasksUDF, SumUDF

    if name == "sum":
        return SumUDF(), "intensity"
    return ApplyMasksUDF(mask_factories=lambda: make_masks(sig), mask_dtype=np.float32), "intensity"


def scipy_way(name, m, masks):
    if name == "sum":
        return np.asarray(m.sum(axis=0)).reshape(masks.shape[1:])
    return m @ masks.reshape(len(masks), -1).T


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dir", help="where the scan is written (default: a temporary directory)")
    ap.add_argument("--nav", type=parse_shape, default=(128, 128))
    ap.add_argument("--sig", type=parse_shape, default=(256, 256))
    ap.add_argument("--density", type=float, default=0.001)
    ap.add_argument("--executor", default="default",
                    help="default (Context(): worker processes on all cores), inline, threads, ...")
    ap.add_argument("--udfs", default=",".join(UDFS))
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--num-partitions", type=int,
                    help="partitions of the sparse data set (default: udfkit's, by stored bytes)")
    ap.add_argument("--quick", action="store_true",
                    help="smoke test: nav 16,16, sig 32,32, density 0.01, one repeat")
    ap.add_argument("--out")
    args = ap.parse_args()
    if args.quick:
        args.nav, args.sig, args.density, args.repeats = (16, 16), (32, 32), 0.01, 1

    from udfkit import Context

    tmp = None
    directory = args.dir
    if directory is None:
        tmp = tempfile.TemporaryDirectory(prefix="udfkit-bench-sparse-")
        directory = tmp.name
    os.makedirs(directory, exist_ok=True)
    t0 = time.perf_counter()
    scan = load_scan(directory, args.nav, args.sig, args.density)
    reused = scan is not None
    toml, raw, m = scan if reused else write_scan(directory, args.nav, args.sig, args.density)
    dense_bytes = os.path.getsize(raw)
    sparse_bytes = sum(os.path.getsize(os.path.join(directory, f)) for f in os.listdir(directory)
                       if f.startswith("sparse.") and f.endswith(".raw"))
    print(f"scan nav {args.nav} x sig {args.sig} uint16, {m.nnz} non-zeros ({m.nnz / np.prod(m.shape):.3%}); "
          f"dense {dense_bytes / 2**20:.0f} MiB, sparse {sparse_bytes / 2**20:.1f} MiB; "
          f"{'reused' if reused else 'written'} in {time.perf_counter() - t0:.1f} s")
    masks = make_masks(args.sig)

    ctx = Context() if args.executor == "default" else Context.make_with(args.executor)
    dense = ctx.load("raw", path=raw, dtype="uint16", nav_shape=args.nav, sig_shape=args.sig)
    sparse = ctx.load("raw_csr", path=toml, num_partitions=args.num_partitions)
    warm(raw)
    for f in os.listdir(directory):
        if f.startswith("sparse."):
            warm(os.path.join(directory, f))
    sparse_plan = ctx.plan(sparse, make_udf('sum', args.sig)[0])
    print(f"executor {args.executor}: {getattr(ctx.executor, 'num_workers', '?')} workers; "
          f"partitions: dense {dense.get_num_partitions()}, sparse {sparse.get_num_partitions()} "
          f"({sparse_plan.partition_reason}); the sparse runs go to "
          f"{'the main process (small run)' if getattr(sparse_plan, 'in_main_process', False) else 'the executor'}; "
          f"load average {os.getloadavg()[0]:.2f}")
    print(f"{'udf':8s} {'dense s (best/median)':>22s} {'sparse s (best/median)':>23s} "
          f"{'tiles':>6s} {'scipy s':>9s} {'sparse/dense':>12s}  agree")
    rows = []
    for name in args.udfs.split(","):
        out = {}
        for kind, ds in (("dense", dense), ("sparse", sparse)):
            ctx.run_udf(dataset=ds, udf=make_udf(name, args.sig)[0])  # compile and warm up
            best, median, res = timed(lambda: ctx.run_udf(dataset=ds, udf=make_udf(name, args.sig)[0]),
                                      args.repeats)
            out[kind] = (best, median, np.asarray(res[make_udf(name, args.sig)[1]].raw_data))
        sp_best, _, ref = timed(lambda: scipy_way(name, m, masks), args.repeats)
        ref = np.asarray(ref, dtype=np.float64)
        agree = all(np.allclose(out[k][2].reshape(ref.shape), ref, rtol=1e-4) for k in out)
        ratio = out["dense"][0] / out["sparse"][0]
        backend = ctx.plan(sparse, make_udf(name, args.sig)[0]).udfs[0].array_backend
        tiles = "csr" if backend == "scipy.sparse.csr_matrix" else backend
        row = dict(udf=name, nav=list(args.nav), sig=list(args.sig), density=args.density,
                   executor=args.executor, dense_s=out["dense"][0], dense_median_s=out["dense"][1],
                   sparse_partitions=sparse.get_num_partitions(), sparse_s=out["sparse"][0],
                   sparse_median_s=out["sparse"][1], scipy_s=sp_best,
                   speedup=ratio, agree=agree, dense_bytes=dense_bytes, sparse_bytes=sparse_bytes,
                   sparse_backend=backend, target_met=bool(agree and ratio >= 10))
        rows.append(row)
        print(f"{name:8s} {out['dense'][0]:>10.3f} / {out['dense'][1]:<10.3f} "
              f"{out['sparse'][0]:>11.3f} / {out['sparse'][1]:<10.3f} {tiles:>6s} {sp_best:>9.4f} "
              f"{ratio:>11.2f}x  {agree}")
        sys.stdout.flush()
    ctx.close()
    met = [r["udf"] for r in rows if r["target_met"]]
    print(f"load average after: {os.getloadavg()[0]:.2f}")
    print(f"target sparse >= 10x dense with equal results: met for {met or 'none'} of "
          f"{[r['udf'] for r in rows]}")
    append_rows(args.out, rows)
    if tmp is not None:
        tmp.cleanup()


if __name__ == "__main__":
    main()
