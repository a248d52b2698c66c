"""The decode kernels are compiled once and loaded from the on-disk cache by a new process."""

import os
import subprocess
import sys

SCRIPT = """
import numpy as np
from udfkit.io import _decode
src = np.arange(64, dtype=">u2")
dst = np.empty(64, dtype=np.float32)
offs = np.zeros(1, dtype=np.int64)
_decode.gather_rows(src.astype("<u2"), offs, offs, 64, dst)
_decode.gather_rows_swapped(src, offs, offs, 64, dst, np.empty(64, dtype="<u2"))
assert (dst == np.arange(64)).all()
stats = [_decode._gather.stats, _decode._gather_swap16_unsigned.stats]
print(sum(len(s.cache_hits) for s in stats), sum(len(s.cache_misses) for s in stats))
"""


def _run(cache_dir):
    env = dict(os.environ, NUMBA_CACHE_DIR=str(cache_dir))
    out = subprocess.run([sys.executable, "-c", SCRIPT], env=env, capture_output=True, text=True,
                         timeout=300)
    assert out.returncode == 0, out.stderr
    hits, misses = map(int, out.stdout.split())
    return hits, misses


def test_second_process_loads_kernels_from_cache(tmp_path):
    hits, misses = _run(tmp_path)
    assert misses == 2 and hits == 0  # compiled in the first process
    hits, misses = _run(tmp_path)
    assert hits == 2 and misses == 0  # loaded, not recompiled, in the second
