"""h5py helpers of the ``hdf5`` format: opening files, finding datasets, filters, chunk tables,
and the reader that decodes frames on the worker.

Everything here imports h5py inside functions, so that the format registry stays cheap to
import.
"""

from __future__ import annotations

import os
from math import prod

import numpy as np

from ...errors import DataSetError
from ..chunked import ArrayReader, OpenArray, flat_slabs

__all__ = ["HDF5_MAGIC", "has_hdf5_signature", "open_file", "find_dataset", "get_dataset",
           "list_datasets", "storage_of", "filters_of", "check_filters", "missing_vds_sources",
           "chunk_frame_table", "H5Reader"]

#: the format signature; it sits at byte 0, or after a user block at 512, 1024, 2048, ...
HDF5_MAGIC = b"\x89HDF\r\n\x1a\n"

#: h5py's exceptions for files and objects it cannot read
H5_ERRORS = (OSError, KeyError, ValueError, RuntimeError, TypeError)

#: filters HDF5 itself or h5py bring (names for messages and ``udfkit info``)
BUILTIN_FILTERS = {1: "gzip", 2: "shuffle", 3: "fletcher32", 4: "szip", 5: "nbit",
                   6: "scaleoffset", 32000: "lzf"}
#: registered filters that the hdf5plugin package provides (when it is not installed, its
#: own table cannot tell us)
PLUGIN_FILTERS = {307: "bzip2", 32001: "blosc", 32004: "lz4", 32008: "bitshuffle", 32013: "zfp",
                  32015: "zstd", 32017: "sz", 32018: "fcidecomp", 32024: "sz3", 32026: "blosc2",
                  32028: "sperr"}

#: datasets listed in an error message, at most
MAX_LISTED = 20


def has_hdf5_signature(path: str) -> bool:
    """Whether the file starts with the HDF5 signature, possibly after a user block.

    A user block is 512 bytes or a larger power of two, so the signature is looked for at
    0, 512, 1024, 2048, ... (as the HDF5 library does).
    """
    try:
        size = os.path.getsize(path)
        with open(path, "rb") as f:
            at = 0
            while at + len(HDF5_MAGIC) <= size:
                f.seek(at)
                if f.read(len(HDF5_MAGIC)) == HDF5_MAGIC:
                    return True
                at = 512 if at == 0 else at * 2
    except OSError:
        return False
    return False


def load_plugins() -> None:
    """Register hdf5plugin's filters (bitshuffle, LZ4, zstd, blosc...) where installed."""
    try:
        import hdf5plugin  # noqa: F401 - importing registers the filters with HDF5
    except ImportError:
        pass


def open_file(path: str, where: str = ""):
    """``h5py.File(path, "r")``, with a :class:`DataSetError` naming the file if it cannot be."""
    import h5py

    load_plugins()
    try:
        return h5py.File(path, "r")
    except H5_ERRORS as e:
        raise DataSetError(f"HDF5 file {path!r} is not a valid HDF5 file or cannot be read{where}: "
                           f"{e}") from None


def _describe(ds) -> str:
    return f"{tuple(ds.shape)} {ds.dtype}"


def _is_numeric(ds) -> bool:
    dt = ds.dtype
    return dt.kind in "biufc" and not dt.hasobject and dt.fields is None


def list_datasets(f) -> tuple[list, list]:
    """Every dataset reachable from the root of ``f``: ``([(name, shape, dtype)], broken)``.

    Hard, soft and external links are followed (a detector's master file links the data
    files); each object is listed once, under the first name found. ``broken`` names links
    whose target cannot be opened (a missing external file).
    """
    import h5py

    found, broken, seen = [], [], set()

    def key(obj):
        info = h5py.h5o.get_info(obj.id)
        return (info.fileno, info.addr)

    def walk(group, prefix, depth):
        for name in group:
            full = f"{prefix}/{name}"
            try:
                obj = group[name]
            except H5_ERRORS:
                broken.append(full)
                continue
            k = key(obj)
            if k in seen:
                continue
            seen.add(k)
            if isinstance(obj, h5py.Dataset):
                found.append((full, tuple(obj.shape or ()), obj.dtype))
            elif isinstance(obj, h5py.Group) and depth < 32:
                walk(obj, full, depth + 1)

    seen.add(key(f))
    walk(f, "", 0)
    return found, broken


def _listing(items) -> str:
    shown = [f"{name!r} {shape} {dtype}" for name, shape, dtype in items[:MAX_LISTED]]
    more = f", ... ({len(items) - MAX_LISTED} more)" if len(items) > MAX_LISTED else ""
    return ", ".join(shown) + more


def find_dataset(f, path: str) -> str:
    """The one dataset of at least 3 dimensions in ``f`` (an error lists the candidates)."""
    found, broken = list_datasets(f)
    numeric = [(n, s, d) for n, s, d in found if d.kind in "biufc" and d.fields is None]
    candidates = [item for item in numeric if len(item[1]) >= 3]
    if len(candidates) == 1:
        return candidates[0][0]
    if candidates:
        raise DataSetError(
            f"HDF5 file {path!r} has {len(candidates)} datasets of 3 or more dimensions: "
            f"{_listing(candidates)}; choose one with ds_path= (--ds-path on the command line), e.g. "
            f"ds_path={candidates[0][0]!r}")
    what = f"its datasets: {_listing(found)}" if found else "it holds no dataset"
    gone = f"; links that cannot be followed: {', '.join(map(repr, broken))}" if broken else ""
    raise DataSetError(f"HDF5 file {path!r} has no dataset of 3 or more dimensions (nav + 2D signal) "
                       f"to pick by default; {what}{gone}. Pass ds_path= (and sig_dims= for "
                       "1D signals)")


def get_dataset(f, path: str, ds_path: str):
    """``f[ds_path]`` as an h5py Dataset; a missing path lists what exists."""
    import h5py

    if not isinstance(ds_path, str) or not ds_path:
        raise DataSetError(f"HDF5 file {path!r}: ds_path: expected a dataset path such as "
                           f"'/entry/data', got {ds_path!r}")
    try:
        obj = f[ds_path]
    except H5_ERRORS as e:
        found, _ = list_datasets(f)
        what = f"datasets in the file: {_listing(found)}" if found else "the file holds no dataset"
        try:
            link = f.get(ds_path, getlink=True)
        except H5_ERRORS:
            link = None
        reason = "" if link is None else f" (the link is there, but its target cannot be opened: {e})"
        raise DataSetError(f"HDF5 file {path!r} has no dataset at ds_path {ds_path!r}{reason}; "
                           f"{what}") from None
    if not isinstance(obj, h5py.Dataset):
        found, _ = list_datasets(obj)
        inside = f"; datasets in it: {_listing([(ds_path.rstrip('/') + n, s, d) for n, s, d in found])}" \
            if found else ""
        raise DataSetError(f"HDF5 file {path!r}: ds_path {ds_path!r} is a group, not a dataset{inside}")
    return obj


def storage_of(ds) -> str:
    """How the dataset is stored: contiguous, chunked, compact, virtual or external."""
    import h5py

    if ds.external:
        return "external"
    names = {h5py.h5d.CONTIGUOUS: "contiguous", h5py.h5d.CHUNKED: "chunked",
             h5py.h5d.COMPACT: "compact", getattr(h5py.h5d, "VIRTUAL", -1): "virtual"}
    return names.get(ds.id.get_create_plist().get_layout(), "unknown")


def filters_of(ds) -> list:
    """``[(filter id, name)]`` of the dataset's filter pipeline, in order."""
    plist = ds.id.get_create_plist()
    out = []
    for i in range(plist.get_nfilters()):
        code, _flags, _values, name = plist.get_filter(i)
        name = name.decode("utf-8", "replace") if isinstance(name, bytes) else str(name)
        known = BUILTIN_FILTERS.get(code) or PLUGIN_FILTERS.get(code)
        out.append((int(code), known or name or f"filter {code}"))
    return out


def check_filters(filters, where: str) -> None:
    """A filter this Python cannot decode is an error naming it and the extra to install."""
    import h5py

    for code, name in filters:
        if not h5py.h5z.filter_avail(code):
            raise DataSetError(
                f"{where} is compressed with HDF5 filter {code} ({name}), which is not available "
                "here; install the filter plugins with: pip install 'udfkit[hdf5plugin]' (or point "
                "HDF5_PLUGIN_PATH at a plugin that provides it)")


def missing_vds_sources(ds) -> list:
    """Source files of a virtual dataset that do not exist (HDF5 would read fill values).

    Relative names are looked up as HDF5 does: under ``HDF5_VDS_PREFIX``, next to the file
    holding the virtual dataset, and in the working directory. Names with printf-style
    patterns (``%b``) are not checked.
    """
    base = os.path.dirname(os.path.abspath(ds.file.filename))
    prefix = os.environ.get("HDF5_VDS_PREFIX", "")
    missing = []
    for name in sorted({m.file_name for m in ds.virtual_sources()}):
        if name == "." or "%" in name:
            continue
        places = [name] if os.path.isabs(name) else [os.path.join(base, name), name] + \
            ([os.path.join(prefix, name)] if prefix else [])
        if not any(os.path.isfile(p) for p in places):
            missing.append(name)
    return missing


def vds_files(ds) -> list:
    """Existing source files of a virtual dataset (absolute paths)."""
    base = os.path.dirname(os.path.abspath(ds.file.filename))
    out = []
    for name in sorted({m.file_name for m in ds.virtual_sources()}):
        p = ds.file.filename if name == "." else os.path.join(base, name)
        if "%" not in name and os.path.isfile(p) and p not in out:
            out.append(p)
    return out


def chunk_frame_table(ds, k: int, frame_bytes: int):
    """Byte offsets of the frames of a chunked, unfiltered dataset whose chunks hold whole frames.

    ``k`` is the number of navigation axes (the chunk covers all axes after them). Returns
    an int64 array with one offset per frame (C order over the nav axes), or ``None`` when
    some chunk was never written (HDF5 reads the fill value for it) or is not stored whole.
    Frames inside a chunk follow each other in C order over the chunk's nav extent; a chunk
    at the edge of the nav extent is stored full size.
    """
    shape, chunks = tuple(ds.shape), tuple(ds.chunks)
    nav, cnav = shape[:k], chunks[:k]
    grid = tuple(-(-n // c) for n, c in zip(nav, cnav))
    chunk_bytes = prod(chunks) * ds.dtype.itemsize
    starts = np.full(prod(grid), -1, dtype=np.int64)
    bad = []

    def take(info):
        if any(o >= n for o, n in zip(info.chunk_offset, shape)):
            return  # left over from before the dataset was resized smaller
        if info.size != chunk_bytes or info.filter_mask or info.byte_offset is None:
            bad.append(info)
            return
        pos = tuple(o // c for o, c in zip(info.chunk_offset[:k], cnav))
        starts[np.ravel_multi_index(pos, grid)] = info.byte_offset

    dsid = ds.id
    if hasattr(dsid, "chunk_iter"):
        try:
            dsid.chunk_iter(take)
        except (RuntimeError, OSError, AttributeError):  # an HDF5 without H5Dchunk_iter
            for i in range(dsid.get_num_chunks()):
                take(dsid.get_chunk_info(i))
    else:  # pragma: no cover - old HDF5
        for i in range(dsid.get_num_chunks()):
            take(dsid.get_chunk_info(i))
    if bad or np.any(starts < 0):
        return None
    if k == 0:  # the dataset is one frame
        return starts.copy()
    pos = np.indices(nav, dtype=np.int64).reshape(k, -1)
    cn = np.array(cnav, dtype=np.int64)[:, None]
    chunk_of = np.ravel_multi_index(tuple(pos // cn), grid)
    inside = np.ravel_multi_index(tuple(pos % cn), cnav)
    return starts[chunk_of] + inside * frame_bytes


class H5Reader(ArrayReader):
    """Reads frames of one HDF5 dataset through h5py (compressed, virtual, split chunks).

    Parameters
    ----------
    path : str
        The file to open (for a dataset behind an external link: the file holding the link).
    ds_path : str
    nav_shape : tuple of int
        The dataset's navigation axes (file frames are counted in C order over them).
    sig_shape : tuple of int
        The dataset's remaining axes (one frame).

    Examples
    --------
    >>> import h5py, numpy as np, tempfile, os
    >>> p = os.path.join(tempfile.mkdtemp(), "a.h5")
    >>> with h5py.File(p, "w") as f:
    ...     _ = f.create_dataset("d", data=np.arange(24).reshape(2, 3, 4), compression="gzip")
    >>> out = np.empty((2, 4), dtype=np.int64)
    >>> with H5Reader(p, "/d", (2, 3), (4,)).open() as h:
    ...     h.read(2, 4, out)
    >>> out.tolist()
    [[8, 9, 10, 11], [12, 13, 14, 15]]
    """

    def __init__(self, path: str, ds_path: str, nav_shape, sig_shape):
        self.path = path
        self.ds_path = ds_path
        self.nav_shape = tuple(int(n) for n in nav_shape)
        self.sig_shape = tuple(int(n) for n in sig_shape)

    def open(self) -> _OpenH5:
        return _OpenH5(self)

    def __eq__(self, other):
        return isinstance(other, H5Reader) and vars(self) == vars(other)

    def __hash__(self):
        return hash((self.path, self.ds_path, self.nav_shape, self.sig_shape))

    def __repr__(self):
        return f"H5Reader({self.path!r}, {self.ds_path!r}, nav={self.nav_shape}, sig={self.sig_shape})"


class _OpenH5(OpenArray):
    def __init__(self, reader: H5Reader):
        self._r = reader
        self._file = open_file(reader.path, " on the worker")
        try:
            self._ds = self._file[reader.ds_path]
        except H5_ERRORS as e:
            self._file.close()
            raise DataSetError(f"HDF5 file {reader.path!r}: dataset {reader.ds_path!r} cannot be "
                               f"opened on the worker: {e}") from None

    def read(self, lo: int, hi: int, out: np.ndarray) -> None:
        r = self._r
        k = 0
        try:
            if not r.nav_shape:  # the dataset is one frame
                self._ds.read_direct(out.reshape(r.sig_shape))
                return
            for slices, n in flat_slabs(r.nav_shape, lo, hi):
                dest = out[k:k + n].reshape(tuple(s.stop - s.start for s in slices) + r.sig_shape)
                self._ds.read_direct(dest, source_sel=slices)
                k += n
        except H5_ERRORS as e:
            raise DataSetError(f"HDF5 file {r.path!r}, dataset {r.ds_path!r}: reading frames "
                               f"{lo}..{hi - 1} failed: {e}") from None

    def close(self) -> None:
        f, self._file = self._file, None
        self._ds = None
        if f is not None:
            f.close()
