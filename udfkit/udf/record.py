"""LiberTEM's module path ``libertem.udf.record``: RecordUDF from udfkit's built-ins.

A module-path alias, so that ``from libertem.udf.record import ...`` ports by replacing
``libertem`` with ``udfkit``; the code lives in :mod:`udfkit.udf.builtins.record`.
"""

from .builtins.record import RecordUDF

__all__ = ["RecordUDF"]
