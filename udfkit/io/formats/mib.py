"""The ``mib`` format: Quantum Detectors Merlin files (one chip or a 2×2 quad).

What a MIB acquisition is
-------------------------
A ``.mib`` file is a sequence of records, each a frame header and the frame's counters
(:mod:`udfkit.io.formats._mib_header` lists the fields). An acquisition may be split over a
numbered series of files (``scan1.mib``, ``scan2.mib``, ...), and a ``.hdr`` file next to them
describes the acquisition, the scan shape included. ``path`` is the ``.hdr`` or any ``.mib``
of the series; the files are ordered by the sequence number of their first frame, which must
continue from one file to the next (a missing file in the middle is an error).

How it is read
--------------
* Decoded layouts (pixel types ``U08``, ``U16``, ``U32``: 1 or 6, 12 and 24-bit counters as
  big-endian integers) are frames at a fixed stride behind a per-frame header: one
  :class:`~udfkit.io.layout.FileLayout` per file, read by udfkit's planner and I/O backends
  (zero-copy views with ``mmap``, byte swap fused into the conversion otherwise).
* The raw layout (``R64``: bit-packed 64-bit words, chips interleaved row by row) is moved
  the same way as records of bytes and decoded by numba kernels
  (:class:`~udfkit.io.formats._mib_decode.RawMIBDecoder`, a
  :class:`~udfkit.io.decoders.FrameDecoder`), whole frames at a time, straight into the
  dtype the UDF asks for. 1, 6, 12 and 24-bit counters, one chip or a 2×2 quad.

Frames keep the row order of the file, as LiberTEM reads them. (rosettasciio's
``file_reader`` returns every layout it reads flipped upside down: ``np.flip(axis=-2)``.)

Checks at load
--------------
Every frame header of every file is compared with the first one (layout fields byte for
byte, sequence numbers counting up), vectorized over a mapping of the headers; a frame that
disagrees is an error naming the file and frame. The counter depth of the frame headers and
of the ``.hdr`` must agree. Files must hold whole records (the last one may end early with
``allow_partial=True``).

The scan shape comes from ``nav_shape``, else the ``.hdr``: ``ScanY × ScanX`` where given,
else ``Frames in Acquisition / Frames per Trigger`` rows of ``Frames per Trigger`` frames
(one row: a 1-D scan). With one frame per trigger (a pixel trigger) the ``.hdr`` does not
say how long a row is; the error asks for ``nav_shape``.
"""

from __future__ import annotations

import os
from math import prod

import numpy as np

from ...common import Shape
from ...common.parse import ShapeLike
from ...errors import DataSetError
from ..base import DataSetMeta, IOBackend
from ..file_based import FileDataSet
from ..layout import FileLayout, FileSet
from ._common import (
    bound_files_per_partition,
    check_frame_count,
    check_path,
    check_sync_offset,
    parse_dims,
)
from .base import COMMON_PARAMS, Format, Param, read_head

__all__ = ["MIBFormat", "MIBDataSet", "nav_shape_from_hdr"]

_MAGIC = b"MQ1,"
_HDR_MAGIC = b"HDR,"


class MIBFormat(Format):
    """Quantum Detectors Merlin ``.mib`` files, found from their ``.hdr`` or any ``.mib``."""

    name = "mib"
    dataset = "udfkit.io.formats.mib:MIBDataSet"
    extensions = (".mib", ".hdr")
    magic = (_MAGIC,)
    params = (
        Param("path", "path", None, "the .hdr file or any .mib file of the acquisition"),
        COMMON_PARAMS["nav_shape"], COMMON_PARAMS["sig_shape"], COMMON_PARAMS["sync_offset"],
        COMMON_PARAMS["io_backend"], COMMON_PARAMS["num_partitions"], COMMON_PARAMS["allow_partial"],
        Param("disable_glob", "bool", False,
              "read only the given .mib file, not the numbered series it belongs to"),
    )

    @classmethod
    def guess_can_open(cls, path: str) -> float:
        if not os.path.isfile(path):
            return 0.0
        head = read_head(path, 8)
        low = path.lower()
        if head.startswith(_MAGIC):
            return 1.0
        if low.endswith(".hdr") and head.startswith(_HDR_MAGIC):
            return 0.9  # a Merlin acquisition header (other .hdr files do not start so)
        return 0.5 if low.endswith(".mib") else 0.0


def nav_shape_from_hdr(hdr: dict, where: str, image_count: int) -> tuple:
    """The scan shape a Merlin ``.hdr`` gives (see the module docstring).

    Examples
    --------
    >>> nav_shape_from_hdr({"Frames in Acquisition (Number)": "12",
    ...                     "Frames per Trigger (Number)": "4"}, "a.hdr", 12)
    (3, 4)
    >>> nav_shape_from_hdr({"Frames in Acquisition (Number)": "9",
    ...                     "Frames per Trigger (Number)": "9"}, "a.hdr", 9)
    (9,)
    """
    if "ScanX" in hdr and "ScanY" in hdr:
        try:
            return (int(hdr["ScanY"]), int(hdr["ScanX"]))
        except ValueError:
            raise DataSetError(f"{where}: ScanX/ScanY: expected integers, found "
                               f"{hdr['ScanX']!r}/{hdr['ScanY']!r}") from None
    keys = ("Frames in Acquisition (Number)", "Frames per Trigger (Number)")
    try:
        total, per_trigger = (int(hdr[k]) for k in keys)
    except (KeyError, ValueError):
        found = {k: hdr.get(k) for k in keys}
        raise DataSetError(f"{where}: expected the fields {list(keys)} with integers to find the "
                           f"scan shape, found {found}; pass nav_shape (the files hold "
                           f"{image_count} frames)") from None
    if total == 1:
        return (1,)
    if total > 0 and per_trigger > 1 and total % per_trigger == 0:
        rows = total // per_trigger
        return (rows, per_trigger) if rows > 1 else (per_trigger,)
    why = ("one frame per trigger (a pixel trigger): the header does not say how many frames "
           "make a scan row" if per_trigger == 1 else
           "an acquisition of unknown length" if total <= 0 else
           f"{total} is not a whole number of rows of {per_trigger}")
    raise DataSetError(f"{where}: cannot tell the scan shape from Frames in Acquisition = {total} "
                       f"and Frames per Trigger = {per_trigger} ({why}); pass nav_shape, e.g. "
                       f"nav_shape=({image_count},) for all {image_count} frames in a line, or "
                       "nav_shape=(rows, columns)")


class MIBDataSet(FileDataSet):
    """A Merlin acquisition: one ``.mib`` file or a numbered series, with its ``.hdr``.

    Parameters
    ----------
    path : str
        The ``.hdr`` file, or any ``.mib`` file of the acquisition.
    nav_shape : tuple of int, optional
        The scan shape; default from the ``.hdr`` (see the module docstring).
    sig_shape : tuple of int, optional
        Another frame shape with the same number of pixels.
    sync_offset : int
        Skip (positive) or insert (negative) frames at the start.
    io_backend : str or IOBackend, optional
    num_partitions : int, optional
    allow_partial : bool
        Accept fewer frames than ``nav_shape`` needs, and a last record cut short (an aborted
        acquisition).
    disable_glob : bool
        Read only ``path`` (a ``.mib``), not the numbered series around it.

    Examples
    --------
    >>> import numpy as np, os, tempfile
    >>> from udfkit import Context
    >>> from udfkit.io.formats.mib import write_hdr, write_mib
    >>> d = tempfile.mkdtemp()
    >>> frames = np.arange(6 * 4 * 64).reshape(6, 4, 64) % 4096
    >>> write_mib(os.path.join(d, "scan.mib"), frames, depth=12)
    >>> write_hdr(os.path.join(d, "scan.hdr"), frames=6, frames_per_trigger=3, depth=12)
    >>> with Context.make_with("inline") as ctx:
    ...     ds = ctx.load("mib", path=os.path.join(d, "scan.hdr"))
    ...     ds.shape, ds.dtype.str
    (Shape((2, 3, 4, 64), sig_dims=2), '>u2')
    """

    format_name = "mib"

    def __init__(self, path: str | os.PathLike[str] | None = None, nav_shape: ShapeLike | None = None,
                 sig_shape: ShapeLike | None = None, sync_offset: int = 0,
                 io_backend: str | IOBackend | None = None, num_partitions: int | None = None,
                 allow_partial: bool = False, disable_glob: bool = False):
        super().__init__(nav_shape=nav_shape, sig_shape=sig_shape, sync_offset=sync_offset,
                         num_partitions=num_partitions, allow_partial=allow_partial,
                         io_backend=io_backend)
        self._path_arg = path
        self._disable_glob = bool(disable_glob)
        self._info: dict = {}

    # -- reading the headers ------------------------------------------------------------------

    def _files(self, path: str):
        """``(mib files, hdr path or None, hdr names looked for)``."""
        from ._mib_header import find_hdr, find_series

        if path.lower().endswith(".hdr"):
            files = find_series(path)
            if not files:
                stem = os.path.splitext(os.path.basename(path))[0]
                raise DataSetError(f"Merlin header {path!r}: found no .mib file of its acquisition "
                                   f"next to it (expected {stem}.mib or {stem}<number>.mib in "
                                   f"{os.path.dirname(os.path.abspath(path))!r})")
            return files, path, [path]
        files = [os.path.abspath(path)] if self._disable_glob else find_series(path)
        if os.path.abspath(path) not in files:
            files.append(os.path.abspath(path))
        hdr, tried = find_hdr(path)
        return files, hdr, tried

    def _initialize(self) -> DataSetMeta:
        from ._mib_decode import RawMIBDecoder
        from ._mib_header import (
            PIXEL_TYPES,
            check_frame_headers,
            read_first_header,
            read_hdr,
        )

        path = check_path(self._path_arg, "MIB file")
        files, hdr_path, hdr_tried = self._files(path)
        heads = []
        for f in files:
            head, raw = read_first_header(f)
            heads.append((head.sequence, f, head, raw))
        heads.sort(key=lambda t: t[0])
        _, first_path, ref, ref_raw = heads[0]
        where = (f"MIB file {first_path!r}" if len(heads) == 1 else
                 f"MIB series {first_path!r} ... ({len(heads)} files)")
        for _seq, f, head, _ in heads[1:]:
            if head.fixed != ref.fixed or head.depth != ref.depth:
                raise DataSetError(f"MIB file {f!r}: its frames are {head.describe()}, but "
                                   f"{first_path!r} of the same series has {ref.describe()}; the "
                                   "files of an acquisition must share one layout (pass "
                                   "disable_glob=True to read one file alone)")
        hdr = read_hdr(hdr_path) if hdr_path is not None else None
        depth = self._counter_depth(ref, hdr, hdr_path, first_path)
        pixel_type = ref.pixel_type
        is_raw = pixel_type == "R64"
        quad = ref.num_chips == 4 and ref.layout.upper().startswith("2X2")
        decoder = None
        stored_dtype: np.dtype
        if is_raw:
            if not (ref.num_chips == 1 or quad):
                raise DataSetError(f"MIB file {first_path!r}: the raw layout (R64) of "
                                   f"{ref.num_chips} chips in layout {ref.layout!r} is not "
                                   "supported; udfkit decodes raw files of one chip (1x1) or a "
                                   "2x2 quad; record in a decoded pixel type (U08/U16/U32) instead")
            n_sub = 2 if depth == 24 else 1
            if quad:
                native = (2 * ref.height, ref.width // n_sub // 2)
            else:
                native = (ref.height, ref.width // n_sub)
            problem = RawMIBDecoder.check_shape(depth, native, quad) if \
                ref.width % (n_sub * (2 if quad else 1)) == 0 else \
                f"a raw row of {ref.width} pixels cannot be split into {n_sub} frame(s)"
            if problem:
                raise DataSetError(f"MIB file {first_path!r}: raw {depth}-bit frames of header "
                                   f"width {ref.width} and height {ref.height}: {problem}")
            decoder = RawMIBDecoder(depth, native, quad)
            stored_dtype = np.dtype("u1")
            frame_bytes = decoder.stored_frame_bytes
        else:
            stored_dtype = np.dtype(PIXEL_TYPES[pixel_type][0])
            native = (ref.height, ref.width)
            frame_bytes = prod(native) * stored_dtype.itemsize
        stride = ref.header_bytes + frame_bytes
        desc = (f"a {ref.header_bytes}-byte header and {frame_bytes} bytes of {ref.pixel_type} "
                f"{ref.width}x{ref.height} data")

        counts, sizes = [], []
        expect_seq = ref.sequence
        for i, (seq, f, _head, _) in enumerate(heads):
            size = os.path.getsize(f)
            n, rest = divmod(size, stride)
            last = i == len(heads) - 1
            if rest and not (last and self._allow_partial):
                raise DataSetError(
                    f"MIB file {f!r} has {size} bytes: {n} whole records of {stride} bytes "
                    f"({desc}) and {rest} bytes left over; the file is truncated or its "
                    "frames are not what the first header says"
                    + (" (pass allow_partial=True to read the whole frames of an aborted "
                       "acquisition)" if last else ""))
            if seq != expect_seq:
                prev = heads[i - 1][1]
                if seq > expect_seq:
                    raise DataSetError(
                        f"MIB series: {prev!r} ends with frame {expect_seq - 1} (sequence "
                        f"numbers in the frame headers), but the next file {f!r} starts at frame "
                        f"{seq}: frames {expect_seq}..{seq - 1} are missing (a file in the middle "
                        "of the series is missing)")
                raise DataSetError(
                    f"MIB series: {f!r} starts at frame {seq}, but {prev!r} already holds frames "
                    f"up to {expect_seq - 1}: two acquisitions share the file name pattern; pass "
                    "disable_glob=True to read one file alone")
            file_no = f" (file {i + 1} of {len(heads)})" if len(heads) > 1 else ""
            check_frame_headers(f, n, stride, ref, ref_raw, seq, file_no)
            counts.append(n)
            sizes.append(size)
            expect_seq = seq + n
        image_count = sum(counts)
        if image_count == 0:
            raise DataSetError(f"{where} holds no complete frame ({sum(sizes)} bytes); a frame "
                               f"needs {stride} bytes ({desc})")

        sig_shape = native
        if self._sig_shape_arg is not None:
            sig_shape = parse_dims(self._sig_shape_arg, "sig_shape", where)
            if prod(sig_shape) != prod(native):
                raise DataSetError(f"{where}: sig_shape {sig_shape} has {prod(sig_shape)} pixels, "
                                   f"but the frames are {native} ({prod(native)} pixels)")
        if self._nav_shape_arg is not None:
            nav_shape = parse_dims(self._nav_shape_arg, "nav_shape", where)
            nav_from = "nav_shape"
        elif hdr is not None:
            nav_shape = nav_shape_from_hdr(hdr, f"Merlin header {hdr_path!r}", image_count)
            nav_from = f"{os.path.basename(hdr_path)}"
        else:
            raise DataSetError(
                f"{where}: no nav_shape given and no .hdr file found next to it (looked for "
                f"{', '.join(map(repr, hdr_tried))}); the .hdr file holds the scan shape: pass "
                f"nav_shape, e.g. nav_shape=({image_count},) for all {image_count} frames")
        check_frame_count(where, nav_shape, image_count, self._allow_partial,
                          f"{sum(sizes)} bytes", desc)
        sync_offset = check_sync_offset(where, self._sync_offset_arg, prod(nav_shape), image_count)
        paths = [h[1] for h in heads]
        if is_raw:
            layouts = [FileLayout(p, 0, stored_dtype, (frame_bytes,), n, ref.header_bytes)
                       for p, n in zip(paths, counts)]
        else:
            layouts = [FileLayout(p, 0, stored_dtype, sig_shape, n, ref.header_bytes)
                       for p, n in zip(paths, counts)]
        self._fileset = FileSet(layouts)
        self._decoder = decoder
        self._info = {
            "files": len(paths),
            "pixel_type": pixel_type,
            "counter_depth": depth,
            "chips": f"{ref.num_chips} in layout {ref.layout}",
            "frame_header": f"{ref.header_bytes} bytes, every frame's checked",
            "record": f"{stride} bytes per frame",
            "decoding": (decoder.describe() if decoder is not None else
                         f"none: {stored_dtype.str} frames read in place by the I/O backend"),
            "nav_from": nav_from,
            "row_order": "as in the file (as LiberTEM; rosettasciio flips rows)",
        }
        if hdr_path is not None:
            self._info["hdr"] = hdr_path
        metadata = {"path": path, "file_bytes": sum(sizes), "io_backend": self._backend.name,
                    "paths": tuple(paths), "header": ref.fields, "hdr": hdr}
        return DataSetMeta(shape=Shape(tuple(nav_shape) + tuple(sig_shape), sig_dims=len(sig_shape)),
                           raw_dtype=decoder.dtype if decoder is not None else stored_dtype,
                           image_count=image_count, sync_offset=sync_offset, metadata=metadata)

    @staticmethod
    def _counter_depth(ref, hdr, hdr_path, first_path) -> int:
        """The counter depth: frame header, ``.hdr`` and pixel type must agree."""
        from ._mib_header import PIXEL_TYPES

        allowed = PIXEL_TYPES[ref.pixel_type][1]
        hdr_depth = None
        if hdr is not None and "Counter Depth (number)" in hdr:
            try:
                hdr_depth = int(hdr["Counter Depth (number)"])
            except ValueError:
                raise DataSetError(f"Merlin header {hdr_path!r}: Counter Depth (number): expected "
                                   f"an integer, found {hdr['Counter Depth (number)']!r}") from None
        depth = ref.depth
        if depth is not None and hdr_depth is not None and depth != hdr_depth:
            raise DataSetError(f"MIB file {first_path!r}: its frame headers say {depth}-bit "
                               f"counters, but {hdr_path!r} says Counter Depth {hdr_depth}; the "
                               ".hdr belongs to another acquisition")
        depth = depth if depth is not None else hdr_depth
        if depth is None:
            if len(allowed) == 1:
                return allowed[0]
            if ref.pixel_type != "R64":
                return 6  # U08 holds 1 or 6-bit counters; which one does not change the values
            raise DataSetError(f"MIB file {first_path!r}: raw (R64) frames without a counter "
                               "depth in the frame header and no .hdr with 'Counter Depth'; "
                               "the depth decides how the bits are packed")
        if depth not in allowed:
            kind = ("the raw layout supports" if ref.pixel_type == "R64"
                    else f"pixel type {ref.pixel_type} holds")
            raise DataSetError(f"MIB file {first_path!r}: counter depth {depth} with pixel type "
                               f"{ref.pixel_type}; expected one of {list(allowed)} ({kind} those)")
        return depth

    # -- partitions and description -------------------------------------------------------------

    def partition_bounds(self) -> list:
        # a series of many small files: partitions of a bounded number of files (open files)
        return bound_files_per_partition(self, super().partition_bounds())

    def layout_info(self) -> dict:
        """Files, pixel type, counter depth, chips, headers and how frames are decoded."""
        self._require_meta()
        return dict(self._info)


def write_mib(path, frames, *, depth: int, raw: bool = False, quad: bool = False,
              first_seq: int = 1) -> None:
    """Write frames as a ``.mib`` file (for tests and examples; see
    :func:`udfkit.io.formats._mib_write.write_mib`)."""
    from ._mib_write import write_mib as _write

    _write(path, frames, depth=depth, raw=raw, quad=quad, first_seq=first_seq)


def write_hdr(path, *, frames: int, frames_per_trigger: int, depth: int, quad: bool = False,
              extra: dict | None = None) -> None:
    """Write a Merlin ``.hdr`` file (see :func:`udfkit.io.formats._mib_write.write_hdr`)."""
    from ._mib_write import write_hdr as _write

    _write(path, frames=frames, frames_per_trigger=frames_per_trigger, depth=depth, quad=quad,
           extra=extra)


__all__ += ["write_mib", "write_hdr"]
