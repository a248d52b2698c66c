"""Fixed-layout binary headers of the seq, tvips and ser formats: :func:`read_struct`.

(Their shapes are resolved by :func:`~udfkit.io.formats._fixed_frames.resolve_fixed_frames`,
shared with blo, empad and mrc.)
"""

from __future__ import annotations

import numpy as np

from ...errors import DataSetError

__all__ = ["read_struct"]


def read_struct(raw: bytes, fields, where: str, what: str) -> dict:
    """Parse ``raw`` as the little-endian packed ``fields`` (``[(name, dtype), ...]``).

    Raises a :class:`DataSetError` naming ``where`` when ``raw`` is too short.

    >>> read_struct(b"\\x01\\x00\\x02\\x00\\x00\\x00", [("a", "<u2"), ("b", "<u4")], "f", "header")
    {'a': 1, 'b': 2}
    """
    dtype = np.dtype(list(fields))
    if len(raw) < dtype.itemsize:
        raise DataSetError(f"{where}: the {what} does not parse: it needs {dtype.itemsize} bytes, the "
                           f"file has {len(raw)}")
    rec = np.frombuffer(raw[:dtype.itemsize], dtype=dtype)[0]
    out = {}
    for name in dtype.names or ():
        v = rec[name]
        out[name] = v.item() if isinstance(v, np.generic) else bytes(v)
    return out

