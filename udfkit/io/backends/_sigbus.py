"""Turning a bus error in a mapped file into an error the reader can raise.

Reading a memory map beyond the end of its file makes the kernel send ``SIGBUS``, and a
Python process cannot survive that: the signal module's handler only sets a flag and
returns, the faulting instruction runs again, and the process dies (or loops). A file that
another program truncates while a partition reads it through ``mmap`` therefore killed the
worker, or the user's interpreter on the inline and threads executors. Checking the file size
before touching the mapping does not close the gap: the file can shrink between the check
and the access, and zero-copy tiles are read by the UDF long after the backend handed them out.

So this module installs a native ``SIGBUS`` handler (built with llvmlite, see
:mod:`._sigbus_handler`) that knows the address ranges of the backend's mappings:

* a fault inside a registered range maps anonymous zero pages over the rest of the range
  (``mmap`` with ``MAP_FIXED``, which the kernel performs like any system call from a
  handler), counts the fault in the range's slot and returns; the access is retried and reads
  zeros. The reader checks its slot before each tile and when it closes, and raises an error
  naming the file and its sizes, so the zeros never reach a result;
* any other bus error goes to the handler that was installed before (Python's
  ``faulthandler``, or the default action): this handler puts it back and returns, and the
  access faults again into it. A ``SIGBUS`` sent with ``kill`` is re-raised after that.

The handler reads a fixed table of ``int64``: the previous ``struct sigaction``, a few
constants, and one slot (start, end, faults) per guarded range. It exists for Linux on x86-64
and AArch64 (whose ``siginfo_t`` and ``struct sigaction`` layouts it knows); elsewhere
:func:`install` returns False and readers stay unguarded.
"""

from __future__ import annotations

import ctypes
import mmap
import os
import platform
import signal
import sys
import threading
from contextlib import contextmanager
from typing import Any

import numpy as np

__all__ = ["install", "register", "release", "faults", "guarded_reads", "SLOTS"]

#: ranges that can be guarded at once in one process (one per open mmap partition)
SLOTS = 256

# table layout (int64 words): the previous ``struct sigaction`` (152 bytes on the supported
# platforms) in words 0..63, constants from 64, then per slot: start, end, faults
OLD = 0
PAGE, FLAGS = 64, 65
FIRST = 80
SIZE = FIRST + 3 * SLOTS

# Linux generic values (x86-64 and AArch64 agree)
_MAP_FIXED = 0x10
_SA_SIGINFO = 0x4
_SA_RESTART = 0x10000000
_SA_FLAGS_AT = 136  # after the handler (8 bytes) and sa_mask (128 bytes)

_lock = threading.Lock()
_table_lock = threading.Lock()
_table: np.ndarray | None = None
_words: Any = None  # a memoryview of the table: item access without numpy scalars (per tile)
_free: list[int] = []
_state = {"done": False, "ok": False}
_handler = 0  # the handler's address


def _supported() -> bool:
    return (sys.platform.startswith("linux") and sys.byteorder == "little"
            and platform.machine().lower() in ("x86_64", "amd64", "aarch64", "arm64"))


def table() -> np.ndarray:
    """The handler's table (made on first use; its address is fixed for the process)."""
    global _table, _words
    with _table_lock:
        if _table is None:
            t = np.zeros(SIZE, dtype=np.int64)
            t[PAGE] = mmap.PAGESIZE
            t[FLAGS] = mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS | _MAP_FIXED
            _words = memoryview(t)  # type: ignore[arg-type]  # numpy arrays are buffers
            _table = t
    return _table


def install() -> bool:
    """Install the handler in this process (once); False where it cannot be installed.

    Safe to call from many threads at once: every caller gets the outcome of the one
    installation, never an answer from before it finished (a thread told False while another
    thread was still building the handler would map its windows unguarded).
    """
    if _state["done"]:
        return _state["ok"]
    with _lock:
        if not _state["done"]:
            _state["ok"] = _install()
            _state["done"] = True  # last: the fast path above trusts "ok" once this is set
    return _state["ok"]


def _install() -> bool:
    global _handler
    if not _supported():
        return False
    try:
        from ._sigbus_handler import build

        _handler = build(table().ctypes.data, slots=SLOTS, first=FIRST, page_w=PAGE,
                         flags_w=FLAGS, old_w=OLD)
    except Exception:  # pragma: no cover - an llvmlite that cannot build it
        # unguarded reads are what every mmap reader does; failing every run is worse
        return False
    action = np.zeros(64, dtype=np.int64)
    action[0] = _handler
    action.view(np.int32)[_SA_FLAGS_AT // 4] = _SA_SIGINFO | _SA_RESTART
    libc = ctypes.CDLL(None, use_errno=True)
    rc = libc.sigaction(int(signal.SIGBUS), ctypes.c_void_p(action.ctypes.data),
                        ctypes.c_void_p(table().ctypes.data + 8 * OLD))
    if rc != 0:
        return False
    _free.extend(range(SLOTS - 1, -1, -1))  # before "ok": register() then finds free slots
    return True


def register(start: int, end: int) -> int | None:
    """Guard the addresses ``[start, end)``; the slot to pass to :func:`faults`/:func:`release`,
    or None when the handler is not installed or every slot is taken."""
    if not _state["ok"]:
        return None
    with _lock:
        if not _free:
            return None
        slot = _free.pop()
        w = FIRST + 3 * slot
        _words[w + 2] = 0
        _words[w] = start
        _words[w + 1] = end  # last: the range is live once both bounds are set
    return slot


def release(slot: int | None) -> None:
    """Stop guarding ``slot``'s range (before it is unmapped)."""
    if slot is None:
        return
    with _lock:
        w = FIRST + 3 * slot
        _words[w + 1] = 0  # first: an empty range matches no address
        _words[w] = 0
        _free.append(slot)


def faults(slot: int | None) -> int:
    """Bus errors caught in ``slot``'s range since it was registered."""
    if slot is None:
        return 0
    return _words[FIRST + 3 * slot + 2]


def _byte_bounds(arr: np.ndarray) -> tuple[int, int]:
    try:
        from numpy.lib.array_utils import byte_bounds
    except ImportError:  # numpy < 2
        byte_bounds = np.byte_bounds  # type: ignore[attr-defined]
    return byte_bounds(arr)


@contextmanager
def guarded_reads(arr: np.ndarray, path: str):
    """Read ``arr``, a view of a file mapping (an ``np.memmap``), inside the block without
    risking ``SIGBUS``: if the file shrinks, the lost pages read as zeros and the block ends
    with a :class:`~udfkit.errors.FileChangedError` naming the file.

    For readers that map a file themselves instead of going through the ``mmap`` backend.
    Unguarded (as before) where :func:`install` is not possible.

    Examples
    --------
    >>> import os, tempfile
    >>> path = os.path.join(tempfile.mkdtemp(), "a.bin")
    >>> np.arange(4096, dtype=np.uint8).tofile(path)
    >>> arr = np.memmap(path, dtype=np.uint8, mode="r")
    >>> with guarded_reads(arr, path):
    ...     int(arr[:4].sum())
    6
    """
    from ...errors import FileChangedError

    slot = None
    if install():
        lo, hi = _byte_bounds(arr)
        page = mmap.PAGESIZE
        # whole pages: a mapping spans whole pages, so this stays inside arr's mapping
        slot = register(lo - lo % page, -(-hi // page) * page)
    try:
        yield arr
    finally:
        faulted = faults(slot)
        release(slot)
        if faulted:
            raise FileChangedError(f"file {path!r} shrank to {os.stat(path).st_size} bytes while it "
                                   "was being read through a memory map; do not truncate or "
                                   "rewrite a file while a run reads it")
