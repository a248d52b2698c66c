"""The ``hdf5`` format: a dataset of an HDF5 file (NeXus, EMD, detector master files, ...).

How a dataset is read depends on how it is stored:

* **native** (udfkit's read planner and I/O backends, ``io_backend=`` applies): uncompressed
  data whose bytes lie in one file at known offsets. A contiguous dataset is one run of
  frames from ``get_offset()``; a chunked one whose chunks hold whole frames (one or several)
  has a per-frame offset table built from the chunk index (chunks may be stored in any order).
* **h5py** (:class:`~udfkit.io.chunked.ChunkedDataSet`): everything else: compressed
  datasets (gzip, lzf, szip, and the filters of ``hdf5plugin``: bitshuffle, LZ4, zstd,
  blosc...), chunks that split the frame, virtual datasets, external raw storage, chunks that
  were never written. Partitions are aligned to the chunk grid along the navigation axes,
  and each chunk is decoded once. ``io_backend=`` does not apply to these: asking for one is
  an error that says why, since a backend that is silently not used would only mislead.

Files are opened where they are read (on the worker); partitions carry the path, never an
open handle.
"""

from __future__ import annotations

import os
from math import prod

from ...common import Shape
from ...common.parse import ShapeLike
from ...errors import DataSetError
from ..base import DataSetMeta, IOBackend, Partition
from ..chunked import ChunkedDataSet, ChunkGeometry, block_frames
from ..file_based import FileDataSet
from ..layout import FileLayout, FileSet
from ..tiling import TilingConstraints
from ._common import check_path, check_sync_offset, parse_dims, resolve_shapes
from ._results import refuse_incomplete_results
from .base import COMMON_PARAMS, Format, Param

__all__ = ["HDF5Format", "HDF5DataSet"]


class HDF5Format(Format):
    """HDF5 files, recognised by their signature (also after a user block) or extension."""

    name = "hdf5"
    dataset = "udfkit.io.formats.hdf5:HDF5DataSet"
    extensions = (".h5", ".hdf5", ".hdf", ".nxs", ".emd", ".hspy")
    magic = (b"\x89HDF\r\n\x1a\n",)
    params = (
        Param("path", "path", None, "the HDF5 file"),
        Param("ds_path", "str", None,
              "path of the dataset in the file, e.g. /entry/data/data (default: the only "
              "dataset of 3 or more dimensions)"),
        COMMON_PARAMS["nav_shape"], COMMON_PARAMS["sig_shape"],
        Param("sig_dims", "int", 2, "number of trailing signal axes"),
        COMMON_PARAMS["sync_offset"], COMMON_PARAMS["num_partitions"], COMMON_PARAMS["io_backend"],
        COMMON_PARAMS["allow_partial"],
    )

    @classmethod
    def guess_can_open(cls, path: str) -> float:
        if not os.path.isfile(path):
            return 0.0
        from ._hdf5 import has_hdf5_signature

        if has_hdf5_signature(path):
            return 1.0
        return 0.5 if path.lower().endswith(cls.extensions) else 0.0


class HDF5DataSet(FileDataSet, ChunkedDataSet):
    """One dataset of an HDF5 file.

    Parameters
    ----------
    path : str or os.PathLike
    ds_path : str, optional
        Path of the dataset in the file. By default the only dataset of 3 or more dimensions,
        found through groups, external links and virtual datasets; with several (or none) the
        error lists them with shapes and dtypes.
    nav_shape, sig_shape : tuple of int, optional
        Reinterpret the dataset (the element count must allow it). For datasets read through
        h5py the signal must be made of whole trailing axes (e.g. ``(256, 256)`` ->
        ``(65536,)``).
    sig_dims : int
        Number of trailing signal axes when ``sig_shape`` is not given (default 2).
    sync_offset, num_partitions, allow_partial
        As for the raw format.
    io_backend : str or IOBackend, optional
        ``"mmap"`` (default), ``"buffered"`` or ``"direct"``, for uncompressed datasets that
        udfkit reads itself. Compressed, virtual and other datasets decoded by h5py do not
        use an I/O backend; passing one for them is an error.

    Notes
    -----
    :meth:`layout_info` (shown by ``udfkit info``) says how the dataset is stored and which
    read path is used, and why.

    Examples
    --------
    >>> import h5py, numpy as np, tempfile, os
    >>> from udfkit import Context
    >>> path = os.path.join(tempfile.mkdtemp(), "scan.h5")
    >>> with h5py.File(path, "w") as f:
    ...     _ = f.create_dataset("entry/data", data=np.ones((4, 5, 16, 16), dtype="uint16"),
    ...                          chunks=(1, 5, 16, 16), compression="gzip")
    >>> ds = Context.make_with("inline").load("hdf5", path=path)
    >>> ds.shape
    Shape((4, 5, 16, 16), sig_dims=2)
    >>> info = ds.layout_info()
    >>> info["ds_path"], info["compression"], info["read_path"]
    ('/entry/data', 'gzip', 'h5py')
    """

    format_name = "hdf5"

    def __init__(self, path: str | os.PathLike[str] | None = None, ds_path: str | None = None,
                 nav_shape: ShapeLike | None = None, sig_shape: ShapeLike | None = None,
                 sig_dims: int | None = 2, sync_offset: int = 0, num_partitions: int | None = None,
                 io_backend: str | IOBackend | None = None, allow_partial: bool = False):
        super().__init__(nav_shape=nav_shape, sig_shape=sig_shape, sync_offset=sync_offset,
                         num_partitions=num_partitions, allow_partial=allow_partial,
                         io_backend=io_backend)
        self._path_arg = path
        self._ds_path_arg = ds_path
        self._sig_dims_arg = sig_dims
        self._io_backend_arg = io_backend
        self._layout: dict = {}
        self._warned = False

    # -- opening ---------------------------------------------------------------------------

    def _initialize(self) -> DataSetMeta:
        from . import _hdf5

        path = check_path(self._path_arg, "HDF5 file")
        refuse_incomplete_results(path, f"HDF5 file {path!r}")
        self._fileset = self._reader = None
        self._geometry = ChunkGeometry(1)
        with _hdf5.open_file(path) as f:
            ds_path = self._ds_path_arg
            if ds_path is None:
                ds_path = _hdf5.find_dataset(f, path)
            ds = _hdf5.get_dataset(f, path, ds_path)
            ds_path = "/" + ds_path.strip("/")
            meta = self._inspect(path, ds_path, ds)
        return meta

    def _inspect(self, path: str, ds_path: str, ds) -> DataSetMeta:
        from . import _hdf5

        where = f"HDF5 file {path!r}, dataset {ds_path!r}"
        shape, dtype = tuple(ds.shape or ()), ds.dtype  # a null dataspace has no shape
        if dtype.kind not in "biufc" or dtype.fields is not None:
            raise DataSetError(f"{where} has dtype {dtype}; expected a numeric dtype")
        if len(shape) < 2:
            raise DataSetError(f"{where} has shape {shape}; expected at least 2 dimensions "
                               "(navigation + signal)")
        filters = _hdf5.filters_of(ds)
        _hdf5.check_filters(filters, where)
        virtual = ds.is_virtual
        if virtual:
            missing = _hdf5.missing_vds_sources(ds)
            if missing:
                raise DataSetError(f"{where} is a virtual dataset whose source files are missing: "
                                   f"{', '.join(map(repr, missing))} (HDF5 would read the fill value "
                                   "for their frames); put them next to the file")
        nav_shape = parse_dims(self._nav_shape_arg, "nav_shape", where)
        sig_shape = parse_dims(self._sig_shape_arg, "sig_shape", where)
        nav_shape, sig_shape, image_count = resolve_shapes(
            where, shape, self._sig_dims_arg, nav_shape, sig_shape, prod(shape), self._allow_partial)
        sync_offset = check_sync_offset(where, self._sync_offset_arg, prod(nav_shape), image_count)
        frame_bytes = prod(sig_shape) * dtype.itemsize
        # the dataset's own navigation axes: the leading ones before a frame's worth of axes
        k = next((j for j in range(len(shape), -1, -1) if prod(shape[j:]) == prod(sig_shape)), None)
        data_file = os.path.abspath(ds.file.filename)
        chunks = ds.chunks
        storage = _hdf5.storage_of(ds)
        info = {"ds_path": ds_path, "storage": storage, "chunks": chunks,
                "compression": "+".join(name for _, name in filters) or "none"}
        if data_file != os.path.abspath(path):
            info["data_file"] = data_file
        files = _hdf5.vds_files(ds) if virtual else [data_file]
        fileset, why = self._native_layout(ds, data_file, filters, k, sig_shape, image_count,
                                           frame_bytes)
        if fileset is not None:
            self._fileset = fileset
            info["read_path"] = f"native ({self._backend.name})"
            lay = fileset.files[0]
            if lay.frame_offsets is None:
                info["offsets"] = f"one run from byte {lay.header_bytes}"
            else:
                order = "increasing" if lay.increasing else "out of order"
                info["offsets"] = f"table of {image_count} ({order})"
        else:
            if k is None:
                raise DataSetError(
                    f"{where} has shape {shape}; sig_shape {sig_shape} is not made of its trailing "
                    f"axes, which reading through h5py ({why}) needs; choose a sig_shape whose size "
                    f"is the product of trailing axes")
            if self._io_backend_arg is not None:
                raise DataSetError(
                    f"{where}: io_backend={self._io_backend_arg!r} does not apply: the dataset is "
                    f"decoded by h5py ({why}), not read by udfkit's I/O backends; drop io_backend")
            # absolute: workers may run in another working directory
            self._reader = _hdf5.H5Reader(os.path.abspath(path), ds_path, shape[:k], shape[k:])
            nav_chunks = chunks[:k] if chunks else (1,) * k
            self._geometry = ChunkGeometry(self._block_frames(shape[:k], nav_chunks, frame_bytes,
                                                              where), chunks or ())
            info["read_path"] = "h5py"
            info["why_h5py"] = why
            info["block_frames"] = self._geometry.block_frames
        if virtual:
            info["sources"] = files
        self._layout = info
        metadata = {"path": path, "ds_path": ds_path, "file_bytes": sum(map(os.path.getsize, files)),
                    "hdf5_shape": shape, "io_backend": self._backend.name if fileset else None}
        return DataSetMeta(shape=Shape(nav_shape + sig_shape, sig_dims=len(sig_shape)),
                           raw_dtype=dtype, image_count=image_count, sync_offset=sync_offset,
                           metadata=metadata)

    def _native_layout(self, ds, data_file, filters, k, sig_shape, image_count, frame_bytes):
        """``(FileSet, None)`` when udfkit can read the bytes itself, else ``(None, why not)``."""
        from ._hdf5 import chunk_frame_table

        if ds.is_virtual:
            return None, "virtual dataset"
        if ds.external:
            return None, "external raw storage"
        if filters:
            return None, "filters " + "+".join(name for _, name in filters)
        dtype = ds.dtype
        if ds.chunks is None:
            offset = ds.id.get_offset()
            if offset is None:
                return None, "no stored bytes (never written, or compact)"
            return self._fileset_of(data_file, offset, dtype, sig_shape, image_count, None), None
        if k is None or tuple(ds.chunks[k:]) != tuple(ds.shape[k:]):
            return None, f"chunks {ds.chunks} split the frame"
        table = chunk_frame_table(ds, k, frame_bytes)
        if table is None:
            return None, "chunks that were never written (fill value)"
        if image_count > 1 and (table[1:] - table[:-1] == frame_bytes).all():
            # chunks stored back to back in order: one run, like a contiguous dataset
            return self._fileset_of(data_file, int(table[0]), dtype, sig_shape, image_count, None), None
        return self._fileset_of(data_file, 0, dtype, sig_shape, image_count, table), None

    @staticmethod
    def _fileset_of(data_file, offset, dtype, sig_shape, image_count, table):
        layout = FileLayout(data_file, offset, dtype, tuple(sig_shape), image_count,
                            frame_offsets=table)
        size = os.path.getsize(data_file)
        if layout.end > size:
            raise DataSetError(f"HDF5 file {data_file!r} has {size} bytes, but its dataset's frames "
                               f"need bytes up to {layout.end}; the file is truncated")
        return FileSet([layout])

    def _block_frames(self, nav, nav_chunks, frame_bytes, where) -> int:
        # block_frames warns about read amplification; once per data set, not per re-check
        import warnings

        if not self._warned:
            self._warned = True
            return block_frames(nav, nav_chunks, frame_bytes, where)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return block_frames(nav, nav_chunks, frame_bytes, where)

    # -- what the two read paths share -----------------------------------------------------

    @property
    def native(self) -> bool:
        """Whether udfkit reads the bytes itself (``False``: h5py decodes them)."""
        self._require_meta()
        return self._fileset is not None

    @property
    def supports_zero_copy(self) -> bool:
        # decoded blocks are handed out as views, like the backends' buffers
        return self._backend.supports_zero_copy if self._reader is None else True

    def get_tiling_constraints(self) -> TilingConstraints:
        if self.native:
            return FileDataSet.get_tiling_constraints(self)
        return ChunkedDataSet.get_tiling_constraints(self)

    def get_partitions(self) -> list[Partition]:
        if self.native:
            return FileDataSet.get_partitions(self)
        return ChunkedDataSet.get_partitions(self)

    def layout_info(self) -> dict:
        """Dataset path, storage, chunks, compression and the read path (and why)."""
        self._require_meta()
        return dict(self._layout)
