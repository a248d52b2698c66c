"""LiberTEM's module path ``libertem.udf.crystallinity``: :class:`CrystallinityUDF` and
``run_analysis_crystall``.

The implementation lives in :mod:`udfkit.udf.builtins.crystallinity`.
"""

from .builtins.crystallinity import CrystallinityUDF, run_analysis_crystall

__all__ = ["CrystallinityUDF", "run_analysis_crystall"]
