"""Spawned workers start with a neutral main module.

A process started with ``multiprocessing``'s ``spawn`` method runs the parent's main module
again (as ``__mp_main__``) before it does anything else: the script's file, or the module of
``python -m``. udfkit's workers never need that: tasks travel through cloudpickle, which
ships classes and functions of ``__main__`` by value, and the parent's ``sys.path`` and
working directory travel in the spawn data, so the modules next to the script import as they
do in the parent. Running the main module again only does harm:

* a script fed on standard input (``python - < analysis.py``, a heredoc in a batch job) has
  ``__file__ == "<stdin>"``; the child tries to run a file of that name and dies before its
  first task;
* a script without ``if __name__ == "__main__":`` runs its whole analysis again in every
  worker, which starts workers of its own, and the run fails.

:func:`install` wraps :func:`multiprocessing.spawn.get_preparation_data` (the function that
tells a child what to do first) once per process. The wrapper leaves out the main module

* for the processes udfkit starts, known by their names (:func:`neutral_main_for`): the
  ``processes`` executor's workers and the worker processes of a local dask cluster that the
  dask executor started;
* for every process, when the main module has no file to run (``<stdin>``, ``<string>``):
  the child would fail at once otherwise.

Any other process (the user's own ``multiprocessing`` pools, with a real script file) gets
the preparation data unchanged.
"""

from __future__ import annotations

import os
import threading

__all__ = ["install", "neutral_main_for"]

_lock = threading.Lock()
_names: set[str] = set()


def neutral_main_for(name: str) -> None:
    """Start processes named ``name`` without the main module (and :func:`install`)."""
    install()
    with _lock:
        _names.add(name)


def install() -> None:
    """Wrap :func:`multiprocessing.spawn.get_preparation_data` (once; idempotent)."""
    from multiprocessing import spawn

    with _lock:
        original = spawn.get_preparation_data
        if getattr(original, "_udfkit_neutral_main", False):
            return

        def get_preparation_data(name, _original=original):
            data = _original(name)
            path = data.get("init_main_from_path")
            if name in _names or (path is not None and not os.path.isfile(path)):
                data.pop("init_main_from_path", None)
                data.pop("init_main_from_name", None)
            return data

        get_preparation_data._udfkit_neutral_main = True  # type: ignore[attr-defined]
        get_preparation_data.__doc__ = original.__doc__
        # popen_spawn_posix and popen_forkserver look the function up on the module at
        # each start, so replacing the module attribute is enough
        spawn.get_preparation_data = get_preparation_data
