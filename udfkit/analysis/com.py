"""Centre-of-mass analysis: LiberTEM's ``create_com_analysis`` over :class:`~udfkit.udf.CoMUDF`."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import numpy as np

from ..errors import UDFError
from .base import AnalysisResult, AnalysisResultSet, BaseAnalysis

if TYPE_CHECKING:
    from ..udf.base import UDF

__all__ = ["COMAnalysis"]


def _field_picture(x, y, damage):
    """RGB picture of the field over the processed positions (see ``rgb_from_2dvector``)."""
    from ..viz import rgb_from_2dvector

    length = np.hypot(np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64))
    ok = np.isfinite(length) & np.broadcast_to(np.asarray(damage, dtype=bool), length.shape)
    vmax = length[ok].max() if ok.any() else 1.0
    return rgb_from_2dvector(y=y, x=x, vmax=vmax)


class COMAnalysis(BaseAnalysis):
    """Centre of mass of every frame within radius ``r`` (and outside ``ri``) of
    ``(cy, cx)``, with ``flip_y`` and ``scan_rotation`` applied.

    Keys as LiberTEM's: ``field`` (``raw_data`` is the tuple ``(x, y)``), ``magnitude``,
    ``divergence`` and ``curl`` (when every nav axis is longer than 1), ``x`` and ``y``.
    Defaults: ``(cy, cx)`` the frame centre, ``r`` infinite, ``ri`` 0.
    """

    def get_parameters(self, parameters: dict) -> dict:
        sig = tuple(self.dataset.shape.sig)
        if len(sig) != 2:
            raise UDFError(f"create_com_analysis: needs two signal dimensions, the data set has "
                           f"sig shape {sig}")
        ny, nx = sig
        return {"cx": nx / 2, "cy": ny / 2, "r": float("inf"), "ri": 0.0, "scan_rotation": 0.0,
                "flip_y": False}

    def get_udf(self) -> UDF:
        from ..udf import CoMUDF

        p = self.parameters
        return CoMUDF.with_params(cy=p["cy"], cx=p["cx"], r=p["r"], ri=p["ri"] or 0.0,
                                  scan_rotation=p["scan_rotation"], flip_y=p["flip_y"])

    def get_udf_results(self, udf_results: Mapping[str, Any], roi: np.ndarray | None,
                        damage: Any) -> AnalysisResultSet:
        y = udf_results["field_y"].data
        x = udf_results["field_x"].data
        m = udf_results["magnitude"].data
        results = [
            AnalysisResult((x, y), visualized=lambda: _field_picture(x, y, damage), key="field",
                           title="field", desc="direction (hue) and length (brightness) of the shift",
                           include_in_download=False),
            AnalysisResult(m, key="magnitude", title="magnitude", desc="magnitude of the vector field",
                           damage=damage),
            AnalysisResult(x, key="x", title="x", desc="x component of the center", damage=damage),
            AnalysisResult(y, key="y", title="y", desc="y component of the center", damage=damage),
        ]
        if all(s > 1 for s in y.shape):
            results[2:2] = [
                AnalysisResult(udf_results["divergence"].data, key="divergence", title="divergence",
                               desc="divergence of the vector field", damage=damage),
                AnalysisResult(udf_results["curl"].data, key="curl", title="curl",
                               desc="curl of the 2D vector field", damage=damage),
            ]
        return AnalysisResultSet(results)
