"""A small writer of Gatan DigitalMicrograph files (``.dm3`` / ``.dm4``) for tests and examples.

It writes what GMS writes for an image, a stack, a 4D scan or a spectrum image -- the header,
the tag tree with ``ImageList`` (optionally a thumbnail first, listed under ``Thumbnails``),
``ImageData`` (``Data``, ``DataType``, ``Dimensions``, ``PixelDepth``, ``Calibrations``) and
``ImageTags/Meta Data`` (``Format``, ``Data Order Swapped``) -- in either pixel order:

* ``order="C"``: every frame contiguous (what GMS writes for images and stacks, and for 4D
  scans when it sets ``Data Order Swapped``);
* ``order="F"``: the "transposed" order of 4D STEM and 3D spectrum images, where the values of
  one signal pixel over the whole scan are contiguous.

The files read back with rosettasciio (``rsciio.digitalmicrograph``), which the tests use to
check the writer independently of udfkit's reader.
"""

from __future__ import annotations

import os
from typing import Literal

import numpy as np

__all__ = ["write_dm", "DATA_TYPES"]

#: numpy dtype (native byte order) -> DM image data type code
DATA_TYPES = {"int16": 1, "float32": 2, "complex64": 3, "uint8": 6, "int32": 7, "int8": 9,
              "uint16": 10, "uint32": 11, "float64": 12, "complex128": 13}
#: numpy kind+size -> tag value type code of the array elements
_ELEMENT = {"i2": 2, "i4": 3, "u2": 4, "u4": 5, "f4": 6, "f8": 7, "u1": 10, "i1": 9}
_SIMPLE_OF = {2: "i2", 3: "i4", 4: "u2", 5: "u4", 6: "f4", 7: "f8", 8: "u1", 9: "i1", 10: "u1"}


class _Tags:
    """Serialises tag groups for one version and byte order."""

    def __init__(self, version: int, byteorder: Literal["<", ">"]):
        self.version = version
        self.order = byteorder
        self.word = 8 if version == 4 else 4

    def count(self, n: int) -> bytes:
        return int(n).to_bytes(self.word, "big")

    def _tag(self, kind: int, name: str, body: bytes) -> bytes:
        raw = name.encode("latin-1")
        head = bytes([kind]) + len(raw).to_bytes(2, "big") + raw
        if self.version == 4:
            head += len(body).to_bytes(8, "big")
        return head + body

    def group_body(self, entries) -> bytes:
        return b"\x00\x00" + self.count(len(entries)) + b"".join(entries)

    def group(self, name: str, entries) -> bytes:
        return self._tag(20, name, self.group_body(entries))

    def data(self, name: str, info, value: bytes) -> bytes:
        body = b"%%%%" + self.count(len(info)) + b"".join(self.count(w) for w in info) + value
        return self._tag(21, name, body)

    def simple(self, name: str, code: int, value) -> bytes:
        return self.data(name, [code], np.array(value, dtype=np.dtype(_SIMPLE_OF[code])
                                                .newbyteorder(self.order)).tobytes())

    def text(self, name: str, text: str) -> bytes:
        codes = np.array([ord(c) for c in text], dtype=np.dtype("u2").newbyteorder(self.order))
        return self.data(name, [20, 4, len(codes)], codes.tobytes())


def _element(dtype: np.dtype) -> list:
    """Type description of one element of the ``Data`` array for pixels of ``dtype``: a
    simple type, or a struct of (real, imaginary) for complex pixels (one element a pixel)."""
    if dtype.kind == "c":
        part = _ELEMENT[f"f{dtype.itemsize // 2}"]
        return [15, 0, 2, 0, part, 0, part]
    return [_ELEMENT[f"{dtype.kind}{dtype.itemsize}"]]


def _image(t: _Tags, name: str, file_array: np.ndarray, data_type: int, meta_format, swapped,
           override=None):
    override = override or {}
    dims = file_array.shape[::-1]  # DM lists dimensions fastest first
    dims = tuple(override.get("dimensions", dims))
    data_type = override.get("data_type", data_type)
    raw = np.ascontiguousarray(file_array).tobytes()
    calib = [t.group("", [t.simple("Origin", 6, 0.0), t.simple("Scale", 6, 1.0), t.text("Units", "")])
             for _ in dims]
    image_data = [
        t.group("Calibrations", [
            t.group("Brightness", [t.simple("Origin", 6, 0.0), t.simple("Scale", 6, 1.0),
                                   t.text("Units", "")]),
            t.group("Dimension", calib),
            t.simple("DisplayCalibratedUnits", 8, 1)]),
        t.data("Data", [20] + _element(file_array.dtype) + [file_array.size], raw),
        t.simple("DataType", 3, data_type),
        t.group("Dimensions", [t.simple("", 5, d) for d in dims]),
        t.simple("PixelDepth", 5, override.get("pixel_depth", file_array.dtype.itemsize)),
    ]
    meta = []
    if meta_format is not None:
        meta.append(t.text("Format", meta_format))
    if swapped is not None:
        meta.append(t.simple("Data Order Swapped", 8, int(swapped)))
    image_tags = [t.group("Meta Data", meta)] if meta else []
    return t.group("", [t.group("ImageData", image_data), t.group("ImageTags", image_tags),
                        t.text("Name", name)])


def write_dm(path, data, *, sig_dims: int = 2, order: str = "C", version: int = 4,
             byteorder: Literal["<", ">"] | None = None, order_tag="auto", thumbnail: bool = True,
             meta_format: str | None = "auto", more_images=(), override=None) -> str:
    """Write ``data`` (logical ``nav + sig``, C order) as a DM3 or DM4 file.

    Parameters
    ----------
    path : str or os.PathLike
    data : numpy.ndarray
        ``nav + sig``; ``nav == (1,)`` (or no nav axis) writes a single image (a spectrum
        image of one row for ``sig_dims=1``).
    sig_dims : int
        2: images (``Format`` "Image"); 1: a spectrum image (``Format`` "Spectrum image").
    order : {"C", "F"}
        ``"C"``: frames contiguous; ``"F"``: transposed, the signal axes outermost.
    version : {3, 4}
    byteorder : {"<", ">"}, optional
        Byte order of the tag values and pixels; default: that of ``data.dtype``.
    order_tag : "auto", bool or None
        Write ``ImageTags/Meta Data/Data Order Swapped`` (1 for ``"C"``, 0 for ``"F"``):
        ``"auto"`` only where a reader's default for this kind of data would be the other
        order, ``True`` always, ``False``/``None`` never.
    thumbnail : bool
        Put an 8x8 RGBA thumbnail first in ``ImageList``, as GMS does.
    meta_format : str, "auto" or None
        The ``Meta Data/Format`` tag (``None``: none written).
    more_images : sequence of numpy.ndarray
        Further 2D images appended to ``ImageList`` (C order).
    override : dict, optional
        Tags of the data image to write with other values than the data's, to make files whose
        tags disagree with their pixels: ``dimensions`` (DM order, fastest first),
        ``data_type``, ``pixel_depth``.

    Returns
    -------
    str
        The path.

    Examples
    --------
    >>> import tempfile, os
    >>> from udfkit.io.formats._dm_tags import parse_dm
    >>> path = write_dm(os.path.join(tempfile.mkdtemp(), "a.dm4"), np.zeros((3, 4, 5), "uint16"))
    >>> parse_dm(path).get("ImageList", "TagGroup1", "ImageData", "Dimensions")
    {'Data0': 5, 'Data1': 4, 'Data2': 3}
    """
    data = np.asarray(data)
    if order not in ("C", "F"):
        raise ValueError(f"order: expected 'C' or 'F', got {order!r}")
    if version not in (3, 4):
        raise ValueError(f"version: expected 3 or 4, got {version!r}")
    if byteorder is None:
        byteorder = ">" if data.dtype.byteorder == ">" else "<"
    native = data.dtype.newbyteorder("=")
    if native.name == "bool":
        native = np.dtype("uint8")
    if native.name not in DATA_TYPES:
        raise ValueError(f"dtype {data.dtype} has no DM data type; one of {sorted(DATA_TYPES)}")
    nav = data.shape[:data.ndim - sig_dims]
    sig = data.shape[data.ndim - sig_dims:]
    if nav == (1,) and sig_dims == 2:
        nav = ()
    logical = data.reshape(nav + sig).astype(native.newbyteorder(byteorder))
    if order == "F" and nav:
        axes = tuple(range(len(nav), len(nav) + len(sig))) + tuple(range(len(nav)))
        file_array = logical.transpose(axes)
    else:
        file_array = logical
    ndim = file_array.ndim
    spectrum = sig_dims == 1
    default_c = ndim in (2, 3) and not (spectrum and ndim == 3)
    if order_tag == "auto":
        swapped = None if default_c == (order == "C") else order == "C"
    elif order_tag:
        swapped = order == "C"
    else:
        swapped = None
    if meta_format == "auto":
        meta_format = "Spectrum image" if spectrum else "Image"
    t = _Tags(version, byteorder)
    images = []
    if thumbnail:
        thumb = np.zeros((8, 8), dtype=np.dtype("u4").newbyteorder(byteorder))
        images.append(_image(t, "thumbnail", thumb, 23, None, None))
    images.append(_image(t, "data", file_array, DATA_TYPES[native.name], meta_format, swapped,
                         override))
    for extra in more_images:
        extra = np.asarray(extra)
        images.append(_image(t, "more", extra.astype(extra.dtype.newbyteorder(byteorder)),
                             DATA_TYPES[extra.dtype.newbyteorder("=").name], "Image", None))
    root = [t.group("ImageList", images)]
    if thumbnail:
        root.append(t.group("Thumbnails", [t.group("", [t.simple("ImageIndex", 5, 0)])]))
    body = b"\x01\x00" + t.count(len(root)) + b"".join(root)
    header = (version.to_bytes(4, "big") + len(body).to_bytes(t.word, "big")
              + (1 if byteorder == "<" else 0).to_bytes(4, "big"))
    path = os.fspath(path)
    with open(path, "wb") as f:
        f.write(header + body + bytes(8))
    return path
