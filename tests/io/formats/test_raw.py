"""The raw format passes the data set conformance suite (:class:`udfkit.testing.DataSetTests`)."""

from udfkit.testing import DataSetTests


class TestRaw(DataSetTests):
    format = "raw"
    dtypes = ("uint8", "uint16", ">u2", "int32", ">i4", "float32", ">f4", "float64", ">f8",
              "complex64")
    io_backends = ("mmap", "buffered", "direct")
    sig_dims = (1, 2, 3)

    def write(self, tmp_path, data, *, sig_dims):
        path = tmp_path / "data.raw"
        data.tofile(path)
        # the file has no header: the caller says what it holds
        return dict(path=str(path), dtype=data.dtype.str, nav_shape=data.shape[:-sig_dims],
                    sig_shape=data.shape[-sig_dims:])
