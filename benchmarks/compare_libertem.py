"""Run the same built-in UDFs with udfkit and with LiberTEM 0.16 and print the differences.

    python benchmarks/compare_libertem.py [--lt-python VENV/bin/python] [--shape 16 16 32 32]

LiberTEM is no dependency of udfkit: it runs in its own virtual environment, in a subprocess
of that environment's python, on the same generated data (an ``.npy`` file: Poisson counts
with a bright disk that moves over the scan, so that CoM, FEM and crystallinity have something
to find) and the same masks (arrays made here, so the UDFs are compared, not the mask
factories). Both sides run inline (one process) on one partitioning of their own choice.

For every UDF and result it prints the shapes, dtypes, the largest absolute difference and
the largest difference relative to the largest magnitude of LiberTEM's result. A script, not
a test: LiberTEM's float32 accumulation and NaN conventions are reported, not judged.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import textwrap

import numpy as np

#: python of a venv with libertem==0.16.0 (``--lt-python`` or $LIBERTEM_PYTHON)
LT_PYTHON = os.environ.get("LIBERTEM_PYTHON", "")

#: name → (LiberTEM module, class, constructor source, ROI or None); the constructor source is
#: evaluated on both sides with the names P (parameters) and M (mask stack) in scope
CASES = {
    "SumUDF": ("sum", "SumUDF", "cls()", None),
    "SumSigUDF": ("sumsigudf", "SumSigUDF", "cls()", None),
    "SumSigUDF+roi": ("sumsigudf", "SumSigUDF", "cls()", "roi"),
    "StdDevUDF": ("stddev", "StdDevUDF", "cls()", None),
    "StdDevUDF+roi": ("stddev", "StdDevUDF", "cls()", "roi"),
    "LogsumUDF": ("logsum", "LogsumUDF", "cls()", None),
    "ApplyMasksUDF": ("masks", "ApplyMasksUDF", "cls(mask_factories=lambda: M)", None),
    "ApplyMasksUDF+roi": ("masks", "ApplyMasksUDF", "cls(mask_factories=lambda: M)", "roi"),
    "PickUDF": ("raw", "PickUDF", "cls()", "pick"),
    "CoMUDF": ("com", "CoMUDF", "cls.with_params(cy=P['cy'], cx=P['cx'], r=P['r'])", None),
    "CoMUDF+roi": ("com", "CoMUDF", "cls.with_params(cy=P['cy'], cx=P['cx'], r=P['r'])", "roi"),
    "CoMUDF+regression": ("com", "CoMUDF",
                          "cls.with_params(cy=P['cy'], cx=P['cx'], r=P['r'], regression=1)", None),
    "FEMUDF": ("FEM", "FEMUDF", "cls(center=(P['cy'], P['cx']), rad_in=P['ri'], rad_out=P['ro'])", None),
    "CrystallinityUDF": ("crystallinity", "CrystallinityUDF",
                         "cls(rad_in=P['ri'], rad_out=P['ro'], real_center=(P['cy'], P['cx']), "
                         "real_rad=3)", None),
}

RUNNER = textwrap.dedent('''
    import json, sys, importlib
    import numpy as np
    pkg, workdir, names = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
    api = importlib.import_module(pkg + ".api")
    cases = json.load(open(workdir + "/cases.json"))
    P = json.load(open(workdir + "/params.json"))
    M = np.load(workdir + "/masks.npy")
    rois = dict(np.load(workdir + "/rois.npz"))
    if pkg == "libertem":
        from libertem.executor.inline import InlineJobExecutor
        ctx = api.Context(executor=InlineJobExecutor())
    else:
        ctx = api.Context.make_with("inline")
    ds = ctx.load("npy", path=workdir + "/data.npy")
    out, errors = {}, {}
    for name in names:
        module, clsname, ctor, roi = cases[name]
        try:
            cls = getattr(importlib.import_module(pkg + ".udf." + module), clsname)
            udf = eval(ctor)
            res = ctx.run_udf(dataset=ds, udf=udf, roi=None if roi is None else rois[roi])
            for key, buf in res.items():
                out[name + "/" + key] = np.asarray(buf.data)
        except Exception as e:
            errors[name] = type(e).__name__ + ": " + str(e).splitlines()[0][:200]
    np.savez(workdir + "/out-" + pkg + ".npz", **out)
    json.dump(errors, open(workdir + "/errors-" + pkg + ".json", "w"))
''')


def make_inputs(workdir: str, shape) -> dict:
    """Data, masks, ROIs and parameters shared by both sides; returns the parameters."""
    ny, nx, sy, sx = shape
    rng = np.random.default_rng(42)
    yy, xx = np.mgrid[:sy, :sx]
    cy, cx = sy / 2, sx / 2
    # a disk that drifts with the scan position (a descan-like shift) over Poisson background
    data = rng.poisson(2.0, size=shape).astype(np.float64)
    for i in range(ny):
        for j in range(nx):
            dy, dx = 0.1 * i - 0.05 * j, 0.08 * j
            data[i, j] += 40 * (((yy - cy - dy) ** 2 + (xx - cx - dx) ** 2) <= (sy / 6) ** 2)
    np.save(os.path.join(workdir, "data.npy"), data.astype(np.uint16))
    masks = np.stack([
        ((yy - cy) ** 2 + (xx - cx) ** 2 <= (sy / 5) ** 2).astype(np.float32),
        (((yy - cy) ** 2 + (xx - cx) ** 2 > (sy / 5) ** 2)
         & ((yy - cy) ** 2 + (xx - cx) ** 2 <= (sy / 2.5) ** 2)).astype(np.float32),
        rng.random((sy, sx)).astype(np.float32),
    ])
    np.save(os.path.join(workdir, "masks.npy"), masks)
    roi = rng.random((ny, nx)) < 0.4
    pick = np.zeros((ny, nx), dtype=bool)
    pick[[1, ny - 2], [2, nx - 1]] = True
    np.savez(os.path.join(workdir, "rois.npz"), roi=roi, pick=pick)
    params = {"cy": cy, "cx": cx, "r": sy / 3, "ri": sy / 8, "ro": sy / 3}
    with open(os.path.join(workdir, "params.json"), "w") as f:
        json.dump(params, f)
    with open(os.path.join(workdir, "cases.json"), "w") as f:
        json.dump(CASES, f)
    return params


def run_side(python: str, pkg: str, workdir: str, names) -> tuple[dict, dict]:
    script = os.path.join(workdir, "runner.py")
    with open(script, "w") as f:
        f.write(RUNNER)
    env = dict(os.environ)
    if pkg == "udfkit":
        # the udfkit of this checkout, whatever is installed
        env["PYTHONPATH"] = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    proc = subprocess.run([python, script, pkg, workdir, json.dumps(list(names))], env=env,
                          capture_output=True, text=True, timeout=1800)
    if proc.returncode != 0:
        raise SystemExit(f"{pkg} run failed:\n{proc.stderr[-3000:]}")
    with np.load(os.path.join(workdir, f"out-{pkg}.npz")) as z:
        out = {k: z[k] for k in z.files}
    with open(os.path.join(workdir, f"errors-{pkg}.json")) as f:
        errors = json.load(f)
    return out, errors


def compare(a: np.ndarray, b: np.ndarray) -> tuple[float, float, str]:
    """(max |a - b|, that / max |b|, note) over the entries finite in both."""
    if a.shape != b.shape:
        return np.nan, np.nan, f"shape {a.shape} vs {b.shape}"
    a64, b64 = a.astype(np.complex128 if "c" in a.dtype.kind + b.dtype.kind else np.float64), \
        b.astype(np.complex128 if "c" in a.dtype.kind + b.dtype.kind else np.float64)
    fa, fb = np.isfinite(a64), np.isfinite(b64)
    note = "" if np.array_equal(fa, fb) else f"non-finite differs at {int((fa != fb).sum())}"
    both = fa & fb
    if not both.any():
        return 0.0, 0.0, note or "no finite entries"
    diff = float(np.abs(a64[both] - b64[both]).max())
    scale = float(np.abs(b64[both]).max()) or 1.0
    return diff, diff / scale, note


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--lt-python", default=LT_PYTHON, help="python of the LiberTEM 0.16 venv")
    parser.add_argument("--shape", type=int, nargs=4, default=(16, 16, 32, 32),
                        help="nav_y nav_x sig_y sig_x of the generated data")
    parser.add_argument("--udfs", nargs="*", default=list(CASES), help=f"subset of {list(CASES)}")
    args = parser.parse_args(argv)
    if not os.path.exists(args.lt_python):
        print(f"LiberTEM's python {args.lt_python!r} is not there; nothing to compare "
              "(install LiberTEM 0.16 into a venv and pass --lt-python)")
        return 0
    with tempfile.TemporaryDirectory() as workdir:
        make_inputs(workdir, tuple(args.shape))
        ours, our_err = run_side(sys.executable, "udfkit", workdir, args.udfs)
        theirs, their_err = run_side(args.lt_python, "libertem", workdir, args.udfs)
    version = subprocess.run([args.lt_python, "-c", "import libertem; print(libertem.__version__)"],
                             capture_output=True, text=True).stdout.strip()
    print(f"udfkit vs LiberTEM {version}, data {tuple(args.shape)} uint16, inline executors")
    print(f"{'UDF/result':38} {'shape':>14} {'udfkit':>9} {'LiberTEM':>9} {'max abs diff':>13} "
          f"{'rel':>9}  note")
    for name in args.udfs:
        for side, err in (("udfkit", our_err), ("LiberTEM", their_err)):
            if name in err:
                print(f"{name:38} {side} failed: {err[name]}")
        keys = sorted({k for k in list(ours) + list(theirs) if k.split("/")[0] == name})
        for key in keys:
            if key not in ours or key not in theirs:
                print(f"{key:38} only in {'udfkit' if key in ours else 'LiberTEM'}")
                continue
            a, b = ours[key], theirs[key]
            diff, rel, note = compare(a, b)
            print(f"{key:38} {str(b.shape):>14} {str(a.dtype):>9} {str(b.dtype):>9} "
                  f"{diff:13.3g} {rel:9.2g}  {note}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
