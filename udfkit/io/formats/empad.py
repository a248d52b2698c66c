"""The ``empad`` format: EMPAD detector scans, an XML file and the raw file it names.

What an acquisition holds
-------------------------
The EMPAD software writes an XML file (parsed with :mod:`defusedxml`) and a raw file of
little-endian float32 frames of 130 rows x 128 columns, one per scan position, in scan
order. The last two rows of every frame are metadata, not pixels: udfkit reads frames of
128 x 128 and skips the 1024 bytes after each one (a frame footer), so the
frames lie at a fixed stride and udfkit's own I/O backends read them.

Where the shape comes from
--------------------------
The XML names the raw file in ``<raw_file filename=...>`` (only the file name is used: the
raw file is looked for next to the XML, as acquisition folders are moved). The navigation
shape, in this order:

1. a series (``<type>series</type>``, or ``<scan_parameters><series_count>``): ``(count,)``;
2. ``<pix_y>``, ``<pix_x>``: ``(pix_y, pix_x)`` — these agree with the raw file;
3. a raw file named ``scan_x<X>_y<Y>.raw`` (EMPAD 1.2 writes no ``pix_x``): ``(Y, X)``;
4. ``<scan_parameters mode="acquire">`` or ``mode="search"``, ``scan_resolution_y/_x``:
   whichever of the two fits the raw file's size. ``scan_resolution`` often describes the
   scan generator rather than the recorded frames, so it comes last.

Without ``nav_shape=``, a raw file whose size disagrees with that shape is an error naming
both (``allow_partial=True`` accepts a shorter one, an aborted scan). A ``.raw`` path can also
be loaded directly, with ``nav_shape=`` (default: all its frames in one line).
"""

from __future__ import annotations

import os
import re
from math import prod

import numpy as np

from ...common import Shape
from ...common.parse import ShapeLike
from ...errors import DataSetError, DataSetFileNotFoundError
from ..base import DataSetMeta, IOBackend
from ..file_based import FileDataSet
from ..layout import FileLayout, FileSet
from ._common import check_path
from ._fixed_frames import resolve_fixed_frames
from .base import COMMON_PARAMS, Format, Param, read_head

__all__ = ["EMPADFormat", "EMPADDataSet", "read_empad_xml", "EMPADInfo", "FRAME_SHAPE",
           "RAW_FRAME_SHAPE", "EMPAD_DTYPE"]

#: the pixels of a frame
FRAME_SHAPE = (128, 128)
#: a frame as stored: two more rows of metadata
RAW_FRAME_SHAPE = (130, 128)
EMPAD_DTYPE = np.dtype("<f4")
FOOTER_BYTES = (RAW_FRAME_SHAPE[0] - FRAME_SHAPE[0]) * FRAME_SHAPE[1] * EMPAD_DTYPE.itemsize
RAW_FRAME_BYTES = prod(RAW_FRAME_SHAPE) * EMPAD_DTYPE.itemsize
#: how far into an XML file ``guess_can_open`` looks for ``<raw_file``
_XML_HEAD = 1 << 16
_SCAN_NAME = re.compile(r"^scan_x(\d+)_y(\d+)\.raw$", re.IGNORECASE)


class EMPADFormat(Format):
    """EMPAD acquisitions: the ``.xml`` file (or the ``.raw`` file with ``nav_shape``)."""

    name = "empad"
    dataset = "udfkit.io.formats.empad:EMPADDataSet"
    extensions = (".xml",)
    params = (
        Param("path", "path", None, "the acquisition's .xml file, or its .raw file"),
        COMMON_PARAMS["nav_shape"], COMMON_PARAMS["sig_shape"], COMMON_PARAMS["sync_offset"],
        COMMON_PARAMS["io_backend"], COMMON_PARAMS["num_partitions"], COMMON_PARAMS["allow_partial"],
    )

    @classmethod
    def guess_can_open(cls, path: str) -> float:
        """0.9 for an XML file with a ``<raw_file`` element near its start; 0.8 for a ``.raw``
        file named by such an XML file next to it."""
        if not os.path.isfile(path):
            return 0.0
        lower = path.lower()
        if lower.endswith(".xml"):
            return 0.9 if _looks_like_empad_xml(path) else 0.0
        if lower.endswith(".raw"):
            return 0.8 if _xml_naming(path) is not None else 0.0
        return 0.0


def _looks_like_empad_xml(path: str) -> bool:
    head = read_head(path, _XML_HEAD)
    return head.lstrip().startswith(b"<") and b"<raw_file" in head


def _xml_naming(raw_path: str):
    """The EMPAD XML file next to ``raw_path`` that names it, or None."""
    folder = os.path.dirname(os.path.abspath(raw_path))
    name = os.path.basename(raw_path)
    try:
        entries = sorted(os.listdir(folder))
    except OSError:
        return None
    for entry in entries:
        candidate = os.path.join(folder, entry)
        if not entry.lower().endswith(".xml") or not _looks_like_empad_xml(candidate):
            continue
        try:
            if os.path.basename(_raw_file_name(_parse(candidate), candidate)) == name:
                return candidate
        except DataSetError:
            continue
    return None


class EMPADInfo:
    """What udfkit takes from an EMPAD XML file (see :func:`read_empad_xml`).

    Attributes
    ----------
    raw_path : str
        The raw file: the name from ``<raw_file>``, next to the XML file.
    raw_name : str
        The ``filename`` attribute as written (may be an absolute path of the acquisition PC).
    kind : str
        ``"scan"`` or ``"series"``.
    candidates : list of (tuple, str)
        Navigation shapes and where each comes from, in the order of preference; several only
        for ``scan_resolution`` (acquire, search), decided by the raw file's size.
    timestamp : str or None
        ``<timestamp isoformat=...>``.
    """

    def __init__(self, raw_path, raw_name, kind, candidates, timestamp):
        self.raw_path = raw_path
        self.raw_name = raw_name
        self.kind = kind
        self.candidates = candidates
        self.timestamp = timestamp


def _parse(path: str):
    import defusedxml.ElementTree as ET
    from defusedxml import DefusedXmlException

    try:
        return ET.parse(path).getroot()
    except (ET.ParseError, DefusedXmlException) as e:
        raise DataSetError(f"EMPAD XML file {path!r} does not parse as XML: {e}") from None


def _raw_file_name(root, path: str) -> str:
    node = root.find("raw_file")
    name = node.get("filename") if node is not None else None
    if not name or not name.strip():
        raise DataSetError(f"EMPAD XML file {path!r} has no <raw_file filename=\"...\"/> element; "
                           "expected the name of the raw file there")
    return name.strip()


def _int_of(root, tag: str, path: str):
    node = root.find(tag)
    if node is None or node.text is None:
        return None
    try:
        value = int(node.text.strip())
    except ValueError:
        raise DataSetError(f"EMPAD XML file {path!r}: <{tag}> is {node.text.strip()!r}; expected a "
                           "whole number") from None
    if value < 1:
        raise DataSetError(f"EMPAD XML file {path!r}: <{tag}> is {value}; expected at least 1")
    return value


def read_empad_xml(path: str) -> EMPADInfo:
    """Parse an EMPAD acquisition XML file (see the module docstring for the shape rules).

    Raises
    ------
    DataSetError
        When the XML does not parse, names no raw file, or gives no navigation shape.
    """
    root = _parse(path)
    raw_name = _raw_file_name(root, path)
    # the acquisition PC's absolute path (either separator) is of no use elsewhere
    base = re.split(r"[\\/]", raw_name)[-1]
    raw_path = os.path.join(os.path.dirname(os.path.abspath(path)), base)
    stamp = root.find("timestamp")
    timestamp = stamp.get("isoformat") if stamp is not None else None
    typ = root.find("type")
    kind = typ.text.strip() if typ is not None and typ.text else None
    count = _int_of(root, "scan_parameters/series_count", path)
    if kind == "series" or count is not None:
        count = count if count is not None else _int_of(root, "count", path)
        if count is None:
            raise DataSetError(f"EMPAD XML file {path!r} describes a series without <count> or "
                               "<scan_parameters><series_count>; pass nav_shape=")
        return EMPADInfo(raw_path, raw_name, "series", [((count,), "series_count")], timestamp)
    if kind not in (None, "scan"):
        raise DataSetError(f"EMPAD XML file {path!r}: <type> is {kind!r}; expected 'scan' or 'series'")
    px, py = _int_of(root, "pix_x", path), _int_of(root, "pix_y", path)
    if px is not None and py is not None:
        return EMPADInfo(raw_path, raw_name, "scan", [((py, px), "pix_y, pix_x")], timestamp)
    m = _SCAN_NAME.match(base)
    if m:
        shape = (int(m.group(2)), int(m.group(1)))
        return EMPADInfo(raw_path, raw_name, "scan", [(shape, f"raw file name {base!r}")], timestamp)
    candidates = []
    for mode in ("acquire", "search"):
        for node in root.findall("scan_parameters"):
            if node.get("mode") != mode:
                continue
            sx = _int_of(node, "scan_resolution_x", path)
            sy = _int_of(node, "scan_resolution_y", path)
            if sx is not None and sy is not None:
                candidates.append(((sy, sx), f"scan_parameters mode={mode!r} scan_resolution_y, _x"))
    if not candidates:
        raise DataSetError(f"EMPAD XML file {path!r} gives no scan shape: expected <pix_x>/<pix_y>, a "
                           "raw file named scan_x<X>_y<Y>.raw, <scan_parameters> with scan_resolution_x/"
                           "_y, or a series count; pass nav_shape=")
    return EMPADInfo(raw_path, raw_name, "scan", candidates, timestamp)


class EMPADDataSet(FileDataSet):
    """An EMPAD acquisition: frames of 128 x 128 float32 from the raw file the XML names.

    Parameters
    ----------
    path : str or os.PathLike
        The acquisition's ``.xml`` file (the shape comes from it), or its ``.raw`` file
        (then ``nav_shape`` says the shape; default all frames in a line).
    nav_shape : tuple of int, optional
        Overrides the XML's shape (the raw file must hold enough frames; the XML's shape is
        then not checked against the raw file's size).
    sig_shape : tuple of int, optional
        Another shape of 128 x 128 pixels.
    sync_offset, num_partitions, allow_partial
        As for the raw format; ``allow_partial`` accepts a raw file shorter than the XML says.
    io_backend : str or IOBackend, optional
        ``"mmap"`` (default), ``"buffered"`` or ``"direct"``, or a backend instance.

    Notes
    -----
    The two metadata rows at the end of every stored frame are skipped, as LiberTEM and
    rosettasciio do; the frames keep the file's row order.

    Examples
    --------
    >>> import numpy as np, tempfile, os
    >>> from udfkit import Context
    >>> d = tempfile.mkdtemp()
    >>> np.zeros((2, 3, 130, 128), dtype="<f4").tofile(os.path.join(d, "scan_x3_y2.raw"))
    >>> with open(os.path.join(d, "acq.xml"), "w") as f:
    ...     _ = f.write('<root><type>scan</type><pix_x>3</pix_x><pix_y>2</pix_y>'
    ...                 '<raw_file filename="scan_x3_y2.raw"/></root>')
    >>> ds = Context.make_with("inline").load("empad", path=os.path.join(d, "acq.xml"))
    >>> ds.shape, ds.dtype
    (Shape((2, 3, 128, 128), sig_dims=2), dtype('float32'))
    """

    format_name = "empad"

    def __init__(self, path: str | os.PathLike[str] | None = None, nav_shape: ShapeLike | None = None,
                 sig_shape: ShapeLike | None = None, sync_offset: int = 0,
                 io_backend: str | IOBackend | None = None, num_partitions: int | None = None,
                 allow_partial: bool = False):
        super().__init__(nav_shape=nav_shape, sig_shape=sig_shape, sync_offset=sync_offset,
                         num_partitions=num_partitions, allow_partial=allow_partial,
                         io_backend=io_backend)
        self._path_arg = path
        self._info: dict = {}

    def _initialize(self) -> DataSetMeta:
        path = check_path(self._path_arg, "EMPAD file")
        info = None
        if path.lower().endswith(".xml"):
            info = read_empad_xml(path)
            raw_path = info.raw_path
            if not os.path.isfile(raw_path):
                raise DataSetFileNotFoundError(
                    f"EMPAD XML file {path!r} names the raw file {info.raw_name!r}, but "
                    f"{raw_path!r} does not exist; expected it next to the XML file")
        elif path.lower().endswith(".raw"):
            raw_path = path
        else:
            raise DataSetError(f"EMPAD file {path!r}: expected the acquisition's .xml file or its "
                               ".raw file")
        where = f"EMPAD raw file {raw_path!r}" + (f" (of {os.path.basename(path)!r})" if info else "")
        size = os.path.getsize(raw_path)
        in_file, rest = divmod(size, RAW_FRAME_BYTES)
        frame_desc = f"{RAW_FRAME_SHAPE[0]} x {RAW_FRAME_SHAPE[1]} float32 = {RAW_FRAME_BYTES} bytes"
        source = "nav_shape"
        if self._nav_shape_arg is None and info is not None:
            native_nav, source = self._nav_from_xml(path, raw_path, info, size, in_file, rest, frame_desc)
            image_count = min(in_file, prod(native_nav))
        else:
            if rest and not self._allow_partial:
                raise DataSetError(f"{where} has {size} bytes: {in_file} frames of {frame_desc} and "
                                   f"{rest} bytes left over; an EMPAD raw file holds whole frames "
                                   "(pass allow_partial=True to read the whole ones)")
            native_nav = (in_file,)
            image_count = in_file
        nav_shape, sig_shape, sync_offset = resolve_fixed_frames(
            where, native_nav=native_nav, native_sig=FRAME_SHAPE, nav_shape=self._nav_shape_arg,
            sig_shape=self._sig_shape_arg, image_count=image_count, sync_offset=self._sync_offset_arg,
            allow_partial=self._allow_partial, have=f"{size} bytes", frame_desc=frame_desc)
        self._fileset = FileSet([FileLayout(raw_path, 0, EMPAD_DTYPE, sig_shape, image_count,
                                            frame_footer_bytes=FOOTER_BYTES)])
        self._info = {"raw_file": raw_path}
        if info is not None:
            self._info.update(xml=path, kind=info.kind, nav_shape_from=source)
            if info.timestamp:
                self._info["timestamp"] = info.timestamp
        self._info.update(frame=f"{RAW_FRAME_SHAPE[0]} x {RAW_FRAME_SHAPE[1]} float32, the last "
                                f"{RAW_FRAME_SHAPE[0] - FRAME_SHAPE[0]} rows metadata (a "
                                f"{FOOTER_BYTES}-byte frame footer, skipped)",
                          frames=f"{image_count} of {in_file} in the raw file")
        return DataSetMeta(shape=Shape(nav_shape + sig_shape, sig_dims=len(sig_shape)),
                           raw_dtype=EMPAD_DTYPE, image_count=image_count, sync_offset=sync_offset,
                           metadata={"path": path, "raw_path": raw_path, "file_bytes": size,
                                     "frame_footer_bytes": FOOTER_BYTES,
                                     "io_backend": self._backend.name})

    def _nav_from_xml(self, xml, raw_path, info, size, in_file, rest, frame_desc):
        """The XML's navigation shape that the raw file's size agrees with."""
        fits = [(shape, src) for shape, src in info.candidates
                if prod(shape) * RAW_FRAME_BYTES == size]
        if fits:
            return fits[0]
        if self._allow_partial:
            # an aborted scan: the first shape that the frames do not overfill
            for shape, src in info.candidates:
                if in_file <= prod(shape):
                    return shape, src
        shape = info.candidates[0][0]
        said = "; ".join(f"{s} = {prod(s)} frames ({prod(s) * RAW_FRAME_BYTES} bytes) from {f}"
                         for s, f in info.candidates)
        held = f"{in_file} frames" + (f" and {rest} bytes left over" if rest else "")
        raise DataSetError(
            f"EMPAD raw file {raw_path!r} has {size} bytes: {held} of {frame_desc}, but the XML file "
            f"{xml!r} gives the scan shape {said}; they disagree. Pass nav_shape= to choose the shape"
            + (", or allow_partial=True for an aborted scan" if in_file < prod(shape) else ""))

    def layout_info(self) -> dict:
        """The XML and raw file, where the scan shape came from, the frame and footer."""
        self._require_meta()
        return dict(self._info)
