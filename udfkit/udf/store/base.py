"""The contract of a result-store format (:class:`StoreBackend`); one module per format
implements it (``_npy``, ``_zarr``, ``_hdf5``).

A backend only moves arrays: it creates the arrays of a :class:`~._layout.StoreLayout`,
writes boxes of nav arrays and whole sig/single arrays, keeps the store's metadata
(``complete`` is False until a run has finished) and hands out lazily read arrays. The run
logic (journal, resume, refusing targets) lives in :mod:`udfkit.udf.store.target`.
"""

from __future__ import annotations

import json
import os
import shutil
from abc import ABC, abstractmethod

__all__ = ["StoreBackend", "META_KEY"]

#: key of the store's own description in zarr/hdf5 attributes and name of the npy sidecar
META_KEY = "udfkit"


class StoreBackend(ABC):
    """One result store on disk.

    Parameters
    ----------
    path : str
        The file (hdf5) or directory (zarr, npy).
    options : dict
        Format options (``compression``).
    """

    #: the ``format`` name users pass
    format: str = ""
    #: True where a SIGKILL during a write can only damage the box being written (so a
    #: journal may trust the boxes of merged partitions)
    crash_safe: bool = True

    def __init__(self, path: str, options: dict | None = None):
        self.path = os.fspath(path)
        self.options = dict(options or {})

    # -- recognising a store ----------------------------------------------------------------
    @classmethod
    @abstractmethod
    def read_meta(cls, path: str) -> dict | None:
        """The store's description if ``path`` is a udfkit result store of this format."""

    #: the journal inside the store (a directory of udfkit's own) rather than beside it
    journal_inside: bool = False

    @property
    def journal_path(self) -> str:
        """Where the journal lives: inside an npy directory, beside a zarr store or HDF5
        file (where it would not be part of the format)."""
        if self.journal_inside:
            return os.path.join(self.path, "udfkit-journal.npz")
        return self.path.rstrip("/") + ".udfkit-journal.npz"

    def remove(self) -> None:
        """Delete the store (only called on a path that :meth:`read_meta` recognised)."""
        if os.path.isdir(self.path):
            shutil.rmtree(self.path)
        elif os.path.exists(self.path):
            os.remove(self.path)
        j = self.journal_path
        if os.path.exists(j):
            os.remove(j)

    # -- writing ----------------------------------------------------------------------------
    @abstractmethod
    def create(self, layout, meta: dict) -> None:
        """Make the arrays of ``layout`` (nav ones filled with their fill value)."""

    @abstractmethod
    def open_existing(self, layout) -> None:
        """Open a store made by :meth:`create` for writing (resume)."""

    @abstractmethod
    def write_box(self, spec, slices: tuple, data) -> None:
        """Write ``data`` into the box ``slices`` of the nav array ``spec``."""

    @abstractmethod
    def save(self, spec, array) -> None:
        """Write a whole sig/single array."""

    @abstractmethod
    def set_meta(self, meta: dict) -> None:
        """Replace the store's description."""

    def flush(self) -> None:
        """Make what was written reach the operating system (before a journal entry)."""

    @abstractmethod
    def close(self) -> None:
        """Close writers; readers handed out stay usable."""

    @abstractmethod
    def reader(self, spec):
        """A lazily read array of ``spec`` (numpy-like indexing, ``shape``, ``dtype``)."""


def meta_json(meta: dict) -> str:
    return json.dumps(meta, sort_keys=True)
