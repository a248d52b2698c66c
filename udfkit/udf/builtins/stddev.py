"""``StdDevUDF`` (per-pixel mean, variance and standard deviation over frames) and
``StatsUDF`` (the same plus minimum and maximum), in one pass.

Numerics
--------
Each tile's moments are computed about a per-pixel shift (the tile's first frame) and
folded into the partition's running ``sum`` and ``varsum`` (sum of squared deviations)
with the pairwise update of Chan, Golub and LeVeque; partitions are merged the same way on
the main process. Integer data stay exact within a tile, and data with a large offset
(1e6 + noise in float32) lose nothing to cancellation, unlike the textbook
``E[x**2] - E[x]**2``. 8- and 16-bit integer tiles need no shift: their sums of ``x`` and
``x**2`` are exact integers (int32 and float64 below 2**53), and so is the tile's
``depth * M2 = depth * sum(x**2) - sum(x)**2`` (:func:`~._kernels.moments_small_int`). Sparse tiles (``raw_csr``) are reduced to per-pixel sums of ``x``
and ``|x|**2`` over their stored entries, in float64, and folded in the same way.
"""

from __future__ import annotations

import numpy as np

from ...errors import UDFError
from ..base import UDF
from ._dtypes import extreme_values, kernel_input_dtype
from ._sparse import as_csr, column_sums, is_sparse
from ._targets import flat_target

__all__ = ["StdDevUDF", "StatsUDF", "run_stddev", "consolidate_result"]

#: tiles of at most this many pixels per frame keep the five per-pixel float64 arrays of the
#: kernel (running sum and varsum, shift and the tile's two sums) in the core's L2 cache
_TILE_PIXELS = 16384
#: 64 frames per tile: the per-tile merge into the running moments costs about as much per
#: pixel as 8 frames; measured here (8/16-bit kernel, one thread, CPU time) 7.4-7.8 GB/s at
#: depth 32, 8.0-8.8 at 64
_TILE_DEPTH = 64


class StdDevUDF(UDF):
    """Per-pixel statistics over all (selected) frames, in one pass.

    Results (sig-shaped unless noted): ``sum``, ``mean``, ``var`` (population variance,
    ``ddof=0`` like :func:`numpy.var`), ``std``, ``varsum`` (sum of squared deviations from
    the mean) and ``num_frames`` (a single value). All are float64 (complex128 for ``sum``
    and ``mean`` of complex data) unless ``dtype`` says otherwise.

    Parameters
    ----------
    dtype : dtype, optional
        Float dtype of the computation (LiberTEM's parameter): ``varsum``, ``var`` and
        ``std`` have this dtype, ``sum`` and ``mean`` ``result_type(input dtype, dtype)``.
        Default float64.
    use_numba : bool
        ``True`` (default): the numba kernel; ``False``: the same one-pass algorithm with
        numpy operations (same numbers up to rounding, slower; useful where numba is not
        wanted).

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

    def __init__(self, dtype=None, use_numba=True):
        if dtype is not None:
            try:
                kind = np.dtype(dtype).kind
            except TypeError:
                kind = None
            if kind != "f":
                raise UDFError(f"{type(self).__name__}: dtype must be a float dtype such as 'float64' "
                               f"or 'float32' (or None for float64), got {dtype!r}")
        if not isinstance(use_numba, (bool, np.bool_)):
            raise UDFError(f"{type(self).__name__}: use_numba must be True or False, got {use_numba!r}")
        super().__init__(dtype=dtype, use_numba=bool(use_numba))

    def get_preferred_input_dtype(self):
        return kernel_input_dtype(self.meta)

    def get_backends(self):
        # sparse tiles: the moments from the stored entries only (see _moments_sparse);
        # StatsUDF's minimum and maximum need every pixel, so it takes numpy only
        if self._with_minmax:
            return (self.BACKEND_NUMPY,)
        return (self.BACKEND_SCIPY_CSR, self.BACKEND_NUMPY)

    def get_tiling_preferences(self):
        itemsize = self.meta.input_dtype.itemsize if self.meta is not None else 4
        return {"depth": _TILE_DEPTH, "total_size": _TILE_DEPTH * _TILE_PIXELS * itemsize}

    def _base_dtype(self):
        return np.dtype(np.float64 if self.params.dtype is None else self.params.dtype)

    def _sum_dtype(self):
        return np.result_type(self.meta.input_dtype, self._base_dtype())

    def get_result_buffers(self):
        sum_dtype = self._sum_dtype()
        base = self._base_dtype()
        buffers = {
            "num_frames": self.buffer(kind="single", dtype=np.int64),
            "sum": self.buffer(kind="sig", dtype=sum_dtype),
            "varsum": self.buffer(kind="sig", dtype=base),
            "mean": self.buffer(kind="sig", dtype=sum_dtype, use="result_only"),
            "var": self.buffer(kind="sig", dtype=base, use="result_only"),
            "std": self.buffer(kind="sig", dtype=base, use="result_only"),
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
            self._scratch = (np.empty(n, dtype), np.empty(n, dtype), np.empty(n, self._base_dtype()))
        return tuple(a[:n] for a in self._scratch)

    def process_tile(self, tile):
        key = self.meta.sig_slice.origin
        seen = self._frames_seen.get(key, 0)
        depth = tile.shape[0]
        r = self.results
        if is_sparse(tile):
            with flat_target(r.sum) as total, flat_target(r.varsum) as varsum:
                _moments_sparse(as_csr(tile), seen, total, varsum)
            self._frames_seen[key] = seen + depth
            return
        if not self.params.use_numba:
            with flat_target(r.sum) as total, flat_target(r.varsum) as varsum:
                _moments_numpy(tile.reshape(depth, -1), seen, total, varsum)
            if self._with_minmax:
                np.minimum(r.min, tile.min(axis=0), out=r.min)
                np.maximum(r.max, tile.max(axis=0), out=r.max)
            self._frames_seen[key] = seen + depth
            return
        from ._kernels import as_rows, minmax, moments

        flat, stride, depth, n = as_rows(tile)
        with flat_target(r.sum) as total, flat_target(r.varsum) as varsum:
            if tile.dtype.kind in "iu" and tile.dtype.itemsize <= 2 \
                    and total.dtype == np.float64 and varsum.dtype == np.float64:
                self._small_int_moments(tile, seen, total, varsum)
            else:
                moments(flat, stride, depth, n, seen, total, varsum, *self._scratch_arrays(n))
        if self._with_minmax:
            with flat_target(r.min) as lo, flat_target(r.max) as hi:
                minmax(flat, stride, depth, n, lo, hi)
        self._frames_seen[key] = seen + depth

    def _small_int_moments(self, tile, seen, total, varsum):
        """8/16-bit integers: :func:`~._kernels.moments_small_int`, in runs of frames that
        keep its sums exact."""
        from ._kernels import SMALL_INT_MOMENTS_DEPTH, as_rows, moments_small_int

        for i in range(0, tile.shape[0], SMALL_INT_MOMENTS_DEPTH):
            flat, stride, depth, n = as_rows(tile[i:i + SMALL_INT_MOMENTS_DEPTH])
            scratch = self.__dict__.get("_int_scratch")
            if scratch is None or scratch[0].shape[0] < n:
                scratch = self._int_scratch = (np.empty(n, np.int32), np.empty(n, np.float64))
            moments_small_int(flat, stride, depth, n, seen + i, total, varsum, *scratch)

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


def _moments_numpy(rows, n_before, total, varsum):
    """:func:`~udfkit.udf.builtins._kernels.moments` with numpy operations (``use_numba=False``).

    ``rows`` is ``(depth, n)``; ``total`` and ``varsum`` (flat, length ``n``) hold
    ``n_before`` frames and are updated in place.
    """
    with np.errstate(invalid="ignore", over="ignore"):
        # inf and NaN in the data give inf / NaN results, as in the numba kernel, silently
        _moments_numpy_body(rows.astype(total.dtype, copy=False), n_before, total, varsum)


def _moments_numpy_body(rows, n_before, total, varsum):
    first = rows[0]
    # shift by the first frame (exact for integers, no cancellation for a large offset);
    # by 0 where it is inf or NaN, which would turn inf into NaN
    shift = np.where(np.isfinite(first), first, 0)
    d = rows - shift
    s1 = d.sum(axis=0)
    s2 = (d.real ** 2 + d.imag ** 2).sum(axis=0) if d.dtype.kind == "c" else (d * d).sum(axis=0)
    nb = float(rows.shape[0])
    m2 = s2 - (s1.real ** 2 + s1.imag ** 2) / nb
    tile_sum = shift * nb + s1
    if n_before == 0:
        total[:] = tile_sum
        varsum[:] = m2
        return
    na = float(n_before)
    # difference of the means from the sums: exact for integer data (sums below 2**53)
    delta = (na * tile_sum - nb * total) / (na * nb)
    total += tile_sum
    varsum += m2 + (delta.real ** 2 + delta.imag ** 2) * (na * nb / (na + nb))


def _moments_sparse(csr, n_before, total, varsum):
    """:func:`_moments_numpy` for a scipy CSR tile ``(depth, n)``, from its stored entries.

    The tile's sums of ``x`` and ``|x|**2`` per pixel are accumulated in float64 (exact for
    integer counts, the usual sparse data); its sum of squared deviations is then
    ``s2 - |s1|**2 / depth``. Without a shift this can lose digits to cancellation for
    data far from 0 with a small spread, which sparse data (mostly zeros) are not.
    """
    n = csr.shape[1]
    nb = float(csr.shape[0])
    s1 = column_sums(csr, np.zeros(n, np.complex128 if total.dtype.kind == "c" else np.float64))
    s2 = column_sums(csr, np.zeros(n), square=True)
    with np.errstate(invalid="ignore", over="ignore"):
        # rounding may leave a tiny negative sum of squares where all frames are equal
        m2 = np.maximum(s2 - (s1.real ** 2 + s1.imag ** 2) / nb, 0)
        if n_before == 0:
            total[:] = s1
            varsum[:] = m2
            return
        na = float(n_before)
        delta = (na * s1 - nb * total) / (na * nb)
        total += s1
        varsum += m2 + (delta.real ** 2 + delta.imag ** 2) * (na * nb / (na + nb))


def consolidate_result(udf_result) -> dict:
    """StdDevUDF's results as plain values (LiberTEM's helper of the same name).

    Parameters
    ----------
    udf_result : dict
        What ``ctx.run_udf(dataset=..., udf=StdDevUDF())`` returned.

    Returns
    -------
    dict
        ``num_frames`` as an ``int``; ``sum``, ``varsum``, ``mean``, ``var``, ``std`` as
        numpy arrays of the signal shape.
    """
    return {
        "num_frames": int(udf_result["num_frames"].data[0]),
        "varsum": udf_result["varsum"].data,
        "sum": udf_result["sum"].data,
        "var": udf_result["var"].data,
        "std": udf_result["std"].data,
        "mean": udf_result["mean"].data,
    }


def run_stddev(ctx, dataset, roi=None, progress=False, use_numba=True) -> dict:
    """Run :class:`StdDevUDF` and return :func:`consolidate_result` of it (LiberTEM's helper).

    Examples
    --------
    >>> import numpy as np
    >>> from udfkit import Context
    >>> data = np.arange(2 * 3 * 2 * 2, dtype="uint16").reshape(2, 3, 2, 2)
    >>> ctx = Context.make_with("inline")
    >>> res = run_stddev(ctx, ctx.load("memory", data=data))
    >>> res["num_frames"], bool(np.allclose(res["var"], data.reshape(6, 2, 2).var(axis=0)))
    (6, True)
    """
    udf = StdDevUDF(use_numba=use_numba)
    return consolidate_result(ctx.run_udf(dataset=dataset, udf=udf, roi=roi, progress=progress))


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
