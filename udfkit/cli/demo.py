"""``udfkit demo``: the main job on a built-in default.

Writes a synthetic 4D scan into a cache directory once (a 64×64 scan of 128×128 uint16
frames, 128 MiB): a bright central disk that drifts across the scan, and a diffraction ring
that appears only where a round "particle" sits, on a Poisson background. Then it loads the
file as a raw data set, runs Sum, SumSig, StdDev and two virtual detectors (a ring, the
annular dark field, which images the particle, and the bright-field disk) in one pass, prints
a summary and writes the results as ``.npy`` files (and PNG images when matplotlib is
installed).
"""

from __future__ import annotations

import json
import os
import time
from functools import partial

import numpy as np

from ._common import human_bytes, parse_shape, progress_flag

__all__ = ["add_parser", "make_scan", "ring_mask", "disk_mask", "default_cache_dir"]

VERSION = 1
DESCRIPTION = ("Write a synthetic 4D scan (64x64 positions of 128x128 uint16 frames, 128 MiB) into a "
               "cache directory once, run Sum, SumSig, StdDev and two virtual detectors (ring and "
               "bright-field disk) on it in one pass, print a summary and save the results as .npy "
               "files (and PNG images when matplotlib is installed).")
DISK_RADIUS = 0.1  # of the frame size
RING = (0.27, 0.35)  # inner and outer radius of the diffraction ring / ADF detector


def add_parser(sub) -> None:
    p = sub.add_parser("demo", help="write a synthetic scan once and run the built-ins on it",
                       description=DESCRIPTION)
    p.add_argument("--out", default="udfkit-demo", metavar="DIR",
                   help="where to write the results (default: ./udfkit-demo)")
    p.add_argument("--cache", default=None, metavar="DIR",
                   help="where the synthetic scan is kept (default: $UDFKIT_CACHE_DIR or "
                        "~/.cache/udfkit)")
    p.add_argument("--nav-shape", type=parse_shape, default=(64, 64), metavar="SHAPE",
                   help="scan shape (default 64,64)")
    p.add_argument("--sig-shape", type=parse_shape, default=(128, 128), metavar="SHAPE",
                   help="frame shape (default 128,128)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


def default_cache_dir() -> str:
    env = os.environ.get("UDFKIT_CACHE_DIR")
    if env:
        return env
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "udfkit")


def _radius(sig_shape, cy=None, cx=None):
    h, w = sig_shape
    yy, xx = np.mgrid[:h, :w]
    cy = (h - 1) / 2 if cy is None else cy
    cx = (w - 1) / 2 if cx is None else cx
    return np.hypot(yy - cy, xx - cx) / min(h, w)


def ring_mask(sig_shape, inner=RING[0], outer=RING[1]) -> np.ndarray:
    """Annulus between ``inner`` and ``outer`` (fractions of the frame size) around the centre."""
    r = _radius(sig_shape)
    return ((r >= inner) & (r < outer)).astype(np.float32)


def disk_mask(sig_shape, radius=DISK_RADIUS * 1.5) -> np.ndarray:
    """Disk around the centre (the bright-field detector)."""
    return (_radius(sig_shape) < radius).astype(np.float32)


def make_scan(path: str, nav_shape=(64, 64), sig_shape=(128, 128), seed=0) -> None:
    """Write the synthetic scan to ``path`` (raw uint16 + JSON sidecar), one scan row at a time."""
    ny, nx = nav_shape
    h, w = sig_shape
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:h, :w].astype(np.float32)
    size = float(min(h, w))
    # a round particle in the scan, where the diffraction ring shows up
    py, px = np.mgrid[:ny, :nx]
    particle = np.hypot((py - 0.6 * ny) / ny, (px - 0.4 * nx) / nx) < 0.25
    tmp = f"{path}.{os.getpid()}.tmp"
    with open(tmp, "wb") as f:
        for y in range(ny):
            # the disk drifts across the scan (beam shift)
            cy = (h - 1) / 2 + 0.05 * size * np.sin(2 * np.pi * y / ny)
            cx = (w - 1) / 2 + 0.05 * size * np.cos(2 * np.pi * np.arange(nx) / nx)
            r_disk = np.hypot(yy[None] - cy, xx[None] - cx[:, None, None]) / size
            r_ring = np.hypot(yy - (h - 1) / 2, xx - (w - 1) / 2) / size
            expected = 5.0 + 800.0 * (r_disk < DISK_RADIUS)
            ring = ((r_ring >= RING[0] + 0.02) & (r_ring < RING[1] - 0.02)).astype(np.float32)
            expected = expected + 120.0 * particle[y][:, None, None] * ring[None]
            rng.poisson(expected).astype(np.uint16).tofile(f)
    with open(path + ".json", "w") as f:
        json.dump({"dtype": "uint16", "nav_shape": list(nav_shape), "sig_shape": list(sig_shape),
                   "generator": f"udfkit demo v{VERSION}"}, f, indent=1)
    os.replace(tmp, path)


def _scan_path(cache: str, nav_shape, sig_shape) -> str:
    nav = "x".join(map(str, nav_shape))
    sig = "x".join(map(str, sig_shape))
    return os.path.join(cache, f"demo-v{VERSION}-{nav}-{sig}-uint16.raw")


def _save_png(out: str, results: dict) -> list:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return []
    paths = []
    for name, arr in results.items():
        fig, ax = plt.subplots(figsize=(4, 4))
        shown = np.log1p(arr) if name == "sum_intensity" else arr
        ax.imshow(shown, cmap="gray")
        ax.set_title(name)
        ax.set_axis_off()
        path = os.path.join(out, f"{name}.png")
        fig.savefig(path, dpi=100, bbox_inches="tight")
        plt.close(fig)
        paths.append(path)
    return paths


def run(args, ctx) -> int:
    from ..udf import ApplyMasksUDF, StdDevUDF, SumSigUDF, SumUDF

    nav_shape, sig_shape = tuple(args.nav_shape), tuple(args.sig_shape)
    if len(sig_shape) != 2 or len(nav_shape) != 2:
        from ._common import CLIError

        raise CLIError(f"demo: --nav-shape and --sig-shape need two sizes each, got "
                       f"{nav_shape} and {sig_shape}")
    cache = args.cache or default_cache_dir()
    os.makedirs(cache, exist_ok=True)
    path = _scan_path(cache, nav_shape, sig_shape)
    nbytes = int(np.prod(nav_shape + sig_shape)) * 2
    if os.path.isfile(path) and os.path.getsize(path) == nbytes:
        origin = "from the cache"
    else:
        t0 = time.perf_counter()
        make_scan(path, nav_shape, sig_shape)
        origin = f"written in {time.perf_counter() - t0:.1f} s"
    print(f"udfkit demo: {nav_shape[0]}x{nav_shape[1]} scan of {sig_shape[0]}x{sig_shape[1]} "
          f"uint16 frames, {human_bytes(nbytes)}, {origin}: {path}")

    ds = ctx.load("raw", path=path, dtype="uint16", nav_shape=nav_shape, sig_shape=sig_shape)
    masks = [partial(ring_mask, sig_shape), partial(disk_mask, sig_shape)]

    def udfs():
        return [SumUDF(), SumSigUDF(), StdDevUDF(), ApplyMasksUDF(mask_factories=masks)]

    # the first run starts the workers and compiles (or loads) the kernels in each of them;
    # the second one measures the pass over the data
    t0 = time.perf_counter()
    ctx.run_udf(dataset=ds, udf=udfs(), progress=progress_flag(args))
    first = time.perf_counter() - t0
    t0 = time.perf_counter()
    res = ctx.run_udf(dataset=ds, udf=udfs())
    elapsed = time.perf_counter() - t0
    print(f"Sum, SumSig, StdDev and 2 virtual detectors in one pass on "
          f"{ctx.executor.num_workers} worker(s): {elapsed:.2f} s, {nbytes / elapsed / 1e9:.2f} GB/s "
          f"(first run, with worker start and kernel compilation: {first:.1f} s)")

    virtual = res[3]["intensity"].data
    results = {
        "sum_intensity": res[0]["intensity"].data,
        "sumsig_intensity": res[1]["intensity"].data,
        "stddev_mean": res[2]["mean"].data,
        "stddev_std": res[2]["std"].data,
        "ring_adf": virtual[..., 0],
        "disk_bf": virtual[..., 1],
    }
    os.makedirs(args.out, exist_ok=True)
    for name, arr in results.items():
        np.save(os.path.join(args.out, f"{name}.npy"), arr)
        print(f"  {name + '.npy':22s} shape {str(arr.shape):12s} {arr.dtype!s:8s} "
              f"min {float(np.min(arr)):.4g}  max {float(np.max(arr)):.4g}")
    pngs = _save_png(args.out, results)
    print(f"results in {os.path.abspath(args.out)}"
          + (f" (.npy and {len(pngs)} PNG images)" if pngs else
             " (.npy; install matplotlib for PNG images)"))
    return 0
