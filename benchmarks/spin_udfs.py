"""Compute-bound UDFs for ``bench_compute_bound.py``: a fixed amount of CPU work per frame.

In a module of their own (not the script), so that worker processes import them by name.
"""

import time

import numba
import numpy as np

from udfkit import UDF


@numba.njit(nogil=True, cache=True)
def _spin(n, seed):
    # a dependent chain of integer operations: CPU work the compiler cannot drop
    x = seed
    for _ in range(n):
        x = (x * 6364136223846793005 + 1442695040888963407) & 0xFFFFFFFFFFFF
    return x


def calibrate(ms):
    """Iterations of the numba loop that take ``ms`` milliseconds on this core (best of 5)."""
    _spin(10, 1)
    n = 1 << 16
    best = min(_timed(n) for _ in range(5))
    return max(1, int(n * ms / 1e3 / best))


def _timed(n):
    t0 = time.perf_counter()
    _spin(n, 3)
    return time.perf_counter() - t0


class PythonSpinUDF(UDF):
    """Spins ``ms`` milliseconds of this thread's CPU time per frame in Python (holds the GIL:
    a threads pool cannot run two at once, as for any pure-Python UDF)."""

    def __init__(self, ms=2.0, **kwargs):
        super().__init__(ms=ms, **kwargs)

    def get_result_buffers(self):
        return {"s": self.buffer(kind="nav", dtype="float64")}

    def process_frame(self, frame):
        end = time.thread_time() + self.params.ms / 1e3
        while time.thread_time() < end:
            pass
        self.results.s[:] = frame.sum()


class NumbaSpinUDF(UDF):
    """``iterations`` of a numba ``nogil`` loop per frame (like a compiled kernel: threads run
    side by side)."""

    def __init__(self, iterations=1, **kwargs):
        super().__init__(iterations=iterations, **kwargs)

    def get_result_buffers(self):
        return {"s": self.buffer(kind="nav", dtype="float64")}

    def process_frame(self, frame):
        x = _spin(self.params.iterations, 1)
        self.results.s[:] = frame.sum() + (x & 0)
