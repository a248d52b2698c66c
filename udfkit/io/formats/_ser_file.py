"""Parsing FEI/ThermoFisher TIA ``.ser`` files and their ``.emi`` companions (see :mod:`.ser`).

Layout of a ``.ser`` file (all little endian)::

    header      ByteOrder 0x4949, SeriesID 0x0197, SeriesVersion (0x0210: 4-byte offsets,
                0x0220: 8-byte offsets), DataTypeID (0x4120 1D elements, 0x4122 2D elements),
                TagTypeID (0x4152 time, 0x4142 time and stage position), TotalNumberElements,
                ValidNumberElements, OffsetArrayOffset, NumberDimensions, then one record per
                navigation dimension (size, calibration, description and unit strings)
    offsets     at OffsetArrayOffset: TotalNumberElements data offsets, then as many tag
                offsets
    elements    at each data offset: calibration, DataType, the array size, then the pixels;
                the elements need not be evenly spaced (tags may lie between them)

Everything here reads headers only; the pixels are read by udfkit's I/O backends from the
per-frame offset table.
"""

from __future__ import annotations

import os
import re

import numpy as np

from ...errors import DataSetError
from ..backends._sigbus import guarded_reads
from ._header_shapes import read_struct

__all__ = ["SERHeader", "read_ser_header", "element_table", "read_emi", "emi_for", "sers_for",
           "write_ser", "DATA_TYPES", "SERIES_ID", "ONE_D", "TWO_D", "TAG_TIME", "TAG_POSITION"]

BYTE_ORDER = 0x4949
SERIES_ID = 0x0197
VERSIONS = {0x0210: "<u4", 0x0220: "<u8"}
ONE_D, TWO_D = 0x4120, 0x4122
TAG_TIME, TAG_POSITION = 0x4152, 0x4142
#: TIA's DataType codes
DATA_TYPES = {1: "<u1", 2: "<u2", 3: "<u4", 4: "<i1", 5: "<i2", 6: "<i4", 7: "<f4", 8: "<f8",
              9: "<c8", 10: "<c16"}
DATA_TYPE_CODES = {np.dtype(v): k for k, v in DATA_TYPES.items()}

#: the header of one element, before its pixels
ELEMENT_FIELDS = {
    TWO_D: [("CalibrationOffsetX", "<f8"), ("CalibrationDeltaX", "<f8"),
            ("CalibrationElementX", "<i4"), ("CalibrationOffsetY", "<f8"),
            ("CalibrationDeltaY", "<f8"), ("CalibrationElementY", "<i4"), ("DataType", "<u2"),
            ("ArraySizeX", "<u4"), ("ArraySizeY", "<u4")],
    ONE_D: [("CalibrationOffset", "<f8"), ("CalibrationDelta", "<f8"), ("CalibrationElement", "<i4"),
            ("DataType", "<u2"), ("ArrayLength", "<u4")],
}
_HEAD1 = [("ByteOrder", "<u2"), ("SeriesID", "<u2"), ("SeriesVersion", "<u2"), ("DataTypeID", "<u4"),
          ("TagTypeID", "<u4"), ("TotalNumberElements", "<u4"), ("ValidNumberElements", "<u4")]
_HEAD_READ = 1 << 16  # header plus dimension records: far less in any file seen


class SERHeader(dict):
    """The header fields of a ``.ser`` file, plus ``dimensions`` (list of dicts),
    ``offset_dtype``, ``data_offsets`` and ``tag_offsets`` (valid elements only)."""


def read_ser_header(path: str) -> SERHeader:
    """Parse and check the header and the offset arrays of ``path``."""
    where = f"ser file {path!r}"
    size = os.path.getsize(path)
    with open(path, "rb") as f:
        raw = f.read(_HEAD_READ)
    h = SERHeader(read_struct(raw, _HEAD1, where, "TIA series header"))
    if h["ByteOrder"] != BYTE_ORDER or h["SeriesID"] != SERIES_ID:
        raise DataSetError(f"{where} is not a TIA series file: expected the byte order mark 0x4949 "
                           f"and series id 0x0197 at its start, found {h['ByteOrder']:#06x} and "
                           f"{h['SeriesID']:#06x}")
    if h["SeriesVersion"] not in VERSIONS:
        raise DataSetError(f"{where}: series version {h['SeriesVersion']:#06x} is not read; expected "
                           "0x0210 or 0x0220")
    if h["DataTypeID"] not in ELEMENT_FIELDS:
        raise DataSetError(f"{where}: data type id {h['DataTypeID']:#06x} is not read; expected "
                           f"{ONE_D:#06x} (1D elements, spectra) or {TWO_D:#06x} (2D elements, images)")
    off_dt = VERSIONS[h["SeriesVersion"]]
    rest = read_struct(raw[22:], [("OffsetArrayOffset", off_dt), ("NumberDimensions", "<u4")], where,
                       "TIA series header")
    h.update(rest)
    at = 22 + np.dtype(off_dt).itemsize + 4
    dims = []
    for k in range(h["NumberDimensions"]):
        d = read_struct(raw[at:], [("DimensionSize", "<u4"), ("CalibrationOffset", "<f8"),
                                   ("CalibrationDelta", "<f8"), ("CalibrationElement", "<i4"),
                                   ("DescriptionLength", "<u4")], where, f"dimension record {k + 1}")
        at += 28
        d["Description"] = raw[at:at + d["DescriptionLength"]].decode("latin-1")
        at += d["DescriptionLength"]
        units = read_struct(raw[at:], [("UnitsLength", "<u4")], where, f"dimension record {k + 1}")
        at += 4
        d["Units"] = raw[at:at + units["UnitsLength"]].decode("latin-1")
        at += units["UnitsLength"]
        if at > len(raw):
            raise DataSetError(f"{where}: the header does not parse: dimension record {k + 1} ends "
                               f"at byte {at}, past the end of the file ({size} bytes)")
        dims.append(d)
    h["dimensions"] = dims
    total, valid = h["TotalNumberElements"], h["ValidNumberElements"]
    if valid > total:
        raise DataSetError(f"{where}: the header does not parse: {valid} valid elements of "
                           f"{total} in total")
    item = np.dtype(off_dt).itemsize
    table_end = h["OffsetArrayOffset"] + 2 * total * item
    if h["OffsetArrayOffset"] < at or table_end > size:
        raise DataSetError(f"{where} is truncated or its header does not parse: the offset arrays "
                           f"of {total} elements at byte {h['OffsetArrayOffset']} need {table_end} "
                           f"bytes, the file has {size}")
    with open(path, "rb") as f:
        f.seek(h["OffsetArrayOffset"])
        table = np.frombuffer(f.read(2 * total * item), dtype=off_dt)
    h["offset_dtype"] = off_dt
    h["data_offsets"] = table[:valid].astype(np.int64)
    h["tag_offsets"] = table[total:total + valid].astype(np.int64)
    return h


def element_table(path: str, h: SERHeader) -> np.ndarray:
    """The element headers of all valid elements (structured array), read at their offsets."""
    where = f"ser file {path!r}"
    fields = np.dtype(ELEMENT_FIELDS[h["DataTypeID"]])
    offsets = h["data_offsets"]
    size = os.path.getsize(path)
    bad = np.flatnonzero((offsets < 0) | (offsets + fields.itemsize > size))
    if bad.size:
        k = int(bad[0])
        raise DataSetError(f"{where} is truncated: the header of element {k} lies at byte "
                           f"{int(offsets[k])}, past the end of the file ({size} bytes)")
    mm = np.memmap(path, dtype=np.uint8, mode="r")
    try:
        with guarded_reads(mm, path):
            raw = mm[offsets[:, None] + np.arange(fields.itemsize)]
    finally:
        del mm
    return raw.view(fields)[:, 0]


def tag_positions(path: str, h: SERHeader) -> tuple | None:
    """``(x, y)`` stage positions of the valid elements from their tags, or None when the tags
    hold no position."""
    if h["TagTypeID"] != TAG_POSITION or h["ValidNumberElements"] == 0:
        return None
    offsets = h["tag_offsets"]
    size = os.path.getsize(path)
    if (offsets < 0).any() or (offsets + 24 > size).any():
        return None  # bad tag offsets occur in real files: positions are then unknown
    mm = np.memmap(path, dtype=np.uint8, mode="r")
    try:
        with guarded_reads(mm, path):
            raw = mm[offsets[:, None] + np.arange(24)]
    finally:
        del mm
    tags = raw.view(np.dtype([("TagTypeID", "<u2"), ("Unknown", "<u2"), ("Time", "<u4"),
                              ("PositionX", "<f8"), ("PositionY", "<f8")]))[:, 0]
    if (tags["TagTypeID"] != TAG_POSITION).any():
        return None
    return tags["PositionX"], tags["PositionY"]


def emi_for(ser_path: str) -> str:
    """The ``.emi`` that belongs to ``<name>_<N>.ser``: ``<name>.emi``."""
    base = re.sub(r"_\d+$", "", os.path.splitext(ser_path)[0])
    return base + ".emi"


def sers_for(emi_path: str) -> list:
    """The ``<name>_<N>.ser`` files next to ``<name>.emi``, by number."""
    directory, name = os.path.split(emi_path)
    stem = os.path.splitext(name)[0]
    pat = re.compile(rf"^{re.escape(stem)}_(\d+)\.ser$", re.IGNORECASE)
    found = []
    for entry in os.listdir(directory or "."):
        m = pat.match(entry)
        if m:
            found.append((int(m.group(1)), os.path.join(directory, entry)))
    return [p for _, p in sorted(found)]


def read_emi(emi_path: str, index: int) -> dict:
    """Metadata of the ``index``-th object (0 for ``_1.ser``) of an ``.emi`` file.

    An ``.emi`` holds binary data and one ``<ObjectInfo>`` XML document per ``.ser`` file; the
    result has its ``Uuid``, ``AcquireDate`` and the ``ExperimentalDescription`` entries
    (``"High tension_kV": "200"``, ...). Raises a :class:`DataSetError` naming the file when
    the XML does not parse.
    """
    from xml.etree.ElementTree import ParseError

    from defusedxml import ElementTree

    with open(emi_path, "rb") as f:
        raw = f.read()
    docs, at = [], 0
    while True:
        i = raw.find(b"<ObjectInfo>", at)
        if i < 0:
            break
        j = raw.find(b"</ObjectInfo>", i)
        if j < 0:
            raise DataSetError(f"emi file {emi_path!r} does not parse: an <ObjectInfo> document at "
                               f"byte {i} has no end")
        docs.append(raw[i:j + len(b"</ObjectInfo>")])
        at = j
    out = {"path": emi_path, "objects": len(docs)}
    if index >= len(docs):
        out["note"] = f"no <ObjectInfo> document for series {index + 1}"
        return out
    try:
        root = ElementTree.fromstring(docs[index].decode("utf-8", errors="replace"))
    except ParseError as e:
        raise DataSetError(f"emi file {emi_path!r} does not parse: its <ObjectInfo> document "
                           f"{index + 1} is not XML ({e}); move the .emi away to read the .ser "
                           "alone") from None
    for key in ("Uuid", "AcquireDate"):
        node = root.find(key)
        if node is not None and node.text:
            out[key] = node.text.strip()
    desc = {}
    for data in root.iterfind("ExperimentalDescription/Root/Data"):
        label = (data.findtext("Label") or "").strip()
        unit = (data.findtext("Unit") or "").strip()
        if label:
            desc[f"{label}_{unit}" if unit else label] = (data.findtext("Value") or "").strip()
    out["ExperimentalDescription"] = desc
    return out


def write_ser(path, frames, *, nav_dims=None, gaps=None, valid: int | None = None,
              version: int = 0x0210, positions=None) -> None:
    """Write ``frames`` as a ``.ser`` file, as TIA lays it out; for tests and examples.

    Parameters
    ----------
    path : str or os.PathLike
    frames : array_like
        ``(n, height, width)`` images or ``(n, length)`` spectra, of a TIA data type
        (u1, u2, u4, i1, i2, i4, f4, f8, c8, c16). Each image is stored row by row in the
        given order (TIA stores the bottom row first; readers that flip rows, like udfkit's
        default, return ``frames[:, ::-1]``).
    nav_dims : tuple of int, optional
        Sizes of the navigation dimension records, fastest first (TIA's order); default
        ``(n,)``. Their product is TotalNumberElements.
    gaps : sequence of int, optional
        Bytes of tag (and filler) after each element; default 16 (24 with ``positions``).
    valid : int, optional
        ValidNumberElements (default ``n``: all elements written).
    version : int
        0x0210 (4-byte offsets) or 0x0220 (8-byte offsets).
    positions : array_like, optional
        ``(n, 2)`` of ``(x, y)`` stage positions: tags of type 0x4142 (else 0x4152, time only).
    """
    frames = np.asarray(frames)
    n = frames.shape[0]
    two_d = frames.ndim == 3
    dt = frames.dtype.newbyteorder("<") if frames.dtype.itemsize > 1 else frames.dtype
    code = DATA_TYPE_CODES[np.dtype(dt.str.replace(">", "<"))]
    nav_dims = (n,) if nav_dims is None else tuple(nav_dims)
    total = int(np.prod(nav_dims))
    valid = n if valid is None else valid
    off_dt = VERSIONS[version]
    tag_type = TAG_POSITION if positions is not None else TAG_TIME
    head = np.array([(BYTE_ORDER, SERIES_ID, version, TWO_D if two_d else ONE_D, tag_type, total,
                      valid)], dtype=_HEAD1).tobytes()
    dims = b""
    for k, size in enumerate(nav_dims):
        desc = f"Dim{k + 1}".encode()
        dims += np.array([(size, 0.0, 1e-9, 0, len(desc))],
                         dtype=[("a", "<u4"), ("b", "<f8"), ("c", "<f8"), ("d", "<i4"),
                                ("e", "<u4")]).tobytes()
        dims += desc + np.array([6], "<u4").tobytes() + b"meters"
    fixed = len(head) + np.dtype(off_dt).itemsize + 4 + len(dims)
    table_at = fixed
    data_at = table_at + 2 * total * np.dtype(off_dt).itemsize
    fields = np.dtype(ELEMENT_FIELDS[TWO_D if two_d else ONE_D])
    buf = bytearray()
    data_offsets, tag_offsets = [], []
    at = data_at
    for i in range(n):
        el = np.zeros((), fields)
        el["DataType"] = code
        if two_d:
            el["ArraySizeY"], el["ArraySizeX"] = frames.shape[1], frames.shape[2]
            el["CalibrationDeltaX"] = el["CalibrationDeltaY"] = 1e-10
        else:
            el["ArrayLength"] = frames.shape[1]
            el["CalibrationDelta"] = 1.0
        body = el.tobytes() + np.ascontiguousarray(frames[i], dtype=dt).tobytes()
        data_offsets.append(at)
        buf += body
        at += len(body)
        gap = (24 if positions is not None else 16) if gaps is None else int(gaps[i])
        tag = np.zeros(max(gap, 0), np.uint8)
        if gap >= 8:
            tag_offsets.append(at)
            t = np.array([tag_type, 0], "<u2").tobytes() + np.array([1_600_000_000 + i], "<u4").tobytes()
            if positions is not None and gap >= 24:
                t += np.array(positions[i], "<f8").tobytes()
            tag[:len(t)] = np.frombuffer(t, np.uint8)[:gap]
        else:
            tag_offsets.append(0)
        buf += tag.tobytes()
        at += gap
    table = np.zeros(2 * total, dtype=off_dt)
    table[:n] = data_offsets
    table[total:total + n] = tag_offsets
    header = head + np.array([table_at], off_dt).tobytes() + np.array([len(nav_dims)], "<u4").tobytes()
    with open(path, "wb") as f:
        f.write(header + dims + table.tobytes() + bytes(buf))
