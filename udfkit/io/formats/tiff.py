"""The ``tiff`` format: a multi-page TIFF, a list of TIFFs, or a directory / glob of them.

How pages become frames
-----------------------
Files are taken in the order given (a list) or sorted by name (a directory or a glob
pattern), and their pages in file order. By default every page is one frame. With
``nplanes=k`` every ``k`` consecutive pages of a file are one volume, a frame of shape
``(k, height, width)``, as Thunder's ``fromtif(nplanes=k)`` groups them; volumes never span
two files, so each file must hold a multiple of ``k`` pages. (Thunder's default, one volume
per file, is ``nplanes`` = the pages per file.)

How pages are read
------------------
Every page must have the same shape and dtype; that is checked at load time. When all
pages are uncompressed and stored in final form (one contiguous run of bytes per page, no
predictor, no bit-packing), the format only describes where they are: one
:class:`~udfkit.io.layout.FileLayout` per file, with the stride of its frames (files written
by tifffile, ImageJ and most acquisition software; one frame per file in a one-page-per-file
stack) or, where the pages lie at no fixed stride, a table of their offsets; udfkit's I/O
backends then read them, zero-copy with ``mmap``. Compressed pages (LZW, PackBits, deflate,
zstd, JPEG, ...), and volumes whose pages are not back to back, are decoded by tifffile on
the worker, a page at a time into udfkit's buffer (the
:class:`~udfkit.io.chunked.ChunkedDataSet` machinery with blocks of one frame); decoded frames
come out in native byte order.
"""

from __future__ import annotations

import glob
import logging
import os
from bisect import bisect_right
from contextlib import contextmanager
from math import prod
from typing import Any

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
    bound_files_per_partition,
    check_frame_count,
    check_sync_offset,
    parse_dims,
    resolve_shapes,
)
from .base import COMMON_PARAMS, Format, Param, read_head

__all__ = ["TIFFFormat", "TIFFDataSet", "list_stack_files"]

TIFF_EXTENSIONS = (".tif", ".tiff")
TIFF_MAGIC = (b"II*\0", b"MM\0*", b"II+\0", b"MM\0+")
_GLOB_CHARS = "*?["


class TIFFFormat(Format):
    """TIFF files: one multi-page file, or a stack of files (list, directory or glob)."""

    name = "tiff"
    dataset = "udfkit.io.formats.tiff:TIFFDataSet"
    extensions = TIFF_EXTENSIONS
    magic = TIFF_MAGIC
    requires = ("tifffile", "tiff")
    params = (
        Param("path", "paths", None, "a TIFF file, a list of them, a directory or a glob pattern"),
        Param("nplanes", "int", None, "pages per volume: frames of shape (nplanes, height, width)"),
        COMMON_PARAMS["nav_shape"], COMMON_PARAMS["sig_shape"], COMMON_PARAMS["sync_offset"],
        COMMON_PARAMS["io_backend"], COMMON_PARAMS["num_partitions"], COMMON_PARAMS["allow_partial"],
    )

    @classmethod
    def guess_can_open(cls, path: str) -> float:
        path = os.fspath(path)
        if os.path.isdir(path):
            files = _dir_files(path)
            return 0.8 if files and _is_tiff(files[0]) else 0.0
        if not os.path.exists(path) and any(ch in path for ch in _GLOB_CHARS):
            files = sorted(p for p in glob.glob(path) if os.path.isfile(p))
            return 0.8 if files and _is_tiff(files[0]) else 0.0
        return super().guess_can_open(path)


def _is_tiff(path: str) -> bool:
    return read_head(path, 4) in TIFF_MAGIC or path.lower().endswith(TIFF_EXTENSIONS)


def _dir_files(directory: str) -> list:
    """The ``.tif`` / ``.tiff`` files of a directory, sorted by name (as Thunder lists them)."""
    with os.scandir(directory) as it:
        return sorted(e.path for e in it
                      if e.name.lower().endswith(TIFF_EXTENSIONS) and e.is_file())


def list_stack_files(path, what: str = "tiff") -> tuple[list, str]:
    """The files of a stack and how to name it in messages: ``(paths, where)``.

    ``path`` is one file, a list of files (kept in its order), a directory (its ``.tif`` and
    ``.tiff`` files, sorted by name) or a glob pattern (the matching files, sorted).

    Examples
    --------
    >>> import os, tempfile
    >>> d = tempfile.mkdtemp()
    >>> for name in ("b.tif", "a.tif", "notes.txt"):
    ...     open(os.path.join(d, name), "wb").close()
    >>> [os.path.basename(p) for p in list_stack_files(d)[0]]
    ['a.tif', 'b.tif']
    >>> [os.path.basename(p) for p in list_stack_files(os.path.join(d, "*.tif"))[0]]
    ['a.tif', 'b.tif']
    """
    if path is None:
        raise DataSetError(f"{what} format: a path is required (a file, a list of files, a "
                           "directory or a glob pattern)")
    if isinstance(path, (list, tuple)):
        if not path:
            raise DataSetError(f"{what} format: path is an empty list; give a file or a list of files")
        paths = [os.fspath(p) for p in path]
        for p in paths:
            if not os.path.exists(p):
                raise DataSetFileNotFoundError(f"{what} file {p!r} does not exist")
            if not os.path.isfile(p):
                raise DataSetError(f"{what} file {p!r} (in the list of files) is not a regular file")
        where = (f"{what} file {paths[0]!r}" if len(paths) == 1
                 else f"{what} files {paths[0]!r} ... {paths[-1]!r} ({len(paths)} files)")
        return paths, where
    path = os.fspath(path)
    if os.path.isdir(path):
        paths = _dir_files(path)
        if not paths:
            raise DataSetError(f"{what} directory {path!r} holds no .tif or .tiff file")
        return paths, f"{what} directory {path!r} ({len(paths)} files)"
    if os.path.isfile(path):
        return [path], f"{what} file {path!r}"
    if any(ch in path for ch in _GLOB_CHARS):
        paths = sorted(p for p in glob.glob(path) if os.path.isfile(p))
        if not paths:
            raise DataSetFileNotFoundError(f"{what} pattern {path!r} matches no file")
        return paths, f"{what} files {path!r} ({len(paths)} files)"
    if os.path.exists(path):
        raise DataSetError(f"{what} path {path!r} is neither a file nor a directory")
    raise DataSetFileNotFoundError(f"{what} file {path!r} does not exist")


@contextmanager
def _tifffile_complaints():
    """Collect what tifffile logs while parsing (it logs, rather than raises, when the chain
    of pages runs past the end of a truncated file)."""
    complaints = []

    class _Collect(logging.Handler):
        def emit(self, record):
            complaints.append(record.getMessage())

    logger = logging.getLogger("tifffile")
    handler = _Collect(logging.WARNING)
    logger.addHandler(handler)
    try:
        yield complaints
    finally:
        logger.removeHandler(handler)


class _ScannedFile:
    """What one TIFF file holds: per page shape, dtype, form, offset (from tifffile)."""

    def __init__(self, path: str, index: int, count: int):
        import tifffile

        self.path = path
        self.size = os.path.getsize(path)
        of = f" (file {index + 1} of {count})" if count > 1 else ""
        self.name = f"tiff file {path!r}{of}"
        #: the shape tifffile's first series declares (only looked up for a single file)
        self.series_shape = None
        try:
            with _tifffile_complaints() as complaints, tifffile.TiffFile(path) as tif:
                self.byteorder = tif.byteorder
                pages = [self._page(page) for page in tif.pages]
                broken = [c for c in complaints if "page offset" in c]
                if count == 1 and not broken:
                    self.series_shape = _series_shape(tif)
        except DataSetError:
            raise
        except Exception as e:  # tifffile raises many kinds on damaged files
            raise DataSetError(f"{self.name} cannot be read as TIFF: {type(e).__name__}: {e}") from None
        if broken:
            # the chain of pages runs past the end of the file: pages were lost
            raise DataSetError(f"{self.name} is damaged or truncated ({self.size} bytes, "
                               f"{len(pages)} pages readable); tifffile reports: {broken[0]}")
        if not pages:
            raise DataSetError(f"{self.name} holds no image page")
        self.shapes = [p[0] for p in pages]
        self.dtypes = [p[1] for p in pages]
        self.compressions = sorted({p[2] for p in pages})
        self.final = all(p[3] for p in pages)
        self.offsets = np.array([p[4] for p in pages], dtype=np.int64)
        self.nbytes = [p[5] for p in pages]

    def _page(self, page):
        if page.dtype is None:
            raise DataSetError(f"{self.name}, page {page.index}: its sample format "
                               f"({page.bitspersample} bits, sampleformat {page.sampleformat}) has "
                               "no numpy dtype; udfkit cannot read it")
        dtype = np.dtype(page.dtype)
        if dtype.itemsize > 1:
            dtype = dtype.newbyteorder(self.byteorder)
        final = bool(page.is_final)
        offset = int(page.dataoffsets[0]) if final else -1
        if final and offset + page.nbytes > self.size:
            raise DataSetError(f"{self.name} is truncated: page {page.index} needs bytes up to "
                               f"{offset + page.nbytes}, but the file has {self.size} bytes")
        compression = getattr(page.compression, "name", str(page.compression)).lower()
        return tuple(page.shape), dtype, compression, final, offset, int(page.nbytes)


def _fixed_stride(offsets: np.ndarray, frame_bytes: int):
    """The stride of frames at these offsets, or ``None`` when there is no single one.

    Examples
    --------
    >>> _fixed_stride(np.array([8, 108, 208, 308]), 100), _fixed_stride(np.array([8]), 100)
    (100, 100)
    >>> print(_fixed_stride(np.array([8, 200, 330]), 100), _fixed_stride(np.array([200, 8]), 100))
    None None
    """
    if len(offsets) == 1:
        return frame_bytes
    steps = np.diff(offsets)
    if steps[0] >= frame_bytes and np.all(steps == steps[0]):
        return int(steps[0])
    return None


class TIFFDataSet(FileDataSet):
    """Pages of TIFF files as frames (or groups of ``nplanes`` pages as volumes).

    Parameters
    ----------
    path : str or os.PathLike, or a list of them
        One (multi-page) TIFF file; a list of files, in frame order; a directory (its
        ``.tif``/``.tiff`` files sorted by name); or a glob pattern (matches sorted).
    nplanes : int, optional
        Group every ``nplanes`` consecutive pages of a file into one frame of shape
        ``(nplanes, height, width)`` (Thunder's ``fromtif(nplanes=...)``); each file must hold
        a multiple of ``nplanes`` pages (``nplanes=1``: frames of shape ``(1, height, width)``).
        Default: one frame of shape ``(height, width)`` per page.
    nav_shape : tuple of int, optional
        Default: the shape a single tifffile- or ImageJ-written file declares for its pages
        (e.g. ``(T, Z)``), otherwise ``(number of frames,)``.
    sig_shape : tuple of int, optional
        Another shape of the same number of elements as a frame.
    sync_offset, num_partitions, allow_partial
        As for the raw format.
    io_backend : str or IOBackend, optional
        ``"mmap"`` (default), ``"buffered"`` or ``"direct"`` for uncompressed pages; for pages
        that tifffile decodes, giving one is an error (as for HDF5 and zarr).

    Notes
    -----
    ``dtype`` is the stored dtype, byte order included (``>u2`` for a big-endian file), when
    the pages are read natively; pages decoded by tifffile come out in native byte order.
    :meth:`layout_info` says which path a data set takes.

    Examples
    --------
    >>> import numpy as np, tempfile, os, tifffile
    >>> from udfkit import Context
    >>> path = os.path.join(tempfile.mkdtemp(), "stack.tif")
    >>> data = np.arange(6 * 16 * 16, dtype="uint16").reshape(6, 16, 16)
    >>> tifffile.imwrite(path, data, photometric="minisblack")
    >>> ctx = Context.make_with("inline")
    >>> ds = ctx.load("tiff", path=path, nav_shape=(2, 3))
    >>> ds.shape, ds.layout_info()["read_path"]
    (Shape((2, 3, 16, 16), sig_dims=2), 'native')
    >>> vol = ctx.load("tiff", path=path, nplanes=3)
    >>> vol.shape
    Shape((2, 3, 16, 16), sig_dims=3)
    """

    format_name = "tiff"

    def __init__(self, path: str | os.PathLike[str] | None = None, nplanes: int | None = None,
                 nav_shape: ShapeLike | None = None, sig_shape: ShapeLike | None = None, sync_offset: int = 0,
                 io_backend: str | IOBackend | None = None, num_partitions: int | None = None,
                 allow_partial: bool = False):
        super().__init__(nav_shape=nav_shape, sig_shape=sig_shape, sync_offset=sync_offset,
                         num_partitions=num_partitions, allow_partial=allow_partial,
                         io_backend=io_backend)
        self._path_arg = path
        self._nplanes_arg = nplanes
        self._io_backend_arg = io_backend
        self._reader: _TIFFReader | None = None
        self._info: dict = {}

    # -- loading ------------------------------------------------------------------------
    def _initialize(self) -> DataSetMeta:
        TIFFFormat.check_requirements()
        paths, where = list_stack_files(self._path_arg)
        nplanes = _check_nplanes(self._nplanes_arg, where)
        scanned = [_ScannedFile(p, i, len(paths)) for i, p in enumerate(paths)]
        page_shape, dtype = _check_same_pages(scanned)
        for s in scanned:
            if len(s.shapes) % nplanes:
                raise DataSetError(
                    f"{s.name} holds {len(s.shapes)} pages, which is not a multiple of "
                    f"nplanes={nplanes}; every file must hold whole volumes of {nplanes} pages")
        volumes = self._nplanes_arg is not None
        frame_shape = (nplanes,) + page_shape if volumes else page_shape
        if len(frame_shape) > 3:
            raise DataSetError(f"{where}: volumes of {nplanes} pages of shape {page_shape} would "
                               f"be frames of {len(frame_shape)} dimensions; at most 3 are supported")
        counts = [len(s.shapes) // nplanes for s in scanned]
        image_count = sum(counts)
        frame_items = prod(frame_shape)
        nav_arg = parse_dims(self._nav_shape_arg, "nav_shape", where)
        sig_arg = parse_dims(self._sig_shape_arg, "sig_shape", where)
        if sig_arg is not None and prod(sig_arg) != frame_items:
            raise DataSetError(
                f"{where}: sig_shape {sig_arg} has {prod(sig_arg)} elements, but a frame "
                f"{'(a volume of ' + str(nplanes) + ' pages) ' if volumes else '(a page) '}"
                f"has shape {frame_shape} ({frame_items} elements); sig_shape can only reshape a "
                "frame (use nplanes to group pages into volumes)")
        native_shape = _declared_shape(scanned, frame_shape, image_count)
        nav_shape, sig_shape, _ = resolve_shapes(
            where, native_shape, len(frame_shape), nav_arg, sig_arg, image_count * frame_items,
            self._allow_partial)
        dtype_final = dtype
        frame_bytes = frame_items * dtype.itemsize
        layouts = self._native_layouts(scanned, counts, nplanes, dtype, sig_shape)
        if layouts is None and self._io_backend_arg is not None:
            # as for HDF5 and zarr: an I/O backend the data never go through is an error, not
            # a silent no-op, so that a benchmark or a workaround does not measure the wrong path
            compressed = sorted({c for s in scanned for c in s.compressions} - {"NONE"})
            why = (f"compressed pages ({', '.join(compressed)})" if compressed
                   else f"the {nplanes} pages of a volume are not back to back")
            raise DataSetError(
                f"{where}: io_backend={self._io_backend_arg!r} does not apply: the pages are decoded "
                f"by tifffile ({why}), not read by udfkit's I/O backends; drop io_backend")
        if layouts is None:
            dtype_final = dtype.newbyteorder("=")
            self._fileset = None
            self._reader = _TIFFReader(tuple(paths), tuple(len(s.shapes) for s in scanned),
                                       nplanes, page_shape, dtype_final.str, image_count)
        else:
            self._fileset = FileSet(layouts)
            self._reader = None
        check_frame_count(where, nav_shape, image_count, self._allow_partial,
                          f"{sum(len(s.shapes) for s in scanned)} pages",
                          f"{nplanes} page(s) of {page_shape} {dtype}")
        sync_offset = check_sync_offset(where, self._sync_offset_arg, prod(nav_shape), image_count)
        compressions = sorted({c for s in scanned for c in s.compressions})
        self._info = {
            "files": len(paths),
            "pages": sum(len(s.shapes) for s in scanned),
            "page_shape": page_shape,
            "nplanes": nplanes,
            "compression": ", ".join(compressions),
            "byteorder": scanned[0].byteorder,
            "read_path": "native" if layouts is not None else "decoded",
        }
        if layouts is not None:
            tables = sum(lay.frame_offsets is not None for lay in layouts)
            if tables:
                self._info["offset_tables"] = f"{tables} of {len(layouts)} files (pages at no fixed stride)"
        elif all(s.final for s in scanned):
            self._info["decoded_because"] = f"the {nplanes} pages of a volume are not back to back"
        shown = (paths[0] if self._path_arg is None or isinstance(self._path_arg, (list, tuple))
                 else self._path_arg)
        metadata = {"path": os.fspath(shown), "file_bytes": sum(s.size for s in scanned),
                    "frame_bytes": frame_bytes}
        if layouts is not None:
            metadata["io_backend"] = self._backend.name
        if len(paths) > 1:
            metadata["paths"] = tuple(paths)
        return DataSetMeta(shape=Shape(nav_shape + sig_shape, sig_dims=len(sig_shape)),
                           raw_dtype=dtype_final, image_count=image_count,
                           sync_offset=sync_offset, metadata=metadata)

    @staticmethod
    def _native_layouts(scanned, counts, nplanes, dtype, sig_shape):
        """File layouts of the frames when every page is uncompressed and every volume is one
        run of bytes; ``None`` when tifffile has to decode them.

        A file whose frames lie at one fixed stride is one layout with that stride; otherwise
        (pages in any order, IFDs of varying size between them) one layout with a table of
        the frame offsets.
        """
        if not all(s.final for s in scanned):
            return None
        page_bytes = scanned[0].nbytes[0]
        frame_bytes = page_bytes * nplanes
        layouts = []
        for s, n in zip(scanned, counts):
            pages = s.offsets.reshape(n, nplanes)
            if nplanes > 1 and np.any(np.diff(pages, axis=1) != page_bytes):
                return None  # the pages of a volume are not back to back
            stride = _fixed_stride(pages[:, 0], frame_bytes)
            if stride is not None:
                layouts.append(FileLayout(s.path, int(pages[0, 0]), dtype, tuple(sig_shape), n,
                                          frame_footer_bytes=stride - frame_bytes))
            else:
                layouts.append(FileLayout(s.path, 0, dtype, tuple(sig_shape), n,
                                          frame_offsets=pages[:, 0].copy()))
        return layouts

    # -- partitions ---------------------------------------------------------------------
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
        return [ChunkedPartition(reader=self._reader, block=1, shape=meta.shape, start=start,
                                 stop=stop, raw_dtype=meta.raw_dtype, image_count=meta.image_count,
                                 sync_offset=meta.sync_offset, index=i)
                for i, (start, stop) in enumerate(self.partition_bounds())]

    def partition_bounds(self) -> list:
        # many one-frame files: partitions of a bounded number of files (open files)
        return bound_files_per_partition(self, super().partition_bounds())

    def layout_info(self) -> dict:
        """Files, pages, page shape, compression and whether the pages are read natively."""
        self._require_meta()
        return dict(self._info)


def _check_nplanes(nplanes, where: str) -> int:
    if nplanes is None:
        return 1
    if isinstance(nplanes, bool) or not isinstance(nplanes, (int, np.integer)) or nplanes < 1:
        raise DataSetError(f"{where}: nplanes: expected a positive integer (pages per volume), "
                           f"got {nplanes!r}")
    return int(nplanes)


def _check_same_pages(scanned) -> tuple:
    """The page shape and dtype, the same for every page of every file."""
    first = scanned[0]
    shape, dtype = first.shapes[0], first.dtypes[0]
    for s in scanned:
        for i, (sh, dt) in enumerate(zip(s.shapes, s.dtypes)):
            if sh != shape or dt != dtype:
                raise DataSetError(
                    f"{s.name}, page {i}: expected the shape {shape} and dtype {dtype} of page 0 "
                    f"of {first.path!r}, found shape {sh} and dtype {dt}; all pages of a TIFF "
                    "stack must have the same shape and dtype")
    return shape, dtype


def _series_shape(tif):
    """The shape of the file's only series (tifffile, ImageJ, OME metadata), or ``None``."""
    try:
        series = tif.series
        return tuple(series[0].shape) if len(series) == 1 else None
    except Exception:  # the pages were readable; a series we cannot interpret is no error
        return None


def _declared_shape(scanned, frame_shape, image_count) -> tuple:
    """``(*nav, *frame_shape)``: the page shape a single file declares (tifffile's shaped or
    ImageJ metadata, e.g. ``(T, Z, Y, X)``) when it fits the frames; else ``(frames, *frame)``."""
    default = (image_count,) + tuple(frame_shape)
    shape = scanned[0].series_shape if len(scanned) == 1 else None
    k = len(frame_shape)
    if shape is None or len(shape) <= k or shape[len(shape) - k:] != tuple(frame_shape):
        return default
    # axes of length 1 (a single channel or plane) are no navigation axes
    nav = tuple(n for n in shape[:len(shape) - k] if n != 1) or (1,)
    if prod(nav) != image_count or len(nav) > 3:
        return default
    return nav + tuple(frame_shape)


class _TIFFReader(ArrayReader):
    """Pages decoded by tifffile: paths and page counts only, opened on the worker.

    Examples
    --------
    >>> import numpy as np, tempfile, os, tifffile
    >>> path = os.path.join(tempfile.mkdtemp(), "z.tif")
    >>> tifffile.imwrite(path, np.arange(3 * 4, dtype="uint8").reshape(3, 2, 2),
    ...                  photometric="minisblack", compression="zlib")
    >>> reader = _TIFFReader((path,), (3,), 1, (2, 2), "|u1", 3)
    >>> out = np.zeros((2, 2, 2), dtype="uint8")
    >>> with reader.open() as opened:
    ...     opened.read(1, 3, out)
    >>> out[:, 0].tolist()
    [[4, 5], [8, 9]]
    """

    def __init__(self, paths, pages_per_file, nplanes, page_shape, dtype, image_count):
        self.paths = tuple(paths)
        self.pages_per_file = tuple(int(n) for n in pages_per_file)
        self.nplanes = int(nplanes)
        self.page_shape = tuple(page_shape)
        self.dtype = str(dtype)
        self.nav_shape = (int(image_count),)

    def open(self) -> OpenArray:
        return _OpenTIFF(self)

    def __eq__(self, other):
        return isinstance(other, _TIFFReader) and self.__dict__ == other.__dict__

    def __hash__(self):
        return hash((self.paths, self.pages_per_file, self.nplanes))


class _OpenTIFF(OpenArray):
    """Keeps the current file open while consecutive pages are read from it."""

    def __init__(self, reader: _TIFFReader):
        self._r = reader
        self._starts = np.concatenate([[0], np.cumsum(reader.pages_per_file)]).tolist()
        self._file = -1
        self._tif: Any = None  # a tifffile.TiffFile (imported lazily)

    def _page(self, f: int, local: int):
        import tifffile

        if f != self._file:
            self.close()
            path = self._r.paths[f]
            try:
                self._tif = tifffile.TiffFile(path)
            except FileNotFoundError:
                raise DataSetError(f"tiff file {path!r} disappeared after it was loaded") from None
            self._file = f
        return self._tif.pages[local]

    def read(self, lo: int, hi: int, out: np.ndarray) -> None:
        r = self._r
        pages = out.reshape((-1,) + r.page_shape)
        first = lo * r.nplanes
        for k in range(pages.shape[0]):
            g = first + k
            f = bisect_right(self._starts, g) - 1
            local = g - self._starts[f]
            try:
                page = self._page(f, local)
                page.asarray(out=pages[k], maxworkers=1)
            except DataSetError:
                raise
            except Exception as e:  # a file damaged or replaced after loading
                raise DataSetError(f"tiff file {r.paths[f]!r}, page {local}: cannot be read: "
                                   f"{type(e).__name__}: {e}; was the file changed after it "
                                   "was loaded?") from None

    def close(self) -> None:
        tif, self._tif = self._tif, None
        self._file = -1
        if tif is not None:
            tif.close()
