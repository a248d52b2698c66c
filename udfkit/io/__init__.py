"""The I/O layer: data sets, partitions, tiles, tiling negotiation and I/O backends.

Imports only :mod:`udfkit.common` and :mod:`udfkit.errors`; knows nothing of UDFs.
"""

from .base import DataSet, DataSetMeta, FrameSource, IOBackend, Partition
from .corrections import CorrectionSet
from .tiles import DataTile, SourcePartition
from .tiling import Negotiator, TilingConstraints, TilingRequest, TilingScheme

__all__ = ["DataSet", "DataSetMeta", "DataTile", "FrameSource", "IOBackend", "Partition",
           "SourcePartition", "CorrectionSet", "Negotiator", "TilingConstraints", "TilingRequest",
           "TilingScheme"]
