"""Tests of the data set formats: one module per format, each subclassing
:class:`udfkit.testing.DataSetTests` (a package, so that module names such as ``test_dask``
may repeat those of other test folders)."""
