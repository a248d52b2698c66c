"""Imported by a worker at its start (:data:`udfkit.udf.warmup.WARM_MODULE`): loads the cached
kernels (:func:`udfkit.udf.warmup.load_cached_kernels`) in a background thread, so that the
worker takes tasks at once (one that needs a kernel meanwhile waits for numba's lock rather
than loading it again, one that needs none does not wait at all)."""

import threading

from .warmup import load_cached_kernels

threading.Thread(target=load_cached_kernels, name="udfkit-load-kernels", daemon=True).start()
