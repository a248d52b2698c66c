"""Cache-line aligned scratch buffers: the decode, correction and copy buffers of the I/O layer.

Tiles that are not views of the stored bytes are written into a buffer that is reused for
every tile of a partition. Starting that buffer on a cache line (64 bytes) means a tile row
never shares a line with the previous allocation, and the numba kernels that fill it get
aligned vector stores. The page-aligned *read* buffers of the block backends are a separate
pool (:mod:`udfkit.io.backends._buffers`): they must be page-aligned for ``O_DIRECT``.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import DTypeLike

__all__ = ["aligned_empty", "CACHE_LINE"]

#: bytes of alignment of every buffer :func:`aligned_empty` returns
CACHE_LINE = 64


def aligned_empty(n: int, dtype: DTypeLike) -> np.ndarray:
    """A 1D array of ``n`` uninitialised elements whose data start on a 64-byte boundary.

    Parameters
    ----------
    n : int
        Number of elements.
    dtype : dtype-like
        Element type.

    Returns
    -------
    numpy.ndarray
        A view of a slightly larger byte buffer; it keeps the buffer alive.

    Examples
    --------
    >>> a = aligned_empty(10, "float32")
    >>> a.shape, a.dtype, a.ctypes.data % CACHE_LINE
    ((10,), dtype('float32'), 0)
    """
    dtype = np.dtype(dtype)
    raw = np.empty(n * dtype.itemsize + CACHE_LINE, dtype=np.uint8)
    skip = (-raw.ctypes.data) % CACHE_LINE
    return raw[skip:skip + n * dtype.itemsize].view(dtype)
