"""I/O backends, registered by name and imported lazily.

``io_backend`` accepts ``None`` (the default, ``"mmap"``), a registered name, or an
:class:`~udfkit.io.base.IOBackend` instance (for backends with parameters):

* ``"mmap"``: views of memory-mapped files; the default;
* ``"buffered"``: large ``preadv`` reads into reused buffers;
* ``"direct"``: the same with ``O_DIRECT``, bypassing the page cache (data larger than RAM).
"""

from __future__ import annotations

import importlib

from ...errors import DataSetError
from ..base import IOBackend

__all__ = ["get_backend", "BACKENDS", "DEFAULT_BACKEND"]

BACKENDS = {
    "mmap": "udfkit.io.backends.mmap:MMapBackend",
    "buffered": "udfkit.io.backends.buffered:BufferedBackend",
    "direct": "udfkit.io.backends.direct:DirectBackend",
}
DEFAULT_BACKEND = "mmap"


def get_backend(spec: str | IOBackend | None = None) -> IOBackend:
    """Return an :class:`IOBackend` for ``spec`` (None, a name, or an instance).

    Examples
    --------
    >>> get_backend(None)
    MMapBackend()
    >>> get_backend("tape")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    udfkit.errors.DataSetError: io_backend: expected one of ['buffered', 'direct', 'mmap'] ... got 'tape'
    """
    if spec is None:
        spec = DEFAULT_BACKEND
    if isinstance(spec, IOBackend):
        return spec
    if isinstance(spec, str) and spec in BACKENDS:
        module, attr = BACKENDS[spec].split(":")
        return getattr(importlib.import_module(module), attr)()
    raise DataSetError(f"io_backend: expected one of {sorted(BACKENDS)} or an IOBackend instance, "
                       f"got {spec!r}")
