"""The UDF layer: the :class:`UDF` base class, buffers, results, the partition runner and the
built-in UDFs."""

from .base import UDF
from .buffers import AuxData, BufferSpec
from .builtins import (
    FEMUDF,
    ApplyMasksUDF,
    AutoUDF,
    CoMUDF,
    CrystallinityUDF,
    LogsumUDF,
    MapUDF,
    PickUDF,
    RecordUDF,
    StatsUDF,
    StdDevUDF,
    SumSigUDF,
    SumUDF,
)
from .meta import UDFMeta
from .results import BufferResult, RunResults

__all__ = ["UDF", "AuxData", "BufferSpec", "UDFMeta", "BufferResult", "RunResults",
           "SumUDF", "SumSigUDF", "StdDevUDF", "StatsUDF", "PickUDF", "ApplyMasksUDF",
           "LogsumUDF", "MapUDF", "RecordUDF", "CoMUDF", "AutoUDF", "FEMUDF", "CrystallinityUDF"]
