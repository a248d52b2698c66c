"""Loading udfkit's compiled kernels from numba's on-disk cache ahead of the first run.

A new process pays for its first kernel: importing numba (which imports scipy's BLAS
bindings), setting up its code generator and loading each kernel's machine code from the
cache next to the source. Done while the process would otherwise wait (a worker that has
no task yet, a Context that was just made), the first run does not pay it.

Importing the module :mod:`udfkit.udf.warmup` loads nothing; :func:`load_cached_kernels`
does. :data:`WARM_MODULE` is the module a worker imports to have it done at start.
"""

from __future__ import annotations

import importlib

__all__ = ["load_cached_kernels", "KERNEL_MODULES", "WARM_MODULE"]

#: modules whose kernels nearly every run uses: reading and converting frames, built-ins
KERNEL_MODULES = ("udfkit.io._decode", "udfkit.io.readplan", "udfkit.udf.builtins._kernels")

#: the module a worker imports (``Executor.warm_modules``) to load the kernels at its start
WARM_MODULE = "udfkit.udf._warm_kernels"


def load_cached_kernels(modules=KERNEL_MODULES) -> int:
    """Load every cached compilation of the numba kernels of ``modules`` that matches this
    machine and the kernels' current code; return how many were loaded.

    Nothing is compiled: a signature whose cache entry does not match is left for its first
    call. Errors are swallowed: warming is only a head start.

    Examples
    --------
    >>> load_cached_kernels(())
    0
    """
    loaded = 0
    for name in modules:
        try:
            module = importlib.import_module(name)
        except Exception:
            continue
        for obj in list(vars(module).values()):
            loaded += _load(obj)
    return loaded


def _load(dispatcher) -> int:
    cache = getattr(dispatcher, "_cache", None)
    cache_file = getattr(cache, "_cache_file", None)
    if cache is None or cache_file is None or not hasattr(dispatcher, "overloads"):
        return 0  # not a dispatcher, or one without an on-disk cache
    loaded = 0
    try:
        codegen = dispatcher.targetctx.codegen()
        for key in cache_file._load_index():
            sig = key[0]
            if sig in dispatcher.overloads or key != cache._index_key(sig, codegen):
                continue  # already there, or another machine's or older code's
            dispatcher.compile(sig)
            loaded += 1
    except Exception:
        pass
    return loaded
