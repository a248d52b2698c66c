"""LiberTEM's module path ``libertem.udf.FEM``: :class:`FEMUDF` and ``run_fem``.

The implementation lives in :mod:`udfkit.udf.builtins.fem`.
"""

from .builtins.fem import FEMUDF, run_fem

__all__ = ["FEMUDF", "run_fem"]
