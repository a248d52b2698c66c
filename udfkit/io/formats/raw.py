"""The ``raw`` format: C-order frames in one file or several, optionally with headers."""

from __future__ import annotations

import numbers
import os
from math import prod

from ...common import Shape, normalize_dtype
from ...errors import DataSetError
from ..base import DataSetMeta
from ..file_based import FileDataSet
from ..layout import FileLayout, FileSet
from .base import COMMON_PARAMS, Format, Param
from ._common import (
    check_frame_count,
    check_path,
    check_some_frames,
    check_sync_offset,
    parse_dims,
    suggest_nav_shape,
)

__all__ = ["RawFormat", "RawFileDataSet", "SIDECAR_SUFFIX"]

SIDECAR_SUFFIX = ".json"
_SIDECAR_KEYS = ("dtype", "nav_shape", "sig_shape")


class RawFormat(Format):
    """Headerless C-order frames; the layout comes from the parameters or a JSON sidecar."""

    name = "raw"
    dataset = "udfkit.io.formats.raw:RawFileDataSet"
    extensions = (".raw", ".bin", ".dat")
    required_params = ("dtype", "nav_shape", "sig_shape")
    params = (
        Param("path", "paths", None, "the file, or a list of files in frame order"),
        Param("dtype", "dtype", None, "stored dtype, e.g. uint16 or '>f4'"),
        COMMON_PARAMS["nav_shape"], COMMON_PARAMS["sig_shape"], COMMON_PARAMS["sync_offset"],
        COMMON_PARAMS["io_backend"], COMMON_PARAMS["num_partitions"], COMMON_PARAMS["allow_partial"],
        Param("file_header_bytes", "int", 0, "bytes before the first frame of every file"),
        Param("frame_header_bytes", "int", 0, "bytes before every frame"),
        Param("frame_footer_bytes", "int", 0, "bytes after every frame"),
    )

    @classmethod
    def guess_can_open(cls, path: str) -> float:
        if os.path.isfile(path) and os.path.isfile(path + SIDECAR_SUFFIX):
            return 0.9  # written by Context.export: the sidecar says it is raw
        return super().guess_can_open(path)

    @classmethod
    def complete_params(cls, params: dict) -> dict:
        """Fill missing ``dtype``, ``nav_shape``, ``sig_shape`` from ``<path>.json``.

        ``Context.export`` writes that sidecar next to a raw file; given parameters win.
        """
        path = params.get("path")
        if path is None or isinstance(path, (list, tuple)) \
                or all(params.get(k) is not None for k in _SIDECAR_KEYS):
            return params
        side = os.fspath(path) + SIDECAR_SUFFIX
        if not os.path.isfile(side):
            return params
        import json

        try:
            with open(side) as f:
                found = json.load(f)
        except (OSError, ValueError) as e:
            raise DataSetError(f"sidecar {side!r} of raw file {os.fspath(path)!r} cannot be read: "
                               f"{e}") from None
        if not isinstance(found, dict):
            raise DataSetError(f"sidecar {side!r}: expected a JSON object with {list(_SIDECAR_KEYS)}")
        out = dict(params)
        for key in _SIDECAR_KEYS:
            if out.get(key) is None and found.get(key) is not None:
                out[key] = found[key]
        return out


class RawFileDataSet(FileDataSet):
    """Frames stored one after the other in C order, in one file or several.

    Parameters
    ----------
    path : str or os.PathLike, or a list of them
        One file, or the files of a data set split over several, in frame order (each
        holds the next frames).
    dtype : dtype
        Stored dtype, any numeric dtype numpy knows, including byte-swapped ones (``">u2"``).
    nav_shape, sig_shape : tuple of int
        1 to 3 dimensions each.
    sync_offset : int
        Positive: skip that many frames at the start of the file; negative: the first
        ``|sync_offset|`` positions have no frame.
    io_backend : str or IOBackend, optional
        ``"mmap"`` (default), ``"buffered"`` or ``"direct"``, or a backend instance such as
        ``BufferedBackend(buffer_size="16MiB")``.
    num_partitions : int, optional
    allow_partial : bool
        Accept a file with fewer frames than ``nav_shape`` needs (an aborted acquisition); the
        positions past the end are reported invalid instead of raising an error.
    file_header_bytes : int
        Bytes at the start of every file, before its first frame.
    frame_header_bytes, frame_footer_bytes : int
        Bytes before and after every frame (per-frame headers of detector formats).

    Notes
    -----
    A raw file has no shape of its own: ``nav_shape`` says how many frames to use. A file
    holding more whole frames than that is accepted (the rest is ignored); fewer whole frames,
    or a partial frame at the end, is an error unless ``allow_partial=True``.

    Examples
    --------
    >>> import numpy as np, tempfile, os
    >>> from udfkit import Context
    >>> path = os.path.join(tempfile.mkdtemp(), "scan.raw")
    >>> np.ones((4, 4, 8, 8), dtype="uint16").tofile(path)
    >>> ctx = Context.make_with("inline")
    >>> ds = ctx.load("raw", path=path, dtype="uint16", nav_shape=(4, 4), sig_shape=(8, 8))
    >>> ds.shape
    Shape((4, 4, 8, 8), sig_dims=2)
    """

    format_name = "raw"

    def __init__(self, path=None, dtype=None, nav_shape=None, sig_shape=None, sync_offset=0,
                 io_backend=None, num_partitions=None, allow_partial=False, file_header_bytes=0,
                 frame_header_bytes=0, frame_footer_bytes=0):
        super().__init__(nav_shape=nav_shape, sig_shape=sig_shape, sync_offset=sync_offset,
                         num_partitions=num_partitions, allow_partial=allow_partial,
                         io_backend=io_backend)
        self._path_arg = path
        self._dtype_arg = dtype
        self._headers_arg = {"file_header_bytes": file_header_bytes,
                             "frame_header_bytes": frame_header_bytes,
                             "frame_footer_bytes": frame_footer_bytes}

    def _initialize(self) -> DataSetMeta:
        missing = [n for n, v in (("path", self._path_arg), ("dtype", self._dtype_arg),
                                  ("nav_shape", self._nav_shape_arg),
                                  ("sig_shape", self._sig_shape_arg)) if v is None]
        if missing:
            first = self._path_arg[0] if isinstance(self._path_arg, (list, tuple)) and self._path_arg \
                else self._path_arg
            what = f"raw file {os.fspath(first)!r}" if first is not None else "raw format"
            raise DataSetError(f"{what}: {', '.join(missing)} missing; a raw file has no header, "
                               "so ctx.load('raw', path=..., dtype=..., nav_shape=..., sig_shape=...) "
                               "needs all four")
        paths = self._path_arg if isinstance(self._path_arg, (list, tuple)) else [self._path_arg]
        if not paths:
            raise DataSetError("raw format: path is an empty list; give a file or a list of files")
        paths = [check_path(p, "raw file") for p in paths]
        path = paths[0]
        where = (f"raw file {path!r}" if len(paths) == 1
                 else f"raw files {path!r} ... {paths[-1]!r} ({len(paths)} files)")
        dtype = normalize_dtype(self._dtype_arg, error=DataSetError, where=where)
        nav_shape = parse_dims(self._nav_shape_arg, "nav_shape", where, required=True)
        sig_shape = parse_dims(self._sig_shape_arg, "sig_shape", where, required=True)
        file_header, frame_header, frame_footer = (
            _byte_count(self._headers_arg[k], k, where)
            for k in ("file_header_bytes", "frame_header_bytes", "frame_footer_bytes"))
        frame_bytes = prod(sig_shape) * dtype.itemsize
        stride = frame_header + frame_bytes + frame_footer
        desc = f"sig_shape {sig_shape} × {dtype} = {frame_bytes} bytes"
        if stride != frame_bytes:
            desc += f" (+ {stride - frame_bytes} bytes of frame header and footer)"
        sizes = [os.path.getsize(p) for p in paths]
        counts = []
        rest = 0
        for i, (p, size_i) in enumerate(zip(paths, sizes)):
            if size_i < file_header:
                raise DataSetError(f"raw file {p!r} has {size_i} bytes, fewer than its "
                                   f"file_header_bytes={file_header}")
            n_i, rest = divmod(size_i - file_header, stride)
            if rest and len(paths) > 1 and (i < len(paths) - 1 or not self._allow_partial):
                raise DataSetError(
                    f"raw file {p!r} (file {i + 1} of {len(paths)}) has {size_i} bytes: "
                    f"{file_header} header bytes, {n_i} frames of {desc} and {rest} bytes left "
                    "over; every file of a multi-file data set must hold whole frames")
            counts.append(n_i)
        image_count = sum(counts)
        size = sum(sizes)
        need = len(paths) * file_header + prod(nav_shape) * stride
        check_some_frames(where, image_count, f"{size} bytes", desc)
        if rest and len(paths) == 1 and not self._allow_partial:
            suggested = suggest_nav_shape(nav_shape, image_count)
            hint = (f"; nav_shape={suggested} fits the whole frames" if suggested != tuple(nav_shape)
                    else "")
            raise DataSetError(
                f"{where} has {size} bytes, which is not a whole number of frames of {desc}: "
                f"{image_count} frames and {rest} bytes left over; check sig_shape and dtype "
                f"(with nav_shape {nav_shape} the file would need {need} bytes{hint})")
        nav_size = prod(nav_shape)
        if image_count < nav_size and not self._allow_partial:
            raise DataSetError(
                f"{where} {'are' if len(paths) > 1 else 'is'} too small: "
                f"{'they have' if len(paths) > 1 else 'it has'} {size} bytes, but nav_shape {nav_shape} × "
                f"{desc} needs {need} bytes; {'they hold' if len(paths) > 1 else 'it holds'} "
                f"{image_count} whole frames, "
                f"so nav_shape={suggest_nav_shape(nav_shape, image_count)} would fit (or pass "
                f"allow_partial=True for an aborted acquisition)")
        check_frame_count(where, nav_shape, image_count, self._allow_partial,
                          f"{size} bytes", desc)
        sync_offset = check_sync_offset(where, self._sync_offset_arg, nav_size, image_count)
        self._fileset = FileSet([FileLayout(p, file_header, dtype, sig_shape, n, frame_header,
                                            frame_footer) for p, n in zip(paths, counts)])
        metadata = {"path": path, "file_bytes": size, "header_bytes": file_header,
                    "io_backend": self._backend.name}
        if len(paths) > 1:
            metadata["paths"] = tuple(paths)
        if frame_header or frame_footer:
            metadata.update(frame_header_bytes=frame_header, frame_footer_bytes=frame_footer)
        return DataSetMeta(shape=Shape(nav_shape + sig_shape, sig_dims=len(sig_shape)),
                           raw_dtype=dtype, image_count=image_count, sync_offset=sync_offset,
                           metadata=metadata)


def _byte_count(value, name: str, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 0:
        raise DataSetError(f"{where}: {name}: expected a number of bytes >= 0, got {value!r}")
    return int(value)
