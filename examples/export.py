"""Export a data set, or the frames in a ROI, to .npy or raw, and load the result again.

``ctx.export(ds, path, roi=...)`` streams the frames into the file partition by partition, in
their stored dtype, without holding the data set in memory. A ``.npy`` name gets a numpy
header; any other name is written raw next to a JSON sidecar ``<path>.json`` (dtype,
nav_shape, sig_shape), so that ``ctx.load("auto", path=...)`` needs no further parameters.

Run it with ``python examples/export.py [--out DIR]``; all files go to DIR (default: a
temporary directory).
"""

import argparse
import json
import os
import pathlib
import tempfile

import numpy as np

from udfkit import Context
from udfkit.udf import SumSigUDF


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--out", default=None, help="directory for the files (default: temporary)")
    out = ap.parse_args(argv).out or tempfile.mkdtemp(prefix="udfkit-export-")
    os.makedirs(out, exist_ok=True)
    source = os.path.join(out, "scan.raw")
    data = np.random.default_rng(6).integers(0, 4000, size=(12, 16, 24, 24), dtype="uint16")
    data.tofile(source)

    roi = np.zeros((12, 16), dtype=bool)
    roi[3:6, 4:11] = True                                   # 3 × 7 = 21 frames

    with Context.make_with("inline") as ctx:
        ds = ctx.load("raw", path=source, dtype="uint16", nav_shape=(12, 16), sig_shape=(24, 24))

        # the whole data set, as raw + sidecar; overwrite=True replaces an earlier export
        full = ctx.export(ds, os.path.join(out, "copy.raw"), overwrite=True)
        # only the ROI, as .npy: the frames in flattened nav order, shape (n, *sig_shape)
        picked = ctx.export(ds, os.path.join(out, "roi.npy"), roi=roi, overwrite=True)

        # "auto" reads the .npy header, or the raw file's sidecar
        ds_full = ctx.load("auto", path=full)
        ds_roi = ctx.load("auto", path=picked)
        # the reloaded data sets are data sets like any other
        sums = ctx.run_udf(dataset=ds_roi, udf=SumSigUDF())["intensity"].data

    sidecar = json.loads(pathlib.Path(f"{full}.json").read_text())
    print(f"{full.name}: {full.stat().st_size} bytes, sidecar {sidecar}")
    print(f"  reloaded: {tuple(ds_full.shape)} {ds_full.dtype}")
    print(f"{picked.name}: {np.load(picked, mmap_mode='r').shape} -> reloaded {tuple(ds_roi.shape)} "
          f"(nav {tuple(ds_roi.shape.nav)}, sig {tuple(ds_roi.shape.sig)})")
    print(f"  per-frame sums of the ROI frames: {sums.shape}, first {sums[:3]}")

    assert np.array_equal(np.fromfile(full, dtype="uint16").reshape(data.shape), data)
    assert tuple(ds_full.shape) == data.shape and ds_full.dtype == data.dtype
    assert np.array_equal(np.load(picked), data[roi])
    assert np.array_equal(sums, data[roi].sum(axis=(1, 2)))
    print("exported files equal numpy")


if __name__ == "__main__":
    main()
