"""Detector corrections: dark frame, gain map and excluded (dead or hot) pixels.

A :class:`CorrectionSet` passed to ``Context.run_udf(..., corrections=...)`` is applied to
every frame before any UDF of the run sees it. The rules:

1. **Arithmetic.** ``corrected = (raw - dark) * gain``, pixel by pixel; a missing ``dark``
   counts as 0, a missing ``gain`` as 1. It is computed in the UDF's input dtype, which is
   promoted to at least ``float32`` when corrections are given (``float64`` stays
   ``float64``, complex stays complex; a UDF that asks for the native dtype of ``uint16``
   data gets ``float32``).
2. **Excluded pixels** are then replaced, frame by frame, by the mean of their *valid
   neighbours*: the pixels of the box of radius ``r`` around the pixel (``3 × 3`` for a 2D
   signal, ``3`` for 1D, ``3 × 3 × 3`` for 3D when ``r = 1``; all signal axes) that lie
   inside the frame and are not excluded, where ``r`` is the smallest radius ``>= 1`` for
   which the box holds at least one such pixel (a cluster of excluded pixels grows the box
   to ``5 × 5``, ``7 × 7``, ...). Equivalently, ``r`` is the Chebyshev (chessboard) distance
   from the pixel to the nearest valid pixel, and the neighbours are all valid pixels at
   that distance. The mean is taken over the corrected (dark- and gain-applied) values of
   the neighbours; excluded pixels never contribute, so the result does not depend on the
   order in which they are patched. A set that excludes every pixel is an error.
3. **Non-finite values.** ``dark`` and ``gain`` must be finite at every pixel that is not
   excluded (a NaN there would silently spread into every neighbour mean). At excluded
   pixels they may hold anything (NaN marking a dead pixel is common), because those values
   are never used. Non-finite *data* are not touched: they propagate as numpy would.
4. **Shapes.** ``dark``, ``gain`` and a mask of ``excluded_pixels`` have exactly the signal
   shape; coordinates are an integer array ``(n, sig_dims)`` inside the frame (no negative
   indices). Everything is checked against the data set when the run starts
   (:meth:`CorrectionSet.plan`), before any data is read.
5. **Tiling.** With excluded pixels, tiles hold whole frames (a neighbourhood never crosses
   a tile border); dark and gain alone work on any tile.

On the worker, a :class:`CorrectionPlan` (small and picklable: flat arrays and a table of
neighbour indices computed once on the main process) builds one corrector per tile stream,
which writes the corrected tile into its own reused buffer with a numba kernel
(:mod:`udfkit.io._correct`); tiles from the file or its mapping are only read.
"""

from __future__ import annotations

from collections.abc import Iterable
from math import prod
from typing import Any

import numpy as np
from numpy.lib.stride_tricks import as_strided
from numpy.typing import ArrayLike, DTypeLike

from ..errors import CorrectionError
from .aligned import aligned_empty
from .tiles import DataTile
from .tiling import TilingScheme

__all__ = ["CorrectionSet", "CorrectionPlan"]

#: dtypes the correction kernel reads directly (others are converted by the tile decoder)
_KERNEL_SOURCES = frozenset(np.dtype(t) for t in ("u1", "u2", "u4", "u8", "i1", "i2", "i4", "i8",
                                                  "f4", "f8", "c8", "c16"))

#: candidate neighbours examined at once when building the neighbour table
_CHUNK = 1 << 22


def _real_array(value, name: str) -> np.ndarray:
    """A read-only, native-order copy of a dark / gain array (real numbers, at least 1D)."""
    try:
        arr = np.array(value)
    except Exception as e:  # pragma: no cover - exotic array-likes
        raise CorrectionError(f"CorrectionSet: {name}: expected an array of real numbers of the "
                              f"sig shape, got {type(value).__name__}: {e}") from None
    if arr.dtype.kind not in "iuf":
        what = "complex numbers" if arr.dtype.kind == "c" else f"dtype {arr.dtype}"
        raise CorrectionError(f"CorrectionSet: {name}: expected an array of real numbers of the "
                              f"sig shape, got {what}")
    if arr.ndim == 0:
        raise CorrectionError(f"CorrectionSet: {name}: expected an array of the sig shape, got the "
                              f"scalar {arr.item()!r}; use np.full(sig_shape, value)")
    arr = arr.astype(arr.dtype.newbyteorder("="), copy=False)
    arr.flags.writeable = False
    return arr


def _excluded_array(value) -> np.ndarray | None:
    """A bool mask, or int64 coordinates ``(n, d)``; None when nothing is excluded."""
    try:
        arr = np.array(value)
    except Exception as e:
        raise CorrectionError("CorrectionSet: excluded_pixels: expected a bool mask of the sig "
                              f"shape or integer coordinates (n, sig_dims), got {type(value).__name__}: "
                              f"{e}") from None
    if arr.dtype == np.bool_:
        if arr.ndim == 0:
            raise CorrectionError("CorrectionSet: excluded_pixels: expected a bool mask of the sig "
                                  f"shape, got the scalar {arr.item()!r}")
        arr.flags.writeable = False
        return arr
    if arr.size == 0 and arr.dtype.kind in "iuf":
        return None  # an empty list of coordinates
    if arr.dtype.kind not in "iu":
        raise CorrectionError("CorrectionSet: excluded_pixels: expected a bool mask of the sig shape "
                              f"or integer coordinates (n, sig_dims), got dtype {arr.dtype}")
    if arr.ndim != 2:
        raise CorrectionError(
            "CorrectionSet: excluded_pixels: integer values are coordinates and need the shape "
            f"(n, sig_dims), got shape {arr.shape}; write one pixel as [(y, x)] (or [(i,)] for a 1D "
            "signal), or pass a mask of dtype bool")
    coords = arr.astype(np.int64)
    coords.flags.writeable = False
    return coords


def _check_coords(coords: np.ndarray, sig_shape: tuple, where: str) -> np.ndarray:
    """Coordinates ``(n, d)`` as a bool mask of ``sig_shape``, with clear errors."""
    d = len(sig_shape)
    if coords.shape[1] != d:
        raise CorrectionError(
            f"CorrectionSet: excluded_pixels: coordinates have {coords.shape[1]} columns, but the "
            f"sig shape {sig_shape} of {where} has {d} dimensions; expected an integer array of "
            f"shape (n, {d})")
    bad = ((coords < 0) | (coords >= np.asarray(sig_shape, dtype=np.int64))).any(axis=1)
    if bad.any():
        rows = np.flatnonzero(bad)
        shown = ", ".join(f"{tuple(int(c) for c in coords[i])} (row {i})" for i in rows[:5])
        more = f" and {rows.size - 5} more" if rows.size > 5 else ""
        raise CorrectionError(
            f"CorrectionSet: excluded_pixels: {rows.size} coordinate(s) outside the sig shape "
            f"{sig_shape} of {where}: {shown}{more}; each coordinate must satisfy "
            "0 <= c < size on its axis (negative indices are not allowed)")
    mask = np.zeros(sig_shape, dtype=bool)
    mask[tuple(coords.T)] = True
    mask.flags.writeable = False
    return mask


class CorrectionSet:
    """Dark frame, gain map and excluded pixels, applied to every frame of a run.

    See the module docstring of :mod:`udfkit.io.corrections` for the exact rules; in short:
    ``corrected = (raw - dark) * gain``, then each excluded pixel becomes the mean of the
    valid pixels in the smallest box (``3 × 3``, else ``5 × 5``, ...) around it that holds any.

    Parameters
    ----------
    dark : array_like, optional
        Subtracted from every frame; real numbers, exactly the signal shape.
    gain : array_like, optional
        Multiplied after subtracting ``dark``; real numbers, exactly the signal shape.
    excluded_pixels : array_like, optional
        Either a bool mask of the signal shape (True = excluded) or integer coordinates,
        shape ``(n, sig_dims)`` (a list of tuples works). An empty list or an all-False
        mask excludes nothing.

    Attributes
    ----------
    dark, gain : numpy.ndarray or None
        Read-only copies of what was given.
    excluded_pixels : numpy.ndarray or None
        Bool mask of the signal shape. When only coordinates were given and neither
        ``dark`` nor ``gain`` fixes the signal shape, the ``(n, sig_dims)`` coordinates
        (:meth:`excluded_mask` turns them into a mask for a given shape).
    sig_shape : tuple of int or None
        The signal shape the set fixes (from ``dark``, ``gain`` or a mask), if any.

    Raises
    ------
    CorrectionError
        For arrays of a wrong kind or of mismatching shapes. Whether the set fits a data set
        is checked when a run starts.

    Examples
    --------
    >>> import numpy as np
    >>> from udfkit import Context, CorrectionSet
    >>> from udfkit.udf import SumUDF
    >>> data = np.full((2, 3, 4, 4), 10, dtype="uint16")
    >>> corr = CorrectionSet(dark=np.full((4, 4), 2.0), gain=np.full((4, 4), 0.5),
    ...                      excluded_pixels=[(0, 0)])
    >>> int(corr.excluded_pixels.sum()), corr.sig_shape
    (1, (4, 4))
    >>> with Context.make_with("inline") as ctx:
    ...     ds = ctx.load("memory", data=data)
    ...     res = ctx.run_udf(dataset=ds, udf=SumUDF(), corrections=corr)
    >>> res["intensity"].data[0]          # 6 frames of (10 - 2) * 0.5
    array([24., 24., 24., 24.])
    """

    __slots__ = ("dark", "gain", "excluded_pixels", "sig_shape")

    def __init__(self, dark: ArrayLike | None = None, gain: ArrayLike | None = None,
                 excluded_pixels: Any = None):
        self.dark = None if dark is None else _real_array(dark, "dark")
        self.gain = None if gain is None else _real_array(gain, "gain")
        excluded = None if excluded_pixels is None else _excluded_array(excluded_pixels)
        shapes = [(name, arr.shape) for name, arr in (("dark", self.dark), ("gain", self.gain))
                  if arr is not None]
        if excluded is not None and excluded.dtype == np.bool_:
            shapes.append(("the excluded_pixels mask", excluded.shape))
        if len({s for _, s in shapes}) > 1:
            listed = ", ".join(f"{name} {shape}" for name, shape in shapes)
            raise CorrectionError(f"CorrectionSet: the arrays must all have the sig shape, but their "
                                  f"shapes differ: {listed}")
        self.sig_shape = shapes[0][1] if shapes else None
        if excluded is not None and excluded.dtype != np.bool_ and self.sig_shape is not None:
            excluded = _check_coords(excluded, self.sig_shape, f"dark/gain {self.sig_shape}")
        self.excluded_pixels = excluded

    @property
    def is_empty(self) -> bool:
        """True when the set changes nothing (a run then behaves as without corrections)."""
        exc = self.excluded_pixels
        return (self.dark is None and self.gain is None
                and (exc is None or (exc.dtype == np.bool_ and not exc.any())))

    def excluded_mask(self, sig_shape: tuple[int, ...]) -> np.ndarray:
        """The excluded pixels as a bool mask of ``sig_shape`` (all False if there are none).

        Examples
        --------
        >>> CorrectionSet(excluded_pixels=[(0, 1)]).excluded_mask((2, 3)).astype(int)
        array([[0, 1, 0],
               [0, 0, 0]])
        """
        sig_shape = tuple(int(s) for s in sig_shape)
        return self._mask(sig_shape, f"sig shape {sig_shape}")

    def _mask(self, sig_shape: tuple, where: str) -> np.ndarray:
        exc = self.excluded_pixels
        if exc is None:
            return np.zeros(sig_shape, dtype=bool)
        if exc.dtype != np.bool_:
            return _check_coords(exc, sig_shape, where)
        if exc.shape != sig_shape:
            raise CorrectionError(f"CorrectionSet: the excluded_pixels mask has shape {exc.shape}, but "
                                  f"{where} needs exactly the sig shape {sig_shape}")
        return exc

    def plan(self, sig_shape: tuple[int, ...], where: str = "the data set") -> CorrectionPlan:
        """Check the set against a signal shape and precompute what the workers need.

        Parameters
        ----------
        sig_shape : tuple of int
            The data set's signal shape.
        where : str
            How error messages name the data set.

        Returns
        -------
        CorrectionPlan

        Raises
        ------
        CorrectionError
            Shapes that are not ``sig_shape``, coordinates outside the frame, non-finite
            dark or gain values at pixels that are not excluded, every pixel excluded.

        Examples
        --------
        >>> import numpy as np
        >>> mask = np.zeros((3, 3), bool)
        >>> mask[0, 0] = True
        >>> plan = CorrectionSet(excluded_pixels=mask).plan((3, 3))
        >>> plan.excluded, plan.neighbours_of(0)     # the three valid pixels next to the corner
        (array([0]), array([1, 3, 4]))
        """
        sig_shape = tuple(int(s) for s in sig_shape)
        for name, arr in (("dark", self.dark), ("gain", self.gain)):
            if arr is not None and arr.shape != sig_shape:
                raise CorrectionError(f"CorrectionSet: {name} has shape {arr.shape}, but the sig shape of "
                                      f"{where} is {sig_shape}; {name} must have exactly the sig shape")
        mask = self._mask(sig_shape, where)
        if mask.all():
            raise CorrectionError(f"CorrectionSet: excluded_pixels excludes all {mask.size} pixels of the "
                                  f"sig shape {sig_shape} of {where}; at least one must stay valid")
        for name, arr in (("dark", self.dark), ("gain", self.gain)):
            if arr is None:
                continue
            bad = ~np.isfinite(arr) & ~mask
            if bad.any():
                first = tuple(int(i) for i in np.unravel_index(np.flatnonzero(bad)[0], sig_shape))
                raise CorrectionError(
                    f"CorrectionSet: {name} has {int(bad.sum())} non-finite value(s) (NaN or inf) at "
                    f"pixels that are not excluded, the first at {first}; give finite values there, "
                    "or add those pixels to excluded_pixels")
        excluded, indptr, nbrs = neighbour_table(mask)
        return CorrectionPlan(sig_shape=sig_shape,
                              dark=None if self.dark is None else self.dark.reshape(-1),
                              gain=None if self.gain is None else self.gain.reshape(-1),
                              excluded=excluded, indptr=indptr, nbrs=nbrs)

    def __repr__(self):
        parts = []
        for name in ("dark", "gain"):
            arr = getattr(self, name)
            if arr is not None:
                parts.append(f"{name}={arr.dtype}{list(arr.shape)}")
        exc = self.excluded_pixels
        if exc is not None:
            n = int(exc.sum()) if exc.dtype == np.bool_ else exc.shape[0]
            parts.append(f"excluded_pixels={n}")
        return f"CorrectionSet({', '.join(parts)})"


def _dilate(reach: np.ndarray) -> np.ndarray:
    """Grow a bool array by one pixel in every direction (a 3 × … × 3 box; separable)."""
    out = reach.copy()
    for ax in range(reach.ndim):
        src = out.copy()
        lo = [slice(None)] * reach.ndim
        hi = [slice(None)] * reach.ndim
        lo[ax], hi[ax] = slice(1, None), slice(None, -1)
        out[tuple(lo)] |= src[tuple(hi)]
        out[tuple(hi)] |= src[tuple(lo)]
    return out


def _shell_offsets(r: int, d: int) -> np.ndarray:
    """Offsets ``(k, d)`` with Chebyshev norm exactly ``r``, in lexicographic order."""
    grid = np.indices((2 * r + 1,) * d).reshape(d, -1).T - r
    return grid[np.abs(grid).max(axis=1) == r]


def neighbour_table(mask: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The valid neighbours of every excluded pixel of ``mask``, as a CSR table.

    Returns ``(excluded, indptr, nbrs)``: the flat indices of the excluded pixels (sorted),
    and ``nbrs[indptr[k]:indptr[k + 1]]``, the flat indices (sorted) of the neighbours of
    ``excluded[k]`` as defined in the module docstring. Needs at least one valid pixel.

    The radius of each pixel (its chessboard distance to the nearest valid pixel) comes from
    growing the valid region one pixel at a time; since no valid pixel is closer, the
    neighbours are the valid pixels on the shell at that distance, which is all that is
    examined, so large clusters cost little.

    Examples
    --------
    >>> import numpy as np
    >>> mask = np.zeros(5, bool)
    >>> mask[1:4] = True                      # 1D: pixels 1, 2, 3 excluded
    >>> excluded, indptr, nbrs = neighbour_table(mask)
    >>> [nbrs[indptr[k]:indptr[k + 1]].tolist() for k in range(3)]
    [[0], [0, 4], [4]]
    """
    mask = np.asarray(mask, dtype=bool)
    sig_shape = mask.shape
    d = mask.ndim
    excluded = np.flatnonzero(mask).astype(np.int64)
    m = excluded.size
    if m == 0:
        return excluded, np.zeros(1, np.int64), np.zeros(0, np.int64)
    radius = np.zeros(sig_shape, dtype=np.int64)
    reach = ~mask
    pending = mask.copy()
    r = 0
    while pending.any():
        r += 1
        reach = _dilate(reach)
        radius[pending & reach] = r
        pending &= ~reach
    radii = radius.reshape(-1)[excluded]
    valid_flat = ~mask.reshape(-1)
    shape_arr = np.asarray(sig_shape, dtype=np.int64)
    strides = np.asarray([prod(sig_shape[a + 1:]) for a in range(d)], dtype=np.int64)
    coords = np.stack(np.unravel_index(excluded, sig_shape), axis=-1).astype(np.int64)
    pix_parts, nbr_parts = [], []
    for r in np.unique(radii):
        offs = _shell_offsets(int(r), d)
        group = np.flatnonzero(radii == r)
        step = max(1, _CHUNK // (offs.shape[0] * d))
        for g0 in range(0, group.size, step):
            g = group[g0:g0 + step]
            cand = coords[g][:, None, :] + offs[None, :, :]
            inside = ((cand >= 0) & (cand < shape_arr)).all(axis=-1)
            flat = np.where(inside, cand @ strides, 0)
            ok = inside & valid_flat[flat]
            rows, cols = np.nonzero(ok)
            pix_parts.append(g[rows])
            nbr_parts.append(flat[rows, cols])
    pix = np.concatenate(pix_parts)
    nbr = np.concatenate(nbr_parts)
    order = np.lexsort((nbr, pix))
    counts = np.bincount(pix, minlength=m)
    indptr = np.zeros(m + 1, dtype=np.int64)
    np.cumsum(counts, out=indptr[1:])
    return excluded, indptr, np.ascontiguousarray(nbr[order], dtype=np.int64)


class CorrectionPlan:
    """A :class:`CorrectionSet` checked against a signal shape, ready for the workers.

    Built by :meth:`CorrectionSet.plan` on the main process and shipped with every
    partition task; holds only flat arrays.

    Attributes
    ----------
    sig_shape : tuple of int
    dark, gain : numpy.ndarray or None
        Flat (C order), in the dtype given.
    excluded : numpy.ndarray
        Sorted flat indices of the excluded pixels (int64; empty when there are none).
    indptr, nbrs : numpy.ndarray
        The neighbour table of :func:`neighbour_table`.
    """

    __slots__ = ("sig_shape", "dark", "gain", "excluded", "indptr", "nbrs")

    def __init__(self, *, sig_shape: tuple[int, ...], dark: np.ndarray | None,
                 gain: np.ndarray | None, excluded: np.ndarray, indptr: np.ndarray,
                 nbrs: np.ndarray):
        self.sig_shape = tuple(sig_shape)
        self.dark = dark
        self.gain = gain
        self.excluded = excluded
        self.indptr = indptr
        self.nbrs = nbrs

    def __reduce__(self):
        return (_make_plan, (self.sig_shape, self.dark, self.gain, self.excluded, self.indptr,
                             self.nbrs))

    @property
    def needs_whole_frames(self) -> bool:
        """True when tiles must hold whole frames (there are excluded pixels)."""
        return self.excluded.size > 0

    def neighbours_of(self, k: int) -> np.ndarray:
        """Flat indices of the neighbours of the ``k``-th excluded pixel."""
        return self.nbrs[self.indptr[k]:self.indptr[k + 1]]

    def source_dtype(self, stored_dtype: DTypeLike, out_dtypes: Iterable[DTypeLike]) -> np.dtype:
        """The dtype to read tiles in: the stored one (native order) when the kernel reads
        it directly, so that conversion and correction are one pass; else the widest output."""
        native = np.dtype(stored_dtype).newbyteorder("=")
        if native in _KERNEL_SOURCES:
            return native
        return np.result_type(*out_dtypes)

    def corrector(self, scheme: TilingScheme, out_dtype: DTypeLike) -> TileCorrector:
        """A :class:`TileCorrector` for one tile stream of ``scheme`` in ``out_dtype``."""
        return TileCorrector(self, scheme, out_dtype)

    def __repr__(self):
        return (f"CorrectionPlan(sig_shape={self.sig_shape}, dark={self.dark is not None}, "
                f"gain={self.gain is not None}, excluded={self.excluded.size})")


def _make_plan(sig_shape, dark, gain, excluded, indptr, nbrs):
    return CorrectionPlan(sig_shape=sig_shape, dark=dark, gain=gain, excluded=excluded,
                          indptr=indptr, nbrs=nbrs)


class TileCorrector:
    """Corrects the tiles of one stream into a reused buffer (on the worker).

    Dark and gain are cut to each signal slice of the scheme and converted to the output's
    real dtype once, when the corrector is made (once per partition). Calling it with a
    :class:`~udfkit.io.tiles.DataTile` returns a new, read-only tile that is a view of the
    buffer; the next call overwrites it.
    """

    def __init__(self, plan: CorrectionPlan, scheme, out_dtype):
        out_dtype = np.dtype(out_dtype)
        if out_dtype.kind not in "fc":
            raise CorrectionError(f"corrections need a float or complex input dtype, got {out_dtype}")
        real = np.empty(0, dtype=out_dtype).real.dtype
        sig_shape = plan.sig_shape
        whole = len(scheme.slices) == 1 and scheme.slices[0].shape.to_tuple() == sig_shape
        if plan.needs_whole_frames and not whole:
            raise CorrectionError(f"excluded pixels need tiles of whole frames {sig_shape}, but the "
                                  f"tiling scheme is {scheme!r}")
        empty = np.zeros(0, dtype=real)

        def cut(arr, sl):
            if arr is None:
                return empty
            # a fresh, writeable copy: one kernel specialization per dtype pair, not per flag
            return np.array(arr.reshape(sig_shape)[sl.get()].reshape(-1), dtype=real, order="C")

        self.parts = [(prod(sl.shape.to_tuple()), cut(plan.dark, sl), cut(plan.gain, sl))
                      for sl in scheme.slices]
        self.has_dark = plan.dark is not None
        self.has_gain = plan.gain is not None
        self.excluded, self.indptr, self.nbrs = (np.require(a, np.int64, ["C", "W"])
                                                 for a in (plan.excluded, plan.indptr, plan.nbrs))
        self.out_dtype = out_dtype
        self.buf = aligned_empty(scheme.depth * max(m for m, _, _ in self.parts), out_dtype)
        from ._correct import correct_rows

        self._kernel = correct_rows

    def __call__(self, tile):
        data = tile.data
        n = data.shape[0]
        m, dark, gain = self.parts[tile.scheme_idx]
        if data.flags.c_contiguous:  # decoded tiles, zero-copy tiles of whole frames
            src = data.reshape(-1)
            fstride = m
        else:
            src, fstride = _frames_as_flat(data, n, m)
        out = self.buf[:n * m].reshape(n, m)
        self._kernel(src, fstride, dark, gain, self.has_dark, self.has_gain, out,
                     self.excluded, self.indptr, self.nbrs)
        view = out.reshape(data.shape)
        view.flags.writeable = False
        return DataTile(view, tile.tile_slice, tile.scheme_idx, tile.frame_index,
                        tile.processed_start)


def _frames_as_flat(data, n: int, m: int):
    """``(src, fstride)``: a flat read-only view in which frame ``i`` of the tile is
    ``src[i * fstride:i * fstride + m]``; a copy only when a frame's part is not contiguous
    (a zero-copy tile that cuts columns)."""
    rows = data.reshape(n, m)  # a view when each frame's part is contiguous
    itemsize = rows.dtype.itemsize
    step = rows.strides[0] if n > 1 else m * itemsize
    if (m > 1 and rows.strides[1] != itemsize) or step < 0 or step % itemsize:
        rows = np.ascontiguousarray(rows)
        step = m * itemsize
    fstride = step // itemsize
    return as_strided(rows, shape=((n - 1) * fstride + m,), strides=(itemsize,), writeable=False), fstride
