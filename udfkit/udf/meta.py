"""``self.meta``: what a UDF knows about the current run and the unit it is processing.

Two coordinate systems
----------------------
``meta.slice`` is in LiberTEM's coordinates: the navigation axes flattened *and reduced to
the processed positions* (the ROI combined with the positions that have a frame). Its nav
origin counts the processed frames before the current frame / tile / partition, so it
indexes everything that has one row per processed frame: ``nav`` buffers as a whole
(``results.<name>.raw_data``), aux data reduced to the ROI, or a user array of
``count_nonzero(roi)`` rows. Without a ROI and with every frame present this is the plain
flattened nav index.

``meta.frame_index`` (udfkit's own) and ``meta.coordinates`` (LiberTEM's) give the position of
every frame of the unit in the *full* navigation space: the flat index, and the index per nav
axis. Use them to index arrays of the data set's nav shape.

Halo
----
A UDF with a halo (``get_halo``) receives more frames than it owns: its own positions plus
the neighbourhood, as a flattened block of nav shape ``meta.halo_block_shape``. Then
``coordinates`` and ``frame_index`` describe *every frame received* (positions beyond the
grid's edges have coordinates outside the grid and ``frame_index`` -1), while ``slice`` stays
the unit's own processed frames, so ``self.results`` views are its own positions;
``meta.own_frames`` gives the own frames' index among the frames received.
"""

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
        Bool array of the data set's nav shape: the positions processed in this run (the
        user's ROI combined with the positions that have a frame), or None when every
        position is processed.
    tiling_scheme : TilingScheme or None
        The scheme of the run (None before the run is planned).
    tiling_scheme_idx : int
        Index of the current tile's signal slice in ``tiling_scheme``.
    partition_shape : Shape or None
        ``(processed frames in this partition, *sig)`` on a worker; None on the main process.
    slice : Slice or None
        The current frame / tile / partition in ROI-reduced flattened-nav coordinates (see the
        module docstring); in ``get_task_data``, ``preprocess`` and ``postprocess`` on a worker
        the whole partition. None on the main process.
    sig_slice : Slice or None
        The signal part of ``slice`` (the current entry of the tiling scheme).
    coordinates : numpy.ndarray or None
        Shape ``(frames, nav_dims)``: position of every frame of the current unit in the full
        nav space.
    frame_index : numpy.ndarray or None
        Flat index in the full nav space of every frame of the current unit (with a halo:
        of every frame received, -1 beyond the grid's edges).
    own_frames : numpy.ndarray or None
        With a halo: index (int array) of the unit's own processed frames among the frames
        received, in the order of the rows of ``self.results``' nav views, so that
        ``stack[self.meta.own_frames]`` are the own frames. None without a halo.
    halo_block_shape : tuple of int or None
        With a halo: the nav shape of the block received (own rows and the halo, e.g.
        ``(rows + 2 * ry, cols + 2 * rx)``): ``stack.reshape(halo_block_shape + sig)`` is the
        block as a grid. None without a halo.
    array_backend : str
        The array backend of the data the UDF receives: ``UDF.BACKEND_NUMPY``, or a sparse
        format (``raw_csr``'s CSR rows, or tiles converted to a format the UDF lists; see
        :meth:`UDF.get_backends`).
    device_class : str
        ``"cpu"``: udfkit computes on the CPU.
    threads_per_worker : int or None
        Threads a UDF may use inside its process methods (None: no limit set).
    corrections : CorrectionSet
        The corrections applied to the data before the UDF sees them (an empty
        :class:`~udfkit.io.corrections.CorrectionSet` without).
    dataset_paths : tuple of str
        The files the data set reads (empty for data in memory); set on the main process,
        for UDFs that write files and must not overwrite their own input.
    series_length : int or None
        In series mode (:mod:`udfkit.udf.series`): the frames in every pixel's series (the
        processed positions), already in ``get_result_buffers``; None in a frame-wise run.
    """

    def __init__(self, *, dataset_shape: Shape, dataset_dtype, input_dtype, roi=None,
                 tiling_scheme=None, partition_shape=None, array_backend="numpy",
                 threads_per_worker=None, corrections=None):
        self.dataset_shape = dataset_shape
        self.dataset_dtype = np.dtype(dataset_dtype)
        self.input_dtype = np.dtype(input_dtype)
        self._roi = None
        self.roi = roi
        self.tiling_scheme = tiling_scheme
        self.tiling_scheme_idx = 0
        self.partition_shape = partition_shape
        self.dataset_paths = ()
        self.array_backend = array_backend
        self.device_class = "cpu"
        self.threads_per_worker = threads_per_worker
        self._corrections = corrections  # a CorrectionSet, or a worker's CorrectionPlan
        self.sig_slice: Slice | None = None
        self._frame_index = None
        self._slice: Slice | None = None
        self._nav_origin: int | None = None
        self._depth = 0
        self._valid_nav_mask = None
        self.series_length: int | None = None
        self.own_frames: np.ndarray | None = None
        self.halo_block_shape: tuple | None = None
        self._halo_origin: tuple | None = None

    @property
    def corrections(self):
        from ..io.corrections import CorrectionPlan, CorrectionSet

        c = self._corrections
        if c is None:
            return CorrectionSet()
        if isinstance(c, CorrectionPlan):
            # workers get the plan (flat arrays); the set is rebuilt only when asked for
            sig = c.sig_shape
            mask = np.zeros(int(np.prod(sig)), dtype=bool)
            mask[c.excluded] = True
            c = CorrectionSet(dark=None if c.dark is None else c.dark.reshape(sig),
                              gain=None if c.gain is None else c.gain.reshape(sig),
                              excluded_pixels=mask.reshape(sig) if mask.any() else None)
            self._corrections = c
        return c

    @property
    def roi(self):
        return self._roi

    @roi.setter
    def roi(self, value):
        # stored as given (flat or nav-shaped), shown in the nav shape as LiberTEM does
        self._roi = None if value is None else np.asarray(value).reshape(
            self.dataset_shape.nav.to_tuple())

    def _set_unit(self, frame_index, sig_slice: Slice | None, nav_origin: int | None = None,
                  depth: int = 0, scheme_idx: int = 0):
        # cheap per tile/frame: slice and coordinates are built only when asked for;
        # nav_origin is the unit's first row among the run's processed frames
        self._frame_index = frame_index
        self.sig_slice = sig_slice
        self._nav_origin = nav_origin
        self._depth = depth
        self._slice = None
        self.tiling_scheme_idx = scheme_idx
        self.own_frames = self.halo_block_shape = self._halo_origin = None

    def _set_halo(self, origin: tuple, block_shape: tuple, own_frames) -> None:
        # after _set_unit (which describes the own frames): the frames received are the
        # block of nav shape block_shape whose first position is at origin (may be negative)
        self._halo_origin = tuple(int(o) for o in origin)
        self.halo_block_shape = tuple(int(n) for n in block_shape)
        self.own_frames = own_frames
        self._frame_index = None

    def _halo_coordinates(self):
        grid = np.indices(self.halo_block_shape).reshape(len(self.halo_block_shape), -1).T
        return grid + np.asarray(self._halo_origin)

    @property
    def frame_index(self):
        """Flat index in the full nav space of every frame of the current unit (int array)."""
        if self._frame_index is None and self.halo_block_shape is not None:
            coords = self._halo_coordinates()
            nav = np.asarray(self.dataset_shape.nav.to_tuple())
            inside = ((coords >= 0) & (coords < nav)).all(axis=1)
            flat = np.full(coords.shape[0], -1, dtype=np.int64)
            flat[inside] = np.ravel_multi_index(tuple(coords[inside].T), tuple(nav))
            self._frame_index = flat
        return self._frame_index

    @property
    def slice(self) -> Slice | None:
        if self._slice is None and self._nav_origin is not None:
            sig = self.sig_slice
            assert sig is not None  # set with the nav origin, by _set_unit
            self._slice = Slice((self._nav_origin,) + sig.origin,
                                Shape((self._depth,) + sig.shape.to_tuple(), sig_dims=sig.shape.dims))
        return self._slice

    @slice.setter
    def slice(self, value: Slice | None):
        self._slice = value

    @property
    def coordinates(self):
        if self.halo_block_shape is not None:
            return self._halo_coordinates()
        if self._frame_index is None:
            return None
        nav = self.dataset_shape.nav.to_tuple()
        return np.stack(np.unravel_index(np.asarray(self._frame_index), nav), axis=-1)

    def get_valid_nav_mask(self, full_nav: bool = False):
        """Flat bool mask of the positions merged so far (in ``merge`` and ``get_results``).

        In ``merge`` it does not yet include the partition being merged. Without
        ``full_nav`` it has one entry per processed position (like the rows of a nav buffer);
        with ``full_nav``, one per position of the flattened nav space, False outside the
        ROI. None outside ``merge`` and ``get_results``.
        """
        mask = self._valid_nav_mask
        if mask is None or not full_nav or self._roi is None:
            return mask
        full = np.zeros(self._roi.size, dtype=bool)
        full[self._roi.reshape(-1)] = mask
        return full

    def set_valid_nav_mask(self, mask) -> None:
        """Set by the run on the main process (LiberTEM's name)."""
        self._valid_nav_mask = mask

    def __repr__(self):
        return (f"UDFMeta(dataset_shape={self.dataset_shape!r}, input_dtype={self.input_dtype}, "
                f"slice={self.slice!r})")
