"""Where a task allocates the partition buffers that it returns.

By default a task's result buffers are plain ``numpy.zeros`` arrays. A process whose results
travel to another process installs a :class:`ResultAllocator` that places them where the
transport can take them without a copy: the ``processes`` executor's worker allocates them
in shared-memory segments (:mod:`udfkit.executor._shm`), so that sending a partition result
moves no bytes and the main process merges straight from the mapped segment. The UDF layer
allocates through :func:`result_zeros` and gives back what it will not return through
:func:`discard_results`; it never learns where the memory lives.

The allocator is one per process (a worker runs one task at a time).
"""

from __future__ import annotations

from math import prod

import numpy as np

__all__ = ["ResultAllocator", "set_result_allocator", "get_result_allocator", "result_zeros",
           "discard_results", "SHARED_MIN_BYTES"]

#: result buffers smaller than this are allocated by numpy and copied by the transport: a
#: shared-memory segment costs a few system calls and at least a page
SHARED_MIN_BYTES = 64 << 10


class ResultAllocator:
    """Allocates result buffers; the default is ``numpy.zeros``.

    Subclasses override :meth:`zeros` and :meth:`discard`.
    """

    def zeros(self, shape: tuple, dtype) -> np.ndarray:
        """A zero-filled, C-contiguous, writable array of ``shape`` and ``dtype``."""
        return np.zeros(shape, dtype=dtype)

    def discard(self, arrays) -> None:
        """Free what :meth:`zeros` made for ``arrays`` that will not be returned (a task
        that failed); arrays made elsewhere are ignored."""


_DEFAULT = ResultAllocator()
_state = {"allocator": _DEFAULT}


def set_result_allocator(allocator: ResultAllocator | None) -> ResultAllocator:
    """Install ``allocator`` for this process (``None``: numpy); return the previous one."""
    if allocator is not None and not isinstance(allocator, ResultAllocator):
        raise TypeError(f"allocator: expected a ResultAllocator or None, got "
                        f"{type(allocator).__name__}")
    previous = _state["allocator"]
    _state["allocator"] = _DEFAULT if allocator is None else allocator
    return previous


def get_result_allocator() -> ResultAllocator:
    """The allocator of this process."""
    return _state["allocator"]


def result_zeros(shape, dtype) -> np.ndarray:
    """A zero-filled result buffer from this process's allocator (small ones from numpy).

    Examples
    --------
    >>> result_zeros((2, 3), "float32")
    array([[0., 0., 0.],
           [0., 0., 0.]], dtype=float32)
    """
    shape = tuple(int(s) for s in shape)
    dtype = np.dtype(dtype)
    allocator = _state["allocator"]
    if allocator is _DEFAULT or prod(shape) * dtype.itemsize < SHARED_MIN_BYTES:
        return np.zeros(shape, dtype=dtype)
    return allocator.zeros(shape, dtype)


def discard_results(arrays) -> None:
    """Give back result buffers that will not be returned (see :meth:`ResultAllocator.discard`)."""
    allocator = _state["allocator"]
    if allocator is not _DEFAULT:
        allocator.discard(list(arrays))
