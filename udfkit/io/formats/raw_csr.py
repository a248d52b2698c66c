"""The ``raw_csr`` format: a sparse scan as a CSR matrix in three flat files plus a TOML sidecar.

Event-based and counting detectors produce frames that are mostly zeros. LiberTEM stores such
a scan as one compressed sparse row (CSR) matrix of shape ``(frames, pixels)``: both the
navigation and the signal axes are flattened, so that scipy.sparse reads the three arrays as
they are. A TOML file describes them::

    [params]
    filetype = "raw_csr"
    nav_shape = [512, 512]
    sig_shape = [516, 516]
    # sync_offset = 0           (udfkit only: LiberTEM 0.16 ignores it)

    [raw_csr]
    indptr_file = "rowind.dat"  # frames + 1 entries: where each frame's entries start
    indptr_dtype = "<i4"
    indices_file = "coords.dat" # pixel index (flattened sig) of every entry
    indices_dtype = "<i4"
    data_file = "values.dat"    # value of every entry
    data_dtype = "<i4"

File names are relative to the TOML file (absolute ones are used as they are); the table of
the arrays is named as ``filetype`` spells it (LiberTEM's rule, case kept).

Rules
-----
* **Frames** are the rows of the matrix: ``len(indptr) - 1`` of them. ``nav_shape`` defaults
  to the TOML's (else one axis of all rows) and may use fewer rows; ``sig_shape`` defaults to
  the TOML's, and another one must keep the pixel count (as in LiberTEM). ``sync_offset``
  shifts rows as in every format (position ``i`` reads row ``i + sync_offset``).
* **Partitions** are ranges of rows; a ROI selects rows. A UDF that lists
  ``BACKEND_SCIPY_CSR`` before numpy (the sparse-aware built-ins do) gets the selected rows as
  they are stored, a ``csr_matrix`` of (frames, pixels) in its dtype, never densified
  (:meth:`CSRPartition.get_sparse_tiles`); other sparse forms are converted from those rows.
  A numpy UDF gets the rows densified, whole frames at a time, into one reused buffer in the
  dtype it asked for (duplicate entries of a row add up, as in scipy's ``toarray``); a tiling
  scheme that cuts the signal gets views of that block.
* **Reading.** The three arrays are read through udfkit's I/O backends (``mmap``, ``buffered``,
  ``direct``) in windows (:mod:`udfkit.io.formats._csr`); :meth:`CSRPartition.open_rows`
  gives the CSR triple of any row range.
* **Checks.** At load: the TOML's tables and keys, integer dtypes of ``indptr`` and
  ``indices``, file sizes that are whole elements, ``indices`` and ``data`` of one length,
  and all of ``indptr`` (read in windows): non-decreasing, from ``>= 0`` to at most the number
  of entries. While reading: every column index is checked against the pixel count.
  Every error is a :class:`~udfkit.errors.DataSetError` naming the file.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from math import prod

import numpy as np

from ...common import Shape, Slice, normalize_dtype
from ...common.udf import BACKEND_NUMPY, BACKEND_SCIPY_CSR
from ...errors import DataSetError, DataSetFileNotFoundError
from ..aligned import aligned_empty
from ..backends import get_backend
from ..base import DataSet, DataSetMeta, FrameSource
from ..tiles import DataTile, SourcePartition
from ._common import check_frame_count, check_path, check_sync_offset, parse_dims
from ._csr import FlatArray, RowReader, WindowReader
from .base import COMMON_PARAMS, Format, Param

__all__ = ["RawCSRFormat", "RawCSRDataSet", "CSRPartition", "CSRDescriptor", "read_descriptor",
           "write_descriptor", "ARRAY_KEYS"]

#: the keys of the ``[raw_csr]`` table: (file key, dtype key) per array
ARRAY_KEYS = (("indptr_file", "indptr_dtype"), ("indices_file", "indices_dtype"),
              ("data_file", "data_dtype"))
#: a TOML file larger than this is not a descriptor ("auto" does not parse it)
MAX_DESCRIPTOR_BYTES = 1 << 20


class RawCSRFormat(Format):
    """Sparse data as CSR arrays in three files, described by a TOML sidecar (LiberTEM's)."""

    name = "raw_csr"
    dataset = "udfkit.io.formats.raw_csr:RawCSRDataSet"
    extensions = (".toml",)
    params = (
        Param("path", "path", None, "the TOML descriptor"),
        COMMON_PARAMS["nav_shape"], COMMON_PARAMS["sig_shape"],
        Param("sync_offset", "int", None,
              "skip N frames at the start (negative: N positions have no frame); default: the "
              "descriptor's, else 0"),
        COMMON_PARAMS["io_backend"], COMMON_PARAMS["num_partitions"],
        COMMON_PARAMS["allow_partial"],
    )

    @classmethod
    def guess_can_open(cls, path: str) -> float:
        """1.0 for a TOML file whose ``[params]`` say ``filetype = "raw_csr"``."""
        if not os.path.isfile(path) or not path.lower().endswith(cls.extensions):
            return 0.0
        try:
            if os.path.getsize(path) > MAX_DESCRIPTOR_BYTES:
                return 0.0
            conf = _load_toml(path)
        except DataSetError:
            return 0.0
        params = conf.get("params")
        if isinstance(params, dict) and str(params.get("filetype", "")).lower() == "raw_csr":
            return 1.0
        return 0.0


@dataclass(frozen=True)
class CSRDescriptor:
    """What a ``raw_csr`` TOML file says.

    Attributes
    ----------
    path : str
        The TOML file.
    nav_shape, sig_shape : tuple of int or None
        From ``[params]`` (``None`` where absent).
    sync_offset : int or None
        From ``[params]`` (udfkit only).
    files : tuple of str
        ``indptr``, ``indices`` and ``data`` files, resolved against the TOML's directory.
    dtypes : tuple of numpy.dtype
        Their stored dtypes.
    """

    path: str
    nav_shape: tuple | None
    sig_shape: tuple | None
    sync_offset: int | None
    files: tuple
    dtypes: tuple


def _load_toml(path: str) -> dict:
    import tomllib

    try:
        with open(path, "rb") as f:
            return tomllib.load(f)
    except tomllib.TOMLDecodeError as e:
        raise DataSetError(f"raw_csr descriptor {path!r} is not valid TOML: {e}") from None
    except UnicodeDecodeError as e:
        raise DataSetError(f"raw_csr descriptor {path!r} is not a text (TOML) file: {e}") from None
    except OSError as e:
        raise DataSetError(f"raw_csr descriptor {path!r} cannot be read: {e}") from None


def read_descriptor(path) -> CSRDescriptor:
    """Parse and check a ``raw_csr`` TOML file (the array files are not opened).

    Examples
    --------
    >>> import os, tempfile
    >>> d = tempfile.mkdtemp()
    >>> p = write_descriptor(os.path.join(d, "s.toml"), nav_shape=(2, 3), sig_shape=(4, 4),
    ...                      files=("p.raw", "i.raw", "v.raw"), dtypes=("<i8", "<i4", "<u2"))
    >>> desc = read_descriptor(p)
    >>> desc.nav_shape, desc.sig_shape, [os.path.basename(f) for f in desc.files]
    ((2, 3), (4, 4), ['p.raw', 'i.raw', 'v.raw'])
    """
    path = check_path(path, "raw_csr descriptor")
    where = f"raw_csr descriptor {path!r}"
    conf = _load_toml(path)
    params = conf.get("params")
    if not isinstance(params, dict):
        raise DataSetError(f"{where}: expected a [params] table with filetype = \"raw_csr\", "
                           f"found tables {sorted(k for k, v in conf.items() if isinstance(v, dict))}")
    filetype = params.get("filetype")
    if not isinstance(filetype, str) or filetype.lower() != "raw_csr":
        raise DataSetError(f"{where}: [params] filetype: expected \"raw_csr\", found {filetype!r}")
    # LiberTEM looks the arrays up under the filetype as spelled; accept any case
    tables = [k for k, v in conf.items() if k.lower() == "raw_csr" and isinstance(v, dict)]
    if not tables:
        raise DataSetError(f"{where}: expected a [{filetype}] table naming the three array files "
                           f"({', '.join(k for pair in ARRAY_KEYS for k in pair)}), found tables "
                           f"{sorted(k for k, v in conf.items() if isinstance(v, dict))}")
    table = conf[filetype] if filetype in tables else conf[tables[0]]
    missing = [k for pair in ARRAY_KEYS for k in pair if k not in table]
    if missing:
        raise DataSetError(f"{where}: [{tables[0]}] lacks {', '.join(missing)}; expected all of "
                           f"{', '.join(k for pair in ARRAY_KEYS for k in pair)}")
    base = os.path.dirname(os.path.abspath(path))
    files, dtypes = [], []
    for (file_key, dtype_key), kinds in zip(ARRAY_KEYS, ("iu", "iu", "biufc")):
        name = table[file_key]
        if not isinstance(name, str) or not name:
            raise DataSetError(f"{where}: {file_key}: expected a file name, found {name!r}")
        files.append(os.path.join(base, name))
        dtype = normalize_dtype(table[dtype_key], error=DataSetError, where=f"{where}: {dtype_key}")
        if dtype.kind not in kinds:
            raise DataSetError(f"{where}: {dtype_key}: expected an integer dtype, found "
                               f"{table[dtype_key]!r}")
        dtypes.append(dtype)
    nav_shape = parse_dims(params.get("nav_shape"), "[params] nav_shape", where)
    sig_shape = parse_dims(params.get("sig_shape"), "[params] sig_shape", where)
    sync_offset = params.get("sync_offset")
    if sync_offset is not None and (isinstance(sync_offset, bool) or not isinstance(sync_offset, int)):
        raise DataSetError(f"{where}: [params] sync_offset: expected an integer, found {sync_offset!r}")
    return CSRDescriptor(path, nav_shape, sig_shape, sync_offset, tuple(files), tuple(dtypes))


def _toml_str(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def write_descriptor(path, *, nav_shape, sig_shape, files, dtypes, sync_offset=None) -> str:
    """Write a ``raw_csr`` TOML file as LiberTEM reads it; returns the path.

    Parameters
    ----------
    path : str or os.PathLike
    nav_shape, sig_shape : tuple of int or None
        ``None``: left out (a reader then takes one axis of all rows, or needs ``sig_shape=``).
    files : tuple of str
        ``indptr``, ``indices`` and ``data`` file names (best relative to the TOML's directory).
    dtypes : tuple of dtype
        Their stored dtypes.
    sync_offset : int, optional
        Written to ``[params]`` when given (udfkit reads it; LiberTEM 0.16 ignores it).
    """
    path = os.fspath(path)
    lines = ["[params]", 'filetype = "raw_csr"']
    for key, shape in (("nav_shape", nav_shape), ("sig_shape", sig_shape)):
        if shape is not None:
            lines.append(f"{key} = {[int(n) for n in shape]}")
    if sync_offset is not None:
        lines.append(f"sync_offset = {int(sync_offset)}")
    lines += ["", "[raw_csr]"]
    for (file_key, dtype_key), name, dtype in zip(ARRAY_KEYS, files, dtypes):
        lines += [f"{file_key} = {_toml_str(os.fspath(name))}",
                  f"{dtype_key} = {_toml_str(np.dtype(dtype).str)}", ""]
    with open(path, "w", encoding="utf-8") as f:
        f.write("\n".join(lines))
    return path


def _flat_array(path: str, dtype: np.dtype, role: str, where: str) -> FlatArray:
    if not os.path.exists(path):
        raise DataSetFileNotFoundError(f"{where}: the {role} file {path!r} does not exist")
    if not os.path.isfile(path):
        raise DataSetError(f"{where}: the {role} file {path!r} is not a regular file")
    size = os.path.getsize(path)
    if size % dtype.itemsize:
        raise DataSetError(f"{role} file {path!r} has {size} bytes, which is not a whole number of "
                           f"{dtype.str} elements ({dtype.itemsize} bytes each); check {role}_dtype in "
                           f"{where}")
    return FlatArray(path, dtype, size // dtype.itemsize, role)


#: indptr entries checked per read at load
_CHECK_ITEMS = 1 << 20


def check_indptr(indptr: FlatArray, nnz: int, backend, indices_path: str) -> tuple[int, int]:
    """Check all of ``indptr``, read in windows: entries from 0 to ``nnz``, non-decreasing.

    Returns its first and last entry.
    """
    reader = WindowReader(indptr, backend, window_bytes=_CHECK_ITEMS * indptr.dtype.itemsize)
    first = prev = 0
    try:
        for lo in range(0, indptr.length, _CHECK_ITEMS):
            raw = reader.get(lo, min(indptr.length, lo + _CHECK_ITEMS))
            # compared in the stored dtype: a uint64 entry past int64 is caught here too
            over = np.flatnonzero(raw > nnz)
            if over.size:
                k = lo + int(over[0])
                raise DataSetError(
                    f"indptr file {indptr.path!r}: entry {k} is {int(raw[over[0]])}, but the indices "
                    f"file {indices_path!r} holds {nnz} entries; expected at most {nnz} (the files "
                    "do not belong together, or one is truncated)")
            part = raw.astype(np.int64)
            neg = np.flatnonzero(part < 0)
            if neg.size:
                k = lo + int(neg[0])
                raise DataSetError(f"indptr file {indptr.path!r}: entry {k} is {int(part[neg[0]])}; "
                                   "expected offsets >= 0")
            seq, at = (part, lo) if lo == 0 else (np.concatenate(([prev], part)), lo - 1)
            down = np.flatnonzero(np.diff(seq) < 0)
            if down.size:
                d = int(down[0])
                raise DataSetError(
                    f"indptr file {indptr.path!r}: entry {at + d + 1} ({int(seq[d + 1])}) is smaller "
                    f"than entry {at + d} ({int(seq[d])}); expected a non-decreasing indptr (frame "
                    "k's entries are indptr[k] to indptr[k + 1])")
            if lo == 0:
                first = int(part[0])
            prev = int(part[-1])
    finally:
        reader.close()
    return first, prev


def _stored_bytes(arrays, backend, r0: int, r1: int) -> int:
    """Bytes of the three arrays that file rows ``[r0, r1)`` read: their ``indptr`` entries
    and their ``indices`` and ``data`` entries."""
    indptr, indices, data = arrays
    if r1 <= r0:
        return 0
    reader = WindowReader(indptr, backend, window_bytes=indptr.dtype.itemsize)
    try:
        lo = int(reader.get(r0, r0 + 1)[0])
        hi = int(reader.get(r1, r1 + 1)[0])
    finally:
        reader.close()
    return ((r1 - r0 + 1) * indptr.dtype.itemsize
            + (hi - lo) * (indices.dtype.itemsize + data.dtype.itemsize))


class RawCSRDataSet(DataSet):
    """Sparse frames stored as a CSR matrix in three flat files, described by a TOML file.

    Parameters
    ----------
    path : str or os.PathLike
        The TOML descriptor (see the module docstring for its tables and keys).
    nav_shape : tuple of int, optional
        Default: the descriptor's ``nav_shape``, else one axis of all frames. May use fewer
        frames than the file holds.
    sig_shape : tuple of int, optional
        Default: the descriptor's; another shape must have the same number of pixels.
    sync_offset : int, optional
        Positive: skip that many frames (rows) at the start; negative: the first positions have
        no frame. Default: the descriptor's ``[params] sync_offset``, else 0.
    io_backend : str or IOBackend, optional
        How the three arrays are read: ``"mmap"`` (default), ``"buffered"`` or ``"direct"``.
    num_partitions : int, optional
    allow_partial : bool
        Accept fewer frames than ``nav_shape`` needs (the rest is reported missing).

    Examples
    --------
    >>> import os, tempfile
    >>> import numpy as np, scipy.sparse
    >>> from udfkit import Context
    >>> from udfkit.io.formats.raw_csr import write_descriptor
    >>> d = tempfile.mkdtemp()
    >>> m = scipy.sparse.random(6, 16, density=0.1, format="csr", dtype="float32", random_state=0)
    >>> for name, a in (("p.raw", m.indptr), ("i.raw", m.indices), ("v.raw", m.data)):
    ...     a.tofile(os.path.join(d, name))
    >>> toml = write_descriptor(os.path.join(d, "scan.toml"), nav_shape=(2, 3), sig_shape=(4, 4),
    ...                         files=("p.raw", "i.raw", "v.raw"),
    ...                         dtypes=(m.indptr.dtype, m.indices.dtype, m.data.dtype))
    >>> ctx = Context.make_with("inline")
    >>> ds = ctx.load("raw_csr", path=toml)
    >>> ds.shape, ds.dtype
    (Shape((2, 3, 4, 4), sig_dims=2), dtype('float32'))
    >>> from udfkit.udf import SumUDF
    >>> res = ctx.run_udf(dataset=ds, udf=SumUDF())
    >>> np.allclose(res["intensity"].data, m.toarray().sum(axis=0).reshape(4, 4))
    True
    """

    format_name = "raw_csr"

    def __init__(self, path=None, nav_shape=None, sig_shape=None, sync_offset=None, io_backend=None,
                 num_partitions=None, allow_partial=False):
        super().__init__(nav_shape=nav_shape, sig_shape=sig_shape, sync_offset=sync_offset,
                         num_partitions=num_partitions, allow_partial=allow_partial)
        self._path_arg = path
        self._backend = get_backend(io_backend)
        self._arrays = None
        self._descriptor = None

    @property
    def io_backend(self):
        """The :class:`~udfkit.io.base.IOBackend` that reads the three arrays."""
        return self._backend

    @property
    def descriptor(self) -> CSRDescriptor:
        """The parsed TOML file (after ``initialize``)."""
        self._require_meta()
        return self._descriptor

    @property
    def arrays(self) -> tuple:
        """``(indptr, indices, data)`` as :class:`~udfkit.io.formats._csr.FlatArray` (after
        ``initialize``)."""
        self._require_meta()
        return self._arrays

    def _initialize(self) -> DataSetMeta:
        desc = read_descriptor(self._path_arg)
        where = f"raw_csr descriptor {desc.path!r}"
        indptr, indices, data = (_flat_array(p, dt, role, where) for p, dt, role in
                                 zip(desc.files, desc.dtypes, ("indptr", "indices", "data")))
        if indices.length != data.length:
            raise DataSetError(
                f"indices file {indices.path!r} holds {indices.length} entries ({indices.dtype}), "
                f"but data file {data.path!r} holds {data.length} ({data.dtype}); expected one "
                "value per index")
        if indptr.length < 2:
            raise DataSetError(f"indptr file {indptr.path!r} holds {indptr.length} entries; expected "
                               "one more than the number of frames (at least 2)")
        image_count = indptr.length - 1
        sig_shape = parse_dims(self._sig_shape_arg, "sig_shape", where)
        if sig_shape is None:
            sig_shape = desc.sig_shape
            if sig_shape is None:
                raise DataSetError(f"{where}: [params] has no sig_shape; add it there or pass "
                                   "sig_shape=")
        elif desc.sig_shape is not None and prod(sig_shape) != prod(desc.sig_shape):
            raise DataSetError(f"{where}: sig_shape {sig_shape} has {prod(sig_shape)} pixels, but the "
                               f"descriptor's sig_shape {desc.sig_shape} has {prod(desc.sig_shape)}; "
                               "another sig_shape must keep the pixel count")
        nav_shape = parse_dims(self._nav_shape_arg, "nav_shape", where)
        if nav_shape is None:
            nav_shape = desc.nav_shape if desc.nav_shape is not None else (image_count,)
        rows = f"{image_count} frames (indptr file {indptr.path!r} has {indptr.length} entries)"
        check_frame_count(where, nav_shape, image_count, self._allow_partial, rows,
                          "one indptr entry each")
        first, last = check_indptr(indptr, indices.length, self._backend, indices.path)
        sync_arg = self._sync_offset_arg
        if sync_arg is None:
            sync_arg = desc.sync_offset if desc.sync_offset is not None else 0
        sync_offset = check_sync_offset(where, sync_arg, prod(nav_shape), image_count)
        self._descriptor = desc
        self._arrays = (indptr, indices, data)
        sizes = sum(os.path.getsize(a.path) for a in self._arrays)
        stored = _stored_bytes(self._arrays, self._backend, max(0, sync_offset),
                              min(image_count, sync_offset + prod(nav_shape)))
        return DataSetMeta(
            shape=Shape(tuple(nav_shape) + tuple(sig_shape), sig_dims=len(sig_shape)),
            raw_dtype=data.dtype, image_count=image_count, sync_offset=sync_offset,
            metadata={"path": desc.path, "paths": (desc.path,) + desc.files, "file_bytes": sizes,
                      "stored_bytes": stored, "nnz": last - first,
                      "io_backend": self._backend.name})

    @property
    def description(self) -> str:
        return f"RawCSRDataSet {self._require_meta().metadata['path']!r}"

    @property
    def supports_zero_copy(self) -> bool:
        # tiles are densified into a buffer
        return False

    @property
    def array_backends(self) -> tuple:
        """The tile forms this data set hands out without converting, preferred first
        (LiberTEM's attribute): CSR row blocks (``scipy.sparse.csr_matrix``, for UDFs that list
        it) and numpy (densified by the read kernel into a reused buffer)."""
        return (BACKEND_SCIPY_CSR, BACKEND_NUMPY)

    def get_tiling_constraints(self):
        from ..tiling import TilingConstraints

        # a block of rows is densified whole frames at a time: cutting the signal would
        # densify the same rows once per signal slice
        return TilingConstraints(base_shape=self.shape.sig.to_tuple())

    def layout_info(self) -> dict:
        indptr, indices, data = self._arrays
        frames = self.image_count
        pixels = self.shape.sig.size
        nnz = self.meta.metadata["nnz"]
        return {
            "indptr": f"{os.path.basename(indptr.path)} ({indptr.dtype.str}, {indptr.length} entries)",
            "indices": f"{os.path.basename(indices.path)} ({indices.dtype.str}, {indices.length} "
                       "entries)",
            "data": f"{os.path.basename(data.path)} ({data.dtype.str}, {data.length} entries)",
            "nonzeros": f"{nnz} ({nnz / max(1, frames * pixels):.3%} of {frames} frames x "
                        f"{pixels} pixels)",
        }

    #: what :func:`~udfkit.io.partitioning.partition_bounds` sizes partitions by, in words
    STORED_WHAT = "CSR arrays stored for the frames"

    def partition_bounds(self) -> list[tuple[int, int]]:
        """``(start, stop)`` of every partition: sized by the bytes of the CSR arrays the
        frames read (``metadata["stored_bytes"]``), not by the dense frames, since the
        partition reads only those (a 2 GiB scan with 0.1 % non-zeros is one partition)."""
        from ..partitioning import partition_bounds

        meta = self._require_meta()
        return partition_bounds(
            nav_size=meta.shape.nav.size, frame_bytes=meta.shape.sig.size * meta.raw_dtype.itemsize,
            num_partitions=self._num_partitions_arg, num_workers=self._num_workers,
            stored_bytes=meta.metadata["stored_bytes"])

    def partition_reason(self) -> str:
        """Why :meth:`partition_bounds` gives its count, in words (shown by a run plan).

        Examples
        --------
        >>> import os, tempfile
        >>> import numpy as np, scipy.sparse
        >>> d = tempfile.mkdtemp()
        >>> m = scipy.sparse.random(6, 16, density=0.1, format="csr", dtype="float32",
        ...                         random_state=0)
        >>> for name, a in (("p.raw", m.indptr), ("i.raw", m.indices), ("v.raw", m.data)):
        ...     a.tofile(os.path.join(d, name))
        >>> toml = write_descriptor(os.path.join(d, "scan.toml"), nav_shape=(6,), sig_shape=(4, 4),
        ...                         files=("p.raw", "i.raw", "v.raw"),
        ...                         dtypes=(m.indptr.dtype, m.indices.dtype, m.data.dtype))
        >>> print(RawCSRDataSet(path=toml).initialize().partition_reason())
        ... # doctest: +NORMALIZE_WHITESPACE
        the data set (108 B of CSR arrays stored for the frames) is smaller than two 8 MiB
        partitions per worker: 1 partition
        """
        from ..partitioning import partition_reason

        meta = self._require_meta()
        return partition_reason(
            meta.shape.nav.size, meta.shape.sig.size * meta.raw_dtype.itemsize,
            self._num_partitions_arg, self._num_workers,
            stored_bytes=meta.metadata["stored_bytes"], stored_what=self.STORED_WHAT)

    def get_partitions(self):
        meta = self._require_meta()
        return [CSRPartition(arrays=self._arrays, backend=self._backend, descriptor=meta.metadata["path"],
                             shape=meta.shape, start=start, stop=stop, raw_dtype=meta.raw_dtype,
                             image_count=meta.image_count, sync_offset=meta.sync_offset, index=i)
                for i, (start, stop) in enumerate(self.partition_bounds())]


class CSRPartition(SourcePartition):
    """A range of rows of a :class:`RawCSRDataSet`; the worker reads them through ``backend``.

    Parameters
    ----------
    arrays : tuple of FlatArray
        ``indptr``, ``indices``, ``data``.
    backend : IOBackend
    descriptor : str
        The TOML file (for messages).
    **kwargs
        See :class:`~udfkit.io.base.Partition`; ``raw_dtype`` is the stored dtype of
        ``data``, the partition's dtype is its native form (values are converted while
        they are densified).
    """

    def __init__(self, *, arrays, backend, descriptor: str, raw_dtype, **kwargs):
        super().__init__(raw_dtype=np.dtype(raw_dtype).newbyteorder("="), **kwargs)
        self.arrays = tuple(arrays)
        self.backend = backend
        self.descriptor = descriptor

    @property
    def supports_zero_copy(self) -> bool:
        return False

    @property
    def file_rows(self) -> tuple[int, int]:
        """``[lo, hi)``: the rows of the files this partition's positions with a frame read."""
        lo, hi = self.valid_range()
        base = self.start + self.sync_offset
        return lo + base, hi + base

    def open_rows(self) -> RowReader:
        """A :class:`~udfkit.io.formats._csr.RowReader` on the three arrays (on the worker):
        ``rows(r0, r1)`` gives the CSR triple of file rows ``[r0, r1)``, ``select(rows)`` that
        of any sorted rows, ``densify(rows, out)`` dense frames. Close it after use."""
        indptr, indices, data = self.arrays
        return RowReader(indptr, indices, data, self.backend, sig_size=self.shape.sig.size)

    def csr_blocks(self, depth: int, roi=None):
        """Yield ``(positions, indptr, indices, values)`` per block of ``depth`` processed frames.

        ``positions`` are partition-local (as :meth:`selected_positions`), the triple is the
        CSR of those frames' rows in their stored dtypes (``indptr`` int64 from 0). The
        arrays are valid until the next block. This is the partition's sparse read: a sparse
        tile path wraps each triple as a scipy.sparse or ``sparse`` matrix of shape
        ``(len(positions), sig_size)`` without densifying.
        """
        yield from self.csr_blocks_at(self.selected_positions(roi), depth,
                                      self.start + self.sync_offset)

    def csr_blocks_at(self, sel, depth: int, file_base: int):
        """:meth:`csr_blocks` of the positions ``sel`` of another partition whose position 0
        reads file row ``file_base`` (a ``stack`` partition that lies in this one)."""
        if sel.size == 0:
            return
        with self.open_rows() as reader:
            yield from self._blocks(reader, sel, depth, file_base)

    @staticmethod
    def _blocks(reader, sel, depth, file_base):
        for b0 in range(0, sel.size, depth):
            block = sel[b0:b0 + depth]
            rows = block + file_base
            if int(rows[-1]) - int(rows[0]) + 1 == rows.size:
                yield (block, *reader.rows(int(rows[0]), int(rows[-1]) + 1))
            else:
                yield (block, *reader.select(rows))

    #: the backend of :meth:`get_sparse_tiles` (the runner asks for it by this name)
    sparse_backend = BACKEND_SCIPY_CSR

    def get_sparse_tiles(self, tiling_scheme, dest_dtype="float32", roi=None, max_entries=None):
        """Yield :class:`~udfkit.io.tiles.DataTile` objects whose ``data`` is a
        ``scipy.sparse.csr_matrix`` of shape ``(depth, sig pixels)``: the processed rows as
        stored, never densified, values in ``dest_dtype`` (LiberTEM's sparse tiles).

        The scheme must have one signal slice (whole frames; the data set's tiling
        constraints give that). Tiles hold ``tiling_scheme.depth`` frames; with
        ``max_entries``, more where the partition's frames hold few entries: as many as
        hold about ``max_entries`` stored entries on average (a sparse tile costs its
        entries, not its frames, and each tile has a fixed cost of its own). Column indices
        are checked against the pixel count; a matrix is valid while the UDFs process it
        (its values are a new array, its indices a copy).
        """
        return self.sparse_tiles_at(self.selected_positions(roi), self.start,
                                    self.start + self.sync_offset, tiling_scheme, dest_dtype,
                                    max_entries)

    def sparse_tiles_at(self, sel, start: int, file_base: int, tiling_scheme, dest_dtype="float32",
                        max_entries=None):
        """:meth:`get_sparse_tiles` of the positions ``sel`` of another partition that starts
        at position ``start`` and whose position 0 reads file row ``file_base`` (a ``stack``
        partition that lies in this one)."""
        if len(tiling_scheme.slices) != 1:
            raise ValueError(f"{self.descriptor}: sparse tiles are whole frames, but the tiling "
                             f"scheme has {len(tiling_scheme.slices)} signal slices")
        dest = np.dtype(dest_dtype).newbyteorder("=")
        if sel.size == 0:
            return
        with self.open_rows() as reader:
            yield from self._sparse_tiles(reader, sel, start, file_base, tiling_scheme.depth, dest,
                                          max_entries)

    def _sparse_tiles(self, reader, sel, start, file_base, depth, dest, max_entries):
        import scipy.sparse

        from . import _csr_kernels as kernels

        sig_shape = self.shape.sig.to_tuple()
        items = prod(sig_shape)
        zeros = (0,) * len(sig_shape)
        if max_entries is not None:
            r0, r1 = int(sel[0]) + file_base, int(sel[-1]) + file_base + 1
            per_row = reader.entries(r0, r1) / (r1 - r0)
            depth = max(depth, min(sel.size, int(max_entries / max(per_row, 1.0))))
        done = 0  # processed frames before the block
        for block, indptr, indices, values in self._blocks(reader, sel, depth, file_base):
            n = block.size
            # int32 where it holds every index and offset (scipy's own choice), so that scipy
            # does not cast again; a copy, since scipy may sort or sum duplicates in place,
            # checked against the pixel count while it is made
            big = max(items, int(indptr[-1])) > np.iinfo(np.int32).max
            idx_dtype = np.int64 if big else np.int32
            idx, bad = kernels.checked_indices(indices, idx_dtype, items)
            if bad >= 0:
                self._raise_bad_index(bad, indptr, block + file_base, items)
            mat = scipy.sparse.csr_matrix(
                (values.astype(dest), idx, indptr.astype(idx_dtype)),
                shape=(n, items), copy=False)
            origin = start + int(block[0])
            yield DataTile(mat, Slice((origin,) + zeros, Shape((n,) + sig_shape,
                                                               sig_dims=len(sig_shape))),
                           0, block + start, done)
            done += n

    def _raise_bad_index(self, k, indptr, rows, items) -> None:
        # rare: the dense reader of the offending frame says which file entry is wrong
        row = int(rows[int(np.searchsorted(indptr, k, side="right")) - 1])
        with self.open_rows() as reader:
            reader.densify(np.array([row]), np.empty((1, items), self.raw_dtype))
        raise DataSetError(f"indices file {self.arrays[1].path!r}: a pixel index of frame {row} "
                           f"is outside the {items} pixels of a frame")

    def open_source(self, frames, depth) -> FrameSource:
        return _DenseSource(self, np.asarray(frames, dtype=np.int64), int(depth))

    def get_tiles(self, tiling_scheme, dest_dtype="float32", roi=None):
        """Yield :class:`~udfkit.io.base.DataTile` objects: the processed rows densified in
        blocks of ``depth`` whole frames into one reused buffer of ``dest_dtype``, each
        signal slice of the scheme a read-only view of the block."""
        sel = self.selected_positions(roi)
        if sel.size == 0:
            return
        dest = np.dtype(dest_dtype).newbyteorder("=")
        sig_shape = self.shape.sig.to_tuple()
        sig_dims = len(sig_shape)
        items = prod(sig_shape)
        depth = tiling_scheme.depth
        buf = aligned_empty(min(depth, sel.size) * items, dest)
        buf[:] = 0
        file_base = self.start + self.sync_offset
        sig_index = [(slice(None),) + sl.get() for sl in tiling_scheme.slices]
        sig_parts = [(sl.origin, sl.shape.to_tuple()) for sl in tiling_scheme.slices]

        def where(origin, n, idx):
            sig_origin, extent = sig_parts[idx]
            return Slice((origin,) + sig_origin, Shape((n,) + extent, sig_dims=sig_dims))

        # the buffer holds the previous block (UDFs only read tiles); with few entries per
        # frame, clearing just the pixels it set costs much less than zeroing every frame
        npos = prev = 0
        no_pos = np.zeros(0, np.int64)
        with self.open_rows() as reader:
            for b0 in range(0, sel.size, depth):
                if npos < 0 or 8 * npos > prev * items:
                    buf[:prev * items] = 0
                elif npos:
                    buf[reader.positions[:npos]] = 0
                block_sel = sel[b0:b0 + depth]
                n = prev = block_sel.size
                out = buf[:n * items].reshape((n, items))
                npos = reader.densify(block_sel + file_base, out, zero=False,
                                      pos=reader.positions if reader.positions is not None
                                      else no_pos)
                block = out.reshape((n,) + sig_shape)
                block.flags.writeable = False
                frame_index = block_sel + self.start
                origin = self.start + int(block_sel[0])
                for idx, index in enumerate(sig_index):
                    yield DataTile(block[index], where(origin, n, idx), idx, frame_index, b0)


class _DenseSource(FrameSource):
    """Frames (file rows) densified in the partition's dtype, for readers that take a
    :class:`~udfkit.io.base.FrameSource` (the ``stack`` format)."""

    def __init__(self, partition: CSRPartition, frames: np.ndarray, depth: int):
        self._frames = frames
        self._items = partition.shape.sig.size
        self._buf = aligned_empty(max(1, min(depth, frames.size)) * self._items, partition.raw_dtype)
        self._reader = partition.open_rows()

    def read(self, i0, i1):
        n = i1 - i0
        if n * self._items > self._buf.size:
            self._buf = aligned_empty(n * self._items, self._buf.dtype)
        flat = self._buf[:n * self._items]
        self._reader.densify(self._frames[i0:i1], flat.reshape((n, self._items)))
        return flat, np.arange(n, dtype=np.int64) * self._items

    def close(self) -> None:
        self._reader.close()
