"""One :class:`~udfkit.Context` per executor kind, shared by many tests.

Starting worker processes or a dask cluster takes seconds; a test module or class that runs
many small examples on them starts each executor once and closes it at its end.
"""

from __future__ import annotations

from typing import Literal

from ..api import Context

__all__ = ["ALL_EXECUTORS", "SharedContexts"]

#: every executor the conformance suites know, as ``name: (kind, Context.make_with kwargs)``;
#: two workers each, so that partitions really run side by side on a 2-core machine
ALL_EXECUTORS = {"inline": ("inline", {}), "inline-debug": ("inline", {"debug": True}),
                 "threads": ("threads", {"cpus": 2}), "processes": ("processes", {"cpus": 2}),
                 "dask": ("dask", {"cpus": 2})}


class SharedContexts:
    """Contexts started on first use and closed together.

    Parameters
    ----------
    executors : dict
        ``name: (kind, kwargs)`` for :meth:`udfkit.Context.make_with`; default
        :data:`ALL_EXECUTORS`.

    Examples
    --------
    In a test module, one Context per executor for the whole module:

    >>> shared_context = SharedContexts({"inline": ("inline", {})})
    >>> _close_shared_contexts = shared_context.closing_fixture()
    >>> ctx = shared_context("inline")
    >>> ctx is shared_context("inline")
    True
    >>> shared_context.close_all()
    """

    def __init__(self, executors: dict | None = None):
        self.executors = dict(ALL_EXECUTORS if executors is None else executors)
        self._open: dict[str, Context] = {}

    def __call__(self, name: str) -> Context:
        """The Context of executor ``name``, started if it is not running yet."""
        if name not in self._open:
            kind, kwargs = self.executors[name]
            self._open[name] = Context.make_with(kind, **kwargs)
        return self._open[name]

    def close_all(self) -> None:
        """Close every Context started so far (a later call starts a new one)."""
        while self._open:
            self._open.popitem()[1].close()

    def closing_fixture(self, scope: Literal["session", "package", "module", "class",
                                             "function"] = "module"):
        """An autouse pytest fixture of ``scope`` that closes the contexts at its end."""
        import pytest

        @pytest.fixture(scope=scope, autouse=True)
        def _close():
            yield
            self.close_all()

        return _close
