"""``self.meta``: what a UDF knows about the current run and the unit it is processing."""

from __future__ import annotations

import numpy as np

from ..common import Shape, Slice

__all__ = ["UDFMeta"]


class UDFMeta:
    """Information about the run, available as ``self.meta`` inside a UDF.

    Attributes
    ----------
    dataset_shape : Shape
        Shape of the data set (nav + sig).
    dataset_dtype : numpy.dtype
        Stored dtype of the data set.
    input_dtype : numpy.dtype
        Dtype of the frames/tiles the UDF receives.
    roi : numpy.ndarray or None
        Flat bool array of the positions processed in this run (the user's ROI combined
        with the positions that have a frame), or None when every position is processed.
    tiling_scheme : TilingScheme or None
        The scheme of the run (None before the run is planned).
    partition_shape : Shape or None
        ``(processed frames in this partition, *sig)`` on a worker; None on the main process.
    slice : Slice or None
        The current frame / tile / partition in flattened-nav coordinates: origin is the
        flattened nav index of its first frame, the first extent its number of frames
        (with a ROI gap inside a tile, use ``coordinates`` for the exact positions).
    sig_slice : Slice or None
        The signal part of ``slice``.
    coordinates : numpy.ndarray or None
        Shape ``(frames, nav_dims)``: nav coordinates of every frame of the current unit.
    dataset_paths : tuple of str
        The files the data set reads (empty for data in memory); set on the main process,
        for UDFs that write files and must not overwrite their own input.
    """

    def __init__(self, *, dataset_shape: Shape, dataset_dtype, input_dtype, roi=None,
                 tiling_scheme=None, partition_shape=None):
        self.dataset_shape = dataset_shape
        self.dataset_dtype = np.dtype(dataset_dtype)
        self.input_dtype = np.dtype(input_dtype)
        self.roi = roi
        self.tiling_scheme = tiling_scheme
        self.partition_shape = partition_shape
        self.dataset_paths = ()
        self.sig_slice: Slice | None = None
        self._frame_index = None
        self._slice = None

    def _set_unit(self, frame_index, sig_slice: Slice, unit_slice: Slice | None = None):
        # cheap per tile/frame: slice and coordinates are built only when asked for
        self._frame_index = frame_index
        self.sig_slice = sig_slice
        self._slice = unit_slice

    @property
    def frame_index(self):
        """Flattened nav index of every frame of the current unit (an int array)."""
        return self._frame_index

    @property
    def slice(self) -> Slice | None:
        if self._slice is None and self._frame_index is not None:
            idx = self._frame_index
            first = int(idx[0]) if len(idx) else 0
            sig = self.sig_slice
            self._slice = Slice((first,) + sig.origin,
                                Shape((len(idx),) + sig.shape.to_tuple(), sig_dims=sig.shape.dims))
        return self._slice

    @property
    def coordinates(self):
        if self._frame_index is None:
            return None
        nav = self.dataset_shape.nav.to_tuple()
        return np.stack(np.unravel_index(np.asarray(self._frame_index), nav), axis=-1)

    def __repr__(self):
        return (f"UDFMeta(dataset_shape={self.dataset_shape!r}, input_dtype={self.input_dtype}, "
                f"slice={self.slice!r})")
