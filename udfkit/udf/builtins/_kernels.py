"""Numba kernels of the built-in UDFs, and :func:`as_rows`, which feeds tiles to them.

Every kernel sees a tile as ``depth`` *rows* (one per frame, the frame's signal part
flattened) of ``n`` elements, stored in one flat array at a fixed element ``stride``:
row ``i`` is ``flat[i * stride:i * stride + n]``. Tiles that are views of a file mapping
have a stride larger than ``n`` (the rest of each frame lies in between); decoded tiles are
contiguous (``stride == n``). Two reasons for this calling convention:

* numba compiles a 2D array that is not C-contiguous as layout ``"A"`` and does not
  vectorize its loops (6.7 GB/s instead of 25 GB/s for a uint16 column sum here);
* the inner loops run over one-row slices with a local index, because with
  ``flat[base + j]`` numba cannot rule out a negative index and keeps its wraparound check.

Kernels are generic in the input dtype (numba compiles one version per dtype and caches it
on disk) and accumulate in the dtype of the output array they are given, which the UDFs
choose wide (float64, complex128) so that integer data are summed exactly up to 2**53.

This module imports numba; the UDF modules import it lazily.
"""

from __future__ import annotations

import numba
import numpy as np
from numpy.lib.stride_tricks import as_strided

__all__ = ["as_rows", "sum_frames", "sum_frames_small_int", "SMALL_INT_DEPTH", "sum_signal",
           "moments", "moments_small_int", "SMALL_INT_MOMENTS_DEPTH", "minmax", "logsum",
           "logsum_table"]

# reductions along a row may be reordered (that is what lets them vectorize); NaN and inf
# keep their meaning, so results with NaN in the data still match numpy's
_REASSOC = {"reassoc", "nsz", "contract"}


def as_rows(tile: np.ndarray):
    """``(flat, stride, depth, n)`` for a tile of shape ``(depth, *sig_part)``.

    No data are copied when each frame's part of the tile is contiguous (whole frames or
    whole rows of frames); otherwise the tile is copied once into a contiguous array.
    """
    depth = tile.shape[0]
    rows = tile.reshape(depth, -1)
    n = rows.shape[1]
    itemsize = rows.itemsize
    if rows.flags.c_contiguous:
        return rows.reshape(-1), n, depth, n
    if (n > 1 and rows.strides[1] != itemsize) or rows.strides[0] <= 0 \
            or rows.strides[0] % itemsize:
        rows = np.ascontiguousarray(rows)
        return rows.reshape(-1), n, depth, n
    stride = rows.strides[0] // itemsize
    # a 1D view from the first to the last element of the tile: C-contiguous for numba; the
    # bytes in between belong to the same frames, so they are inside the same buffer
    flat = as_strided(rows, shape=((depth - 1) * stride + n,), strides=(itemsize,),
                      writeable=False)
    return flat, stride, depth, n


@numba.njit(inline="always")
def _four_rows(flat, stride, i, n):
    """Rows ``i`` to ``i + 3`` of a tile (the kernels add four frames per pass)."""
    return (flat[i * stride:i * stride + n], flat[(i + 1) * stride:(i + 1) * stride + n],
            flat[(i + 2) * stride:(i + 2) * stride + n], flat[(i + 3) * stride:(i + 3) * stride + n])


@numba.njit(cache=True, nogil=True, boundscheck=False)
def sum_frames(flat, stride, depth, n, acc):
    """``acc[j] += sum_i row_i[j]`` (the sum over frames of each pixel).

    Four frames are added per pass over ``acc``: a 256×256 frame has 512 KiB of float64
    sums, which would otherwise be read and written back from L2 once per frame.
    """
    i = 0
    while i + 4 <= depth:
        r0, r1, r2, r3 = _four_rows(flat, stride, i, n)
        for j in range(n):
            acc[j] += (acc.dtype.type(r0[j]) + r1[j]) + (acc.dtype.type(r2[j]) + r3[j])
        i += 4
    while i < depth:
        row = flat[i * stride:i * stride + n]
        for j in range(n):
            acc[j] += row[j]
        i += 1


#: frames of 8/16-bit integers that an int32 sum holds without overflow (65535 * 32767 < 2**31)
SMALL_INT_DEPTH = 32767


@numba.njit(cache=True, nogil=True, boundscheck=False)
def sum_frames_small_int(flat, stride, depth, n, acc, scratch):
    """:func:`sum_frames` for 8/16-bit integer data: exact and about a quarter faster.

    The tile's frames are summed in ``scratch`` (int32, at least ``n`` long; the tile's
    pixels, which stay in L2: 64 KiB for a quarter of a 256×256 frame) with eight integer
    lanes per vector and no conversion, then added to ``acc`` once per tile: one
    conversion per pixel and tile instead of one per pixel and frame. At most
    :data:`SMALL_INT_DEPTH` frames per call (int32 holds their sum exactly).
    """
    t = scratch[:n]
    for j in range(n):
        t[j] = 0
    i = 0
    while i + 4 <= depth:
        r0, r1, r2, r3 = _four_rows(flat, stride, i, n)
        for j in range(n):
            # int32 arithmetic (the truncation lets LLVM keep 32-bit lanes); exact, see above
            t[j] = np.int32(t[j] + ((np.int32(r0[j]) + np.int32(r1[j]))
                                    + (np.int32(r2[j]) + np.int32(r3[j]))))
        i += 4
    while i < depth:
        row = flat[i * stride:i * stride + n]
        for j in range(n):
            t[j] = np.int32(t[j] + np.int32(row[j]))
        i += 1
    for j in range(n):
        acc[j] += t[j]


@numba.njit(cache=True, nogil=True, boundscheck=False, fastmath=_REASSOC)
def sum_signal(flat, stride, depth, n, out):
    """``out[i] += sum_j row_i[j]`` (the sum over the signal part of each frame)."""
    for i in range(depth):
        row = flat[i * stride:i * stride + n]
        s = 0.0  # numba widens it to the type of the data (complex stays complex)
        for j in range(n):
            s += row[j]
        out[i] += s


@numba.njit(cache=True, nogil=True, boundscheck=False, fastmath=_REASSOC)
def moments(flat, stride, depth, n, n_before, total, varsum, shift, s1, s2):
    """Fold a tile into per-pixel running moments.

    ``total`` (sum) and ``varsum`` (sum of squared deviations from the mean) hold
    ``n_before`` frames. The tile's own moments are computed about a per-pixel shift (its
    first frame), which keeps them exact for integer data and free of cancellation for data
    with a large offset (1e6 + noise), then merged with the pairwise update of Chan et al.:
    ``M2 = M2_a + M2_b + delta**2 * n_a * n_b / n``. ``shift``, ``s1`` and ``s2`` are
    length-``n`` scratch arrays.

    Compiled with reassociation and contraction (FMA), as the sums of the other kernels:
    the four frames' terms and the real / imaginary parts may be added in any order, which
    changes float rounding only (integer data stay exact: every partial sum is an integer
    below 2**53) and NaN / inf keep their meaning. Measured here (CPU time of one thread,
    in-RAM tiles of 32 frames × 16384 pixels): uint16 4.2 -> 5.5 GB/s, float32 9.1 -> 10.6.
    """
    first = flat[0:n]
    for j in range(n):
        v = first[j]
        # inf or NaN as the shift would turn inf into NaN (inf - inf): shift by 0 there
        shift[j] = v if np.isfinite(v) else 0
        s1[j] = 0.0
        s2[j] = 0.0
    # frame 0 adds nothing unless its value was not a usable shift; four frames per pass
    # over the per-pixel arrays, which would otherwise go to L2 and back for every frame
    i = 0
    while i + 4 <= depth:
        r0, r1, r2, r3 = _four_rows(flat, stride, i, n)
        for j in range(n):
            c = shift[j]
            d0 = r0[j] - c
            d1 = r1[j] - c
            d2 = r2[j] - c
            d3 = r3[j] - c
            s1[j] += (d0 + d1) + (d2 + d3)
            s2[j] += ((d0.real * d0.real + d0.imag * d0.imag) + (d1.real * d1.real + d1.imag * d1.imag)) \
                + ((d2.real * d2.real + d2.imag * d2.imag) + (d3.real * d3.real + d3.imag * d3.imag))
        i += 4
    while i < depth:
        row = flat[i * stride:i * stride + n]
        for j in range(n):
            d = row[j] - shift[j]
            s1[j] += d
            s2[j] += d.real * d.real + d.imag * d.imag
        i += 1
    nb = float(depth)
    if n_before == 0:
        for j in range(n):
            total[j] = shift[j] * nb + s1[j]
            varsum[j] = s2[j] - (s1[j].real * s1[j].real + s1[j].imag * s1[j].imag) / nb
        return
    na = float(n_before)
    w = na * nb / (na + nb)
    for j in range(n):
        m2 = s2[j] - (s1[j].real * s1[j].real + s1[j].imag * s1[j].imag) / nb
        tile_sum = shift[j] * nb + s1[j]
        # difference of the means from the sums: exact for integer data (sums below 2**53)
        delta = (na * tile_sum - nb * total[j]) / (na * nb)
        total[j] += tile_sum
        varsum[j] += m2 + (delta.real * delta.real + delta.imag * delta.imag) * w


#: frames per call of :func:`moments_small_int`: ``depth * sum(x**2)`` of 16-bit values stays
#: an integer below 2**53 (exact in float64) up to 1448 frames
SMALL_INT_MOMENTS_DEPTH = 1024


@numba.njit(cache=True, nogil=True, boundscheck=False, fastmath=_REASSOC)
def moments_small_int(flat, stride, depth, n, n_before, total, varsum, isum, sqsum):
    """:func:`moments` for 8/16-bit integer data into float64 ``total`` / ``varsum``: exact
    tile moments without a shift, about a third faster.

    The tile's sum of ``x`` is kept in int32 lanes (``isum``, int32 scratch) and its sum of
    ``x**2`` in float64 (``sqsum``, float64 scratch); both are exact integers (at most
    :data:`SMALL_INT_MOMENTS_DEPTH` frames per call), and so is
    ``depth * sum(x**2) - sum(x)**2``, the tile's ``depth * M2``: no cancellation, whatever
    the offset of the data, so no shift is needed. The tile is then merged as in
    :func:`moments`.
    """
    a1 = isum[:n]
    a2 = sqsum[:n]
    for j in range(n):
        a1[j] = 0
        a2[j] = 0.0
    i = 0
    while i + 4 <= depth:
        r0, r1, r2, r3 = _four_rows(flat, stride, i, n)
        for j in range(n):
            x0 = np.int32(r0[j])
            x1 = np.int32(r1[j])
            x2 = np.int32(r2[j])
            x3 = np.int32(r3[j])
            # int32 arithmetic (the truncation keeps LLVM on 32-bit lanes); exact
            a1[j] = np.int32(a1[j] + ((x0 + x1) + (x2 + x3)))
            f0 = np.float64(x0)
            f1 = np.float64(x1)
            f2 = np.float64(x2)
            f3 = np.float64(x3)
            a2[j] += (f0 * f0 + f1 * f1) + (f2 * f2 + f3 * f3)
        i += 4
    while i < depth:
        row = flat[i * stride:i * stride + n]
        for j in range(n):
            x0 = np.int32(row[j])
            a1[j] = np.int32(a1[j] + x0)
            f0 = np.float64(x0)
            a2[j] += f0 * f0
        i += 1
    nb = float(depth)
    na = float(n_before)
    w = na * nb / (na + nb) if n_before else 0.0
    for j in range(n):
        tile_sum = np.float64(a1[j])
        m2 = (nb * a2[j] - tile_sum * tile_sum) / nb
        if n_before == 0:
            total[j] = tile_sum
            varsum[j] = m2
        else:
            delta = (na * tile_sum - nb * total[j]) / (na * nb)
            total[j] += tile_sum
            varsum[j] += m2 + delta * delta * w


@numba.njit(inline="always")
def _lower(a, b):
    """The smaller of ``a`` and ``b``, NaN if either is NaN (like ``np.minimum``)."""
    return a if (a < b or a != a) else b


@numba.njit(inline="always")
def _higher(a, b):
    """The larger of ``a`` and ``b``, NaN if either is NaN (like ``np.maximum``)."""
    return a if (a > b or a != a) else b


@numba.njit(cache=True, nogil=True, boundscheck=False)
def minmax(flat, stride, depth, n, lo, hi):
    """Per-pixel minimum and maximum over frames; NaN propagates, as in ``np.min``.

    Four frames per pass over ``lo`` and ``hi``, as in :func:`sum_frames`.
    """
    i = 0
    while i + 4 <= depth:
        r0, r1, r2, r3 = _four_rows(flat, stride, i, n)
        for j in range(n):
            a = r0[j]
            b = r1[j]
            c = r2[j]
            d = r3[j]
            lo[j] = _lower(lo[j], _lower(_lower(a, b), _lower(c, d)))
            hi[j] = _higher(hi[j], _higher(_higher(a, b), _higher(c, d)))
        i += 4
    while i < depth:
        row = flat[i * stride:i * stride + n]
        for j in range(n):
            lo[j] = _lower(lo[j], row[j])
            hi[j] = _higher(hi[j], row[j])
        i += 1


@numba.njit(cache=True, nogil=True, boundscheck=False, fastmath=_REASSOC)
def logsum(flat, stride, depth, n, acc):
    """``acc += log(frame - min(frame) + 1)`` for each (whole) frame of the tile."""
    for i in range(depth):
        row = flat[i * stride:i * stride + n]
        lo = row[0]
        for j in range(n):
            if row[j] < lo:
                lo = row[j]
        base = 1.0 - float(lo)
        for j in range(n):
            acc[j] += np.log(float(row[j]) + base)


@numba.njit(cache=True, nogil=True, boundscheck=False)
def logsum_table(flat, stride, depth, n, table, acc):
    """:func:`logsum` for 8- and 16-bit integers: ``table[k] = log(k + 1)`` replaces ``log``.

    ``frame - min(frame)`` of such data is an integer below ``len(table)``, so a lookup in a
    table that stays in the L2 cache gives exactly the same numbers ten times faster.
    """
    for i in range(depth):
        row = flat[i * stride:i * stride + n]
        lo = row[0]
        for j in range(n):
            if row[j] < lo:
                lo = row[j]
        base = np.int64(lo)
        for j in range(n):
            acc[j] += table[np.int64(row[j]) - base]
