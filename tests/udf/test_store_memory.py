"""Bounded memory with results on disk: the main process's memory does not grow with the
number of frames. A child process runs, after a warm-up run, under an address-space limit
(``RLIMIT_AS``) a few MiB above what it uses; the nav results of its run are several times
that headroom (in the slow variant 1 KiB per frame over a million frames, 1 GiB under a
32 MiB headroom). Without a store the same run fails for lack of memory.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest

CHILD = textwrap.dedent('''
    import resource, sys
    import numpy as np
    from udfkit import Context
    from udfkit.udf import MapUDF

    tmp, fmt, frames, width, headroom, mode = sys.argv[1:7]
    frames, width, headroom = int(frames), int(width), int(headroom) << 20

    def f(frame):
        return np.repeat(frame.reshape(-1), width // 16)

    def vm(key):
        for line in open("/proc/self/status"):
            if line.startswith(key):
                return int(line.split()[1]) << 10

    ctx = Context.make_with("inline")
    small = ctx.load("memory", data=np.ones((512, 4, 4), "float32"), sig_dims=2, num_partitions=4)
    ctx.run_udf(small, MapUDF(f=f), out=f"{tmp}/warm.{fmt}")
    data = np.arange(frames * 16, dtype="float32").reshape(frames, 4, 4) % 1000
    # partitions of 1 MiB of results
    parts = max(1, frames * width * 4 // (1 << 20))
    ds = ctx.load("memory", data=data, sig_dims=2, num_partitions=parts)
    limit = vm("VmSize") + headroom
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    try:
        if mode == "disk":
            res = ctx.run_udf(ds, MapUDF(f=f), out=f"{tmp}/big.{fmt}")
        else:
            res = ctx.run_udf(ds, MapUDF(f=f))
    except (MemoryError, Exception) as e:
        print("failed", type(e).__name__, str(e)[:200])
        sys.exit(3)
    arr = res["result"].data
    for i in (0, frames // 3, frames - 1):
        assert np.array_equal(np.asarray(arr[i]), f(data[i])), i
    print("ok", (vm("VmPeak") - limit + headroom) >> 20, "MiB peak over the start")
''')


def _run(tmp_path, fmt, frames, width, headroom, mode="disk"):
    script = tmp_path / "_child.py"
    script.write_text(CHILD)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in sys.path if p),
               MALLOC_ARENA_MAX="2", OMP_NUM_THREADS="1", NUMBA_NUM_THREADS="1")
    return subprocess.run([sys.executable, str(script), str(tmp_path), fmt, str(frames),
                           str(width), str(headroom), mode], capture_output=True, text=True,
                          env=env, timeout=900)


@pytest.mark.parametrize("fmt", ["zarr", pytest.param("h5", marks=pytest.mark.slow),
                                 pytest.param("npy", marks=pytest.mark.slow)])
def test_nav_results_larger_than_the_memory_limit(tmp_path, fmt):
    # 16384 frames x 4 KiB = 64 MiB of results under 16 MiB of headroom
    p = _run(tmp_path, fmt, 16384, 1024, 16)
    assert p.returncode == 0 and p.stdout.startswith("ok"), p.stdout + p.stderr[-3000:]


@pytest.mark.slow
def test_without_a_store_the_same_run_does_not_fit(tmp_path):
    p = _run(tmp_path, "npy", 16384, 1024, 16, mode="memory")
    assert p.returncode == 3 and p.stdout.startswith("failed"), p.stdout + p.stderr[-3000:]


@pytest.mark.slow
@pytest.mark.parametrize("fmt", ["zarr", "h5", "npy"])
def test_a_million_frames_of_1kib_under_32mib(tmp_path, fmt):
    p = _run(tmp_path, fmt, 1 << 20, 256, 32)
    assert p.returncode == 0 and p.stdout.startswith("ok"), p.stdout + p.stderr[-3000:]
