"""Refusing to load an unfinished udfkit result store (``run_udf(out=...)``) as a data set.

A run with results on disk marks its store ``complete: false`` until it has finished; the
store's arrays then hold fill values where partitions were not merged. Loading them as a data
set would silently read those, so the zarr, hdf5 and npy formats ask here first. This module
only reads the store's own description (JSON); it knows nothing of the UDF layer.
"""

from __future__ import annotations

import json
import os

from ...errors import DataSetError

__all__ = ["refuse_incomplete_results"]

_KEY = "udfkit"


def _description(path: str):
    """The store description of the result store at or around ``path``, or None."""
    try:
        if os.path.isdir(path) and os.path.isfile(os.path.join(path, "zarr.json")):
            with open(os.path.join(path, "zarr.json")) as f:
                return json.load(f).get("attributes", {}).get(_KEY)
        if os.path.isfile(path) and path.endswith(".npy"):
            # <store>/<name>.npy or <store>/<group>/<name>.npy
            parent = os.path.dirname(os.path.abspath(path))
            for d in (parent, os.path.dirname(parent)):
                fn = os.path.join(d, _KEY + ".json")
                if os.path.isfile(fn):
                    with open(fn) as f:
                        return json.load(f)
            return None
        if os.path.isfile(path) and os.path.splitext(path)[1].lower() in (".h5", ".hdf5", ".hdf"):
            import h5py

            with h5py.File(path, "r") as f:
                raw = f.attrs.get(_KEY)
            return None if raw is None else json.loads(raw)
    except (OSError, ValueError, AttributeError):
        return None
    return None


def refuse_incomplete_results(path: str, where: str) -> None:
    """Raise :class:`~udfkit.errors.DataSetError` when ``path`` belongs to a udfkit result
    store whose run has not finished."""
    meta = _description(os.fspath(path))
    if isinstance(meta, dict) and meta.get("format") == "udfkit-results" \
            and not meta.get("complete", False):
        raise DataSetError(f"{where} is a udfkit result store whose run has not finished "
                           "(interrupted or failed): positions that were not merged hold fill "
                           "values. Finish it with run_udf(..., out=..., resume=True) first")
