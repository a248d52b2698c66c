"""The ``direct`` backend: the buffered reads with ``O_DIRECT``, bypassing the page cache.

For data sets much larger than RAM: the page cache cannot hold them anyway, and filling it
costs a copy and memory that other processes need. Direct reads must start and end on block
boundaries of the device and land in aligned memory, so every run of the read plan is
widened to :data:`ALIGN` bytes and the bytes outside the frames are ignored (see
:mod:`udfkit.io.readplan`). File systems without direct I/O (tmpfs, some network file
systems) refuse to open the file; the error says to use ``"buffered"`` instead.
"""

from __future__ import annotations

import errno
import os

from ...errors import DataSetError
from ._files import open_files
from .buffered import DEFAULT_BLOCK_BYTES, BufferedBackend

__all__ = ["DirectBackend", "ALIGN"]

#: alignment of offsets, sizes and buffers; 4096 covers the logical block size of
#: common devices (512 or 4096 bytes)
ALIGN = 4096


class DirectBackend(BufferedBackend):
    """Reads with ``O_DIRECT`` into aligned, reused buffers.

    Parameters
    ----------
    buffer_size, readahead, max_gap
        As for :class:`~udfkit.io.backends.buffered.BufferedBackend`; read-ahead is on by
        default, because every direct read waits for the device.

    Examples
    --------
    >>> DirectBackend()
    DirectBackend(buffer_size=16777216, readahead=True)
    """

    name = "direct"
    _align = ALIGN

    def __init__(self, buffer_size: int | str = 4 * DEFAULT_BLOCK_BYTES, readahead: bool = True,
                 max_gap: int = 64 << 10):
        super().__init__(buffer_size=buffer_size, readahead=readahead, max_gap=max_gap)

    def _open_files(self, fileset, frames):
        flag = getattr(os, "O_DIRECT", None)
        if flag is None:  # pragma: no cover - macOS, Windows
            raise DataSetError("io_backend 'direct' needs O_DIRECT, which this operating system "
                               "does not have; use io_backend='buffered'")
        try:
            return open_files(fileset, frames, flag)
        except OSError as e:
            if e.errno == errno.EINVAL:
                raise DataSetError(f"file {e.filename!r}: its file system does not support direct I/O "
                                   f"(O_DIRECT); use io_backend='buffered' (or 'mmap') for it") from None
            raise
