"""The ``mmap`` backend: map the partition's bytes and hand out views.

Tiles whose stored bytes already are what the UDF wants are views of the mapping (no
copy at all); everything else is decoded from the mapping in one pass. A partition is
mapped in windows, so address space and resident memory stay bounded. The size of the
file is checked when the mapping is made: touching a mapping beyond the end of a file that
shrank would kill the process with SIGBUS instead of raising an error.
"""

from __future__ import annotations

import mmap
import os

import numpy as np

from ...errors import DataSetError
from ..base import FrameSource, IOBackend

__all__ = ["MMapBackend", "WINDOW_BYTES"]

#: bytes mapped at a time (the peak of mapped, resident file pages per partition)
WINDOW_BYTES = 32 << 20


class MMapBackend(IOBackend):
    """Memory-mapped reads (the default backend).

    Examples
    --------
    >>> import numpy as np, tempfile, os
    >>> from udfkit.io.layout import FileLayout
    >>> d = tempfile.mkdtemp(); p = os.path.join(d, "f.raw")
    >>> np.arange(24, dtype="uint16").tofile(p)
    >>> layout = FileLayout(p, 0, np.dtype("uint16"), (2, 3), 4)
    >>> with MMapBackend().open(layout, 1, 3) as src:
    ...     src.read(2, 3).tolist()
    [12, 13, 14, 15, 16, 17]
    """

    name = "mmap"

    @property
    def supports_zero_copy(self) -> bool:
        return True

    def open(self, layout, first: int, stop: int) -> FrameSource:
        return _MMapSource(layout, first, stop)


class _MMapSource(FrameSource):
    """Maps the partition in windows of about :data:`WINDOW_BYTES`.

    Mapped pages count towards a process' resident memory, so mapping a whole partition
    would make the peak RSS grow with the partition size. A window is unmapped as soon as the
    last view into it is gone (tiles must not be kept, so that is right after the read moves on).
    """

    def __init__(self, layout, first: int, stop: int):
        self._layout = layout
        self._first = first
        self._stop = stop
        self._items = layout.frame_items
        self._frames_per_window = max(1, WINDOW_BYTES // max(1, layout.frame_bytes))
        self._win = (0, 0)
        self._flat = None
        self._fd = None
        if stop <= first:
            return
        try:
            self._fd = os.open(layout.path, os.O_RDONLY)
        except FileNotFoundError:
            raise DataSetError(f"file {layout.path!r} disappeared after it was loaded") from None
        end = layout.header_bytes + stop * layout.frame_bytes
        size = os.fstat(self._fd).st_size
        if size < end:
            self.close()
            raise DataSetError(
                f"file {layout.path!r} has {size} bytes, but frames {first}..{stop - 1} need "
                f"bytes up to {end}; the file was truncated after it was loaded")

    def _map(self, first: int, stop: int) -> None:
        layout = self._layout
        stop = min(max(stop, first + self._frames_per_window), self._stop)
        start = layout.header_bytes + first * layout.frame_bytes
        length = (stop - first) * layout.frame_bytes
        aligned = start - start % mmap.ALLOCATIONGRANULARITY
        size = os.fstat(self._fd).st_size
        if size < start + length:
            raise DataSetError(
                f"file {layout.path!r} has {size} bytes, but frames {first}..{stop - 1} need "
                f"bytes up to {start + length}; the file was truncated while it was being read")
        mm = mmap.mmap(self._fd, length + (start - aligned), access=mmap.ACCESS_READ,
                       offset=aligned)
        if hasattr(mm, "madvise"):
            mm.madvise(mmap.MADV_SEQUENTIAL)
        # the array keeps the mapping alive; dropping the last view unmaps it
        self._flat = np.frombuffer(mm, dtype=layout.dtype, count=(stop - first) * self._items,
                                   offset=start - aligned)
        self._win = (first, stop)

    def read(self, first: int, stop: int) -> np.ndarray:
        if first < self._first or stop > self._stop:
            raise IndexError(f"frames [{first}, {stop}) outside the opened range "
                             f"[{self._first}, {self._stop})")
        lo, hi = self._win
        if not (lo <= first and stop <= hi):
            self._flat = None
            self._map(first, stop)
            lo = first
        return self._flat[(first - lo) * self._items:(stop - lo) * self._items]

    def close(self) -> None:
        self._flat = None
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
