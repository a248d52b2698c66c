"""Results on disk and resumable runs (``Context.run_udf(out=...)``).

Nav buffers go into a store as partitions are merged (zarr, HDF5 or a directory of
``.npy`` files), next to a journal that lets an interrupted run go on (``resume=True``).
See :mod:`udfkit.udf.store.target` for the rules, :mod:`udfkit.udf.store.journal` for the
journal, and one module per format (``_zarr``, ``_hdf5``, ``_npy``).
"""

from .results import DiskBufferResult
from .target import STORE_FORMATS, ResultStore, StoreSession, detect_format

__all__ = ["ResultStore", "StoreSession", "DiskBufferResult", "STORE_FORMATS", "detect_format"]
