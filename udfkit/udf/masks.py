"""LiberTEM's module path ``libertem.udf.masks``: ApplyMasksUDF from udfkit's built-ins.

A module-path alias, so that ``from libertem.udf.masks import ...`` ports by replacing
``libertem`` with ``udfkit``; the code lives in :mod:`udfkit.udf.builtins.masks`.
"""

from .builtins.masks import ApplyMasksUDF

__all__ = ["ApplyMasksUDF"]
