"""Geometry of a result store: which arrays it holds, their shapes, chunks and fill values,
and how a flat range of nav positions maps to rectangular pieces of a nav-shaped array.

Nav buffers are stored in the shape ``nav_shape + extra_shape`` (what ``.data`` shows), so
that the store opens again as a data set; a partition covers a flat range of the nav axis,
which :func:`flat_boxes` cuts into at most ``2 * ndim - 1`` boxes.
"""

from __future__ import annotations

from dataclasses import dataclass
from math import prod

import numpy as np

from ...common.buffers import fill_value

__all__ = ["ArraySpec", "StoreLayout", "flat_boxes", "nav_chunks", "group_names"]

#: bytes of one chunk of a chunked (zarr, compressed hdf5) nav array
CHUNK_BYTES = 4 << 20


@dataclass(frozen=True)
class ArraySpec:
    """One array of the store.

    Attributes
    ----------
    group : str
        ``""`` for a run of one UDF, else the UDF's group name.
    name : str
        The buffer's name.
    kind : {"nav", "sig", "single"}
    shape : tuple of int
        ``nav_shape + extra_shape`` for nav buffers; the buffer's shape otherwise.
    dtype : numpy.dtype
    extra_shape : tuple of int
    """

    group: str
    name: str
    kind: str
    shape: tuple
    dtype: np.dtype
    extra_shape: tuple = ()

    @property
    def key(self) -> str:
        """``group/name``, or ``name`` in a run of one UDF."""
        return f"{self.group}/{self.name}" if self.group else self.name

    @property
    def fill(self):
        return fill_value(self.dtype)

    @property
    def nbytes(self) -> int:
        return int(prod(self.shape)) * self.dtype.itemsize


@dataclass(frozen=True)
class StoreLayout:
    """What a run stores: nav and sig shapes and one :class:`ArraySpec` per kept buffer."""

    nav_shape: tuple
    sig_shape: tuple
    arrays: tuple  # of ArraySpec
    #: frames of the longest partition: chunks no longer than a partition's block are
    #: written whole by one merge (no read-modify-write of a chunk two partitions share)
    partition_frames: int = 0

    def chunks(self, spec) -> tuple:
        """Chunks of the nav array ``spec`` (see :func:`nav_chunks`)."""
        entry = max(1, int(prod(spec.extra_shape)) * spec.dtype.itemsize)
        target = CHUNK_BYTES if not self.partition_frames \
            else max(entry, min(CHUNK_BYTES, self.partition_frames * entry))
        return nav_chunks(self.nav_shape, spec.extra_shape, spec.dtype, target)

    def nav_arrays(self):
        return [a for a in self.arrays if a.kind == "nav"]

    def other_arrays(self):
        return [a for a in self.arrays if a.kind != "nav"]

    def metadata(self, complete: bool, dataset: str, groups) -> dict:
        """The store's own description (what ``ctx.load`` and ``resume`` read back)."""
        return {"format": "udfkit-results", "version": 1, "complete": bool(complete),
                "dataset": dataset, "nav_shape": list(self.nav_shape),
                "sig_shape": list(self.sig_shape), "udfs": groups,
                "arrays": {a.key: {"kind": a.kind, "extra_shape": list(a.extra_shape),
                                   "dtype": a.dtype.str, "shape": list(a.shape)}
                           for a in self.arrays}}


def group_names(classes) -> list:
    """One group name per UDF: ``""`` when there is one UDF, else the class names, made
    unique by a ``_1``, ``_2``... suffix.

    Examples
    --------
    >>> group_names(["SumUDF"]), group_names(["SumUDF", "MapUDF", "SumUDF"])
    ([''], ['SumUDF', 'MapUDF', 'SumUDF_1'])
    """
    if len(classes) == 1:
        return [""]
    seen: dict = {}
    out = []
    for c in classes:
        k = seen.get(c, 0)
        seen[c] = k + 1
        out.append(c if k == 0 else f"{c}_{k}")
    return out


def flat_boxes(shape, start: int, stop: int) -> list:
    """The flat C-order range ``[start, stop)`` of an array of ``shape`` as boxes.

    Returns ``[(offset, slices), ...]`` in order, ``offset`` being the flat position of the
    box's first element relative to ``start``; together the boxes cover the range once.

    Examples
    --------
    >>> [(o, [(s.start, s.stop) for s in sl]) for o, sl in flat_boxes((3, 4), 2, 11)]
    [(0, [(0, 1), (2, 4)]), (2, [(1, 2), (0, 4)]), (6, [(2, 3), (0, 3)])]
    >>> flat_boxes((3, 4), 4, 12) == [(0, (slice(1, 3), slice(0, 4)))]
    True
    """
    shape = tuple(int(s) for s in shape)
    out: list = []

    def rec(dims, a, b, prefix, base):
        if a >= b:
            return
        if len(dims) == 1:
            out.append((base + a - start0, prefix + (slice(a, b),)))
            return
        inner = prod(dims[1:])
        full = tuple(slice(0, d) for d in dims[1:])
        i0, r0 = divmod(a, inner)
        i1, r1 = divmod(b, inner)
        if i0 == i1:
            rec(dims[1:], r0, r1, prefix + (slice(i0, i0 + 1),), base + i0 * inner)
            return
        if r0:
            rec(dims[1:], r0, inner, prefix + (slice(i0, i0 + 1),), base + i0 * inner)
            i0 += 1
        if i1 > i0:
            out.append((base + i0 * inner - start0, prefix + (slice(i0, i1),) + full))
        if r1:
            rec(dims[1:], 0, r1, prefix + (slice(i1, i1 + 1),), base + i1 * inner)

    start0 = start
    rec(shape, start, stop, (), 0)
    return out


def nav_chunks(nav_shape, extra_shape, dtype, target: int = CHUNK_BYTES) -> tuple:
    """Chunks of a nav array: the whole extra shape, then whole trailing nav axes while they
    fit ``target`` bytes, then as many entries of the next axis as fit (on an axis other than
    the first, the largest divisor of its length that fits).

    Examples
    --------
    >>> nav_chunks((64, 64), (), np.float32, target=4096)
    (16, 64)
    >>> nav_chunks((4, 1000), (32, 32), np.float32, target=1 << 20)
    (1, 250, 32, 32)
    >>> nav_chunks((1000,), (32, 32), np.float32, target=1 << 20)
    (256, 32, 32)
    """
    entry = max(1, int(prod(extra_shape)) * np.dtype(dtype).itemsize)
    chunks = list(extra_shape)
    size = entry
    nav = list(nav_shape)
    head: list[int] = []
    while nav:
        d = nav.pop()
        if size * d <= target:
            head.insert(0, d)
            size *= d
        else:
            fit = max(1, min(d, target // size))
            if nav:
                # an inner axis is cut into equal chunks (a divisor of its length): every
                # chunk is then one flat range of positions, all of one length, so that a
                # partition's own chunks are its range rounded inwards to that length
                # (direct writes, udf.store.direct.owned_range)
                fit = max(k for k in range(1, fit + 1) if d % k == 0)
            head.insert(0, fit)
            head = [1] * len(nav) + head
            break
    return tuple(max(1, c) for c in head) + tuple(max(1, c) for c in chunks)
