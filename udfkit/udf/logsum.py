"""LiberTEM's module path ``libertem.udf.logsum``: LogsumUDF, run_logsum from udfkit's built-ins.

A module-path alias, so that ``from libertem.udf.logsum import ...`` ports by replacing
``libertem`` with ``udfkit``; the code lives in :mod:`udfkit.udf.builtins.logsum`.
"""

from .builtins.logsum import LogsumUDF, run_logsum

__all__ = ["LogsumUDF", "run_logsum"]
