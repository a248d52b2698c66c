"""LiberTEM's *analyses*: ``ctx.create_*_analysis(...)`` + ``ctx.run(analysis)``.

An analysis is a thin wrapper over a built-in UDF with LiberTEM's parameter names and
result names: it builds the UDF (and, for picking, the ROI), and turns the UDF's results
into an :class:`~udfkit.analysis.base.AnalysisResultSet` whose entries are reachable by key
(``result.intensity``, ``result["mask_0"]``), by position and by iteration. New code can run
the UDFs directly; these exist so that LiberTEM scripts port by changing imports.

=============================  ======================================  =====================
``Context`` method             UDF                                     result keys
=============================  ======================================  =====================
``create_sum_analysis``        :class:`~udfkit.udf.SumUDF`              intensity, intensity_lin
``create_pick_analysis``       :class:`~udfkit.udf.PickUDF`             intensity, intensity_lin
``create_mask_analysis``       :class:`~udfkit.udf.ApplyMasksUDF`       mask_0, mask_1, ...
``create_disk_analysis``       ApplyMasksUDF, ``masks.circular``       intensity, intensity_log
``create_ring_analysis``       ApplyMasksUDF, ``masks.ring``           intensity, intensity_log
``create_point_analysis``      ApplyMasksUDF, one pixel                intensity, intensity_log
``create_com_analysis``        :class:`~udfkit.udf.CoMUDF`              field, magnitude, x, y, ...
=============================  ======================================  =====================

Complex data add ``<key>_real``, ``_imag``, ``_angle`` and ``_complex`` entries, as LiberTEM.
"""

from __future__ import annotations

from .base import Analysis, AnalysisResult, AnalysisResultSet, BaseAnalysis
from .com import COMAnalysis
from .frames import PickFrameAnalysis, SumAnalysis
from .masks import (
    BaseMasksAnalysis,
    DiskMaskAnalysis,
    MasksAnalysis,
    PointMaskAnalysis,
    RingMaskAnalysis,
    SingleMaskAnalysis,
)

__all__ = ["Analysis", "BaseAnalysis", "AnalysisResult", "AnalysisResultSet", "SumAnalysis",
           "PickFrameAnalysis", "BaseMasksAnalysis", "SingleMaskAnalysis", "MasksAnalysis",
           "DiskMaskAnalysis", "RingMaskAnalysis", "PointMaskAnalysis", "COMAnalysis"]
