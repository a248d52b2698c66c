"""The store side of a run's plan (``Context.plan(..., out=...)``): partitions cut so that a
worker's nav results stay small, and :class:`StorePlan` (format, arrays and their chunks,
bytes to write, who writes).

Partitions of a run with results on disk
----------------------------------------
A worker holds its partition's nav buffers whole until the partition ends. The data set's
partitions are sized by the bytes they *read*; a UDF whose nav results are as large as its
input (a processed frame per position) would make a worker hold hundreds of MiB. So a run
with ``out=`` cuts every partition whose nav results exceed :data:`PARTITION_RESULT_BYTES`
into equal pieces (where the format can cut partitions, see
:func:`udfkit.io.splitting.can_split`; not with a halo). The cut depends only on the data
set and the UDFs' buffers, so a resumed run cuts alike (the journal's fingerprint holds the
partitions).
"""

from __future__ import annotations

from dataclasses import dataclass
from math import ceil, prod

import numpy as np

from .direct import DIRECT_FORMATS, owned_range

__all__ = ["PARTITION_RESULT_BYTES", "StorePlan", "cut_partitions", "plan_store"]

#: largest nav results of one partition in a run with results on disk (bytes, all UDFs)
PARTITION_RESULT_BYTES = 32 << 20


def _row_bytes(specs) -> int:
    return sum(int(prod(s.extra_shape)) * np.dtype(s.dtype).itemsize
               for sp in specs for s in sp.values() if s.kind == "nav")


def cut_partitions(partitions, specs, align: int = 1, limit: int | None = None):
    """``(partitions, reason)``: ``partitions`` with those whose nav results exceed
    ``limit`` bytes (default :data:`PARTITION_RESULT_BYTES`) cut into equal pieces (cut
    points on multiples of ``align``), re-indexed in nav order; ``reason`` is None where
    nothing was cut."""
    from ...io.splitting import can_split, sub_partition

    limit = PARTITION_RESULT_BYTES if limit is None else int(limit)
    row = _row_bytes(specs)
    if row == 0 or not partitions or not all(can_split(p) for p in partitions):
        return list(partitions), None
    most = max(1, limit // row)
    if all(p.num_frames <= most for p in partitions):
        return list(partitions), None
    align = max(1, int(align))
    out: list = []
    for p in partitions:
        start, stop = int(p.start), int(p.stop)
        pieces = max(1, ceil((stop - start) / most))
        cuts = sorted({start, stop} | {(start + (stop - start) * k // pieces) // align * align
                                       for k in range(1, pieces)})
        cuts = [c for c in cuts if start <= c <= stop]
        for a, b in zip(cuts, cuts[1:]):
            if b > a:
                out.append(sub_partition(p, a, b, len(out)))
    return out, (f"cut into {len(out)} partitions (was {len(partitions)}) so that a worker's "
                 f"nav results stay <= {limit / 2**20:g} MiB "
                 f"({row} bytes per position)")


@dataclass(frozen=True)
class StorePlan:
    """Where and how a run's results go to disk.

    Attributes
    ----------
    path : str
    format : {"zarr", "hdf5", "npy"}
    compression : object
    arrays : tuple of dict
        Per stored array: ``key``, ``kind``, ``shape``, ``dtype``, ``chunks`` (nav arrays of
        zarr and compressed HDF5 stores; ``None``: one contiguous array), no shards.
    nav_bytes : int
        Bytes of nav results the run writes.
    writers : str
        Who writes the nav rows (``"workers"``, ``"main process"``), and why.
    main_rows : int
        Nav rows (positions x arrays) the main process writes itself: rows in chunks that
        two partitions share, or all where workers do not write.
    cut : str or None
        How the partitions were cut for the store (see the module docstring).
    """

    path: str
    format: str
    compression: object
    arrays: tuple
    nav_bytes: int
    writers: str
    main_rows: int
    cut: str | None = None

    def to_dict(self) -> dict:
        return {"path": self.path, "format": self.format,
                "compression": None if self.compression is None else str(self.compression),
                "arrays": [dict(a, shape=list(a["shape"]),
                                chunks=None if a["chunks"] is None else list(a["chunks"]))
                           for a in self.arrays],
                "nav_bytes": self.nav_bytes, "writers": self.writers,
                "main_rows": self.main_rows, "cut": self.cut}

    def lines(self, human) -> list:
        out = [f"  store        {self.path} ({self.format}"
               + ("" if self.compression is None else f", {self.compression}")
               + f"), {human(self.nav_bytes)} of nav results to write; {self.writers}"]
        for a in self.arrays:
            how = ("" if a["kind"] != "nav" else
                   ", contiguous" if a["chunks"] is None else f", chunks {a['chunks']}, no shards")
            out.append(f"    {a['key']:<20} {a['kind']:<6} {a['dtype']:<9} {a['shape']}{how}")
        return out


def plan_store(target, udfs, specs, nav_shape, sig_shape, total_frames, part_plans,
               executor_kind: str, cut: str | None = None) -> StorePlan:
    """The :class:`StorePlan` of a run with ``out=target`` (a ResultStore)."""
    from ._layout import group_names
    from .target import build_layout, direct_chunk

    groups = group_names([type(u).__name__ for u in udfs])
    layout = build_layout(udfs, specs, groups, nav_shape, sig_shape, total_frames,
                          [(p.start, p.stop) for p in part_plans])
    chunked = target.format == "zarr" or target.compression is not None
    arrays = tuple({"key": a.key, "kind": a.kind, "shape": tuple(a.shape), "dtype": a.dtype.name,
                    "chunks": layout.chunks(a) if a.kind == "nav" and chunked else None}
                   for a in layout.arrays)
    navs = layout.nav_arrays()
    nav_bytes = sum(a.nbytes for a in navs)
    nav_size = int(prod(nav_shape))
    ranges = [(max(0, p.start), min(nav_size, p.stop)) for p in part_plans if p.processed]
    direct = {}
    if target.direct is not False and target.format in DIRECT_FORMATS:
        direct = {id(a): direct_chunk(target.format, layout, a) for a in navs
                  if not _merges(udfs, groups, a)}
    main_rows = 0
    for a in navs:
        c = direct.get(id(a))
        for lo, hi in ranges:
            if c is None:
                main_rows += hi - lo
            else:
                s, e = owned_range(lo, hi, c, nav_size)
                main_rows += (hi - lo) - (e - s)
    if not navs:
        writers = "no nav results"
    elif target.format not in DIRECT_FORMATS:
        writers = "the main process writes (HDF5: no concurrent writers)"
    elif target.direct is False:
        writers = "the main process writes (direct=False)"
    elif not direct:
        writers = "the main process writes (the UDFs merge their nav rows themselves)"
    else:
        where = ("workers on other machines only where they see the path (else the main "
                 "process writes)" if executor_kind == "dask" else "")
        writers = (f"workers write their partitions' chunks directly{'; ' + where if where else ''}"
                   f"; the main process writes {main_rows} rows of shared chunks")
    return StorePlan(target.path, target.format, target.compression, arrays, nav_bytes, writers,
                     main_rows, cut)


def _merges(udfs, groups, spec) -> bool:
    from ..base import _overrides

    for u, g in zip(udfs, groups):
        if g == spec.group:
            return _overrides(type(u), "merge")
    return False

