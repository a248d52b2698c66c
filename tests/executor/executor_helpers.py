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
    """``delay`` (50 ms) per tile: long enough to interrupt or kill a worker in the middle
    of a run."""

    def __init__(self, delay=0.05):
        super().__init__(delay=delay)

    def get_result_buffers(self):
        return {"x": self.buffer(kind="nav")}

    def process_tile(self, tile):
        time.sleep(self.params.delay)


def check_equals_inline(ctx):
    """Sum, SumSig and StdDev on ``ctx`` equal the inline executor's results and numpy."""
    from udfkit import Context
    from udfkit.udf import StdDevUDF, SumSigUDF, SumUDF

    def udfs():
        return [SumUDF(), SumSigUDF(), StdDevUDF()]

    data, ds = make_ds(ctx, num_partitions=5)
    inline = Context.make_with("inline")
    _, ds_inline = make_ds(inline, num_partitions=5)
    got = ctx.run_udf(dataset=ds, udf=udfs())
    ref = inline.run_udf(dataset=ds_inline, udf=udfs())
    for g, r in zip(got, ref):
        for name in r:
            np.testing.assert_allclose(g[name].data, r[name].data, rtol=1e-12)
    np.testing.assert_array_equal(got[0]["intensity"].data, data.sum(axis=(0, 1)))


#: the start of the scripts the real-SIGINT tests run in a subprocess: a slow UDF, and a
#: progress reporter that prints "started" when the run begins (each test adds its main)
SIGINT_SCRIPT_HEAD = """
import os, signal, sys, time
import numpy as np
from udfkit import Context, UDF

# a background job of a non-interactive shell starts with SIGINT ignored (and Python keeps
# it so): behave like a script started from a terminal
signal.signal(signal.SIGINT, signal.default_int_handler)

class Slow(UDF):
    def get_result_buffers(self):
        return {"x": self.buffer(kind="nav")}
    def process_tile(self, tile):
        time.sleep(0.05)

class Started:
    def start(self, total):
        print("started", flush=True)
    def advance(self, n):
        pass
    def close(self):
        pass
"""


class Unpicklable(UDF):
    """Takes a keyword argument (a lock) that cannot be pickled to a worker."""

    def __init__(self, lock=None):
        super().__init__(lock=lock)

    def get_result_buffers(self):
        return {"x": self.buffer(kind="nav")}

    def process_tile(self, tile):
        pass
