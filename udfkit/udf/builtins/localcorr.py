"""``LocalCorrUDF``: Thunder's local correlation image (``Images.localcorr(size)``).

Definition (Thunder 1.x, ``thunder/images/images.py``)
--------------------------------------------------------
For every pixel, the Pearson correlation over frames (time) between the pixel's values ``x``
and the mean of its neighbourhood ``y``, where ``y`` is the frame blurred with
:func:`scipy.ndimage.uniform_filter` of width ``size`` (default 2; per signal axis, so a
volume gets a 3-D neighbourhood; boundary mode ``reflect``, scipy's default). The
neighbourhood includes the pixel itself. Thunder computes ``corrcoef(x, y)[0, 1]`` per pixel,
NaN where either series is constant; so does udfkit (and NaN with fewer than two frames).
Thunder blurs the stored dtype, so for integer data its ``y`` is truncated to integers;
udfkit blurs in float64.

Numerics
--------
One pass, frame-wise: each stack of frames gives per-pixel means of ``x`` and ``y`` and the
centred sums ``Sxx``, ``Syy``, ``Sxy`` (about the stack's own means, two-pass inside the
stack); stacks and partitions are combined with the pairwise formula of Chan, Golub and
LeVeque (``Sxy = Sxy_a + Sxy_b + dx * dy * na * nb / n``, the co-moment form of what
:class:`~udfkit.udf.StdDevUDF` does). Nothing cancels catastrophically for data with a large
offset, unlike ``E[xy] - E[x]E[y]``.
"""

from __future__ import annotations

import numpy as np

from ..base import UDF
from ._image_params import check_real, check_scalar_or_sequence, per_axis_ints
from .filters import _check_mode

__all__ = ["LocalCorrUDF"]

_TILE_DEPTH = 32
_TILE_BYTES = 2 << 20
_MOMENTS = ("sum_x", "sum_y", "m_xx", "m_yy", "m_xy")


def _combine(n_a, a, n_b, b):
    """Fold the moments ``b`` of ``n_b`` frames into ``a`` (``n_a`` frames), in place.

    ``a`` and ``b`` map the names ``sum_x``, ``sum_y`` (per-pixel sums) and ``m_xx``,
    ``m_yy``, ``m_xy`` (centred co-moments) to arrays.
    """
    if n_b == 0:
        return
    if n_a == 0:
        for name in _MOMENTS:
            a[name][...] = b[name]
        return
    # differences of the means from the sums: exact for integer data (sums below 2**53)
    dx = (n_a * b["sum_x"] - n_b * a["sum_x"]) / (n_a * n_b)
    dy = (n_a * b["sum_y"] - n_b * a["sum_y"]) / (n_a * n_b)
    w = n_a * n_b / (n_a + n_b)
    # np.add(..., out=): the targets are buffer views, updated in place
    np.add(a["m_xx"], b["m_xx"] + dx * dx * w, out=a["m_xx"])
    np.add(a["m_yy"], b["m_yy"] + dy * dy * w, out=a["m_yy"])
    np.add(a["m_xy"], b["m_xy"] + dx * dy * w, out=a["m_xy"])
    np.add(a["sum_x"], b["sum_x"], out=a["sum_x"])
    np.add(a["sum_y"], b["sum_y"], out=a["sum_y"])


class _Buffers:
    """``obj[name]`` for the buffers of a :class:`~udfkit.udf.UDFData`-like object."""

    def __init__(self, holder):
        self._holder = holder

    def __getitem__(self, name):
        return getattr(self._holder, name)


class LocalCorrUDF(UDF):
    """Thunder's ``localcorr(size)``: per pixel, the correlation over frames between the
    pixel and the mean of its ``size``-wide neighbourhood.

    Results (sig-shaped, float64): ``localcorr`` (the image; NaN where the pixel or its
    neighbourhood is constant over the frames), and the moments it is made of: ``sum_x`` and
    ``sum_y`` (per-pixel sums of the frames and of the blurred frames), ``m_xx``, ``m_yy``,
    ``m_xy`` (centred sums of squares and products); ``num_frames`` (a single value).

    Parameters
    ----------
    size : int or sequence of int
        Width of the neighbourhood in pixels (:func:`scipy.ndimage.uniform_filter`'s
        ``size``), for every signal axis or one per axis; default 2, Thunder's. 0 or 1
        leaves an axis out of the neighbourhood.
    mode : str
        Boundary mode of the blur (default ``"reflect"``, what Thunder uses).

    Examples
    --------
    >>> import numpy as np
    >>> from scipy import ndimage
    >>> from udfkit import Context
    >>> from udfkit.udf import LocalCorrUDF
    >>> data = np.random.default_rng(1).random((50, 8, 9))
    >>> ctx = Context.make_with("inline")
    >>> res = ctx.run_udf(dataset=ctx.load("memory", data=data), udf=LocalCorrUDF(size=3))
    >>> blurred = ndimage.uniform_filter(data, size=(1, 3, 3))
    >>> want = [np.corrcoef(data[:, i, j], blurred[:, i, j])[0, 1]
    ...         for i in range(8) for j in range(9)]
    >>> bool(np.allclose(res["localcorr"].data.ravel(), want))
    True
    """

    def __init__(self, size=2, mode="reflect"):
        check_scalar_or_sequence("LocalCorrUDF", "size", size)
        _check_mode("LocalCorrUDF", mode, 0.0)
        super().__init__(size=size, mode=mode)

    def _sizes(self, sig_shape):
        sizes = per_axis_ints("LocalCorrUDF", "size", self.params.size, sig_shape, minimum=0)
        return (1,) + tuple(max(s, 1) for s in sizes)

    def get_preferred_input_dtype(self):
        # the blur and the moments in float64: a float32 blur of int16 frames would round
        return np.float64

    def get_tiling_preferences(self):
        return {"whole_frames": True, "depth": _TILE_DEPTH, "total_size": _TILE_BYTES}

    def get_result_buffers(self):
        sig = self.meta.dataset_shape.sig.to_tuple()
        self._sizes(sig)
        check_real("LocalCorrUDF", self.meta.input_dtype, "the correlation")
        buffers = {"num_frames": self.buffer(kind="single", dtype=np.int64)}
        for name in _MOMENTS:
            buffers[name] = self.buffer(kind="sig", dtype=np.float64)
        buffers["localcorr"] = self.buffer(kind="sig", dtype=np.float64, use="result_only")
        return buffers

    def process_tile(self, tile):
        from scipy import ndimage

        x = np.asarray(tile, dtype=np.float64)
        y = ndimage.uniform_filter(x, self._sizes(x.shape[1:]), mode=self.params.mode)
        k = x.shape[0]
        # this stack's moments about its own means (two-pass: exact centring)
        sx = x.sum(axis=0)
        sy = y.sum(axis=0)
        dx = x - sx / k
        dy = y - sy / k
        stack = {"sum_x": sx, "sum_y": sy, "m_xx": np.einsum("i...,i...->...", dx, dx),
                 "m_yy": np.einsum("i...,i...->...", dy, dy),
                 "m_xy": np.einsum("i...,i...->...", dx, dy)}
        r = self.results
        n = int(r.num_frames[0])
        _combine(n, _Buffers(r), k, stack)
        r.num_frames[:] = n + k

    def merge(self, dest, src):
        na = int(dest.num_frames[0])
        nb = int(src.num_frames[0])
        _combine(na, _Buffers(dest), nb, _Buffers(src))
        dest.num_frames[:] = na + nb

    def get_results(self):
        r = self.results
        n = int(r.num_frames[0])
        with np.errstate(invalid="ignore", divide="ignore"):
            corr = r.m_xy / np.sqrt(r.m_xx * r.m_yy)
        # a constant series (zero spread) has no correlation: NaN, as numpy.corrcoef gives;
        # rounding can leave a tiny non-zero spread, so compare with the data's scale
        scale_x = np.abs(r.sum_x) / max(n, 1)
        scale_y = np.abs(r.sum_y) / max(n, 1)
        flat = (r.m_xx <= (1e-13 * scale_x) ** 2 * n) | (r.m_yy <= (1e-13 * scale_y) ** 2 * n)
        corr = np.where(flat | (n < 2), np.nan, np.clip(corr, -1.0, 1.0))
        out = {name: getattr(r, name) for name in _MOMENTS}
        out["num_frames"] = r.num_frames
        out["localcorr"] = corr
        return out
