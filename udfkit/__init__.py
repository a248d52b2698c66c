"""udfkit: run user-defined functions over n-dimensional data sets larger than memory.

Quick start::

    from udfkit import Context, UDF
    ctx = Context()
    ds = ctx.load("raw", path="scan.raw", dtype="uint16", nav_shape=(128, 128), sig_shape=(256, 256))
    res = ctx.run_udf(dataset=ds, udf=MyUDF())

Heavy modules (numba kernels, dask, h5py) are imported only when used.
"""

from __future__ import annotations

__version__ = "0.1.0"

__all__ = ["Context", "UDF", "CorrectionSet", "Shape", "Slice", "UdfkitError", "DataSetError",
           "UDFError", "ROIError", "CorrectionError", "ResultStore", "ResultStoreError",
           "__version__"]

from .api import Context
from .common import Shape, Slice
from .errors import (CorrectionError, DataSetError, ResultStoreError, ROIError, UDFError,
                     UdfkitError)
from .io.corrections import CorrectionSet
from .udf.base import UDF
from .udf.store import ResultStore
