"""Apply a plain function to every frame with ``ctx.map`` — no UDF class needed.

``ctx.map(dataset=ds, f=f)`` calls ``f(frame)`` for every frame and returns a result with
``.data`` of the nav shape, plus the shape of ``f``'s output: a scalar gives ``nav``, a
vector of length k gives ``(*nav, k)``. ``f`` may be a lambda (it is pickled with cloudpickle
for the workers). udfkit calls it once on a frame of zeros first, to learn the output shape
and dtype. For anything that reduces over frames (a sum frame, a maximum projection) write a
UDF instead (see ``own_udf.py``).

Run it with ``python examples/map_frames.py [--out DIR]``; the data (a .npy file) go to DIR
(default: a temporary directory).
"""

import argparse
import os
import tempfile

import numpy as np

from udfkit import Context


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--out", default=None, help="directory for the data (default: temporary)")
    out = ap.parse_args(argv).out or tempfile.mkdtemp(prefix="udfkit-map-")
    os.makedirs(out, exist_ok=True)
    path = os.path.join(out, "scan.npy")
    data = np.random.default_rng(7).gamma(2.0, 50.0, size=(10, 14, 20, 20)).astype("float32")
    np.save(path, data)

    with Context.make_with("inline") as ctx:
        ds = ctx.load("npy", path=path)
        # a scalar per frame -> nav-shaped result
        peak = ctx.map(dataset=ds, f=lambda frame: frame.max())
        # a small vector per frame -> (*nav, 3), in the dtype f returns (float64 here)
        spread = ctx.map(dataset=ds, f=lambda frame: np.percentile(frame, [10, 50, 90]))

    print(f"peak:   .data {peak.data.shape} {peak.data.dtype}, brightest frame at "
          f"{tuple(int(i) for i in np.unravel_index(np.argmax(peak.data), peak.data.shape))}")
    print(f"spread: .data {spread.data.shape} {spread.data.dtype}, "
          f"median of medians {np.median(spread.data[..., 1]):.2f}")
    print(f"        frame (0, 0): 10/50/90 % = {np.round(spread.data[0, 0], 2)}")

    assert np.array_equal(peak.data, data.max(axis=(2, 3)))
    expected = np.moveaxis(np.percentile(data.reshape(10, 14, -1), [10, 50, 90], axis=-1), 0, -1)
    assert spread.data.shape == (10, 14, 3)
    assert np.allclose(spread.data, expected)
    print("results equal numpy")


if __name__ == "__main__":
    main()
