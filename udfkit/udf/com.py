"""LiberTEM's module path ``libertem.udf.com``: :class:`CoMUDF` and its helpers.

The implementation lives in :mod:`udfkit.udf.builtins.com`; this module lets
``from libertem.udf.com import CoMUDF`` port as ``from udfkit.udf.com import CoMUDF``.
"""

from .builtins.com import (
    CoMParams,
    CoMUDF,
    GuessResult,
    RegressionOptions,
    apply_correction,
    center_shifts,
    com_masks_factory,
    com_masks_generic,
    coordinate_check,
    curl_2d,
    divergence,
    guess_corrections,
    magnitude,
)

__all__ = ["CoMUDF", "CoMParams", "RegressionOptions", "GuessResult", "guess_corrections",
           "apply_correction", "center_shifts", "divergence", "curl_2d", "magnitude",
           "coordinate_check", "com_masks_factory", "com_masks_generic"]
