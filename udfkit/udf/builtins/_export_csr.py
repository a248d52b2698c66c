"""The ``raw_csr`` export target: any data set written as LiberTEM's sparse CSR format.

``ctx.export(ds, "out.toml", format="raw_csr")`` (or any path ending in ``.toml``) writes

* ``out.indptr.raw`` (int64, frames + 1 entries), ``out.indices.raw`` (int32, or int64 for
  frames of 2**31 pixels or more) and ``out.data.raw`` (the exported dtype) next to the TOML;
* ``out.toml``, the descriptor (:func:`~udfkit.io.formats.raw_csr.write_descriptor`), last,
  when every frame is written: a TOML that is there describes complete files.

Which pixels are kept: by default every pixel that is not exactly zero (NaN is kept); with
``threshold=t`` only pixels with ``abs(value) > t`` (NaN is dropped).

Rules
-----
* **Workers** turn each tile of whole frames into CSR rows (``numpy.nonzero`` of the kept
  pixels, in C order) and append them to three spool files of their partition
  (``rows-<first>.indices``, ``.data``, ``.counts``) in a spool directory next to the target:
  memory stays at a tile, the partition's rows go to disk as they come.
* **The main process** appends the spools to the three array files in row order: a
  partition whose result arrives before the rows ahead of it waits (its spools stay on disk)
  until they are in. The indptr of each partition is its row counts, summed onto the entries
  written so far. Copies are streamed a megabyte at a time.
* **Cleanup** as for the chunked targets: the spool directory goes after the last merge, when
  a run fails (``Context.export``), and when the next export to the same target starts.
"""

from __future__ import annotations

import numbers
import os
import shutil

import numpy as np

from ...errors import UDFError, UDFParameterError
from ._export_chunked import spool_dir
from ._export_targets import Target, remove_tree

__all__ = ["CSRTarget", "parse_threshold", "array_paths"]

_SUFFIXES = (".indptr.raw", ".indices.raw", ".data.raw")
#: bytes copied at a time when the main process appends a spool file
_COPY_BYTES = 1 << 20


def parse_threshold(fmt: str, threshold) -> float | None:
    """``None`` (drop exact zeros) or a number ``>= 0`` (drop ``abs(value) <= threshold``);
    only the raw_csr format takes one.

    Examples
    --------
    >>> parse_threshold("raw_csr", None), parse_threshold("raw_csr", 2)
    (None, 2.0)
    >>> parse_threshold("npy", 1)  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    udfkit.errors.UDFParameterError: export: threshold ... only format='raw_csr' takes one, ...
    """
    if threshold is None:
        return None
    if fmt != "raw_csr":
        raise UDFParameterError(f"export: threshold drops pixels of a sparse target; only "
                                f"format='raw_csr' takes one, got threshold={threshold!r} for {fmt}")
    if isinstance(threshold, bool) or not isinstance(threshold, numbers.Real) \
            or not np.isfinite(float(threshold)) or threshold < 0:
        raise UDFParameterError(f"export: threshold must be a finite number >= 0 (pixels with "
                                f"abs(value) <= threshold are dropped), got {threshold!r}")
    return float(threshold)


def array_paths(path: str) -> tuple:
    """The three array files of a raw_csr target: ``<stem>.indptr.raw`` and so on, next to it.

    Examples
    --------
    >>> [os.path.basename(p) for p in array_paths("/d/scan.toml")]
    ['scan.indptr.raw', 'scan.indices.raw', 'scan.data.raw']
    """
    stem = path[:-5] if path.lower().endswith(".toml") else path
    return tuple(stem + s for s in _SUFFIXES)


class CSRTarget(Target):
    """A raw_csr descriptor and its three array files; see the module docstring."""

    def __init__(self, params, shape, dtype, sig_dims):
        super().__init__(params, shape, dtype, sig_dims)
        self.sig_size = int(np.prod(self.sig_shape, dtype=np.int64))
        self.index_dtype = np.dtype(np.int32 if self.sig_size <= np.iinfo(np.int32).max else np.int64)
        self.threshold = getattr(params, "threshold", None)
        self.arrays = array_paths(self.path)
        self.spool = spool_dir(self.path)

    def _spool(self, first: int, kind: str) -> str:
        return os.path.join(self.spool, f"rows-{first}.{kind}")

    # -- main -------------------------------------------------------------------------------
    def prepare(self, dataset_paths=()):
        sources = [p for p in dataset_paths if os.path.exists(p)]

        def is_source(path):
            return os.path.exists(path) and any(os.path.samefile(p, path) for p in sources)

        # the descriptor itself is refused by Target.prepare; its array files are checked here
        if not is_source(self.path):
            for target in self.arrays:
                if is_source(target):
                    raise UDFError(f"RecordUDF: the target's array file {target!r} is a file of "
                                   "the data set being read; choose another path")
        super().prepare(dataset_paths)

    def remove_existing(self):
        super().remove_existing()
        for p in self.arrays:
            if os.path.isfile(p):
                os.remove(p)

    def create(self):
        remove_tree(self.spool)  # left by an earlier run that failed
        os.makedirs(self.spool, exist_ok=True)
        np.zeros(1, dtype=np.int64).tofile(self.arrays[0])
        for p in self.arrays[1:]:
            open(p, "wb").close()
        self._pending = {}  # first row -> rows, of merged partitions not yet appended
        self._next_row = 0
        self._nnz = 0

    def merge(self, first_row, n):
        if n == 0:
            return
        self._pending[int(first_row)] = int(n)
        while self._next_row in self._pending:
            first = self._next_row
            rows = self._pending.pop(first)
            self._append(first, rows)
            self._next_row += rows

    def _append(self, first: int, rows: int) -> None:
        counts = np.fromfile(self._spool(first, "counts"), dtype=np.int64)
        if counts.size != rows:
            raise UDFError(f"RecordUDF: the spool of rows {first}..{first + rows - 1} of "
                           f"{self.path!r} holds {counts.size} rows; expected {rows} (was the spool "
                           f"directory {self.spool!r} changed during the export?)")
        with open(self.arrays[0], "ab") as f:
            (np.cumsum(counts) + self._nnz).astype(np.int64).tofile(f)
        for kind, target in zip(("indices", "data"), self.arrays[1:]):
            with open(self._spool(first, kind), "rb") as src, open(target, "ab") as dst:
                shutil.copyfileobj(src, dst, _COPY_BYTES)
        self._nnz += int(counts.sum())
        for kind in ("counts", "indices", "data"):
            os.remove(self._spool(first, kind))

    def finalize(self):
        from ...io.formats.raw_csr import write_descriptor

        write_descriptor(self.path, nav_shape=self.nav_shape, sig_shape=self.sig_shape,
                         files=tuple(os.path.basename(p) for p in self.arrays),
                         dtypes=(np.dtype(np.int64), self.index_dtype, self.dtype))
        remove_tree(self.spool)

    def discard(self):
        remove_tree(self.spool)

    # -- worker -----------------------------------------------------------------------------
    def open(self, n):
        super().open(n)
        self._files = None
        self._finished = False

    def write(self, row, data):
        if self._files is None:
            # tiles arrive in order: the first one starts the partition
            self.first_row = int(row)
            self._files = [open(self._spool(self.first_row, kind), "wb")
                           for kind in ("counts", "indices", "data")]
        frames = np.ascontiguousarray(data).reshape(len(data), self.sig_size)
        keep = frames != 0 if self.threshold is None else np.abs(frames) > self.threshold
        rows, cols = np.nonzero(keep)
        counts = np.bincount(rows, minlength=len(frames)).astype(np.int64)
        counts_f, indices_f, data_f = self._files
        counts.tofile(counts_f)
        cols.astype(self.index_dtype).tofile(indices_f)
        frames[rows, cols].astype(self.dtype, copy=False).tofile(data_f)

    def finish(self):
        self._close_files()
        self._finished = True

    def _close_files(self):
        files, self._files = getattr(self, "_files", None), None
        for f in files or ():
            f.close()

    def close(self):
        self._close_files()
        if not getattr(self, "_finished", True) and self.first_row >= 0:
            for kind in ("counts", "indices", "data"):
                try:
                    os.remove(self._spool(self.first_row, kind))
                except FileNotFoundError:
                    pass
