"""Result store as a zarr (format 3) group: one array per buffer, a subgroup per UDF when
several run, the store's description in the root group's ``udfkit`` attribute.

zarr-python writes every chunk as a whole file through a rename, so a killed write never
tears a chunk that a merged partition shares with the one being written.
"""

from __future__ import annotations

import os

import numpy as np

from .base import META_KEY, StoreBackend

__all__ = ["ZarrStore"]


class ZarrStore(StoreBackend):
    format = "zarr"

    def __init__(self, path, options=None):
        super().__init__(path, options)
        self._root = None
        self._arrays: dict = {}

    @classmethod
    def read_meta(cls, path):
        if not os.path.isfile(os.path.join(path, "zarr.json")):
            return None
        import zarr

        try:
            meta = zarr.open_group(store=path, mode="r").attrs.get(META_KEY)
        except Exception:  # noqa: BLE001 - any unreadable store is "not ours"
            return None
        return dict(meta) if isinstance(meta, dict) and meta.get("format") == "udfkit-results" else None

    def _compressors(self):
        from ..builtins._export_chunked import zarr_compressors

        return zarr_compressors(self.options.get("compression"))

    def create(self, layout, meta):
        import zarr

        self._root = zarr.open_group(store=self.path, mode="w-", zarr_format=3)
        self.set_meta(meta)
        for spec in layout.nav_arrays():
            chunks = layout.chunks(spec)
            self._arrays[spec.key] = self._root.create_array(
                spec.key, shape=spec.shape, dtype=spec.dtype, chunks=chunks,
                fill_value=spec.fill, compressors=self._compressors(),
                attributes={META_KEY: {"kind": "nav", "nav_shape": list(layout.nav_shape),
                                       "extra_shape": list(spec.extra_shape)}})

    def open_existing(self, layout):
        import zarr

        self._root = zarr.open_group(store=self.path, mode="r+")
        for spec in layout.nav_arrays():
            self._arrays[spec.key] = self._root[spec.key]

    def write_box(self, spec, slices, data):
        self._arrays[spec.key][slices] = data

    def save(self, spec, array):
        array = np.asarray(array)
        a = self._root.create_array(spec.key, shape=array.shape, dtype=array.dtype,
                                    chunks=array.shape or None, overwrite=True,
                                    attributes={META_KEY: {"kind": spec.kind}})
        a[...] = array

    def set_meta(self, meta):
        self._root.attrs[META_KEY] = meta

    def close(self):
        self._arrays.clear()
        self._root = None

    def reader(self, spec):
        import zarr

        return zarr.open_array(store=self.path, path=spec.key, mode="r")
