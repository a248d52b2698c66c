"""The ``mmap`` backend: map the partition's bytes and hand out views.

Tiles whose stored bytes already are what the UDF wants are views of the mapping (no
copy at all); everything else is decoded from the mapping in one pass. A partition is
mapped in windows, so address space and resident memory stay bounded. The size of the
file is checked when the mapping is made: touching a mapping beyond the end of a file that
shrank would kill the process with SIGBUS instead of raising an error.

Frames of one tile that lie in different files, or whose offset is not a multiple of the
item size (an odd per-frame header), or of a file whose offset table is not increasing
(chunks stored out of order), cannot be one aligned view; they are copied into a scratch
buffer with ``pread``.
"""

from __future__ import annotations

import mmap
import os

import numpy as np

from ..aligned import aligned_empty
from ..base import FrameSource, IOBackend
from ._files import check_size, needed_ends, open_files, read_exactly

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
        self._fds = open_files(fileset, frames)
        # the last byte this partition needs from each file: windows stop there
        self._ends = {f: end for f, (_, _, end) in needed_ends(fileset, frames).items()}

    def read(self, i0, i1):
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
            self._flat = None
            self._map(f, lo, hi)
            wlo = lo
        return self._flat, (offsets - wlo) // self._itemsize

    def _map(self, f, lo, hi):
        # map at least a window's worth (whole frames: the stride keeps items aligned)
        end = min(max(hi, lo + WINDOW_BYTES), self._ends[f])
        aligned = lo - lo % mmap.ALLOCATIONGRANULARITY
        fd = self._fds[f]
        check_size(fd, self._fs.files[f].path, end, when="while it was being read")
        mm = mmap.mmap(fd, end - aligned, access=mmap.ACCESS_READ, offset=aligned)
        _advise(mm)
        # the array keeps the mapping alive; dropping the last view unmaps it
        self._flat = np.frombuffer(mm, dtype=self._fs.dtype, count=(end - lo) // self._itemsize,
                                   offset=lo - aligned)
        self._win = (f, lo, end)

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
        self._flat = None
        fds, self._fds = self._fds, {}
        for fd in fds.values():
            os.close(fd)
