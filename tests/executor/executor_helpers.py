"""Data and UDFs shared by the executor tests (module-level, so worker processes import
them by name)."""

import time

import numpy as np

from udfkit import UDF

NAV, SIG = (6, 8), (16, 12)


def make_ds(ctx, num_partitions=4, tileshape=None):
    """uint16 data of shape NAV + SIG in the memory format, and the data."""
    data = np.random.default_rng(5).integers(0, 1000, NAV + SIG).astype(np.uint16)
    return data, ctx.load("memory", data=data, num_partitions=num_partitions, tileshape=tileshape)


class Boom(ValueError):
    pass


class RaisesOnPartition(UDF):
    """Raises Boom in the partitions from frame 24 on."""

    def get_result_buffers(self):
        return {"x": self.buffer(kind="nav")}

    def process_tile(self, tile):
        if self.meta.frame_index[0] >= 24:
            raise Boom(f"bad frame {self.meta.frame_index[0]}")


class SlowTiles(UDF):
    """50 ms per tile: long enough to interrupt or kill a worker in the middle of a run."""

    def get_result_buffers(self):
        return {"x": self.buffer(kind="nav")}

    def process_tile(self, tile):
        time.sleep(0.05)
