"""Export targets whose bytes lie at known places: npy, raw, contiguous HDF5, Thunder binary.

A target is built from :class:`~udfkit.udf.RecordUDF`'s parameters and the written array's
``(shape, dtype, sig_dims)`` on the main process and on every worker. The main process
calls :meth:`Target.prepare` (checks, then creates the file) before any partition runs,
:meth:`Target.merge` for every partition result and :meth:`Target.finalize` after the last
one; a worker calls :meth:`Target.open`, :meth:`Target.write` for every tile of whole
frames (``row`` is the index of its first frame in the written array's flat nav order),
:meth:`Target.finish` and :meth:`Target.close`.

Here every frame has a fixed place in a file, so workers ``pwrite`` their frames there from
whatever process or machine they run on and nothing is merged. For HDF5 that holds for an
uncompressed contiguous dataset with early allocation: its byte offset is fixed when the
main process creates it, and the raw bytes written there are what h5py reads back (the
library never sees a second writer). Chunked and compressed targets are in
:mod:`udfkit.udf.builtins._export_chunked`.
"""

from __future__ import annotations

import io
import json
import os
import shutil

import numpy as np

from ...errors import UDFError

__all__ = ["Target", "NpyTarget", "RawTarget", "Hdf5ContiguousTarget", "BinaryTarget",
           "pwrite_all", "npy_header"]


def pwrite_all(fd: int, data: np.ndarray, pos: int) -> None:
    """Write all of ``data``'s bytes at ``pos`` (``os.pwrite`` may write less than asked)."""
    view = np.ascontiguousarray(data).data.cast("B")
    while view:
        written = os.pwrite(fd, view, pos)
        view = view[written:]
        pos += written


def npy_header(shape: tuple, dtype: np.dtype) -> bytes:
    header = {"descr": np.lib.format.dtype_to_descr(dtype), "fortran_order": False,
              "shape": tuple(shape)}
    buf = io.BytesIO()
    if len(repr(header)) > 65000:
        np.lib.format.write_array_header_2_0(buf, header)
    else:
        np.lib.format.write_array_header_1_0(buf, header)
    return buf.getvalue()


class Target:
    """Where an export goes; see the module docstring for who calls what, where."""

    #: whether the target is a directory (zarr store, binary stack) rather than a file
    is_directory = False

    def __init__(self, params, shape: tuple, dtype, sig_dims: int):
        self.params = params
        self.path = params.path
        self.shape = tuple(int(s) for s in shape)
        self.dtype = np.dtype(dtype)
        self.sig_dims = int(sig_dims)
        self.nav_shape = self.shape[:len(self.shape) - self.sig_dims]
        self.sig_shape = self.shape[len(self.shape) - self.sig_dims:]
        self.rows = int(np.prod(self.nav_shape, dtype=np.int64))
        self.frame_bytes = int(np.prod(self.sig_shape, dtype=np.int64)) * self.dtype.itemsize
        #: first row written by this worker's partition (-1: none)
        self.first_row = -1

    @property
    def nbytes(self) -> int:
        return self.rows * self.frame_bytes

    # -- main process -----------------------------------------------------------------------
    def prepare(self, dataset_paths=()) -> None:
        """Refuse the data set's own file and an existing target (unless overwrite); create."""
        path = self.path
        for source in dataset_paths:
            if os.path.exists(source) and os.path.exists(path) and (
                    os.path.samefile(source, path) or (os.path.isdir(path) and _inside(source, path))):
                raise UDFError(f"RecordUDF: the target {path!r} is the file of the data set "
                               "being read; choose another path")
        # an empty directory is a fine place for a directory target
        if os.path.lexists(path) and not (self.is_directory and os.path.isdir(path)
                                          and not os.listdir(path)):
            if not self.params.overwrite:
                raise FileExistsError(f"RecordUDF: {path} exists; pass overwrite=True to replace it")
            self.remove_existing()
        self.create()
        if self.rows == 0:
            self.finalize()

    def remove_existing(self) -> None:
        """Make room for the target (only called with ``overwrite=True``)."""
        if os.path.isdir(self.path) and not self.is_directory:
            raise UDFError(f"RecordUDF: the target {self.path!r} is a directory; the "
                           f"{self.params.format} format writes a file")
        if not os.path.isdir(self.path):
            os.remove(self.path)

    def create(self) -> None:
        raise NotImplementedError

    def merge(self, first_row: int, n: int) -> None:
        """A partition that wrote rows ``[first_row, first_row + n)`` has finished."""

    def finalize(self) -> None:
        """Every row is written."""

    def discard(self) -> None:
        """Remove temporary files (after a failed or interrupted run)."""

    # -- worker -----------------------------------------------------------------------------
    def open(self, n: int) -> None:
        self.n = int(n)

    def write(self, row: int, data: np.ndarray) -> None:
        raise NotImplementedError

    def finish(self) -> None:
        """All tiles of the partition are written."""

    def close(self) -> None:
        """Release handles (always called, also after an error)."""


def _inside(path: str, directory: str) -> bool:
    path, directory = os.path.realpath(path), os.path.realpath(directory)
    return os.path.commonpath([path, directory]) == directory


class _OffsetTarget(Target):
    """Frames at ``offset + row * frame_bytes`` of one file, written with ``pwrite``."""

    def offset(self) -> int:
        raise NotImplementedError

    def open(self, n):
        super().open(n)
        self._fd = None
        self._offset = self.offset()
        self._fd = os.open(self.path, os.O_WRONLY)

    def write(self, row, data):
        pwrite_all(self._fd, data, self._offset + row * self.frame_bytes)

    def close(self):
        if getattr(self, "_fd", None) is not None:
            os.close(self._fd)
            self._fd = None


class NpyTarget(_OffsetTarget):
    """A ``.npy`` file: numpy's header, then the frames."""

    def offset(self):
        return len(npy_header(self.shape, self.dtype))

    def create(self):
        header = npy_header(self.shape, self.dtype)
        with open(self.path, "wb") as f:
            f.write(header)
            f.truncate(len(header) + self.nbytes)


class RawTarget(_OffsetTarget):
    """The frames alone, next to a JSON sidecar ``<path>.json`` (dtype, nav/sig shape)."""

    def offset(self):
        return 0

    def create(self):
        with open(self.path, "wb") as f:
            f.truncate(self.nbytes)
        side = {"dtype": self.dtype.str, "nav_shape": list(self.nav_shape),
                "sig_shape": list(self.sig_shape)}
        with open(self.path + ".json", "w") as f:
            json.dump(side, f, indent=1)


class Hdf5ContiguousTarget(_OffsetTarget):
    """An uncompressed, contiguous HDF5 dataset, allocated when it is created.

    The main process creates the file with h5py and closes it; from then on the dataset's
    bytes sit at a fixed offset (``get_offset``), and workers write raw frames there. The
    fill value is never written (``FILL_TIME_NEVER``), so creating a large target costs no
    time and leaves a sparse file until the frames arrive.
    """

    def create(self):
        import h5py

        dcpl = h5py.h5p.create(h5py.h5p.DATASET_CREATE)
        dcpl.set_alloc_time(h5py.h5d.ALLOC_TIME_EARLY)
        dcpl.set_fill_time(h5py.h5d.FILL_TIME_NEVER)
        parent, _, name = self.params.ds_path.rpartition("/")
        with h5py.File(self.path, "w") as f:
            group = f.require_group(parent) if parent else f
            space = h5py.h5s.create_simple(self.shape)
            h5py.h5d.create(group.id, name.encode(), h5py.h5t.py_create(self.dtype), space,
                            dcpl=dcpl).close()

    def offset(self):
        import h5py

        # read on every worker: the offset is only known once the main process created the
        # file, and the file is closed by then (no second writer through the library)
        with h5py.File(self.path, "r", locking=False) as f:
            offset = f[self.params.ds_path].id.get_offset()
        if offset is None:
            raise UDFError(f"RecordUDF: the HDF5 dataset {self.params.ds_path!r} in {self.path!r} "
                           "has no storage allocated; was the file replaced during the export?")
        return int(offset)


class BinaryTarget(Target):
    """A Thunder binary image stack: one ``image-NNNNN.bin`` per frame plus ``conf.json``.

    Written by the binary format's own :class:`~udfkit.io.formats.binary.BinaryStackWriter`
    (so that reader and writer agree): each file holds one frame's bytes in C order and
    native byte order, ``conf.json`` gives ``shape`` and ``dtype``, an empty ``SUCCESS``
    marks a complete stack (written after the last frame). Every frame is its own file, so
    workers write theirs side by side.
    """

    is_directory = True

    def writer(self):
        from ...io.formats.binary import BinaryStackWriter

        return BinaryStackWriter(self.path, sig_shape=self.sig_shape, dtype=self.dtype,
                                 count=self.rows)

    def remove_existing(self):
        if not os.path.isdir(self.path):
            os.remove(self.path)
        # a directory: the writer removes only what an earlier stack had (.bin, conf.json,
        # SUCCESS), so a wrong path does not cost other files

    def create(self):
        self.writer().create(overwrite=True)

    def open(self, n):
        super().open(n)
        self._writer = self.writer()

    def write(self, row, data):
        self._writer.write(row, data)

    def finalize(self):
        self.writer().finish()


def remove_tree(path: str) -> None:
    """Remove a directory tree, also while a straggling worker still writes into it."""
    for _ in range(3):
        shutil.rmtree(path, ignore_errors=True)
        if not os.path.lexists(path):
            return
