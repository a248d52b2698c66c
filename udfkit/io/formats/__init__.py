"""Data set formats: one registry of :class:`~udfkit.io.formats.base.Format` classes.

``Context.load(filetype, **params)`` looks the name up here; ``"auto"`` asks every format
how sure it is that it can open the path (:func:`detect_format`). Built-in formats are
listed in :data:`BUILTIN_FORMATS`; other packages add theirs through the entry-point group
``udfkit.formats`` (``name = "package.module:FormatClass"``). Format modules are imported
only when a format is used or a path is detected, and they import their optional
dependencies (h5py, zarr, tifffile) only when a file is opened.
"""

from __future__ import annotations

import difflib
import importlib
import os
from functools import lru_cache

from ...errors import DataSetError, DataSetFileNotFoundError

__all__ = ["BUILTIN_FORMATS", "all_formats", "get_format", "detect_format", "make_dataset",
           "complete_params"]

#: name → ``"module:FormatClass"``; adding a format is one line here
BUILTIN_FORMATS = {
    "raw": "udfkit.io.formats.raw:RawFormat",
    "npy": "udfkit.io.formats.npy:NPYFormat",
    "memory": "udfkit.io.formats.memory:MemoryFormat",
    "hdf5": "udfkit.io.formats.hdf5:HDF5Format",
    "dask": "udfkit.io.formats.dask:DaskFormat",
    "stack": "udfkit.io.formats.stack:StackFormat",
    "zarr": "udfkit.io.formats.zarr:ZarrFormat",
    "tiff": "udfkit.io.formats.tiff:TIFFFormat",
    "binary": "udfkit.io.formats.binary:BinaryFormat",
    "mrc": "udfkit.io.formats.mrc:MRCFormat",
    "blo": "udfkit.io.formats.blo:BLOFormat",
    "empad": "udfkit.io.formats.empad:EMPADFormat",
    "seq": "udfkit.io.formats.seq:SEQFormat",
    "tvips": "udfkit.io.formats.tvips:TVIPSFormat",
    "ser": "udfkit.io.formats.ser:SERFormat",
    "dm": "udfkit.io.formats.dm:DMFormat",
    "mib": "udfkit.io.formats.mib:MIBFormat",
    "raw_csr": "udfkit.io.formats.raw_csr:RawCSRFormat",
}

ENTRY_POINT_GROUP = "udfkit.formats"


@lru_cache(maxsize=1)
def _entry_points() -> dict:
    from importlib.metadata import entry_points

    return {ep.name.lower(): ep.value for ep in entry_points(group=ENTRY_POINT_GROUP)
            if ep.name.lower() not in BUILTIN_FORMATS}


def _registry() -> dict:
    return {**BUILTIN_FORMATS, **_entry_points()}


def _import(spec: str):
    module, attr = spec.split(":")
    return getattr(importlib.import_module(module), attr)


def all_formats() -> dict:
    """``{name: Format class}`` of every registered format (built-in first)."""
    return {name: _import(spec) for name, spec in _registry().items()}


def get_format(name: str):
    """Return the :class:`~udfkit.io.formats.base.Format` registered as ``name``.

    Examples
    --------
    >>> get_format("raw").name
    'raw'
    >>> get_format("hdf")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    udfkit.errors.DataSetError: filetype: expected one of [...], got 'hdf'...
    """
    registry = _registry()
    if not isinstance(name, str) or name.lower() not in registry:
        names = sorted(registry) + ["auto"]
        close = difflib.get_close_matches(str(name).lower(), names, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise DataSetError(f"filetype: expected one of {names}, got {name!r}{hint}")
    return _import(registry[name.lower()])


def detect_format(params: dict) -> str:
    """Name of the format for ``ctx.load("auto", **params)``.

    An in-memory input (``data=``, ``dask_array=``) names its format; a path is offered to
    every format's ``guess_can_open``, and the surest wins (magic bytes beat extensions).
    """
    formats = all_formats()
    for name, fmt in formats.items():
        if fmt.array_param is not None and fmt.array_param in params:
            return name
    path = params.get("path")
    if path is None:
        takes = sorted(f"{f.array_param}=" for f in formats.values() if f.array_param)
        raise DataSetError(f"filetype 'auto' needs a path= (or one of {takes} for an array)")
    if isinstance(path, (list, tuple)):
        if not path:
            raise DataSetError("filetype 'auto': path is an empty list")
        path = path[0]
        if isinstance(path, (list, tuple)):
            raise DataSetError(f"filetype 'auto': path is a list of lists ({path!r}, ...); give "
                               "one path or a flat list of paths")
    path = os.fspath(path)
    if not os.path.exists(path) and not any(ch in path for ch in "*?["):
        raise DataSetFileNotFoundError(f"file {path!r} does not exist")
    scores = {}
    for name, fmt in formats.items():
        if fmt.array_param is not None:
            continue
        score = fmt.guess_can_open(path)
        if score > 0:
            scores[name] = score
    if not scores and os.path.isdir(path):
        raise DataSetError(
            f"cannot detect the format of {path!r}: it is a directory, and 'auto' accepts a "
            "directory only when it is a zarr store (zarr.json or .zarray/.zgroup at its root), "
            "a Thunder binary stack (conf.json and .bin files), or a folder of TIFF or DM files; "
            "give the path of a file in it, or name the format: ctx.load(FORMAT, path=...)")
    if not scores:
        tried = ", ".join(sorted(f.describe() for f in formats.values() if f.array_param is None))
        raise DataSetError(f"cannot detect the format of {path!r}: none of the formats recognises it "
                           f"(tried {tried}); name it explicitly: ctx.load(FORMAT, path=...)")
    name = max(scores, key=scores.__getitem__)
    fmt = formats[name]
    needed = [k for k in fmt.required_params if params.get(k) is None]
    if needed:
        example = ", ".join(f"{k}=..." for k in ("path",) + tuple(fmt.required_params))
        raise DataSetError(f"file {path!r} looks like a {name} file, which has no header to detect "
                           f"the layout from; {name} needs {', '.join(needed)}: "
                           f"ctx.load({name!r}, {example})")
    return name


def complete_params(fmt, params: dict) -> dict:
    """The format's own completion of the parameters (the raw format's JSON sidecar)."""
    complete = getattr(fmt, "complete_params", None)
    return complete(params) if complete is not None else params


def check_params(fmt, params: dict) -> None:
    """Unknown parameter names are an error that lists the accepted ones."""
    accepted = fmt.param_names()
    unknown = [k for k in params if k not in accepted]
    if not unknown:
        return
    hints = []
    for k in unknown:
        close = difflib.get_close_matches(k, accepted, n=1)
        if close:
            hints.append(f"{k!r} → did you mean {close[0]!r}?")
    hint = f" ({'; '.join(hints)})" if hints else ""
    raise DataSetError(f"{fmt.name} format: unknown parameter{'s' if len(unknown) > 1 else ''} "
                       f"{', '.join(map(repr, unknown))}{hint}; accepted parameters: {accepted}")


def check_path_kind(fmt, params: dict) -> None:
    """A format that opens one file refuses a list of paths with a pointer to ``stack``.

    Without this check the list reaches ``os.fspath`` deep inside the format and the user
    sees a bare ``TypeError``.
    """
    path = params.get("path")
    kinds = {p.name: p.kind for p in fmt.params}
    if kinds.get("path") != "path" or not isinstance(path, (list, tuple)):
        return
    raise DataSetError(
        f"{fmt.name} format: path takes one file, got a {type(path).__name__} of {len(path)} paths; to "
        f"join several {fmt.name} files along the navigation axis load each and stack them: "
        f"ctx.load('stack', datasets=[ctx.load({fmt.name!r}, path=p, ...) for p in paths])")


def make_dataset(filetype: str, params: dict):
    """Construct (not initialize) the data set for ``filetype`` and the load parameters."""
    params = dict(params)
    if isinstance(filetype, str) and filetype.lower() == "auto":
        # the sidecar of a raw file tells "auto" the layout, so fill it in first
        raw = get_format("raw")
        filetype = detect_format(complete_params(raw, params))
    fmt = get_format(filetype)
    params = complete_params(fmt, params)
    check_params(fmt, params)
    check_path_kind(fmt, params)
    return fmt.dataset_class()(**params)
