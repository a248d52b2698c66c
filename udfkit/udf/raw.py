"""LiberTEM's module path ``libertem.udf.raw``: PickUDF from udfkit's built-ins.

A module-path alias, so that ``from libertem.udf.raw import ...`` ports by replacing
``libertem`` with ``udfkit``; the code lives in :mod:`udfkit.udf.builtins.pick`.
"""

from .builtins.pick import PickUDF

__all__ = ["PickUDF"]
