"""Per-pixel standard deviation of Thunder's mouse stack, in series mode, written as a PNG.

Run it with ``python examples/series_std.py [--out DIR] [--stack PATH]``. The stack is
Thunder's example "mouse-images" (500 binary images of 64×64 int16 with a ``conf.json``), from
``../shared/fixtures/thunder/`` by default. Series mode hands each task every frame of a block
of pixel rows, so the standard deviation, the median and the 95th percentile are computed per
pixel along time, as Thunder's ``images.toseries().map(...)`` does. The PNG (``mouse_std.png``
in DIR, default a temporary folder) needs matplotlib (the ``plot`` extra); without it the
script says so and writes a ``.npy`` file instead.
"""

import argparse
import os
import tempfile
from pathlib import Path

import numpy as np

from udfkit import Context
from udfkit.udf import SeriesStatsUDF

STACK = Path(__file__).resolve().parents[1] / ".." / "shared" / "fixtures" / "thunder" / "mouse-images"


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--out", default=None, help="directory for the image (default: temporary)")
    ap.add_argument("--stack", default=str(STACK), help="folder of a Thunder binary stack")
    args = ap.parse_args(argv)
    out = args.out or tempfile.mkdtemp(prefix="udfkit-series-")
    os.makedirs(out, exist_ok=True)

    with Context.make_with("threads", cpus=2) as ctx:
        ds = ctx.load("binary", path=args.stack)
        udf = SeriesStatsUDF(stats=("std", "median"), percentiles=(95,))
        print(ctx.plan(ds, udf))         # series mode: blocks of rows, how they are read
        res = ctx.run_udf(ds, udf)
    std = res["std"].data                # (64, 64): one value per pixel, over 500 frames
    print(f"stack {tuple(ds.shape)} {ds.dtype}: per-pixel std {std.min():.2f}..{std.max():.2f}, "
          f"median of medians {np.median(res['median'].data):.1f}, "
          f"largest 95th percentile {res['percentile'].data.max():.0f}")

    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        path = os.path.join(out, "mouse_std.npy")
        np.save(path, std)
        print(f"matplotlib is not installed (pip install '.[plot]'): wrote {path} instead of a PNG")
        return
    fig, ax = plt.subplots(figsize=(4, 4))
    im = ax.imshow(std, cmap="gray")
    ax.set_title("per-pixel standard deviation")
    ax.set_axis_off()
    fig.colorbar(im, ax=ax, shrink=0.8)
    path = os.path.join(out, "mouse_std.png")
    fig.savefig(path, dpi=100, bbox_inches="tight")
    plt.close(fig)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
