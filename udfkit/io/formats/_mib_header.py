"""Merlin MIB headers: the per-frame header, the ``.hdr`` acquisition file, numbered series.

Every frame of a ``.mib`` file starts with an ASCII header of comma-separated fields, padded
with NUL bytes to its own length (field 2: 384 bytes for one chip, 768 for a quad)::

    MQ1,000001,00384,01,0256,0256,U16,   1x1,01,2021-04-15 15:01:38.996867,0.001000,0,0,0,
    <8 thresholds>,<DACs of each chip>,MQ1A,<ISO time stamp>,<exposure>ns,<counter depth>,

fields: 0 magic ``MQ1``, 1 sequence number of the frame in the acquisition (from 1),
2 header bytes, 3 number of chips, 4 width, 5 height, 6 pixel type (``U08``, ``U16``,
``U32``: counters as big-endian integers; ``R64``: the bit-packed raw layout), 7 sensor
layout (``1x1``, ``2x2``, ``2x2G``, ``Nx1``), 8 chip select (hex); the extended part after
``MQ1A`` ends with the counter depth (1, 6, 12 or 24). In the raw layout the width and
height describe the raw rows (a quad: 4 chips side by side, half the height; 24 bit: two
12-bit frames, twice the width).

The ``.hdr`` file holds ``key:\\tvalue`` lines between ``HDR,`` and ``End``; udfkit reads
``Frames in Acquisition (Number)``, ``Frames per Trigger (Number)``, ``Counter Depth
(number)`` and, where newer software writes them, ``ScanX`` / ``ScanY``.
"""

from __future__ import annotations

import mmap
import os
import re
from dataclasses import dataclass

import numpy as np

from ...errors import DataSetError
from ..backends._sigbus import guarded_reads

__all__ = ["FrameHeader", "parse_frame_header", "read_first_header", "read_hdr", "find_series",
           "find_hdr", "check_frame_headers", "MIB_MAGIC", "HDR_MAGIC", "PIXEL_TYPES"]

MIB_MAGIC = b"MQ1,"
HDR_MAGIC = b"HDR,"
#: pixel type -> (dtype of the decoded layout or None for raw, counter depths it holds)
PIXEL_TYPES = {"U01": ("u1", (1,)), "U08": ("u1", (1, 6)), "U16": (">u2", (12,)),
               "U32": (">u4", (24,)), "R64": (None, (1, 6, 12, 24))}
#: bytes read to find the header's length (a header is at least this long)
_PROBE = 384
#: frames whose headers are compared per numpy call
_CHECK_CHUNK = 1 << 15


@dataclass(frozen=True)
class FrameHeader:
    """The parsed header of one frame.

    Attributes
    ----------
    sequence : int
        Frame number in the acquisition (from 1).
    header_bytes : int
    num_chips : int
    width, height : int
        As the header gives them (for the raw layout: of the raw rows).
    pixel_type : str
        ``U08``, ``U16``, ``U32`` or ``R64``.
    layout : str
        Sensor layout without padding, e.g. ``1x1`` or ``2x2G``.
    chip_select : str
    depth : int or None
        Counter depth from the extended header (``None`` when the header has none).
    fields : tuple of str
        All fields, for error messages.
    """

    sequence: int
    header_bytes: int
    num_chips: int
    width: int
    height: int
    pixel_type: str
    layout: str
    chip_select: str
    depth: int | None
    fields: tuple

    @property
    def fixed(self) -> tuple:
        """The fields every frame of an acquisition shares (2 to 8)."""
        return (self.header_bytes, self.num_chips, self.width, self.height, self.pixel_type,
                self.layout, self.chip_select)

    def describe(self) -> str:
        depth = f", {self.depth}-bit counters" if self.depth else ""
        return (f"{self.pixel_type} {self.width}x{self.height}, {self.num_chips} chip(s) in "
                f"layout {self.layout}{depth}, {self.header_bytes}-byte headers")


def _int(fields, i, name, where):
    try:
        return int(fields[i])
    except (IndexError, ValueError):
        found = fields[i] if i < len(fields) else "nothing"
        raise DataSetError(f"{where}: MIB frame header field {i} ({name}): expected an integer, "
                           f"found {found!r}") from None


def parse_frame_header(raw: bytes, where: str) -> FrameHeader:
    """Parse one frame header (``raw`` holds at least its first bytes).

    Examples
    --------
    >>> h = parse_frame_header(b"MQ1,000007,00384,01,0256,0256,R64,   1x1,01,t,0.1,0,0,0,"
    ...                        b"MQ1A,t,100ns,1,\\0\\0", "x.mib")
    >>> h.sequence, h.pixel_type, h.layout, h.depth, (h.width, h.height)
    (7, 'R64', '1x1', 1, (256, 256))
    """
    if not raw.startswith(MIB_MAGIC):
        raise DataSetError(f"{where}: not a Merlin MIB file: expected a frame header starting with "
                           f"{MIB_MAGIC!r}, found {raw[:16]!r}")
    text = raw.split(b"\0", 1)[0].decode("ascii", errors="replace")
    fields = tuple(f.strip() for f in text.split(","))
    if len(fields) < 9:
        raise DataSetError(f"{where}: MIB frame header has {len(fields)} fields, expected at "
                           f"least 9 (magic, sequence, header size, chips, width, height, pixel "
                           f"type, layout, chip select); found {text[:80]!r}")
    seq = _int(fields, 1, "sequence number", where)
    header_bytes = _int(fields, 2, "header size", where)
    chips = _int(fields, 3, "number of chips", where)
    width = _int(fields, 4, "width", where)
    height = _int(fields, 5, "height", where)
    pixel_type = fields[6].upper()
    if pixel_type not in PIXEL_TYPES:
        raise DataSetError(f"{where}: MIB pixel type (header field 6): expected one of "
                           f"{sorted(PIXEL_TYPES)}, found {fields[6]!r}")
    if header_bytes < 16 or width < 1 or height < 1 or chips < 1:
        raise DataSetError(f"{where}: MIB frame header gives header size {header_bytes}, "
                           f"{chips} chips, width {width}, height {height}; expected positive "
                           "sizes")
    depth = None
    if "MQ1A" in fields:
        k = fields.index("MQ1A")
        if k + 3 < len(fields) and fields[k + 3]:
            depth = _int(fields, k + 3, "counter depth", where)
    return FrameHeader(seq, header_bytes, chips, width, height, pixel_type, fields[7].strip(),
                       fields[8], depth, fields)


def read_first_header(path: str) -> tuple[FrameHeader, bytes]:
    """The first frame header of a ``.mib`` file and its bytes."""
    with open(path, "rb") as f:
        probe = f.read(_PROBE)
        if len(probe) < 16:
            raise DataSetError(f"MIB file {path!r} has {os.fstat(f.fileno()).st_size} bytes; "
                               "expected at least one frame header")
        head = parse_frame_header(probe, f"MIB file {path!r}")
        raw = probe
        if head.header_bytes > len(probe):
            raw = probe + f.read(head.header_bytes - len(probe))
        if len(raw) < head.header_bytes:
            raise DataSetError(f"MIB file {path!r} has {len(raw)} bytes, fewer than its first "
                               f"frame header of {head.header_bytes} bytes")
    # the extended fields (counter depth) may lie past the probe
    head = parse_frame_header(raw[:head.header_bytes], f"MIB file {path!r}")
    return head, raw[:head.header_bytes]


def read_hdr(path: str) -> dict:
    """The ``key: value`` pairs of a Merlin ``.hdr`` acquisition file.

    Examples
    --------
    >>> import tempfile, os
    >>> p = os.path.join(tempfile.mkdtemp(), "a.hdr")
    >>> _ = open(p, "w").write("HDR,\\t\\nFrames in Acquisition (Number):\\t8\\nEnd\\t\\0\\0")
    >>> read_hdr(p)
    {'Frames in Acquisition (Number)': '8'}
    """
    try:
        with open(path, "rb") as f:
            raw = f.read(1 << 20)
    except FileNotFoundError:
        raise DataSetError(f"Merlin header file {path!r} does not exist") from None
    if not raw.startswith(HDR_MAGIC):
        raise DataSetError(f"{path!r} is not a Merlin .hdr file: expected it to start with "
                           f"{HDR_MAGIC!r}, found {raw[:16]!r}")
    text = raw.split(b"\0", 1)[0].decode("latin-1")
    out = {}
    for line in text.splitlines()[1:]:
        if line.startswith("End"):
            break
        if "\t" not in line:
            continue
        key, value = line.split("\t", 1)
        out[key.rstrip().rstrip(":")] = value.strip()
    return out


_DIGITS = re.compile(r"\d+$")


def find_series(path: str) -> list[str]:
    """The ``.mib`` files of the acquisition ``path`` (a ``.hdr`` or one ``.mib``) belongs to:
    the same name with any trailing number (``scan.hdr`` -> ``scan.mib``, ``scan1.mib``, ...;
    ``scan12.mib`` -> ``scan*.mib`` with digits only), unsorted."""
    folder, name = os.path.split(os.path.abspath(path))
    stem, ext = os.path.splitext(name)
    if ext.lower() == ".mib":
        stem = _DIGITS.sub("", stem)
    pattern = re.compile(re.escape(stem) + r"\d*\.mib$", re.IGNORECASE)
    try:
        names = os.listdir(folder)
    except OSError:
        return []
    return [os.path.join(folder, n) for n in names if pattern.match(n)]


def find_hdr(path: str) -> tuple[str | None, list]:
    """The ``.hdr`` of the ``.mib`` file ``path`` and the names looked for: the same name,
    then the name without its trailing number (``scan12.mib`` -> ``scan.hdr``)."""
    stem = os.path.splitext(os.path.abspath(path))[0]
    tried = []
    for cand in (stem, _DIGITS.sub("", stem)):
        for ext in (".hdr", ".HDR"):
            p = cand + ext
            if p in tried:
                continue
            tried.append(p)
            if os.path.isfile(p):
                return p, tried
    return None, tried


def _field_spans(raw: bytes) -> list:
    """``(start, end)`` byte positions of the first 9 fields of a header."""
    spans, start = [], 0
    for _ in range(9):
        end = raw.index(b",", start)
        spans.append((start, end))
        start = end + 1
    return spans


def check_frame_headers(path: str, count: int, stride: int, ref: FrameHeader, ref_raw: bytes,
                        first_seq: int, file_no: str) -> None:
    """Compare the header of every frame of a file with the acquisition's first header.

    The fields every frame shares (header size, chips, shape, pixel type, layout, chip select)
    must be byte for byte those of ``ref`` and the sequence numbers must count up from
    ``first_seq``. The comparison is vectorized over a mapping of the file (one page touched
    per frame); frames that differ are parsed one by one so that the error names the frame
    and the field.
    """
    spans = _field_spans(ref_raw)
    seq_lo, seq_hi = spans[1]
    fixed_lo, fixed_hi = spans[2][0], spans[8][1] + 1
    ref_fixed = np.frombuffer(ref_raw[fixed_lo:fixed_hi], np.uint8)
    ref_prefix = np.frombuffer(ref_raw[:seq_lo], np.uint8)
    weights = 10 ** np.arange(seq_hi - seq_lo - 1, -1, -1, dtype=np.int64)
    need = fixed_hi
    if count == 0:
        return
    size = os.path.getsize(path)
    with open(path, "rb") as f:
        mm = mmap.mmap(f.fileno(), min(size, count * stride), access=mmap.ACCESS_READ)
    if hasattr(mmap, "MADV_RANDOM"):
        mm.madvise(mmap.MADV_RANDOM)  # one page per frame, not the readahead around it
    # the arrays below keep the mapping alive; it is unmapped when the last one is dropped
    flat = np.frombuffer(mm, np.uint8)
    # a file that shrinks during the check must be an error, not a SIGBUS
    with guarded_reads(flat, path):
        _check_chunks(flat, count, stride, need, spans, ref, ref_prefix, ref_fixed, weights,
                      first_seq, path, file_no)


def _check_chunks(flat, count, stride, need, spans, ref, ref_prefix, ref_fixed, weights,
                  first_seq, path, file_no) -> None:
    seq_lo, seq_hi = spans[1]
    fixed_lo, fixed_hi = spans[2][0], spans[8][1] + 1
    for lo in range(0, count, _CHECK_CHUNK):
        hi = min(count, lo + _CHECK_CHUNK)
        heads = np.array(np.lib.stride_tricks.as_strided(
            flat[lo * stride:], shape=(hi - lo, need), strides=(stride, 1)))
        digits = heads[:, seq_lo:seq_hi].astype(np.int64) - 48
        seq = digits @ weights
        bad = (np.any(heads[:, :seq_lo] != ref_prefix, axis=1)
               | np.any(heads[:, fixed_lo:fixed_hi] != ref_fixed, axis=1)
               | np.any((digits < 0) | (digits > 9), axis=1)
               | (seq != first_seq + lo + np.arange(hi - lo)))
        for k in np.flatnonzero(bad):
            frame = lo + int(k)
            start = frame * stride
            raw = bytes(flat[start:start + max(ref.header_bytes, need)])
            _check_one(raw, ref, first_seq + frame, path, frame, file_no)


def _check_one(raw: bytes, ref: FrameHeader, seq: int, path: str, frame: int, file_no: str):
    """The slow path: parse the header of one frame that differs in bytes from the first."""
    where = f"MIB file {path!r}{file_no}, frame {frame}"
    try:
        head = parse_frame_header(raw, where)
    except DataSetError as e:
        raise DataSetError(f"{e}; the frames of a MIB file are records of a header and the "
                           f"data ({ref.describe()}), so the file is damaged or is not what its "
                           "first header says") from None
    if head.fixed != ref.fixed:
        names = ("header size", "chips", "width", "height", "pixel type", "layout", "chip select")
        diff = [f"{n} {a!r} (first frame: {b!r})" for n, a, b in zip(names, head.fixed, ref.fixed)
                if a != b]
        raise DataSetError(f"{where}: its header disagrees with the acquisition's first frame: "
                           f"{', '.join(diff)}; every frame of an acquisition must have the same "
                           "layout")
    if head.sequence != seq:
        raise DataSetError(f"{where}: its header has sequence number {head.sequence}, expected "
                           f"{seq} (frames are missing, repeated, or the file mixes acquisitions)")
