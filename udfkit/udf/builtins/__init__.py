"""The built-in UDFs (also importable from :mod:`udfkit.udf`).

None of these modules imports numba at import time; the kernels in ``_kernels`` are
loaded on the first tile.
"""

from .auto import AutoUDF
from .com import CoMUDF
from .crystallinity import CrystallinityUDF
from .fem import FEMUDF
from .filters import GaussianFilterUDF, MedianFilterUDF, UniformFilterUDF
from .localcorr import LocalCorrUDF
from .logsum import LogsumUDF
from .map import MapUDF
from .masks import ApplyMasksUDF
from .pick import PickUDF
from .projections import MaxMinProjectionUDF, MaxProjectionUDF
from .record import RecordUDF
from .resample import BinUDF, SubsampleUDF
from .series import (MapSeriesUDF, SeriesAggregateByIndexUDF, SeriesCenterUDF,
                     SeriesCorrelateUDF, SeriesNormalizeUDF, SeriesStandardizeUDF, SeriesStatsUDF,
                     SeriesZScoreUDF)
from .stddev import StatsUDF, StdDevUDF
from .sum import SumSigUDF, SumUDF

__all__ = ["SumUDF", "SumSigUDF", "StdDevUDF", "StatsUDF", "PickUDF", "ApplyMasksUDF",
           "LogsumUDF", "MapUDF", "RecordUDF", "CoMUDF", "AutoUDF", "FEMUDF", "CrystallinityUDF",
           # Thunder's image operations
           "GaussianFilterUDF", "UniformFilterUDF", "MedianFilterUDF", "SubsampleUDF", "BinUDF",
           "MaxProjectionUDF", "MaxMinProjectionUDF", "LocalCorrUDF",
           # Thunder's series operations
           "SeriesStatsUDF", "SeriesCorrelateUDF", "SeriesCenterUDF", "SeriesStandardizeUDF",
           "SeriesZScoreUDF", "SeriesNormalizeUDF", "SeriesAggregateByIndexUDF", "MapSeriesUDF"]
