"""The format contract: what one data set format declares about itself.

A format is one module under :mod:`udfkit.io.formats` holding a small :class:`Format`
subclass and its :class:`~udfkit.io.base.DataSet`. The :class:`Format` says

* its ``name`` (what ``ctx.load(name, ...)`` and ``udfkit --type`` take);
* how to recognise a path: ``extensions``, ``magic`` bytes, and :meth:`Format.guess_can_open`,
  which may also look at directories (a zarr store, a folder of TIFF or ``.bin`` files);
* an in-memory input it takes instead of a path (``array_param``: ``data`` for ``memory``,
  ``dask_array`` for ``dask``);
* its load parameters (:class:`Param`, with type and default): ``ctx.load`` rejects names
  that are not among them with the accepted list, and the command line builds its options
  from them;
* which :class:`~udfkit.io.base.DataSet` it makes (``dataset``, imported lazily, so that the
  registry can be read without importing h5py, zarr or tifffile).

How a data set cuts itself into partitions and which tiles it prefers belong to the
:class:`~udfkit.io.base.DataSet`: :meth:`~udfkit.io.base.DataSet.partition_bounds` (aligned to
chunk boundaries for chunked containers) and
:meth:`~udfkit.io.base.DataSet.get_tiling_constraints`.

Adding a format is one module, one line in :data:`udfkit.io.formats.BUILTIN_FORMATS` (or an
entry point in the group ``udfkit.formats`` for a third-party package), and one test class
that subclasses :class:`udfkit.testing.DataSetTests`.
"""

from __future__ import annotations

import importlib
import os
from dataclasses import dataclass
from typing import ClassVar

__all__ = ["Param", "Format", "read_head", "COMMON_PARAMS"]

#: how many bytes of a file :meth:`Format.guess_can_open` gets to see
HEAD_BYTES = 512


@dataclass(frozen=True)
class Param:
    """One load parameter of a format.

    Attributes
    ----------
    name : str
        The keyword of ``ctx.load``.
    kind : str
        What it takes, for the command line and the docs: ``"path"``, ``"paths"`` (one path
        or a list), ``"int"``, ``"shape"``, ``"dtype"``, ``"str"``, ``"bool"``, ``"backend"``,
        or ``"object"`` (arrays and other Python objects: not on the command line).
    default : object
        The default value (``None``: not given).
    help : str
        One line for ``--help``.
    """

    name: str
    kind: str
    default: object = None
    help: str = ""

    @property
    def on_command_line(self) -> bool:
        """Whether ``udfkit info/run/export`` offer ``--<name>`` for it."""
        return self.kind not in ("object", "path", "paths")


def _p(name, kind, default=None, help=""):
    return Param(name, kind, default, help)


#: parameters most formats share; formats list the ones they take
COMMON_PARAMS = {
    "nav_shape": _p("nav_shape", "shape", None, "navigation shape, e.g. 128,128"),
    "sig_shape": _p("sig_shape", "shape", None, "signal (frame) shape, e.g. 256,256"),
    "sig_dims": _p("sig_dims", "int", None, "number of trailing signal axes (default 2)"),
    "sync_offset": _p("sync_offset", "int", 0,
                      "skip N frames at the start (negative: N positions have no frame)"),
    "num_partitions": _p("num_partitions", "int", None, "number of partitions"),
    "io_backend": _p("io_backend", "backend", None, "mmap (default), buffered or direct"),
    "allow_partial": _p("allow_partial", "bool", False,
                        "accept fewer frames than nav_shape needs (aborted acquisition)"),
}


def read_head(path: str, n: int = HEAD_BYTES) -> bytes:
    """The first ``n`` bytes of a regular file (``b""`` for directories and unreadable paths)."""
    try:
        with open(path, "rb") as f:
            return f.read(n)
    except OSError:
        return b""


class Format:
    """Base of the format descriptions (see the module docstring).

    Subclasses set the class attributes; most need no method of their own.

    Examples
    --------
    >>> from udfkit.io.formats import get_format
    >>> fmt = get_format("npy")
    >>> fmt.name, fmt.extensions
    ('npy', ('.npy',))
    >>> [p.name for p in fmt.params][:3]
    ['path', 'nav_shape', 'sig_shape']
    """

    #: name for ``ctx.load``
    name: ClassVar[str] = "?"
    #: ``"module:Class"`` of the DataSet, imported when the format is used
    dataset: ClassVar[str] = ""
    #: file name endings it recognises (lower case, with the dot)
    extensions: ClassVar[tuple] = ()
    #: byte strings a file of this format starts with
    magic: ClassVar[tuple] = ()
    #: the keyword of an in-memory input taken instead of ``path`` (``None``: a path)
    array_param: ClassVar[str | None] = None
    #: the load parameters, in the order of the DataSet's signature
    params: ClassVar[tuple] = ()
    #: optional dependency: ``(module, extra)``; a missing module is named with the extra
    requires: ClassVar[tuple | None] = None
    #: parameters without which a file cannot be read ("auto" says so instead of guessing)
    required_params: ClassVar[tuple] = ()

    @classmethod
    def guess_can_open(cls, path: str) -> float:
        """How sure this format is that it can open ``path``: 0 (no) to 1 (magic bytes match).

        The default looks at ``magic`` (1.0) and then at ``extensions`` (0.5) of a regular
        file; formats stored as directories override it.
        """
        if not os.path.isfile(path):
            return 0.0
        if cls.magic:
            head = read_head(path)
            if any(head.startswith(m) for m in cls.magic):
                return 1.0
        if path.lower().endswith(cls.extensions):
            return 0.5
        return 0.0

    @classmethod
    def dataset_class(cls):
        """The :class:`~udfkit.io.base.DataSet` subclass (imports the format's module)."""
        cls.check_requirements()
        module, attr = cls.dataset.split(":")
        return getattr(importlib.import_module(module), attr)

    @classmethod
    def check_requirements(cls) -> None:
        """Raise a one-line error naming the extra when an optional dependency is missing."""
        if cls.requires is None:
            return
        from ...errors import DataSetError

        module, extra = cls.requires
        try:
            importlib.import_module(module)
        except ImportError:
            raise DataSetError(f"the {cls.name} format needs the Python package {module!r}, which is "
                               f"not installed; install it with: pip install 'udfkit[{extra}]'") \
                from None

    @classmethod
    def param_names(cls) -> list:
        return [p.name for p in cls.params]

    @classmethod
    def describe(cls) -> str:
        """One line: the name and what it opens."""
        what = ", ".join(cls.extensions) if cls.extensions else (cls.array_param or "")
        return f"{cls.name} ({what})" if what else cls.name
