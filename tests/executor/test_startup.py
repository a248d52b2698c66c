"""Context() starts its workers at once; they load the cached kernels before the first task;
nothing is left running after close, also when a Context closes while its workers start."""

from __future__ import annotations

import subprocess
import sys
import time

import numpy as np

from udfkit import UDF, Context
from udfkit.testing.executors import alive, live_children
from udfkit.udf import SumUDF
from udfkit.udf.warmup import KERNEL_MODULES, WARM_MODULE, load_cached_kernels


def test_context_starts_worker_processes_and_close_leaves_none():
    before = live_children()
    ctx = Context.make_with("processes", cpus=2)
    started = live_children() - before
    assert len(started) == 2  # spawned by Context(), before any run
    ctx.close()  # while they may still import: they are killed, not waited for
    assert not alive(started)


def test_inline_and_threads_start_nothing():
    before = live_children()
    for kind in ("inline", "threads"):
        with Context.make_with(kind) as ctx:
            assert live_children() == before
            ds = ctx.load("memory", data=np.ones((2, 2, 4, 4), "uint16"))
            assert ctx.run_udf(ds, SumUDF())["intensity"].data.sum() == 64


class KernelsLoaded(UDF):
    """How many compiled built-in kernels the worker holds once its background loading
    (started when the worker started) is done; -1 where there is none."""

    def get_result_buffers(self):
        return {"n": self.buffer(kind="single", dtype="int64")}

    def process_partition(self, partition):
        import threading

        loading = [t for t in threading.enumerate() if t.name == "udfkit-load-kernels"]
        if not loading and not _done_loading():
            self.results.n[:] = -1
            return
        for t in loading:
            t.join(timeout=120)
        from numba.core.registry import CPUDispatcher

        import udfkit.udf.builtins._kernels as k

        self.results.n[:] = sum(len(v.overloads) for v in vars(k).values()
                                if isinstance(v, CPUDispatcher))

    def merge(self, dest, src):
        dest.n[:] = np.maximum(dest.n, src.n)


def _done_loading() -> bool:
    # the loading thread may have ended before the task looked (numba is then imported)
    import sys

    return "numba" in sys.modules


def test_worker_processes_load_the_kernels_at_their_start():
    # cached by an inline run in this process, so that there is something to load
    with Context.make_with("inline") as ctx:
        ds = ctx.load("memory", data=np.ones((2, 2, 4, 4), "uint16"))
        ctx.run_udf(ds, SumUDF())
    with Context.make_with("processes", cpus=1) as ctx:
        assert WARM_MODULE in ctx.executor._warm
        ds = ctx.load("memory", data=np.ones((2, 2, 4, 4), "uint16"))
        # the worker's first task: no built-in has run there, its kernels are loaded (or
        # being loaded, in the background)
        assert int(ctx.run_udf(ds, KernelsLoaded())["n"].data[0]) >= 1


KERNELS = """
import sys
from udfkit.udf.warmup import load_cached_kernels
n = load_cached_kernels()
import udfkit.udf.builtins._kernels as k
from numba.core.registry import CPUDispatcher
loaded = sum(len(v.overloads) for v in vars(k).values() if isinstance(v, CPUDispatcher))
print(n, loaded)
"""


def test_cached_kernels_load_in_a_fresh_process():
    # this process's runs (above) have compiled and cached the built-in kernels
    with Context.make_with("inline") as ctx:
        ds = ctx.load("memory", data=np.ones((2, 2, 4, 4), "uint16"))
        ctx.run_udf(ds, SumUDF())
    out = subprocess.run([sys.executable, "-c", KERNELS], capture_output=True, text=True,
                         timeout=300)
    assert out.returncode == 0, out.stderr
    n, loaded = map(int, out.stdout.split())
    # nothing is compiled there: what is loaded came from the cache, and it is there
    assert n >= 1 and loaded >= 1


def test_load_cached_kernels_skips_what_it_cannot_load():
    assert load_cached_kernels(("udfkit.no_such_module",)) == 0
    assert set(KERNEL_MODULES) >= {"udfkit.udf.builtins._kernels"}
    t0 = time.perf_counter()
    load_cached_kernels()  # twice: what is there already is not loaded again
    assert load_cached_kernels() == 0
    assert time.perf_counter() - t0 < 60
