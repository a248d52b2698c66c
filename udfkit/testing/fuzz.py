"""Helpers of the fuzz test over load and run parameters (``tests/test_fuzz.py``).

The fuzz test draws, for every format and executor, valid and invalid values of the load
parameters (``nav_shape``, ``sig_shape``, ``dtype``, ``sync_offset``, ``num_partitions``,
``io_backend``) and of the run (``roi`` in all its forms, ``corrections``, the UDF and its
tiling preferences). It asserts that a run either gives the numpy result or raises a
:class:`~udfkit.errors.UdfkitError`, :class:`TypeError` or :class:`ValueError` whose message
names the bad parameter; that nothing hangs; and that no child process, file descriptor or
shared-memory segment is left behind. This module holds what that needs beyond hypothesis:

* :class:`PrefersTiles`: ``SumUDF`` with drawn tiling preferences (a class the workers can
  import, so that it runs on every executor);
* :func:`correct`: the numpy reference of :class:`~udfkit.CorrectionSet`;
* :func:`deadline`: a per-example watchdog that interrupts a hung run;
* :class:`Resources`: the children, file descriptors and ``/dev/shm`` segments of this
  process, before and after;
* :func:`names_parameter`: whether an error message names a parameter or its value.

Examples
--------
>>> import numpy as np
>>> frames = np.arange(2 * 3 * 3, dtype=float).reshape(2, 3, 3)
>>> mask = np.zeros((3, 3), bool); mask[1, 1] = True
>>> correct(frames, dark=np.ones((3, 3)), excluded=mask)[0, 1, 1]   # mean of 8 neighbours
np.float64(3.0)
>>> names_parameter(ValueError("num_partitions: expected a positive int, got 0"),
...                 "num_partitions", 0)
True
"""

from __future__ import annotations

import _thread
import contextlib
import faulthandler
import os
import sys
import threading

import numpy as np

from ..udf import UDF, SumUDF

__all__ = ["PrefersTiles", "correct", "deadline", "Resources", "names_parameter",
           "ExampleTimeout"]


class PrefersTiles(SumUDF):
    """``SumUDF`` (result ``intensity``, the sum of the frames) whose
    ``get_tiling_preferences()`` returns the given ``depth`` and ``total_size`` (either may
    be invalid: the run must then refuse it with an error naming it).

    Parameters
    ----------
    depth, total_size : optional
        The values of the preferences' ``depth`` and ``total_size`` keys; ``None`` leaves a
        key out.
    whole_frames : bool
        The ``whole_frames`` key.
    """

    def __init__(self, depth=None, total_size=None, whole_frames=False, dtype="float64"):
        # SumUDF's own __init__ takes only dtype; the preferences travel in the kwargs, from
        # which every worker rebuilds the UDF
        UDF.__init__(self, dtype=dtype, depth=depth, total_size=total_size,
                     whole_frames=whole_frames)

    def get_tiling_preferences(self):
        prefs = {"whole_frames": self.params.whole_frames}
        if self.params.depth is not None:
            prefs["depth"] = self.params.depth
        if self.params.total_size is not None:
            prefs["total_size"] = self.params.total_size
        return prefs


def correct(frames, dark=None, gain=None, excluded=None) -> np.ndarray:
    """``(frames - dark) * gain`` with every excluded pixel replaced by the mean of the
    valid pixels at the smallest Chebyshev distance around it (the rules of
    :mod:`udfkit.io.corrections`), computed on the whole stack of frames.

    Parameters
    ----------
    frames : ndarray
        ``(n, *sig)``, float64 or complex128.
    dark, gain : ndarray, optional
        Of the signal shape.
    excluded : ndarray of bool, optional
        Of the signal shape.
    """
    out = np.array(frames, copy=True)
    if dark is not None:
        out = out - dark
    if gain is not None:
        out = out * gain
    if excluded is None or not np.any(excluded):
        return out
    sig = excluded.shape
    valid = np.argwhere(~excluded)
    for pixel in np.argwhere(excluded):
        dist = np.abs(valid - pixel).max(axis=1)
        near = valid[dist == dist.min()]
        idx = (slice(None),) + tuple(near.T)
        out[(slice(None),) + tuple(pixel)] = out[idx].mean(axis=1)
    assert out.shape[1:] == sig
    return out


class ExampleTimeout(AssertionError):
    """A fuzz example ran longer than its :func:`deadline`."""


@contextlib.contextmanager
def deadline(seconds: float, what: str):
    """Fail with :class:`ExampleTimeout` when the block runs longer than ``seconds``.

    A watchdog thread dumps every thread's stack to stderr (where the hang is) and
    interrupts the main thread as Ctrl-C would, which a run answers by cancelling its
    partitions; the ``KeyboardInterrupt`` is turned into the failure. Use it in the main
    thread only.

    Examples
    --------
    >>> import time
    >>> with deadline(0.2, "a nap"):  # short naps: the interrupt comes between two
    ...     for _ in range(100):
    ...         time.sleep(0.05)
    Traceback (most recent call last):
    ...
    udfkit.testing.fuzz.ExampleTimeout: a nap took more than 0.2 s (stacks on stderr)
    """
    fired = threading.Event()
    done = threading.Event()

    def watch():
        if not done.wait(seconds):
            fired.set()
            faulthandler.dump_traceback(file=sys.stderr, all_threads=True)
            _thread.interrupt_main()

    watcher = threading.Thread(target=watch, name="fuzz-deadline", daemon=True)
    watcher.start()
    try:
        yield
    except KeyboardInterrupt:
        if fired.is_set():
            raise ExampleTimeout(f"{what} took more than {seconds} s (stacks on stderr)") from None
        raise
    finally:
        done.set()
        watcher.join()


def _open_fds() -> set:
    return set(os.listdir("/proc/self/fd")) if os.path.isdir("/proc/self/fd") else set()


class Resources:
    """What this process holds that a run must give back: live child processes (not
    multiprocessing's resource tracker), open file descriptors, and shared-memory segments of
    this process and its workers (``/dev/shm/udfkit_<pid>_*``; other processes on the
    machine make their own).

    Take one before the runs (after the executors have started) and call
    :meth:`leaked_since` after them.
    """

    def __init__(self):
        from .executors import live_children

        self.children = {p.pid for p in live_children()}
        self.fds = _open_fds()
        self.shm = self._segments(self.children)

    @staticmethod
    def _segments(pids) -> set:
        if not os.path.isdir("/dev/shm"):
            return set()
        prefixes = tuple(f"udfkit_{p}_" for p in {os.getpid(), *pids})
        return {e for e in os.listdir("/dev/shm") if e.startswith(prefixes)}

    def leaked_since(self, before: Resources, *, ignore_sockets: bool = False) -> dict:
        """``{"children": ..., "fds": ..., "shm": ...}``: what this snapshot holds and
        ``before`` did not (empty values when nothing leaked). File descriptors are listed
        with their targets, and only when there are more than before (a number reused for
        another target is not a leak); children likewise (a worker replaced by another is
        not a leak).

        Parameters
        ----------
        ignore_sockets : bool
            Leave sockets out: a dask client keeps a pool of connections to the scheduler
            and workers that grows on demand up to a bound (a few more after some dozens of
            runs, then steady), which is not a leak of the run.
        """
        leaked_fds = {}
        for fd in sorted(self.fds - before.fds, key=int):
            with contextlib.suppress(OSError):
                target = os.readlink(f"/proc/self/fd/{fd}")
                if not (ignore_sockets and target.startswith("socket:")):
                    leaked_fds[fd] = target
        if len(self.fds) <= len(before.fds):
            leaked_fds = {}
        shm = self._segments(self.children | before.children) - before.shm
        # a run that is cancelled (a run_udf_iter loop left early) may replace a busy worker
        # by a fresh one: only more children than before are a leak
        children = sorted(self.children - before.children) \
            if len(self.children) > len(before.children) else []
        return {"children": children, "fds": leaked_fds, "shm": sorted(shm)}


def names_parameter(err: BaseException, name: str, value=None) -> bool:
    """Whether the message of ``err`` (with its notes) names ``name`` or shows ``value``
    (its ``repr`` or ``str``, for values that print as more than a character or two)."""
    text = " ".join([str(err), *getattr(err, "__notes__", ())])
    if name in text:
        return True
    if value is None:
        return False
    shown = {repr(value), str(value)}
    if isinstance(value, np.ndarray):
        shown = {str(value.shape), str(tuple(value.shape))}
    return any(len(s) > 2 and s in text for s in shown)

