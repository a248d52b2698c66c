"""File-based data sets and their partitions: a :class:`FileSet` plus an I/O backend."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import numpy as np

from .backends import get_backend
from .base import DataSet, FrameSource, IOBackend, Partition
from .decoders import FrameDecoder
from .layout import FileSet
from .tiles import SourcePartition
from .tiling import TilingConstraints

__all__ = ["FilePartition", "FileDataSet"]


class FilePartition(SourcePartition):
    """A range of frames of a file set; the worker opens the files through ``backend``.

    Parameters
    ----------
    fileset : FileSet
    backend : IOBackend
    decoder : FrameDecoder, optional
        Decodes the stored records into frames (bit-packed layouts); the partition's dtype
        is then the decoder's.
    **kwargs
        See :class:`~udfkit.io.base.Partition`.
    """

    def __init__(self, *, fileset: FileSet, backend: IOBackend, decoder: FrameDecoder | None = None,
                 **kwargs: Any):
        raw_dtype = fileset.dtype if decoder is None else decoder.dtype
        super().__init__(raw_dtype=raw_dtype, image_count=fileset.image_count, **kwargs)
        self.fileset = fileset
        self.backend = backend
        self.decoder = decoder

    @property
    def supports_zero_copy(self) -> bool:
        return self.backend.supports_zero_copy and self.decoder is None

    def open_source(self, frames: np.ndarray, depth: int) -> FrameSource:
        return self.backend.open(self.fileset, frames, depth)


class FileDataSet(DataSet):
    """Base of formats whose frames are stored in C order in files (raw, npy).

    Subclasses set ``self._fileset`` (a :class:`~udfkit.io.layout.FileSet`) in
    ``_initialize``; partitions, tiling limits and backend handling are shared. A format
    whose records must be decoded (bit-packed layouts) also sets ``self._decoder`` (a
    :class:`~udfkit.io.decoders.FrameDecoder`); its file set then describes the records.
    """

    def __init__(self, *, io_backend: str | IOBackend | None = None, **kwargs: Any):
        super().__init__(**kwargs)
        self._backend = get_backend(io_backend)
        self._fileset: FileSet | None = None
        self._decoder: FrameDecoder | None = None

    @property
    def io_backend(self) -> IOBackend:
        """The :class:`~udfkit.io.base.IOBackend` used to read the files."""
        return self._backend

    @property
    def fileset(self) -> FileSet:
        """The :class:`~udfkit.io.layout.FileSet` of the data set (after ``initialize``)."""
        self._require_meta()
        if self._fileset is None:  # a format's bug, not the user's
            raise RuntimeError(f"{type(self).__name__}._initialize did not set the file set")
        return self._fileset

    @property
    def supports_zero_copy(self) -> bool:
        # decoded frames are written into a buffer: tiles are sized for the cache
        return self._backend.supports_zero_copy and self._decoder is None

    def get_tiling_constraints(self) -> TilingConstraints:
        constraints = super().get_tiling_constraints()
        block = self._backend.block_bytes
        if block is None:
            return constraints
        frame_bytes = self._require_meta().shape.sig.size * self.dtype.itemsize
        return replace(constraints, max_depth=max(1, block // frame_bytes))

    def get_partitions(self) -> list[Partition]:
        meta = self._require_meta()
        return [FilePartition(fileset=self.fileset, backend=self._backend, decoder=self._decoder,
                              shape=meta.shape,
                              start=start, stop=stop, sync_offset=meta.sync_offset, index=i)
                for i, (start, stop) in enumerate(self.partition_bounds())]
