"""Shapes of the seq, tvips and ser formats, whose headers fix the frame and count the frames.

The header gives the frame shape (``native_sig``) and, directly or through the file size, the
number of frames; some headers also give a scan shape (``native_nav``). The user may override:

* ``sig_shape`` only with the same number of pixels (frames lie whole at their offsets, so
  any C-order reshape of a frame reads right; another pixel count would not be a frame);
* ``nav_shape`` with any shape the frames fill; fewer frames than the file holds are fine
  (as for raw files), more only with ``allow_partial``.
"""

from __future__ import annotations

from math import prod

import numpy as np

from ...errors import DataSetError
from ._common import check_frame_count, check_sync_offset, parse_dims

__all__ = ["resolve_shapes", "read_struct"]


def resolve_shapes(where: str, *, native_nav, native_sig, nav_shape, sig_shape, image_count: int,
                   sync_offset, allow_partial: bool, have: str, frame_desc: str) -> tuple:
    """``(nav_shape, sig_shape, sync_offset)`` from the header's shapes and the user's overrides.

    Examples
    --------
    >>> resolve_shapes("f", native_nav=(6,), native_sig=(4, 4), nav_shape=(2, 3), sig_shape=(16,),
    ...                image_count=6, sync_offset=1, allow_partial=False, have="", frame_desc="")
    ((2, 3), (16,), 1)
    >>> resolve_shapes("f", native_nav=(6,), native_sig=(4, 4), nav_shape=None, sig_shape=(5, 5),
    ...                image_count=6, sync_offset=0, allow_partial=False, have="", frame_desc="")
    Traceback (most recent call last):
    ...
    udfkit.errors.DataSetError: f: sig_shape (5, 5) has 25 pixels, but the frames in the file ...
    """
    native_sig = tuple(int(s) for s in native_sig)
    sig = parse_dims(sig_shape, "sig_shape", where)
    if sig is None:
        sig = native_sig
    elif prod(sig) != prod(native_sig):
        raise DataSetError(f"{where}: sig_shape {sig} has {prod(sig)} pixels, but the frames in the "
                           f"file have {prod(native_sig)} {native_sig}; a sig_shape must keep the "
                           "number of pixels of a frame")
    nav = parse_dims(nav_shape, "nav_shape", where)
    if nav is None:
        nav = tuple(int(n) for n in native_nav)
    check_frame_count(where, nav, image_count, allow_partial, have, frame_desc)
    offset = check_sync_offset(where, sync_offset, prod(nav), image_count)
    return nav, sig, offset


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
    for name in dtype.names:
        v = rec[name]
        out[name] = v.item() if isinstance(v, np.generic) else bytes(v)
    return out

