"""``LogsumUDF``: sum of log-scaled frames."""

from __future__ import annotations

import numpy as np

from ...errors import UDFError
from ..base import UDF
from ._dtypes import kernel_input_dtype
from ._targets import flat_target

__all__ = ["LogsumUDF", "run_logsum"]


class LogsumUDF(UDF):
    """Sum over frames of ``log(frame - min(frame) + 1)``: sig-shaped result ``logsum``.

    Compared with the logarithm of the sum, this brings out features that are weak but
    present in many frames next to strong features in a few. Tiles hold whole frames
    (the minimum is per frame); computed in float64.

    Examples
    --------
    >>> import numpy as np
    >>> from udfkit import Context
    >>> from udfkit.udf import LogsumUDF
    >>> data = np.random.default_rng(0).integers(0, 100, (3, 4, 8, 8)).astype("uint16")
    >>> ctx = Context.make_with("inline")
    >>> res = ctx.run_udf(dataset=ctx.load("memory", data=data), udf=LogsumUDF())
    >>> frames = data.reshape(-1, 8, 8).astype("float64")
    >>> ref = np.log(frames - frames.min(axis=(1, 2), keepdims=True) + 1).sum(axis=0)
    >>> np.allclose(res["logsum"].data, ref)
    True
    """

    def __init__(self):
        super().__init__()

    def get_preferred_input_dtype(self):
        return kernel_input_dtype(self.meta)

    def get_tiling_preferences(self):
        return {"whole_frames": True}

    def get_result_buffers(self):
        if self.meta.input_dtype.kind == "c":
            raise UDFError(f"LogsumUDF: the logarithm of complex frames is not defined here "
                           f"(input dtype {self.meta.input_dtype}); apply np.abs first with a MapUDF")
        return {"logsum": self.buffer(kind="sig", dtype=np.float64)}

    def preprocess(self):
        dtype = self.meta.input_dtype
        # 8/16-bit integers: frame - min(frame) takes at most 65536 values, so log is a lookup
        self._table = (np.log1p(np.arange(1 << (8 * dtype.itemsize), dtype=np.float64))
                       if dtype.kind in "iu" and dtype.itemsize <= 2 else None)

    def process_tile(self, tile):
        from ._kernels import as_rows, logsum, logsum_table

        with flat_target(self.results.logsum) as acc:
            if self._table is not None:
                logsum_table(*as_rows(tile), self._table, acc)
            else:
                logsum(*as_rows(tile), acc)

    def merge(self, dest, src):
        dest.logsum += src.logsum


def run_logsum(ctx, dataset, roi=None):
    """Run :class:`LogsumUDF` on ``dataset`` (LiberTEM's helper of the same name).

    Returns
    -------
    dict
        ``{"logsum": BufferResult}``, as ``ctx.run_udf`` returns it.

    Examples
    --------
    >>> import numpy as np
    >>> from udfkit import Context
    >>> ctx = Context.make_with("inline")
    >>> ds = ctx.load("memory", data=np.ones((2, 2, 3, 3), dtype="uint8"))
    >>> float(run_logsum(ctx, ds)["logsum"].data.sum())
    0.0
    """
    return ctx.run_udf(dataset=dataset, udf=LogsumUDF(), roi=roi)
