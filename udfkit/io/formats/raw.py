"""The ``raw`` format: a headerless file of C-order frames."""

from __future__ import annotations

import os
from math import prod

from ...common import Shape, normalize_dtype
from ...errors import DataSetError
from ..base import DataSetMeta
from ..file_based import FileDataSet
from ..layout import FileLayout
from ._common import (
    check_frame_count,
    check_path,
    check_some_frames,
    check_sync_offset,
    parse_dims,
    suggest_nav_shape,
)

__all__ = ["RawFileDataSet"]


class RawFileDataSet(FileDataSet):
    """A headerless file of frames stored back to back in C order.

    Parameters
    ----------
    path : str or os.PathLike
    dtype : dtype
        Stored dtype, any numeric dtype numpy knows, including byte-swapped ones (``">u2"``).
    nav_shape, sig_shape : tuple of int
        1 to 3 dimensions each.
    sync_offset : int
        Positive: skip that many frames at the start of the file; negative: the first
        ``|sync_offset|`` positions have no frame.
    io_backend : str or IOBackend, optional
        ``"mmap"`` (default).
    num_partitions : int, optional
    allow_partial : bool
        Accept a file with fewer frames than ``nav_shape`` needs (an aborted acquisition); the
        positions past the end are reported invalid instead of raising an error.

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

    def __init__(self, path=None, dtype=None, nav_shape=None, sig_shape=None, sync_offset=0,
                 io_backend=None, num_partitions=None, allow_partial=False):
        super().__init__(nav_shape=nav_shape, sig_shape=sig_shape, sync_offset=sync_offset,
                         num_partitions=num_partitions, allow_partial=allow_partial,
                         io_backend=io_backend)
        self._path_arg = path
        self._dtype_arg = dtype

    def _initialize(self) -> DataSetMeta:
        missing = [n for n, v in (("path", self._path_arg), ("dtype", self._dtype_arg),
                                  ("nav_shape", self._nav_shape_arg),
                                  ("sig_shape", self._sig_shape_arg)) if v is None]
        if missing:
            what = f"raw file {os.fspath(self._path_arg)!r}" if self._path_arg is not None else "raw format"
            raise DataSetError(f"{what}: {', '.join(missing)} missing; a raw file has no header, "
                               "so ctx.load('raw', path=..., dtype=..., nav_shape=..., sig_shape=...) "
                               "needs all four")
        path = check_path(self._path_arg, "raw file")
        where = f"raw file {path!r}"
        dtype = normalize_dtype(self._dtype_arg, error=DataSetError, where=where)
        nav_shape = parse_dims(self._nav_shape_arg, "nav_shape", where, required=True)
        sig_shape = parse_dims(self._sig_shape_arg, "sig_shape", where, required=True)
        size = os.path.getsize(path)
        frame_bytes = prod(sig_shape) * dtype.itemsize
        image_count, rest = divmod(size, frame_bytes)
        desc = f"sig_shape {sig_shape} × {dtype} = {frame_bytes} bytes"
        check_some_frames(where, image_count, f"{size} bytes", desc)
        if rest and not self._allow_partial:
            suggested = suggest_nav_shape(nav_shape, image_count)
            hint = (f"; nav_shape={suggested} fits the whole frames" if suggested != tuple(nav_shape)
                    else "")
            raise DataSetError(
                f"{where} has {size} bytes, which is not a whole number of frames of {desc}: "
                f"{image_count} frames and {rest} bytes left over; check sig_shape and dtype "
                f"(with nav_shape {nav_shape} the file would need "
                f"{prod(nav_shape) * frame_bytes} bytes{hint})")
        nav_size = prod(nav_shape)
        if image_count < nav_size and not self._allow_partial:
            raise DataSetError(
                f"{where} is too small: it has {size} bytes, but nav_shape {nav_shape} × "
                f"{desc} needs {nav_size * frame_bytes} bytes; it holds {image_count} whole frames, "
                f"so nav_shape={suggest_nav_shape(nav_shape, image_count)} would fit (or pass "
                f"allow_partial=True for an aborted acquisition)")
        check_frame_count(where, nav_shape, image_count, self._allow_partial,
                          f"{size} bytes", desc)
        sync_offset = check_sync_offset(where, self._sync_offset_arg, nav_size, image_count)
        self._layout = FileLayout(path, 0, dtype, sig_shape, image_count)
        return DataSetMeta(shape=Shape(nav_shape + sig_shape, sig_dims=len(sig_shape)),
                           raw_dtype=dtype, image_count=image_count, sync_offset=sync_offset,
                           metadata={"path": path, "file_bytes": size, "header_bytes": 0,
                                     "io_backend": self._backend.name})
