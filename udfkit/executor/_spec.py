"""Executor specifications as LiberTEM's ``Context.make_with`` spells them.

LiberTEM names its executors by how they run ("synchronous", "threads", "dask",
"dask-integration", "dask-make-default", "delayed", "pipelined") and sizes them with
``cpus`` and ``gpus``. udfkit has four executors (inline, threads, processes, dask); each
LiberTEM name maps onto the nearest one, and what has no counterpart (GPU workers, dask
delayed graphs) is refused with one line that names the udfkit alternative, before any
worker starts.
"""

from __future__ import annotations

import numbers
import warnings

from ..errors import ExecutorSpecError, UdfkitWarning
from . import EXECUTORS, make_executor

__all__ = ["KIND_ALIASES", "executor_from_spec"]

#: LiberTEM's executor names → udfkit's executor kinds
KIND_ALIASES = {
    "synchronous": "inline",
    "inline": "inline",
    "threads": "threads",
    "processes": "processes",
    "dask": "dask",
    "dask-integration": "dask",
    "dask-make-default": "dask",
    # LiberTEM's pipelined executor runs one process per worker and streams partitions to
    # them; udfkit's process pool is the same shape of work
    "pipelined": "processes",
}

_NOT_OFFERED = {
    "delayed": ("builds a dask.delayed graph whose results are dask arrays; udfkit computes "
                "numpy results: use 'dask' to run on a dask cluster"),
}


def _count(value, name: str, kind: str) -> int | None:
    """``cpus``/``gpus`` as a count: LiberTEM also takes a list of device ids (pinning)."""
    if value is None:
        return None
    if isinstance(value, numbers.Integral) and not isinstance(value, bool):
        n = int(value)
    elif isinstance(value, (str, bytes)):
        raise ExecutorSpecError(f"make_with({kind!r}): {name}: expected a number of workers or a "
                                f"list of device ids, got {value!r}")
    else:
        try:
            n = len(list(value))
        except TypeError:
            raise ExecutorSpecError(f"make_with({kind!r}): {name}: expected a number of workers or "
                                    f"a list of device ids, got {value!r}") from None
    if n < 0:
        raise ExecutorSpecError(f"make_with({kind!r}): {name}: expected a non-negative number, "
                                f"got {value!r}")
    return n


def executor_from_spec(kind: str, *, cpus=None, gpus=None, snooze_timeout=None,
                       main_process_gpu=None, **options):
    """The udfkit executor for a LiberTEM (or udfkit) executor name.

    Parameters
    ----------
    kind : str
        udfkit's ``"inline"``, ``"threads"``, ``"processes"``, ``"dask"``, or one of LiberTEM's
        names in :data:`KIND_ALIASES`.
    cpus : int or list of int, optional
        Number of workers (a list counts its entries; udfkit does not pin workers to cores).
    gpus : int or list of int, optional
        Only ``0`` / an empty list / None: udfkit computes on CPUs with numpy.
    snooze_timeout : float, optional
        Not offered (LiberTEM scales an idle dask cluster down); a value warns once.
    main_process_gpu : bool or int, optional
        Only None or False.
    **options
        Passed on to the executor (``debug`` for inline, ``scheduler`` for dask, ...).

    Raises
    ------
    ExecutorSpecError
        For an unknown kind, one that is not offered, or a request for GPU workers.

    Examples
    --------
    >>> executor_from_spec("synchronous")
    InlineExecutor(debug=False)
    >>> executor_from_spec("inline", cpus=4)  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    udfkit.errors.ExecutorSpecError: make_with('inline'): cpus=4 is not offered: ...
    """
    if not isinstance(kind, str) or (kind not in KIND_ALIASES and kind not in _NOT_OFFERED):
        names = sorted(set(EXECUTORS) | set(KIND_ALIASES))
        raise ExecutorSpecError(f"executor kind: expected one of {names}, got {kind!r}")
    if kind in _NOT_OFFERED:
        raise ExecutorSpecError(f"make_with({kind!r}) is not offered: LiberTEM's {kind!r} executor "
                                f"{_NOT_OFFERED[kind]}")
    n_gpus = _count(gpus, "gpus", kind)
    if n_gpus:
        raise ExecutorSpecError(f"make_with({kind!r}): gpus={gpus!r} is not offered: udfkit computes "
                                "on CPUs with numpy (no CUDA/CuPy workers); drop gpus or pass gpus=0")
    if not (main_process_gpu is None or main_process_gpu is False):
        raise ExecutorSpecError(f"make_with({kind!r}): main_process_gpu={main_process_gpu!r} is not "
                                "offered: udfkit has no GPU back-end; drop it or pass False")
    if snooze_timeout is not None:
        warnings.warn(f"make_with({kind!r}): snooze_timeout={snooze_timeout!r} is not offered: udfkit "
                      "keeps its workers until ctx.close(); ignored", UdfkitWarning, stacklevel=3)
    target = KIND_ALIASES[kind]
    n_cpus = _count(cpus, "cpus", kind)
    if n_cpus is not None:
        if target == "inline":
            raise ExecutorSpecError(
                f"make_with({kind!r}): cpus={cpus!r} is not offered: the inline executor runs every "
                f"partition in this thread; use make_with('threads', cpus={n_cpus}) or "
                f"make_with('processes', cpus={n_cpus})")
        if kind == "dask-integration":
            raise ExecutorSpecError(
                f"make_with({kind!r}): cpus={cpus!r} is not offered: the running dask cluster has "
                f"its workers; use make_with('dask', cpus={n_cpus}) for a new local cluster")
        if n_cpus < 1:
            raise ExecutorSpecError(f"make_with({kind!r}): cpus: expected at least one worker, "
                                    f"got {cpus!r}")
        options["cpus"] = n_cpus
    if kind == "dask-integration" and "client" not in options and "scheduler" not in options:
        try:
            from distributed import get_client
        except ImportError:  # pragma: no cover - distributed is a dependency
            raise ExecutorSpecError("make_with('dask-integration') needs dask.distributed") from None
        try:
            options["client"] = get_client()
        except ValueError:
            raise ExecutorSpecError(
                "make_with('dask-integration'): there is no running dask.distributed client to "
                "join; create one (distributed.Client(...)) first, or use make_with('dask') for a "
                "new local cluster") from None
    return make_executor(target, **options)
