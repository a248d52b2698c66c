"""LiberTEM's module path ``libertem.udf.sumsigudf``: SumSigUDF, run_sumsig from udfkit's built-
ins.

A module-path alias, so that ``from libertem.udf.sumsigudf import ...`` ports by replacing
``libertem`` with ``udfkit``; the code lives in :mod:`udfkit.udf.builtins.sum`.
"""

from .builtins.sum import SumSigUDF, run_sumsig

__all__ = ["SumSigUDF", "run_sumsig"]
