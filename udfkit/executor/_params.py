"""Shipping a run's shared parameters once per worker (see :mod:`udfkit.common.shared`).

A task pickled under :func:`~udfkit.common.shared.collecting` refers to its large parameters
by content key; the executor ships each of them once per worker and run:

* ``processes``: :class:`SegmentShipments` (main process) copies each parameter's pickle
  buffers once per run into one shared-memory segment of its own and sends every worker the
  small pickle and the segment's name before the first task that needs it;
  :class:`WorkerParams` (worker) maps the segment **privately** (copy on write: a UDF that
  writes into its parameters changes only its own process's copy, as with a pickled copy)
  and keeps the values for the run. At the end of the run the main process unlinks the
  segments and tells the workers to drop theirs; the memory goes with the last mapping. The
  segments are registered with :mod:`multiprocessing`'s resource tracker, which removes them
  should the main process die before the run ends.
* ``dask``: :class:`Blob` holds one parameter's pickle; the run scatters it to every worker
  (``broadcast``) under a key made of the content key, and the tasks depend on it. The
  unpickled value is cached on the worker's one copy of the blob, so it is unpickled once per
  worker; dask frees the blob (and the value) when the run releases its future. A worker
  that joins later (the replacement of a dead one) fetches the blob from a peer.
"""

from __future__ import annotations

import itertools
import mmap
import os
import pickle
import threading
from multiprocessing import shared_memory

from ..common.shared import Shared, collecting
from .base import pickle_task

__all__ = ["pickle_with_refs", "SegmentShipments", "WorkerParams", "Blob", "PARAM_SEGMENT_TAG"]

#: segments of shared parameters are named ``udfkit_<main pid>_params_<n>``
PARAM_SEGMENT_TAG = "params"

#: buffers in a segment start at multiples of this (the alignment numpy and SIMD like)
_ALIGN = 64

_counter = itertools.count(1)


def pickle_with_refs(task, index: int, where: str, dumps=None) -> tuple[bytes, dict]:
    """``(payload, {key: Shared})``: ``task`` pickled as :func:`~.base.pickle_task` does, its
    large shared parameters as references to the content keys listed beside it. What the
    ``processes`` and ``dask`` executors send: the payload's size does not depend on the
    size of the parameters."""
    shared: dict = {}
    with collecting(shared):
        payload = pickle_task(task, index, where, dumps=dumps)
    return payload, shared


class SegmentShipments:
    """The main process's side of one ``processes`` run: a segment per shared parameter,
    made when a task first needs it, removed by :meth:`close`."""

    def __init__(self):
        self._made: dict[str, tuple] = {}  # key -> (pickle, [(name, nbytes, offset)], shm)

    def message(self, run_id: int, key: str, shared: Shared) -> tuple:
        """``("params", run_id, key, pickle, segments)`` for a worker that lacks ``key``."""
        made = self._made.get(key)
        if made is None:
            data, buffers = shared.pickled()
            offsets, size = [], 0
            for b in buffers:
                offsets.append(size)
                size += -(-b.nbytes // _ALIGN) * _ALIGN
            name = f"udfkit_{os.getpid()}_{PARAM_SEGMENT_TAG}_{next(_counter)}"
            shm = shared_memory.SharedMemory(name=name, create=True, size=max(1, size))
            try:
                for b, off in zip(buffers, offsets):
                    shm.buf[off:off + b.nbytes] = b.cast("B")  # type: ignore[index]
            except BaseException:
                shm.close()
                shm.unlink()
                raise
            made = (data, [(shm.name, b.nbytes, off) for b, off in zip(buffers, offsets)], shm)
            self._made[key] = made
        return ("params", run_id, key, made[0], made[1])

    def close(self) -> None:
        """Remove the run's segments (workers' mappings stay valid until they drop them)."""
        for _, _, shm in self._made.values():
            try:
                shm.close()
            except BufferError:  # pragma: no cover - a view still exported in this process
                pass
            try:
                shm.unlink()
            except FileNotFoundError:  # pragma: no cover - removed by someone else
                pass
        self._made.clear()


class WorkerParams:
    """A ``processes`` worker's shared parameters of the run it works for."""

    def __init__(self):
        self.run_id = None
        self.values: dict[str, object] = {}

    def for_run(self, run_id) -> dict:
        """The values of run ``run_id``; those of any other run are dropped."""
        if run_id != self.run_id:
            self.values = {}
            self.run_id = run_id
        return self.values

    def receive(self, run_id, key: str, data: bytes, segments: list) -> None:
        """Map and unpickle a parameter; a failure is raised by the first task that needs
        it (where the run reports errors)."""
        try:
            value = pickle.loads(data, buffers=_map_private(segments))
        except Exception as e:  # noqa: BLE001 - kept for the task
            value = _Failed(e)
        self.for_run(run_id)[key] = value

    def lookup(self, run_id):
        """``lookup(key)`` for :func:`~udfkit.common.shared.resolving` in a task of ``run_id``."""
        values = self.for_run(run_id)

        def get(key):
            value = values[key]
            if isinstance(value, _Failed):
                raise value.error
            return value
        return get

    def release(self, run_id) -> None:
        if run_id == self.run_id:
            self.values = {}
            self.run_id = None


class _Failed:
    __slots__ = ("error",)

    def __init__(self, error: BaseException):
        self.error = error


def _map_private(segments: list) -> list:
    """Views of ``(name, nbytes, offset)`` entries, each segment mapped once, copy on write."""
    maps: dict[str, memoryview] = {}
    views = []
    for name, nbytes, offset in segments:
        mv = maps.get(name)
        if mv is None:
            fd = os.open(os.path.join("/dev/shm", name.lstrip("/")), os.O_RDONLY)
            try:
                size = os.fstat(fd).st_size
                mm = mmap.mmap(fd, max(1, size), flags=mmap.MAP_PRIVATE,
                               prot=mmap.PROT_READ | mmap.PROT_WRITE)
            finally:
                os.close(fd)
            mv = maps[name] = memoryview(mm)
        views.append(mv[offset:offset + nbytes])
    return views


class Blob:
    """One shared parameter on its way to dask workers: its pickle, unpickled once per worker.

    Parameters
    ----------
    key : str
        The parameter's content key.
    data : bytes
        Its pickle (classes of the user's own modules by value).
    """

    def __init__(self, key: str, data: bytes):
        self.key = key
        self.data = data
        self._value = None
        self._loaded = False
        self._lock = threading.Lock()

    def value(self):
        """The parameter (unpickled at the first call on this worker)."""
        with self._lock:
            if not self._loaded:
                import cloudpickle

                self._value = cloudpickle.loads(self.data)
                self._loaded = True
            return self._value

    def __reduce_ex__(self, protocol):
        # out of band where the pickler can (dask's does): the bytes are not copied into
        # the pickle on the way to a worker
        data = pickle.PickleBuffer(self.data) if protocol >= 5 else self.data
        return (Blob, (self.key, data))

    def __sizeof__(self):
        # what dask's memory accounting should see
        return object.__sizeof__(self) + len(self.data)
