"""The dask worker plugin of :meth:`udfkit.executor.dask.DaskExecutor.warm_modules`.

A module of its own because a plugin must subclass ``distributed``'s ``WorkerPlugin``: only
the dask executor imports it, inside a function, so ``import udfkit`` does not pay for
``distributed``; dask workers import it by name to unpickle the plugin.
"""

from __future__ import annotations

from distributed.diagnostics.plugin import WorkerPlugin

__all__ = ["WarmModules"]


class WarmModules(WorkerPlugin):
    """Import ``modules`` on every worker: those present when the plugin is registered and
    those that join later (a nanny's replacement of a dead worker).

    Parameters
    ----------
    modules : list of str
        Dotted module names; one that fails to import is skipped (the first task that needs
        it raises the error where the user looks).
    """

    idempotent = False

    def __init__(self, modules):
        self.modules = list(modules)
        self.name = "udfkit-warm-" + "-".join(self.modules)

    def setup(self, worker):
        from ._worker import _import_all

        _import_all(self.modules)
