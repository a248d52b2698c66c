"""Result store as an HDF5 file: one dataset per buffer, a group per UDF when several run,
the store's description (JSON) in the file's ``udfkit`` attribute.

HDF5 has no safe concurrent writers without MPI, so only the main process writes, one
partition's box at a time. Uncompressed nav arrays are contiguous datasets whose space is
allocated when they are made: a write then touches only its own bytes, and the file's
structure is final before the first partition is written (so a killed run leaves a file
that opens, and the journal can trust merged partitions). Compressed (chunked) datasets
change the file's index with every chunk written: such a store is not resumable.
"""

from __future__ import annotations

import contextlib
import json
import os
import re

import numpy as np

from .base import META_KEY, StoreBackend, meta_json

__all__ = ["Hdf5Store"]


@contextlib.contextmanager
def _os_errors():
    """h5py reports a failed write (a full disk) as a ValueError or RuntimeError whose text
    holds the errno; make it the OSError it is."""
    try:
        yield
    except (ValueError, RuntimeError, KeyError) as e:
        found = re.search(r"errno = (\d+)", str(e))
        if not found:
            raise
        code = int(found.group(1))
        raise OSError(code, os.strerror(code)) from e


class Hdf5Store(StoreBackend):
    format = "hdf5"

    def __init__(self, path, options=None):
        super().__init__(path, options)
        self._file = None
        self._reader_file = None
        self.crash_safe = options is None or options.get("compression") is None

    @classmethod
    def read_meta(cls, path):
        if not os.path.isfile(path):
            return None
        import h5py

        try:
            with h5py.File(path, "r") as f:
                raw = f.attrs.get(META_KEY)
        except Exception:  # noqa: BLE001 - any unreadable file is "not ours"
            return None
        if raw is None:
            return None
        try:
            meta = json.loads(raw)
        except ValueError:
            return None
        return meta if meta.get("format") == "udfkit-results" else None

    @_os_errors()
    def create(self, layout, meta):
        import h5py

        from ..builtins._export_chunked import hdf5_compression

        self._file = h5py.File(self.path, "w-")
        self.set_meta(meta)
        comp = hdf5_compression(self.options.get("compression"))
        for spec in layout.nav_arrays():
            kwargs = {"shape": spec.shape, "dtype": spec.dtype}
            if spec.fill not in (None, ""):
                kwargs["fillvalue"] = spec.fill
            if comp:
                chunks = layout.chunks(spec)
                kwargs.update(comp, chunks=tuple(min(c, max(1, s))
                                                 for c, s in zip(chunks, spec.shape)))
            else:
                # space allocated (and filled) now: writes never change the file's structure
                dcpl = h5py.h5p.create(h5py.h5p.DATASET_CREATE)
                dcpl.set_alloc_time(h5py.h5d.ALLOC_TIME_EARLY)
                if "fillvalue" in kwargs:
                    dcpl.set_fill_value(np.array(kwargs.pop("fillvalue"), dtype=spec.dtype))
                kwargs["dcpl"] = dcpl
            ds = self._file.create_dataset(spec.key, **kwargs)
            ds.attrs[META_KEY] = json.dumps({"kind": "nav", "nav_shape": list(layout.nav_shape),
                                             "extra_shape": list(spec.extra_shape)})
        self._file.flush()

    @_os_errors()
    def open_existing(self, layout):
        import h5py

        self._file = h5py.File(self.path, "r+")

    @_os_errors()
    def write_box(self, spec, slices, data):
        self._file[spec.key][slices] = data

    @_os_errors()
    def save(self, spec, array):
        array = np.asarray(array)
        if spec.key in self._file:
            del self._file[spec.key]
        ds = self._file.create_dataset(spec.key, data=array)
        ds.attrs[META_KEY] = json.dumps({"kind": spec.kind})

    @_os_errors()
    def set_meta(self, meta):
        self._file.attrs[META_KEY] = meta_json(meta)

    @_os_errors()
    def flush(self):
        if self._file is not None:
            self._file.flush()

    @_os_errors()
    def close(self):
        if self._file is not None:
            self._file.close()
            self._file = None

    def reader(self, spec):
        import h5py

        if self._file is not None:
            return self._file[spec.key]
        if self._reader_file is None:
            self._reader_file = h5py.File(self.path, "r")
        return self._reader_file[spec.key]
