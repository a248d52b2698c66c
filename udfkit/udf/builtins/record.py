"""``RecordUDF``: write the frames of a run to a file, streaming (behind ``Context.export``).

The target is created on the main process before any partition runs, sized to the final
length; every partition then writes its frames from whatever worker process or machine it
runs on (with a shared file system), so frames are never passed around:

* ``npy`` (numpy header), ``raw`` (plus a JSON sidecar) and uncompressed contiguous
  ``hdf5``: each frame has a fixed byte offset, workers ``pwrite`` it there;
* ``binary`` (Thunder's image stacks): one file per frame, written by its worker;
* ``raw_csr`` (LiberTEM's sparse format): each worker spools its frames' CSR rows, the main
  process appends them in row order (see :mod:`udfkit.udf.builtins._export_csr`);
* chunked or compressed ``hdf5`` and ``zarr``: one writer per chunk, through per-partition
  spool files next to the target and a merge on the main process (see
  :mod:`udfkit.udf.builtins._export_chunked`).

The module only imports h5py, hdf5plugin and zarr when a target of theirs is written.
"""

from __future__ import annotations

import os

import numpy as np

from ...errors import UDFError, UDFParameterError
from ..base import UDF
from ._export_csr import parse_threshold
from ._export_options import (
    parse_chunks,
    parse_compression,
    parse_ds_path,
    parse_format,
    require,
)
from ._export_targets import BinaryTarget, Hdf5ContiguousTarget, NpyTarget, RawTarget

__all__ = ["RecordUDF", "export_layout", "make_target"]


def export_layout(meta) -> tuple:
    """``(shape, dtype, sig_dims)`` of the array a run with this ``meta`` writes.

    Without a ROI (and without missing frames) it has the data set's shape; otherwise it
    holds the processed frames in flattened nav order: ``(n, *sig_shape)``.
    """
    sig = meta.dataset_shape.sig.to_tuple()
    if meta.roi is None:
        shape = meta.dataset_shape.to_tuple()
    else:
        shape = (int(np.count_nonzero(meta.roi)),) + sig
    return shape, meta.input_dtype, len(sig)


def make_target(params, shape, dtype, sig_dims):
    """The target object for RecordUDF's (parsed) parameters."""
    fmt = params.format
    if fmt == "npy":
        return NpyTarget(params, shape, dtype, sig_dims)
    if fmt == "raw":
        return RawTarget(params, shape, dtype, sig_dims)
    if fmt == "binary":
        return BinaryTarget(params, shape, dtype, sig_dims)
    if fmt == "raw_csr":
        from ._export_csr import CSRTarget

        return CSRTarget(params, shape, dtype, sig_dims)
    if fmt == "hdf5" and params.compression is None and params.chunks is None:
        return Hdf5ContiguousTarget(params, shape, dtype, sig_dims)
    from ._export_chunked import Hdf5ChunkedTarget, ZarrTarget

    return (Hdf5ChunkedTarget if fmt == "hdf5" else ZarrTarget)(params, shape, dtype, sig_dims)


class RecordUDF(UDF):
    """Write every processed frame, in its stored dtype, to ``path``.

    ``RecordUDF(filename)`` is LiberTEM's form and means what it means there: the file is
    overwritten if it exists (and, from a name ending in ``.npy``, written as ``.npy``).
    ``RecordUDF(path=...)`` is udfkit's form, which refuses to overwrite unless asked.

    Parameters
    ----------
    filename : str or os.PathLike, optional
        LiberTEM's name for the target; ``overwrite`` then defaults to ``True``.
    _is_master : bool
        LiberTEM's internal flag, accepted and ignored (udfkit knows where each step runs).
    path : str or os.PathLike
        Target file (a directory for ``zarr`` and ``binary``); give this or ``filename``.
    overwrite : bool, optional
        Replace an existing target. Default: refuse (before anything is read) when given
        ``path``, replace when given ``filename``.
    format : {"npy", "raw", "hdf5", "zarr", "binary", "raw_csr"}, optional
        Default: from the name: ``.npy`` → npy, ``.h5``/``.hdf5``/``.hdf`` → hdf5, ``.zarr``
        → zarr, ``.toml`` → raw_csr, any other name → raw (the frames, next to a JSON sidecar
        ``<path>.json`` holding ``dtype``, ``nav_shape`` and ``sig_shape``). ``binary`` writes
        a Thunder image stack: a directory of ``image-NNNNN.bin`` files and ``conf.json``.
        ``raw_csr`` writes LiberTEM's sparse format: ``path`` is the TOML descriptor, the
        arrays ``<stem>.indptr.raw``, ``<stem>.indices.raw``, ``<stem>.data.raw`` go beside it.
    compression : str, optional
        hdf5: ``"gzip"``, ``"lzf"``, ``"zstd"``, ``"blosc"`` (the last two need hdf5plugin);
        zarr: ``"gzip"``, ``"zstd"``, ``"blosc"``; a level as ``"gzip:6"``. Default: none
        (for hdf5 a contiguous dataset that readers map without decoding).
    chunks : tuple of int, optional
        Chunk shape of an hdf5 or zarr target, one entry per axis of the written array.
        Default: whole frames, as many along the last nav axis as fit 1 MiB.
    ds_path : str, optional
        Name of the array inside the HDF5 file or zarr store (default ``"data"``).
    zarr_format : {3, 2}
        Zarr format of a zarr target.
    threshold : float, optional
        raw_csr only: keep pixels with ``abs(value) > threshold`` (default: every pixel that is
        not exactly zero).

    Notes
    -----
    The result ``frames_written`` counts the frames written. With a ROI (or frames missing
    after a negative ``sync_offset``) the target holds the selected frames in flattened nav
    order, shape ``(n, *sig_shape)``. A run that fails leaves a partly written target
    behind; chunked targets also leave a spool directory ``.<name>.udfkit-spool`` next to
    it, which ``Context.export`` and the next export to the same path remove. On a cluster
    ``path`` must be on a file system that every worker can write to.

    Examples
    --------
    >>> import os, tempfile
    >>> import numpy as np
    >>> from udfkit import Context
    >>> from udfkit.udf import RecordUDF
    >>> data = np.arange(2 * 3 * 4 * 4, dtype="uint16").reshape(2, 3, 4, 4)
    >>> ctx = Context.make_with("inline")
    >>> target = os.path.join(tempfile.mkdtemp(), "copy.npy")
    >>> res = ctx.run_udf(dataset=ctx.load("memory", data=data), udf=RecordUDF(path=target))
    >>> int(res["frames_written"].data[0]), np.array_equal(np.load(target), data)
    (6, True)
    """

    def __init__(self, filename=None, _is_master=True, path=None, overwrite=None, format=None,
                 compression=None, chunks=None, ds_path=None, zarr_format=3, threshold=None):
        if filename is not None and path is not None and os.fspath(filename) != os.fspath(path):
            raise UDFError(f"RecordUDF: filename={os.fspath(filename)!r} and path={os.fspath(path)!r} "
                           "name different targets; give one of them")
        if path is None and filename is None:
            raise UDFError("RecordUDF: path is required (or LiberTEM's filename)")
        if overwrite is None:
            # LiberTEM's RecordUDF(filename) replaces an existing file; udfkit's path= refuses
            overwrite = path is None
        if path is None:
            path = filename
        if not isinstance(_is_master, (bool, np.bool_)):
            raise UDFError(f"RecordUDF: _is_master is LiberTEM's internal flag (True or False), "
                           f"got {_is_master!r}")
        path = os.fspath(path)
        fmt = parse_format(path, format)
        compression = parse_compression(fmt, compression)
        if fmt == "zarr":
            require("zarr", "zarr", "export to zarr")
            if zarr_format not in (2, 3):
                raise UDFParameterError(f"RecordUDF: zarr_format must be 2 or 3, got {zarr_format!r}")
        if fmt == "hdf5" and compression is not None and compression[0] in ("zstd", "blosc"):
            require("hdf5plugin", "hdf5plugin", f"HDF5 compression {compression[0]!r}")
        super().__init__(path=path, overwrite=bool(overwrite), format=fmt,
                         compression=compression, chunks=parse_chunks(fmt, chunks, compression),
                         ds_path=parse_ds_path(fmt, ds_path),
                         zarr_format=int(zarr_format) if fmt == "zarr" else None,
                         threshold=parse_threshold(fmt, threshold))

    def get_preferred_input_dtype(self):
        return self.USE_NATIVE_DTYPE

    def get_tiling_preferences(self):
        # whole frames: each tile is one contiguous run of rows of the target
        return {"whole_frames": True}

    def get_result_buffers(self):
        # first_row tells the main process which partition (and spool file) it merges
        return {"frames_written": self.buffer(kind="single", dtype=np.int64),
                "first_row": self.buffer(kind="single", dtype=np.int64, use="private")}

    def preprocess(self):
        self._target = make_target(self.params, *export_layout(self.meta))
        if self.meta.partition_shape is None:
            # the main process, before any partition runs
            self._merged = 0
            self._target.prepare(self.meta.dataset_paths)
            return
        self._positions = None if self.meta.roi is None else np.flatnonzero(self.meta.roi)
        self._target.open(self.meta.partition_shape.nav.size)

    def process_tile(self, tile):
        first = int(self.meta.frame_index[0])
        row = first if self._positions is None else int(np.searchsorted(self._positions, first))
        self._target.write(row, tile)

    def postprocess(self):
        self._target.finish()
        self.results.frames_written[:] = self.meta.partition_shape.nav.size
        self.results.first_row[:] = self._target.first_row

    def cleanup(self):
        target = getattr(self, "_target", None)
        if target is not None:
            target.close()

    def merge(self, dest, src):
        dest.frames_written += src.frames_written
        n = int(src.frames_written[0])
        self._target.merge(int(src.first_row[0]), n)
        self._merged += n
        if self._merged == self._target.rows:
            self._target.finalize()

    def get_results(self):
        return {"frames_written": self.results.frames_written}

    def remove_temporaries(self) -> None:
        """Remove the spool files of a chunked target after a failed or interrupted run
        (``Context.export`` calls it); nothing for the other formats."""
        target = getattr(self, "_target", None)
        if target is not None:
            target.discard()
