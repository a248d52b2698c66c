"""Chunked export targets (HDF5 chunked or compressed, zarr), written from many processes.

Rules
-----
* **One writer per chunk.** A chunk is encoded whole by one writer: compressing a chunk
  needs all of it, and neither an HDF5 file nor a zarr chunk takes two writers at once
  (HDF5 has no parallel writes without MPI; two zarr writers of one chunk lose one's part).
* **Owned and shared chunks.** Partitions are ranges of the written array's flat nav order.
  A chunk whose frames all lie in one partition is *owned* by it; a chunk that reaches into
  two partitions is *shared*. With the default chunks (whole frames, ``k`` of them along the
  last nav axis) a partition shares at most its first and its last chunk.
* **Workers** write their frames, as tiles arrive, into a raw spool file
  ``rows-<first>.raw`` in a spool directory next to the target; at the end of the partition
  they encode their owned chunks from it. A zarr worker writes them straight into the store
  (different whole chunks are different objects there, so workers on any process or machine
  do not meet). An HDF5 worker writes them into its own small HDF5 file ``rows-<first>.h5``
  with the target's chunk shape and filters: HDF5's filter pipeline compresses them on the
  worker, exactly as the target's filter expects (gzip, lzf, and every hdf5plugin filter,
  framing included), and no process but the main one ever opens the target.
* **The main process**, when a partition's result is merged (in order of arrival), copies an
  HDF5 worker's encoded chunks into the target byte for byte (``read_direct_chunk`` /
  ``write_direct_chunk``) and writes the frames of the shared chunks from the raw spool
  through the library (which reads, modifies and re-encodes a shared chunk when its other
  part is already there). Then it removes that partition's spool files.
* **Cleanup.** The spool directory is removed after the last merge, by
  ``Context.export`` when a run fails or is interrupted, and when the next export to the same
  target starts. A worker that fails removes its own spool files.

Compression runs on the workers in parallel on the processes and dask executors; on the
threads executor h5py's global lock serialises HDF5 compression (zarr's codecs do not hold it).
Letting the main process compress instead would be simpler but caps an export at one core:
h5py's gzip (level 4) writes about 17 MB/s of detector-like uint16 data, zstd about 60 MB/s,
here; copying encoded chunks in the merge costs a few percent of that (0.1 s of a 6 s gzip
export of 128 MiB, inline).
"""

from __future__ import annotations

import itertools
import os

import numpy as np

from ...errors import UDFError, UDFParameterError
from ...io.backends._sigbus import guarded_reads
from ...io.chunked import flat_slabs
from ._export_options import default_chunks, require
from ._export_targets import Target, pwrite_all, remove_tree

__all__ = ["SpoolTarget", "Hdf5ChunkedTarget", "ZarrTarget", "owned_chunks", "spool_dir",
           "hdf5_compression", "zarr_compressors"]


def spool_dir(path: str) -> str:
    """The spool directory of a target: hidden, next to it (so on the same file system)."""
    head, tail = os.path.split(os.path.normpath(path))
    return os.path.join(head, f".{tail}.udfkit-spool")


def owned_chunks(nav_shape, nav_chunks, lo: int, hi: int) -> list:
    """Nav boxes ``((start, stop), ...)`` of the chunks that lie wholly in flat rows ``[lo, hi)``.

    Examples
    --------
    >>> owned_chunks((2, 6), (1, 3), 2, 12)
    [((0, 1), (3, 6)), ((1, 2), (0, 3)), ((1, 2), (3, 6))]
    >>> owned_chunks((4, 4), (2, 2), 0, 10)
    [((0, 2), (0, 2)), ((0, 2), (2, 4))]
    """
    nav_shape = tuple(nav_shape)
    seen = set()
    out = []
    for slab, _ in flat_slabs(nav_shape, lo, hi):
        ranges = [range(s.start // c, (s.stop - 1) // c + 1) for s, c in zip(slab, nav_chunks)]
        for idx in itertools.product(*ranges):
            if idx in seen:
                continue
            seen.add(idx)
            box = tuple((i * c, min(i * c + c, n)) for i, c, n in zip(idx, nav_chunks, nav_shape))
            first = np.ravel_multi_index([a for a, _ in box], nav_shape)
            last = np.ravel_multi_index([b - 1 for _, b in box], nav_shape)
            if first >= lo and last < hi:
                out.append(box)
    return sorted(out)


def _box_rows(box, nav_shape) -> np.ndarray:
    """Flat rows of a nav box, in C order over the box."""
    grids = np.meshgrid(*[np.arange(a, b) for a, b in box], indexing="ij")
    return np.ravel_multi_index([g.ravel() for g in grids], nav_shape)


def _runs(mask: np.ndarray) -> list:
    """``[(start, stop), ...]`` of the True runs of a bool array."""
    edges = np.flatnonzero(np.diff(np.concatenate(([0], mask.view(np.int8), [0]))))
    return list(zip(edges[::2].tolist(), edges[1::2].tolist()))


class SpoolTarget(Target):
    """Base of the chunked targets (see the module docstring)."""

    is_directory = False

    def __init__(self, params, shape, dtype, sig_dims):
        super().__init__(params, shape, dtype, sig_dims)
        chunks = params.chunks or default_chunks(self.shape, self.sig_dims, self.dtype.itemsize)
        if len(chunks) != len(self.shape):
            raise UDFParameterError(f"RecordUDF: chunks {tuple(chunks)} must have one entry per axis of "
                           f"the written array {self.shape}")
        # a chunk longer than its axis is the whole axis
        self.chunks = tuple(max(1, min(c, s)) for c, s in zip(chunks, self.shape))
        self.nav_chunks = self.chunks[:len(self.nav_shape)]
        self.spool = spool_dir(self.path)

    def _raw(self, first):
        return os.path.join(self.spool, f"rows-{first}.raw")

    # -- main -------------------------------------------------------------------------------
    def create(self):
        remove_tree(self.spool)  # left by an earlier run that failed
        self.create_target()
        os.makedirs(self.spool, exist_ok=True)

    def create_target(self) -> None:
        raise NotImplementedError

    def merge(self, first_row, n):
        if n == 0:
            return
        raw = self._raw(first_row)
        frames = np.memmap(raw, dtype=self.dtype, mode="r", shape=(n,) + self.sig_shape)
        try:
            covered = np.zeros(n, dtype=bool)
            for box in owned_chunks(self.nav_shape, self.nav_chunks, first_row, first_row + n):
                covered[_box_rows(box, self.nav_shape) - first_row] = True
            with guarded_reads(frames, raw):
                self.merge_partition(first_row, n, frames, _runs(~covered))
        finally:
            del frames
        self.remove_spool_files(first_row)

    def merge_partition(self, first_row, n, frames, shared_runs) -> None:
        raise NotImplementedError

    def write_runs(self, array, first_row, frames, runs) -> None:
        """Write the rows of ``runs`` (relative to ``first_row``) through the library."""
        for a, b in runs:
            pos = a
            for slab, count in flat_slabs(self.nav_shape, first_row + a, first_row + b):
                shape = tuple(s.stop - s.start for s in slab) + self.sig_shape
                array[slab + self._full_sig] = np.asarray(frames[pos:pos + count]).reshape(shape)
                pos += count

    def remove_spool_files(self, first_row) -> None:
        for name in (f"rows-{first_row}.raw", f"rows-{first_row}.h5"):
            try:
                os.remove(os.path.join(self.spool, name))
            except FileNotFoundError:
                pass

    def finalize(self):
        remove_tree(self.spool)

    def discard(self):
        remove_tree(self.spool)

    # -- worker -----------------------------------------------------------------------------
    def open(self, n):
        super().open(n)
        self._fd = None
        self._finished = False

    def write(self, row, data):
        if self._fd is None:
            # tiles arrive in order: the first one starts the partition
            self.first_row = int(row)
            self._fd = os.open(self._raw(self.first_row), os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o666)
        pwrite_all(self._fd, data, (row - self.first_row) * self.frame_bytes)

    def finish(self):
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
            lo = self.first_row
            boxes = owned_chunks(self.nav_shape, self.nav_chunks, lo, lo + self.n)
            if boxes:
                frames = np.memmap(self._raw(lo), dtype=self.dtype, mode="r",
                                   shape=(self.n,) + self.sig_shape)
                try:
                    with guarded_reads(frames, self._raw(lo)):
                        self.write_owned(boxes, frames, lo)
                finally:
                    del frames
        self._finished = True

    @property
    def _full_sig(self) -> tuple:
        return tuple(slice(0, s) for s in self.sig_shape)

    def index(self, box) -> tuple:
        """The array index of a nav box, whole frames."""
        return tuple(slice(a, b) for a, b in box) + self._full_sig

    def chunk_data(self, box, frames, lo) -> np.ndarray:
        rows = _box_rows(box, self.nav_shape) - lo
        shape = tuple(b - a for a, b in box) + self.sig_shape
        if rows[-1] - rows[0] + 1 == rows.size:  # one run of rows: no gather
            return np.asarray(frames[rows[0]:rows[-1] + 1]).reshape(shape)
        return frames[rows].reshape(shape)

    def write_owned(self, boxes, frames, lo) -> None:
        raise NotImplementedError

    def close(self):
        if getattr(self, "_fd", None) is not None:
            os.close(self._fd)
            self._fd = None
        if not getattr(self, "_finished", True) and self.first_row >= 0:
            self.remove_spool_files(self.first_row)


def hdf5_compression(comp) -> dict:
    """h5py ``create_dataset`` keywords for a parsed compression ``(name, level)`` or None."""
    if comp is None:
        return {}
    name, level = comp
    if name == "gzip":
        return {"compression": "gzip", "compression_opts": level}
    if name == "lzf":
        return {"compression": "lzf"}
    plugin = require("hdf5plugin", "hdf5plugin", f"HDF5 compression {name!r}")
    if name == "zstd":
        return dict(plugin.Zstd(clevel=level))
    return dict(plugin.Blosc(cname="lz4", clevel=level, shuffle=plugin.Blosc.SHUFFLE))


def zarr_compressors(comp, zarr_format: int = 3):
    """zarr ``compressors=`` for a parsed compression ``(name, level)`` or None."""
    if comp is None:
        return None
    name, level = comp
    if zarr_format == 2:
        import numcodecs

        return {"gzip": lambda: numcodecs.GZip(level=level),
                "zstd": lambda: numcodecs.Zstd(level=level),
                "blosc": lambda: numcodecs.Blosc(cname="lz4", clevel=level,
                                                 shuffle=numcodecs.Blosc.SHUFFLE)}[name]()
    from zarr import codecs

    return {"gzip": lambda: codecs.GzipCodec(level=level),
            "zstd": lambda: codecs.ZstdCodec(level=level),
            "blosc": lambda: codecs.BloscCodec(cname="lz4", clevel=level,
                                               shuffle="shuffle")}[name]()


class Hdf5ChunkedTarget(SpoolTarget):
    """A chunked (and usually compressed) HDF5 dataset; see the module docstring."""

    def create_kwargs(self) -> dict:
        kwargs = {"shape": self.shape, "dtype": self.dtype, "chunks": self.chunks}
        if 0 in self.shape:
            # an empty ROI: HDF5 takes a chunk longer than an axis only if the axis can grow
            kwargs["maxshape"] = tuple(None if s == 0 else s for s in self.shape)
        return dict(kwargs, **hdf5_compression(self.params.compression))

    def create_target(self):
        import h5py

        with h5py.File(self.path, "w") as f:
            f.create_dataset(self.params.ds_path, **self.create_kwargs())

    def write_owned(self, boxes, frames, lo):
        import h5py

        # every box is whole chunks, written once: HDF5 encodes them as they pass, and the
        # default (small) chunk cache keeps the worker's memory low
        with h5py.File(os.path.join(self.spool, f"rows-{lo}.h5"), "w") as f:
            dset = f.create_dataset("data", **self.create_kwargs())
            for box in boxes:
                dset[self.index(box)] = self.chunk_data(box, frames, lo)

    def merge_partition(self, first_row, n, frames, shared_runs):
        import h5py

        spool = os.path.join(self.spool, f"rows-{first_row}.h5")
        with h5py.File(self.path, "r+") as f:
            dset = f[self.params.ds_path]
            if os.path.exists(spool):
                with h5py.File(spool, "r") as s:
                    src = s["data"].id
                    for i in range(src.get_num_chunks()):
                        offset = src.get_chunk_info(i).chunk_offset
                        mask, data = src.read_direct_chunk(offset)
                        dset.id.write_direct_chunk(offset, data, mask)
            self.write_runs(dset, first_row, frames, shared_runs)


class ZarrTarget(SpoolTarget):
    """A zarr array (zarr-python 3; format 3 by default, 2 on request); see the module
    docstring."""

    is_directory = True

    def compressors(self):
        return zarr_compressors(self.params.compression, self.params.zarr_format)

    def remove_existing(self):
        if not os.path.isdir(self.path):
            os.remove(self.path)
            return
        marks = ("zarr.json", ".zgroup", ".zarray", ".zattrs")
        if not any(os.path.exists(os.path.join(self.path, m)) for m in marks):
            raise UDFError(f"RecordUDF: the target {self.path!r} is a directory but not a zarr "
                           "store; not removing it (choose another path)")
        remove_tree(self.path)

    def create_target(self):
        import zarr

        zarr.create_array(store=self.path, name=self.params.ds_path, shape=self.shape,
                          chunks=self.chunks, dtype=self.dtype, compressors=self.compressors(),
                          zarr_format=self.params.zarr_format, fill_value=0, overwrite=True)

    def _array(self):
        import zarr

        return zarr.open_array(store=self.path, path=self.params.ds_path, mode="r+")

    def write_owned(self, boxes, frames, lo):
        array = self._array()
        for box in boxes:
            array[self.index(box)] = self.chunk_data(box, frames, lo)

    def merge_partition(self, first_row, n, frames, shared_runs):
        if shared_runs:
            self.write_runs(self._array(), first_row, frames, shared_runs)

