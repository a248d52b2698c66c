"""Shared-memory transport of task results between processes.

The worker pickles a result with protocol 5 and takes every large buffer (numpy arrays in
the result) out of band: each goes into its own ``multiprocessing.shared_memory`` segment,
and only the small pickle and the segment names travel through the pipe. The receiver maps
the segments, **unlinks them at once** (so nothing is left in ``/dev/shm`` whatever happens
next; the memory lives as long as the arrays that view it) and unpickles with the mapped
buffers, so partition results are not copied through the pipe. Segments are files in
``/dev/shm`` (Linux).
"""

from __future__ import annotations

import mmap
import os
import pickle
from multiprocessing import resource_tracker, shared_memory

__all__ = ["dumps", "loads", "discard", "set_segment_prefix", "MIN_OUT_OF_BAND"]

#: buffers smaller than this stay in the pickle (a segment costs a few system calls)
MIN_OUT_OF_BAND = 64 << 10


_naming = {"prefix": None, "count": 0}


def set_segment_prefix(prefix: str) -> None:
    """Name this process's segments ``<prefix><n>`` (default: random names)."""
    _naming["prefix"] = prefix


def _new_name():
    if _naming["prefix"] is None:
        return None
    _naming["count"] += 1
    return f"{_naming['prefix']}{_naming['count']}"


def dumps(obj) -> tuple[bytes, list]:
    """``(pickle, [(segment name, nbytes), ...])``; the segments hold the large buffers."""
    import cloudpickle

    buffers = []

    def take(buf: pickle.PickleBuffer):
        raw = buf.raw()
        if raw.nbytes < MIN_OUT_OF_BAND:
            return True  # keep it in band
        buffers.append(raw)
        return False

    data = cloudpickle.dumps(obj, protocol=5, buffer_callback=take)
    segments = []
    try:
        for raw in buffers:
            shm = shared_memory.SharedMemory(name=_new_name(), create=True, size=max(1, raw.nbytes))
            # the receiver unlinks it; the tracker of this process must not do it again
            resource_tracker.unregister(shm._name, "shared_memory")
            shm.buf[:raw.nbytes] = raw
            segments.append((shm.name, raw.nbytes))
            shm.close()
    except BaseException:
        discard(segments)
        raise
    return data, segments


_SHM_DIR = "/dev/shm"


def _map_and_unlink(name: str, nbytes: int) -> memoryview:
    """Map a segment read-write and remove its name. The mapping is freed when the last
    array viewing it goes (a plain mmap object, which needs no explicit close)."""
    path = os.path.join(_SHM_DIR, name.lstrip("/"))
    fd = os.open(path, os.O_RDWR)
    try:
        os.unlink(path)
        mm = mmap.mmap(fd, max(1, nbytes))
    finally:
        os.close(fd)
    return memoryview(mm)[:nbytes]


def loads(data: bytes, segments: list):
    """Map and unlink the segments, then unpickle with them as the out-of-band buffers."""
    views = []
    try:
        for name, nbytes in segments:
            views.append(_map_and_unlink(name, nbytes))
    except BaseException:
        discard(segments[len(views):])
        raise
    return pickle.loads(data, buffers=views)


def discard(segments: list) -> None:
    """Remove segments that will not be read (a result nobody wants any more)."""
    for name, _ in segments:
        try:
            os.unlink(os.path.join(_SHM_DIR, name.lstrip("/")))
        except FileNotFoundError:
            pass
