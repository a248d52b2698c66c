"""Thunder's mouse example: the local correlation image and the per-pixel standard deviation
of a stack of 500 images, in one pass, written as PNGs.

Thunder's own data (``thunder/utils/data/mouse/images`` in Thunder's repository: a directory
of 500 ``.bin`` images of 64 x 64 int16 and a ``conf.json``) load with
``ctx.load("binary", path=...)``. ``LocalCorrUDF(size)`` is Thunder's ``localcorr(size)``:
per pixel, the correlation over time between the pixel and the mean of its ``size``-wide
neighbourhood; pixels of active cells correlate with their neighbours, noise does not.
``StdDevUDF`` gives the per-pixel standard deviation (Thunder's ``images.std()``) in the same
pass over the files.

Run it with ``python examples/thunder_localcorr.py [--data DIR] [--out DIR]``: ``--data`` is
the image directory (default: the copy in ``../shared/fixtures/thunder/mouse-images`` beside
this checkout), the PNGs go to ``--out`` (default: a temporary directory). Without
matplotlib the images are computed and checked but not written.
"""

import argparse
import os
import tempfile

import numpy as np
from scipy import ndimage

from udfkit import Context
from udfkit.udf import LocalCorrUDF, StdDevUDF

HERE = os.path.dirname(os.path.abspath(__file__))
DEFAULT_DATA = os.path.join(HERE, "..", "..", "shared", "fixtures", "thunder", "mouse-images")


def write_png(path, image, title):
    """``image`` as a PNG with a colour bar; False (and nothing written) without matplotlib."""
    try:
        import matplotlib
    except ImportError:
        return False
    matplotlib.use("Agg")  # no display needed
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(4, 3.4), dpi=100)
    shown = ax.imshow(image, cmap="magma")
    ax.set_title(title)
    ax.set_axis_off()
    fig.colorbar(shown, ax=ax)
    fig.savefig(path, bbox_inches="tight")
    plt.close(fig)
    return True


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--data", default=DEFAULT_DATA, help="Thunder binary image directory")
    ap.add_argument("--out", default=None, help="directory for the PNGs (default: temporary)")
    ap.add_argument("--size", type=int, default=5, help="neighbourhood width in pixels")
    args = ap.parse_args(argv)
    if not os.path.isdir(args.data):
        raise SystemExit(f"no Thunder image directory at {os.path.abspath(args.data)}; "
                         "pass --data DIR (Thunder's thunder/utils/data/mouse/images)")
    out = args.out or tempfile.mkdtemp(prefix="udfkit-thunder-")
    os.makedirs(out, exist_ok=True)

    with Context.make_with("threads", cpus=2) as ctx:
        ds = ctx.load("binary", path=args.data)
        corr, stats = ctx.run_udf(dataset=ds, udf=[LocalCorrUDF(size=args.size), StdDevUDF()])
    image = corr["localcorr"].data
    std = stats["std"].data
    print(f"{ds.shape.nav.size} images of {ds.shape.sig.to_tuple()} {ds.dtype}")
    print(f"local correlation (size {args.size}): {image.shape}, "
          f"median {np.nanmedian(image):.3f}, max {np.nanmax(image):.3f}, "
          f"{int(np.isnan(image).sum())} constant pixels (NaN)")
    print(f"standard deviation: mean {std.mean():.2f}, max {std.max():.2f}")

    for name, img, title in [("localcorr.png", image, f"local correlation, size {args.size}"),
                             ("std.png", std, "standard deviation")]:
        path = os.path.join(out, name)
        if write_png(path, img, title):
            print(f"wrote {path}")
        else:
            print(f"matplotlib is not installed: {name} not written")

    # the same computation after Thunder's definition, with numpy on the whole stack
    stack = np.stack(list(_read_stack(args.data))).astype(np.float64)
    blurred = ndimage.uniform_filter(stack, size=(1, args.size, args.size))
    xm, ym = stack - stack.mean(0), blurred - blurred.mean(0)
    with np.errstate(invalid="ignore", divide="ignore"):
        want = (xm * ym).sum(0) / np.sqrt((xm * xm).sum(0) * (ym * ym).sum(0))
    assert np.allclose(image, want, equal_nan=True)
    assert np.allclose(std, stack.std(axis=0))
    print("results equal numpy")


def _read_stack(folder):
    """The images read with numpy, as Thunder reads them (sorted files, ``conf.json``)."""
    import json

    with open(os.path.join(folder, "conf.json")) as f:
        conf = json.load(f)
    shape = conf.get("shape", conf.get("dims"))
    for name in sorted(n for n in os.listdir(folder) if n.endswith(".bin")):
        yield np.fromfile(os.path.join(folder, name), dtype=conf["dtype"]).reshape(shape)


if __name__ == "__main__":
    main()
