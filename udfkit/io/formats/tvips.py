"""The ``tvips`` format: TVIPS EM-Menu / Recorder movie series (``*_000.tvips``, ``*_001.tvips``, ...).

A recording is split over numbered files. The first file starts with a 256-byte **series
header** (little-endian int32 fields: its own size 256, version 1 or 2, image width and
height, bits per pixel 8 or 16, camera offsets and binning, pixel size, high tension, total
magnification and, in version 2, the bytes of every frame header); the later files hold only
frames. Every frame is a **frame header** (12 bytes in version 1) followed by the pixels::

    file _000: | series header | fh | frame | fh | frame | ...
    file _001: | fh | frame | fh | frame | ...

so the frames lie at a fixed stride in each file and udfkit's read planner and I/O backends
read them (one :class:`~udfkit.io.layout.FileLayout` per file). Any file of a series may be
given as ``path``: the others are found by their numbers, and a number missing in the middle
is an error naming the missing file.

**Scan shape.** A version-2 frame header of at least 76 bytes holds the scan position of its
frame (``Scan_x``, ``Scan_y``, float32 at bytes 68 and 72, as LiberTEM reads them). When
``nav_shape`` or ``sync_offset`` is not given, udfkit looks at the first 4096 frames for the
first frame at scan position (0, 0) followed by one at (0, 1): that frame's index is the
``sync_offset``, and the largest ``Scan_x`` before it falls back to 0 gives the row length, so
``nav_shape = (frames after the offset // row length, row length)``. Without such frames the
data set is one axis of all frames.
"""

from __future__ import annotations

import os
import re
from math import prod

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
from ._header_shapes import read_struct
from .base import COMMON_PARAMS, Format, Param, read_head

__all__ = ["TVIPSFormat", "TVIPSDataSet", "series_files", "read_series_header", "write_tvips",
           "SERIES_HEADER_FIELDS", "FRAME_HEADER_FIELDS"]

SERIES_HEADER_BYTES = 256
V1_FRAME_HEADER_BYTES = 12
#: frames searched for the start of the scan
MAX_SCAN_SEARCH = 4096

SERIES_HEADER_FIELDS = [
    ("ISize", "<i4"), ("IVersion", "<i4"), ("IXDim", "<i4"), ("IYDim", "<i4"), ("IBPP", "<i4"),
    ("IXOff", "<i4"), ("IYOff", "<i4"), ("IXBin", "<i4"), ("IYBin", "<i4"), ("IPixelSize", "<i4"),
    ("IHT", "<i4"), ("IMagTotal", "<i4"), ("IImgHeaderBytes", "<i4"), ("unused", "V204"),
]

#: the version-2 frame header as far as it is known (108 bytes; files may have more or fewer)
FRAME_HEADER_FIELDS = [
    ("ICounter", "<u4"), ("ITime", "<u4"), ("IMS", "<u4"), ("LUT_Index", "<u4"),
    ("Faraday", "<f4"), ("TEM_Mag", "<u4"), ("TEM_Mag_mode", "<u4"), ("TEM_Stage_x", "<f4"),
    ("TEM_Stage_y", "<f4"), ("TEM_Stage_z", "<f4"), ("TEM_Stage_alpha", "<f4"),
    ("TEM_Stage_beta", "<f4"), ("Index_of_rotator", "<u4"), ("DENS_T_measure", "<f4"),
    ("DENS_T_setpoint", "<f4"), ("DENS_Power", "<f4"), ("TEM_Obj_current", "<f4"),
    ("Scan_x", "<f4"), ("Scan_y", "<f4"), ("DENS_Bias_U_setpoint", "<f4"),
    ("DENS_Bias_U_value", "<f4"), ("DENS_Bias_I_setpoint", "<f4"), ("DENS_Bias_I_value", "<f4"),
    ("DENS_Bias_E_setpoint", "<f4"), ("DENS_Bias_R", "<f4"), ("DENS_Bias_limit_U", "<f4"),
    ("DENS_Bias_limit_I", "<f4"),
]
_SCAN_X_AT, _SCAN_Y_AT = 68, 72

_SERIES_NAME = re.compile(r"^(?P<stem>.*)_(?P<num>\d{3,})(?P<ext>\.tvips)$", re.IGNORECASE)


class TVIPSFormat(Format):
    """TVIPS movie series (``*_000.tvips`` and the files after it)."""

    name = "tvips"
    dataset = "udfkit.io.formats.tvips:TVIPSDataSet"
    extensions = (".tvips",)
    params = (
        Param("path", "path", None, "any file of the series"),
        COMMON_PARAMS["nav_shape"], COMMON_PARAMS["sig_shape"],
        Param("sync_offset", "int", None,
              "skip N frames at the start (default: detected from the frame headers' scan "
              "positions, else 0)"),
        COMMON_PARAMS["io_backend"], COMMON_PARAMS["num_partitions"], COMMON_PARAMS["allow_partial"],
    )

    @classmethod
    def guess_can_open(cls, path: str) -> float:
        if not os.path.isfile(path) or not path.lower().endswith(".tvips"):
            return 0.0
        head = read_head(path, 8)
        if len(head) == 8 and int.from_bytes(head[:4], "little") == SERIES_HEADER_BYTES \
                and int.from_bytes(head[4:], "little") in (1, 2):
            return 1.0
        return 0.8  # a later file of a series: frames only


def series_files(path: str) -> list:
    """All files of the series that ``path`` belongs to, in order (``_000`` first).

    A file whose name has no ``_NNN`` number is a series of one file. Raises a
    :class:`~udfkit.errors.DataSetError` when the first file or one in the middle is missing.

    Examples
    --------
    >>> import os, tempfile
    >>> d = tempfile.mkdtemp()
    >>> for n in ("a_000.tvips", "a_001.tvips", "a_002.tvips", "b_000.tvips"):
    ...     open(os.path.join(d, n), "wb").close()
    >>> [os.path.basename(p) for p in series_files(os.path.join(d, "a_001.tvips"))]
    ['a_000.tvips', 'a_001.tvips', 'a_002.tvips']
    """
    path = os.fspath(path)
    directory, name = os.path.split(path)
    m = _SERIES_NAME.match(name)
    if m is None:
        return [path]
    stem = m.group("stem")
    found: dict[int, str] = {}
    for entry in os.listdir(directory or "."):
        e = _SERIES_NAME.match(entry)
        if e is None or e.group("stem") != stem or not os.path.isfile(os.path.join(directory, entry)):
            continue
        num = int(e.group("num"))
        if num in found:
            raise DataSetError(f"tvips series {os.path.join(directory, stem)!r}: files "
                               f"{found[num]!r} and {entry!r} both have number {num}")
        found[num] = entry
    digits = len(m.group("num"))
    last = max(found)
    missing = [n for n in range(last + 1) if n not in found]
    if missing:
        names = [f"{stem}_{n:0{digits}d}{m.group('ext')}" for n in missing]
        first = " (the first file, which holds the series header)" if missing[0] == 0 else ""
        raise DataSetError(f"tvips series of {path!r} is incomplete: {', '.join(map(repr, names))}"
                           f"{first} {'is' if len(names) == 1 else 'are'} missing, but "
                           f"{found[last]!r} exists; expected the files _{0:0{digits}d} to "
                           f"_{last:0{digits}d} in {directory or '.'!r}")
    return [os.path.join(directory, found[n]) for n in range(last + 1)]


def read_series_header(path: str) -> dict:
    """The series header of the first file of a series, checked.

    The result has the header's fields plus ``frame_header_bytes`` (12 for version 1).
    """
    where = f"tvips file {path!r}"
    with open(path, "rb") as f:
        raw = f.read(SERIES_HEADER_BYTES)
    h = read_struct(raw, SERIES_HEADER_FIELDS, where, "series header")
    h.pop("unused")
    if h["ISize"] != SERIES_HEADER_BYTES or h["IVersion"] not in (1, 2):
        raise DataSetError(f"{where}: the series header does not parse: expected its size 256 and "
                           f"version 1 or 2 in its first 8 bytes, found size {h['ISize']} and "
                           f"version {h['IVersion']}; is it the first file (_000) of a TVIPS series?")
    if h["IBPP"] not in (8, 16):
        raise DataSetError(f"{where}: {h['IBPP']} bits per pixel are not read; expected 8 or 16")
    if h["IXDim"] <= 0 or h["IYDim"] <= 0:
        raise DataSetError(f"{where}: the series header gives frames of {h['IXDim']} x {h['IYDim']} "
                           "pixels; expected positive sizes")
    fh = V1_FRAME_HEADER_BYTES if h["IVersion"] == 1 else h["IImgHeaderBytes"]
    if fh < 0:
        raise DataSetError(f"{where}: the series header gives {fh} bytes of frame header; "
                           "expected 0 or more")
    h["frame_header_bytes"] = fh
    return h


class TVIPSDataSet(FileDataSet):
    """A TVIPS movie series: one or several ``.tvips`` files.

    Parameters
    ----------
    path : str or os.PathLike
        Any file of the series (``*_000.tvips``, ``*_001.tvips``, ...).
    nav_shape : tuple of int, optional
        Default: the scan shape detected from the frame headers, else one axis of all frames.
    sig_shape : tuple of int, optional
        Default ``(height, width)``; another shape must keep the pixel count.
    sync_offset : int, optional
        Frames to skip at the start (negative: positions without a frame). Default: the start
        of the scan detected from the frame headers, else 0.
    io_backend : str or IOBackend, optional
        ``"mmap"`` (default), ``"buffered"`` or ``"direct"``.
    num_partitions : int, optional
    allow_partial : bool
        Accept fewer frames than ``nav_shape`` needs, or a partial frame at the end of the
        last file (an aborted recording).

    Examples
    --------
    >>> import os, tempfile
    >>> import numpy as np
    >>> from udfkit import Context
    >>> from udfkit.io.formats.tvips import write_tvips
    >>> d = tempfile.mkdtemp()
    >>> write_tvips(os.path.join(d, "rec_000.tvips"), np.zeros((10, 8, 8), "uint16"), frames_per_file=4)
    3
    >>> ds = Context.make_with("inline").load("tvips", path=os.path.join(d, "rec_002.tvips"))
    >>> ds.shape, [f["frames"] for f in ds.layout_info()["files"]]
    (Shape((10, 8, 8), sig_dims=2), [4, 4, 2])
    """

    format_name = "tvips"

    def __init__(self, path: str | os.PathLike[str] | None = None, nav_shape: ShapeLike | None = None,
                 sig_shape: ShapeLike | None = None, sync_offset: int | None = None,
                 io_backend: str | IOBackend | None = None, num_partitions: int | None = None,
                 allow_partial: bool = False):
        super().__init__(nav_shape=nav_shape, sig_shape=sig_shape, sync_offset=sync_offset,
                         num_partitions=num_partitions, allow_partial=allow_partial,
                         io_backend=io_backend)
        self._path_arg = path
        self._info: dict = {}

    def _initialize(self) -> DataSetMeta:
        path = check_path(self._path_arg, "tvips file")
        paths = series_files(path)
        first = paths[0]
        where = (f"tvips file {first!r}" if len(paths) == 1
                 else f"tvips series {first!r} ... {os.path.basename(paths[-1])!r} ({len(paths)} files)")
        h = read_series_header(first)
        dtype = np.dtype("<u1" if h["IBPP"] == 8 else "<u2")
        native_sig = (h["IYDim"], h["IXDim"])
        frame_bytes = prod(native_sig) * dtype.itemsize
        fh = h["frame_header_bytes"]
        record = fh + frame_bytes
        desc = f"{fh} header bytes + {native_sig[0]} x {native_sig[1]} pixels of {h['IBPP']} bits"
        counts, sizes = [], []
        for i, p in enumerate(paths):
            size = os.path.getsize(p)
            head = SERIES_HEADER_BYTES if i == 0 else 0
            n, rest = divmod(max(0, size - head), record)
            last = i == len(paths) - 1
            if size < head or (rest and not (last and self._allow_partial)):
                what = (f"the last of {len(paths)} files in the series" if last
                        else f"file {i + 1} of {len(paths)} in the series")
                hint = ("; pass allow_partial=True to read its whole frames" if last
                        else "; every file but the last must hold whole frames")
                raise DataSetError(
                    f"tvips file {p!r} ({what}) is truncated: it has {size} bytes, "
                    f"{head} series header bytes and {n} whole frames of {record} bytes ({desc}) "
                    f"and {max(0, size - head) - n * record} bytes of a partial frame{hint}")
            counts.append(n)
            sizes.append(size)
        image_count = sum(counts)
        if image_count == 0:
            raise DataSetError(f"{where} holds no complete frame ({sum(sizes)} bytes); a frame needs "
                               f"{record} bytes ({desc})")
        fileset = FileSet([FileLayout(p, SERIES_HEADER_BYTES if i == 0 else 0, dtype, native_sig, n,
                                      fh, 0) for i, (p, n) in enumerate(zip(paths, counts)) if n])
        scan = self._detect_scan(fileset, h, image_count)
        sync_offset = self._sync_offset_arg
        if sync_offset is None:
            sync_offset = scan.get("sync_offset", 0)
        native_nav: tuple[int, ...] = (image_count,)
        if scan.get("row_length"):
            sync = sync_offset if isinstance(sync_offset, int) else 0
            rows = (image_count - sync) // scan["row_length"]
            if rows > 0:
                native_nav = (rows, scan["row_length"])
        nav, sig, sync_offset = resolve_fixed_frames(
            where, native_nav=native_nav, native_sig=native_sig, nav_shape=self._nav_shape_arg,
            sig_shape=self._sig_shape_arg, image_count=image_count, sync_offset=sync_offset,
            allow_partial=self._allow_partial, have=f"{sum(sizes)} bytes", frame_desc=desc)
        if sig != native_sig:
            fileset = FileSet([FileLayout(f.path, f.header_bytes, dtype, sig, f.image_count, fh, 0)
                               for f in fileset.files])
        self._fileset = fileset
        self._header = h
        self._info = {
            "version": h["IVersion"], "width": h["IXDim"], "height": h["IYDim"], "bits": h["IBPP"],
            "binning": (h["IXBin"], h["IYBin"]), "camera_offset": (h["IXOff"], h["IYOff"]),
            "pixel_size_nm": h["IPixelSize"], "high_tension_kv": h["IHT"],
            "magnification": h["IMagTotal"], "series_header_bytes": SERIES_HEADER_BYTES,
            "frame_header_bytes": fh,
            "files": [{"path": p, "frames": n, "bytes": s} for p, n, s in zip(paths, counts, sizes)],
            "scan": scan,
        }
        metadata = {"path": first, "file_bytes": sum(sizes), "header_bytes": SERIES_HEADER_BYTES,
                    "frame_header_bytes": fh, "io_backend": self._backend.name}
        if len(paths) > 1:
            metadata["paths"] = tuple(paths)
        return DataSetMeta(shape=Shape(nav + sig, sig_dims=len(sig)), raw_dtype=dtype,
                           image_count=image_count, sync_offset=sync_offset, metadata=metadata)

    def _detect_scan(self, fileset, h, image_count) -> dict:
        """Start and row length of the scan from the frame headers (see the module docstring)."""
        if self._nav_shape_arg is not None and self._sync_offset_arg is not None:
            return {"detected": False, "reason": "nav_shape and sync_offset given"}
        if h["IVersion"] != 2 or h["frame_header_bytes"] < _SCAN_Y_AT + 4:
            return {"detected": False,
                    "reason": f"frame headers of {h['frame_header_bytes']} bytes hold no scan position"}
        n = min(image_count, MAX_SCAN_SEARCH)
        raw = frame_headers(fileset, n, _SCAN_Y_AT + 4)
        xs = raw[:, _SCAN_X_AT:_SCAN_X_AT + 4].copy().view("<f4")[:, 0]
        ys = raw[:, _SCAN_Y_AT:_SCAN_Y_AT + 4].copy().view("<f4")[:, 0]
        if not (np.isfinite(xs).all() and np.isfinite(ys).all()):
            return {"detected": False, "reason": "scan positions are not finite numbers"}
        xs, ys = xs.astype(np.int64), ys.astype(np.int64)
        starts = np.flatnonzero((xs[:-1] == 0) & (ys[:-1] == 0) & (xs[1:] == 1) & (ys[1:] == 0))
        if starts.size == 0:
            return {"detected": False,
                    "reason": f"no frame at scan position (0, 0) followed by (0, 1) in the first {n}"}
        start = int(starts[0])
        falls = np.flatnonzero(np.diff(xs[start:]) < 0)
        out = {"detected": True, "sync_offset": start}
        if falls.size:
            out["row_length"] = int(xs[start:start + int(falls[0]) + 1].max()) + 1
        return out

    @property
    def header(self) -> dict:
        """The series header's fields (after ``initialize``)."""
        self._require_meta()
        return dict(self._header)

    def frame_headers(self) -> np.ndarray:
        """The frame headers of all frames as a structured array of :data:`FRAME_HEADER_FIELDS`
        (as many of them as the header bytes hold)."""
        meta = self._require_meta()
        fh = self._header["frame_header_bytes"]
        fields, at = [], 0
        for name, dt in FRAME_HEADER_FIELDS:
            size = np.dtype(dt).itemsize
            if at + size > fh:
                break
            fields.append((name, dt))
            at += size
        raw = frame_headers(self._fileset, meta.image_count, at)
        return raw.view(np.dtype(fields))[:, 0] if fields else np.zeros(meta.image_count, [])

    def layout_info(self) -> dict:
        """Series header, files with their frame counts, and the scan detection."""
        self._require_meta()
        return dict(self._info)


def frame_headers(fileset, n: int, nbytes: int) -> np.ndarray:
    """The first ``nbytes`` of the frame headers of the first ``n`` frames, ``(n, nbytes)`` uint8."""
    out = np.empty((n, nbytes), dtype=np.uint8)
    done = 0
    for f in fileset.files:
        if done >= n:
            break
        k = min(f.image_count, n - done)
        mm = np.memmap(f.path, dtype=np.uint8, mode="r", offset=f.header_bytes, shape=(k, f.stride))
        with guarded_reads(mm, f.path):
            out[done:done + k] = mm[:, :nbytes]
        del mm
        done += k
    return out


def write_tvips(path, frames, *, frames_per_file: int | None = None, version: int = 2,
                frame_header_bytes: int = 108, scan_positions=None) -> int:
    """Write ``frames`` (``(n, height, width)`` uint8 or uint16) as a TVIPS series; returns the
    number of files.

    For tests and examples. ``path`` names the first file (``<stem>_000.tvips``; a name
    without the number gets it). ``frames_per_file`` splits the frames over several files.
    ``scan_positions`` (``(n, 2)`` of ``(y, x)``) go to the ``Scan_y``/``Scan_x`` fields of
    version-2 frame headers of at least 76 bytes; ``ICounter`` counts the frames.
    """
    frames = np.asarray(frames)
    if frames.ndim != 3 or frames.dtype.str.lstrip("<|=") not in ("u1", "u2"):
        raise ValueError(f"write_tvips: expected (n, height, width) uint8/uint16 frames, got "
                         f"shape {frames.shape} and dtype {frames.dtype}")
    n, height, width = frames.shape
    dtype = frames.dtype.newbyteorder("<")
    fh = V1_FRAME_HEADER_BYTES if version == 1 else int(frame_header_bytes)
    path = os.fspath(path)
    directory, name = os.path.split(path)
    m = _SERIES_NAME.match(name)
    stem = os.path.join(directory, m.group("stem") if m else os.path.splitext(name)[0])
    header = np.zeros((), dtype=np.dtype(SERIES_HEADER_FIELDS))
    header["ISize"], header["IVersion"] = SERIES_HEADER_BYTES, version
    header["IXDim"], header["IYDim"], header["IBPP"] = width, height, dtype.itemsize * 8
    header["IXBin"] = header["IYBin"] = 1
    header["IPixelSize"], header["IHT"], header["IMagTotal"] = 55, 200, 80
    header["IImgHeaderBytes"] = fh
    header["unused"] = np.void(b"udfkit " * 29 + b"\0")
    per_file = n if frames_per_file is None else max(1, int(frames_per_file))
    record = fh + frames[0].nbytes
    chunks = [range(a, min(n, a + per_file)) for a in range(0, max(n, 1), per_file)]
    for k, chunk in enumerate(chunks):
        buf = bytearray(header.tobytes() if k == 0 else b"")
        for i in chunk:
            rec = bytearray(record)
            head = np.zeros(1, np.dtype(FRAME_HEADER_FIELDS)).tobytes()[:fh]
            rec[:len(head)] = head
            if fh >= 4:
                rec[0:4] = np.array([i], "<u4").tobytes()
            if scan_positions is not None and fh >= _SCAN_Y_AT + 4:
                y, x = scan_positions[i]
                rec[_SCAN_X_AT:_SCAN_X_AT + 4] = np.array([x], "<f4").tobytes()
                rec[_SCAN_Y_AT:_SCAN_Y_AT + 4] = np.array([y], "<f4").tobytes()
            rec[fh:] = np.ascontiguousarray(frames[i], dtype=dtype).tobytes()
            buf += rec
        with open(f"{stem}_{k:03d}.tvips", "wb") as f:
            f.write(buf)
    return len(chunks)

