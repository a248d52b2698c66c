"""Parsing the options of an export: target format, compression, chunks, dataset name.

Each user-facing form has one ``parse_*`` function that returns a canonical value or raises
:class:`~udfkit.errors.UDFParameterError` (a ``ValueError``) naming the option, what it
accepts and what it got; they run when :class:`~udfkit.udf.RecordUDF` is built, before anything is read.
"""

from __future__ import annotations

import importlib
import os

import numpy as np

from ...errors import UDFError, UDFParameterError

__all__ = ["FORMATS", "COMPRESSIONS", "parse_format", "parse_compression", "parse_chunks",
           "parse_ds_path", "default_chunks", "require", "CHUNK_BYTES"]

#: every target format, in the order the error messages list them
FORMATS = ("npy", "raw", "hdf5", "zarr", "binary", "raw_csr")

#: compression name → (default level, accepted levels) per format that compresses
COMPRESSIONS: dict[str, dict[str, tuple[int | None, range | None]]] = {
    "hdf5": {"gzip": (4, range(0, 10)), "lzf": (None, None), "zstd": (3, range(1, 23)),
             "blosc": (5, range(0, 10))},
    "zarr": {"gzip": (5, range(0, 10)), "zstd": (3, range(1, 23)), "blosc": (5, range(0, 10))},
}

#: default chunk size: large enough that per-chunk overhead (one file per chunk in zarr,
#: one B-tree entry in HDF5) is small, small enough for HDF5's default 1 MiB chunk cache
CHUNK_BYTES = 1 << 20

_EXTENSIONS = {".npy": "npy", ".h5": "hdf5", ".hdf5": "hdf5", ".hdf": "hdf5", ".zarr": "zarr",
               ".toml": "raw_csr"}


def parse_format(path: str, fmt) -> str:
    """The target format: ``fmt`` when given, else chosen from the name of ``path``.

    Examples
    --------
    >>> parse_format("scan.h5", None), parse_format("scan.zarr", None), parse_format("x.dat", None)
    ('hdf5', 'zarr', 'raw')
    >>> parse_format("stack", "binary")
    'binary'
    """
    if fmt is None:
        name = os.path.normpath(path)
        ext = os.path.splitext(name)[1].lower()
        if ext in _EXTENSIONS:
            return _EXTENSIONS[ext]
        if os.path.isdir(name):
            raise UDFError(f"export: the target {path!r} is a directory; pass format='binary' to "
                           "write a Thunder binary stack into it, or name a file")
        return "raw"
    if not isinstance(fmt, str) or fmt.lower() not in FORMATS:
        raise UDFParameterError(f"export: format must be one of {list(FORMATS)} or None (from the "
                       f"extension), got {fmt!r}")
    return fmt.lower()


def parse_compression(fmt: str, compression) -> tuple | None:
    """``None`` or ``(name, level)``; ``compression`` is a name or ``"name:level"``.

    Examples
    --------
    >>> parse_compression("hdf5", "gzip"), parse_compression("zarr", "zstd:9")
    (('gzip', 4), ('zstd', 9))
    >>> parse_compression("npy", None) is None
    True
    """
    if compression is None or (isinstance(compression, str) and compression.lower() == "none"):
        return None
    if isinstance(compression, tuple) and len(compression) == 2:
        # the parsed form, as a UDF rebuilt on a worker passes it again
        name, level = compression
        compression = str(name) if level is None else f"{name}:{level}"
    accepted = COMPRESSIONS.get(fmt, {})
    if not accepted:
        raise UDFParameterError(f"export: the {fmt} format cannot be compressed; compression must be None, "
                       f"got {compression!r} (hdf5 takes {list(COMPRESSIONS['hdf5'])}, zarr "
                       f"takes {list(COMPRESSIONS['zarr'])})")
    if not isinstance(compression, str):
        raise UDFParameterError(f"export: compression must be a name such as 'gzip' or 'gzip:6', got "
                       f"{compression!r}")
    name, _, level_text = compression.lower().partition(":")
    if name not in accepted:
        raise UDFParameterError(f"export: compression for {fmt} must be one of {list(accepted)} or None, "
                       f"got {compression!r}")
    default, levels = accepted[name]
    if not level_text:
        return name, default
    try:
        level = int(level_text)
    except ValueError:
        level = None
    if levels is None or level not in levels:
        allowed = "no level" if levels is None else f"a level in {levels.start}..{levels.stop - 1}"
        raise UDFParameterError(f"export: compression {name!r} takes {allowed}, got {compression!r}")
    return name, level


def parse_chunks(fmt: str, chunks, compression) -> tuple | None:
    """``None`` (the default) or a tuple of positive ints; only hdf5 and zarr are chunked."""
    if chunks is None:
        return None
    if fmt not in COMPRESSIONS:
        raise UDFParameterError(f"export: the {fmt} format is not chunked; chunks must be None, got "
                       f"{chunks!r}")
    try:
        out = tuple(int(c) for c in chunks)
    except (TypeError, ValueError):
        out = ()
    if not out or any(c < 1 for c in out):
        raise UDFParameterError(f"export: chunks must be a tuple of positive ints, one per axis of the "
                       f"written array, got {chunks!r}")
    return out


def parse_ds_path(fmt: str, ds_path) -> str | None:
    """The name of the array inside an HDF5 file or zarr store (default ``"data"``).

    Examples
    --------
    >>> parse_ds_path("hdf5", "/entry/data"), parse_ds_path("zarr", None), parse_ds_path("npy", None)
    ('entry/data', 'data', None)
    """
    if fmt not in COMPRESSIONS and ds_path is None:
        return None
    if ds_path is None:
        return "data"
    if fmt not in COMPRESSIONS:
        raise UDFParameterError(f"export: ds_path/array_path name an array inside an hdf5 file or a zarr "
                       f"store; the {fmt} format has none, got {ds_path!r}")
    name = str(ds_path).strip("/")
    if not name or any(part in ("", ".", "..") for part in name.split("/")):
        raise UDFParameterError(f"export: ds_path must be a name like 'data' or '/entry/data', got "
                       f"{ds_path!r}")
    return name


def default_chunks(shape: tuple, sig_dims: int, itemsize: int) -> tuple:
    """Whole frames, as many consecutive ones along the last nav axis as fit ``CHUNK_BYTES``.

    Chunks of whole frames along the flat nav order mean that a chunk lies in at most two
    partitions (see :mod:`udfkit.udf.builtins._export_chunked`) and that a reader's
    partitions, which follow the flat nav order too, decode each chunk once.

    Examples
    --------
    >>> default_chunks((8, 16, 64, 64), 2, 2)
    (1, 16, 64, 64)
    >>> default_chunks((100, 1024, 1024), 2, 4)
    (1, 1024, 1024)
    """
    sig = tuple(shape[len(shape) - sig_dims:])
    nav = tuple(shape[:len(shape) - sig_dims])
    frame_bytes = max(1, int(np.prod(sig, dtype=np.int64)) * itemsize)
    k = max(1, min(max(nav[-1], 1), CHUNK_BYTES // frame_bytes))
    return (1,) * (len(nav) - 1) + (k,) + tuple(max(1, s) for s in sig)


def require(module: str, extra: str, what: str):
    """Import an optional dependency or raise one line naming the extra to install."""
    try:
        return importlib.import_module(module)
    except ImportError:
        raise UDFError(f"export: {what} needs the Python package {module!r}, which is not "
                       f"installed; install it with: pip install 'udfkit[{extra}]'") from None
