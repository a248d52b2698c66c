"""Result store as a directory of ``.npy`` files: ``<dir>/<name>.npy`` for one UDF,
``<dir>/<group>/<name>.npy`` for several, and ``<dir>/udfkit.json`` describing them.

Nav arrays are written through ``numpy.memmap``: every box lands at its own byte offsets, so
any partitioning is safe and a killed write damages only the box being written.
"""

from __future__ import annotations

import errno
import json
import os

import numpy as np

from ._atomic import atomic_write_bytes, atomic_writer
from .base import META_KEY, StoreBackend, meta_json

__all__ = ["NpyStore"]

_FILL_ROWS_BYTES = 16 << 20


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


class NpyStore(StoreBackend):
    format = "npy"

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
            mm = np.lib.format.open_memmap(fn, mode="w+", dtype=spec.dtype, shape=spec.shape)
            _allocate(fn, mm.offset)
            if spec.fill not in (0, False, None, ""):
                # the file starts as zeros; fill it in bounded pieces, never whole in memory
                flat = mm.reshape(-1)
                step = max(1, _FILL_ROWS_BYTES // spec.dtype.itemsize)
                for a in range(0, flat.size, step):
                    flat[a:a + step] = spec.fill
            self._maps[spec.key] = mm

    def open_existing(self, layout):
        for spec in layout.nav_arrays():
            self._maps[spec.key] = np.load(self._file(spec), mmap_mode="r+")

    def write_box(self, spec, slices, data):
        self._maps[spec.key][slices] = data

    def save(self, spec, array):
        fn = self._file(spec)
        os.makedirs(os.path.dirname(fn), exist_ok=True)
        arr = np.asarray(array)
        atomic_writer(fn, lambda f: np.save(f, arr))

    def set_meta(self, meta):
        atomic_write_bytes(os.path.join(self.path, META_KEY + ".json"), meta_json(meta).encode())

    def flush(self):
        for mm in self._maps.values():
            mm.flush()

    def close(self):
        self.flush()
        self._maps.clear()

    def reader(self, spec):
        fn = self._file(spec)
        return np.load(fn, mmap_mode="r") if spec.kind == "nav" else np.load(fn)
