"""Quick start: write a small 4D scan as a raw file, load it, run two UDFs in one pass.

Run it with ``python examples/quickstart.py [--out DIR]``. The file goes to DIR (default: a
temporary directory), 32×32 scan positions of 64×64 uint16 frames (8 MiB).
"""

import argparse
import os
import tempfile
import time

import numpy as np

from udfkit import UDF, Context


class SumFrames(UDF):
    """Sum of all frames (a sig-shaped result), tile by tile."""

    def get_result_buffers(self):
        return {"intensity": self.buffer(kind="sig", dtype="float64")}

    def process_tile(self, tile):
        self.results.intensity[:] += tile.sum(axis=0)

    def merge(self, dest, src):
        dest.intensity[:] += src.intensity


class MaxPerFrame(UDF):
    """Brightest pixel of every frame (a nav-shaped result)."""

    def get_result_buffers(self):
        return {"maxval": self.buffer(kind="nav", dtype="float32")}

    def process_frame(self, frame):
        self.results.maxval[:] = frame.max()


def write_scan(path, nav=(32, 32), sig=(64, 64)):
    """A disc that moves across the detector as the scan goes on, plus Poisson noise."""
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[: sig[0], : sig[1]]
    with open(path, "wb") as f:
        for y in range(nav[0]):
            frames = np.empty((nav[1],) + sig, dtype=np.uint16)
            for x in range(nav[1]):
                cy, cx = sig[0] / 2 + (y - nav[0] / 2) / 4, sig[1] / 2 + (x - nav[1] / 2) / 4
                disc = ((yy - cy) ** 2 + (xx - cx) ** 2 < (sig[0] / 6) ** 2) * 400
                frames[x] = rng.poisson(disc + 5)
            frames.tofile(f)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--out", default=None, help="directory for the raw file (default: temporary)")
    args = ap.parse_args(argv)
    out = args.out or tempfile.mkdtemp(prefix="udfkit-quickstart-")
    os.makedirs(out, exist_ok=True)
    path = os.path.join(out, "scan.raw")
    write_scan(path)

    with Context.make_with("inline") as ctx:
        ds = ctx.load("raw", path=path, dtype="uint16", nav_shape=(32, 32), sig_shape=(64, 64))
        t0 = time.perf_counter()
        total, peaks = ctx.run_udf(dataset=ds, udf=[SumFrames(), MaxPerFrame()], progress=True)
        dt = time.perf_counter() - t0

    reference = np.fromfile(path, dtype=np.uint16).reshape(32, 32, 64, 64)
    assert np.array_equal(total["intensity"].data, reference.sum(axis=(0, 1)))
    assert np.array_equal(peaks["maxval"].data, reference.max(axis=(2, 3)))
    print(f"data set {tuple(ds.shape)} {ds.dtype} from {path}")
    print(f"sum of frames: shape {total['intensity'].data.shape}, total {total['intensity'].data.sum():.0f}")
    print(f"max per frame: shape {peaks['maxval'].data.shape}, range "
          f"{peaks['maxval'].data.min():.0f}..{peaks['maxval'].data.max():.0f}")
    print(f"one pass, two UDFs: {dt * 1e3:.1f} ms; results equal numpy")


if __name__ == "__main__":
    main()
