"""The ``mmap`` backend: map the partition's bytes and hand out views.

Tiles whose stored bytes already are what the UDF wants are views of the mapping (no
copy at all); everything else is decoded from the mapping in one pass. Each partition maps
only its own byte range, so address space stays bounded on huge files. The size of the
file is checked when the mapping is made: touching a mapping beyond the end of a file that
shrank would kill the process with SIGBUS instead of raising an error.
"""

from __future__ import annotations

import mmap
import os

import numpy as np

from ...errors import DataSetError
from ..base import FrameSource, IOBackend

__all__ = ["MMapBackend"]


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
    def __init__(self, layout, first: int, stop: int):
        self._first = first
        self._items = layout.frame_items
        self._mm = None
        count = (stop - first) * self._items
        if count <= 0:
            self._flat = np.empty(0, dtype=layout.dtype)
            return
        start = layout.header_bytes + first * layout.frame_bytes
        length = (stop - first) * layout.frame_bytes
        aligned = start - start % mmap.ALLOCATIONGRANULARITY
        try:
            fd = os.open(layout.path, os.O_RDONLY)
        except FileNotFoundError:
            raise DataSetError(f"file {layout.path!r} disappeared after it was loaded") from None
        try:
            size = os.fstat(fd).st_size
            if size < start + length:
                raise DataSetError(
                    f"file {layout.path!r} has {size} bytes, but frames {first}..{stop - 1} need "
                    f"bytes up to {start + length}; the file was truncated after it was loaded")
            self._mm = mmap.mmap(fd, length + (start - aligned), access=mmap.ACCESS_READ,
                                 offset=aligned)
        finally:
            os.close(fd)
        if hasattr(self._mm, "madvise"):
            self._mm.madvise(mmap.MADV_SEQUENTIAL)
        self._flat = np.frombuffer(self._mm, dtype=layout.dtype, count=count, offset=start - aligned)

    def read(self, first: int, stop: int) -> np.ndarray:
        a = (first - self._first) * self._items
        b = (stop - self._first) * self._items
        return self._flat[a:b]

    def close(self) -> None:
        self._flat = None
        if self._mm is not None:
            try:
                self._mm.close()
            except BufferError:
                # a UDF kept a view of a tile; the mapping is released with the last view
                pass
            self._mm = None
