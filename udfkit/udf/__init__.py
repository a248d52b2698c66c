"""The UDF layer: the :class:`UDF` base class, buffers, results and the partition runner."""

from .base import UDF
from .buffers import AuxData, BufferSpec
from .map import MapUDF
from .meta import UDFMeta
from .results import BufferResult, RunResults

__all__ = ["UDF", "AuxData", "BufferSpec", "MapUDF", "UDFMeta", "BufferResult", "RunResults"]
