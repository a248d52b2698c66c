"""``FEMUDF``: fluctuation electron microscopy, the spread of intensity in a ring of each frame."""

from __future__ import annotations

import numpy as np

from ...errors import UDFError, UDFParameterError
from ..base import UDF
from ._geometry import check_number, check_point, ring

__all__ = ["FEMUDF", "run_fem"]

_TILE_DEPTH = 64
_TILE_BYTES = 4 << 20


class FEMUDF(UDF):
    """Standard deviation of the intensity in a ring of each frame (fluctuation EM, Gibson 1997).

    Result ``intensity`` (nav, float32): ``numpy.std`` (``ddof=0``) of the pixels of the
    frame at distance ``d`` from ``center`` with ``rad_in < d <= rad_out`` (pixel ``(i, j)``
    at its centre ``(i, j)``), computed in float64.

    Parameters
    ----------
    center : (float, float)
        Centre of the ring as ``(y, x)``. (LiberTEM's docstring says ``(x, y)``, but its code,
        and so its numbers, use the first value as the row; udfkit does the same.)
    rad_in : float
        Inner radius; pixels at distance ``<= rad_in`` are left out.
    rad_out : float
        Outer radius; pixels at distance ``<= rad_out`` are taken.

    Examples
    --------
    >>> import numpy as np
    >>> from udfkit import Context
    >>> from udfkit.udf import FEMUDF
    >>> data = np.random.default_rng(0).poisson(4, (2, 3, 16, 16)).astype("uint16")
    >>> ctx = Context.make_with("inline")
    >>> res = ctx.run_udf(dataset=ctx.load("memory", data=data),
    ...                   udf=FEMUDF(center=(8, 8), rad_in=4, rad_out=6))
    >>> res["intensity"].data.shape
    (2, 3)
    >>> y, x = np.indices((16, 16))
    >>> d = np.hypot(y - 8, x - 8)
    >>> ring = (d > 4) & (d <= 6)
    >>> bool(np.allclose(res["intensity"].data, data[..., ring].std(axis=-1)))
    True
    """

    def __init__(self, center=None, rad_in=None, rad_out=None):
        where = "FEMUDF"
        check_point(center, "center", where)
        r_in = check_number(rad_in, "rad_in", where, minimum=0.0)
        r_out = check_number(rad_out, "rad_out", where, minimum=0.0)
        if r_in >= r_out:
            raise UDFParameterError(f"FEMUDF: rad_in ({rad_in!r}) must be less than rad_out ({rad_out!r}); "
                           "the ring holds the pixels with rad_in < distance <= rad_out")
        super().__init__(center=center, rad_in=rad_in, rad_out=rad_out)

    def _ring(self) -> np.ndarray:
        sig = self.meta.dataset_shape.sig
        if sig.dims != 2:
            raise UDFError(f"FEMUDF needs 2D frames; the data set has sig shape {sig.to_tuple()}")
        if self.meta.dataset_dtype.kind == "c":
            raise UDFError(f"FEMUDF needs real data; the data set is {self.meta.dataset_dtype}")
        cy, cx = check_point(self.params.center, "center", "FEMUDF")
        mask = ring(sig.to_tuple(), cy, cx, float(self.params.rad_out), float(self.params.rad_in))
        if not mask.any():
            raise UDFError(f"FEMUDF: the ring around center {tuple(self.params.center)} with "
                           f"rad_in={self.params.rad_in}, rad_out={self.params.rad_out} holds no "
                           f"pixel of the {sig.to_tuple()} frame")
        return mask

    def get_result_buffers(self):
        self._ring()  # bad geometry fails before any data is read
        return {"intensity": self.buffer(kind="nav", dtype="float32")}

    def get_tiling_preferences(self):
        # the spread needs every ring pixel of a frame at once
        return {"whole_frames": True, "depth": _TILE_DEPTH, "total_size": _TILE_BYTES}

    def get_task_data(self):
        return {"pixels": np.flatnonzero(self._ring())}

    def process_tile(self, tile):
        values = tile.reshape(tile.shape[0], -1)[:, self.task_data.pixels]
        self.results.intensity[:] = values.astype(np.float64).std(axis=1)


def run_fem(ctx, dataset, center, rad_in, rad_out, roi=None):
    """Run :class:`FEMUDF` on ``dataset``; LiberTEM's helper of the same name.

    Parameters
    ----------
    ctx : udfkit.Context
    dataset : DataSet
    center : (float, float)
        ``(y, x)`` centre of the ring.
    rad_in, rad_out : float
        Radii of the ring.
    roi : array_like, optional

    Returns
    -------
    dict
        The results of the run; ``["intensity"].data`` is the nav-shaped array.

    Examples
    --------
    >>> import numpy as np
    >>> from udfkit import Context
    >>> ctx = Context.make_with("inline")
    >>> ds = ctx.load("memory", data=np.ones((2, 2, 8, 8)))
    >>> run_fem(ctx, ds, center=(4, 4), rad_in=1, rad_out=3)["intensity"].data
    array([[0., 0.],
           [0., 0.]], dtype=float32)
    """
    udf = FEMUDF(center=center, rad_in=rad_in, rad_out=rad_out)
    return ctx.run_udf(dataset=dataset, udf=udf, roi=roi)
