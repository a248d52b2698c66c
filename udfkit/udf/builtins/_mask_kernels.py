"""Numba kernels of :class:`~udfkit.udf.builtins.masks.ApplyMasksUDF`; which one runs, and
why, is in :mod:`udfkit.udf.builtins._mask_paths`.

Tiles come in the calling convention of :mod:`udfkit.udf.builtins._kernels` (``flat``,
``stride``, ``depth``, ``n``) and in any numeric dtype: the conversion to the masks' float
dtype happens in registers. This module imports numba; the UDF imports it lazily.
"""

from __future__ import annotations

import numba
import numpy as np

__all__ = ["dense_product", "gather_product"]

#: pixels per pass of the dense kernel: four frames and four masks of this many float32
#: values (64 KiB + 64 KiB) stay in L2 while every block of frames reuses the masks
_CHUNK = 4096

_REASSOC = {"reassoc", "nsz", "contract"}


@numba.njit(cache=True, nogil=True, boundscheck=False, fastmath=_REASSOC)
def dense_product(flat, stride, depth, n, masks, out):
    """``out[i, k] += sum_j row_i[j] * masks[k, j]`` in float32.

    ``masks`` is ``(K4, n)`` float32 with ``K4`` a multiple of 4 (:func:`padded_masks`),
    ``out`` is ``(depth, K4)`` float32.
    """
    nk = masks.shape[0]
    for j0 in range(0, n, _CHUNK):
        j1 = min(n, j0 + _CHUNK)
        m = j1 - j0
        f0 = 0
        while f0 + 4 <= depth:
            r0 = flat[f0 * stride + j0:f0 * stride + j1]
            r1 = flat[(f0 + 1) * stride + j0:(f0 + 1) * stride + j1]
            r2 = flat[(f0 + 2) * stride + j0:(f0 + 2) * stride + j1]
            r3 = flat[(f0 + 3) * stride + j0:(f0 + 3) * stride + j1]
            for k0 in range(0, nk, 4):
                m0 = masks[k0, j0:j1]
                m1 = masks[k0 + 1, j0:j1]
                m2 = masks[k0 + 2, j0:j1]
                m3 = masks[k0 + 3, j0:j1]
                # 16 independent sums: LLVM keeps them in vector registers
                s00 = s01 = s02 = s03 = s10 = s11 = s12 = s13 = np.float32(0)
                s20 = s21 = s22 = s23 = s30 = s31 = s32 = s33 = np.float32(0)
                for j in range(m):
                    x0 = np.float32(r0[j])
                    x1 = np.float32(r1[j])
                    x2 = np.float32(r2[j])
                    x3 = np.float32(r3[j])
                    y0 = m0[j]
                    y1 = m1[j]
                    y2 = m2[j]
                    y3 = m3[j]
                    s00 += x0 * y0
                    s01 += x0 * y1
                    s02 += x0 * y2
                    s03 += x0 * y3
                    s10 += x1 * y0
                    s11 += x1 * y1
                    s12 += x1 * y2
                    s13 += x1 * y3
                    s20 += x2 * y0
                    s21 += x2 * y1
                    s22 += x2 * y2
                    s23 += x2 * y3
                    s30 += x3 * y0
                    s31 += x3 * y1
                    s32 += x3 * y2
                    s33 += x3 * y3
                out[f0, k0] += s00
                out[f0, k0 + 1] += s01
                out[f0, k0 + 2] += s02
                out[f0, k0 + 3] += s03
                out[f0 + 1, k0] += s10
                out[f0 + 1, k0 + 1] += s11
                out[f0 + 1, k0 + 2] += s12
                out[f0 + 1, k0 + 3] += s13
                out[f0 + 2, k0] += s20
                out[f0 + 2, k0 + 1] += s21
                out[f0 + 2, k0 + 2] += s22
                out[f0 + 2, k0 + 3] += s23
                out[f0 + 3, k0] += s30
                out[f0 + 3, k0 + 1] += s31
                out[f0 + 3, k0 + 2] += s32
                out[f0 + 3, k0 + 3] += s33
            f0 += 4
        # the last depth % 4 frames: one frame by four masks
        while f0 < depth:
            r0 = flat[f0 * stride + j0:f0 * stride + j1]
            for k0 in range(0, nk, 4):
                m0 = masks[k0, j0:j1]
                m1 = masks[k0 + 1, j0:j1]
                m2 = masks[k0 + 2, j0:j1]
                m3 = masks[k0 + 3, j0:j1]
                s00 = s01 = s02 = s03 = np.float32(0)
                for j in range(m):
                    x0 = np.float32(r0[j])
                    s00 += x0 * m0[j]
                    s01 += x0 * m1[j]
                    s02 += x0 * m2[j]
                    s03 += x0 * m3[j]
                out[f0, k0] += s00
                out[f0, k0 + 1] += s01
                out[f0, k0 + 2] += s02
                out[f0, k0 + 3] += s03
            f0 += 1


@numba.njit(cache=True, nogil=True, boundscheck=False, fastmath=_REASSOC)
def gather_product(flat, stride, depth, starts, lengths, values, out):
    """``out[i, k] += sum_p row_i[pixel_p] * values[k, p]`` over the runs of used pixels.

    ``starts`` / ``lengths``: runs of pixels of a row (:func:`gather_plan`); ``values``:
    ``(K, n_used)`` in run order, in the compute dtype; ``out``: ``(depth, K)``.
    """
    nk = values.shape[0]
    nruns = starts.shape[0]
    for i in range(depth):
        base = i * stride
        for k in range(nk):
            v = values[k]
            s = out.dtype.type(0)
            p = 0
            for r in range(nruns):
                a = base + starts[r]
                ln = lengths[r]
                seg = flat[a:a + ln]
                vs = v[p:p + ln]
                for j in range(ln):
                    s += out.dtype.type(seg[j]) * vs[j]
                p += ln
            out[i, k] += s
