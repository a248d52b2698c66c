"""Virtual detectors with ApplyMasksUDF: several masks applied to every frame in one pass.

Shows masks given as arrays, as factories (functions that build the mask on the worker,
cheaper to ship than the mask), as a stack ``(k, *sig)`` and as a ``scipy.sparse`` matrix.
The result ``intensity`` has the shape ``(*nav, n_masks)``.

Run it with ``python examples/virtual_detectors.py [--out DIR]``; the raw data file goes to
DIR (default: a temporary directory).
"""

import argparse
import os
import tempfile

import numpy as np
import scipy.sparse

from udfkit import Context
from udfkit.udf import ApplyMasksUDF

NAV, SIG = (24, 24), (48, 48)


def radius():
    y, x = np.indices(SIG)
    return np.hypot(y - SIG[0] / 2, x - SIG[1] / 2)


def annular_dark_field():
    """A mask factory: called where the masks are needed, returns a sig-shaped array."""
    r = radius()
    return ((r >= 12) & (r < 22)).astype("float32")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--out", default=None, help="directory for the data (default: temporary)")
    out = ap.parse_args(argv).out or tempfile.mkdtemp(prefix="udfkit-masks-")
    os.makedirs(out, exist_ok=True)
    path = os.path.join(out, "scan.raw")
    data = np.random.default_rng(2).poisson(4, size=NAV + SIG).astype("uint16")
    data.tofile(path)

    bright_field = (radius() < 8).astype("float32")            # an array: disk in the centre
    quadrants = np.zeros((4,) + SIG, dtype="float32")          # a stack of 4 masks at once
    cy, cx = SIG[0] // 2, SIG[1] // 2
    quadrants[0, :cy, :cx] = quadrants[1, :cy, cx:] = quadrants[2, cy:, :cx] = quadrants[3, cy:, cx:] = 1
    pixels = scipy.sparse.coo_matrix(                          # sparse: three single pixels
        ([1.0, 1.0, 1.0], ([5, 24, 40], [7, 24, 3])), shape=SIG).tocsr()

    masks = [bright_field, annular_dark_field, quadrants, pixels]
    with Context.make_with("inline") as ctx:
        ds = ctx.load("raw", path=path, dtype="uint16", nav_shape=NAV, sig_shape=SIG)
        # sparse products when every mask is sparse (LiberTEM's rule), here dense;
        # use_sparse=True / False forces either
        res = ctx.run_udf(dataset=ds, udf=ApplyMasksUDF(mask_factories=masks))
        forced_sparse = ctx.run_udf(dataset=ds, udf=ApplyMasksUDF(mask_factories=masks, use_sparse=True))

    intensity = res["intensity"].data
    names = ["bright field", "annular dark field", "quadrant 0", "quadrant 1", "quadrant 2",
             "quadrant 3", "three pixels"]
    print(f"data {NAV + SIG}, {len(names)} masks -> intensity {intensity.shape} {intensity.dtype}")
    for i, name in enumerate(names):
        print(f"  [..., {i}] {name:19s} mean {intensity[..., i].mean():9.2f}")

    # the same as numpy: the dot product of each frame with each mask
    stack = np.concatenate([bright_field[None], annular_dark_field()[None], quadrants,
                            pixels.toarray()[None]])
    expected = np.einsum("abyx,myx->abm", data.astype("float64"), stack)
    assert intensity.shape == NAV + (len(names),)
    assert np.allclose(intensity, expected, rtol=1e-6)    # the masks' dtype unless mask_dtype=
    assert np.allclose(forced_sparse["intensity"].data, expected, rtol=1e-6)
    print("results equal numpy (sparse and dense)")


if __name__ == "__main__":
    main()
