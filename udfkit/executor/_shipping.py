"""Which code travels by value to a cluster's workers.

A task refers to classes and functions (a UDF's class, a function given to ``MapUDF``, an
exception class). cloudpickle pickles them *by reference* (module and name, imported again
on the worker) unless their module is ``__main__`` or registered with
``cloudpickle.register_pickle_by_value``. A worker of a remote cluster has the installed
packages of its environment, but not the user's analysis script's own modules; those must
travel *by value* (their code inside the pickle).

The rule
--------
A module is referenced by name when it can be expected on every worker of the same
environment:

* udfkit itself, the standard library and built-in modules;
* a module whose file lies in an installation directory: site-packages (system, user,
  virtual environment: :func:`site.getsitepackages`, ``sysconfig``'s ``purelib`` and
  ``platlib``) or the standard library's directories;
* a module of a top-level package that an *editable* installed distribution provides
  (``pip install -e``: its ``direct_url.json`` says so, or its metadata lies outside the
  installation directories, as with ``setup.py develop``), found through
  :func:`importlib.metadata.packages_distributions`. A regular installation's modules lie
  in site-packages; a module of the same top-level name elsewhere (a ``tests`` folder next
  to the script while some package installs one) is the user's own;
* a module without a file (built in, created at run time): there is no code to ship.

Every other module (the script's own module, a module next to it, a directory put on
``sys.path`` or ``PYTHONPATH`` by hand) is registered by value with cloudpickle *while* a task
that refers to it is pickled for a cluster, and unregistered afterwards: cloudpickle's
registry is global, and a lasting registration would change how every later pickle of the
process treats the module (the inline executor's ``debug`` round trip, a ``processes``
worker's task, the user's own pickles). cloudpickle then ships each of its classes and
functions that the task uses, with the module globals they refer to.

Only the dask executor ships this way: a ``processes`` worker shares the file system and
``sys.path`` of the main process and imports such modules by name, as the main process does.
"""

from __future__ import annotations

import io
import os
import sys
import threading
import types
from functools import lru_cache

__all__ = ["ships_by_value", "dumps_by_value"]

_lock = threading.Lock()
_dump_lock = threading.Lock()
_decided: dict[str, bool] = {}


@lru_cache(maxsize=1)
def _install_roots() -> tuple[str, ...]:
    import site
    import sysconfig

    roots = set()
    for key in ("purelib", "platlib", "stdlib", "platstdlib"):
        path = sysconfig.get_paths().get(key)
        if path:
            roots.add(path)
    try:
        roots.update(site.getsitepackages())
    except AttributeError:  # pragma: no cover - an old virtualenv's site module
        pass
    user = getattr(site, "getusersitepackages", lambda: None)()
    if user:
        roots.add(user)
    return tuple(os.path.join(os.path.realpath(r), "") for r in roots)


@lru_cache(maxsize=1)
def _editable_packages() -> frozenset:
    # a look at every installed distribution's metadata: done once, and only when a module
    # outside the installation directories shows up
    import json
    from importlib.metadata import distributions

    editable: set[str] = set()
    for dist in distributions():
        try:
            url = json.loads(dist.read_text("direct_url.json") or "{}")
            where = os.path.join(os.path.realpath(str(getattr(dist, "_path", ""))), "")
            if not (url.get("dir_info", {}).get("editable") or not where.startswith(_install_roots())):
                continue
            tops = (dist.read_text("top_level.txt") or "").split()
            name = dist.metadata["Name"] or ""
        except Exception:  # noqa: BLE001 - broken metadata: not taken as an editable install
            continue
        # without top_level.txt (not written by every build back-end): the project's name
        editable.update(tops or [name.replace("-", "_").lower()])
    return frozenset(editable)


def _installed(name: str) -> bool:
    top = name.partition(".")[0]
    if top == "udfkit" or top in sys.stdlib_module_names or name in sys.builtin_module_names:
        return True
    module = sys.modules.get(name)
    path = getattr(module, "__file__", None)
    if module is None or path is None:
        return True  # nothing to ship (or nothing cloudpickle could register)
    if os.path.realpath(path).startswith(_install_roots()):
        return True
    return top in _editable_packages()


def ships_by_value(name: str | None) -> bool:
    """Whether the module ``name`` travels by value (see the module docstring).

    Examples
    --------
    >>> ships_by_value("numpy"), ships_by_value("udfkit.udf"), ships_by_value("__main__")
    (False, False, False)
    """
    if not name or name == "__main__":
        return False  # cloudpickle ships __main__ by value anyway
    with _lock:
        decided = _decided.get(name)
    if decided is not None:
        return decided
    decided = not _installed(name)
    with _lock:
        _decided[name] = decided
    return decided


@lru_cache(maxsize=1)
def _pickler():
    import cloudpickle

    class Pickler(cloudpickle.Pickler):
        #: modules this pickler registered by value (unregistered when the dump ends)
        registered: list

        def reducer_override(self, value):
            # every class and function reaches this hook before cloudpickle decides between
            # by reference and by value: decide (and register) its module first
            if isinstance(value, (type, types.FunctionType)):
                name = getattr(value, "__module__", None)
                if ships_by_value(name) and name not in cloudpickle.list_registry_pickle_by_value():
                    cloudpickle.register_pickle_by_value(sys.modules[name])
                    self.registered.append(sys.modules[name])
            return super().reducer_override(value)

    return Pickler, cloudpickle.DEFAULT_PROTOCOL


def dumps_by_value(obj) -> bytes:
    """``obj`` pickled with cloudpickle, its classes and functions from modules that are not
    installed (see the module docstring) shipped by value."""
    import cloudpickle

    pickler, protocol = _pickler()
    # one dump at a time: the registrations below are process-wide while they last
    with _dump_lock, io.BytesIO() as buffer:
        p = pickler(buffer, protocol=protocol)
        p.registered = []
        try:
            p.dump(obj)
        finally:
            for module in p.registered:
                cloudpickle.unregister_pickle_by_value(module)
        return buffer.getvalue()
