"""Analyses over whole frames: the sum of all frames, and one picked frame."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import numpy as np

from ..errors import UDFError
from .base import AnalysisResult, AnalysisResultSet, BaseAnalysis

if TYPE_CHECKING:
    from ..udf.base import UDF

__all__ = ["SumAnalysis", "PickFrameAnalysis"]


def _two_scales(data, key, title, desc, log_first: bool) -> list:
    """``key`` log-scaled and ``key_lin`` linear (sum, pick), as LiberTEM lists them."""
    return [
        AnalysisResult(data, title=f"{title} [log]", desc=f"{desc} log-scaled", key=key,
                       logarithmic=True, damage=True),
        AnalysisResult(data, title=f"{title} [lin]", desc=f"{desc} lin-scaled", key=f"{key}_lin",
                       damage=True),
    ]


class SumAnalysis(BaseAnalysis):
    """Sum of all frames (:class:`~udfkit.udf.SumUDF`); keys ``intensity`` (log-scaled
    picture) and ``intensity_lin``.

    LiberTEM sums integer data in float32; udfkit sums in float64 (exact for counts).
    """

    def get_udf(self) -> UDF:
        from ..udf import SumUDF

        kind = np.dtype(self.dataset.dtype).kind
        return SumUDF(dtype="complex128" if kind == "c" else "float64")

    def get_udf_results(self, udf_results: Mapping[str, Any], roi: np.ndarray | None,
                        damage: Any) -> AnalysisResultSet:
        data = udf_results["intensity"].data
        if data.dtype.kind == "c":
            return AnalysisResultSet(self.get_complex_results(
                data, key_prefix="intensity", title="intensity", desc="sum of all frames",
                damage=True, default_lin=False))
        return AnalysisResultSet(_two_scales(data, "intensity", "intensity", "sum of frames", True))


class PickFrameAnalysis(BaseAnalysis):
    """The frame at nav position ``(z, y, x)`` (:class:`~udfkit.udf.PickUDF` on a one-point
    ROI); keys ``intensity`` (log-scaled picture) and ``intensity_lin``; the frame keeps the
    stored dtype."""

    def get_origin(self) -> tuple:
        dims = len(self.dataset.shape.nav)
        zyx = tuple(self.parameters.get(k) for k in ("z", "y", "x"))
        if dims not in (1, 2, 3):
            raise UDFError(f"create_pick_analysis: the data set has {dims} nav dimensions; picking "
                           "by x/y/z takes 1 to 3 (use PickUDF with a roi for others)")
        names = ("z", "y", "x")[-dims:]
        keep, drop = zyx[-dims:], zyx[:-dims]
        if None in keep or any(d is not None for d in drop):
            given = ", ".join(f"{n}={v}" for n, v in zip("zyx", zyx))
            raise UDFError(f"create_pick_analysis: a data set with {dims} nav dimensions needs "
                           f"{', '.join(names)} (and no other), got {given}")
        nav = tuple(self.dataset.shape.nav)
        picked = tuple(int(v) for v in keep if v is not None)  # none is None: checked above
        for name, value, size in zip(names, picked, nav):
            if not 0 <= value < size:
                raise UDFError(f"create_pick_analysis: {name}={value} is outside the nav shape {nav}")
        return picked

    def get_udf(self) -> UDF:
        from ..udf import PickUDF

        return PickUDF()

    def get_roi(self) -> np.ndarray | None:
        roi = np.zeros(tuple(self.dataset.shape.nav), dtype=bool)
        roi[self.get_origin()] = True
        return roi

    def get_udf_results(self, udf_results: Mapping[str, Any], roi: np.ndarray | None,
                        damage: Any) -> AnalysisResultSet:
        data = udf_results["intensity"].data[0]
        coords = " ".join(f"{k}={self.parameters[k]}" for k in ("x", "y", "z") if k in self.parameters)
        desc = f"the frame at {coords}"
        if data.dtype.kind == "c":
            return AnalysisResultSet(self.get_complex_results(
                data, key_prefix="intensity", title="intensity", desc=desc, damage=True,
                default_lin=False))
        return AnalysisResultSet(_two_scales(data, "intensity", "intensity", desc, True))
