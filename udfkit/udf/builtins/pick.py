"""``PickUDF``: the frames at the selected positions, in their stored dtype."""

from __future__ import annotations

import warnings

import numpy as np

from ...errors import UdfkitWarning
from ..base import UDF
from ._sparse import is_sparse, to_dense

__all__ = ["PickUDF"]

_WARN_BYTES = 1 << 30


class PickUDF(UDF):
    """Collect whole frames; meant for a small ROI.

    The result ``intensity`` has shape ``(n_selected, *sig_shape)``: the selected frames in
    flattened nav order, in the stored dtype (native byte order). Without a ROI every frame
    is picked, which holds the whole data set in memory; a warning is issued above 1 GiB.

    Examples
    --------
    >>> import numpy as np
    >>> from udfkit import Context
    >>> from udfkit.udf import PickUDF
    >>> data = np.arange(3 * 4 * 2 * 2, dtype="uint16").reshape(3, 4, 2, 2)
    >>> roi = np.zeros((3, 4), dtype=bool)
    >>> roi[1, 2] = True
    >>> ctx = Context.make_with("inline")
    >>> ctx.run_udf(dataset=ctx.load("memory", data=data), udf=PickUDF(), roi=roi)["intensity"].data
    array([[[24, 25],
            [26, 27]]], dtype=uint16)
    """

    def __init__(self):
        super().__init__()

    def get_preferred_input_dtype(self):
        return self.USE_NATIVE_DTYPE

    def get_tiling_preferences(self):
        return {"whole_frames": True}

    def get_backends(self):
        # on raw_csr the rows arrive as stored and are densified straight into the result
        return (self.BACKEND_SCIPY_CSR, self.BACKEND_NUMPY)

    def get_result_buffers(self):
        meta = self.meta
        sig = meta.dataset_shape.sig.to_tuple()
        n = meta.dataset_shape.nav.size if meta.roi is None else int(np.count_nonzero(meta.roi))
        dtype = meta.input_dtype
        nbytes = n * meta.dataset_shape.sig.size * dtype.itemsize
        if meta.partition_shape is None and nbytes > _WARN_BYTES:
            warnings.warn(f"PickUDF will hold {n} frames ({nbytes / 2**30:.1f} GiB) in memory; "
                          "pass a ROI to pick fewer", UdfkitWarning, stacklevel=2)
        return {
            # nav buffer: each partition fills its own rows, merged by the default merge;
            # private, so that only "intensity" is returned (public ones pass through)
            "frames": self.buffer(kind="nav", extra_shape=sig, dtype=dtype, use="private"),
            "intensity": self.buffer(kind="single", extra_shape=(n,) + sig, dtype=dtype,
                                     use="result_only"),
        }

    def process_tile(self, tile):
        target = self.results.frames[(slice(None),) + self.meta.sig_slice.get()]
        target[...] = to_dense(tile, target.shape) if is_sparse(tile) else tile

    def get_results(self):
        return {"intensity": self.results.frames}
