"""Live results: watch a run progress with ``ctx.run_udf_iter``.

``run_udf_iter`` is a generator that yields partial results after every merged partition:
how many frames are done, a ``damage`` map of the positions processed so far, and the results
up to that point (NaN where nothing was computed yet). Use it to update a plot while a long
run goes on; closing the generator (or leaving the loop) stops the run.

Run it with ``python examples/live_results.py [--out DIR]``; the raw data file goes to DIR
(default: a temporary directory).
"""

import argparse
import os
import tempfile

import numpy as np

from udfkit import Context
from udfkit.udf import SumSigUDF, SumUDF

NAV, SIG = (32, 32), (32, 32)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--out", default=None, help="directory for the data (default: temporary)")
    out = ap.parse_args(argv).out or tempfile.mkdtemp(prefix="udfkit-live-")
    os.makedirs(out, exist_ok=True)
    path = os.path.join(out, "scan.raw")
    data = np.random.default_rng(5).poisson(2, size=NAV + SIG).astype("uint16")
    data.tofile(path)

    with Context.make_with("inline") as ctx:
        # num_partitions: how the scan is cut; each partition is merged and reported on its own
        ds = ctx.load("raw", path=path, dtype="uint16", nav_shape=NAV, sig_shape=SIG, num_partitions=8)
        done = []
        for part in ctx.run_udf_iter(dataset=ds, udf=[SumSigUDF(), SumUDF()]):
            per_frame, total = part.buffers             # one result dict per UDF, as in run_udf
            image = per_frame["intensity"].data          # NaN where not processed yet
            print(f"{part.frames_done:5d}/{part.frames_total} frames, "
                  f"damage {part.damage.mean():5.1%}, "
                  f"NaN in the image {np.isnan(image).mean():5.1%}, "
                  f"sum so far {total['intensity'].data.sum():8.0f}"
                  + (" (complete)" if part.complete else ""))
            # the partial results are consistent with the damage map at every step
            assert np.array_equal(per_frame["intensity"].valid_mask, part.damage)
            assert np.array_equal(image[part.damage], data.sum(axis=(2, 3))[part.damage])
            done.append(part.frames_done)

    assert len(done) == 8 and done == sorted(done) and done[-1] == data.shape[0] * data.shape[1]
    assert part.complete
    assert np.array_equal(total["intensity"].data, data.sum(axis=(0, 1)))
    print("final results equal numpy")


if __name__ == "__main__":
    main()
