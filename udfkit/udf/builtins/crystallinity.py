"""``CrystallinityUDF``: how crystalline each frame is, from a ring of its Fourier spectrum."""

from __future__ import annotations

import numpy as np

from ...errors import UDFError, UDFParameterError
from ..base import UDF
from ._geometry import check_number, check_point, disk, spectrum_ring

__all__ = ["CrystallinityUDF", "run_analysis_crystall"]

_TILE_DEPTH = 16
_TILE_BYTES = 1 << 20


class CrystallinityUDF(UDF):
    """Integral of the Fourier amplitude of each frame over a ring of spatial frequencies.

    Per frame: optionally the disk of radius ``real_rad`` around ``real_center`` is set to
    zero (to leave out the zero-order peak of a diffraction pattern), then ``intensity`` (nav,
    float32) is the sum of ``abs(numpy.fft.rfft2(frame))`` over the frequencies ``k`` with
    ``rad_in < |k| <= rad_out`` (in pixels of the spectrum). As in LiberTEM, the ring is drawn
    on the half spectrum that ``rfft2`` returns (columns ``0 .. w // 2``), around the centre
    ``(h / 2, w / 2)`` of the shifted spectrum; for odd frame sizes that centre lies half a
    pixel off zero frequency. Computed in float64.

    Parameters
    ----------
    rad_in : float
        Inner radius in the spectrum; frequencies at ``|k| <= rad_in`` are left out.
    rad_out : float
        Outer radius in the spectrum.
    real_center : (float, float), optional
        ``(y, x)`` centre of the disk set to zero in the frame before the transform.
    real_rad : float, optional
        Radius of that disk (pixels at distance ``<= real_rad``). Without ``real_center``
        or ``real_rad`` nothing is set to zero.

    Examples
    --------
    >>> import numpy as np
    >>> from udfkit import Context
    >>> from udfkit.udf import CrystallinityUDF
    >>> y, x = np.indices((16, 16))
    >>> lattice = 1 + np.cos(2 * np.pi * x / 4)     # a lattice of period 4: frequency 16 / 4 = 4
    >>> data = np.stack([lattice, np.ones((16, 16))]).reshape(2, 1, 16, 16)
    >>> ctx = Context.make_with("inline")
    >>> udf = CrystallinityUDF(rad_in=3, rad_out=5, real_center=None, real_rad=None)
    >>> res = ctx.run_udf(dataset=ctx.load("memory", data=data), udf=udf)
    >>> np.round(res["intensity"].data[:, 0], 3)   # the lattice peak: 256 / 2
    array([128.,   0.], dtype=float32)
    """

    def __init__(self, rad_in=None, rad_out=None, real_center=None, real_rad=None):
        where = "CrystallinityUDF"
        r_in = check_number(rad_in, "rad_in", where, minimum=0.0)
        r_out = check_number(rad_out, "rad_out", where, minimum=0.0)
        if r_in >= r_out:
            raise UDFParameterError(f"CrystallinityUDF: rad_in ({rad_in!r}) must be less than rad_out "
                           f"({rad_out!r}); the ring holds rad_in < |k| <= rad_out")
        check_point(real_center, "real_center", where, allow_none=True)
        check_number(real_rad, "real_rad", where, allow_none=True, minimum=0.0)
        super().__init__(rad_in=rad_in, rad_out=rad_out, real_center=real_center,
                         real_rad=real_rad)

    def _masks(self):
        sig = self.meta.dataset_shape.sig
        where = "CrystallinityUDF"
        if sig.dims != 2:
            raise UDFError(f"{where} needs 2D frames; the data set has sig shape {sig.to_tuple()}")
        if self.meta.dataset_dtype.kind == "c":
            raise UDFError(f"{where} needs real data; the data set is {self.meta.dataset_dtype}")
        shape = sig.to_tuple()
        p = self.params
        spectrum = spectrum_ring(shape, float(p.rad_in), float(p.rad_out))
        if not spectrum.any():
            raise UDFError(f"{where}: the ring rad_in={p.rad_in} < |k| <= rad_out={p.rad_out} holds "
                           f"no frequency of the spectrum of a {shape} frame")
        keep = None
        if p.real_center is not None and p.real_rad is not None:
            cy, cx = check_point(p.real_center, "real_center", where)
            keep = (~disk(shape, cy, cx, float(p.real_rad))).astype(np.float64)
        return keep, spectrum

    def get_result_buffers(self):
        self._masks()  # bad geometry fails before any data is read
        return {"intensity": self.buffer(kind="nav", dtype="float32")}

    def get_tiling_preferences(self):
        # the transform needs whole frames; a few at a time keep the spectra in the cache
        return {"whole_frames": True, "depth": _TILE_DEPTH, "total_size": _TILE_BYTES}

    def get_task_data(self):
        keep, spectrum = self._masks()
        return {"keep": keep, "spectrum": np.flatnonzero(spectrum)}

    def process_tile(self, tile):
        # scipy's FFT takes a stack of frames 2-3x faster than numpy's (which is slower on a
        # stack than frame by frame); one thread, as the executor plans for
        from scipy import fft

        frames = tile.astype(np.float64)
        if self.task_data.keep is not None:
            frames *= self.task_data.keep
        spectra = fft.rfft2(frames, axes=(-2, -1), overwrite_x=True)
        picked = spectra.reshape(spectra.shape[0], -1)[:, self.task_data.spectrum]
        self.results.intensity[:] = np.abs(picked).sum(axis=1)


def run_analysis_crystall(ctx, dataset, rad_in, rad_out, real_center=None, real_rad=None,
                          roi=None, progress=False):
    """Run :class:`CrystallinityUDF` on ``dataset``; LiberTEM's helper of the same name.

    Parameters
    ----------
    ctx : udfkit.Context
    dataset : DataSet
    rad_in, rad_out : float
        Radii of the ring in the spectrum.
    real_center : (float, float), optional
        ``(y, x)`` centre of the disk set to zero in real space.
    real_rad : float, optional
        Its radius.
    roi : array_like, optional
    progress : bool

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
    >>> run_analysis_crystall(ctx, ds, rad_in=1, rad_out=3)["intensity"].data
    array([[0., 0.],
           [0., 0.]], dtype=float32)
    """
    udf = CrystallinityUDF(rad_in=rad_in, rad_out=rad_out, real_center=real_center,
                           real_rad=real_rad)
    return ctx.run_udf(dataset=dataset, udf=udf, roi=roi, progress=progress)
