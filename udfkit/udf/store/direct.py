"""Workers write their partition's nav rows straight into the store (no trip through the
main process).

Who writes what
---------------
A partition covers the flat nav range ``[lo, hi)``. A worker writes only the part of it made
of whole chunks that no other partition touches, ``[a, b)`` (:func:`owned_range`); the rows
before ``a`` and after ``b`` (at most one chunk's worth at each end) go back to the main
process as :class:`EdgeRows`, and the main process writes them when it merges the
partition. The main process writes one partition at a time, so a chunk that two
partitions share is only ever rewritten by one writer at a time, whatever the partitioning:
partitions need not be snapped to chunk boundaries, and no lock is needed.

* **npy**: every row is its own byte range of the file (``os.pwrite``), so the chunk is one
  row and workers write everything.
* **zarr**: chunks of a nav array are flat ranges of equal length (inner nav axes are cut by
  divisors of their length, :func:`~._layout.nav_chunks`), so ``[a, b)`` is ``[lo, hi)``
  rounded inwards to multiples of that length (the last, shorter chunk of the array belongs
  to the partition that ends the array). The store has no shards.
* **HDF5**: only the main process writes (h5py is not safe with several writing processes
  without MPI); workers send their rows back as before.

Where the workers are
---------------------
A worker writes only where it sees *this run's* store: the store's description carries a
random ``writer`` token, and the worker reads it back from the store's path before writing.
A worker on another machine without the store on a shared file system (or with another file
at that path) finds no token or another one, and sends its rows back for the main process
to write (``ResultStore(direct=True)`` makes that an error instead,
``direct=False`` never lets workers write).

Durability
----------
A worker's writes are complete (and its file closed) before its result is sent; the main
process merges the partition, flushes the store and only then names the partition in the
journal, so the journal never names a partition whose rows are not in the store.
"""

from __future__ import annotations

import errno
import json
import os

import numpy as np

from ...common.allocation import discard_results
from ...errors import ResultStoreError
from ._layout import flat_boxes

__all__ = ["DirectWriter", "EdgeRows", "owned_range", "chunk_length", "DIRECT_FORMATS",
           "store_failure"]

#: formats whose nav arrays workers may write concurrently
DIRECT_FORMATS = ("npy", "zarr")

#: bytes of one zarr assignment of a worker (whole chunks; at least one)
WRITE_STEP_BYTES = 8 << 20


class _StoreFailure(ResultStoreError):
    """A :class:`ResultStoreError` that keeps its ``errno`` when it is pickled (a worker's
    failed write travels to the main process)."""

    def __reduce__(self):
        return (_rebuild_failure, (str(self), self.errno))


def _rebuild_failure(message, code):
    err = _StoreFailure(message)
    err.errno = code
    return err


def store_failure(what: str, path: str, fmt: str | None, e: OSError) -> ResultStoreError:
    """The :class:`ResultStoreError` for an ``OSError`` while ``what`` (e.g. "writing
    partition 3 of ... to the") the store, with the ``errno`` and what to do next."""
    code = getattr(e, "errno", None)
    reason = e.strerror or str(e)
    hint = ""
    if code in (errno.ENOSPC, errno.EDQUOT):
        hint = ("; the journal names the partitions written so far: free some space and "
                "run again with resume=True")
    elif code in (errno.EACCES, errno.EPERM, errno.EROFS):
        hint = "; choose a location you can write to"
    err = _StoreFailure(f"{what} result store {path!r} ({fmt}) failed: {reason}{hint}")
    err.errno = code
    return err


def chunk_length(chunks, nav_dims: int) -> int:
    """Flat nav positions of one chunk of a nav array whose chunks are ``chunks``.

    Examples
    --------
    >>> chunk_length((1, 16, 64, 32, 32), 3)
    1024
    """
    return int(np.prod(chunks[:nav_dims], dtype=np.int64))


def owned_range(lo: int, hi: int, chunk: int, nav_size: int) -> tuple[int, int]:
    """The part of the flat range ``[lo, hi)`` made of whole chunks of ``chunk`` positions
    (the array's last chunk may be shorter) that a writer of ``[lo, hi)`` owns alone.

    Examples
    --------
    >>> owned_range(10, 50, 16, 100), owned_range(0, 50, 16, 100), owned_range(40, 100, 16, 100)
    ((16, 48), (0, 48), (48, 100))
    >>> owned_range(3, 9, 16, 100)  # inside one shared chunk: nothing of its own
    (3, 3)
    """
    a = lo if lo % chunk == 0 else (lo // chunk + 1) * chunk
    b = hi if hi == nav_size else (hi // chunk) * chunk
    if b <= a:
        return lo, lo
    return a, b


class EdgeRows:
    """What a worker sends back for a nav buffer it wrote: the rows it did not write.

    Attributes
    ----------
    lo, hi : int
        The partition's flat nav range.
    a, b : int
        The range the worker wrote.
    head, tail : numpy.ndarray
        Rows ``[lo, a)`` and ``[b, hi)`` (ROI gaps already filled), for the main process.
    nbytes : int
        Bytes of the whole range (for the progress of written bytes).
    """

    __slots__ = ("lo", "hi", "a", "b", "head", "tail", "nbytes")

    def __init__(self, lo, hi, a, b, head, tail, nbytes):
        self.lo, self.hi, self.a, self.b = int(lo), int(hi), int(a), int(b)
        self.head, self.tail, self.nbytes = head, tail, int(nbytes)

    def __reduce__(self):
        return (EdgeRows, (self.lo, self.hi, self.a, self.b, self.head, self.tail, self.nbytes))

    def pieces(self):
        """``[(start, stop, rows), ...]`` for the main process to write."""
        return [(s, e, d) for s, e, d in ((self.lo, self.a, self.head), (self.b, self.hi, self.tail))
                if e > s]


def read_token(fmt: str, path: str):
    """The ``writer`` token in the description of the store at ``path`` (None: not seen)."""
    meta_file = os.path.join(path, "zarr.json" if fmt == "zarr" else "udfkit.json")
    try:
        with open(meta_file) as f:
            meta = json.load(f)
    except (OSError, ValueError):
        return None
    if fmt == "zarr":
        meta = (meta.get("attributes") or {}).get("udfkit") or {}
    return meta.get("writer")


class DirectWriter:
    """Attached to every task of a run (``task.writer``); called on the worker with the
    task's result, writes the rows the worker owns and returns the result with
    :class:`EdgeRows` in place of those nav buffers.

    Parameters
    ----------
    fmt : {"npy", "zarr"}
    path : str
        The store (absolute).
    token : str
        This run's writer token (see the module docstring).
    nav_shape : tuple of int
    arrays : dict
        ``{(udf index, buffer name): (ArraySpec, chunk length)}`` of the nav buffers workers
        write (those of UDFs without a ``merge`` of their own).
    positions : bool
        The run has a ROI (rows are the selected positions of a partition).
    required : bool
        A worker that does not see the store fails instead of sending the rows back.
    """

    def __init__(self, fmt, path, token, nav_shape, arrays, positions, required=False):
        self.fmt = fmt
        self.path = path
        self.token = token
        self.nav_shape = tuple(int(s) for s in nav_shape)
        self.arrays = arrays
        self.positions = bool(positions)
        self.required = bool(required)

    def __call__(self, task, result):
        if read_token(self.fmt, self.path) != self.token:
            if self.required:
                raise ResultStoreError(
                    f"result store {self.path!r} ({self.fmt}): this worker (pid {os.getpid()} "
                    f"on {os.uname().nodename}) does not see the run's store at that path; "
                    "workers on other machines need it on a shared file system under the same "
                    "path, or pass ResultStore(direct=None) to let the main process write")
            return result  # the main process writes everything
        nav_size = int(np.prod(self.nav_shape, dtype=np.int64))
        p = task.partition
        for ui, bufs in enumerate(result.buffers):
            for name in list(bufs):
                entry = self.arrays.get((ui, name))
                if entry is None:
                    continue
                spec, chunk = entry
                block = bufs[name]
                if not self.positions:
                    lo = task.processed_offset
                    hi, data = lo + len(block), block
                else:
                    lo, hi = max(0, int(p.start)), min(nav_size, int(p.stop))
                    data = np.full((hi - lo,) + spec.extra_shape, spec.fill, dtype=spec.dtype)
                    data[p.selected_positions(task.roi) + int(p.start) - lo] = block
                a, b = owned_range(lo, hi, chunk, nav_size)
                if b > a:
                    try:
                        self._write(spec, chunk, a, b, data[a - lo:b - lo])
                    except OSError as e:
                        raise store_failure(f"writing partition {p.index} of "
                                            f"{task.udfs[ui][0].__name__}[{name!r}] (on a "
                                            "worker) to the", self.path, self.fmt, e) from None
                bufs[name] = EdgeRows(lo, hi, a, b, np.array(data[:a - lo]),
                                      np.array(data[b - lo:]), data.nbytes)
                # its shared-memory segment (processes) is not sent: removed now, not at
                # the next result
                discard_results([block])
                block = data = None
        return result

    def _write(self, spec, chunk, a, b, data):
        if self.fmt == "npy":
            from ._npy import pwrite_rows

            pwrite_rows(os.path.join(self.path, *([spec.group] if spec.group else []),
                                     spec.name + ".npy"), spec, a, data)
            return
        import zarr

        arr = zarr.open_array(store=self.path, path=spec.key, mode="r+")
        # in steps of whole chunks of about WRITE_STEP_BYTES: zarr encodes the chunks of one
        # assignment concurrently, each with copies of its own; a whole partition at once
        # would add several chunks' worth of memory to the worker's peak
        row = max(1, int(np.prod(spec.extra_shape, dtype=np.int64)) * spec.dtype.itemsize)
        step = chunk * max(1, WRITE_STEP_BYTES // (chunk * row))
        for s0 in range(a, b, step):
            s1 = min(b, s0 + step)
            for off, sl in flat_boxes(self.nav_shape, s0, s1):
                shape = tuple(s.stop - s.start for s in sl)
                size = int(np.prod(shape))
                o = s0 - a + off
                arr[sl] = data[o:o + size].reshape(shape + spec.extra_shape)
