"""What the benchmark scripts share: page-cache state, timing, the page-cache read limit.

The scripts run as ``python benchmarks/NAME.py``, so this module is importable next to them.
"""

import json
import os
import subprocess
import time

import numpy as np

__all__ = ["evict", "resident", "warm", "timed", "page_cache_read", "append_rows"]


def evict(path):
    """Drop the file's pages from the page cache (``posix_fadvise(DONTNEED)``)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)


def resident(path):
    """Fraction of the file in the page cache (``fincore``), 0 when unknown."""
    try:
        out = subprocess.run(["fincore", "--bytes", "--noheadings", "--output", "RES,SIZE", path],
                             capture_output=True, text=True, check=True).stdout.split()
        return int(out[0]) / max(1, int(out[1]))
    except (OSError, subprocess.CalledProcessError, ValueError, IndexError):
        return 0.0


def warm(path):
    """Hot and in a known state: evicted, then read once sequentially (``cat``).

    How the page cache was filled matters: read sequentially, the kernel keeps the file in
    2 MiB folios and a mapping faults in 2 MiB at a time; filled by 4 KiB page faults of
    some earlier mapping, summing it through mmap runs at half the speed.
    """
    if resident(path) < 1.0:
        evict(path)
    with open(os.devnull, "wb") as dn:
        subprocess.run(["cat", path], stdout=dn, check=True)


def timed(fn, repeats, setup=None):
    """``(best, median, last result)`` of ``repeats`` calls; ``setup()`` runs untimed before each."""
    times, out = [], None
    for _ in range(repeats):
        if setup is not None:
            setup()
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return min(times), float(np.median(times)), out


def page_cache_read(path, repeats, block_bytes=16 << 20):
    """Best seconds to ``readinto`` the whole file in blocks (16 MiB) on one core."""
    mv = memoryview(bytearray(block_bytes))

    def read():
        with open(path, "rb", buffering=0) as f:
            while f.readinto(mv):
                pass
    return timed(read, repeats)[0]


def append_rows(path, rows):
    """Append ``rows`` (dicts) to the JSON-lines file ``path``; nothing when ``path`` is empty."""
    if not path:
        return
    with open(path, "a") as f:
        for row in rows:
            f.write(json.dumps(row, default=str) + "\n")
