"""``StdDevUDF`` (per-pixel mean, variance and standard deviation over frames) and
``StatsUDF`` (the same plus minimum and maximum), in one pass.

Numerics
--------
Each tile's moments are computed about a per-pixel shift (the tile's first frame) and
folded into the partition's running ``sum`` and ``varsum`` (sum of squared deviations)
with the pairwise update of Chan, Golub and LeVeque; partitions are merged the same way on
the main process. Integer data stay exact within a tile, and data with a large offset
(1e6 + noise in float32) lose nothing to cancellation, unlike the textbook
``E[x**2] - E[x]**2``.
"""

from __future__ import annotations

import numpy as np

from ...errors import UDFError
from ..base import UDF
from ._dtypes import extreme_values, kernel_input_dtype
from ._targets import flat_target

__all__ = ["StdDevUDF", "StatsUDF"]

#: tiles of at most this many pixels per frame keep the five per-pixel float64 arrays of the
#: kernel (running sum and varsum, shift and the tile's two sums) in the core's L2 cache
_TILE_PIXELS = 16384
_TILE_DEPTH = 32


class StdDevUDF(UDF):
    """Per-pixel statistics over all (selected) frames, in one pass.

    Results (sig-shaped unless noted): ``sum``, ``mean``, ``var`` (population variance,
    ``ddof=0`` like :func:`numpy.var`), ``std``, ``varsum`` (sum of squared deviations from
    the mean) and ``num_frames`` (a single value). All are float64 (complex128 for ``sum``
    and ``mean`` of complex data).

    Examples
    --------
    >>> import numpy as np
    >>> from udfkit import Context
    >>> from udfkit.udf import StdDevUDF
    >>> data = np.random.default_rng(0).normal(1e6, 1.0, (4, 5, 8, 8)).astype("float32")
    >>> ctx = Context.make_with("inline")
    >>> res = ctx.run_udf(dataset=ctx.load("memory", data=data), udf=StdDevUDF())
    >>> np.allclose(res["var"].data, data.astype("float64").var(axis=(0, 1)))
    True
    >>> int(res["num_frames"].data[0])
    20
    """

    _with_minmax = False

    def __init__(self):
        super().__init__()

    def get_preferred_input_dtype(self):
        return kernel_input_dtype(self.meta)

    def get_tiling_preferences(self):
        itemsize = self.meta.input_dtype.itemsize if self.meta is not None else 4
        return {"depth": _TILE_DEPTH, "total_size": _TILE_DEPTH * _TILE_PIXELS * itemsize}

    def _sum_dtype(self):
        return np.dtype(np.complex128 if self.meta.input_dtype.kind == "c" else np.float64)

    def get_result_buffers(self):
        sum_dtype = self._sum_dtype()
        buffers = {
            "num_frames": self.buffer(kind="single", dtype=np.int64),
            "sum": self.buffer(kind="sig", dtype=sum_dtype),
            "varsum": self.buffer(kind="sig", dtype=np.float64),
            "mean": self.buffer(kind="sig", dtype=sum_dtype, use="result_only"),
            "var": self.buffer(kind="sig", dtype=np.float64, use="result_only"),
            "std": self.buffer(kind="sig", dtype=np.float64, use="result_only"),
        }
        if self._with_minmax:
            dtype = self.meta.input_dtype
            if dtype.kind == "c":
                raise UDFError(f"{type(self).__name__}: minimum and maximum are not defined for "
                               f"complex data (input dtype {dtype}); use StdDevUDF")
            buffers["min"] = self.buffer(kind="sig", dtype=dtype)
            buffers["max"] = self.buffer(kind="sig", dtype=dtype)
        return buffers

    def preprocess(self):
        # frames seen so far per signal slice: every pixel of a slice has the same count
        self._frames_seen = {}
        self._scratch = None
        if self._with_minmax:
            largest, smallest = extreme_values(self.results.min.dtype)
            self.results.min[...] = largest
            self.results.max[...] = smallest

    def _scratch_arrays(self, n):
        if self._scratch is None or self._scratch[0].shape[0] < n:
            dtype = self._sum_dtype()
            self._scratch = (np.empty(n, dtype), np.empty(n, dtype), np.empty(n, np.float64))
        return tuple(a[:n] for a in self._scratch)

    def process_tile(self, tile):
        from ._kernels import as_rows, minmax, moments

        flat, stride, depth, n = as_rows(tile)
        key = self.meta.sig_slice.origin
        seen = self._frames_seen.get(key, 0)
        r = self.results
        with flat_target(r.sum) as total, flat_target(r.varsum) as varsum:
            moments(flat, stride, depth, n, seen, total, varsum, *self._scratch_arrays(n))
        if self._with_minmax:
            with flat_target(r.min) as lo, flat_target(r.max) as hi:
                minmax(flat, stride, depth, n, lo, hi)
        self._frames_seen[key] = seen + depth

    def postprocess(self):
        self.results.num_frames[:] = self.meta.partition_shape.nav.size

    def merge(self, dest, src):
        na = int(dest.num_frames[0])
        nb = int(src.num_frames[0])
        if nb == 0:
            return
        if na == 0:
            dest.sum[...] = src.sum
            dest.varsum[...] = src.varsum
        else:
            # difference of the means from the sums: exact for integer data (sums below 2**53)
            delta = (na * src.sum - nb * dest.sum) / (na * nb)
            dest.varsum += src.varsum + (delta.real ** 2 + delta.imag ** 2) * (na * nb / (na + nb))
            dest.sum += src.sum
        dest.num_frames[:] = na + nb
        if self._with_minmax:
            np.minimum(dest.min, src.min, out=dest.min)
            np.maximum(dest.max, src.max, out=dest.max)

    def get_results(self):
        r = self.results
        n = int(r.num_frames[0])
        with np.errstate(invalid="ignore", divide="ignore"):
            mean = r.sum / n if n else np.full_like(r.sum, np.nan)
            var = r.varsum / n if n else np.full_like(r.varsum, np.nan)
        out = {"num_frames": r.num_frames, "sum": r.sum, "varsum": r.varsum,
               "mean": mean, "var": var, "std": np.sqrt(var)}
        if self._with_minmax:
            out["min"] = r.min
            out["max"] = r.max
        return out


class StatsUDF(StdDevUDF):
    """:class:`StdDevUDF` plus the per-pixel ``min`` and ``max`` over frames (minimum and
    maximum projections, in the input dtype), in the same pass.

    Examples
    --------
    >>> import numpy as np
    >>> from udfkit import Context
    >>> from udfkit.udf import StatsUDF
    >>> data = np.arange(2 * 3 * 2 * 2, dtype="uint16").reshape(2, 3, 2, 2)
    >>> ctx = Context.make_with("inline")
    >>> res = ctx.run_udf(dataset=ctx.load("memory", data=data), udf=StatsUDF())
    >>> res["max"].data
    array([[20, 21],
           [22, 23]], dtype=uint16)
    """

    _with_minmax = True
