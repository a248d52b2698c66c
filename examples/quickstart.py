"""Quick start: write a small 4D scan as a raw file, load it, run two built-in UDFs in one pass.

Run it with ``python examples/quickstart.py [--out DIR]``. The raw file goes to DIR (default:
a temporary directory): 32×32 scan positions of 64×64 uint16 frames (8 MiB). To write your
own UDF, see ``own_udf.py``.
"""

import argparse
import os
import tempfile

import numpy as np

from udfkit import Context
from udfkit.udf import SumSigUDF, SumUDF


def write_scan(path, nav=(32, 32), sig=(64, 64)):
    """A disc that moves across the detector as the scan goes on, plus Poisson noise."""
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[: sig[0], : sig[1]]
    ny, nx = np.mgrid[: nav[0], : nav[1]]
    cy = sig[0] / 2 + (ny - nav[0] / 2) / 4     # disc centre per scan position
    cx = sig[1] / 2 + (nx - nav[1] / 2) / 4
    r2 = (yy - cy[..., None, None]) ** 2 + (xx - cx[..., None, None]) ** 2
    frames = rng.poisson((r2 < (sig[0] / 6) ** 2) * 400 + 5).astype(np.uint16)
    frames.tofile(path)     # a raw file: just the bytes, no header


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--out", default=None, help="directory for the raw file (default: temporary)")
    args = ap.parse_args(argv)
    out = args.out or tempfile.mkdtemp(prefix="udfkit-quickstart-")
    os.makedirs(out, exist_ok=True)
    path = os.path.join(out, "scan.raw")
    write_scan(path)

    with Context.make_with("inline") as ctx:
        # a raw file has no header: tell udfkit its layout
        ds = ctx.load("raw", path=path, dtype="uint16", nav_shape=(32, 32), sig_shape=(64, 64))
        # a list of UDFs runs in one pass over the data and gives one result dict per UDF
        total, per_frame = ctx.run_udf(dataset=ds, udf=[SumUDF(), SumSigUDF()], progress=True)

    sum_frame = total["intensity"].data         # sig-shaped: (64, 64), the sum of all frames
    bright = per_frame["intensity"].data        # nav-shaped: (32, 32), the sum of each frame
    print(f"data set {tuple(ds.shape)} {ds.dtype} from {path}")
    print(f"sum of all frames: shape {sum_frame.shape}, total {sum_frame.sum():.0f}")
    print(f"sum of each frame: shape {bright.shape}, range {bright.min():.0f}..{bright.max():.0f}")

    reference = np.fromfile(path, dtype=np.uint16).reshape(32, 32, 64, 64)
    assert np.array_equal(sum_frame, reference.sum(axis=(0, 1)))
    assert np.array_equal(bright, reference.sum(axis=(2, 3)))
    print("results equal numpy")


if __name__ == "__main__":
    main()
