"""Contracts of the I/O layer: data sets, partitions, tiles, I/O backends.

This module holds the abstract classes only; concrete formats live in
:mod:`udfkit.io.formats`, concrete backends in :mod:`udfkit.io.backends`.

Missing frames
--------------
A navigation position *has data* when the file holds the frame that belongs to it. With a
``sync_offset`` of ``s``, position ``i`` (flattened nav index) reads file frame ``i + s``:

* ``s > 0`` skips the first ``s`` frames of the file; the last ``s`` positions have no frame
  when the file holds exactly ``nav_size`` frames;
* ``s < 0`` means the first ``|s|`` positions have no frame;
* a file that holds fewer frames than ``nav_shape`` needs is an error, unless the user passes
  ``allow_partial=True`` (an aborted acquisition): then the positions past the end have
  no frame.

Positions without a frame are never invented: they are excluded from processing exactly
like positions outside a region of interest. They are reported as ``False`` in
``valid_mask`` of every nav-shaped result, and their entries in ``.data`` are filled with
NaN (floats), 0 (integers) or False (bools).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import DTypeLike

from ..common import Shape, Slice
from ..common.parse import check_dtype_supported
from ..errors import DataSetError
from .partitioning import check_num_partitions
from .tiling import TilingConstraints, TilingScheme

if TYPE_CHECKING:
    from .layout import FileSet

__all__ = ["DataSetMeta", "DataSet", "Partition", "IOBackend", "FrameSource"]


@dataclass(frozen=True)
class DataSetMeta:
    """What a data set knows about itself after ``initialize``.

    Attributes
    ----------
    shape : Shape
        Logical shape (nav + sig) after ``nav_shape`` / ``sig_shape`` overrides.
    raw_dtype : numpy.dtype
        The dtype of the bytes as stored (may be non-native byte order).
    image_count : int
        Whole frames the file (or array) holds.
    sync_offset : int
        See the module docstring.
    metadata : dict
        Format-specific extras (path, header size, ...).
    """

    shape: Shape
    raw_dtype: np.dtype
    image_count: int
    sync_offset: int = 0
    metadata: dict = field(default_factory=dict)


class FrameSource(ABC):
    """An open handle on the frames one partition will read, created on the worker.

    It is opened with the sorted list of file frame numbers to read and the tile depth;
    ``read(i0, i1)`` returns the frames ``frames[i0:i1]`` (one tile's worth, ``i0`` a
    multiple of the depth) as ``(flat, offsets)``: a flat (1D) array in the stored dtype and
    the element offset of each frame's first element in it. The arrays stay valid until the
    next call to ``read`` or ``close``.
    """

    @abstractmethod
    def read(self, i0: int, i1: int) -> tuple[np.ndarray, np.ndarray]:
        """``(flat, offsets)`` of the frames ``frames[i0:i1]`` given at open."""

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release the file handles, mappings and buffers."""

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class IOBackend(ABC):
    """How bytes leave a file. Instances are small and picklable; they travel with partitions."""

    #: registry name, e.g. ``"mmap"``
    name: str = "?"

    @property
    @abstractmethod
    def supports_zero_copy(self) -> bool:
        """True when tiles can be views of what the backend holds (no decode pass)."""

    @property
    def block_bytes(self) -> int | None:
        """Bytes read into a buffer at a time; tiles must fit (``None``: no limit)."""
        return None

    @abstractmethod
    def open(self, fileset: FileSet, frames: np.ndarray, depth: int) -> FrameSource:
        """Open the frames ``frames`` (sorted global frame numbers) of a
        :class:`~udfkit.io.layout.FileSet`, to be read ``depth`` frames at a time."""

    def __repr__(self):
        return f"{type(self).__name__}()"


class Partition(ABC):
    """A contiguous range ``[start, stop)`` of the flattened navigation axis.

    Partitions are small picklable descriptions; the worker that runs one opens the file
    itself and iterates :meth:`get_tiles`. Formats whose frames a
    :class:`FrameSource` reads subclass :class:`~udfkit.io.tiles.SourcePartition`, which
    shares tiling, ROI handling, zero-copy views and decoding.
    """

    def __init__(self, *, shape: Shape, start: int, stop: int, raw_dtype: DTypeLike,
                 image_count: int, sync_offset: int, index: int):
        self.shape = shape  # full data set shape (nav may be nD)
        self.start = int(start)
        self.stop = int(stop)
        self.raw_dtype = np.dtype(raw_dtype)
        self.image_count = int(image_count)
        self.sync_offset = int(sync_offset)
        self.index = int(index)

    @property
    def slice(self) -> Slice:
        """The partition as a Slice in flattened-nav coordinates."""
        sig = self.shape.sig.to_tuple()
        return Slice((self.start,) + (0,) * len(sig),
                     Shape((self.stop - self.start,) + sig, sig_dims=len(sig)))

    @property
    def num_frames(self) -> int:
        """Number of navigation positions in the partition (with or without data)."""
        return self.stop - self.start

    def valid_range(self) -> tuple[int, int]:
        """Partition-local ``[lo, hi)`` of the positions that have a frame."""
        lo = max(0, -self.sync_offset - self.start)
        hi = min(self.num_frames, self.image_count - self.sync_offset - self.start)
        lo = min(lo, self.num_frames)
        return lo, max(lo, hi)

    def selected_positions(self, roi: np.ndarray | None = None) -> np.ndarray:
        """Partition-local indices of the positions that will be processed.

        Parameters
        ----------
        roi : numpy.ndarray of bool, optional
            Partition-local region of interest (``num_frames`` entries).
        """
        lo, hi = self.valid_range()
        if roi is None:
            return np.arange(lo, hi, dtype=np.int64)
        roi = np.asarray(roi, dtype=bool)
        if roi.shape != (self.num_frames,):
            raise ValueError(f"partition ROI must have {self.num_frames} entries, got {roi.shape}")
        idx = np.flatnonzero(roi[lo:hi]).astype(np.int64)
        idx += lo
        return idx

    @property
    @abstractmethod
    def supports_zero_copy(self) -> bool:
        """True when tiles of the stored dtype can be views (no copy)."""

    @abstractmethod
    def get_tiles(self, tiling_scheme: TilingScheme, dest_dtype: DTypeLike = "float32",
                  roi: np.ndarray | None = None) -> Iterator:
        """Yield :class:`~udfkit.io.tiles.DataTile` objects covering the processed frames.

        The tiles come in processing order: for each block of ``tiling_scheme.depth``
        processed frames, one tile per signal slice of the scheme. Their data are read-only
        and valid until the next tile is requested.

        Parameters
        ----------
        tiling_scheme : TilingScheme
            Signal slices and depth.
        dest_dtype : dtype
            The dtype the UDF wants; stored data are converted (and byte-swapped) into it.
        roi : numpy.ndarray of bool, optional
            Partition-local region of interest; positions without a frame are skipped anyway.
        """

    def __repr__(self):
        return f"<{type(self).__name__} {self.index}: [{self.start}, {self.stop})>"


class _RoiHelper:
    """``ds.roi[index]``: a nav-shaped bool array, True where ``index`` selects."""

    def __init__(self, nav_shape):
        self._nav_shape = tuple(nav_shape)

    def __getitem__(self, index) -> np.ndarray:
        roi = np.zeros(self._nav_shape, dtype=bool)
        roi[index] = True
        return roi


class DataSet(ABC):
    """A data set of shape ``nav + sig``, cut into partitions along the flattened nav axis.

    Life cycle: construct with the load parameters (cheap, no I/O), then
    :meth:`initialize` reads headers and checks the parameters against the file; then
    :meth:`get_partitions` describes the work.
    """

    #: the name of its format (``ctx.load(format_name, ...)``)
    format_name: str = "?"

    def __init__(self, *, nav_shape: Any = None, sig_shape: Any = None, sync_offset: int = 0,
                 num_partitions: int | None = None, allow_partial: bool = False):
        self._nav_shape_arg = nav_shape
        self._sig_shape_arg = sig_shape
        self._sync_offset_arg = sync_offset
        self._num_partitions_arg = num_partitions
        self._allow_partial = bool(allow_partial)
        self._meta: DataSetMeta | None = None
        self._num_workers = 1

    # -- life cycle -----------------------------------------------------------------------
    @abstractmethod
    def _initialize(self) -> DataSetMeta:
        """Read headers, check parameters, return the metadata."""

    def initialize(self, executor: Any = None) -> DataSet:
        """Read headers and check the load parameters; returns ``self``.

        Parameters
        ----------
        executor : Executor, optional
            Used to learn the number of workers (for the default partition count).
        """
        if executor is not None:
            self._num_workers = max(1, int(getattr(executor, "num_workers", 1)))
        self._meta = self._initialize()
        try:
            # every format's dtype: extended-precision floats would load and fail in every run
            check_dtype_supported(self._meta.raw_dtype, error=DataSetError, where=self.description)
        except DataSetError:
            self._meta = None
            raise
        self._num_partitions_arg = check_num_partitions(self.description, self._num_partitions_arg,
                                                        error=DataSetError)
        return self

    def check_valid(self) -> bool:
        """Re-check that the underlying file still matches; raise ``DataSetError`` if not."""
        self._initialize()
        return True

    def _require_meta(self) -> DataSetMeta:
        if self._meta is None:
            raise RuntimeError(f"{type(self).__name__} is not initialized; use Context.load()")
        return self._meta

    # -- description ----------------------------------------------------------------------
    @property
    def meta(self) -> DataSetMeta:
        """The :class:`DataSetMeta` (after ``initialize``)."""
        return self._require_meta()

    @property
    def shape(self) -> Shape:
        """Logical shape, nav + sig."""
        return self._require_meta().shape

    @property
    def dtype(self) -> np.dtype:
        """The stored dtype (including its byte order)."""
        return self._require_meta().raw_dtype

    @property
    def native_dtype(self) -> np.dtype:
        """The stored dtype in native byte order: what a UDF gets when it asks for native data."""
        return self._require_meta().raw_dtype.newbyteorder("=")

    @property
    def sync_offset(self) -> int:
        return self._require_meta().sync_offset

    @property
    def image_count(self) -> int:
        return self._require_meta().image_count

    @property
    def description(self) -> str:
        """How error messages name this data set: the format and the file, if any."""
        meta = self._require_meta()
        path = meta.metadata.get("path")
        name = type(self).__name__
        return f"{name} {path!r}" if path else name

    def get_valid_mask(self) -> np.ndarray | None:
        """Flat bool array: which nav positions have a frame; ``None`` when all do."""
        meta = self._require_meta()
        n = meta.shape.nav.size
        lo = max(0, -meta.sync_offset)
        hi = min(n, meta.image_count - meta.sync_offset)
        if lo == 0 and hi >= n:
            return None
        mask = np.zeros(n, dtype=bool)
        if hi > lo:
            mask[lo:hi] = True
        return mask

    # -- LiberTEM's descriptive helpers -----------------------------------------------------
    def get_diagnostics(self) -> list[dict]:
        """Format-specific diagnostics as LiberTEM lists them: ``[{"name": ..., "value": ...}]``.

        The default lists the stored dtype and the entries of :meth:`layout_info`.
        """
        items: list[dict] = [{"name": "dtype", "value": str(self.dtype)}]
        items += [{"name": str(k), "value": v if isinstance(v, (str, int, float)) else str(v)}
                  for k, v in self.layout_info().items()]
        return items

    @property
    def diagnostics(self) -> list[dict]:
        """What LiberTEM's ``ds.diagnostics`` lists: the format's :meth:`get_diagnostics`, the
        partitioning, and the frames ``sync_offset`` skips or inserts at either end.

        Examples
        --------
        >>> import numpy as np
        >>> from udfkit.io.formats.memory import MemoryDataSet
        >>> ds = MemoryDataSet(data=np.zeros((2, 3, 4, 4), "uint8"), sync_offset=2).initialize()
        >>> {d["name"]: d["value"] for d in ds.diagnostics}["Number of frames skipped at the beginning"]
        2
        """
        meta = self._require_meta()
        n = meta.shape.nav.size
        s, count = meta.sync_offset, meta.image_count
        bounds = self.partition_bounds()
        start, stop = bounds[0]
        partition_shape = (stop - start,) + meta.shape.sig.to_tuple()
        return self.get_diagnostics() + [
            {"name": "Partition shape", "value": str(partition_shape)},
            {"name": "Number of partitions", "value": str(len(bounds))},
            {"name": "Number of frames skipped at the beginning", "value": max(0, s)},
            {"name": "Number of frames ignored at the end", "value": max(0, count - n - s)},
            {"name": "Number of blank frames inserted at the beginning", "value": abs(min(0, s))},
            {"name": "Number of blank frames inserted at the end", "value": max(0, n - count + s)},
        ]

    @property
    def roi(self) -> _RoiHelper:
        """LiberTEM's ROI shortcut: ``ds.roi[3:7, 9:12]`` is a bool array of the nav shape,
        True where the index selects.

        Examples
        --------
        >>> import numpy as np
        >>> from udfkit.io.formats.memory import MemoryDataSet
        >>> ds = MemoryDataSet(data=np.zeros((2, 3, 4, 4), "uint8")).initialize()
        >>> ds.roi[1, 1:].astype(int)
        array([[0, 0, 0],
               [0, 1, 1]])
        """
        return _RoiHelper(self._require_meta().shape.nav.to_tuple())

    def get_tiling_constraints(self) -> TilingConstraints:
        """What the data set imposes on tiles (see :class:`~udfkit.io.tiling.TilingConstraints`)."""
        sig = self.shape.sig.to_tuple()
        return TilingConstraints(base_shape=(1,) * (len(sig) - 1) + (sig[-1],) if len(sig) > 1 else (1,))

    @property
    def supports_zero_copy(self) -> bool:
        """True when tiles in the stored dtype can be views of the stored bytes."""
        return True

    def layout_info(self) -> dict:
        """Format-specific facts for ``udfkit info``: chunks, compression, files (``{}``: none)."""
        return {}

    # -- partitions -----------------------------------------------------------------------
    @property
    def frame_alignment(self) -> int:
        """Partitions start on file frames that are multiples of this (a chunk's frames).

        Chunked containers decode whole chunks; aligning partitions to them means no chunk
        is decoded by two partitions.
        """
        return 1

    def partition_bounds(self) -> list[tuple[int, int]]:
        """``(start, stop)`` of every partition along the flattened nav axis."""
        from .partitioning import partition_bounds

        meta = self._require_meta()
        return partition_bounds(
            nav_size=meta.shape.nav.size,
            frame_bytes=meta.shape.sig.size * meta.raw_dtype.itemsize,
            num_partitions=self._num_partitions_arg,
            num_workers=self._num_workers,
            align=self.frame_alignment,
            align_offset=meta.sync_offset,
        )

    def get_num_partitions(self) -> int:
        """How many partitions :meth:`get_partitions` returns."""
        return len(self.partition_bounds())

    @abstractmethod
    def get_partitions(self) -> list[Partition]:
        """Describe the work: one picklable :class:`Partition` per range of frames."""

    def __repr__(self):
        if self._meta is None:
            return f"<{type(self).__name__} (not initialized)>"
        return f"<{type(self).__name__} shape={tuple(self.shape)} dtype={self.dtype}>"
