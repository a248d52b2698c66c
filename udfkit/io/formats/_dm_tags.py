"""A tag-tree parser for Gatan DigitalMicrograph files (``.dm3`` and ``.dm4``).

The file format
---------------
Gatan does not publish the format; what follows is what the files show and what the
independent readers (rosettasciio, ncempy, Boothroyd's notes) agree on. A file is::

    header      version (4 bytes, big-endian: 3 or 4)
                root length (4 bytes in DM3, 8 in DM4, big-endian)
                byte order of the tag values (4 bytes, big-endian: 1 little, 0 big)
    root group  sorted (1 byte), open (1 byte), number of tags (4 / 8 bytes)
    tags ...    each one:
                kind (1 byte: 20 group, 21 data), name length (2 bytes), name,
                DM4 only: the tag's length in bytes (8 bytes)
                a group: sorted, open, number of tags, then its tags
                a data tag: "%%%%", length of its type description (4 / 8 bytes),
                the type description (that many 4 / 8 byte words), then the value

Everything that describes the structure is big-endian; the values themselves are in the
byte order of the header. The type description is a list of words: a simple type is one
word (its code); a string is ``18, length``; a struct is ``15, name length, field count,
(name length, type) per field``; an array is ``20``, the element's type description, then
the element count. Image pixels are the value of the array tag ``ImageData/Data`` of an
entry of ``ImageList``: they lie uncompressed at a known offset.

Robustness
----------
Every read is bounded by the file size, every count by the bytes left in the file, and
nesting by :data:`MAX_DEPTH`, so a truncated or damaged file gives a
:class:`~udfkit.errors.DataSetError` that names the file, the tag path (``/``-separated,
unnamed entries as ``TagGroup<i>`` / ``Data<i>`` as rosettasciio names them) and what was
expected and found -- never an ``IndexError``, ``struct.error`` or a loop over a corrupt count.
Large array values (the image, a thumbnail) are not read: the tree holds a :class:`DMArray`
with their offset, element dtype and count.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Literal

import numpy as np

from ...errors import DataSetError

__all__ = ["DMArray", "DMFile", "parse_dm", "tag_text", "MAX_DEPTH"]

#: groups nested deeper than this are taken for a damaged file
MAX_DEPTH = 64
#: arrays up to this many bytes are read into the tree (calibrations, names, CLUTs)
READ_ARRAY_BYTES = 1 << 16
#: longer type descriptions (a struct of thousands of fields) are taken for damage: a
#: corrupt length must not make the parser allocate gigabytes
MAX_INFO_WORDS = 4096
#: longer string values are taken for damage, for the same reason
MAX_STRING_BYTES = 1 << 24

_GROUP, _DATA = 20, 21
_STRUCT, _STRING, _ARRAY = 15, 18, 20
#: simple type codes of tag values -> numpy dtype (byte order added from the header)
_SIMPLE = {2: "i2", 3: "i4", 4: "u2", 5: "u4", 6: "f4", 7: "f8", 8: "u1", 9: "i1", 10: "i1",
           11: "i8", 12: "u8"}


@dataclass(frozen=True)
class DMArray:
    """An array tag value: where it lies, and its values when small.

    Attributes
    ----------
    offset : int
        Byte offset of the first element in the file.
    dtype : numpy.dtype
        Element dtype, byte order included (structured for arrays of structs).
    count : int
        Number of elements.
    values : numpy.ndarray or None
        The elements, read when the array has at most ``READ_ARRAY_BYTES`` bytes.
    """

    offset: int
    dtype: np.dtype
    count: int
    values: np.ndarray | None = field(default=None, compare=False, repr=False)

    @property
    def nbytes(self) -> int:
        return self.count * self.dtype.itemsize


@dataclass
class DMFile:
    """A parsed DM file: version, value byte order, and the tag tree.

    Groups are dicts (name -> value, insertion ordered); unnamed groups and data tags get
    the names ``TagGroup<i>`` and ``Data<i>``, counted separately within their group.
    Simple values are Python numbers, structs tuples, strings ``str``, arrays
    :class:`DMArray`.
    """

    path: str
    version: int
    byteorder: Literal["<", ">"]
    size: int
    root: dict

    def get(self, *names, default=None):
        """The value at a tag path, or ``default`` where a part is missing."""
        node = self.root
        for name in names:
            if not isinstance(node, dict) or name not in node:
                return default
            node = node[name]
        return node


def tag_text(value) -> str | None:
    """A tag value as text: DM stores strings as arrays of UTF-16 code units.

    Examples
    --------
    >>> tag_text(DMArray(0, np.dtype("<u2"), 2, np.array([72, 105], dtype="<u2")))
    'Hi'
    >>> tag_text("Image"), tag_text(3)
    ('Image', None)
    """
    if isinstance(value, str):
        return value
    if isinstance(value, DMArray) and value.values is not None and value.dtype.kind in "ui" \
            and value.dtype.itemsize <= 2:
        codes = value.values.astype(np.uint16)
        return codes.tobytes().decode("utf-16-le" if codes.dtype.byteorder != ">" else "utf-16-be",
                                      errors="replace")
    return None


class _Reader:
    """Bounded reads of one open file, with the tag path for messages."""

    def __init__(self, f, path: str, size: int):
        self.f = f
        self.path = path
        self.size = size
        self.version = 0
        self.word = 4  # DM3: 4-byte counts; DM4: 8
        self.order: Literal["<", ">"] = "<"
        self.trail: list[str] = []

    @property
    def where(self) -> str:
        return "/".join(self.trail) if self.trail else "(root)"

    def fail(self, what: str):
        raise DataSetError(f"DM file {self.path!r}: tag {self.where}: {what}")

    def take(self, n: int, what: str) -> bytes:
        pos = self.f.tell()
        if n < 0 or pos + n > self.size:
            raise DataSetError(
                f"DM file {self.path!r} is truncated or damaged: tag {self.where} needs {n} bytes "
                f"({what}) at byte offset {pos}, but the file has {self.size} bytes")
        data = self.f.read(n)
        if len(data) != n:  # the file shrank while it was read
            raise DataSetError(f"DM file {self.path!r}: tag {self.where}: expected {n} bytes "
                               f"({what}) at offset {pos}, got {len(data)}")
        return data

    def skip(self, n: int, what: str) -> None:
        pos = self.f.tell()
        if pos + n > self.size:
            raise DataSetError(
                f"DM file {self.path!r} is truncated: tag {self.where} needs {n} bytes ({what}) "
                f"from byte offset {pos} to {pos + n}, but the file has {self.size} bytes")
        self.f.seek(pos + n)

    def uint(self, n: int, what: str) -> int:
        return int.from_bytes(self.take(n, what), "big")

    def count(self, what: str) -> int:
        return self.uint(self.word, what)

    def left(self) -> int:
        return self.size - self.f.tell()


def parse_dm(path) -> DMFile:
    """Parse the header and the whole tag tree of a DM3 or DM4 file.

    Parameters
    ----------
    path : str or os.PathLike

    Returns
    -------
    DMFile

    Raises
    ------
    DataSetError
        The file is not a DM3/DM4 file, is truncated, or holds a tag that does not parse;
        the message names the file and the tag path.
    """
    path = os.fspath(path)
    size = os.path.getsize(path)
    with open(path, "rb") as f:
        r = _Reader(f, path, size)
        if size < 16:
            raise DataSetError(f"DM file {path!r} has {size} bytes; a DM3/DM4 header needs at least 16")
        r.version = r.uint(4, "version")
        if r.version not in (3, 4):
            raise DataSetError(f"DM file {path!r}: header version: expected 3 (DM3) or 4 (DM4), "
                               f"found {r.version}; this is not a DigitalMicrograph file udfkit reads")
        r.word = 8 if r.version == 4 else 4
        r.trail = ["(header)"]
        r.uint(r.word, "root length")
        flag = r.uint(4, "byte order")
        if flag not in (0, 1):
            raise DataSetError(f"DM file {path!r}: header byte order flag: expected 0 (big-endian) or "
                               f"1 (little-endian), found {flag}")
        r.order = "<" if flag == 1 else ">"
        r.trail = []
        root = _group(r, depth=0)
    return DMFile(path=path, version=r.version, byteorder=r.order, size=size, root=root)


def _group(r: _Reader, depth: int) -> dict:
    """A group's header (sorted, open, count) and its tags."""
    if depth > MAX_DEPTH:
        r.fail(f"groups nested deeper than {MAX_DEPTH} levels; the file is damaged")
    r.take(2, "group flags")
    ntags = r.count("number of tags")
    # each tag takes at least 3 bytes (kind and name length): a larger count is damage
    if ntags * 3 > r.left():
        r.fail(f"the group claims {ntags} tags, but only {r.left()} bytes follow")
    out: dict = {}
    unnamed_groups = unnamed_data = 0
    for _ in range(ntags):
        kind = r.uint(1, "tag kind")
        name_len = r.uint(2, "tag name length")
        name = r.take(name_len, "tag name").decode("latin-1")
        if kind == _GROUP and not name:
            name = f"TagGroup{unnamed_groups}"
            unnamed_groups += 1
        elif kind == _DATA and not name:
            name = f"Data{unnamed_data}"
            unnamed_data += 1
        r.trail.append(name or "?")
        if kind not in (_GROUP, _DATA):
            r.fail(f"tag kind: expected 20 (group) or 21 (data), found {kind} at byte offset "
                   f"{r.f.tell() - 3 - name_len}; the file is damaged")
        length = None
        if r.version == 4:
            # checked after the tag is parsed: a truncated file then fails at the innermost tag
            length = r.uint(8, "tag length")
        start = r.f.tell()
        out[name] = _group(r, depth + 1) if kind == _GROUP else _data(r)
        if length is not None and r.f.tell() - start != length:
            # DM4 states every tag's length: a disagreement means a damaged description
            r.fail(f"the DM4 tag length says {length} bytes, but the tag's contents take "
                   f"{r.f.tell() - start}; the file is damaged")
        r.trail.pop()
    return out


def _data(r: _Reader):
    """A data tag: delimiter, type description, value."""
    delim = r.take(4, "'%%%%' delimiter")
    if delim != b"%%%%":
        r.fail(f"expected the data delimiter b'%%%%', found {delim!r}; the file is damaged")
    ninfo = r.count("type description length")
    if ninfo < 1 or ninfo > MAX_INFO_WORDS or ninfo * r.word > r.left():
        r.fail(f"type description length: expected 1 to {MAX_INFO_WORDS} words that fit in the "
               f"file, found {ninfo} ({r.left()} bytes follow); the file is damaged")
    raw = r.take(ninfo * r.word, "type description")
    info = [int.from_bytes(raw[i:i + r.word], "big") for i in range(0, len(raw), r.word)]
    kind, dtype, count, used = _describe(r, info, 0)
    if used != ninfo:
        r.fail(f"type description {info} has {ninfo} words, but its type uses {used}")
    if dtype.itemsize == 0:  # an empty string or struct
        return "" if kind == "string" else () if kind == "struct" else \
            DMArray(r.f.tell(), dtype, count, np.zeros(0, dtype=np.uint8))
    if kind == "simple":
        value = np.frombuffer(r.take(dtype.itemsize, "value"), dtype=dtype)[0]
        return value.item()
    if kind == "string":
        return r.take(dtype.itemsize, "string").decode("latin-1")
    if kind == "struct":
        rec = np.frombuffer(r.take(dtype.itemsize, "struct"), dtype=dtype)[0]
        return tuple(v.item() for v in rec)
    # an array
    offset = r.f.tell()
    nbytes = count * dtype.itemsize
    if nbytes <= READ_ARRAY_BYTES:
        values = np.frombuffer(r.take(nbytes, f"array of {count} x {dtype}"), dtype=dtype)
    else:
        values = None
        r.skip(nbytes, f"array of {count} x {dtype}")
    return DMArray(offset, dtype, count, values)


def _simple(r: _Reader, code: int) -> np.dtype:
    return np.dtype(_SIMPLE[code]).newbyteorder(r.order)


def _describe(r: _Reader, info: list, i: int):
    """``(kind, dtype, count, next index)`` of the type described at ``info[i]``."""

    def word(j):
        if j >= len(info):
            r.fail(f"type description {info} ends early (expected a word at position {j})")
        return info[j]

    code = word(i)
    if code in _SIMPLE:
        return "simple", _simple(r, code), 1, i + 1
    if code == _STRING:
        length = word(i + 1)
        if length > min(r.left(), MAX_STRING_BYTES):
            r.fail(f"a string of {length} bytes does not fit ({r.left()} bytes follow, at most "
                   f"{MAX_STRING_BYTES} are taken for a string); the file is damaged")
        return "string", np.dtype(f"S{length}"), 1, i + 2
    if code == _STRUCT:
        nfields = word(i + 2)
        if nfields > len(info):
            r.fail(f"a struct of {nfields} fields cannot fit in a type description of "
                   f"{len(info)} words")
        fields = []
        for k in range(nfields):
            ftype = word(i + 4 + 2 * k)
            if ftype not in _SIMPLE:
                r.fail(f"struct field {k} has type {ftype}; expected a simple type "
                       f"({sorted(_SIMPLE)})")
            fields.append((f"f{k}", _simple(r, ftype)))
        return "struct", np.dtype(fields), 1, i + 3 + 2 * nfields
    if code == _ARRAY:
        ekind, edtype, ecount, j = _describe(r, info, i + 1)
        if ekind == "array":
            # an array of arrays: each element is a fixed-length sub-array
            edtype = np.dtype((edtype, (ecount,)))
        count = word(j)
        if edtype.itemsize and count > r.left() // edtype.itemsize:
            r.fail(f"truncated or damaged: the array of {count} elements of {edtype.itemsize} bytes "
                   f"needs {count * edtype.itemsize} bytes, but only {r.left()} follow in the file")
        return "array", edtype, count, j + 1
    r.fail(f"unknown type code {code} in type description {info}; expected one of "
           f"{sorted(_SIMPLE) + [_STRUCT, _STRING, _ARRAY]}")
