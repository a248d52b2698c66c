"""Shapes of detector files whose header fixes the frame size (blo, empad, mrc, seq, tvips, ser).

The header says how many frames a file holds and how many pixels a frame has. The user may
reshape both: ``sig_shape`` only into a shape with the same number of pixels (the bytes
between frames, such as per-frame headers, leave no other reading), ``nav_shape`` into any
shape that the frames fill (fewer frames than the file holds are fine, as for raw files).
"""

from __future__ import annotations

from math import prod

from ...errors import DataSetError
from ._common import check_frame_count, check_sync_offset, parse_dims

__all__ = ["resolve_fixed_frames"]


def resolve_fixed_frames(where: str, *, native_nav: tuple, native_sig: tuple, nav_shape, sig_shape,
                         image_count: int, sync_offset, allow_partial: bool, have: str,
                         frame_desc: str) -> tuple:
    """``(nav_shape, sig_shape, sync_offset)`` from the header's shapes and the user's overrides.

    Parameters
    ----------
    where : str
        Names the file in messages (``"blo file 'a.blo'"``).
    native_nav, native_sig : tuple of int
        The shapes the header gives.
    nav_shape, sig_shape, sync_offset
        The user's parameters (``None``: take the header's).
    image_count : int
        Whole frames in the file.
    allow_partial : bool
        Accept fewer frames than ``nav_shape`` needs.
    have, frame_desc : str
        What the file holds (``"4096 bytes"``) and what one frame needs, for messages.

    Examples
    --------
    >>> resolve_fixed_frames("f", native_nav=(2, 3), native_sig=(4, 4), nav_shape=None,
    ...                      sig_shape=(16,), image_count=6, sync_offset=1, allow_partial=False,
    ...                      have="", frame_desc="")
    ((2, 3), (16,), 1)
    >>> resolve_fixed_frames("f", native_nav=(2, 3), native_sig=(4, 4), nav_shape=None,
    ...                      sig_shape=(5, 5), image_count=6, sync_offset=0, allow_partial=False,
    ...                      have="", frame_desc="")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    udfkit.errors.DataSetError: f: sig_shape (5, 5) has 25 pixels, but the frames of the file have 16 ...
    """
    native_sig = tuple(int(s) for s in native_sig)
    sig = parse_dims(sig_shape, "sig_shape", where)
    if sig is None:
        sig = native_sig
    elif prod(sig) != prod(native_sig):
        raise DataSetError(f"{where}: sig_shape {sig} has {prod(sig)} pixels, but the frames of the "
                           f"file have {prod(native_sig)} {native_sig}; a sig_shape must keep the "
                           "number of pixels of a frame")
    nav = parse_dims(nav_shape, "nav_shape", where)
    if nav is None:
        nav = tuple(int(n) for n in native_nav)
    check_frame_count(where, nav, image_count, allow_partial, have, frame_desc)
    offset = check_sync_offset(where, sync_offset, prod(nav), image_count)
    return nav, sig, offset
