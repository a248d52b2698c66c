"""The ``seq`` format: NorPix StreamPix sequences (``.seq``).

A sequence file is a header, then the frames at a fixed stride::

    | header (1024 bytes; 8192 from version 5 on) | frame 0 | footer 0 | frame 1 | footer 1 | ...

The header (little endian, magic ``0xFEED``) gives the frame width, height and bit depth,
the image format, the bytes of one image (``image_size_bytes``) and the stride from one frame
to the next (``true_image_size``); everything between the end of an image and the next one is
its footer, which starts with the frame's timestamp (seconds, milliseconds and, from version 5
on, microseconds). The number of frames follows from the file size; the header's
``allocated_frames`` says how many the file should hold.

Frames are uncompressed C-order pixels, so udfkit's read planner and I/O backends read them
(a :class:`~udfkit.io.layout.FileLayout` with a file header and per-frame footers). Only
uncompressed monochrome images (image format 100) with 8, 16 or 32 bits per pixel are read;
colour formats and compressed sequences are a :class:`~udfkit.errors.DataSetError` that names
the format.
"""

from __future__ import annotations

import os

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
from .base import COMMON_PARAMS, Format, Param

__all__ = ["SEQFormat", "SEQDataSet", "read_seq_header", "write_seq", "HEADER_FIELDS", "IMAGE_FORMATS"]

MAGIC = 0xFEED

#: the header, as far as it is read (632 bytes, little endian)
HEADER_FIELDS = [
    ("magic", "<u4"), ("name", "V24"), ("version", "<i4"), ("header_size", "<i4"),
    ("description", "V512"), ("width", "<u4"), ("height", "<u4"), ("bit_depth", "<u4"),
    ("bit_depth_real", "<u4"), ("image_size_bytes", "<u4"), ("image_format", "<u4"),
    ("allocated_frames", "<u4"), ("origin", "<u4"), ("true_image_size", "<u4"),
    ("suggested_frame_rate", "<f8"), ("description_format", "<i4"), ("reference_frame", "<u4"),
    ("fixed_size", "<u4"), ("flags", "<u4"), ("bayer_pattern", "<i4"), ("time_offset_us", "<i4"),
    ("extended_header_size", "<i4"), ("compression_format", "<u4"), ("reference_time_s", "<i4"),
    ("reference_time_ms", "<u2"), ("reference_time_us", "<u2"),
]

#: StreamPix image format codes, for messages; only 100 is read
IMAGE_FORMATS = {
    0: "unknown", 100: "monochrome", 101: "monochrome Bayer", 200: "BGR", 300: "planar",
    400: "RGB", 500: "BGRx", 600: "YUV422", 700: "UVY422", 800: "UVY411", 900: "UVY444",
}
MONO = 100
_BIT_DEPTHS = {8: "<u1", 16: "<u2", 32: "<u4"}


class SEQFormat(Format):
    """NorPix StreamPix ``.seq`` files (uncompressed monochrome)."""

    name = "seq"
    dataset = "udfkit.io.formats.seq:SEQDataSet"
    extensions = (".seq",)
    magic = (MAGIC.to_bytes(4, "little"),)
    params = (
        Param("path", "path", None, "the .seq file"),
        COMMON_PARAMS["nav_shape"], COMMON_PARAMS["sig_shape"], COMMON_PARAMS["sync_offset"],
        COMMON_PARAMS["io_backend"], COMMON_PARAMS["num_partitions"], COMMON_PARAMS["allow_partial"],
    )


def read_seq_header(path: str) -> dict:
    """The header fields of the ``.seq`` file ``path`` (strings decoded from UTF-16).

    Raises a :class:`~udfkit.errors.DataSetError` when the file is too short or is no sequence.
    """
    where = f"seq file {path!r}"
    with open(path, "rb") as f:
        raw = f.read(1024)
    header = read_struct(raw, HEADER_FIELDS, where, "NorPix sequence header")
    if header["magic"] != MAGIC:
        raise DataSetError(f"{where} is not a NorPix sequence: expected the magic number 0xFEED at "
                           f"its start, found {header['magic']:#x}")
    for key in ("name", "description"):
        header[key] = _utf16(header[key])
    return header


def _utf16(raw: bytes) -> str:
    # UTF-16 strings padded with zeros; cut at the first 2-byte zero on a character boundary
    for i in range(0, len(raw) - 1, 2):
        if raw[i:i + 2] == b"\0\0":
            raw = raw[:i]
            break
    return raw.decode("utf-16-le", errors="replace")


def image_offset(header: dict) -> int:
    """Where the first frame starts: 8192 from StreamPix 6 (header version 5) on, else 1024."""
    return 8192 if header["version"] >= 5 else 1024


class SEQDataSet(FileDataSet):
    """A NorPix StreamPix sequence (``.seq``) of uncompressed monochrome frames.

    Parameters
    ----------
    path : str or os.PathLike
        The ``.seq`` file.
    nav_shape : tuple of int, optional
        Default: one axis with all frames of the file (a sequence has no scan shape).
    sig_shape : tuple of int, optional
        Default ``(height, width)`` from the header; another shape must keep the pixel count.
    sync_offset : int
        Positive: skip that many frames at the start; negative: the first ``|sync_offset|``
        positions have no frame.
    io_backend : str or IOBackend, optional
        ``"mmap"`` (default), ``"buffered"`` or ``"direct"``.
    num_partitions : int, optional
    allow_partial : bool
        Accept a file with fewer frames than the header's ``allocated_frames`` or
        ``nav_shape`` need, or with a partial frame at its end (an aborted recording).

    Examples
    --------
    >>> import os, tempfile
    >>> import numpy as np
    >>> from udfkit import Context
    >>> from udfkit.io.formats.seq import write_seq
    >>> path = os.path.join(tempfile.mkdtemp(), "movie.seq")
    >>> write_seq(path, np.arange(3 * 4 * 5, dtype="uint16").reshape(3, 4, 5))
    >>> ds = Context.make_with("inline").load("seq", path=path)
    >>> ds.shape, ds.dtype.name, ds.layout_info()["frame_footer_bytes"]
    (Shape((3, 4, 5), sig_dims=2), 'uint16', 8)
    """

    format_name = "seq"

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
        path = check_path(self._path_arg, "seq file")
        where = f"seq file {path!r}"
        header = read_seq_header(path)
        width, height, depth = header["width"], header["height"], header["bit_depth"]
        if header["compression_format"] != 0:
            raise DataSetError(f"{where} is compressed (compression format "
                               f"{header['compression_format']}); only uncompressed sequences are "
                               "read: export it from StreamPix without compression")
        fmt = header["image_format"]
        if fmt != MONO:
            raise DataSetError(f"{where}: image format {fmt} ({IMAGE_FORMATS.get(fmt, 'unknown code')}) "
                               f"is not read; expected monochrome images (image format {MONO})")
        if depth not in _BIT_DEPTHS:
            raise DataSetError(f"{where}: bit depth {depth} is not read; expected 8, 16 or 32 bits per "
                               "pixel")
        if width == 0 or height == 0:
            raise DataSetError(f"{where}: the header gives frames of {width} x {height} pixels; "
                               "expected at least one pixel")
        dtype = np.dtype(_BIT_DEPTHS[depth])
        frame_bytes = width * height * dtype.itemsize
        if header["image_size_bytes"] != frame_bytes:
            raise DataSetError(f"{where}: the header disagrees with itself: image_size_bytes is "
                               f"{header['image_size_bytes']}, but {width} x {height} pixels of "
                               f"{depth} bits need {frame_bytes}")
        stride = header["true_image_size"]
        if stride < frame_bytes:
            raise DataSetError(f"{where}: the header disagrees with itself: true_image_size "
                               f"{stride} (bytes from one frame to the next) is less than the "
                               f"{frame_bytes} bytes of an image")
        offset = image_offset(header)
        size = os.path.getsize(path)
        count, rest = divmod(max(0, size - offset), stride)
        desc = f"{height} x {width} pixels of {depth} bits + {stride - frame_bytes} footer bytes"
        if rest and not self._allow_partial:
            raise DataSetError(f"{where} is truncated: it has {size} bytes, {offset} header bytes, "
                               f"{count} whole frames of {stride} bytes ({desc}) and {rest} bytes of "
                               "a partial frame; pass allow_partial=True to read the whole frames")
        allocated = header["allocated_frames"]
        if 0 < count < allocated and not self._allow_partial:
            raise DataSetError(f"{where} is truncated: its header says it holds {allocated} frames "
                               f"(allocated_frames), but its {size} bytes hold {count} whole frames "
                               f"of {stride} bytes ({desc}); pass allow_partial=True to read them")
        if count == 0:
            raise DataSetError(f"{where} holds no complete frame: it has {size} bytes, a frame "
                               f"needs {offset} header bytes + {stride} ({desc})")
        nav, sig, sync_offset = resolve_fixed_frames(
            where, native_nav=(count,), native_sig=(height, width), nav_shape=self._nav_shape_arg,
            sig_shape=self._sig_shape_arg, image_count=count, sync_offset=self._sync_offset_arg,
            allow_partial=self._allow_partial, have=f"{size} bytes", frame_desc=desc)
        footer = stride - frame_bytes
        self._fileset = FileSet([FileLayout(path, offset, dtype, sig, count, 0, footer)])
        self._header = header
        self._info = {
            "version": header["version"], "name": header["name"],
            "description": header["description"],
            "image_format": f"{fmt} ({IMAGE_FORMATS[fmt]})", "width": width, "height": height,
            "bit_depth": depth, "bit_depth_real": header["bit_depth_real"],
            "image_offset": offset, "image_size_bytes": frame_bytes, "true_image_size": stride,
            "frame_footer_bytes": footer, "allocated_frames": allocated, "frames_in_file": count,
            "suggested_frame_rate": header["suggested_frame_rate"],
        }
        return DataSetMeta(shape=Shape(nav + sig, sig_dims=len(sig)), raw_dtype=dtype,
                           image_count=count, sync_offset=sync_offset,
                           metadata={"path": path, "file_bytes": size, "header_bytes": offset,
                                     "frame_footer_bytes": footer,
                                     "io_backend": self._backend.name})

    @property
    def header(self) -> dict:
        """The header fields (after ``initialize``)."""
        self._require_meta()
        return dict(self._header)

    def layout_info(self) -> dict:
        """Header facts for ``udfkit info``: format, geometry, offsets and footers."""
        self._require_meta()
        return dict(self._info)

    def timestamps(self) -> np.ndarray:
        """The time of every frame of the file, in seconds since 1970 (float64), from the footers.

        The file does not say its time zone: StreamPix writes local time.
        """
        meta = self._require_meta()
        layout = self.fileset.files[0]
        micro = self._header["version"] >= 5
        if layout.frame_footer_bytes < (8 if micro else 6):
            raise DataSetError(f"seq file {layout.path!r}: frame footers of "
                               f"{layout.frame_footer_bytes} bytes hold no timestamp")
        mm = np.memmap(layout.path, dtype=np.uint8, mode="r", offset=layout.header_bytes,
                       shape=(meta.image_count, layout.stride))
        with guarded_reads(mm, layout.path):
            foot = np.ascontiguousarray(mm[:, layout.frame_bytes:layout.frame_bytes + (8 if micro else 6)])
        del mm
        seconds = foot[:, :4].copy().view("<u4")[:, 0].astype(np.float64)
        ms = foot[:, 4:6].copy().view("<u2")[:, 0].astype(np.float64)
        us = foot[:, 6:8].copy().view("<u2")[:, 0].astype(np.float64) if micro else 0.0
        return seconds + ms / 1e3 + us / 1e6


def write_seq(path, frames, *, version: int = 5, true_image_size: int | None = None,
              timestamps=None, allocated_frames: int | None = None, image_format: int = MONO,
              compression_format: int = 0) -> None:
    """Write ``frames`` (``(n, height, width)`` of uint8, uint16 or uint32) as a ``.seq`` file.

    For tests and examples: a header as StreamPix writes it (version 5: images from byte
    8192, 8-byte timestamps; lower versions: from byte 1024, 6-byte timestamps), then every
    frame followed by its timestamp and zero padding up to ``true_image_size`` bytes.

    Parameters
    ----------
    path : str or os.PathLike
    frames : array_like
        ``(n, height, width)``.
    version : int
        Header version.
    true_image_size : int, optional
        Stride from frame to frame (default: the image bytes plus the timestamp, rounded up to
        a multiple of 8).
    timestamps : array_like of float, optional
        Seconds since 1970 per frame (default: 0.1 s apart from 1.5e9).
    allocated_frames : int, optional
        Default ``n``.
    image_format, compression_format : int
        Written as given (for tests of what the reader refuses).
    """
    frames = np.asarray(frames)
    if frames.ndim != 3 or frames.dtype.str.lstrip("<|=") not in ("u1", "u2", "u4"):
        raise ValueError(f"write_seq: expected (n, height, width) uint8/16/32 frames, got shape "
                         f"{frames.shape} and dtype {frames.dtype}")
    n, height, width = frames.shape
    dtype = frames.dtype.newbyteorder("<")
    image_bytes = height * width * dtype.itemsize
    stamp = 8 if version >= 5 else 6
    if true_image_size is None:
        true_image_size = -(-(image_bytes + stamp) // 8) * 8
    if timestamps is None:
        timestamps = 1.5e9 + 0.1 * np.arange(n)
    header = np.zeros((), dtype=np.dtype(HEADER_FIELDS))
    header["magic"] = MAGIC
    header["name"] = np.void("Norpix seq".encode("utf-16-le").ljust(24, b"\0"))
    header["version"] = version
    header["header_size"] = 1024
    header["description"] = np.void("udfkit".encode("utf-16-le").ljust(512, b"\0"))
    header["width"], header["height"] = width, height
    header["bit_depth"] = header["bit_depth_real"] = dtype.itemsize * 8
    header["image_size_bytes"] = image_bytes
    header["image_format"] = image_format
    header["allocated_frames"] = n if allocated_frames is None else allocated_frames
    header["true_image_size"] = true_image_size
    header["suggested_frame_rate"] = 10.0
    header["compression_format"] = compression_format
    offset = 8192 if version >= 5 else 1024
    buf = bytearray(offset + n * true_image_size)
    raw = header.tobytes()
    buf[:len(raw)] = raw
    for i in range(n):
        at = offset + i * true_image_size
        buf[at:at + image_bytes] = np.ascontiguousarray(frames[i], dtype=dtype).tobytes()
        t = float(timestamps[i])
        sec = int(t)
        ms, us = divmod(int(round((t - sec) * 1e6)), 1000)
        foot = np.array([sec], "<u4").tobytes() + np.array([ms] + ([us] if stamp == 8 else []),
                                                             "<u2").tobytes()
        buf[at + image_bytes:at + image_bytes + stamp] = foot
    with open(path, "wb") as f:
        f.write(buf)
