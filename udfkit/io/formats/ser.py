"""The ``ser`` format: FEI/ThermoFisher TIA series files (``<name>_<N>.ser``, with ``<name>.emi``).

A ``.ser`` file holds a series of elements (2D images or 1D spectra) and a table of their byte
offsets; each element is a small header (calibration, data type, size) followed by its pixels,
and tags (time, stage position) may lie between the elements, so frames are read through an
explicit offset table (:attr:`~udfkit.io.layout.FileLayout.frame_offsets`) by udfkit's read
planner and I/O backends. Every element's header is checked against the first one at load: an
element of another data type or size is an error naming it.

The navigation shape comes from the header's dimension records (TIA lists the fastest axis
first; their order is taken from the stage positions in the tags where the tags hold them, as
rosettasciio does). A series that stopped early (fewer valid elements than the header's total)
is one axis of the valid elements, a map that stopped early keeps its shape and reports the
positions without a frame as invalid.

**Row order.** TIA stores images bottom row first. Like LiberTEM (through ncempy) and
rosettasciio, udfkit returns them top row first (``flip_rows=True``, the default): each tile is
gathered from the mirrored rows of the file by udfkit's numba row gather, which flips, converts
the dtype and writes a C-contiguous tile in one pass. That is the cost of any dtype conversion
(a UDF with float32 input pays nothing more), but a UDF that reads the stored dtype gets copies
instead of views of the file: SumUDF on 256 MiB of uint16 images, inline on a 2-core machine,
ran at 0.5-0.9 GB/s flipped and 1.8-2.2 GB/s in file order (a raw file: 1.7-2.0 GB/s).
``flip_rows=False`` gives the rows in file order, read in place (and then allows any
``sig_shape`` with the pixel count of a frame).

The ``.emi`` file next to the ``.ser`` holds the acquisition metadata (XML); it is optional:
without it the ``.ser`` is read alone. Given the ``.emi`` as ``path``, udfkit reads its only
``.ser``; with several (one per detector) it asks which.
"""

from __future__ import annotations

import os
from math import prod
from typing import Any

import numpy as np

from ...common import Shape, Slice
from ...common.parse import ShapeLike
from ...errors import DataSetError
from ..aligned import aligned_empty
from ..base import DataSetMeta, FrameSource, IOBackend, Partition
from ..file_based import FileDataSet, FilePartition
from ..layout import FileLayout, FileSet
from ..tiles import DataTile
from ._common import check_path
from ._fixed_frames import resolve_fixed_frames
from ._ser_file import (
    DATA_TYPES,
    ELEMENT_FIELDS,
    TWO_D,
    element_table,
    emi_for,
    read_emi,
    read_ser_header,
    sers_for,
    tag_positions,
    write_ser,
)
from .base import COMMON_PARAMS, Format, Param

__all__ = ["SERFormat", "SERDataSet", "SERPartition", "write_ser"]

MAX_NAV_DIMS = 3


class SERFormat(Format):
    """TIA ``.ser`` files (or their ``.emi``)."""

    name = "ser"
    dataset = "udfkit.io.formats.ser:SERDataSet"
    extensions = (".ser", ".emi")
    magic = (b"II\x97\x01",)
    params = (
        Param("path", "path", None, "the .ser file (or its .emi)"),
        Param("emipath", "path", None, "the .emi with the metadata (default: <name>.emi next to "
                                       "<name>_<N>.ser, if there)"),
        COMMON_PARAMS["nav_shape"], COMMON_PARAMS["sig_shape"], COMMON_PARAMS["sync_offset"],
        COMMON_PARAMS["io_backend"], COMMON_PARAMS["num_partitions"], COMMON_PARAMS["allow_partial"],
        Param("flip_rows", "bool", True,
              "images top row first, as TIA shows them (default); false: rows in file order"),
    )


class _FlippedRows(FrameSource):
    """Frames of a source with their rows reversed, copied into a reused buffer (for readers
    that take :meth:`SERPartition.open_source` directly, such as the ``stack`` format, instead
    of :meth:`SERPartition.get_tiles`)."""

    def __init__(self, inner: FrameSource, sig_shape):
        self.inner = inner
        self.sig_shape = tuple(sig_shape)
        self.buf = None

    def read(self, i0, i1):
        flat, offsets = self.inner.read(i0, i1)
        items = prod(self.sig_shape)
        n = len(offsets)
        if self.buf is None or self.buf.size < n * items or self.buf.dtype != flat.dtype:
            self.buf = np.empty(n * items, dtype=flat.dtype)
        out = self.buf[:n * items]
        frames = out.reshape((n,) + self.sig_shape)
        for k, o in enumerate(offsets):
            frames[k] = flat[int(o):int(o) + items].reshape(self.sig_shape)[::-1]
        return out, np.arange(n, dtype=np.int64) * items

    def close(self):
        self.inner.close()
        self.buf = None


class SERPartition(FilePartition):
    """A partition of a :class:`SERDataSet`; with ``flip_rows`` its tiles and frames have the
    rows of the stored images reversed.

    Parameters
    ----------
    flip_rows : bool
    **kwargs
        See :class:`~udfkit.io.file_based.FilePartition`.
    """

    def __init__(self, *, flip_rows: bool, **kwargs: Any):
        super().__init__(**kwargs)
        self.flip_rows = bool(flip_rows)

    def open_source(self, frames: np.ndarray, depth: int) -> FrameSource:
        source = super().open_source(frames, depth)
        return _FlippedRows(source, self.fileset.sig_shape) if self.flip_rows else source

    def get_tiles(self, tiling_scheme, dest_dtype="float32", roi=None):
        if not self.flip_rows:
            return super().get_tiles(tiling_scheme, dest_dtype, roi)
        return self._flipped_tiles(tiling_scheme, np.dtype(dest_dtype), roi)

    def _flipped_tiles(self, scheme, dest_dtype, roi):
        # one pass per tile: the numba row gather of udfkit's decode path, given the rows of
        # each signal slice bottom up (tile row i is file row H - 1 - (r0 + i)), reads,
        # flips and converts at once into a reused C-contiguous buffer
        from .. import _decode

        sel = self.selected_positions(roi)
        if sel.size == 0:
            return
        sig = self.shape.sig.to_tuple()
        height, width = sig
        stored = self.raw_dtype
        numba_ok = stored.isnative and _decode.kernel_supports(stored, dest_dtype)
        rows = []
        for sl in scheme.slices:
            (r0, c0), (h, w) = sl.origin, sl.shape.to_tuple()
            rows.append(((height - 1 - (r0 + np.arange(h, dtype=np.int64))) * width + c0, w,
                         (h, w), sl))
        depth = scheme.depth
        buf = aligned_empty(depth * max(prod(r[2]) for r in rows), dest_dtype)
        file_base = self.start + self.sync_offset
        with FilePartition.open_source(self, sel + file_base, depth) as source:
            for b0 in range(0, sel.size, depth):
                block = sel[b0:b0 + depth]
                n = block.size
                flat, offsets = source.read(b0, b0 + n)
                offsets = np.asarray(offsets, dtype=np.int64)
                frame_index = block + self.start
                origin_nav = self.start + int(block[0])
                for idx, (row_offsets, row_len, shape, sl) in enumerate(rows):
                    out = buf[:n * prod(shape)]
                    if numba_ok:
                        _decode.gather_rows(flat, offsets, row_offsets, row_len, out)
                    else:
                        at = (offsets[:, None] + row_offsets[None, :])[..., None] + np.arange(row_len)
                        out[...] = flat[at.reshape(-1)]
                    data = out.reshape((n,) + shape)
                    data.flags.writeable = False
                    where = Slice((origin_nav,) + sl.origin, Shape((n,) + shape, sig_dims=2))
                    yield DataTile(data, where, idx, frame_index, b0)


class SERDataSet(FileDataSet):
    """A TIA series (``.ser``) of images or spectra, with its ``.emi`` metadata if present.

    Parameters
    ----------
    path : str or os.PathLike
        The ``.ser`` file, or the ``.emi`` file of a single ``.ser``.
    emipath : str or os.PathLike, optional
        The ``.emi`` whose metadata to read (LiberTEM's second parameter). Default:
        ``<name>.emi`` next to ``<name>_<N>.ser`` if it exists; the data never need it.
    nav_shape : tuple of int, optional
        Default: from the header's dimension records (see the module docstring).
    sig_shape : tuple of int, optional
        Default ``(height, width)`` of the images, or ``(length,)`` of the spectra. With
        ``flip_rows`` an image keeps its shape.
    sync_offset : int
        Positive: skip that many frames at the start; negative: the first ``|sync_offset|``
        positions have no frame.
    io_backend : str or IOBackend, optional
        ``"mmap"`` (default), ``"buffered"`` or ``"direct"``.
    num_partitions : int, optional
    allow_partial : bool
        Accept fewer frames than a given ``nav_shape`` needs.
    flip_rows : bool
        Images top row first (default), as TIA, LiberTEM and rosettasciio show them; False:
        in file order (bottom row first).

    Examples
    --------
    >>> import os, tempfile
    >>> import numpy as np
    >>> from udfkit import Context
    >>> from udfkit.io.formats.ser import write_ser
    >>> path = os.path.join(tempfile.mkdtemp(), "scan_1.ser")
    >>> frames = np.arange(6 * 2 * 3, dtype="float32").reshape(6, 2, 3)
    >>> write_ser(path, frames, nav_dims=(3, 2))          # TIA lists the fast axis first
    >>> ds = Context.make_with("inline").load("ser", path=path)
    >>> ds.shape
    Shape((2, 3, 2, 3), sig_dims=2)
    >>> from udfkit.testing import read_all
    >>> bool((read_all(ds)[0] == frames[:, ::-1]).all())  # TIA stores the bottom row first
    True
    """

    format_name = "ser"

    def __init__(self, path: str | os.PathLike[str] | None = None,
                 emipath: str | os.PathLike[str] | None = None, nav_shape: ShapeLike | None = None,
                 sig_shape: ShapeLike | None = None, sync_offset: int = 0,
                 io_backend: str | IOBackend | None = None, num_partitions: int | None = None,
                 allow_partial: bool = False, flip_rows: bool = True):
        super().__init__(nav_shape=nav_shape, sig_shape=sig_shape, sync_offset=sync_offset,
                         num_partitions=num_partitions, allow_partial=allow_partial,
                         io_backend=io_backend)
        self._path_arg = path
        self._emi_arg = emipath
        self._flip_arg = flip_rows
        self._flip = False
        self._info: dict = {}

    def _paths(self) -> tuple:
        """``(ser path, emi path or None)`` from the ``path`` parameter."""
        path = check_path(self._path_arg, "ser file")
        emi = None if self._emi_arg is None else check_path(self._emi_arg, "emi file")
        if path.lower().endswith(".emi"):
            sers = sers_for(path)
            if not sers:
                stem = os.path.splitext(os.path.basename(path))[0]
                raise DataSetError(f"emi file {path!r}: its series file {stem + '_1.ser'!r} is "
                                   f"missing (expected {stem}_<N>.ser next to it); the .emi holds "
                                   "only metadata (and at most a single spectrum, which is not read)")
            if len(sers) > 1:
                names = [os.path.basename(s) for s in sers]
                raise DataSetError(f"emi file {path!r} has {len(sers)} series files {names}; load "
                                   "one of them: ctx.load('ser', path=...)")
            return sers[0], emi or path
        if emi is None:
            emi = emi_for(path)
            emi = emi if os.path.isfile(emi) else None
        return path, emi

    def _initialize(self) -> DataSetMeta:
        path, emi = self._paths()
        where = f"ser file {path!r}"
        h = read_ser_header(path)
        valid, total = h["ValidNumberElements"], h["TotalNumberElements"]
        if valid == 0:
            raise DataSetError(f"{where} holds no valid element (ValidNumberElements is 0 of "
                               f"{total}): the acquisition stopped before the first frame, or it is "
                               "a single spectrum, which TIA stores in the .emi")
        els = element_table(path, h)
        kind = h["DataTypeID"]
        size_fields = ("ArraySizeY", "ArraySizeX") if kind == TWO_D else ("ArrayLength",)
        first = els[0]
        for field in ("DataType",) + size_fields:
            bad = np.flatnonzero(els[field] != first[field])
            if bad.size:
                k = int(bad[0])
                raise DataSetError(
                    f"{where}: the header of element {k} disagrees with the first element: "
                    f"{field} {int(els[field][k])}, expected {int(first[field])} as in element 0 "
                    f"({bad.size} element{'s' if bad.size > 1 else ''} differ)")
        code = int(first["DataType"])
        if code not in DATA_TYPES:
            raise DataSetError(f"{where}: data type code {code} is not read; expected one of "
                               f"{sorted(DATA_TYPES)} ({', '.join(DATA_TYPES.values())})")
        dtype = np.dtype(DATA_TYPES[code])
        native_sig = tuple(int(first[f]) for f in size_fields)
        if 0 in native_sig:
            raise DataSetError(f"{where}: element 0 has size {native_sig}; expected a frame of at "
                               "least one pixel")
        frame_bytes = prod(native_sig) * dtype.itemsize
        head_bytes = np.dtype(ELEMENT_FIELDS[kind]).itemsize
        offsets = h["data_offsets"] + head_bytes
        size = os.path.getsize(path)
        past = np.flatnonzero(offsets + frame_bytes > size)
        if past.size:
            k = int(past[0])
            raise DataSetError(f"{where} is truncated: element {k} needs bytes {int(offsets[k])} to "
                               f"{int(offsets[k]) + frame_bytes} ({native_sig} of {dtype}), the file "
                               f"has {size}")
        native_nav, nav_order = self._native_nav(path, h)
        allow_partial = self._allow_partial or (self._nav_shape_arg is None and valid < prod(native_nav))
        desc = f"{head_bytes} header bytes + {native_sig} of {dtype}"
        nav, sig, sync_offset = resolve_fixed_frames(
            where, native_nav=native_nav, native_sig=native_sig, nav_shape=self._nav_shape_arg,
            sig_shape=self._sig_shape_arg, image_count=valid, sync_offset=self._sync_offset_arg,
            allow_partial=allow_partial, have=f"{valid} valid elements", frame_desc=desc)
        self._flip = bool(self._flip_arg) and kind == TWO_D
        if self._flip and sig != native_sig:
            raise DataSetError(f"{where}: sig_shape {sig} with flip_rows=True: the rows of an image "
                               f"are reversed, so a frame keeps its shape {native_sig}; pass "
                               "flip_rows=False to reshape the rows as stored")
        self._fileset = FileSet([FileLayout(path, 0, dtype, sig, valid, frame_offsets=offsets)])
        steps = np.unique(np.diff(offsets))
        self._info = {
            "series_version": f"{h['SeriesVersion']:#06x}",
            "elements": "2D images" if kind == TWO_D else "1D spectra",
            "tag_type": f"{h['TagTypeID']:#06x}",
            "total_elements": total, "valid_elements": valid,
            "dimensions": [{"size": d["DimensionSize"], "description": d["Description"],
                            "units": d["Units"], "offset": d["CalibrationOffset"],
                            "delta": d["CalibrationDelta"]} for d in h["dimensions"]],
            "nav_order": nav_order,
            "element_header_bytes": head_bytes,
            "first_frame_offset": int(offsets[0]),
            "frame_stride": int(steps[0]) if steps.size == 1 else None,
            "flip_rows": self._flip,
            "emi": read_emi(emi, self._emi_index(path)) if emi else None,
        }
        if kind == TWO_D:
            self._info["calibration"] = {k: float(first[k]) for k in (
                "CalibrationOffsetX", "CalibrationDeltaX", "CalibrationOffsetY", "CalibrationDeltaY")}
        metadata = {"path": path, "file_bytes": size, "io_backend": self._backend.name}
        if emi:
            metadata["emi"] = emi
        return DataSetMeta(shape=Shape(nav + sig, sig_dims=len(sig)), raw_dtype=dtype,
                           image_count=valid, sync_offset=sync_offset, metadata=metadata)

    @staticmethod
    def _emi_index(path: str) -> int:
        stem = os.path.splitext(os.path.basename(path))[0]
        num = stem.rsplit("_", 1)[-1]
        return int(num) - 1 if num.isdigit() and int(num) > 0 else 0

    @staticmethod
    def _native_nav(path, h) -> tuple:
        """``(nav shape, how its order was chosen)`` from the dimension records."""
        valid, total = h["ValidNumberElements"], h["TotalNumberElements"]
        sizes = [int(d["DimensionSize"]) for d in h["dimensions"]]
        if len(sizes) <= 1:
            # a series: an aborted one is just shorter
            return (valid,), "one axis"
        if prod(sizes) != total:
            return (valid,), (f"one axis (the dimension sizes {sizes} do not multiply to the "
                              f"{total} elements)")
        pos = tag_positions(path, h)
        if pos is not None and valid > 1 and pos[1][0] != pos[1][1]:
            nav, order = tuple(sizes), "dimension records in order (y changes first in the tags)"
        else:
            nav, order = tuple(reversed(sizes)), "dimension records reversed (first is fastest)"
        nav = tuple(s for s in nav if s != 1) or (1,)
        if len(nav) > MAX_NAV_DIMS:
            return (total,), f"one axis ({len(nav)} dimensions)"
        return nav, order

    def get_partitions(self) -> list[Partition]:
        meta = self._require_meta()
        return [SERPartition(flip_rows=self._flip, fileset=self._fileset, backend=self._backend,
                             shape=meta.shape, start=start, stop=stop, sync_offset=meta.sync_offset,
                             index=i)
                for i, (start, stop) in enumerate(self.partition_bounds())]

    def layout_info(self) -> dict:
        """Header facts for ``udfkit info``: elements, dimensions, offsets, row order, emi."""
        self._require_meta()
        return dict(self._info)
