"""Thunder's image operations written directly with numpy/scipy, one frame at a time, after
Thunder's definitions (``thunder/images/images.py``): the references of the image built-ins'
tests."""

from __future__ import annotations

import itertools

import numpy as np
from scipy import ndimage


def _sizes(size, ndim):
    return list(size) if isinstance(size, (tuple, list)) else [size] * ndim


def size_filter(func, frame, size, **kw):
    """Thunder's ``_image_filter``: ``func(frame, size)``; where a size is 0, the filter of the
    other sizes is applied to each slice along that axis separately (Thunder's per-plane rule
    for ``size[2] == 0``, on any axis)."""
    sizes = _sizes(size, frame.ndim)
    zero = [i for i, s in enumerate(sizes) if s == 0]
    if not zero:
        return func(frame, sizes, **kw)
    keep = [i for i in range(frame.ndim) if i not in zero]
    out = np.empty_like(frame)
    if not keep:
        out[...] = frame
        return out
    for index in itertools.product(*[range(frame.shape[i]) for i in zero]):
        sel = [slice(None)] * frame.ndim
        for axis, i in zip(zero, index):
            sel[axis] = i
        out[tuple(sel)] = func(frame[tuple(sel)], [sizes[i] for i in keep], **kw)
    return out


def filtered(kind, frames, params):
    """``frames`` (already in the UDF's input dtype) filtered one by one."""
    mode = params.get("mode", "reflect")
    cval = params.get("cval", 0.0)
    if kind == "gaussian":
        return np.stack([ndimage.gaussian_filter(f, params["sigma"], params.get("order", 0),
                                                 mode=mode, cval=cval,
                                                 truncate=params.get("truncate", 4.0))
                         for f in frames]) if len(frames) else frames.copy()
    func = ndimage.uniform_filter if kind == "uniform" else ndimage.median_filter
    return np.stack([size_filter(func, f, params["size"], mode=mode, cval=cval)
                     for f in frames]) if len(frames) else frames.copy()


def subsample(frames, factor):
    """Thunder's ``subsample``: ``v[::f0, ::f1, ...]``."""
    f = _sizes(factor, frames.ndim - 1)
    return frames[(slice(None),) + tuple(slice(0, None, s) for s in f)]


def binned(frames, factor, reduce, edge):
    """Sums (or means) of blocks via ``np.add.reduceat`` per axis, in float64 / int64."""
    sig = frames.shape[1:]
    f = _sizes(factor, len(sig))
    wide = np.float64 if frames.dtype.kind in "fc" else np.int64
    if frames.dtype.kind == "c":
        wide = np.complex128
    sums = frames.astype(wide)
    counts = np.ones(sig, np.int64)
    for axis, (n, s) in enumerate(zip(sig, f)):
        starts = np.arange(0, n, s)
        sums = np.add.reduceat(sums, starts, axis=axis + 1)
        counts = np.add.reduceat(counts, starts, axis=axis)
        if edge == "trim" and n % s:
            sums = np.delete(sums, -1, axis=axis + 1)
            counts = np.delete(counts, -1, axis=axis)
    return sums if reduce == "sum" else sums / counts


def localcorr(frames, size, mode="reflect"):
    """Thunder's ``localcorr``: per pixel, ``corrcoef(x, uniform_filter(x, size))[0, 1]``
    over frames; NaN where either series is constant (or fewer than two frames)."""
    sig = frames.shape[1:]
    x = frames.astype(np.float64)
    n = x.shape[0]
    if n == 0:
        return np.full(sig, np.nan)
    y = np.stack([size_filter(ndimage.uniform_filter, f, size, mode=mode) for f in x])
    xm = x - x.mean(axis=0)
    ym = y - y.mean(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        corr = (xm * ym).sum(0) / np.sqrt((xm * xm).sum(0) * (ym * ym).sum(0))
    constant = (np.ptp(x, axis=0) == 0) | (np.ptp(y, axis=0) == 0)
    return np.where(constant, np.nan, corr)


def localcorr_thunder(frames, size):
    """Thunder's own loop on a small stack: ``corrcoef`` per pixel (slow; for the fixture)."""
    blurred = np.stack([size_filter(ndimage.uniform_filter, f, size) for f in frames])
    out = np.empty(frames.shape[1:])
    with np.errstate(invalid="ignore", divide="ignore"):  # constant pixels: NaN, as Thunder
        for idx in np.ndindex(*frames.shape[1:]):
            sel = (slice(None),) + idx
            out[idx] = np.corrcoef(blurred[sel], frames[sel])[0, 1]
    return out
