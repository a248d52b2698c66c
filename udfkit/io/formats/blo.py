"""The ``blo`` format: NanoMegas ASTAR blockfiles (``.blo``).

What a blockfile holds
----------------------
A fixed binary header starts with ``IMGBLO`` and a 16-bit magic word, 0x0102 or 0x0103,
whose byte order is the file's. It gives the scan size ``NX`` x ``NY``, the side ``DP_SZ``
of the square diffraction patterns and two offsets: ``Data_offset_1``, where a virtual
bright-field image of ``NX * NY`` bytes lies, and ``Data_offset_2``, where the patterns start.
Free text between byte 240 and ``Data_offset_1`` holds notes (precession angle, camera
settings) and, in newer files, ``Blo Bit Depth: 16 bits``; without that line the patterns are
8-bit. Every pattern is preceded by a 6-byte frame header: the sync bytes ``AA 55`` and the
frame number as a 32-bit integer.

How it is read
--------------
The patterns lie at a fixed stride (6 + ``DP_SZ**2 * bytes per pixel``) from
``Data_offset_2``, so a :class:`~udfkit.io.layout.FileLayout` with a 6-byte frame header
describes them and udfkit's read planner and I/O backends read them. At load time the header
of every frame is checked (vectorized, one page of the file per frame): sync bytes and frame
numbers that are not where the file header puts them (``DP_SZ`` or a bit depth that does not
match the frames, a dropped frame, a frame number out of order) are an error naming the
first such frame.

Frames are ``nav_shape=(NY, NX)``, ``sig_shape=(DP_SZ, DP_SZ)``, in file order (rows as
stored, as LiberTEM and rosettasciio read them).
"""

from __future__ import annotations

import os
import re

import numpy as np

from ...common import Shape
from ...common.parse import ShapeLike
from ...errors import DataSetError
from ..backends._sigbus import guarded_reads
from ..base import DataSetMeta, IOBackend
from ..file_based import FileDataSet
from ..layout import FileLayout, FileSet
from ._common import check_path
from ._fixed_frames import resolve_fixed_frames
from .base import COMMON_PARAMS, Format, Param, read_head

__all__ = ["BLOFormat", "BLODataSet", "read_blo_header", "write_blo", "blo_header_dtype",
           "BLO_MAGICS", "FRAME_HEADER_BYTES", "FRAME_SYNC"]

#: magic words: 0x0102 (8-bit patterns), 0x0103 (newer; the bit depth is in the notes)
BLO_MAGICS = (0x0102, 0x0103)
#: bytes before every pattern: the sync bytes and a 32-bit frame number
FRAME_HEADER_BYTES = 6
FRAME_SYNC = b"\xaa\x55"
#: the notes start here and end at ``Data_offset_1``
NOTES_OFFSET = 240
#: frame headers are checked this many at a time (bounded memory for the index arrays)
_CHECK_RUN = 1 << 16
_DEPTH_RE = re.compile(r"blo\s+bit\s+depth\s*:\s*(\d+)\s*bits?", re.IGNORECASE)


def blo_header_dtype(byteorder: str = "<") -> np.dtype:
    """The fixed part of the blockfile header, in the given byte order (``"<"`` or ``">"``)."""
    e = byteorder
    fields = [
        ("ID", "S6"), ("MAGIC", e + "u2"),
        ("Data_offset_1", e + "u4"),     # virtual bright-field image
        ("Data_offset_2", e + "u4"),     # first frame header
        ("UNKNOWN1", e + "u4"),
        ("DP_SZ", e + "u2"),             # side of the square patterns
        ("DP_rotation", e + "u2"),
        ("NX", e + "u2"), ("NY", e + "u2"),
        ("Scan_rotation", e + "u2"),     # 1/100 degree
        ("SX", e + "f8"), ("SY", e + "f8"),  # scan step [nm]
        ("Beam_energy", e + "u4"),       # [V]
        ("SDP", e + "u2"),               # pattern pixel size [100 * pixels per cm]
        ("Camera_length", e + "u4"),     # [10 * mm]
        ("Acquisition_time", e + "f8"),  # serial date (days since 1899-12-30)
    ]
    fields += [(f"Centering_N{i}", e + "f8") for i in range(8)]
    fields += [(f"Distortion_N{i:02d}", e + "f8") for i in range(14)]
    return np.dtype(fields)


class BLOFormat(Format):
    """NanoMegas blockfiles; the layout comes from the file header."""

    name = "blo"
    dataset = "udfkit.io.formats.blo:BLODataSet"
    extensions = (".blo",)
    magic = (b"IMGBLO",)
    params = (
        Param("path", "path", None, "the .blo file"),
        COMMON_PARAMS["nav_shape"], COMMON_PARAMS["sig_shape"], COMMON_PARAMS["sync_offset"],
        COMMON_PARAMS["io_backend"], COMMON_PARAMS["num_partitions"], COMMON_PARAMS["allow_partial"],
        Param("endianess", "str", None,
              "'<' or '>' (LiberTEM's parameter); default: the byte order of the magic word"),
    )


def read_blo_header(path: str) -> dict:
    """The header fields of the blockfile ``path`` as Python values, plus ``"byteorder"``,
    ``"dtype"`` (of the pixels) and ``"notes"`` (the text lines).

    Raises
    ------
    DataSetError
        When the file is shorter than the header, does not start with ``IMGBLO``, has an
        unknown magic word, or a bit depth other than 8 or 16.
    """
    where = f"blo file {path!r}"
    size = os.path.getsize(path)
    head = read_head(path, blo_header_dtype().itemsize)
    if len(head) < blo_header_dtype().itemsize or not head.startswith(b"IMGBLO"):
        raise DataSetError(f"{where} is no blockfile: expected a header of "
                           f"{blo_header_dtype().itemsize} bytes starting with b'IMGBLO', found "
                           f"{size} bytes starting with {head[:8]!r}")
    magic = head[6:8]
    if int.from_bytes(magic, "little") in BLO_MAGICS:
        byteorder = "<"
    elif int.from_bytes(magic, "big") in BLO_MAGICS:
        byteorder = ">"
    else:
        raise DataSetError(f"{where}: unknown magic word {magic.hex(' ')} at byte 6; expected "
                           f"{', '.join(f'0x{m:04x}' for m in BLO_MAGICS)} in either byte order")
    rec = np.frombuffer(head, dtype=blo_header_dtype(byteorder), count=1)[0]
    fields = {name: rec[name].item() for name in rec.dtype.names}
    fields["byteorder"] = byteorder
    offset1 = int(fields["Data_offset_1"])
    notes = b""
    if offset1 > NOTES_OFFSET:
        with open(path, "rb") as f:
            f.seek(NOTES_OFFSET)
            notes = f.read(min(offset1, size) - NOTES_OFFSET)
    lines = [ln.strip() for ln in notes.decode("latin-1").replace("\0", "\n").splitlines()]
    fields["notes"] = tuple(ln for ln in lines if ln)
    bits = 8
    for line in fields["notes"]:
        m = _DEPTH_RE.search(line)
        if m:
            bits = int(m.group(1))
            break
    if bits not in (8, 16):
        raise DataSetError(f"{where}: its notes say 'Blo Bit Depth: {bits} bits'; expected 8 or 16 "
                           "bits per pixel")
    fields["bits"] = bits
    fields["dtype"] = np.dtype("u1") if bits == 8 else np.dtype(byteorder + "u2")
    return fields


class BLODataSet(FileDataSet):
    """A NanoMegas blockfile; scan and pattern size, bit depth and offsets from its header.

    Parameters
    ----------
    path : str or os.PathLike
        The ``.blo`` file.
    nav_shape : tuple of int, optional
        Default ``(NY, NX)`` from the header; any shape the frames fill.
    sig_shape : tuple of int, optional
        Default ``(DP_SZ, DP_SZ)``; another shape of ``DP_SZ**2`` pixels.
    sync_offset, num_partitions, allow_partial
        As for the raw format; ``allow_partial`` accepts a file with fewer frames than
        ``NX * NY`` (an aborted scan).
    io_backend : str or IOBackend, optional
        ``"mmap"`` (default), ``"buffered"`` or ``"direct"``, or a backend instance.
    endianess : str, optional
        ``"<"`` or ``">"``, LiberTEM's parameter; the byte order is read from the magic word,
        and a different one given here is an error.

    Examples
    --------
    >>> import numpy as np, tempfile, os
    >>> from udfkit import Context
    >>> from udfkit.io.formats.blo import write_blo
    >>> path = os.path.join(tempfile.mkdtemp(), "scan.blo")
    >>> write_blo(path, np.ones((2, 3, 8, 8), dtype="uint8"))
    >>> ds = Context.make_with("inline").load("blo", path=path)
    >>> ds.shape, ds.dtype
    (Shape((2, 3, 8, 8), sig_dims=2), dtype('uint8'))
    """

    format_name = "blo"

    def __init__(self, path: str | os.PathLike[str] | None = None, nav_shape: ShapeLike | None = None,
                 sig_shape: ShapeLike | None = None, sync_offset: int = 0,
                 io_backend: str | IOBackend | None = None, num_partitions: int | None = None,
                 allow_partial: bool = False, endianess: str | None = None):
        super().__init__(nav_shape=nav_shape, sig_shape=sig_shape, sync_offset=sync_offset,
                         num_partitions=num_partitions, allow_partial=allow_partial,
                         io_backend=io_backend)
        self._path_arg = path
        self._endianess_arg = endianess
        self._info: dict = {}

    def _initialize(self) -> DataSetMeta:
        path = check_path(self._path_arg, "blo file")
        where = f"blo file {path!r}"
        h = read_blo_header(path)
        if self._endianess_arg is not None and self._endianess_arg != h["byteorder"]:
            if self._endianess_arg not in ("<", ">"):
                raise DataSetError(f"{where}: endianess: expected '<' or '>', got {self._endianess_arg!r}")
            raise DataSetError(f"{where}: endianess={self._endianess_arg!r}, but its magic word is "
                               f"stored {'little' if h['byteorder'] == '<' else 'big'}-endian "
                               f"({h['byteorder']!r}); leave endianess out to use the file's")
        nx, ny, side = int(h["NX"]), int(h["NY"]), int(h["DP_SZ"])
        offset1, offset2 = int(h["Data_offset_1"]), int(h["Data_offset_2"])
        size = os.path.getsize(path)
        if min(nx, ny, side) < 1:
            raise DataSetError(f"{where}: header NX={nx}, NY={ny}, DP_SZ={side}; expected a scan and "
                               "a pattern size of at least 1")
        if not blo_header_dtype().itemsize <= offset2 <= size:
            raise DataSetError(f"{where}: header Data_offset_2={offset2} (the first frame); expected "
                               f"a byte offset between {blo_header_dtype().itemsize} and the file size "
                               f"{size}")
        dtype = h["dtype"]
        sig = (side, side)
        frame_bytes = side * side * dtype.itemsize
        stride = FRAME_HEADER_BYTES + frame_bytes
        header_count = nx * ny
        image_count = min(header_count, (size - offset2) // stride)
        if image_count < header_count and not self._allow_partial:
            raise DataSetError(
                f"{where} is truncated: its header says NY x NX = {ny} x {nx} frames of {sig} {dtype} "
                f"(+ {FRAME_HEADER_BYTES} bytes frame header) from byte {offset2}, "
                f"{offset2 + header_count * stride} bytes, but the file has {size} bytes: "
                f"{image_count} whole frames; pass allow_partial=True to read those and report the "
                "rest as missing")
        desc = f"{FRAME_HEADER_BYTES} + {side}x{side} × {dtype} = {stride} bytes"
        nav_shape, sig_shape, sync_offset = resolve_fixed_frames(
            where, native_nav=(ny, nx), native_sig=sig, nav_shape=self._nav_shape_arg,
            sig_shape=self._sig_shape_arg, image_count=image_count, sync_offset=self._sync_offset_arg,
            allow_partial=self._allow_partial, have=f"{size} bytes", frame_desc=desc)
        checked = _check_frame_headers(path, where, offset2, stride, image_count, h["byteorder"],
                                       side, dtype)
        self._fileset = FileSet([FileLayout(path, offset2, dtype, sig_shape,
                                            image_count, frame_header_bytes=FRAME_HEADER_BYTES)])
        self._info = {
            "path": path, "magic": f"0x{int(h['MAGIC']):04x}",
            "byte_order": "little-endian" if h["byteorder"] == "<" else "big-endian",
            "scan": f"NY x NX = {ny} x {nx}", "pattern": f"DP_SZ = {side} ({h['bits']}-bit)",
            "vbf_offset": offset1, "data_offset": offset2,
            "frame_header_bytes": FRAME_HEADER_BYTES, "stride": stride,
            "frames": f"{image_count} of {header_count}",
            "checked_frame_headers": checked,
        }
        if h["notes"]:
            self._info["notes"] = "; ".join(h["notes"])
        return DataSetMeta(shape=Shape(nav_shape + sig_shape, sig_dims=len(sig_shape)), raw_dtype=dtype,
                           image_count=image_count, sync_offset=sync_offset,
                           metadata={"path": path, "file_bytes": size, "header_bytes": offset2,
                                     "frame_header_bytes": FRAME_HEADER_BYTES,
                                     "io_backend": self._backend.name})

    def layout_info(self) -> dict:
        """Magic, byte order, scan and pattern size, bit depth, offsets and checked frames."""
        self._require_meta()
        return dict(self._info)


def _check_frame_headers(path, where, offset2, stride, image_count, byteorder, side, dtype) -> int:
    """Check the sync bytes and frame number of every frame; return how many were checked.

    Vectorized over runs of frames: one page of the file is touched per frame.
    """
    mm = np.memmap(path, dtype=np.uint8, mode="r")
    try:
        # a file that shrinks during the check must be an error, not a SIGBUS
        with guarded_reads(mm, path):
            for start in range(0, image_count, _CHECK_RUN):
                _check_run(mm, start, min(start + _CHECK_RUN, image_count), where, offset2, stride,
                           byteorder, side, dtype)
    finally:
        del mm
    return int(image_count)


def _check_run(mm, start, stop, where, offset2, stride, byteorder, side, dtype) -> None:
    """Check the frame headers of frames ``start:stop``."""
    record = np.dtype([("sync", "S2"), ("number", byteorder + "u4")])
    frames = np.arange(start, stop, dtype=np.int64)
    raw = np.ascontiguousarray(mm[(offset2 + frames * stride)[:, None] + np.arange(FRAME_HEADER_BYTES)])
    heads = raw.view(record).reshape(-1)
    bad = np.flatnonzero((heads["sync"] != FRAME_SYNC) | (heads["number"] != frames))
    if bad.size:
        i = int(bad[0])
        k = int(frames[i])
        found = raw[i].tobytes()
        raise DataSetError(
            f"{where}: the frame header of frame {k} (byte {offset2 + k * stride}) is "
            f"{found.hex(' ')}: sync {found[:2].hex(' ')}, frame number {int(heads['number'][i])}; "
            f"expected sync {FRAME_SYNC.hex(' ')} and frame number {k}. The frames do not lie "
            f"where the file header puts them (DP_SZ={side}, {dtype}, stride {stride} bytes from "
            f"byte {offset2}): the header disagrees with the frames, or a frame is missing")


def write_blo(path, data, *, byteorder: str | None = None, notes: str = "", offset1: int = 0x1000):
    """Write ``data`` of shape ``(NY, NX, DP_SZ, DP_SZ)`` (uint8 or uint16) as a blockfile.

    For tests, examples and exporting small data sets. 16-bit data get magic 0x0103 and the
    ``Blo Bit Depth: 16 bits`` note; the byte order is that of ``data`` unless given. The
    virtual bright-field image holds each frame's mean, scaled to 0..255.

    Examples
    --------
    >>> import numpy as np, tempfile, os
    >>> path = os.path.join(tempfile.mkdtemp(), "a.blo")
    >>> write_blo(path, np.zeros((1, 2, 4, 4), dtype="uint8"))
    >>> read_blo_header(path)["NX"], os.path.getsize(path)
    (2, 4156)
    """
    data = np.asarray(data)
    if data.ndim != 4 or data.shape[2] != data.shape[3]:
        raise DataSetError(f"write_blo: expected data of shape (NY, NX, DP_SZ, DP_SZ), got {data.shape}")
    if data.dtype.kind != "u" or data.dtype.itemsize not in (1, 2):
        raise DataSetError(f"write_blo: expected uint8 or uint16 data, got {data.dtype}")
    if byteorder is None:
        byteorder = ">" if data.dtype.byteorder == ">" else "<"
    ny, nx, side, _ = data.shape
    bits = 8 * data.dtype.itemsize
    if bits == 16:
        notes = (notes + "\r\n" if notes else "") + "Blo Bit Depth: 16 bits"
    hdt = blo_header_dtype(byteorder)
    note_bytes = notes.encode("latin-1")
    if NOTES_OFFSET + len(note_bytes) > offset1:
        raise DataSetError(f"write_blo: notes of {len(note_bytes)} bytes do not fit before offset1={offset1}")
    offset2 = offset1 + nx * ny
    offset2 += -offset2 % 16
    h = np.zeros((), dtype=hdt)
    h["ID"] = b"IMGBLO"
    h["MAGIC"] = BLO_MAGICS[0] if bits == 8 else BLO_MAGICS[1]
    h["Data_offset_1"], h["Data_offset_2"] = offset1, offset2
    h["DP_SZ"], h["NX"], h["NY"] = side, nx, ny
    frames = data.reshape(nx * ny, side * side)
    means = frames.mean(axis=1) if frames.size else np.zeros(nx * ny)
    vbf = (means * 255 / max(float(means.max(initial=0)), 1.0)).astype(np.uint8)
    record = np.dtype([("sync", "S2"), ("number", byteorder + "u4"),
                       ("data", data.dtype.newbyteorder(byteorder), (side * side,))])
    body = np.zeros(nx * ny, dtype=record)
    body["sync"] = FRAME_SYNC
    body["number"] = np.arange(nx * ny)
    body["data"] = frames
    with open(path, "wb") as f:
        f.write(h.tobytes())
        f.write(b"\0" * (NOTES_OFFSET - hdt.itemsize))
        f.write(note_bytes + b"\0" * (offset1 - NOTES_OFFSET - len(note_bytes)))
        f.write(vbf.tobytes() + b"\0" * (offset2 - offset1 - nx * ny))
        f.write(body.tobytes())
