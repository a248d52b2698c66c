"""Result store as a directory of ``.npy`` files: ``<dir>/<name>.npy`` for one UDF,
``<dir>/<group>/<name>.npy`` for several, and ``<dir>/udfkit.json`` describing them.

Nav arrays are written with positioned writes (``os.pwrite``): every box is a contiguous
byte range of its file, so any partitioning is safe, a killed write damages only the box
being written, and a full disk is an ``OSError``. The files get their blocks when they are
made (``posix_fallocate``), so a full disk shows before the run reads anything.
"""

from __future__ import annotations

import errno
import json
import os

import numpy as np

from ._atomic import atomic_write_bytes, atomic_writer
from .base import META_KEY, StoreBackend, meta_json

__all__ = ["NpyStore"]

_FILL_ROWS_BYTES = 1 << 20


def _allocate(fn: str, offset: int) -> None:
    """Give the (sparse) file its blocks now: a write through a memory map into a page the
    file system cannot provide kills the process with SIGBUS, where a full disk must be an
    error. Where the file system cannot preallocate, the pages are written once instead."""
    size = os.path.getsize(fn)
    fd = os.open(fn, os.O_RDWR)
    try:
        try:
            os.posix_fallocate(fd, 0, size)
            return
        except OSError as e:
            if e.errno not in (errno.EOPNOTSUPP, errno.EINVAL, errno.ENOSYS):
                raise
        # no fallocate (some network file systems): write the zeros the file holds
        block = bytes(1 << 20)
        for off in range(offset, size, len(block)):
            os.pwrite(fd, block[:min(len(block), size - off)], off)
    finally:
        os.close(fd)


def _fill(fn: str, offset: int, spec) -> None:
    block = np.full(max(1, _FILL_ROWS_BYTES // spec.dtype.itemsize), spec.fill, dtype=spec.dtype)
    raw = memoryview(block.data).cast("B")
    end = offset + spec.nbytes
    fd = os.open(fn, os.O_RDWR)
    try:
        for pos in range(offset, end, raw.nbytes):
            os.pwrite(fd, raw[:min(raw.nbytes, end - pos)], pos)
    finally:
        os.close(fd)


def _header_end(fn: str) -> int:
    with open(fn, "rb") as f:
        version = np.lib.format.read_magic(f)
        read = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                else np.lib.format.read_array_header_2_0)
        read(f)
        return f.tell()


def _pwrite(fd: int, offset: int, spec, first: int, data) -> None:
    """Write ``data`` (whole rows of the nav array ``spec``) from flat nav row ``first`` on."""
    row = int(np.prod(spec.extra_shape, dtype=np.int64)) * spec.dtype.itemsize
    view = memoryview(np.ascontiguousarray(data, dtype=spec.dtype).reshape(-1).data).cast("B")
    pos = offset + first * row
    while view.nbytes:
        n = os.pwrite(fd, view, pos)
        view = view[n:]
        pos += n


def pwrite_rows(fn: str, spec, first: int, data) -> None:
    """Write rows ``[first, first + len(data))`` of the nav array ``spec`` into its file
    ``fn`` (a worker's direct write: its own descriptor, closed before it returns, so that
    a network file system has the bytes when the main process journals them)."""
    offset = _header_end(fn)
    fd = os.open(fn, os.O_WRONLY)
    try:
        _pwrite(fd, offset, spec, first, data)
    finally:
        os.close(fd)


class NpyStore(StoreBackend):
    format = "npy"
    journal_inside = True

    def __init__(self, path, options=None):
        super().__init__(path, options)
        self._maps: dict = {}

    @classmethod
    def read_meta(cls, path):
        meta = os.path.join(path, META_KEY + ".json")
        if not os.path.isfile(meta):
            return None
        try:
            with open(meta) as f:
                out = json.load(f)
        except (OSError, ValueError):
            return None
        return out if out.get("format") == "udfkit-results" else None

    def _file(self, spec) -> str:
        return os.path.join(self.path, *([spec.group] if spec.group else []), spec.name + ".npy")

    def create(self, layout, meta):
        os.makedirs(self.path, exist_ok=False)
        self.set_meta(meta)
        for spec in layout.nav_arrays():
            fn = self._file(spec)
            os.makedirs(os.path.dirname(fn), exist_ok=True)
            with open(fn, "wb") as f:
                np.lib.format.write_array_header_1_0(f, {
                    "descr": np.lib.format.dtype_to_descr(spec.dtype), "fortran_order": False,
                    "shape": tuple(spec.shape)})
                offset = f.tell()
                f.truncate(offset + spec.nbytes)
            _allocate(fn, offset)
            if spec.fill not in (0, False, None, ""):
                # the file holds zeros; fill it in bounded pieces, never whole in memory
                _fill(fn, offset, spec)
            self._open_for_writing(spec)

    def open_existing(self, layout):
        for spec in layout.nav_arrays():
            self._open_for_writing(spec)

    def _open_for_writing(self, spec):
        fn = self._file(spec)
        self._maps[spec.key] = (os.open(fn, os.O_RDWR), _header_end(fn))

    def write_box(self, spec, slices, data):
        # every box is a contiguous flat range of the C-ordered array: one positioned write
        # (no memory map: a full disk is an OSError, and the process maps nothing)
        fd, offset = self._maps[spec.key]
        nav_dims = len(slices)
        first = np.ravel_multi_index([s.start for s in slices], spec.shape[:nav_dims])
        _pwrite(fd, offset, spec, int(first), data)

    def save(self, spec, array):
        fn = self._file(spec)
        os.makedirs(os.path.dirname(fn), exist_ok=True)
        arr = np.asarray(array)
        atomic_writer(fn, lambda f: np.save(f, arr))

    def set_meta(self, meta):
        atomic_write_bytes(os.path.join(self.path, META_KEY + ".json"), meta_json(meta).encode())

    def flush(self):
        for fd, _ in self._maps.values():
            os.fdatasync(fd)

    def close(self):
        try:
            self.flush()
        finally:
            for fd, _ in self._maps.values():
                os.close(fd)
            self._maps.clear()

    def reader(self, spec):
        fn = self._file(spec)
        return NpyArray(fn) if spec.kind == "nav" else np.load(fn)


class NpyArray:
    """A ``.npy`` file read lazily, like an ``h5py.Dataset``: indexing reads (through a
    memory map of just the rows asked for, along the first axis) and returns numpy arrays.

    Examples
    --------
    >>> import os, tempfile
    >>> fn = os.path.join(tempfile.mkdtemp(), "a.npy")
    >>> np.save(fn, np.arange(12).reshape(4, 3))
    >>> a = NpyArray(fn)
    >>> a.shape, a[1:3, 0].tolist(), a[-1].tolist(), int(np.asarray(a).sum())
    ((4, 3), [3, 6], [9, 10, 11], 66)
    """

    def __init__(self, path: str):
        self.path = path
        with open(path, "rb") as f:
            version = np.lib.format.read_magic(f)
            read = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                    else np.lib.format.read_array_header_2_0)
            shape, fortran, dtype = read(f)
            self._offset = f.tell()
        self.shape = tuple(shape)
        self.dtype = np.dtype(dtype)

    @property
    def ndim(self) -> int:
        return len(self.shape)

    @property
    def size(self) -> int:
        return int(np.prod(self.shape, dtype=np.int64))

    def __len__(self):
        return self.shape[0]

    def _rows(self, start: int, stop: int) -> np.ndarray:
        row = int(np.prod(self.shape[1:], dtype=np.int64)) * self.dtype.itemsize
        if stop <= start or row == 0:
            return np.empty((0,) + self.shape[1:], dtype=self.dtype)
        return np.memmap(self.path, dtype=self.dtype, mode="r", offset=self._offset + start * row,
                         shape=(stop - start,) + self.shape[1:])

    def __getitem__(self, key):
        if not isinstance(key, tuple):
            key = (key,)
        if not self.shape:
            return np.array(self._whole()[key])
        first, rest = key[0], key[1:]
        if isinstance(first, (int, np.integer)):
            i = int(first) + (self.shape[0] if first < 0 else 0)
            if not 0 <= i < self.shape[0]:
                raise IndexError(f"index {first} is out of bounds for axis 0 with size {self.shape[0]}")
            return np.array(self._rows(i, i + 1)[(0,) + rest])
        if isinstance(first, slice):
            start, stop, step = first.indices(self.shape[0])
            lo, hi = (start, stop) if step > 0 else (stop + 1, start + 1)
            part = self._rows(lo, max(lo, hi))
            return np.array(part[(slice(start - lo, stop - lo if stop - lo >= 0 else None, step),)
                                 + rest])
        return np.array(self._whole()[key])

    def _whole(self):
        return self._rows(0, self.shape[0]) if self.shape else np.load(self.path)

    def __array__(self, dtype=None, copy=None):
        out = np.array(self._whole())
        return out if dtype is None else out.astype(dtype)

    def __repr__(self):
        return f"NpyArray({self.path!r}, shape={self.shape}, dtype={self.dtype})"
