"""``SumUDF`` (sum over frames) and ``SumSigUDF`` (sum over the signal of each frame)."""

from __future__ import annotations

import sys

import numpy as np

from ...errors import UDFError
from ..base import UDF
from ._dtypes import accumulator_dtype, kernel_input_dtype
from ._sparse import as_csr, column_sums, is_sparse, row_sums
from ._targets import flat_target

__all__ = ["SumUDF", "SumSigUDF", "run_sumsig", "COLD_PARTITION_ITEMS"]

_KERNELS = "udfkit.udf.builtins._kernels"
#: SumUDF sums the tiles of a partition of at most this many elements with numpy while the
#: numba kernels are not loaded in its process (importing numba and loading a kernel cost
#: about a second; numpy sums 4 Mi elements in a few milliseconds)
COLD_PARTITION_ITEMS = 1 << 22


def _small(partition_shape) -> bool:
    return partition_shape is not None and partition_shape.size <= COLD_PARTITION_ITEMS


def _sum_frames_numpy(tile, flat) -> None:
    """What :func:`._kernels.sum_frames` does, with numpy and bit for bit: the frames added in
    fours, ``acc += (f0 + f1) + (f2 + f3)``, then one by one, in the accumulator's dtype
    (a reduction along the first axis adds its rows in order), so that a result does not
    depend on whether its process had loaded numba."""
    rows = tile.reshape(tile.shape[0], -1)
    depth = rows.shape[0]
    k = depth - depth % 4
    parts = [flat[None]]
    if k:
        quads = rows[:k].astype(flat.dtype).reshape(k // 4, 4, -1)
        parts.append((quads[:, 0] + quads[:, 1]) + (quads[:, 2] + quads[:, 3]))
    if k < depth:
        parts.append(rows[k:].astype(flat.dtype))
    flat[...] = np.add.reduce(np.concatenate(parts), axis=0)


class _NativeSum(UDF):
    """What both sums share: a ``dtype`` parameter and the stored dtype as input."""

    #: work proportional to the bytes read (a small run may go to the main process, see
    #: :func:`udfkit.udf.plan.plan_run`)
    COST = "streaming"

    def __init__(self, dtype="float64"):
        try:
            kind = np.dtype(dtype).kind
        except TypeError:
            kind = None
        if kind is None or kind not in "biufc":
            raise UDFError(f"{type(self).__name__}: dtype must be a numeric numpy dtype such as "
                           f"'float64', 'float32' or 'int64', got {dtype!r}")
        super().__init__(dtype=dtype)

    def get_preferred_input_dtype(self):
        return kernel_input_dtype(self.meta)

    def get_backends(self):
        # CSR first: a raw_csr data set hands its rows over as they are (a sum over the
        # stored entries only); dense data sets give numpy, which needs no conversion
        return (self.BACKEND_SCIPY_CSR, self.BACKEND_NUMPY)

    def _sum_dtype(self):
        requested = np.dtype(self.params.dtype)
        if requested.kind in "biu":
            # an integer sum, as LiberTEM computes it for an integer dtype; widened to 64 bits
            # so that it does not wrap around (float data still promote to float)
            dt = np.result_type(self.meta.input_dtype, requested)
            if dt.kind in "bi":
                return np.dtype(np.int64)
            if dt.kind == "u":
                return np.dtype(np.uint64)
            return accumulator_dtype(dt)
        return accumulator_dtype(self.meta.input_dtype, requested)


class SumUDF(_NativeSum):
    """Sum of all frames: one sig-shaped result, ``intensity``.

    The stored data are read as they are (no conversion to float first) and summed in a
    numba kernel into a float64 buffer, so integer data are summed exactly. Sparse data
    (``raw_csr``) arrive as CSR row blocks and only their stored entries are added.

    Parameters
    ----------
    dtype : dtype, optional
        Dtype of the sum, promoted with the data's dtype (:func:`numpy.result_type`, as in
        LiberTEM): default float64 (LiberTEM's default is float32; float64 keeps integer sums
        exact up to 2**53); ``"float32"`` halves the result size at the cost of precision;
        an integer dtype sums integer data exactly in 64-bit integers.

    Examples
    --------
    >>> import numpy as np
    >>> from udfkit import Context
    >>> from udfkit.udf import SumUDF
    >>> data = np.arange(2 * 3 * 4 * 4, dtype="uint16").reshape(2, 3, 4, 4)
    >>> ctx = Context.make_with("inline")
    >>> ds = ctx.load("memory", data=data)
    >>> res = ctx.run_udf(dataset=ds, udf=SumUDF())
    >>> np.array_equal(res["intensity"].data, data.sum(axis=(0, 1)))
    True
    """

    def get_result_buffers(self):
        return {"intensity": self.buffer(kind="sig", dtype=self._sum_dtype())}

    def process_tile(self, tile):
        acc = self.results.intensity
        if is_sparse(tile):
            with flat_target(acc) as flat:
                column_sums(as_csr(tile), flat)
            return
        if acc.dtype.kind in "iu":
            acc += tile.sum(axis=0, dtype=acc.dtype)
            return
        if (_KERNELS not in sys.modules and _small(self.meta.partition_shape)
                and np.can_cast(tile.dtype, acc.dtype)):
            # a process that has not loaded numba yet (the main process of a small run, see
            # udfkit.udf.plan) would pay about a second for it: numpy sums a small partition
            # in a few milliseconds (a large one loads the kernel, which then serves every
            # later run of the process), in the kernel's order of additions
            with flat_target(acc) as flat:
                _sum_frames_numpy(tile, flat)
            return
        from ._kernels import SMALL_INT_DEPTH, as_rows, sum_frames, sum_frames_small_int

        with flat_target(acc) as flat:
            if tile.dtype.kind in "iu" and tile.dtype.itemsize <= 2 and acc.dtype.kind == "f":
                # exact int32 partial sums per tile (see the kernel), in runs of frames that
                # int32 holds
                for i in range(0, tile.shape[0], SMALL_INT_DEPTH):
                    part = tile[i:i + SMALL_INT_DEPTH]
                    flat_rows, stride, depth, n = as_rows(part)
                    sum_frames_small_int(flat_rows, stride, depth, n, flat,
                                         self._int_scratch(n))
                return
            sum_frames(*as_rows(tile), flat)

    def _int_scratch(self, n):
        """An int32 array of at least ``n`` elements, reused across this UDF's tiles."""
        scratch = self.__dict__.get("_scratch")
        if scratch is None or scratch.shape[0] < n:
            scratch = self._scratch = np.empty(n, np.int32)
        return scratch

    def merge(self, dest, src):
        dest.intensity += src.intensity


class SumSigUDF(_NativeSum):
    """Sum over the signal of every frame: one nav-shaped result, ``intensity``.

    Parameters
    ----------
    dtype : dtype, optional
        Dtype of the sums, promoted with the data's dtype (default float64; LiberTEM's
        SumSigUDF has no such parameter and sums in float32 or wider); an integer dtype
        sums integer data exactly in 64-bit integers.

    Examples
    --------
    >>> import numpy as np
    >>> from udfkit import Context
    >>> from udfkit.udf import SumSigUDF
    >>> data = np.arange(2 * 3 * 4 * 4, dtype="uint16").reshape(2, 3, 4, 4)
    >>> ctx = Context.make_with("inline")
    >>> ds = ctx.load("memory", data=data)
    >>> ctx.run_udf(dataset=ds, udf=SumSigUDF())["intensity"].data
    array([[ 120.,  376.,  632.],
           [ 888., 1144., 1400.]])
    """

    def get_result_buffers(self):
        return {"intensity": self.buffer(kind="nav", dtype=self._sum_dtype())}

    def process_tile(self, tile):
        out = self.results.intensity
        if is_sparse(tile):
            row_sums(as_csr(tile), out)
            return
        if out.dtype.kind in "iu":
            out += tile.reshape(tile.shape[0], -1).sum(axis=1, dtype=out.dtype)
            return
        from ._kernels import as_rows, sum_signal

        # the nav view covers exactly the tile's frames and is contiguous
        sum_signal(*as_rows(tile), out)


def run_sumsig(ctx, dataset, roi=None, progress=False):
    """Run :class:`SumSigUDF` on ``dataset`` (LiberTEM's helper of the same name).

    Returns
    -------
    dict
        ``{"intensity": BufferResult}``, as ``ctx.run_udf`` returns it.

    Examples
    --------
    >>> import numpy as np
    >>> from udfkit import Context
    >>> ctx = Context.make_with("inline")
    >>> ds = ctx.load("memory", data=np.ones((2, 2, 3, 3), dtype="uint8"))
    >>> run_sumsig(ctx, ds)["intensity"].data
    array([[9., 9.],
           [9., 9.]])
    """
    return ctx.run_udf(dataset=dataset, udf=SumSigUDF(), roi=roi, progress=progress)
