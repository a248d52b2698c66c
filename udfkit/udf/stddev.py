"""LiberTEM's module path ``libertem.udf.stddev``: StdDevUDF, run_stddev, consolidate_result from
udfkit's built-ins.

A module-path alias, so that ``from libertem.udf.stddev import ...`` ports by replacing
``libertem`` with ``udfkit``; the code lives in :mod:`udfkit.udf.builtins.stddev`.
"""

from .builtins.stddev import StdDevUDF, consolidate_result, run_stddev

__all__ = ["StdDevUDF", "run_stddev", "consolidate_result"]
