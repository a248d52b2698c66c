"""Large values of a run that travel once per worker, not once per task.

A run's parameters (UDF keyword arguments such as mask stacks or reference images, the ROI,
the corrections) are the same in every partition's task. A task holds them wrapped in
:class:`Shared`; how a wrapped value travels is decided by whoever pickles the task:

* **Plain pickling** (``cloudpickle.dumps(task)``, the inline executor's ``debug`` round trip)
  pickles the value inside the task, as if it were not wrapped.
* **Collecting** (:func:`collecting`, used by the executors that send tasks to other
  processes): a value whose pickle is at least :data:`SHARE_MIN_BYTES` is pickled as a
  reference to its content key (a SHA-256 of its pickle, out-of-band buffers included) and
  recorded in the collector's dict. The executor ships each recorded value once per worker
  and run (shared memory, a dask scatter) and tells the worker, while it unpickles the task,
  where to find it (:func:`resolving`). The task's payload is then independent of the size
  of its parameters.
* Tasks that run in the calling process (inline, threads) are not pickled: the value is a
  plain reference.

The key and the value's pickle are computed once per :class:`Shared` object and cached, so a
run that wraps each parameter once (one object referred to by all its tasks) hashes it once.
"""

from __future__ import annotations

import hashlib
import pickle
import threading
from contextlib import contextmanager

__all__ = ["Shared", "share", "unwrap", "collecting", "resolving", "SHARE_MIN_BYTES"]

#: values whose pickle is smaller than this travel inside each task: a shipment of its own
#: costs a message (or a dask key) per worker, more than a few KiB in every task
SHARE_MIN_BYTES = 32 << 10

#: types that are never worth wrapping (always a few bytes)
_SMALL_TYPES = (type(None), bool, int, float, complex, str, bytes)

_state = threading.local()


class Shared:
    """A value that a run's tasks share; see the module docstring.

    Parameters
    ----------
    value : object
        Any picklable value.

    Examples
    --------
    >>> import pickle
    >>> s = Shared([1, 2, 3])
    >>> pickle.loads(pickle.dumps(s)).value
    [1, 2, 3]
    """

    __slots__ = ("value", "_pickled", "_key", "__weakref__")

    def __init__(self, value):
        self.value = value
        self._pickled = None
        self._key = None

    def pickled(self) -> tuple[bytes, list]:
        """``(pickle, [buffer, ...])``: the value pickled with protocol 5, its large buffers
        (numpy arrays) out of band as read-only memoryviews, cached."""
        if self._pickled is None:
            import cloudpickle

            buffers: list = []
            data = cloudpickle.dumps(self.value, protocol=5,
                                     buffer_callback=lambda b: buffers.append(b.raw()))
            self._pickled = (data, buffers)
        return self._pickled

    @property
    def nbytes(self) -> int:
        """Size of the value's pickle, out-of-band buffers included."""
        data, buffers = self.pickled()
        return len(data) + sum(b.nbytes for b in buffers)

    @property
    def key(self) -> str:
        """The content key: SHA-256 of the pickle and its buffers (hex)."""
        if self._key is None:
            data, buffers = self.pickled()
            h = hashlib.sha256(data)
            for b in buffers:
                h.update(len(b).to_bytes(8, "little"))
                h.update(b)
            self._key = h.hexdigest()
        return self._key

    def __reduce__(self):
        found = getattr(_state, "collect", None)
        if found is not None and self.nbytes >= SHARE_MIN_BYTES:
            found.setdefault(self.key, self)
            return (_resolve, (self.key,))
        return (Shared, (self.value,))

    def __repr__(self):
        return f"Shared({type(self.value).__name__})"


def share(value):
    """``value`` wrapped in :class:`Shared`, unless it is one already or of a type that is
    always small (``None``, numbers, short strings)."""
    if isinstance(value, Shared):
        return value
    if isinstance(value, _SMALL_TYPES) and not (isinstance(value, (str, bytes))
                                                and len(value) >= SHARE_MIN_BYTES):
        return value
    return Shared(value)


def unwrap(value):
    """The value of a :class:`Shared`, anything else as it is."""
    return value.value if isinstance(value, Shared) else value


@contextmanager
def collecting(found: dict):
    """While active (in this thread), pickled :class:`Shared` values of at least
    :data:`SHARE_MIN_BYTES` become references, recorded as ``found[key] = shared``."""
    previous = getattr(_state, "collect", None)
    _state.collect = found
    try:
        yield found
    finally:
        _state.collect = previous


@contextmanager
def resolving(lookup):
    """While active (in this thread), references unpickle to ``Shared(lookup(key))``.

    ``lookup`` is a callable or a mapping.
    """
    if not callable(lookup):
        lookup = lookup.__getitem__
    previous = getattr(_state, "lookup", None)
    _state.lookup = lookup
    try:
        yield
    finally:
        _state.lookup = previous


def _resolve(key: str) -> Shared:
    lookup = getattr(_state, "lookup", None)
    try:
        if lookup is None:
            raise KeyError(key)
        value = lookup(key)
    except KeyError:
        raise pickle.UnpicklingError(
            f"a task refers to a shared parameter {key[:16]}... that was not shipped to this "
            f"worker (a task pickled for a cluster or worker process is unpickled elsewhere)"
        ) from None
    out = Shared(value)
    out._key = key
    return out
