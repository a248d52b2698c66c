"""The UDF layer: the :class:`UDF` base class, buffers, results, the partition runner and the
built-in UDFs."""

from .base import UDF, UDFData, UDFMethod
from .buffers import ArrayWithMask, AuxData, BufferSpec, BufferWrapper
from .builtins import (
    FEMUDF,
    ApplyMasksUDF,
    MapSeriesUDF,
    SeriesAggregateByIndexUDF,
    SeriesCenterUDF,
    SeriesCorrelateUDF,
    SeriesNormalizeUDF,
    SeriesStandardizeUDF,
    SeriesStatsUDF,
    SeriesZScoreUDF,
    AutoUDF,
    BinUDF,
    CoMUDF,
    CrystallinityUDF,
    GaussianFilterUDF,
    LocalCorrUDF,
    LogsumUDF,
    MapUDF,
    MaxMinProjectionUDF,
    MaxProjectionUDF,
    MedianFilterUDF,
    PickUDF,
    RecordUDF,
    StatsUDF,
    StdDevUDF,
    SubsampleUDF,
    SumSigUDF,
    SumUDF,
    UniformFilterUDF,
)
from .meta import UDFMeta
from .plan import RunPlan, plan_run
from .results import BufferResult, RunResults

__all__ = ["UDF", "AuxData", "BufferSpec", "BufferWrapper", "ArrayWithMask", "UDFData", "UDFMethod",
           "UDFMeta", "BufferResult", "RunResults", "RunPlan", "plan_run",
           "SumUDF", "SumSigUDF", "StdDevUDF", "StatsUDF", "PickUDF", "ApplyMasksUDF",
           "LogsumUDF", "MapUDF", "RecordUDF", "CoMUDF", "AutoUDF", "FEMUDF", "CrystallinityUDF",
           "GaussianFilterUDF", "UniformFilterUDF", "MedianFilterUDF", "SubsampleUDF", "BinUDF",
           "MaxProjectionUDF", "MaxMinProjectionUDF", "LocalCorrUDF",
           # Thunder's series operations
           "SeriesStatsUDF", "SeriesCorrelateUDF", "SeriesCenterUDF", "SeriesStandardizeUDF",
           "SeriesZScoreUDF", "SeriesNormalizeUDF", "SeriesAggregateByIndexUDF", "MapSeriesUDF"]
