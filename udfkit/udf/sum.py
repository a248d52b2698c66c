"""LiberTEM's module path ``libertem.udf.sum``: SumUDF from udfkit's built-ins.

A module-path alias, so that ``from libertem.udf.sum import ...`` ports by replacing
``libertem`` with ``udfkit``; the code lives in :mod:`udfkit.udf.builtins.sum`.
"""

from .builtins.sum import SumUDF

__all__ = ["SumUDF"]
