"""Analyses that apply masks to every frame (:class:`~udfkit.udf.ApplyMasksUDF`)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import numpy as np

from ..errors import UDFError
from .base import AnalysisResult, AnalysisResultSet, BaseAnalysis

if TYPE_CHECKING:
    from ..udf.base import UDF

__all__ = ["BaseMasksAnalysis", "SingleMaskAnalysis", "MasksAnalysis", "DiskMaskAnalysis",
           "RingMaskAnalysis", "PointMaskAnalysis"]


class BaseMasksAnalysis(BaseAnalysis):
    """An :class:`~udfkit.udf.ApplyMasksUDF` with the analysis's mask factories."""

    def get_mask_factories(self) -> list:
        raise NotImplementedError(f"{type(self).__name__} must implement get_mask_factories()")

    def get_use_sparse(self) -> bool | str | None:
        return self.parameters.get("use_sparse")

    def get_udf(self) -> UDF:
        from ..udf import ApplyMasksUDF

        return ApplyMasksUDF(mask_factories=self.get_mask_factories(),
                             use_sparse=self.get_use_sparse(),
                             mask_count=self.parameters.get("mask_count"),
                             mask_dtype=self.parameters.get("mask_dtype"),
                             preferred_dtype=self.parameters.get("dtype"))

    def _sig_yx(self, what: str) -> tuple[int, int]:
        sig = tuple(self.dataset.shape.sig)
        if len(sig) != 2:
            raise UDFError(f"create_{what}_analysis: needs two signal dimensions, the data set has "
                           f"sig shape {sig}")
        return sig


class SingleMaskAnalysis(BaseMasksAnalysis):
    """One mask: keys ``intensity`` and ``intensity_log`` (nav-shaped)."""

    description = "intensity of the integration over the mask"

    def get_udf_results(self, udf_results: Mapping[str, Any], roi: np.ndarray | None,
                        damage: Any) -> AnalysisResultSet:
        data = udf_results["intensity"].data[..., 0]
        if data.dtype.kind == "c":
            return AnalysisResultSet(self.get_complex_results(
                data, key_prefix="intensity", title="intensity", desc=self.description,
                damage=damage))
        return AnalysisResultSet([
            AnalysisResult(data, title="intensity [lin]", desc=f"{self.description} lin-scaled",
                           key="intensity", damage=damage),
            AnalysisResult(data, title="intensity [log]", desc=f"{self.description} log-scaled",
                           key="intensity_log", logarithmic=True, damage=damage),
        ])


class MasksAnalysis(BaseMasksAnalysis):
    """Any number of masks from ``factories``: keys ``mask_0``, ``mask_1``, ... (nav-shaped)."""

    def get_mask_factories(self) -> list:
        return self.parameters["factories"]

    def get_udf_results(self, udf_results: Mapping[str, Any], roi: np.ndarray | None,
                        damage: Any) -> AnalysisResultSet:
        data = udf_results["intensity"].data
        results = []
        for i in range(data.shape[-1]):
            d = data[..., i]
            if d.dtype.kind == "c":
                results += self.get_complex_results(d, key_prefix=f"mask_{i}", title=f"mask {i}",
                                                    desc=f"integrated intensity for mask {i}",
                                                    damage=damage)
            else:
                results.append(AnalysisResult(d, title=f"mask {i}", key=f"mask_{i}", damage=damage,
                                              desc=f"integrated intensity for mask {i}"))
        return AnalysisResultSet(results)


class DiskMaskAnalysis(SingleMaskAnalysis):
    """Integration over a disk of radius ``r`` around ``(cy, cx)`` (defaults: the frame's
    centre, 15 % of the smaller frame side, as LiberTEM)."""

    description = "intensity of the integration over the selected disk"

    def get_parameters(self, parameters: dict) -> dict:
        ny, nx = self._sig_yx("disk")
        return {"cx": nx / 2, "cy": ny / 2, "r": min(ny, nx) / 2 * 0.3, "use_sparse": False,
                "mask_count": 1, "mask_dtype": np.float32}

    def get_mask_factories(self) -> list:
        from .. import masks

        ny, nx = self._sig_yx("disk")
        cx, cy, r = self.parameters["cx"], self.parameters["cy"], self.parameters["r"]

        def disk_mask():
            return masks.circular(centerX=cx, centerY=cy, imageSizeX=nx, imageSizeY=ny, radius=r)

        return [disk_mask]


class RingMaskAnalysis(SingleMaskAnalysis):
    """Integration over a ring ``ri <= r < ro`` around ``(cy, cx)`` (defaults: the frame's
    centre, ``ro`` half the smaller side, ``ri = 0.8 ro``, as LiberTEM)."""

    description = "intensity of the integration over the selected ring"

    def get_parameters(self, parameters: dict) -> dict:
        ny, nx = self._sig_yx("ring")
        ro = parameters.get("ro", min(ny, nx) / 2)
        return {"cx": nx / 2, "cy": ny / 2, "ro": ro, "ri": ro * 0.8, "use_sparse": False,
                "mask_count": 1, "mask_dtype": np.float32}

    def get_mask_factories(self) -> list:
        from .. import masks

        ny, nx = self._sig_yx("ring")
        p = self.parameters
        cx, cy, ri, ro = p["cx"], p["cy"], p["ri"], p["ro"]

        def ring_mask():
            return masks.ring(centerX=cx, centerY=cy, imageSizeX=nx, imageSizeY=ny, radius=ro,
                              radius_inner=ri)

        return [ring_mask]


class PointMaskAnalysis(SingleMaskAnalysis):
    """The pixel ``(cy, cx)`` of every frame (default: the frame's centre)."""

    description = "intensity of the integration over the selected point"

    def get_parameters(self, parameters: dict) -> dict:
        ny, nx = self._sig_yx("point")
        return {"cx": nx / 2, "cy": ny / 2, "mask_count": 1, "mask_dtype": np.float32}

    def get_use_sparse(self) -> bool | str | None:
        return True

    def get_mask_factories(self) -> list:
        ny, nx = self._sig_yx("point")
        y, x = int(self.parameters["cy"]), int(self.parameters["cx"])
        if not (0 <= y < ny and 0 <= x < nx):
            raise UDFError(f"create_point_analysis: point (y={y}, x={x}) is outside the frame "
                           f"({ny}, {nx})")

        def point_mask():
            mask = np.zeros((ny, nx), dtype=np.float32)
            mask[y, x] = 1
            return mask

        return [point_mask]
