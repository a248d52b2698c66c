"""LiberTEM's module path ``libertem.udf.auto``: :class:`AutoUDF`.

The implementation lives in :mod:`udfkit.udf.builtins.auto`.
"""

from .builtins.auto import AutoUDF

__all__ = ["AutoUDF"]
