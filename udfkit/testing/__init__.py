"""Conformance suites that the tests of formats, I/O backends and executors subclass, and the
helpers, hypothesis strategies and profiles they share.

* :class:`DataSetTests` (:mod:`.formats`): one subclass per data set format;
* :class:`IOBackendTests` (:mod:`.backends`): one subclass per I/O backend;
* :mod:`.strategies` and :mod:`.physics`: drawn data sets and numpy references of UDF results;
* :mod:`.profiles`: the hypothesis profiles ``default``, ``ci`` and ``nightly``, and
  :func:`~udfkit.testing.profiles.examples`, which scales a test's example count by them.

Needs the ``test`` extra (pytest, hypothesis); ``import udfkit`` does not import this package.

Examples
--------
>>> from udfkit.testing import DataSetTests
>>> DataSetTests.executors
('inline', 'threads', 'processes', 'dask')
"""

from .backends import IOBackendTests
from .contexts import ALL_EXECUTORS, SharedContexts
from .formats import DataSetTests, FormatCase, make_values
from .profiles import examples
from .tiles import expected_frames, is_file_view, read_all

__all__ = ["DataSetTests", "IOBackendTests", "FormatCase", "make_values", "SharedContexts",
           "ALL_EXECUTORS", "read_all", "expected_frames", "is_file_view", "examples"]
