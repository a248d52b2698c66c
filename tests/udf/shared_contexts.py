"""One Context per executor kind for a whole test module: workers start once, not per example.

Usage in a test module::

    shared_context = SharedContexts({"inline": ("inline", {}), "threads": ("threads", {"cpus": 2})})
    _close_shared_contexts = shared_context.closing_fixture()
"""

from __future__ import annotations

import pytest

from udfkit import Context

#: every executor the UDF tests run on, as ``name: (kind, Context.make_with kwargs)``
ALL_EXECUTORS = {"inline": ("inline", {}), "inline-debug": ("inline", {"debug": True}),
                 "threads": ("threads", {"cpus": 2}), "processes": ("processes", {"cpus": 2}),
                 "dask": ("dask", {"cpus": 2})}


class SharedContexts:
    """``shared(name)`` is the module's Context of executor ``name``, started on first use."""

    def __init__(self, executors: dict):
        self.executors = dict(executors)
        self._open = {}

    def __call__(self, name: str) -> Context:
        if name not in self._open:
            kind, kwargs = self.executors[name]
            self._open[name] = Context.make_with(kind, **kwargs)
        return self._open[name]

    def close_all(self) -> None:
        while self._open:
            self._open.popitem()[1].close()

    def closing_fixture(self):
        """A module-scoped autouse fixture that closes the contexts at the end of the module."""

        @pytest.fixture(scope="module", autouse=True)
        def _close():
            yield
            self.close_all()

        return _close
