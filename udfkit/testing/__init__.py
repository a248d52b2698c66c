"""Conformance suites that the tests of formats (and later I/O backends and executors)
subclass, and the helpers they share.

Needs the ``test`` extra (pytest, hypothesis); ``import udfkit`` does not import this package.

Examples
--------
>>> from udfkit.testing import DataSetTests
>>> DataSetTests.executors
('inline', 'threads', 'processes', 'dask')
"""

from .contexts import ALL_EXECUTORS, SharedContexts
from .formats import DataSetTests, FormatCase, make_values
from .tiles import expected_frames, read_all

__all__ = ["DataSetTests", "FormatCase", "make_values", "SharedContexts", "ALL_EXECUTORS",
           "read_all", "expected_frames"]
