"""The ``memory`` format: a numpy array already in memory (tests, small data, simulations)."""

from __future__ import annotations

from math import prod
from typing import Any

import numpy as np

from ...common import Shape, normalize_shape
from ...common.parse import ShapeLike
from ...errors import DataSetError
from ..base import DataSet, DataSetMeta, FrameSource, Partition
from ..tiles import SourcePartition
from ..tiling import TilingConstraints
from ._common import check_frame_count, check_sync_offset, parse_dims, resolve_shapes
from .base import COMMON_PARAMS, Format, Param

__all__ = ["MemoryFormat", "MemoryDataSet"]


class MemoryFormat(Format):
    """A numpy array already in memory."""

    name = "memory"
    dataset = "udfkit.io.formats.memory:MemoryDataSet"
    array_param = "data"
    params = (
        Param("data", "object", None, "the array, navigation axes first"),
        COMMON_PARAMS["sig_dims"], COMMON_PARAMS["num_partitions"],
        Param("tileshape", "shape", None, "force the tile shape (depth, *sig_part)"),
        COMMON_PARAMS["sync_offset"], COMMON_PARAMS["nav_shape"], COMMON_PARAMS["sig_shape"],
        COMMON_PARAMS["allow_partial"],
    )


class MemoryDataSet(DataSet):
    """A data set backed by a numpy array.

    Parameters
    ----------
    data : numpy.ndarray
        Frames in C order, navigation axes first. A non-contiguous array is copied once.
    sig_dims : int
        Number of trailing signal axes (default 2), unless ``sig_shape`` is given.
    num_partitions : int, optional
        Force the number of partitions (tests use this to exercise merging).
    tileshape : tuple of int, optional
        Force the tile shape ``(depth, *sig_part)`` for tile-based UDFs (tests).
    sync_offset, nav_shape, sig_shape, allow_partial
        As for file formats.

    Examples
    --------
    >>> import numpy as np
    >>> from udfkit import Context
    >>> ctx = Context.make_with("inline")
    >>> ds = ctx.load("memory", data=np.zeros((4, 6, 8, 8)), num_partitions=2)
    >>> ds.shape, ds.get_num_partitions()
    (Shape((4, 6, 8, 8), sig_dims=2), 2)
    """

    format_name = "memory"

    def __init__(self, data: np.ndarray | None = None, sig_dims: int | None = None,
                 num_partitions: int | None = None, tileshape: ShapeLike | None = None, sync_offset: int = 0,
                 nav_shape: ShapeLike | None = None, sig_shape: ShapeLike | None = None,
                 allow_partial: bool = False):
        super().__init__(nav_shape=nav_shape, sig_shape=sig_shape, sync_offset=sync_offset,
                         num_partitions=num_partitions, allow_partial=allow_partial)
        self._data_arg = data
        self._sig_dims_arg = sig_dims
        self._tileshape_arg = tileshape
        self._frames: np.ndarray | None = None

    def _initialize(self) -> DataSetMeta:
        where = "memory data set"
        data = self._data_arg
        if not isinstance(data, np.ndarray):
            raise DataSetError(f"{where}: data: expected a numpy array, got {type(data).__name__}")
        if data.dtype.kind not in "biufc":
            raise DataSetError(f"{where}: data: expected a numeric dtype, got {data.dtype}")
        sig_dims = self._sig_dims_arg
        if sig_dims is None and self._sig_shape_arg is None:
            sig_dims = 2
        nav_shape = parse_dims(self._nav_shape_arg, "nav_shape", where)
        sig_shape = parse_dims(self._sig_shape_arg, "sig_shape", where)
        nav_shape, sig_shape, image_count = resolve_shapes(
            where, data.shape, sig_dims, nav_shape, sig_shape, data.size, self._allow_partial)
        check_frame_count(where, nav_shape, image_count, self._allow_partial,
                          f"{data.size} elements", f"sig_shape {sig_shape}")
        sync_offset = check_sync_offset(where, self._sync_offset_arg, prod(nav_shape), image_count)
        if self._tileshape_arg is not None:
            ts = normalize_shape(self._tileshape_arg, "tileshape", error=DataSetError, where=where)
            if len(ts) != len(sig_shape) + 1:
                raise DataSetError(f"{where}: tileshape {ts} must be (depth, *sig_part) with "
                                   f"{len(sig_shape)} signal dimensions for sig_shape {sig_shape}")
        frames = np.ascontiguousarray(data).reshape((image_count,) + sig_shape)
        frames = frames.view()
        frames.flags.writeable = False  # tiles are views; never let a UDF write into user data
        self._frames = frames
        return DataSetMeta(shape=Shape(nav_shape + sig_shape, sig_dims=len(sig_shape)),
                           raw_dtype=data.dtype, image_count=image_count, sync_offset=sync_offset,
                           metadata={"array_shape": data.shape})

    def get_tiling_constraints(self) -> TilingConstraints:
        base = super().get_tiling_constraints()
        if self._tileshape_arg is None:
            return base
        tileshape = normalize_shape(self._tileshape_arg, "tileshape")
        return TilingConstraints(base_shape=base.base_shape, tileshape=tileshape)

    def get_partitions(self) -> list[Partition]:
        meta = self._require_meta()
        frames = self._frames
        assert frames is not None  # set by _initialize, which _require_meta implies
        parts: list[Partition] = []
        for i, (start, stop) in enumerate(self.partition_bounds()):
            # each partition carries only its own frames, so pickling it ships just those
            lo = min(max(start + meta.sync_offset, 0), meta.image_count)
            hi = min(max(stop + meta.sync_offset, 0), meta.image_count)
            parts.append(MemoryPartition(frames=frames[lo:hi], first_frame=lo, shape=meta.shape,
                                         start=start, stop=stop, raw_dtype=meta.raw_dtype,
                                         image_count=meta.image_count,
                                         sync_offset=meta.sync_offset, index=i))
        return parts


class MemoryPartition(SourcePartition):
    """A partition of a :class:`MemoryDataSet` holding its own frames."""

    def __init__(self, *, frames, first_frame: int, **kwargs: Any):
        super().__init__(**kwargs)
        self.frames = frames
        self.first_frame = int(first_frame)

    @property
    def supports_zero_copy(self) -> bool:
        return True

    def open_source(self, frames: np.ndarray, depth: int) -> FrameSource:
        # pickle protocols < 5 turn byte-swapped arrays into native ones: restore the
        # stored byte order that raw_dtype promises (a no-op when it is unchanged)
        return _ArraySource(self.frames.astype(self.raw_dtype, copy=False), self.first_frame, frames)


class _ArraySource(FrameSource):
    """Views of the array: the span from the first to the last wanted frame."""

    def __init__(self, frames, first_frame, wanted):
        flat = np.ascontiguousarray(frames).reshape(-1)
        if flat.flags.writeable:
            flat = flat.view()
            flat.flags.writeable = False
        self._flat = flat
        self._first = first_frame
        self._items = prod(frames.shape[1:])
        self._wanted = np.asarray(wanted, dtype=np.int64)

    def read(self, i0, i1):
        local = self._wanted[i0:i1] - self._first
        lo = int(local[0])
        flat = self._flat[lo * self._items:(int(local[-1]) + 1) * self._items]
        return flat, (local - lo) * self._items
