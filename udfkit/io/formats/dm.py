"""The ``dm`` format: Gatan DigitalMicrograph ``.dm3`` / ``.dm4`` files.

Two ways to load, as in LiberTEM:

* **one file** (``path="scan.dm4"``): an image, a stack of images, a 4D scan or a spectrum
  image, with its shape from the file's tags;
* **a stack of files** (``files=[...]``, or ``path=`` a list, a directory or a glob pattern):
  every file holds the next frames (one for a 2D image, ``z`` for a 3D stack).

Where the pixels are
--------------------
A DM file is a tree of tags (parsed by :mod:`udfkit.io.formats._dm_tags`); an image is an
entry of ``ImageList`` whose ``ImageData/Data`` array holds the pixels, uncompressed, at a
known offset; ``ImageData/Dimensions`` lists the axes fastest first, ``ImageData/DataType``
says the pixel type. GMS puts a small RGB thumbnail first in ``ImageList`` (listed under
``Thumbnails``); the default image is the first one that is no thumbnail and has two or more
dimensions, ``dataset_index=`` picks another (its index in ``ImageList``, from 0, counting
the thumbnail, as LiberTEM's ``dataset_index``).

Pixel order
-----------
DM stores an array with its first dimension fastest, so the bytes are the C-order array of
the reversed dimensions. Which of those axes are the frame depends on how GMS wrote it:

* **C order** -- 2D images, 3D stacks, 2D spectrum images, and any data set whose
  ``ImageTags/Meta Data/Data Order Swapped`` tag is set: frames are contiguous; the last two
  reversed axes (one for a spectrum image) are the signal. These are described by a
  :class:`~udfkit.io.layout.FileLayout`, so udfkit's I/O backends (``mmap``, ``buffered``,
  ``direct``) read them at raw speed.
* **transposed** -- 4D scans and 3D spectrum images without that tag (or with it 0), as
  older GMS versions write them: the *first* reversed axes are the signal, the last ones the
  scan, i.e. the values of one detector pixel over the whole scan are contiguous. A frame is
  then scattered over the whole file; udfkit reads runs of frames as strided copies (the
  :mod:`~udfkit.io.chunked` path), correctly but much slower than a C-order file: blocks of
  :data:`TRANSPOSED_BLOCK_BYTES` of frames, each gathered by a transposing copy in slabs of
  pixels that fit in the cache. Measured with ``SumUDF`` (inline, hot cache, 256x256 uint16
  frames, a busy two-core machine): C-order DM file 1.7 GB/s, the same data as a raw file
  1.6 GB/s; transposed 0.22 GB/s (0.05 GB/s with one numpy transpose per block).

LiberTEM refuses transposed files unless ``force_c_order=True``; udfkit reads them in their
true shape. ``force_c_order=True`` keeps LiberTEM's meaning: read the data as if they were in
C order whatever the tags say -- on a transposed file the scan and detector axes then trade
places (LiberTEM's ``convert_dm4_transposed`` relies on that).
"""

from __future__ import annotations

import glob
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from math import prod

import numpy as np

from ...common import Shape
from ...common.parse import ShapeLike
from ...errors import DataSetError, DataSetFileNotFoundError
from ..base import DataSetMeta, IOBackend, Partition
from ..chunked import ArrayReader, ChunkedPartition, OpenArray
from ..file_based import FileDataSet
from ..layout import FileLayout, FileSet
from ..tiling import TilingConstraints
from ._common import (
    MAX_DIMS,
    bound_files_per_partition,
    check_path,
    check_sync_offset,
    parse_dims,
    resolve_shapes,
)
from ._dm_tags import DMArray, DMFile, parse_dm, tag_text
from .base import COMMON_PARAMS, Format, Param, read_head

__all__ = ["DMFormat", "DMDataSet", "DM_DATA_TYPES"]

DM_EXTENSIONS = (".dm3", ".dm4")
_GLOB_CHARS = "*?["

#: DM image data type code -> numpy dtype (native; the file's byte order is applied);
#: 14 ("binary") is a byte per pixel, 0 or 1, read as uint8
DM_DATA_TYPES = {1: "i2", 2: "f4", 3: "c8", 6: "u1", 7: "i4", 9: "i1", 10: "u2", 11: "u4",
                 12: "f8", 13: "c16", 14: "u1"}
#: DM data types udfkit does not read, for the error message
_UNSUPPORTED = {0: "null", 4: "obsolete", 5: "packed complex (FFT)", 8: "RGB", 23: "RGBA",
                27: "packed complex64 (FFT)", 28: "packed complex128 (FFT)"}
#: frames a transposed file is read in at a time (each read gathers one run per detector pixel)
TRANSPOSED_BLOCK_BYTES = 32 << 20
#: bytes of one slab of the transposing copy (see ``_OpenTransposed.read``)
TRANSPOSE_TILE_BYTES = 256 << 10


class DMFormat(Format):
    """Gatan DigitalMicrograph files: one file, or a stack of files."""

    name = "dm"
    dataset = "udfkit.io.formats.dm:DMDataSet"
    extensions = DM_EXTENSIONS
    params = (
        Param("path", "paths", None, "a .dm3/.dm4 file (or a list, directory or glob: a stack)"),
        Param("files", "paths", None, "the files of a stack, in frame order (LiberTEM's files=)"),
        COMMON_PARAMS["nav_shape"], COMMON_PARAMS["sig_shape"], COMMON_PARAMS["sync_offset"],
        COMMON_PARAMS["io_backend"], COMMON_PARAMS["num_partitions"], COMMON_PARAMS["allow_partial"],
        Param("force_c_order", "bool", False,
              "read the pixels as C order whatever the tags say (LiberTEM's meaning)"),
        Param("dataset_index", "int", None,
              "index in the file's ImageList (0 is usually the thumbnail); default: the first image"),
        Param("same_offset", "bool", False,
              "stack: parse only the first file; the others are laid out the same"),
    )

    @classmethod
    def guess_can_open(cls, path: str) -> float:
        path = os.fspath(path)
        if os.path.isdir(path):
            files = _dir_files(path)
            return 0.8 if files and _looks_like_dm(files[0]) else 0.0
        if not os.path.exists(path) and any(ch in path for ch in _GLOB_CHARS):
            files = [p for p in glob.glob(path) if os.path.isfile(p)]
            return 0.8 if files and all(p.lower().endswith(DM_EXTENSIONS) for p in files) else 0.0
        if not os.path.isfile(path):
            return 0.0
        named = path.lower().endswith(DM_EXTENSIONS)
        if _looks_like_dm(path):
            # 14 plausible header bytes are weaker evidence than another format's extension
            return 1.0 if named else 0.4
        # a damaged .dm4 still goes to this reader, which says what is wrong with it
        return 0.5 if named else 0.0


def _looks_like_dm(path: str) -> bool:
    """Whether the first bytes are a DM3/DM4 header followed by a root group."""
    head = read_head(path, 26)
    if len(head) < 18:
        return False
    version = int.from_bytes(head[:4], "big")
    if version not in (3, 4):
        return False
    word = 8 if version == 4 else 4
    at = 4 + word
    flag = int.from_bytes(head[at:at + 4], "big")
    flags = head[at + 4:at + 6]
    return flag in (0, 1) and len(flags) == 2 and all(b in (0, 1) for b in flags)


def _natural_key(path: str):
    """Sort key: digit runs compare as numbers (``img_2`` before ``img_10``)."""
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", os.path.basename(path))]


def _dir_files(directory: str) -> list:
    with os.scandir(directory) as it:
        return sorted((e.path for e in it if e.name.lower().endswith(DM_EXTENSIONS) and e.is_file()),
                      key=_natural_key)


def _check_no_gap(paths: list, where: str) -> None:
    """A numbered series (``scan_001.dm4``, ``scan_002.dm4``, ...) found by a glob or in a
    directory must not miss a number: a lost file would shift every later frame."""
    if len(paths) < 2:
        return
    stems = [os.path.splitext(os.path.basename(p)) for p in paths]
    found = [re.fullmatch(r"(.*?)(\d+)(\D*)", stem) for stem, _ in stems]
    parts = [m for m in found if m is not None]
    if len(parts) != len(found):
        return
    if len({(m.group(1), m.group(3) + ext) for m, (_, ext) in zip(parts, stems)}) != 1:
        return
    numbers = [int(m.group(2)) for m in parts]
    for prev, (p, n) in zip(numbers, zip(paths[1:], numbers[1:])):
        if n != prev + 1:
            m = parts[0]
            width = len(m.group(2))
            missing = f"{m.group(1)}{prev + 1:0{width}d}{m.group(3)}{stems[0][1]}"
            raise DataSetError(
                f"{where}: the numbered series jumps from {prev} to {n} before {os.path.basename(p)!r}: "
                f"expected {missing!r} next; a missing file would shift every later frame. Pass "
                "files=[...] explicitly to load the series with the gap")


def _stack_files(path, files) -> tuple[list, str]:
    """The files of a stack, in frame order, and how to name them in messages."""
    if files is not None and path is not None:
        raise DataSetError("dm format: give path= (one file, or a stack as a list, directory or glob) "
                           "or files= (a stack), not both")
    source = files if files is not None else path
    if isinstance(source, (str, os.PathLike)):
        source = os.fspath(source)
        if os.path.isdir(source):
            paths = _dir_files(source)
            if not paths:
                raise DataSetError(f"dm directory {source!r} holds no .dm3 or .dm4 file")
            where = f"dm directory {source!r} ({len(paths)} files)"
            _check_no_gap(paths, where)
            return paths, where
        if not os.path.exists(source) and any(ch in source for ch in _GLOB_CHARS):
            paths = sorted((p for p in glob.glob(source) if os.path.isfile(p)), key=_natural_key)
            if not paths:
                raise DataSetFileNotFoundError(f"dm pattern {source!r} matches no file")
            where = f"dm files {source!r} ({len(paths)} files)"
            _check_no_gap(paths, where)
            return paths, where
        source = [source]
    if not isinstance(source, (list, tuple)):
        raise DataSetError(f"dm format: files: expected a list of paths, got {type(source).__name__}")
    if not source:
        raise DataSetError("dm format: the list of files is empty; give at least one .dm3/.dm4 file")
    paths = []
    for i, p in enumerate(source):
        try:
            paths.append(check_path(p, f"dm file {i + 1} of {len(source)}"))
        except DataSetFileNotFoundError as e:
            raise DataSetFileNotFoundError(f"{e}; a stack must not miss a file (frames would shift)") \
                from None
    where = (f"dm file {paths[0]!r}" if len(paths) == 1
             else f"dm files {paths[0]!r} ... {paths[-1]!r} ({len(paths)} files)")
    return paths, where


# -- images of a file ---------------------------------------------------------------------------

@dataclass(frozen=True)
class _Image:
    """One readable entry of ``ImageList``."""

    index: int
    dims: tuple          # DM order, fastest first
    dtype: np.dtype      # byte order of the file
    data_type: int
    offset: int
    nbytes: int
    meta_format: str | None
    swapped: bool | None
    name: str | None

    @property
    def spectrum(self) -> bool:
        return (self.meta_format or "").strip().lower() == "spectrum image"

    def arrangement(self, force_c_order: bool):
        """``(nav, sig, c_order, why)``: the logical axes and whether frames are contiguous."""
        rev = tuple(int(d) for d in self.dims[::-1])
        n_sig = 1 if self.spectrum else 2
        ndim = len(rev)
        if force_c_order:
            c_order, why = True, "force_c_order=True"
        elif self.swapped is not None:
            c_order = self.swapped
            why = f"tag 'Meta Data/Data Order Swapped' = {int(self.swapped)}"
        else:
            c_order = ndim <= 3 and not (self.spectrum and ndim == 3)
            what = "spectrum image" if self.spectrum else "image"
            why = f"default for a {ndim}D {what} without a 'Data Order Swapped' tag"
        if c_order:
            nav, sig = rev[:ndim - n_sig], rev[ndim - n_sig:]
        else:
            sig, nav = rev[:n_sig], rev[n_sig:]
        return (nav or (1,)), sig, c_order, why


def _text(value) -> str | None:
    text = tag_text(value)
    return text.strip("\x00") if text is not None else None


def _flag(value) -> bool | None:
    if value is None:
        return None
    text = _text(value)
    if text is not None:
        text = text.strip().lower()
        if text in ("1", "true", "yes"):
            return True
        if text in ("0", "false", "no"):
            return False
        return None
    if isinstance(value, (bool, int, float)):
        return bool(value)
    return None


def _read_image(dm: DMFile, key: str, index: int) -> _Image:
    """The image at ``ImageList/<key>``; a DataSetError says why it cannot be read."""
    where = f"DM file {dm.path!r}: image {index} (tag ImageList/{key})"
    entry = dm.get("ImageList", key)
    data = dm.get("ImageList", key, "ImageData", "Data")
    dims_group = dm.get("ImageList", key, "ImageData", "Dimensions")
    data_type = dm.get("ImageList", key, "ImageData", "DataType")
    if not isinstance(entry, dict) or not isinstance(data, DMArray) or not isinstance(dims_group, dict) \
            or not isinstance(data_type, int):
        found = ", ".join(f"{k}={type(v).__name__}" for k, v in
                          (("Data", data), ("Dimensions", dims_group), ("DataType", data_type)))
        raise DataSetError(f"{where}: expected ImageData/Data (an array), ImageData/Dimensions and "
                           f"ImageData/DataType; found {found}")
    dims = tuple(dims_group.values())
    if not dims or not all(isinstance(d, int) and d > 0 for d in dims):
        raise DataSetError(f"{where}: ImageData/Dimensions: expected positive integers, found {dims}")
    if data_type not in DM_DATA_TYPES:
        what = _UNSUPPORTED.get(data_type, "unknown")
        raise DataSetError(f"{where}: ImageData/DataType {data_type} ({what}) is not a pixel type udfkit "
                           f"reads; it reads {sorted(DM_DATA_TYPES)} (integers, floats, complex)")
    dtype = np.dtype(DM_DATA_TYPES[data_type])
    if dtype.itemsize > 1:
        dtype = dtype.newbyteorder(dm.byteorder)
    depth = dm.get("ImageList", key, "ImageData", "PixelDepth")
    if isinstance(depth, int) and depth != dtype.itemsize:
        raise DataSetError(f"{where}: ImageData/PixelDepth is {depth} bytes, but DataType {data_type} "
                           f"({dtype.name}) has {dtype.itemsize}; the tags disagree")
    need = prod(dims) * dtype.itemsize
    if data.nbytes != need:
        raise DataSetError(f"{where}: ImageData/Data holds {data.nbytes} bytes ({data.count} x "
                           f"{data.dtype.itemsize}), but Dimensions {dims} x {dtype.name} need {need}; "
                           "the tags disagree")
    if data.offset + need > dm.size:
        raise DataSetError(f"DM file {dm.path!r} is truncated: image {index} needs bytes up to "
                           f"{data.offset + need}, but the file has {dm.size} bytes")
    meta = dm.get("ImageList", key, "ImageTags", "Meta Data", default={})
    meta = meta if isinstance(meta, dict) else {}
    return _Image(index=index, dims=dims, dtype=dtype, data_type=data_type, offset=data.offset,
                  nbytes=need, meta_format=_text(meta.get("Format")),
                  swapped=_flag(meta.get("Data Order Swapped")),
                  name=_text(dm.get("ImageList", key, "Name")))


def _select_image(dm: DMFile, dataset_index) -> tuple[_Image, int]:
    """The image to read and how many entries ``ImageList`` has."""
    images = dm.get("ImageList")
    if not isinstance(images, dict) or not images:
        raise DataSetError(f"DM file {dm.path!r} has no image: its tag ImageList is "
                           f"{'missing' if images is None else 'empty'}")
    keys = list(images)
    if dataset_index is not None:
        if isinstance(dataset_index, bool) or not isinstance(dataset_index, (int, np.integer)) \
                or not 0 <= dataset_index < len(keys):
            raise DataSetError(f"DM file {dm.path!r}: dataset_index: expected an integer from 0 to "
                               f"{len(keys) - 1} (the file's ImageList has {len(keys)} entries), got "
                               f"{dataset_index!r}")
        img = _read_image(dm, keys[dataset_index], int(dataset_index))
        if len(img.dims) < 2:
            raise DataSetError(f"DM file {dm.path!r}: image {dataset_index} is one-dimensional "
                               f"(dims {img.dims}); udfkit reads images of 2 or more dimensions")
        return img, len(keys)
    thumbs = set()
    for t in (dm.get("Thumbnails") or {}).values():
        if isinstance(t, dict) and isinstance(t.get("ImageIndex"), int):
            thumbs.add(t["ImageIndex"])
    skipped = []
    for i, key in enumerate(keys):
        if i in thumbs:
            skipped.append(f"image {i}: a thumbnail")
            continue
        try:
            img = _read_image(dm, key, i)
        except DataSetError as e:
            if "truncated" in str(e):
                raise
            prefix = f"DM file {dm.path!r}: "
            skipped.append(str(e)[len(prefix):] if str(e).startswith(prefix) else str(e))
            continue
        if len(img.dims) < 2:
            skipped.append(f"image {i}: one-dimensional (dims {img.dims})")
            continue
        return img, len(keys)
    raise DataSetError(f"DM file {dm.path!r} holds no image udfkit can read: " + "; ".join(skipped))


class DMDataSet(FileDataSet):
    """A Gatan DigitalMicrograph file (image, stack, 4D scan, spectrum image) or a stack of them.

    Parameters
    ----------
    path : str or os.PathLike, optional
        One ``.dm3``/``.dm4`` file. A list of files, a directory (its ``.dm3``/``.dm4`` files
        in natural order) or a glob pattern is a stack, like ``files=``.
    files : list of str, optional
        A stack: files in frame order, each holding the next frames (LiberTEM's ``files=``).
    nav_shape, sig_shape : tuple of int, optional
        Default: from the file's ``Dimensions`` (one file) or ``(number of frames,)`` and the
        image shape (a stack). ``sig_shape`` may only reshape a frame of a transposed file or a
        stack (the same number of pixels).
    sync_offset : int
        Positive: skip frames at the start; negative: the first positions have no frame.
    io_backend : str or IOBackend, optional
        ``"mmap"`` (default), ``"buffered"`` or ``"direct"``; transposed files ignore it.
    num_partitions : int, optional
    allow_partial : bool
        Accept a ``nav_shape`` larger than the frames in the file(s); the missing positions are
        reported invalid.
    force_c_order : bool
        Read the pixels as C order whatever the tags say (LiberTEM's ``force_c_order``); on a
        transposed file this swaps the scan and detector axes.
    dataset_index : int, optional
        Which entry of ``ImageList`` to read (from 0; the thumbnail GMS writes is usually 0).
        Default: the first image that is no thumbnail and has 2 or more dimensions.
    same_offset : bool
        Stacks: parse only the first file and assume every file has the same layout (saves
        the parsing of thousands of files); every file must then have the first one's size.

    Notes
    -----
    The shape follows the file: a 2D image is one frame (``nav_shape`` ``(1,)``), a 3D stack
    ``(z,)`` frames, a 4D scan ``(scan_y, scan_x)`` frames of ``(det_y, det_x)``, a spectrum
    image frames of one axis. Rows are kept in the file's order (no flips), as LiberTEM and
    rosettasciio read them. See the module docstring for C order and transposed files.

    Examples
    --------
    >>> import numpy as np, tempfile, os
    >>> from udfkit import Context
    >>> from udfkit.testing.dm import write_dm
    >>> scan = np.arange(2 * 3 * 4 * 5, dtype="uint16").reshape(2, 3, 4, 5)
    >>> path = write_dm(os.path.join(tempfile.mkdtemp(), "scan.dm4"), scan, order="F")
    >>> ctx = Context.make_with("inline")
    >>> ds = ctx.load("dm", path=path)
    >>> ds.shape, ds.layout_info()["order"]
    (Shape((2, 3, 4, 5), sig_dims=2), 'transposed')
    """

    format_name = "dm"

    def __init__(self, path: str | os.PathLike[str] | None = None, files: Sequence[str] | None = None,
                 nav_shape: ShapeLike | None = None, sig_shape: ShapeLike | None = None, sync_offset: int = 0,
                 io_backend: str | IOBackend | None = None, num_partitions: int | None = None,
                 allow_partial: bool = False, force_c_order: bool = False, dataset_index: int | None = None,
                 same_offset: bool = False):
        super().__init__(nav_shape=nav_shape, sig_shape=sig_shape, sync_offset=sync_offset,
                         num_partitions=num_partitions, allow_partial=allow_partial,
                         io_backend=io_backend)
        self._path_arg = path
        self._files_arg = files
        self._force_c_order = force_c_order
        self._dataset_index = dataset_index
        self._same_offset = same_offset
        self._reader: _TransposedReader | None = None
        self._block = 1
        self._info: dict = {}

    # -- loading ----------------------------------------------------------------------------
    def _is_stack(self) -> bool:
        p = self._path_arg
        if self._files_arg is not None or isinstance(p, (list, tuple)):
            return True
        if p is None:
            return False
        p = os.fspath(p)
        return os.path.isdir(p) or (not os.path.exists(p) and any(ch in p for ch in _GLOB_CHARS))

    def _initialize(self) -> DataSetMeta:
        for name, value in (("force_c_order", self._force_c_order), ("same_offset", self._same_offset)):
            if not isinstance(value, (bool, np.bool_)):
                raise DataSetError(f"dm format: {name}: expected True or False, got {value!r}")
        self._reader = None
        self._fileset = None
        self._block = 1
        if self._is_stack():
            return self._init_stack()
        if self._path_arg is None:
            raise DataSetError("dm format: a path is required: ctx.load('dm', path='file.dm4'), or "
                               "files=[...] for a stack of files")
        return self._init_single(check_path(self._path_arg, "dm file"))

    def _init_single(self, path: str) -> DataSetMeta:
        where = f"dm file {path!r}"
        dm = parse_dm(path)
        img, n_images = _select_image(dm, self._dataset_index)
        nav, sig, c_order, why = img.arrangement(bool(self._force_c_order))
        if len(nav) > MAX_DIMS or len(sig) > MAX_DIMS:
            raise DataSetError(f"{where}: image {img.index} has dimensions {img.dims}, i.e. {len(nav)} "
                               f"navigation axes {nav}; at most {MAX_DIMS} are supported")
        nav_arg = parse_dims(self._nav_shape_arg, "nav_shape", where)
        sig_arg = parse_dims(self._sig_shape_arg, "sig_shape", where)
        if not c_order and sig_arg is not None and prod(sig_arg) != prod(sig):
            raise DataSetError(
                f"{where}: sig_shape {sig_arg} has {prod(sig_arg)} pixels, but the frames of this "
                f"transposed file have shape {sig} ({prod(sig)} pixels); sig_shape can only reshape "
                "a frame here")
        total = prod(img.dims)
        nav_shape, sig_shape, image_count = resolve_shapes(
            where, nav + sig, len(sig), nav_arg, sig_arg, total, self._allow_partial)
        sync_offset = check_sync_offset(where, self._sync_offset_arg, prod(nav_shape), image_count)
        if c_order:
            self._fileset = FileSet([FileLayout(path, img.offset, img.dtype, sig_shape, image_count)])
        else:
            frame_bytes = prod(sig) * img.dtype.itemsize
            self._block = max(1, min(image_count, TRANSPOSED_BLOCK_BYTES // frame_bytes))
            self._reader = _TransposedReader(path, img.offset, img.dtype.str, prod(sig), image_count,
                                             sig_shape)
        self._info = {
            "dm_version": dm.version,
            "byteorder": "little" if dm.byteorder == "<" else "big",
            "images": n_images,
            "dataset_index": img.index,
            "dimensions": img.dims,
            "data_type": img.data_type,
            "data_offset": img.offset,
            "meta_format": img.meta_format,
            "order": "C" if c_order else "transposed",
            "order_from": why,
            "read_path": "native" if c_order else "transposed (strided copies)",
        }
        if not c_order:
            self._info["block_frames"] = self._block
        metadata = {"path": path, "file_bytes": dm.size, "header_bytes": img.offset}
        if c_order:
            metadata["io_backend"] = self._backend.name
        return DataSetMeta(shape=Shape(nav_shape + sig_shape, sig_dims=len(sig_shape)),
                           raw_dtype=img.dtype, image_count=image_count, sync_offset=sync_offset,
                           metadata=metadata)

    def _init_stack(self) -> DataSetMeta:
        paths, where = _stack_files(self._path_arg, self._files_arg)
        first_dm = parse_dm(paths[0])
        first, _ = _select_image(first_dm, self._dataset_index)
        scanned = []  # (path, image, frames)
        sizes = [os.path.getsize(p) for p in paths]
        for i, p in enumerate(paths):
            if i == 0:
                img = first
            elif self._same_offset:
                if sizes[i] != sizes[0]:
                    raise DataSetError(
                        f"dm file {p!r} (file {i + 1} of {len(paths)}) has {sizes[i]} bytes, but "
                        f"{paths[0]!r} has {sizes[0]}; with same_offset=True every file must be laid "
                        "out like the first (pass same_offset=False to parse every file)")
                img = first
            else:
                img, _ = _select_image(parse_dm(p), self._dataset_index)
            nav, sig, c_order, why = img.arrangement(bool(self._force_c_order))
            if not c_order:
                raise DataSetError(
                    f"dm file {p!r} (file {i + 1} of {len(paths)}) holds transposed data ({why}); a "
                    "stack of files must hold frames in C order; load the file on its own "
                    "(ctx.load('dm', path=...)), which reads transposed data")
            first_sig = first.arrangement(bool(self._force_c_order))[1]
            if sig != first_sig or img.dtype != first.dtype:
                raise DataSetError(
                    f"dm file {p!r} (file {i + 1} of {len(paths)}): expected frames of shape "
                    f"{first_sig} and dtype {first.dtype} as in {paths[0]!r}, found shape {sig} and "
                    f"dtype {img.dtype}; all files of a stack must hold frames of one shape and dtype")
            scanned.append((p, img, prod(nav)))
        frame_sig = scanned[0][1].arrangement(bool(self._force_c_order))[1]
        image_count = sum(n for _, _, n in scanned)
        nav_arg = parse_dims(self._nav_shape_arg, "nav_shape", where)
        sig_arg = parse_dims(self._sig_shape_arg, "sig_shape", where)
        if sig_arg is not None and prod(sig_arg) != prod(frame_sig):
            raise DataSetError(f"{where}: sig_shape {sig_arg} has {prod(sig_arg)} pixels, but the frames "
                               f"have shape {frame_sig} ({prod(frame_sig)} pixels); sig_shape can only "
                               "reshape a frame of a stack")
        nav_shape, sig_shape, _ = resolve_shapes(
            where, (image_count,) + frame_sig, len(frame_sig), nav_arg, sig_arg,
            image_count * prod(frame_sig), self._allow_partial)
        sync_offset = check_sync_offset(where, self._sync_offset_arg, prod(nav_shape), image_count)
        self._fileset = FileSet([FileLayout(p, img.offset, first.dtype, sig_shape, n)
                                 for p, img, n in scanned])
        self._info = {
            "dm_version": first_dm.version,
            "byteorder": "little" if first_dm.byteorder == "<" else "big",
            "files": len(paths),
            "dataset_index": first.index,
            "dimensions": first.dims,
            "data_type": first.data_type,
            "data_offset": first.offset,
            "order": "C",
            "read_path": "native",
            "same_offset": bool(self._same_offset),
        }
        metadata = {"path": paths[0], "paths": tuple(paths), "file_bytes": sum(sizes),
                    "io_backend": self._backend.name}
        return DataSetMeta(shape=Shape(nav_shape + sig_shape, sig_dims=len(sig_shape)),
                           raw_dtype=first.dtype, image_count=image_count, sync_offset=sync_offset,
                           metadata=metadata)

    # -- partitions -------------------------------------------------------------------------
    @property
    def frame_alignment(self) -> int:
        return self._block if self._reader is not None else 1

    @property
    def supports_zero_copy(self) -> bool:
        return True if self._reader is not None else super().supports_zero_copy

    def get_tiling_constraints(self) -> TilingConstraints:
        if self._reader is not None:  # no I/O backend buffer to fit into
            return super(FileDataSet, self).get_tiling_constraints()
        return super().get_tiling_constraints()

    def get_partitions(self) -> list[Partition]:
        if self._reader is None:
            return super().get_partitions()
        meta = self._require_meta()
        return [ChunkedPartition(reader=self._reader, block=self._block, shape=meta.shape, start=start,
                                 stop=stop, raw_dtype=meta.raw_dtype, image_count=meta.image_count,
                                 sync_offset=meta.sync_offset, index=i)
                for i, (start, stop) in enumerate(self.partition_bounds())]

    def partition_bounds(self) -> list:
        # a stack of many one-frame files: partitions of a bounded number of files
        return bound_files_per_partition(self, super().partition_bounds())

    def layout_info(self) -> dict:
        """DM version, byte order, the image read (index, dimensions, data type, offset), its
        pixel order and where that was read from, and the read path."""
        self._require_meta()
        return dict(self._info)


class _TransposedReader(ArrayReader):
    """The pixels of a transposed file: ``(sig pixels, frames)`` in C order at ``offset``.

    Examples
    --------
    >>> import tempfile, os
    >>> path = os.path.join(tempfile.mkdtemp(), "t.bin")
    >>> np.arange(12, dtype="uint8").tofile(path)   # 3 pixels x 4 frames
    >>> out = np.zeros((2, 3), dtype="uint8")
    >>> with _TransposedReader(path, 0, "|u1", 3, 4, (3,)).open() as opened:
    ...     opened.read(1, 3, out)
    >>> out.tolist()
    [[1, 5, 9], [2, 6, 10]]
    """

    def __init__(self, path, offset, dtype, sig_items, frames, sig_shape):
        self.path = str(path)
        self.offset = int(offset)
        self.dtype = str(dtype)
        self.sig_items = int(sig_items)
        self.frames = int(frames)
        self.sig_shape = tuple(sig_shape)
        self.nav_shape = (self.frames,)

    @property
    def end(self) -> int:
        return self.offset + self.sig_items * self.frames * np.dtype(self.dtype).itemsize

    def open(self) -> OpenArray:
        return _OpenTransposed(self)

    def __eq__(self, other):
        return isinstance(other, _TransposedReader) and self.__dict__ == other.__dict__

    def __hash__(self):
        return hash((self.path, self.offset, self.frames))


class _OpenTransposed(OpenArray):
    """A read-only mapping of the pixels; each read gathers one run per detector pixel."""

    def __init__(self, reader: _TransposedReader):
        from ..backends._files import check_size

        self._r = reader
        self._check = check_size
        self._fd: int | None
        self._map: np.memmap | None
        try:
            self._fd = os.open(reader.path, os.O_RDONLY)
        except FileNotFoundError:
            raise DataSetError(f"dm file {reader.path!r} disappeared after it was loaded") from None
        try:
            check_size(self._fd, reader.path, reader.end, "the pixels of the transposed image")
            self._map = np.memmap(reader.path, dtype=np.dtype(reader.dtype), mode="r",
                                  offset=reader.offset, shape=(reader.sig_items, reader.frames))
        except BaseException:
            os.close(self._fd)
            raise

    def read(self, lo: int, hi: int, out: np.ndarray) -> None:
        # touching a mapping past the end of a file that shrank kills the process (SIGBUS):
        # check the size before every read
        assert self._fd is not None and self._map is not None, "read after close"
        self._check(self._fd, self._r.path, self._r.end, "the pixels of the transposed image")
        dest = out.reshape(hi - lo, self._r.sig_items)
        src = self._map[:, lo:hi]
        # a transposing copy in slabs of pixels that fit in the cache: 3-4x faster than one
        # numpy copy of the whole (pixels, frames) -> (frames, pixels) transpose
        step = max(16, TRANSPOSE_TILE_BYTES // max(1, (hi - lo) * src.dtype.itemsize))
        from ..backends._sigbus import guarded_reads

        # the file can still shrink after the check: the guard turns SIGBUS into an error
        with guarded_reads(src, self._r.path):
            for s0 in range(0, self._r.sig_items, step):
                dest[:, s0:s0 + step] = src[s0:s0 + step].T

    def close(self) -> None:
        fd, self._fd = getattr(self, "_fd", None), None
        self._map = None
        if fd is not None:
            os.close(fd)
