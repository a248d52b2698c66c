"""File-based data sets and their partitions: a :class:`FileLayout` plus an I/O backend."""

from __future__ import annotations

from .backends import get_backend
from .base import DataSet, FrameSource, Partition

__all__ = ["FilePartition", "FileDataSet"]


class FilePartition(Partition):
    """A range of frames of a file; the worker opens the file through ``backend``.

    Parameters
    ----------
    layout : FileLayout
    backend : IOBackend
    **kwargs
        See :class:`~udfkit.io.base.Partition`.
    """

    def __init__(self, *, layout, backend, **kwargs):
        super().__init__(raw_dtype=layout.dtype, image_count=layout.image_count, **kwargs)
        self.layout = layout
        self.backend = backend

    @property
    def supports_zero_copy(self) -> bool:
        return self.backend.supports_zero_copy

    def open_source(self) -> FrameSource:
        lo, hi = self.valid_range()
        base = self.start + self.sync_offset
        return self.backend.open(self.layout, base + lo, base + hi)


class FileDataSet(DataSet):
    """Base of formats that store C-order frames in one file (raw, npy).

    Subclasses set ``self._layout`` in ``_initialize``; partitions and backend handling are
    shared.
    """

    def __init__(self, *, io_backend=None, **kwargs):
        super().__init__(**kwargs)
        self._backend = get_backend(io_backend)
        self._layout = None

    @property
    def io_backend(self):
        """The :class:`~udfkit.io.base.IOBackend` used to read the file."""
        return self._backend

    @property
    def supports_zero_copy(self) -> bool:
        return self._backend.supports_zero_copy

    def get_partitions(self):
        meta = self._require_meta()
        return [FilePartition(layout=self._layout, backend=self._backend, shape=meta.shape,
                              start=start, stop=stop, sync_offset=meta.sync_offset, index=i)
                for i, (start, stop) in enumerate(self.partition_bounds())]
