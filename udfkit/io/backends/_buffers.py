"""Page-aligned read buffers, kept in a pool so that the partitions of a process reuse them.

A fresh buffer costs a page fault per 4 KiB the first time it is written: for the 4 MiB
default of the ``buffered`` backend that is about 2 ms, more than ten reads of it from the
page cache. Partitions are opened one after another in a worker, so handing the buffers of a
closed partition to the next one removes that cost from every partition but the first.

Buffers are anonymous memory maps (page-aligned, as ``O_DIRECT`` needs) with
``MADV_HUGEPAGE``, so a large buffer sits in few TLB entries.
"""

from __future__ import annotations

import mmap
import threading

import numpy as np

__all__ = ["BufferPool", "POOL", "PAGE"]

PAGE = mmap.PAGESIZE


class BufferPool:
    """Idle buffers by size, handed out by :meth:`take` and returned by :meth:`give`.

    Parameters
    ----------
    max_idle_bytes : int
        Idle buffers beyond this many bytes are dropped (the oldest first), so a process
        does not keep more memory than a few partitions need.

    Examples
    --------
    >>> pool = BufferPool()
    >>> buf = pool.take(10_000)
    >>> buf.size, buf.ctypes.data % PAGE
    (12288, 0)
    >>> pool.give(buf)
    >>> pool.take(12_288) is buf
    True
    """

    def __init__(self, max_idle_bytes: int = 256 << 20):
        self.max_idle_bytes = max_idle_bytes
        self._idle: list[np.ndarray] = []  # oldest first
        self._lock = threading.Lock()  # the threads executor opens partitions concurrently

    def take(self, nbytes: int) -> np.ndarray:
        """A page-aligned ``uint8`` buffer of ``nbytes`` rounded up to whole pages."""
        size = max(PAGE, -(-int(nbytes) // PAGE) * PAGE)
        with self._lock:
            for k in range(len(self._idle) - 1, -1, -1):
                if self._idle[k].size == size:
                    return self._idle.pop(k)
        return _new_buffer(size)

    def give(self, buf: np.ndarray) -> None:
        """Return a buffer from :meth:`take`; its contents may be overwritten from now on."""
        with self._lock:
            self._idle.append(buf)
            total = sum(b.size for b in self._idle)
            while self._idle and total > self.max_idle_bytes:
                total -= self._idle.pop(0).size

    @property
    def idle_bytes(self) -> int:
        """Bytes held by idle buffers."""
        with self._lock:
            return sum(b.size for b in self._idle)


def _new_buffer(size: int) -> np.ndarray:
    if hasattr(mmap, "MAP_PRIVATE"):
        m = mmap.mmap(-1, size, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
    else:  # pragma: no cover - Windows: anonymous maps are private there
        m = mmap.mmap(-1, size)
    advice = getattr(mmap, "MADV_HUGEPAGE", None)
    if advice is not None and size >= 2 << 20:
        try:
            m.madvise(advice)
        except OSError:  # pragma: no cover - kernels without transparent huge pages
            pass
    # the array keeps the map alive; it is unmapped when the last view of it is gone
    return np.frombuffer(m, dtype=np.uint8)


#: the pool of this process
POOL = BufferPool()
