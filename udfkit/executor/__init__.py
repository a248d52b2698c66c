"""Executors: where partitions run. Registered by kind, imported lazily."""

from __future__ import annotations

import importlib

from .base import Executor

__all__ = ["Executor", "make_executor", "EXECUTORS"]

EXECUTORS = {
    "inline": "udfkit.executor.inline:InlineExecutor",
    "threads": "udfkit.executor.threads:ThreadsExecutor",
    "processes": "udfkit.executor.processes:ProcessesExecutor",
    "dask": "udfkit.executor.dask:DaskExecutor",
}


def make_executor(kind: str, **kwargs) -> Executor:
    """Create the executor registered as ``kind`` with its keyword arguments.

    Raises
    ------
    ExecutorSpecError
        For an unknown ``kind`` (a ``ValueError`` too) or an argument out of range.
    TypeError
        For a keyword argument the executor does not take.

    Examples
    --------
    >>> make_executor("inline")
    InlineExecutor(debug=False)
    """
    if kind not in EXECUTORS:
        from ..errors import ExecutorSpecError

        raise ExecutorSpecError(f"executor kind: expected one of {sorted(EXECUTORS)}, got {kind!r}")
    module, attr = EXECUTORS[kind].split(":")
    cls = getattr(importlib.import_module(module), attr)
    try:
        return cls(**kwargs)
    except TypeError as e:
        raise TypeError(f"executor {kind!r}: {e}") from None
