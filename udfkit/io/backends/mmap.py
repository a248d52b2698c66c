"""The ``mmap`` backend: map the partition's bytes and hand out views.

Tiles whose stored bytes already are what the UDF wants are views of the mapping (no
copy at all); everything else is decoded from the mapping in one pass. A partition is
mapped in windows, so address space and resident memory stay bounded.

A file that shrinks while it is mapped must not kill the process: touching a mapped page
beyond the new end of the file raises ``SIGBUS``. The size is checked when a window is mapped,
but the file can shrink after that, while the UDF reads the tiles. So each window's
addresses are registered with the ``SIGBUS`` handler of :mod:`._sigbus`, which maps zeros
over the lost pages and counts the fault; the reader checks that count before each tile and
when it closes, and raises a :class:`~udfkit.errors.FileChangedError` (a ``DataSetError``
and an ``OSError``) with the file's old and new size. The check is one array load per tile,
the registration two stores per window. Where the handler cannot be installed (other than
Linux on x86-64/AArch64) the check at mapping time is all there is.

Frames of one tile that lie in different files, or whose offset is not a multiple of the
item size (an odd per-frame header), or of a file whose offset table is not increasing
(chunks stored out of order), cannot be one aligned view; they are copied into a scratch
buffer with ``pread``. So are all frames when every guard slot is taken (hundreds of
partitions open at once in one process).
"""

from __future__ import annotations

import errno
import mmap
import os

import numpy as np

from ...errors import FileChangedError, IOBackendError
from ..aligned import aligned_empty
from ..base import FrameSource, IOBackend
from . import _sigbus
from ._files import needed_ends, open_files, read_exactly, size_at_open, truncated_message

__all__ = ["MMapBackend", "WINDOW_BYTES"]

#: bytes mapped at a time (the peak of mapped, resident file pages per partition)
WINDOW_BYTES = 32 << 20


def _advise(mm) -> None:
    """Sequential access, and huge pages for what the page faults read in.

    With ``MADV_HUGEPAGE`` the kernel fills the page cache from a fault with 2 MiB folios
    (where the file system supports large folios), and a fault then maps a whole folio. Read
    in by 4 KiB-page faults instead, a hot 2 GiB uint16 file summed at 13 GB/s with two
    worker processes here; read in with huge folios, at 29–31 GB/s. Kernels without
    transparent huge pages refuse the advice, which only costs the speed-up.
    """
    for advice in ("MADV_SEQUENTIAL", "MADV_HUGEPAGE"):
        if hasattr(mmap, advice) and hasattr(mm, "madvise"):
            try:
                mm.madvise(getattr(mmap, advice))
            except OSError:
                pass


def _viewable(layout, itemsize: int) -> bool:
    if layout.frame_offsets is not None:
        return layout.increasing and not np.any(layout.frame_offsets % itemsize)
    return layout.frame_offset(0) % itemsize == 0 and layout.stride % itemsize == 0


class MMapBackend(IOBackend):
    """Memory-mapped reads (the default backend).

    Examples
    --------
    >>> import numpy as np, tempfile, os
    >>> from udfkit.io.layout import FileLayout, FileSet
    >>> d = tempfile.mkdtemp(); p = os.path.join(d, "f.raw")
    >>> np.arange(24, dtype="uint16").tofile(p)
    >>> files = FileSet([FileLayout(p, 0, np.dtype("uint16"), (2, 3), 4)])
    >>> with MMapBackend().open(files, np.array([2, 3]), 2) as src:
    ...     flat, offsets = src.read(0, 2)
    ...     flat.tolist(), offsets.tolist()
    ([12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23], [0, 6])
    """

    name = "mmap"

    @property
    def supports_zero_copy(self) -> bool:
        return True

    def open(self, fileset, frames, depth) -> FrameSource:
        return _MMapSource(fileset, np.asarray(frames, dtype=np.int64))


class _MMapSource(FrameSource):
    """Maps the files in windows of about :data:`WINDOW_BYTES`.

    Mapped pages count towards a process' resident memory, so mapping a whole partition
    would make the peak RSS grow with the partition size. A window is unmapped as soon as the
    last view into it is gone (tiles must not be kept, so that is right after the read moves on).
    """

    def __init__(self, fileset, frames):
        self._fs = fileset
        self._frames = frames
        self._itemsize = fileset.dtype.itemsize
        self._items = fileset.frame_items
        self._win = (-1, 0, 0)  # file, first and end byte of the mapped data
        self._flat = None
        self._scratch = None
        # per file: can a tile be a view, i.e. do all its frames start on a whole item (no odd
        # header or stride) and follow each other in the file (offset tables may not)?
        self._aligned = [_viewable(layout, self._itemsize) for layout in fileset.files]
        # the guard is installed once per process; without it, mapping is as unguarded as
        # numpy.memmap (platforms other than Linux on x86-64/AArch64)
        self._guarded = _sigbus.install()
        self._slot = None  # the guard slot of the current window
        self._failed = False
        self._fds = open_files(fileset, frames)
        # the last byte this partition needs from each file: windows stop there
        self._ends = {f: end for f, (_, _, end) in needed_ends(fileset, frames).items()}

    def read(self, i0, i1):
        if self._slot is not None and _sigbus.faults(self._slot):
            self._raise_fault()
        frames = self._frames[i0:i1]
        fs = self._fs
        f = fs.file_of(int(frames[0]))
        same_file = int(frames[-1]) < int(fs.starts[f + 1])
        if not same_file or not self._aligned[f]:
            return self._copy(frames)
        offsets = fs.files[f].frame_offset(frames - int(fs.starts[f]))
        lo, hi = int(offsets[0]), int(offsets[-1]) + fs.frame_bytes
        wf, wlo, whi = self._win
        if not (wf == f and wlo <= lo and hi <= whi):
            self._unmap()
            if not self._map(f, lo, hi):
                return self._copy(frames)
            wlo = lo
        return self._flat, (offsets - wlo) // self._itemsize

    def _map(self, f, lo, hi) -> bool:
        """Map the window from ``lo``; False when it could not be guarded (then unmapped)."""
        # map at least a window's worth (whole frames: the stride keeps items aligned)
        end = min(max(hi, lo + WINDOW_BYTES), self._ends[f])
        aligned = lo - lo % mmap.ALLOCATIONGRANULARITY
        fd = self._fds[f]
        path = self._fs.files[f].path
        if os.fstat(fd).st_size < end:
            raise FileChangedError(truncated_message(fd, path, end))
        try:
            mm = mmap.mmap(fd, end - aligned, access=mmap.ACCESS_READ, offset=aligned)
        except ValueError:
            # the file shrank between the size check and the mapping (another program
            # truncates it now): mmap says only "length is greater than file size"
            if os.fstat(fd).st_size < end:
                raise FileChangedError(truncated_message(fd, path, end)) from None
            raise
        # the array keeps the mapping alive; dropping the last view unmaps it
        flat = np.frombuffer(mm, dtype=self._fs.dtype, count=(end - lo) // self._itemsize,
                             offset=lo - aligned)
        if self._guarded:
            start = flat.__array_interface__["data"][0] - (lo - aligned)
            page = mmap.PAGESIZE
            self._slot = _sigbus.register(start, start + -(-(end - aligned) // page) * page)
            if self._slot is None:
                del flat
                mm.close()
                return False
        _advise(mm)
        self._flat = flat
        self._win = (f, lo, end)
        return True

    def _unmap(self) -> None:
        # a fault in the window that is left must still end the run
        if self._slot is not None:
            slot, faulted = self._slot, _sigbus.faults(self._slot)
            self._slot = None
            _sigbus.release(slot)
            if faulted and not self._failed:
                self._raise_fault()
        self._flat = None
        self._win = (-1, 0, 0)

    def _raise_fault(self):
        self._failed = True  # once: close() after this error must not raise it again
        f = self._win[0]
        fd = self._fds[f]
        path = self._fs.files[f].path
        now = os.fstat(fd).st_size
        old = size_at_open(fd)
        if old is not None and now < old:
            raise FileChangedError(truncated_message(fd, path, self._ends[f]))
        raise IOBackendError(errno.EIO, f"reading file {path!r} through its memory map failed with a "
                             f"bus error (it has {now} bytes, {old} when the partition opened): an "
                             "I/O error of its storage, or the file shrank and grew again; use "
                             "io_backend='buffered' to get the operating system's error", path)

    def _copy(self, frames):
        """Frames that cannot be one aligned view: ``pread`` each into a scratch buffer."""
        fs = self._fs
        n = frames.size
        nbytes = fs.frame_bytes
        if self._scratch is None or self._scratch.size < n * nbytes:
            self._scratch = aligned_empty(n * nbytes, np.uint8)
        view = memoryview(self._scratch)
        for k, fr in enumerate(frames):
            f = fs.file_of(int(fr))
            layout = fs.files[f]
            off = layout.frame_offset(int(fr) - int(fs.starts[f]))
            read_exactly(self._fds[f], view[k * nbytes:(k + 1) * nbytes], off, nbytes, layout.path)
        flat = self._scratch[:n * nbytes].view(fs.dtype)
        return flat, np.arange(n, dtype=np.int64) * self._items

    def close(self) -> None:
        try:
            self._unmap()
        finally:
            self._flat = None
            fds, self._fds = self._fds, {}
            for fd in fds.values():
                os.close(fd)
