"""The npy format passes the data set conformance suite (:class:`udfkit.testing.DataSetTests`)."""

import numpy as np

from udfkit.testing import DataSetTests


class TestNPY(DataSetTests):
    format = "npy"
    dtypes = ("uint8", "uint16", ">u2", "int32", ">i4", "float32", ">f4", "float64", ">f8",
              "complex64")
    io_backends = ("mmap", "buffered", "direct")
    sig_dims = (1, 2, 3)

    def write(self, tmp_path, data, *, sig_dims):
        path = tmp_path / "data.npy"
        np.save(path, data)
        # shapes and dtype come from the header; only the nav / sig split is ours
        return dict(path=str(path), sig_dims=sig_dims)
