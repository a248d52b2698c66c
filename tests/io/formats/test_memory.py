"""The memory format passes the data set conformance suite (:class:`udfkit.testing.DataSetTests`)."""

from udfkit.testing import DataSetTests


class TestMemory(DataSetTests):
    format = "memory"
    dtypes = ("uint8", "uint16", ">u2", "int32", "float32", ">f4", "float64", "complex64")
    io_backends = ()  # no files: nothing to read them with
    sig_dims = (1, 2, 3)
    supports_corrupt = False

    def write(self, tmp_path, data, *, sig_dims):
        return dict(data=data, sig_dims=sig_dims)
