"""The ``npy`` format: numpy's ``.npy`` files (C order), read without loading them."""

from __future__ import annotations

import numbers
import os
import tokenize
from math import prod

import numpy as np

from ...common import Shape
from ...errors import DataSetError
from ..base import DataSetMeta
from ..file_based import FileDataSet
from ..layout import FileLayout, FileSet
from ._common import check_frame_count, check_path, check_sync_offset, parse_dims, resolve_shapes
from ._results import refuse_incomplete_results
from .base import COMMON_PARAMS, Format, Param

__all__ = ["NPYFormat", "NPYDataSet", "read_npy_header"]


class NPYFormat(Format):
    """numpy's ``.npy`` files; shape and dtype come from the header."""

    name = "npy"
    dataset = "udfkit.io.formats.npy:NPYDataSet"
    extensions = (".npy",)
    magic = (b"\x93NUMPY",)
    params = (
        Param("path", "path", None, "the .npy file"),
        COMMON_PARAMS["nav_shape"], COMMON_PARAMS["sig_shape"], COMMON_PARAMS["sig_dims"],
        COMMON_PARAMS["sync_offset"], COMMON_PARAMS["io_backend"], COMMON_PARAMS["num_partitions"],
        COMMON_PARAMS["allow_partial"],
    )


def read_npy_header(path: str):
    """Return ``(shape, fortran_order, dtype, header_bytes)`` of an ``.npy`` file.

    A header numpy cannot parse, or whose shape is not a tuple of non-negative integers, is a
    :class:`~udfkit.errors.DataSetError` naming the file.
    """
    fmt = np.lib.format
    with open(path, "rb") as f:
        try:
            version = fmt.read_magic(f)
            if version == (1, 0):
                shape, fortran, dtype = fmt.read_array_header_1_0(f)
            else:
                shape, fortran, dtype = fmt.read_array_header_2_0(f)
        except (ValueError, TypeError, SyntaxError, EOFError, UnicodeDecodeError,
                tokenize.TokenError) as e:
            # numpy parses the header dict with tokenize and ast: a damaged header surfaces
            # as any of these, none naming the file
            raise DataSetError(f"npy file {path!r} has no valid .npy header: "
                               f"{type(e).__name__}: {e}") from None
        if any(isinstance(n, bool) or not isinstance(n, numbers.Integral) or n < 0 for n in shape):
            raise DataSetError(f"npy file {path!r}: its header's shape {tuple(shape)} is invalid; "
                               "expected non-negative integers (the file is damaged)")
        return tuple(int(n) for n in shape), fortran, np.dtype(dtype), f.tell()


class NPYDataSet(FileDataSet):
    """A ``.npy`` file; shape and dtype come from its header.

    Parameters
    ----------
    path : str or os.PathLike
    nav_shape, sig_shape : tuple of int, optional
        Reinterpret the array (the element count must allow it). By default the last two
        axes are the signal (the last one for 2D arrays).
    sig_dims : int, optional
        Number of signal axes when ``sig_shape`` is not given.
    sync_offset, num_partitions, allow_partial
        As for the raw format.
    io_backend : str or IOBackend, optional
        ``"mmap"`` (default), ``"buffered"`` or ``"direct"``, or a backend instance.

    Examples
    --------
    >>> import numpy as np, tempfile, os
    >>> from udfkit import Context
    >>> path = os.path.join(tempfile.mkdtemp(), "scan.npy")
    >>> np.save(path, np.zeros((3, 5, 16, 16), dtype="float32"))
    >>> Context.make_with("inline").load("npy", path=path).shape
    Shape((3, 5, 16, 16), sig_dims=2)
    """

    format_name = "npy"

    def __init__(self, path=None, nav_shape=None, sig_shape=None, sig_dims=None, sync_offset=0,
                 io_backend=None, num_partitions=None, allow_partial=False):
        super().__init__(nav_shape=nav_shape, sig_shape=sig_shape, sync_offset=sync_offset,
                         num_partitions=num_partitions, allow_partial=allow_partial,
                         io_backend=io_backend)
        self._path_arg = path
        self._sig_dims_arg = sig_dims

    def _initialize(self) -> DataSetMeta:
        path = check_path(self._path_arg, "npy file")
        refuse_incomplete_results(path, f"npy file {path!r}")
        where = f"npy file {path!r}"
        shape, fortran, dtype, header = read_npy_header(path)
        if fortran:
            raise DataSetError(
                f"{where} is stored in Fortran order (column-major); udfkit reads C-order frames. "
                "Rewrite it with np.save(path, np.ascontiguousarray(np.load(path)))")
        if dtype.kind not in "biufc" or dtype.hasobject:
            raise DataSetError(f"{where} has dtype {dtype}; expected a numeric dtype")
        if len(shape) < 2 and self._sig_shape_arg is None:
            raise DataSetError(f"{where} has shape {shape}; expected at least 2 dimensions "
                               "(nav + sig), or pass sig_shape")
        nav_shape = parse_dims(self._nav_shape_arg, "nav_shape", where)
        sig_shape = parse_dims(self._sig_shape_arg, "sig_shape", where)
        total = prod(shape)
        nav_shape, sig_shape, header_frames = resolve_shapes(
            where, shape, self._sig_dims_arg, nav_shape, sig_shape, total, self._allow_partial)
        size = os.path.getsize(path)
        frame_bytes = prod(sig_shape) * dtype.itemsize
        image_count = min(header_frames, (size - header) // frame_bytes)
        if image_count < header_frames and not self._allow_partial:
            raise DataSetError(
                f"{where} is truncated: its header promises shape {shape} ({header + total * dtype.itemsize} "
                f"bytes with the header) but the file has {size} bytes; pass allow_partial=True to "
                "read the complete frames and report the rest as missing")
        check_frame_count(where, nav_shape, image_count, self._allow_partial,
                          f"{size} bytes", f"sig_shape {sig_shape} × {dtype} = {frame_bytes} bytes")
        sync_offset = check_sync_offset(where, self._sync_offset_arg, prod(nav_shape), image_count)
        self._fileset = FileSet([FileLayout(path, header, dtype, sig_shape, image_count)])
        return DataSetMeta(shape=Shape(nav_shape + sig_shape, sig_dims=len(sig_shape)),
                           raw_dtype=dtype, image_count=image_count, sync_offset=sync_offset,
                           metadata={"path": path, "file_bytes": size, "header_bytes": header,
                                     "npy_shape": shape, "io_backend": self._backend.name})
