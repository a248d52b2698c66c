"""The ``binary`` format: Thunder's binary image stacks (a directory of ``.bin`` files).

Thunder's conventions (``thunder/images/readers.py: frombinary``, ``writers.py: tobinary``)
-------------------------------------------------------------------------------------------
* A directory holds one image per ``.bin`` file, named ``<prefix>-NNNNN.bin`` by the writer
  and taken in the order of their sorted names; images have no header.
* ``conf.json`` next to them says ``dtype`` and the image shape:

  - ``"shape"`` (Thunder >= 1.0, ``tobinary`` writes ``img.copy()``, a C-order array): the
    bytes are the image in C order, so ``shape`` is the frame shape;
  - ``"dims"`` (Thunder 0.x, ``saveAsBinaryImages`` writes ``img.transpose().copy()`` and
    reads with ``reshape(dims, order="F")``): the first dimension changes fastest, so the
    bytes are a C-order frame of the *reversed* dims. (Thunder 1.0 reads an old ``dims`` as a
    C-order shape; for square images, like the example data, both readings agree.)

  ``SUCCESS``, an empty file, marks a complete write.

udfkit reads every file as one frame of a :class:`~udfkit.io.layout.FileSet`, so the I/O
backends (``mmap``, ``buffered``, ``direct``) do the reading. :class:`BinaryStackWriter`
writes stacks that Thunder >= 1.0 reads back (``frombinary(path)``).
"""

from __future__ import annotations

import json
import os
from math import prod

import numpy as np
from numpy.typing import DTypeLike

from ...common import Shape, normalize_dtype
from ...common.parse import ShapeLike
from ...errors import DataSetError, DataSetFileNotFoundError
from ..base import DataSetMeta, IOBackend
from ..file_based import FileDataSet
from ..layout import FileLayout, FileSet
from ._common import (
    bound_files_per_partition,
    check_frame_count,
    check_sync_offset,
    parse_dims,
    resolve_shapes,
)
from .base import COMMON_PARAMS, Format, Param

__all__ = ["BinaryFormat", "BinaryDataSet", "BinaryStackWriter", "write_binary_stack", "CONF_NAME"]

CONF_NAME = "conf.json"
EXTENSION = ".bin"


class BinaryFormat(Format):
    """Thunder's binary image stacks: ``*.bin`` files plus a ``conf.json``."""

    name = "binary"
    dataset = "udfkit.io.formats.binary:BinaryDataSet"
    params = (
        Param("path", "path", None, "the directory of .bin files (or its conf.json)"),
        Param("dims", "shape", None,
              "image dims as Thunder 0.x's conf.json has them (fastest first), if it is missing"),
        Param("dtype", "dtype", None, "stored dtype, if conf.json is missing or to override it"),
        COMMON_PARAMS["nav_shape"], COMMON_PARAMS["sig_shape"], COMMON_PARAMS["sync_offset"],
        COMMON_PARAMS["io_backend"], COMMON_PARAMS["num_partitions"], COMMON_PARAMS["allow_partial"],
    )

    @classmethod
    def guess_can_open(cls, path: str) -> float:
        path = os.fspath(path)
        if os.path.isfile(path) and os.path.basename(path) == CONF_NAME:
            return 0.9 if _bin_files(os.path.dirname(path) or ".") else 0.0
        if os.path.isdir(path) and os.path.isfile(os.path.join(path, CONF_NAME)) and _bin_files(path):
            return 1.0
        return 0.0


def _bin_files(directory: str) -> list:
    """``[(path, size)]`` of the ``.bin`` files, sorted by name (Thunder's order)."""
    with os.scandir(directory) as it:
        found = [(e.name, e.path) for e in it if e.name.endswith(EXTENSION) and e.is_file()]
    return [(p, os.path.getsize(p)) for _, p in sorted(found)]


def read_conf(directory: str) -> dict:
    """``conf.json`` of a stack as a dict (``{}`` when there is none)."""
    conf = os.path.join(directory, CONF_NAME)
    if not os.path.isfile(conf):
        return {}
    try:
        with open(conf) as f:
            found = json.load(f)
    except (OSError, ValueError) as e:
        raise DataSetError(f"binary stack {directory!r}: {CONF_NAME} cannot be read: {e}") from None
    if not isinstance(found, dict):
        raise DataSetError(f"binary stack {directory!r}: {CONF_NAME}: expected a JSON object with "
                           f"'shape' (or 'dims') and 'dtype', got {type(found).__name__}")
    return found


class BinaryDataSet(FileDataSet):
    """A Thunder binary image stack: one frame per ``.bin`` file.

    Parameters
    ----------
    path : str or os.PathLike
        The directory, or its ``conf.json``.
    dims : tuple of int, optional
        Image dimensions as Thunder 0.x's ``conf.json`` gives them, fastest-changing first
        (the frame is C order over the reversed dims); for stacks without ``conf.json``.
        Given, it replaces what ``conf.json`` says.
    dtype : dtype, optional
        For stacks without ``conf.json``, or to override it.
    nav_shape : tuple of int, optional
        Default ``(number of files,)``.
    sig_shape : tuple of int, optional
        The frame shape (C order): for stacks without ``conf.json``, or another shape of the
        same number of elements.
    sync_offset, io_backend, num_partitions, allow_partial
        As for the raw format.

    Notes
    -----
    Every file must hold exactly one image (``prod(shape) * itemsize`` bytes); a file of
    another size is an error naming it. See the module docstring for Thunder's conventions.

    Examples
    --------
    >>> import numpy as np, tempfile, os
    >>> from udfkit import Context
    >>> d = os.path.join(tempfile.mkdtemp(), "stack")
    >>> write_binary_stack(d, np.arange(6 * 4 * 5, dtype="int16").reshape(6, 4, 5))
    6
    >>> sorted(os.listdir(d))[:2], sorted(os.listdir(d))[-2:]
    (['SUCCESS', 'conf.json'], ['image-00004.bin', 'image-00005.bin'])
    >>> ds = Context.make_with("inline").load("binary", path=d, nav_shape=(2, 3))
    >>> ds.shape, ds.dtype
    (Shape((2, 3, 4, 5), sig_dims=2), dtype('int16'))
    """

    format_name = "binary"

    def __init__(self, path: str | os.PathLike[str] | None = None, dims: ShapeLike | None = None,
                 dtype: DTypeLike | None = None, nav_shape: ShapeLike | None = None,
                 sig_shape: ShapeLike | None = None, sync_offset: int = 0,
                 io_backend: str | IOBackend | None = None, num_partitions: int | None = None,
                 allow_partial: bool = False):
        super().__init__(nav_shape=nav_shape, sig_shape=sig_shape, sync_offset=sync_offset,
                         num_partitions=num_partitions, allow_partial=allow_partial,
                         io_backend=io_backend)
        self._path_arg = path
        self._dims_arg = dims
        self._dtype_arg = dtype
        self._info: dict = {}

    def _initialize(self) -> DataSetMeta:
        directory = self._directory()
        where = f"binary stack {directory!r}"
        conf = read_conf(directory)
        image_shape, source = self._image_shape(conf, where)
        dtype_value = self._dtype_arg if self._dtype_arg is not None else conf.get("dtype")
        if dtype_value is None:
            raise DataSetError(f"{where}: no dtype; {CONF_NAME} is missing or has no 'dtype', so "
                               "pass dtype= (Thunder assumes int16 then: dtype='int16')")
        dtype = normalize_dtype(dtype_value, error=DataSetError, where=where)
        files = _bin_files(directory)
        if not files:
            raise DataSetError(f"{where} holds no {EXTENSION} file")
        frame_bytes = prod(image_shape) * dtype.itemsize
        for i, (p, size) in enumerate(files):
            if size != frame_bytes:
                raise DataSetError(
                    f"binary file {p!r} (file {i + 1} of {len(files)}) has {size} bytes, but "
                    f"{source} × {dtype} makes images of {frame_bytes} bytes, one per file; "
                    f"check {CONF_NAME} (or dims/sig_shape and dtype)")
        image_count = len(files)
        nav_arg = parse_dims(self._nav_shape_arg, "nav_shape", where)
        sig_arg = parse_dims(self._sig_shape_arg, "sig_shape", where)
        if sig_arg is not None and prod(sig_arg) != prod(image_shape):
            raise DataSetError(f"{where}: sig_shape {sig_arg} has {prod(sig_arg)} elements, but "
                               f"{source} has {prod(image_shape)}; every file is one image")
        nav_shape, sig_shape, _ = resolve_shapes(
            where, (image_count,) + image_shape, len(image_shape), nav_arg, sig_arg,
            image_count * prod(image_shape), self._allow_partial)
        check_frame_count(where, nav_shape, image_count, self._allow_partial,
                          f"{image_count} files", f"one file of {frame_bytes} bytes")
        sync_offset = check_sync_offset(where, self._sync_offset_arg, prod(nav_shape), image_count)
        self._fileset = FileSet([FileLayout(p, 0, dtype, sig_shape, 1) for p, _ in files])
        self._info = {"files": image_count, "frame_bytes": frame_bytes, "conf": source,
                      "first_file": os.path.basename(files[0][0]),
                      "last_file": os.path.basename(files[-1][0])}
        return DataSetMeta(shape=Shape(nav_shape + sig_shape, sig_dims=len(sig_shape)),
                           raw_dtype=dtype, image_count=image_count, sync_offset=sync_offset,
                           metadata={"path": directory, "file_bytes": image_count * frame_bytes,
                                     "io_backend": self._backend.name})

    def _directory(self) -> str:
        if self._path_arg is None:
            raise DataSetError("binary format: path is required (the directory of .bin files)")
        path = os.fspath(self._path_arg)
        if not os.path.exists(path):
            raise DataSetFileNotFoundError(f"binary stack {path!r} does not exist")
        if os.path.isfile(path):
            if os.path.basename(path) != CONF_NAME:
                raise DataSetError(f"binary stack: expected a directory of {EXTENSION} files or its "
                                   f"{CONF_NAME}, got the file {path!r} (for one raw file use "
                                   "ctx.load('raw', ...))")
            return os.path.dirname(path) or "."
        return path

    def _image_shape(self, conf: dict, where: str) -> tuple:
        """``(frame shape in C order, how it was found)``."""
        if self._dims_arg is not None:
            dims = parse_dims(self._dims_arg, "dims", where)
            return tuple(reversed(dims)), f"dims={list(dims)}"
        if self._sig_shape_arg is not None and not ("shape" in conf or "dims" in conf):
            sig = parse_dims(self._sig_shape_arg, "sig_shape", where)
            return sig, f"sig_shape={sig}"
        for key, reverse in (("shape", False), ("dims", True)):
            if key in conf:
                dims = parse_dims(conf[key], f"{CONF_NAME} {key!r}", where)
                return (tuple(reversed(dims)) if reverse else dims), f"{CONF_NAME} {key} {list(dims)}"
        have = f"{CONF_NAME} has no 'shape' or 'dims'" if conf else f"there is no {CONF_NAME}"
        raise DataSetError(f"{where}: {have}; pass sig_shape= (the image shape) and dtype=")

    def partition_bounds(self) -> list:
        # many one-frame files: partitions of a bounded number of files (open files)
        return bound_files_per_partition(self, super().partition_bounds())

    def layout_info(self) -> dict:
        """Files, bytes per image and where the image shape came from."""
        self._require_meta()
        return dict(self._info)


class BinaryStackWriter:
    """Writes a Thunder binary stack, one frame per file, as Thunder's ``tobinary`` does.

    Small and picklable: :meth:`create` it on the main process, let workers :meth:`write`
    the frames they hold (each frame is its own file), :meth:`finish` at the end.

    Parameters
    ----------
    directory : str or os.PathLike
    sig_shape : tuple of int
        The frame shape, written to ``conf.json`` as ``"shape"`` (C order, Thunder >= 1.0).
    dtype : dtype
    count : int
        Number of frames; file numbers get as many digits as the last needs (at least 5,
        Thunder's ``%05d``), so that sorted names are frame order.
    prefix : str
        File names are ``<prefix>-NNNNN.bin``.

    Examples
    --------
    >>> import numpy as np, tempfile, os, json
    >>> d = os.path.join(tempfile.mkdtemp(), "out")
    >>> w = BinaryStackWriter(d, sig_shape=(2, 3), dtype="uint16", count=3)
    >>> w.create()
    >>> w.write(1, np.ones((2, 2, 3), dtype="uint16"))
    >>> w.write(0, np.zeros((1, 2, 3), dtype="uint16"))
    >>> w.finish()
    >>> json.load(open(os.path.join(d, "conf.json")))
    {'shape': [2, 3], 'dtype': 'uint16'}
    >>> w.file_name(2), os.path.getsize(os.path.join(d, w.file_name(2)))
    ('image-00002.bin', 12)
    """

    def __init__(self, directory, *, sig_shape, dtype, count: int, prefix: str = "image"):
        self.directory = os.fspath(directory)
        self.sig_shape = tuple(int(n) for n in sig_shape)
        self.dtype = np.dtype(dtype)
        self.count = int(count)
        self.prefix = str(prefix)
        self._digits = max(5, len(str(max(0, self.count - 1))))

    def file_name(self, index: int) -> str:
        return f"{self.prefix}-{index:0{self._digits}d}{EXTENSION}"

    def create(self, overwrite: bool = False) -> None:
        """Make the directory and write ``conf.json``.

        An existing directory that is not empty is refused (``FileExistsError``) unless
        ``overwrite``; then its ``.bin`` files, ``conf.json`` and ``SUCCESS`` are removed
        (nothing else: a directory of other files is never wiped).
        """
        d = self.directory
        if os.path.isdir(d) and os.listdir(d):
            if not overwrite:
                raise FileExistsError(f"binary stack {d!r} exists and is not empty; pass "
                                      "overwrite=True to replace it")
            for name in os.listdir(d):
                if name.endswith(EXTENSION) or name in (CONF_NAME, "SUCCESS"):
                    os.remove(os.path.join(d, name))
        os.makedirs(d, exist_ok=True)
        # Thunder's config(): {"shape": [...], "dtype": str(dtype)}, indented by 2
        conf = {"shape": list(self.sig_shape), "dtype": str(self.dtype)}
        with open(os.path.join(d, CONF_NAME), "w") as f:
            f.write(json.dumps(conf, indent=2))

    def write(self, start: int, frames) -> None:
        """Write frames ``start, start + 1, ...``: ``frames`` is an array ``(n, *sig_shape)``."""
        frames = np.asarray(frames).reshape((-1,) + self.sig_shape)
        if start < 0 or start + len(frames) > self.count:
            raise ValueError(f"binary stack {self.directory!r}: frames {start}..{start + len(frames) - 1} "
                             f"are outside 0..{self.count - 1}")
        for k, frame in enumerate(frames):
            data = np.ascontiguousarray(frame, dtype=self.dtype)
            with open(os.path.join(self.directory, self.file_name(start + k)), "wb") as f:
                f.write(data.data.cast("B"))

    def finish(self) -> None:
        """Touch ``SUCCESS``, as Thunder does after a complete write."""
        with open(os.path.join(self.directory, "SUCCESS"), "w"):
            pass


def write_binary_stack(directory, frames, *, sig_dims: int | None = None, dtype=None,
                       prefix: str = "image", overwrite: bool = False) -> int:
    """Write the frames of an array as a Thunder binary stack, one ``.bin`` file per frame.

    ``frames`` is ``(n, *sig_shape)``, or ``(*nav_shape, *sig_shape)`` with ``sig_dims``
    trailing signal axes (frames in C order of the nav axes). Returns the number of frames
    written. See :class:`BinaryStackWriter` for the layout and for writing frames piece by
    piece.

    Examples
    --------
    >>> import numpy as np, tempfile, os
    >>> d = os.path.join(tempfile.mkdtemp(), "s")
    >>> write_binary_stack(d, np.zeros((2, 4, 4), dtype=">f4"))
    2
    >>> open(os.path.join(d, "conf.json")).read()
    '{\\n  "shape": [\\n    4,\\n    4\\n  ],\\n  "dtype": ">f4"\\n}'
    """
    frames = np.asarray(frames)
    if sig_dims is None:
        sig_dims = frames.ndim - 1
    if not 1 <= sig_dims < frames.ndim:
        raise ValueError(f"write_binary_stack: expected frames of shape (n, *sig_shape) with "
                         f"sig_dims >= 1 signal axes, got an array of shape {frames.shape} and "
                         f"sig_dims={sig_dims}")
    frames = frames.reshape((-1,) + frames.shape[frames.ndim - sig_dims:])
    writer = BinaryStackWriter(directory, sig_shape=frames.shape[1:],
                               dtype=frames.dtype if dtype is None else dtype,
                               count=len(frames), prefix=prefix)
    writer.create(overwrite=overwrite)
    writer.write(0, frames)
    writer.finish()
    return len(frames)
