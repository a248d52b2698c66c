"""Shared-memory transport of task results between processes.

The worker pickles a result with protocol 5 and takes every large buffer (numpy arrays in
the result) out of band: each goes into its own ``multiprocessing.shared_memory`` segment,
and only the small pickle and the segment names travel through the pipe. The receiver maps
the segments, **unlinks them at once** (so nothing is left in ``/dev/shm`` whatever happens
next; the memory lives as long as the arrays that view it) and unpickles with the mapped
buffers, so partition results are not copied through the pipe. Segments are files in
``/dev/shm`` (Linux).

A worker process also allocates the result buffers of its tasks in segments from the start
(:class:`SegmentAllocator`, installed by :func:`set_segment_prefix`): such a buffer is sent
by name and offset, with no copy, and the main process merges straight from its mapping.
Segments of a task that failed are removed by the task (``discard_results``), and any this
process made that a result did not take are removed at the next :func:`dumps`.
"""

from __future__ import annotations

import mmap
import os
import pickle
from math import prod
from multiprocessing import resource_tracker, shared_memory

from ..common.allocation import SHARED_MIN_BYTES, ResultAllocator, set_result_allocator

__all__ = ["dumps", "loads", "discard", "set_segment_prefix", "MIN_OUT_OF_BAND",
           "SegmentAllocator"]

#: buffers smaller than this stay in the pickle (a segment costs a few system calls)
MIN_OUT_OF_BAND = SHARED_MIN_BYTES


_naming: dict = {"prefix": None, "count": 0}


def set_segment_prefix(prefix: str) -> None:
    """Name this process's segments ``<prefix><n>`` (default: random names), and allocate the
    result buffers of the tasks it runs in such segments (:class:`SegmentAllocator`): this is
    a worker process whose results go to the main process through :func:`dumps`."""
    _naming["prefix"] = prefix
    if os.path.isdir(_SHM_DIR):
        set_result_allocator(_ALLOCATOR)


class SegmentAllocator(ResultAllocator):
    """Result buffers in shared-memory segments of their own, sent by :func:`dumps` by name.

    The segment's space is reserved when it is made (``posix_fallocate``): a full
    ``/dev/shm`` is a ``MemoryError`` naming it here, not a ``SIGBUS`` when a UDF first
    writes to a page that tmpfs cannot provide.
    """

    def __init__(self):
        self.live = {}  # segment name -> (address, size) of this process's mapping

    def zeros(self, shape, dtype):
        import numpy as np

        dtype = np.dtype(dtype)
        nbytes = prod(shape) * dtype.itemsize
        name = _new_name() or f"udfkit_{os.getpid()}_{os.urandom(6).hex()}"
        path = os.path.join(_SHM_DIR, name)
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            try:
                os.posix_fallocate(fd, 0, nbytes)
            except OSError as e:
                free = os.statvfs(_SHM_DIR)
                raise MemoryError(
                    f"a result buffer of {nbytes / 2**20:.1f} MiB ({dtype}, shape {shape}) "
                    f"does not fit in shared memory ({_SHM_DIR}: "
                    f"{free.f_bavail * free.f_frsize / 2**20:.1f} MiB free; {e.strerror})") from None
            mm = mmap.mmap(fd, nbytes)
        except BaseException:
            os.unlink(path)
            raise
        finally:
            os.close(fd)
        # a new tmpfs file reads as zeros
        arr = np.frombuffer(mm, dtype=dtype, count=prod(shape)).reshape(shape)
        self.live[name] = (arr.__array_interface__["data"][0], nbytes)
        return arr

    def find(self, address: int, nbytes: int):
        """``(name, offset)`` of the live segment that holds these bytes, or ``None``."""
        for name, (start, size) in self.live.items():
            if start <= address and address + nbytes <= start + size:
                return name, address - start
        return None

    def discard(self, arrays):
        for arr in arrays:
            iface = getattr(arr, "__array_interface__", None)
            if iface is None:
                continue
            hit = self.find(iface["data"][0], max(1, arr.nbytes))
            if hit is not None:
                del self.live[hit[0]]
                _unlink(hit[0])

    def forget_all(self) -> None:
        """Remove every segment still listed: none of them will be sent."""
        for name in list(self.live):
            _unlink(name)
        self.live.clear()


_ALLOCATOR = SegmentAllocator()


def _unlink(name: str) -> None:
    try:
        os.unlink(os.path.join(_SHM_DIR, name.lstrip("/")))
    except FileNotFoundError:
        pass


def _new_name():
    if _naming["prefix"] is None:
        return None
    _naming["count"] += 1
    return f"{_naming['prefix']}{_naming['count']}"


def dumps(obj) -> tuple[bytes, list]:
    """``(pickle, [(segment name, nbytes, offset), ...])``; the segments hold the large
    buffers, in the order of the pickle's out-of-band buffers.

    A buffer that lies in a segment of :class:`SegmentAllocator` is sent by name and offset
    as it is; any other large buffer is copied into a new segment. Segments the allocator
    made that ``obj`` does not hold are removed.
    """
    import cloudpickle

    live = _ALLOCATOR.live
    buffers = []

    def take(buf: pickle.PickleBuffer):
        raw = buf.raw()
        if raw.nbytes < MIN_OUT_OF_BAND:
            return True  # keep it in band
        buffers.append(raw)
        return False

    segments = []
    sent = set()
    try:
        data = cloudpickle.dumps(obj, protocol=5, buffer_callback=take)
        for raw in buffers:
            hit = None
            if live:
                import numpy as np

                address = np.frombuffer(raw, dtype=np.uint8).__array_interface__["data"][0]
                hit = _ALLOCATOR.find(address, raw.nbytes)
            if hit is not None:
                segments.append((hit[0], raw.nbytes, hit[1]))
                sent.add(hit[0])
                continue
            shm = shared_memory.SharedMemory(name=_new_name(), create=True, size=max(1, raw.nbytes))
            # the receiver unlinks it; the tracker of this process must not do it again
            resource_tracker.unregister(shm._name, "shared_memory")  # type: ignore[attr-defined]
            shm.buf[:raw.nbytes] = raw  # type: ignore[index]  # set for a created segment
            segments.append((shm.name, raw.nbytes, 0))
            shm.close()
    except BaseException:
        # nothing is sent: every segment is ours to remove (the allocator's too)
        discard(segments)
        _ALLOCATOR.forget_all()
        raise
    finally:
        del buffers[:]
    # the sent ones are the receiver's now; the others nobody will read
    for name in sent:
        live.pop(name, None)
    _ALLOCATOR.forget_all()
    return data, segments


_SHM_DIR = "/dev/shm"


def _map_and_unlink(name: str) -> memoryview:
    """Map a whole segment read-write and remove its name. The mapping is freed when the
    last array viewing it goes (a plain mmap object, which needs no explicit close)."""
    path = os.path.join(_SHM_DIR, name.lstrip("/"))
    fd = os.open(path, os.O_RDWR)
    try:
        os.unlink(path)
        mm = mmap.mmap(fd, max(1, os.fstat(fd).st_size))
    finally:
        os.close(fd)
    return memoryview(mm)


def loads(data: bytes, segments: list):
    """Map and unlink the segments, then unpickle with them as the out-of-band buffers.

    Entries are ``(name, nbytes, offset)`` (or ``(name, nbytes)``: offset 0); several may
    name one segment, which is mapped once.
    """
    maps = {}
    views = []
    try:
        for name, nbytes, *rest in segments:
            if name not in maps:
                maps[name] = _map_and_unlink(name)
            offset = rest[0] if rest else 0
            views.append(maps[name][offset:offset + nbytes])
    except BaseException:
        discard([s for s in segments if s[0] not in maps])
        raise
    del maps
    return pickle.loads(data, buffers=views)


def discard(segments: list) -> None:
    """Remove segments that will not be read (a result nobody wants any more)."""
    for name, *_ in segments:
        _unlink(name)
