"""Data set formats, registered by name and imported only when used.

``Context.load(filetype, **params)`` looks the name up here. ``"auto"`` detects the format
from the magic bytes or the extension of ``path`` (see :func:`detect_format`).
"""

from __future__ import annotations

import importlib
import os

from ...errors import DataSetError, DataSetFileNotFoundError

__all__ = ["FORMATS", "get_format", "detect_format", "make_dataset", "with_sidecar"]

FORMATS = {
    "raw": "udfkit.io.formats.raw:RawFileDataSet",
    "npy": "udfkit.io.formats.npy:NPYDataSet",
    "memory": "udfkit.io.formats.memory:MemoryDataSet",
}

_NPY_MAGIC = b"\x93NUMPY"
_HDF5_MAGIC = b"\x89HDF\r\n\x1a\n"
_RAW_EXTENSIONS = (".raw", ".bin", ".dat")


def get_format(name: str):
    """Return the DataSet class registered as ``name``."""
    if not isinstance(name, str) or name.lower() not in FORMATS:
        raise DataSetError(f"filetype: expected one of {sorted(FORMATS) + ['auto']}, got {name!r}")
    module, attr = FORMATS[name.lower()].split(":")
    return getattr(importlib.import_module(module), attr)


def detect_format(params: dict) -> str:
    """Name of the format for ``ctx.load("auto", **params)``.

    An array in ``data`` is the memory format; files are recognised by magic bytes first,
    then by extension. Raw files have no header, so they need explicit parameters.
    """
    if "data" in params:
        return "memory"
    path = params.get("path")
    if path is None:
        raise DataSetError("filetype 'auto' needs a path= (or data= for an array in memory)")
    path = os.fspath(path)
    if not os.path.exists(path):
        raise DataSetFileNotFoundError(f"file {path!r} does not exist")
    with open(path, "rb") as f:
        head = f.read(8)
    if head.startswith(_NPY_MAGIC):
        return "npy"
    if head.startswith(_HDF5_MAGIC):
        raise DataSetError(f"file {path!r} is an HDF5 file; HDF5 is not a supported format of this "
                           f"udfkit version (supported: {sorted(FORMATS)})")
    if path.lower().endswith(_RAW_EXTENSIONS) or os.path.isfile(path + SIDECAR_SUFFIX):
        needed = [k for k in ("dtype", "nav_shape", "sig_shape") if params.get(k) is None]
        if needed:
            raise DataSetError(
                f"file {path!r} looks like a raw file (no header to detect the layout from); "
                f"raw needs {', '.join(needed)}: ctx.load('raw', path=..., dtype=..., "
                "nav_shape=..., sig_shape=...)")
        return "raw"
    raise DataSetError(f"cannot detect the format of {path!r} (not .npy, no known magic bytes); "
                       f"name it explicitly, one of {sorted(FORMATS)}")


SIDECAR_SUFFIX = ".json"
_SIDECAR_KEYS = ("dtype", "nav_shape", "sig_shape")


def with_sidecar(params: dict) -> dict:
    """Fill missing raw parameters from ``<path>.json`` (written by ``Context.export``).

    The sidecar holds ``dtype``, ``nav_shape`` and ``sig_shape``; given parameters win.
    """
    path = params.get("path")
    if path is None or all(params.get(k) is not None for k in _SIDECAR_KEYS):
        return params
    side = os.fspath(path) + SIDECAR_SUFFIX
    if not os.path.isfile(side):
        return params
    import json

    try:
        with open(side) as f:
            found = json.load(f)
    except (OSError, ValueError) as e:
        raise DataSetError(f"sidecar {side!r} of raw file {os.fspath(path)!r} cannot be read: {e}") from None
    if not isinstance(found, dict):
        raise DataSetError(f"sidecar {side!r}: expected a JSON object with {list(_SIDECAR_KEYS)}")
    out = dict(params)
    for key in _SIDECAR_KEYS:
        if out.get(key) is None and found.get(key) is not None:
            out[key] = found[key]
    return out


def make_dataset(filetype: str, params: dict):
    """Construct (not initialize) the data set for ``filetype`` and load parameters.

    Raw files written by ``Context.export`` carry a JSON sidecar; its values fill the
    parameters that are not given.
    """
    is_auto = isinstance(filetype, str) and filetype.lower() == "auto"
    if is_auto or (isinstance(filetype, str) and filetype.lower() == "raw"):
        params = with_sidecar(params)
    if is_auto:
        filetype = detect_format(params)
    cls = get_format(filetype)
    try:
        return cls(**params)
    except TypeError as e:
        import inspect

        accepted = [p for p in inspect.signature(cls.__init__).parameters if p != "self"]
        raise DataSetError(f"{filetype} format: {e}; accepted parameters: {accepted}") from None
