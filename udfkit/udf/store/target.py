"""Results on disk for one run: :class:`ResultStore` (what the user names with ``out=``) and
:class:`StoreSession` (what :class:`~udfkit.udf.driver.UDFRun` calls while it runs).

Rules of a run with a store
---------------------------
* Nav buffers (any ``extra_shape``) live only in the store, in the shape
  ``nav_shape + extra_shape``; the main process holds one partition's block per buffer while
  it merges that partition (``merge(dest, src)`` sees the block), then writes it as at most
  ``2 * nav_dims - 1`` boxes. Sig and single buffers stay in memory, are checkpointed with
  the journal, and are written into the store when the run ends.
* Partitions merge in partition order (as ``deterministic=True``), so the journal's merged
  partitions are always the first tasks and a resumed run merges the rest exactly as an
  uninterrupted run would: results are equal bit for bit.
* The store's description says ``complete: false`` until the very end of a successful run;
  a failed run leaves it so, with a journal naming what is merged (``resume=True`` goes on).
* Workers write the nav rows of their partition into npy and zarr stores themselves, for
  UDFs without a ``merge`` of their own (:mod:`udfkit.udf.store.direct`: who writes which
  chunk, how a worker that does not see the store falls back); the main process writes the
  rest (rows in chunks two partitions share, HDF5 stores, UDFs that merge nav rows).
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass

import numpy as np

from ...errors import ResultStoreError, ResultStoreExistsError, UDFError
from ..base import _overrides
from ._layout import ArraySpec, StoreLayout, flat_boxes, group_names
from .direct import DIRECT_FORMATS, DirectWriter, EdgeRows, chunk_length, store_failure
from .journal import Journal, differences, fingerprint

__all__ = ["ResultStore", "StoreSession", "detect_format", "STORE_FORMATS"]

STORE_FORMATS = ("zarr", "hdf5", "npy")

#: seconds between journal checkpoints (the last merge is always checkpointed)
CHECKPOINT_INTERVAL = 1.0


def detect_format(path: str) -> str:
    """The store format a path's name asks for.

    Examples
    --------
    >>> detect_format("r.zarr"), detect_format("r.h5"), detect_format("results")
    ('zarr', 'hdf5', 'npy')
    """
    ext = os.path.splitext(os.fspath(path).rstrip("/"))[1].lower()
    if ext == ".zarr":
        return "zarr"
    if ext in (".h5", ".hdf5", ".hdf"):
        return "hdf5"
    return "npy"


def _backend_class(fmt: str):
    if fmt == "zarr":
        from ._zarr import ZarrStore

        return ZarrStore
    if fmt == "hdf5":
        from ._hdf5 import Hdf5Store

        return Hdf5Store
    from ._npy import NpyStore

    return NpyStore


@dataclass(frozen=True)
class ResultStore:
    """Where a run puts its results on disk (``run_udf(out=ResultStore(...))``; a plain path
    means ``ResultStore(path)``).

    Parameters
    ----------
    path : str or os.PathLike
        ``*.zarr``: a zarr (format 3) store; ``*.h5``/``*.hdf5``: an HDF5 file; any other
        name: a directory with one ``.npy`` file per buffer.
    format : {"zarr", "hdf5", "npy"}, optional
        Overrides the choice by name.
    compression : str, optional
        zarr: ``"gzip"``, ``"zstd"``, ``"blosc"``; hdf5: also ``"lzf"``; with a level as
        ``"zstd:3"`` (as ``Context.export``). A compressed HDF5 store cannot be resumed.
    overwrite : bool
        Replace an existing udfkit result store (never anything else).
    resume : bool
        Go on with the run that an existing store's journal describes.
    direct : bool or None
        Whether workers write their partitions' nav rows themselves (npy and zarr; see
        :mod:`udfkit.udf.store.direct`). ``None`` (default): where they see the store at
        ``path`` (workers on other machines need a shared file system with the same path),
        else the main process writes; ``True``: a worker that does not see it fails;
        ``False``: only the main process writes.

    Examples
    --------
    >>> ResultStore("r.zarr").format, ResultStore("r.h5").format, ResultStore("out").format
    ('zarr', 'hdf5', 'npy')
    """

    path: str
    format: str | None = None
    compression: object = None
    overwrite: bool = False
    resume: bool = False
    direct: bool | None = None

    def __post_init__(self):
        object.__setattr__(self, "path", os.fspath(self.path))
        fmt = self.format if self.format is not None else detect_format(self.path)
        if fmt not in STORE_FORMATS:
            raise ResultStoreError(f"result store {self.path!r}: format must be one of "
                                   f"{STORE_FORMATS}, got {fmt!r}")
        object.__setattr__(self, "format", fmt)
        if self.compression is not None:
            from ..builtins._export_options import parse_compression

            if fmt == "npy":
                raise ResultStoreError(f"result store {self.path!r}: npy stores are not "
                                       f"compressed; got compression={self.compression!r}")
            object.__setattr__(self, "compression", parse_compression(fmt, self.compression))
        if self.overwrite and self.resume:
            raise ResultStoreError(f"result store {self.path!r}: overwrite=True and resume=True "
                                   "contradict each other; give one")
        if self.direct not in (None, True, False):
            raise ResultStoreError(f"result store {self.path!r}: direct must be None, True or "
                                   f"False, got {self.direct!r}")
        if self.direct and fmt not in DIRECT_FORMATS:
            raise ResultStoreError(f"result store {self.path!r}: direct=True, but workers cannot "
                                   f"write a {fmt} store concurrently (only {DIRECT_FORMATS}); "
                                   "the main process writes HDF5 files")

    @classmethod
    def coerce(cls, out, overwrite: bool = False, resume: bool = False) -> ResultStore:
        """``out`` as a :class:`ResultStore`; ``overwrite``/``resume`` given to ``run_udf``
        apply on top of its own."""
        if isinstance(out, ResultStore):
            if overwrite or resume:
                return cls(out.path, out.format, out.compression, out.overwrite or overwrite,
                           out.resume or resume, out.direct)
            return out
        if isinstance(out, (str, os.PathLike)):
            return cls(os.fspath(out), overwrite=overwrite, resume=resume)
        raise ResultStoreError(f"out: expected a path or a ResultStore, got {type(out).__name__}")

    def backend(self):
        opts = {"compression": self.compression}
        return _backend_class(self.format)(self.path, opts)


def _name(u) -> str:
    return type(u).__name__


def build_layout(udfs, specs, groups, nav_shape, sig_shape, total_frames, ranges) -> StoreLayout:
    """The :class:`StoreLayout` of a run of ``udfs`` (their buffer ``specs``) whose
    partitions cover the flat nav ``ranges`` ``[(start, stop), ...]``; refuses what a store
    cannot hold."""
    from ..buffers import buffer_shape

    arrays = []
    for u, sp, g in zip(udfs, specs, groups):
        has_nav = any(s.kind == "nav" for s in sp.values())
        if has_nav and _overrides(type(u), "get_results"):
            raise UDFError(f"{_name(u)} computes its results in get_results(), which needs its "
                           "whole nav buffers in memory (get_results may combine any positions, "
                           "so it cannot run piece by piece on the store); results on disk "
                           "(out=) store nav buffers as partitions are merged. Run it without "
                           "out=, or store the buffers it computes from with a UDF that keeps "
                           "the default get_results")
        for name, spec in sp.items():
            if spec.dtype.kind in "OUSV" or spec.dtype.hasobject:
                raise UDFError(f"{_name(u)} buffer {name!r} has dtype {spec.dtype}, which a result "
                               "store cannot hold; use a numeric or bool dtype, or run without out=")
            if spec.kind == "nav":
                arrays.append(ArraySpec(g, name, "nav", tuple(nav_shape) + spec.extra_shape,
                                        spec.dtype, spec.extra_shape))
            elif spec.use != "private":
                arrays.append(ArraySpec(g, name, spec.kind,
                                        buffer_shape(spec, total_frames, sig_shape),
                                        spec.dtype, spec.extra_shape))
    longest = max((int(b) - int(a) for a, b in ranges), default=0)
    return StoreLayout(tuple(nav_shape), tuple(sig_shape), tuple(arrays), longest)


def _layout(run, groups) -> StoreLayout:
    return build_layout(run.udfs, run.specs, groups, run.nav_shape, run.sig_shape,
                        run.total_frames, [(p.start, p.stop) for p in run.partitions])


def direct_chunk(fmt: str, layout: StoreLayout, spec: ArraySpec) -> int:
    """Flat nav positions of one chunk of ``spec`` as direct writers see it (npy: a row)."""
    return 1 if fmt == "npy" else chunk_length(layout.chunks(spec), len(layout.nav_shape))


def _remove_own_temporary(tmp: str) -> None:
    """Remove a store udfkit was making under the temporary name ``tmp`` (its own name)."""
    import shutil

    try:
        if os.path.isdir(tmp):
            shutil.rmtree(tmp)
        elif os.path.exists(tmp):
            os.remove(tmp)
    except OSError:
        pass


class StoreSession:
    """The store side of one :class:`~udfkit.udf.driver.UDFRun` (see the module docstring)."""

    def __init__(self, target: ResultStore):
        self.target = target
        self.backend = target.backend()
        self.journal: Journal | None = None
        #: resumed a store whose run had finished: it is only read
        self.finished = False
        #: True from the start of a partition's merge until it is complete
        self.merging = False
        self._last_checkpoint = 0.0
        self._nav_bytes = 0
        #: this run's token in the store's description: a worker writes only where it reads
        #: it back (see :mod:`udfkit.udf.store.direct`)
        self.token = os.urandom(8).hex()

    # -- errors -------------------------------------------------------------------------
    def _fail(self, what: str, e: OSError):
        return store_failure(what, self.target.path, self.target.format, e)

    # -- start ------------------------------------------------------------------------------
    def begin(self, run) -> set:
        """Create or reopen the store; return the partition indices already merged."""
        self._udfs = list(run.udfs)
        self.groups = group_names([_name(u) for u in run.udfs])
        self.layout = _layout(run, self.groups)
        self.specs_by_key = {(a.group, a.name): a for a in self.layout.arrays}
        self.fingerprint = fingerprint(run.dataset, run.udfs, run.roi, run.partitions)
        self.dataset = run.dataset.description
        path = self.target.path
        meta = type(self.backend).read_meta(path)
        exists = os.path.lexists(path)
        if exists and self.target.resume and meta is not None:
            return self._reopen(meta)
        if exists:
            empty_dir = os.path.isdir(path) and not os.listdir(path)
            if meta is None and not empty_dir:
                kind = "directory" if os.path.isdir(path) else "file"
                raise ResultStoreExistsError(
                    f"out={path!r}: the {kind} exists and is not a udfkit result store "
                    f"({self.target.format}); udfkit does not replace it. Remove it yourself or "
                    "choose another path")
            if not (self.target.overwrite or self.target.resume or empty_dir):
                raise ResultStoreExistsError(
                    f"out={path!r}: a result store exists there (complete: "
                    f"{bool(meta.get('complete'))}); pass overwrite=True to replace it or "
                    "resume=True to go on with its run")
            try:
                if empty_dir:
                    os.rmdir(path)
                else:
                    self.backend.remove()
            except OSError as e:
                raise self._fail("removing the old", e) from None
        self._create()
        return set()

    def _meta(self, complete: bool) -> dict:
        groups = [{"group": g, "class": _name(u)} for g, u in zip(self.groups, self._udfs)]
        meta = self.layout.metadata(complete, self.dataset, groups)
        if not complete:
            meta["writer"] = self.token
        return meta

    def direct_arrays(self, run) -> dict:
        """``{(udf index, name): (ArraySpec, chunk length)}`` of the nav buffers that workers
        write themselves (empty where only the main process writes)."""
        if self.target.direct is False or self.target.format not in DIRECT_FORMATS:
            return {}
        out = {}
        for ui, (u, specs, g) in enumerate(zip(run.udfs, run.specs, self.groups)):
            if _overrides(type(u), "merge"):
                continue  # its merge sees the nav rows on the main process
            for name, spec in specs.items():
                a = self.specs_by_key.get((g, name))
                if a is None or a.kind != "nav":
                    continue
                out[(ui, name)] = (a, direct_chunk(self.target.format, self.layout, a))
        return out

    def attach(self, run, tasks) -> None:
        """Give every task the writer of its nav rows (workers write them, see
        :mod:`udfkit.udf.store.direct`)."""
        if self.finished:
            return
        arrays = self.direct_arrays(run)
        if not arrays:
            return
        writer = DirectWriter(self.target.format, os.path.abspath(self.target.path), self.token,
                              run.nav_shape, arrays, run.positions is not None,
                              required=bool(self.target.direct))
        for t in tasks:
            t.writer = writer

    def _create(self):
        # made under a temporary name and renamed into place, so that a run killed while
        # creating never leaves a half-made store at the target (nor a stray directory that
        # udfkit would then refuse to replace)
        path = os.path.abspath(self.target.path)
        parent, base = os.path.split(path)
        tmp = os.path.join(parent, f".{base}.udfkit-creating")
        maker = type(self.backend)(tmp, self.backend.options)
        try:
            os.makedirs(parent, exist_ok=True)
            _remove_own_temporary(tmp)
            maker.create(self.layout, self._meta(False))
            maker.close()
            os.rename(tmp, path)
            self.backend.open_existing(self.layout)
            self.journal = Journal(self.backend.journal_path, self.fingerprint)
            self._journal.write()
        except OSError as e:
            err = self._fail("creating the", e)
            try:
                maker.close()
            except OSError:
                pass
            _remove_own_temporary(tmp)
            self._close_quietly()
            raise err from None

    def _reopen(self, meta) -> set:
        jpath = self.backend.journal_path
        try:
            journal = Journal.read(jpath)
        except FileNotFoundError:
            # killed before the first journal: nothing is merged, start again
            self.backend.remove()
            self._create()
            return set()
        except ValueError as e:
            raise ResultStoreError(f"resume: the journal {jpath!r} of {self.target.path!r} is "
                                   f"damaged ({e}); run again with overwrite=True") from None
        diff = differences(journal.fingerprint, self.fingerprint)
        if diff:
            raise ResultStoreError(f"resume: the store {self.target.path!r} holds another run; "
                                   + "; ".join(diff)
                                   + ". Run with overwrite=True to start again")
        if journal.complete:
            # a finished run: nothing to run or write again, its results are read as they are
            self.journal = journal
            self.finished = True
            return set(journal.merged)
        if not self.backend.crash_safe:
            raise ResultStoreError(f"resume: {self.target.path!r} is a compressed HDF5 store, "
                                   "which an interrupted run may have damaged; run again with "
                                   "overwrite=True (zarr and npy stores resume)")
        try:
            self.backend.open_existing(self.layout)
            self.backend.set_meta(self._meta(False))
        except OSError as e:
            raise self._fail("reopening the", e) from None
        self.journal = journal
        return set(journal.merged)

    def restore(self, run, merged: set) -> None:
        """After ``preprocess``: the merged partitions' rows and the checkpointed sig/single
        buffers."""
        for key, arr in self._journal.checkpoint.items():
            ui, name = key.split("/", 1)
            run.buffers[int(ui)][name][...] = arr
        for i, p in enumerate(run.partitions):
            if p.index in merged:
                off, n = run.offsets[i], run.counts[i]
                run.merged_rows[off:off + n] = True
                run.frames_done += n

    @property
    def _journal(self) -> Journal:
        if self.journal is None:
            raise RuntimeError("StoreSession: begin() was not called")
        return self.journal

    # -- merging ----------------------------------------------------------------------------
    def write_nav(self, run, i: int, ui: int, name: str, block: np.ndarray) -> None:
        """Write partition ``i``'s merged rows ``block`` of UDF ``ui``'s nav buffer ``name``."""
        spec = self.specs_by_key[(self.groups[ui], name)]
        p = run.partitions[i]
        if isinstance(block, EdgeRows):
            # the worker wrote the chunks of its own; the rows in shared chunks are left
            try:
                for lo, hi, data in block.pieces():
                    self._write_flat(run, spec, lo, hi, data)
            except OSError as e:
                raise self._fail(f"writing partition {p.index} of {_name(run.udfs[ui])}"
                                 f"[{name!r}] to the", e) from None
            self._nav_bytes += block.nbytes
            return
        off, n = run.offsets[i], run.counts[i]
        nav_size = int(np.prod(run.nav_shape, dtype=np.int64))
        if run.positions is None:
            lo, data = off, block
            hi = off + n
        else:
            pos = run.positions[off:off + n]
            lo = max(0, int(p.start))
            hi = min(nav_size, int(p.stop))
            data = np.full((hi - lo,) + spec.extra_shape, spec.fill, dtype=spec.dtype)
            data[pos - lo] = block
        try:
            self._write_flat(run, spec, lo, hi, data)
        except OSError as e:
            raise self._fail(f"writing partition {p.index} of {_name(run.udfs[ui])}[{name!r}] to the",
                             e) from None
        self._nav_bytes += data.nbytes

    def _write_flat(self, run, spec, lo, hi, data):
        for o, sl in flat_boxes(run.nav_shape, lo, hi):
            shape = tuple(s.stop - s.start for s in sl)
            size = int(np.prod(shape))
            self.backend.write_box(spec, sl, data[o:o + size].reshape(shape + spec.extra_shape))

    @property
    def bytes_written(self) -> int:
        return self._nav_bytes

    def merged(self, run, index: int, last: bool) -> None:
        """Partition ``index`` is merged (in order); checkpoint now and then, and at the end."""
        self._journal.merged.append(int(index))
        self.merging = False
        now = time.monotonic()
        if last or now - self._last_checkpoint >= CHECKPOINT_INTERVAL:
            self.checkpoint(run)
            self._last_checkpoint = now

    def checkpoint(self, run, complete: bool = False) -> None:
        self._journal.checkpoint = {f"{ui}/{name}": np.array(arr, copy=True)
                                   for ui, (arrays, specs) in enumerate(zip(run.buffers, run.specs))
                                   for name, arr in arrays.items() if specs[name].kind != "nav"}
        self._journal.complete = complete
        try:
            self.backend.flush()
            self._journal.write()
        except OSError as e:
            raise self._fail("checkpointing the journal of the", e) from None

    # -- end --------------------------------------------------------------------------------
    def finish(self, run, results: list) -> None:
        """Save the final sig/single results, mark the store complete, close the writers.

        ``results``: per UDF, ``{name: (array, mask)}`` of the non-nav results.
        """
        if self.finished:
            return
        try:
            for g, res in zip(self.groups, results):
                for name, (arr, _mask) in res.items():
                    spec = self.specs_by_key.get((g, name))
                    if spec is not None:
                        self.backend.save(spec, arr)
            self.checkpoint(run, complete=False)
            self.backend.set_meta(self._meta(True))
            self.backend.flush()
            self._journal.complete = True
            self._journal.write()
        except OSError as e:
            err = self._fail("finishing the", e)
            self._close_quietly()
            raise err from None
        self.backend.close()

    def abort(self, run) -> None:
        """The run failed or was stopped: journal the partitions merged so far (unless it
        stopped inside a merge, when the sig/single buffers hold part of a partition and the
        last journal stays), leave the store incomplete."""
        if self.journal is not None and not self.merging and not self.finished:
            try:
                self.checkpoint(run)
            except ResultStoreError:
                pass
        self._close_quietly()

    def _close_quietly(self):
        try:
            self.backend.flush()
        except OSError:
            pass
        try:
            self.backend.close()
        except OSError:
            pass

    def reader(self, ui: int, name: str):
        return self.backend.reader(self.specs_by_key[(self.groups[ui], name)])
