"""Writing your own UDF: one computation, three process methods, identical results.

The computation: the maximum projection (the pixel-wise maximum over all frames, a ``sig``
result) and the maximum of every frame (a ``nav`` result), written with ``process_frame``,
``process_tile`` and ``process_partition``.

Run it with ``python examples/own_udf.py [--out DIR]``; the data (a .npy file) go to DIR
(default: a temporary directory).
"""

import argparse
import os
import tempfile

import numpy as np

from udfkit import UDF, Context


class MaxBase(UDF):
    """Buffers, start values and merge, shared by the three variants below. (UDF classes
    live at module level, so that workers of a multi-process executor can unpickle them.)"""

    def get_result_buffers(self):
        return {
            "frame_max": self.buffer(kind="nav", dtype="float32"),   # one value per frame
            "max_proj": self.buffer(kind="sig", dtype="float32"),    # one value per pixel
        }

    def preprocess(self):
        # buffers start at zero; a maximum must start at -inf (also right for negative data)
        self.results.frame_max[:] = -np.inf
        self.results.max_proj[:] = -np.inf

    def merge(self, dest, src):
        # called on the main process with every partition's buffers (src)
        dest.frame_max[:] = src.frame_max                              # nav: copy the rows
        np.maximum(dest.max_proj, src.max_proj, out=dest.max_proj)    # sig: combine


class MaxByFrame(MaxBase):
    def process_frame(self, frame):                 # frame: sig shape
        self.results.frame_max[:] = frame.max()     # this frame's entry, shape (1,)
        np.maximum(self.results.max_proj, frame, out=self.results.max_proj)


class MaxByTile(MaxBase):
    def get_tiling_preferences(self):
        return {"total_size": "2KiB"}   # tiny tiles, only to show that frames arrive in parts

    def process_tile(self, tile):       # tile: (depth, *sig_part); views match the tile
        np.maximum(self.results.frame_max, tile.max(axis=(1, 2)), out=self.results.frame_max)
        np.maximum(self.results.max_proj, tile.max(axis=0), out=self.results.max_proj)


class MaxByPartition(MaxBase):
    def process_partition(self, partition):         # all frames of the partition at once
        self.results.frame_max[:] = partition.max(axis=(1, 2))
        np.maximum(self.results.max_proj, partition.max(axis=0), out=self.results.max_proj)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--out", default=None, help="directory for the data (default: temporary)")
    out = ap.parse_args(argv).out or tempfile.mkdtemp(prefix="udfkit-own-udf-")
    os.makedirs(out, exist_ok=True)
    path = os.path.join(out, "scan.npy")
    data = np.random.default_rng(1).normal(100, 30, size=(16, 16, 32, 32)).astype("float32")
    np.save(path, data)

    with Context.make_with("inline") as ctx:
        ds = ctx.load("npy", path=path, num_partitions=4)
        results = {udf.__class__.__name__: ctx.run_udf(dataset=ds, udf=udf)
                   for udf in (MaxByFrame(), MaxByTile(), MaxByPartition())}

    for name, res in results.items():
        print(f"{name:15s} frame_max {res['frame_max'].data.shape} mean {res['frame_max'].data.mean():.3f}, "
              f"max_proj {res['max_proj'].data.shape} mean {res['max_proj'].data.mean():.3f}")
        assert np.array_equal(res["frame_max"].data, data.max(axis=(2, 3)))
        assert np.array_equal(res["max_proj"].data, data.max(axis=(0, 1)))
    print("all three variants equal numpy")


if __name__ == "__main__":
    main()
