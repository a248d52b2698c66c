"""Regions of interest: process only some scan positions.

A ROI is a boolean array of the nav shape; only frames where it is True are read. Shows a
rectangular and a random ROI, the result views ``.data`` (NaN outside the ROI), ``.raw_data``
(only the processed frames), ``.valid_mask`` and ``.masked_data``, and PickUDF to fetch a few
whole frames.

Run it with ``python examples/roi.py [--out DIR]``; the data (a .npy file) go to DIR
(default: a temporary directory).
"""

import argparse
import os
import tempfile

import numpy as np

from udfkit import Context
from udfkit.udf import PickUDF, SumSigUDF, SumUDF


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--out", default=None, help="directory for the data (default: temporary)")
    out = ap.parse_args(argv).out or tempfile.mkdtemp(prefix="udfkit-roi-")
    os.makedirs(out, exist_ok=True)
    path = os.path.join(out, "scan.npy")
    rng = np.random.default_rng(3)
    data = rng.poisson(6, size=(20, 30, 16, 16)).astype("uint16")
    np.save(path, data)

    rect = np.zeros((20, 30), dtype=bool)
    rect[5:10, 10:25] = True                       # 5 × 15 positions
    scattered = rng.random((20, 30)) < 0.1         # about 10 % of the positions, anywhere

    with Context.make_with("inline") as ctx:
        ds = ctx.load("npy", path=path)
        per_frame = ctx.run_udf(dataset=ds, udf=SumSigUDF(), roi=rect)["intensity"]
        in_rect = ctx.run_udf(dataset=ds, udf=SumUDF(), roi=rect)["intensity"]
        random_sums = ctx.run_udf(dataset=ds, udf=SumSigUDF(), roi=scattered)["intensity"]
        # PickUDF returns whole frames; only sensible with a small ROI
        few = np.zeros((20, 30), dtype=bool)
        few[0, 0] = few[7, 12] = few[19, 29] = True
        picked = ctx.run_udf(dataset=ds, udf=PickUDF(), roi=few)["intensity"].data

    # nav results: .data has the nav shape with NaN outside the ROI, .raw_data only the
    # processed frames (in flattened nav order), .valid_mask says which entries were computed
    print(f"rectangle: .data {per_frame.data.shape}, NaN outside: {np.isnan(per_frame.data).sum()}, "
          f".raw_data {per_frame.raw_data.shape}, .valid_mask.sum() {per_frame.valid_mask.sum()}")
    print(f"           mean over the ROI {per_frame.masked_data.mean():.1f} (.masked_data hides the rest)")
    # sig results (SumUDF) have the sig shape and add up only the frames in the ROI
    print(f"           SumUDF over the ROI: {in_rect.data.shape}, total {in_rect.data.sum():.0f}")
    print(f"random ROI: {scattered.sum()} of {scattered.size} positions, "
          f"raw_data {random_sums.raw_data.shape}")
    print(f"PickUDF: {picked.shape} {picked.dtype} (frames in flattened nav order)")

    expected = data.sum(axis=(2, 3))
    assert np.array_equal(per_frame.valid_mask, rect)
    assert np.array_equal(per_frame.data[rect], expected[rect])
    assert np.isnan(per_frame.data[~rect]).all()
    assert np.array_equal(per_frame.raw_data, expected[rect])    # boolean indexing: same order
    assert np.isclose(per_frame.masked_data.mean(), expected[rect].mean())
    assert np.array_equal(in_rect.data, data[rect].sum(axis=0))
    assert np.array_equal(random_sums.raw_data, expected[scattered])
    assert np.array_equal(picked, data[few])
    print("results equal numpy")


if __name__ == "__main__":
    main()
