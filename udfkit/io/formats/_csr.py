"""Reading the three flat arrays of a CSR matrix (indptr, indices, values) through an I/O backend.

The I/O backends move *frames*: fixed-size records of a :class:`~udfkit.io.layout.FileSet`.
A flat array file is described to them as frames of :data:`CHUNK_ITEMS` elements (the
*body*) plus one shorter frame for the elements left over at the end (the *tail*), so that
``mmap``, ``buffered`` and ``direct`` read it with their own checks (file size, truncation
while reading, aligned buffers, ``O_DIRECT``) and the per-element bookkeeping stays small.

:class:`WindowReader` serves element ranges ``[lo, hi)`` of one array from a *window* of at
least :data:`WINDOW_BYTES` that it reads ahead, so that the many small ranges of a partition
(the rows of one tile after another) cost one backend read per window. With ``mmap`` the
window is a view of the mapping (no copy); the block backends copy their reused buffers
into the window.

:class:`RowReader` combines the three: for file rows ``[r0, r1)`` it returns the CSR triple
``(indptr, indices, values)`` of those rows, which the dense tile path densifies and which a
sparse tile path can hand on as it is. :class:`CSRDensifier` turns such a sparse tile into
dense frames for the UDFs of a run that take only dense input.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ...errors import DataSetError
from ..base import FrameSource
from ..layout import FileLayout, FileSet

__all__ = ["FlatArray", "WindowReader", "RowReader", "CSRDensifier", "CHUNK_ITEMS", "WINDOW_BYTES"]

#: elements per frame when a flat array is described to an I/O backend
CHUNK_ITEMS = 4096
#: bytes read ahead per backend read (a window holds at least the range asked for)
WINDOW_BYTES = 4 << 20


@dataclass(frozen=True)
class FlatArray:
    """One flat array file: ``length`` elements of ``dtype`` from byte 0 of ``path``.

    Attributes
    ----------
    path : str
    dtype : numpy.dtype
        As stored (byte order included).
    length : int
        Number of elements.
    role : str
        What the array is (``"indptr"``, ``"indices"``, ``"data"``), for messages.

    Examples
    --------
    >>> a = FlatArray("v.raw", np.dtype("<i4"), 10_000, "data")
    >>> body, tail = a.filesets()
    >>> body.image_count, body.sig_shape, tail.sig_shape, tail.files[0].header_bytes
    (2, (4096,), (1808,), 32768)
    """

    path: str
    dtype: np.dtype
    length: int
    role: str = "array"

    @property
    def body_chunks(self) -> int:
        """Whole chunks of :data:`CHUNK_ITEMS` elements."""
        return self.length // CHUNK_ITEMS

    def filesets(self) -> tuple:
        """``(body, tail)``: FileSets of the whole chunks and of the rest (``None`` if empty)."""
        n_body = self.body_chunks
        rest = self.length - n_body * CHUNK_ITEMS
        body = (FileSet([FileLayout(self.path, 0, self.dtype, (CHUNK_ITEMS,), n_body)])
                if n_body else None)
        tail = (FileSet([FileLayout(self.path, n_body * CHUNK_ITEMS * self.dtype.itemsize,
                                    self.dtype, (rest,), 1)])
                if rest else None)
        return body, tail


class WindowReader:
    """Element ranges of one :class:`FlatArray`, read through ``backend`` a window at a time.

    A window is whole chunks from the one holding the first element asked for, at least
    ``window_bytes`` long (the tail of the file is read whole). When one backend read gives
    the whole window back to back (``mmap``; ``buffered`` and ``direct`` when the window fits
    their buffer), the window is a view of what the backend holds and the source stays open
    until the next window; otherwise the frames are copied into a buffer of the reader.
    With ``mmap`` (a backend without a block size, which serves any range in one read) the
    reader opens one source per file part for its whole life and reads every window from
    it; the block backends open a source per window, whose read plan starts there.

    Parameters
    ----------
    array : FlatArray
    backend : IOBackend
    window_bytes : int
        Bytes read at a time (at least the range asked for).

    Examples
    --------
    >>> import os, tempfile
    >>> from udfkit.io.backends import get_backend
    >>> p = os.path.join(tempfile.mkdtemp(), "a.raw")
    >>> np.arange(10_000, dtype="<u2").tofile(p)
    >>> r = WindowReader(FlatArray(p, np.dtype("<u2"), 10_000), get_backend("buffered"))
    >>> r.get(4090, 4100).tolist()
    [4090, 4091, 4092, 4093, 4094, 4095, 4096, 4097, 4098, 4099]
    >>> int(r.get(9_998, 10_000)[-1])
    9999
    >>> r.close()
    """

    def __init__(self, array: FlatArray, backend, window_bytes: int = WINDOW_BYTES):
        self.array = array
        self._backend = backend
        self._body, self._tail = array.filesets()
        self._window_items = max(CHUNK_ITEMS, window_bytes // array.dtype.itemsize)
        self._lo = self._hi = 0
        self._data = np.empty(0, dtype=array.dtype)
        self._buf: np.ndarray | None = None
        self._source = None  # the open source a window view belongs to
        # a backend that serves any range of frames in one read (mmap) keeps one source per
        # fileset open for the reader's life: opening one (its files, its needed ends, the
        # first mapping) cost more than the copies of a whole small window
        self._persistent = backend.block_bytes is None
        self._open: dict[int, FrameSource] = {}  # id(fileset) -> its source over all its frames

    def get(self, lo: int, hi: int) -> np.ndarray:
        """Elements ``[lo, hi)`` in the stored dtype: read-only, valid until the next call."""
        lo, hi = int(lo), int(hi)
        n = self.array.length
        if not 0 <= lo <= hi <= n:
            raise DataSetError(f"{self.array.role} file {self.array.path!r}: elements {lo}..{hi} "
                               f"are needed, but it holds {n} elements of {self.array.dtype}; "
                               "the files do not fit together (or changed after loading)")
        if lo == hi:
            empty = np.empty(0, dtype=self.array.dtype)
            empty.flags.writeable = False
            return empty
        if not (self._lo <= lo and hi <= self._hi):
            self._load(lo, hi)
        return self._data[lo - self._lo:hi - self._lo]

    def _load(self, lo: int, hi: int) -> None:
        self._release()
        n_body = self.array.body_chunks
        body_end = n_body * CHUNK_ITEMS
        c0 = min(lo // CHUNK_ITEMS, n_body)
        start = c0 * CHUNK_ITEMS
        want = max(hi, start + self._window_items)
        if want >= body_end and hi <= body_end and c0 < n_body:
            # up to the end of the whole chunks only: one read of the body, a view with mmap
            # (taking the short tail along would make the window a copy)
            c1, stop = n_body, body_end
        elif want >= body_end:
            c1, stop = n_body, self.array.length
        else:
            c1 = -(-want // CHUNK_ITEMS)
            stop = c1 * CHUNK_ITEMS
        pieces = []  # (fileset, first frame, frames, element offset in the window)
        if c1 > c0:
            pieces.append((self._body, c0, c1 - c0, 0))
        if stop > body_end:
            pieces.append((self._tail, 0, 1, body_end - start))
        data = self._view(*pieces[0][:3]) if len(pieces) == 1 else None
        if data is None:
            data = self._scratch(stop - start)
            for fileset, first, count, at in pieces:
                self._copy(fileset, first, count, data[at:at + count * fileset.frame_items])
        data = data.view()
        data.flags.writeable = False
        self._data = data
        self._lo, self._hi = start, stop

    def _depth(self, fileset, count: int) -> int:
        block = self._backend.block_bytes
        return count if block is None else max(1, min(count, block // fileset.frame_bytes))

    def _view(self, fileset, first: int, count: int):
        """The frames as a view of one backend read, or None where one read cannot give them."""
        depth = self._depth(fileset, count)
        if depth < count:
            return None
        items = fileset.frame_items
        if self._persistent:
            flat, offsets = self._source_of(fileset).read(first, first + count)
            o = int(offsets[0])
            if count == 1 or bool((np.diff(offsets) == items).all()):
                return flat[o:o + count * items]
            return None
        source = self._backend.open(fileset, np.arange(first, first + count, dtype=np.int64),
                                    depth)
        try:
            flat, offsets = source.read(0, count)
            o = int(offsets[0])
            if count == 1 or bool((np.diff(offsets) == items).all()):
                # the view lives in what the source holds: keep it open until the next window
                self._source, source = source, None
                return flat[o:o + count * items]
        finally:
            if source is not None:
                source.close()
        return None

    def _source_of(self, fileset):
        """The reader's source over all frames of ``fileset`` (persistent backends only)."""
        source = self._open.get(id(fileset))
        if source is None:
            frames = np.arange(fileset.image_count, dtype=np.int64)
            source = self._open[id(fileset)] = self._backend.open(fileset, frames,
                                                                  fileset.image_count)
        return source

    def _copy(self, fileset, first: int, count: int, out: np.ndarray) -> None:
        items = fileset.frame_items
        depth = self._depth(fileset, count)
        if self._persistent:
            self._copy_from(self._source_of(fileset), first, count, depth, items, out)
            return
        with self._backend.open(fileset, np.arange(first, first + count, dtype=np.int64),
                                depth) as source:
            self._copy_from(source, 0, count, depth, items, out)

    @staticmethod
    def _copy_from(source, first: int, count: int, depth: int, items: int, out) -> None:
        for i in range(0, count, depth):
            j = min(count, i + depth)
            flat, offsets = source.read(first + i, first + j)
            o = int(offsets[0])
            if j - i == 1 or bool((np.diff(offsets) == items).all()):
                out[i * items:j * items] = flat[o:o + (j - i) * items]
                continue
            for k, ok in enumerate(offsets.tolist()):
                out[(i + k) * items:(i + k + 1) * items] = flat[ok:ok + items]

    def _scratch(self, n: int) -> np.ndarray:
        buf = self._buf
        if buf is None or buf.size < n:
            buf = self._buf = np.empty(max(n, self._window_items), dtype=self.array.dtype)
        return buf[:n]

    def _release(self) -> None:
        self._data = np.empty(0, dtype=self.array.dtype)
        self._lo = self._hi = 0
        source, self._source = self._source, None
        if source is not None:
            source.close()

    def close(self) -> None:
        self._release()
        self._buf = None
        sources, self._open = list(self._open.values()), {}
        for source in sources:
            source.close()


class RowReader:
    """CSR rows of the three arrays, opened on the worker.

    Parameters
    ----------
    indptr, indices, values : FlatArray
    backend : IOBackend
    sig_size : int
        Elements of one frame (the valid range of ``indices``).

    Examples
    --------
    >>> import os, tempfile
    >>> import scipy.sparse
    >>> from udfkit.io.backends import get_backend
    >>> d = tempfile.mkdtemp()
    >>> m = scipy.sparse.csr_matrix(np.array([[0, 2, 0], [0, 0, 0], [5, 0, 7]], "int32"))
    >>> arrays = []
    >>> for role, a in (("indptr", m.indptr), ("indices", m.indices), ("data", m.data)):
    ...     a.tofile(os.path.join(d, role))
    ...     arrays.append(FlatArray(os.path.join(d, role), a.dtype, a.size, role))
    >>> rows = RowReader(*arrays, get_backend("mmap"), sig_size=3)
    >>> ptr, idx, val = rows.rows(1, 3)
    >>> ptr.tolist(), idx.tolist(), val.tolist()
    ([0, 0, 2], [0, 2], [5, 7])
    >>> out = np.empty((2, 3), np.float32)
    >>> rows.densify(np.array([0, 2]), out)
    0
    >>> out.tolist()
    [[0.0, 2.0, 0.0], [5.0, 0.0, 7.0]]
    >>> [a.tolist() for a in rows.select(np.array([0, 2]))]
    [[0, 1, 3], [1, 0, 2], [2, 5, 7]]
    >>> rows.close()
    """

    #: selected rows closer than this are read as one span (the rows between are skipped by
    #: the kernel), farther ones start a new read
    MAX_GAP_ROWS = 64

    def __init__(self, indptr: FlatArray, indices: FlatArray, values: FlatArray, backend,
                 sig_size: int):
        self._indptr = WindowReader(indptr, backend)
        self._indices = WindowReader(indices, backend)
        self._values = WindowReader(values, backend)
        self.sig_size = int(sig_size)
        self.values_dtype = values.dtype
        #: the position buffer of :meth:`densify` (grown as needed)
        self.positions: np.ndarray | None = None

    def _span(self, r0: int, r1: int):
        """``(indptr, indices, values)`` of file rows ``[r0, r1)`` with indptr as stored
        (int64, not rebased) and the element offset of ``indices[0]``."""
        ptr = np.asarray(self._indptr.get(r0, r1 + 1), dtype=np.int64)
        lo, hi = int(ptr[0]), int(ptr[-1])
        if hi < lo:
            raise DataSetError(f"indptr file {self._indptr.array.path!r}: entries {r0}..{r1} go "
                               f"from {lo} down to {hi}; expected a non-decreasing indptr (the "
                               "file changed after loading?)")
        return ptr, self._indices.get(lo, hi), self._values.get(lo, hi), lo

    def entries(self, r0: int, r1: int) -> int:
        """Stored entries of file rows ``[r0, r1)`` (reads only ``indptr``)."""
        ptr = self._indptr.get(r0, r1 + 1)
        return int(ptr[-1]) - int(ptr[0])

    def rows(self, r0: int, r1: int):
        """The CSR triple of file rows ``[r0, r1)``: ``indptr`` (int64, ``r1 - r0 + 1`` entries
        starting at 0), ``indices`` and ``values`` in their stored dtypes. ``indices`` and
        ``values`` are read-only and valid until the next call."""
        ptr, idx, val, lo = self._span(r0, r1)
        return ptr - lo, idx, val

    def _groups(self, rows: np.ndarray):
        """``(a, b)`` bounds of runs of ``rows`` read as one span each."""
        breaks = np.flatnonzero(np.diff(rows) > self.MAX_GAP_ROWS) + 1
        bounds = [0, *breaks.tolist(), rows.size]
        return zip(bounds[:-1], bounds[1:])

    def select(self, rows: np.ndarray):
        """The CSR triple of the sorted file rows ``rows`` (any gaps), as :meth:`rows` gives it
        for a range; the arrays are new (gathered)."""
        rows = np.asarray(rows, dtype=np.int64)
        counts, idx_parts, val_parts = [], [], []
        for a, b in self._groups(rows):
            r0, r1 = int(rows[a]), int(rows[b - 1]) + 1
            ptr, idx, val, base = self._span(r0, r1)
            rel = rows[a:b] - r0
            starts = ptr[rel] - base
            n = ptr[rel + 1] - base - starts
            total = int(n.sum())
            k = (np.repeat(starts - np.concatenate(([0], np.cumsum(n)[:-1])), n)
                 + np.arange(total, dtype=np.int64))
            counts.append(n)
            idx_parts.append(idx[k])
            val_parts.append(val[k])
        indptr = np.concatenate(([0], np.cumsum(np.concatenate(counts)))).astype(np.int64)
        return indptr, np.concatenate(idx_parts), np.concatenate(val_parts)

    def densify(self, rows: np.ndarray, out: np.ndarray, zero: bool = True, pos=None,
                npos: int = 0) -> int:
        """Write the file rows ``rows`` (sorted) as dense frames into ``out`` (``(n, sig_size)``,
        C-contiguous, any numeric dtype); duplicate entries of a row add up (as scipy's
        ``toarray``).

        With ``zero=False`` the rows of ``out`` must be zero already. With ``pos`` (an int64
        array), the flat positions in ``out`` of the entries written are recorded there from
        ``npos`` on (grown as needed, see :attr:`positions`); returns the count, or -1 when
        they could not be recorded. Without ``pos`` returns 0.
        """
        from . import _csr_kernels as kernels

        rows = np.asarray(rows, dtype=np.int64)
        lost = False
        for a, b in self._groups(rows):
            r0, r1 = int(rows[a]), int(rows[b - 1]) + 1
            ptr, idx, val, base = self._span(r0, r1)
            if pos is not None:
                need = npos + idx.size
                if self.positions is None or self.positions.size < need:
                    grown = np.empty(max(need, 2 * (0 if self.positions is None
                                                    else self.positions.size)), np.int64)
                    grown[:npos] = pos[:npos]
                    self.positions = grown
                pos = self.positions
            bad, npos = kernels.densify(ptr, rows[a:b] - r0, idx, val, base, out[a:b],
                                        self.sig_size, zero=zero, first_row=a, pos=pos,
                                        npos=npos)
            if bad >= 0:
                self._bad_index(ptr, idx, base, r0, bad)
            if npos < 0:
                # positions not recorded (numpy fallback): the caller clears all of out; the
                # remaining groups zero their rows themselves
                pos, zero, npos, lost = None, True, 0, True
        return -1 if lost else npos

    def _bad_index(self, ptr, idx, base, r0, k):
        row = r0 + int(np.searchsorted(ptr, base + k, side="right")) - 1
        raise DataSetError(
            f"indices file {self._indices.array.path!r}: entry {base + k} (of frame {row}) is "
            f"{int(idx[k])}; expected a pixel index from 0 to {self.sig_size - 1} (sig_shape has "
            f"{self.sig_size} pixels)")

    def close(self) -> None:
        for r in (self._indptr, self._indices, self._values):
            r.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class CSRDensifier:
    """Dense frames of CSR tiles in one reused buffer, for UDFs that take only dense input.

    The buffer keeps the previous tile; with few entries per frame, clearing only the pixels
    it set costs much less than zeroing every frame (as the dense tile path of ``raw_csr``
    does). The result is read-only and valid until the next call.

    Examples
    --------
    >>> import scipy.sparse
    >>> d = CSRDensifier()
    >>> m = scipy.sparse.csr_matrix(np.array([[0, 2, 0], [5, 0, 7]], "float32"))
    >>> d(m, (2, 3)).tolist()
    [[0.0, 2.0, 0.0], [5.0, 0.0, 7.0]]
    >>> d(scipy.sparse.csr_matrix(np.array([[1, 0, 0]], "float32")), (1, 3)).tolist()
    [[1.0, 0.0, 0.0]]
    """

    def __init__(self):
        self._buf: np.ndarray | None = None
        self._pos = np.zeros(0, np.int64)
        self._npos = 0  # entries of _pos set by the last tile; -1: clear the whole buffer
        self._used = 0  # elements of the buffer the last tile covered

    def __call__(self, mat, shape: tuple) -> np.ndarray:
        """``mat`` (scipy.sparse CSR, ``(depth, pixels)``) as a dense array of ``shape``."""
        from . import _csr_kernels as kernels

        n, items = mat.shape
        size = n * items
        buf = self._buf
        if buf is None or buf.dtype != mat.dtype or buf.size < size:
            buf = self._buf = np.zeros(max(size, 0 if buf is None else buf.size), mat.dtype)
            self._npos = 0
        elif self._npos < 0 or 8 * self._npos > self._used:
            buf[:self._used] = 0
        elif self._npos:
            buf[self._pos[:self._npos]] = 0
        if self._pos.size < mat.nnz:
            self._pos = np.empty(max(mat.nnz, 2 * self._pos.size), np.int64)
        out = buf[:size].reshape((n, items))
        bad, self._npos = kernels.densify(mat.indptr.astype(np.int64), np.arange(n, dtype=np.int64),
                                          mat.indices, mat.data, 0, out, items, zero=False,
                                          pos=self._pos)
        self._used = size
        if bad >= 0:
            raise ValueError(f"sparse tile: column index {int(mat.indices[bad])} outside the "
                             f"{items} pixels of a frame")
        view = out.reshape(shape)
        view.flags.writeable = False
        return view
