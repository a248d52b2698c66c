"""How a data set is cut into partitions.

Rules
-----
* A partition is a contiguous range of the flattened navigation axis; sizes differ by at
  most one frame.
* ``num_partitions`` given by the user wins (capped at one frame per partition).
* Otherwise aim for :data:`TARGET_PARTITION_BYTES` of stored data per partition, so that the
  fixed cost of a partition (task shipping, buffer allocation, merge) stays negligible next
  to reading it, and use at least two partitions per worker so that a slow partition does
  not leave the other workers idle at the end of a run.
* Data sets smaller than two :data:`MIN_PARTITION_BYTES` partitions per worker are not
  forced apart: for them one partition per :data:`MIN_PARTITION_BYTES` is the most that
  pays, and a tiny data set is a single partition.
* The bytes are those a partition reads: ``nav_size * frame_bytes`` for dense frames; a
  format that stores fewer (``raw_csr``: only the non-zero entries of each frame) passes
  ``stored_bytes``, so that a 2 GiB scan stored in 6 MiB of CSR arrays is one partition, not
  eight, and the fixed cost of a partition is paid once.
"""

from __future__ import annotations

import math
import numbers
from typing import Any

__all__ = ["partition_bounds", "partition_reason", "check_num_partitions",
           "TARGET_PARTITION_BYTES", "MIN_PARTITION_BYTES"]

TARGET_PARTITION_BYTES = 256 << 20
MIN_PARTITION_BYTES = 8 << 20


def partition_bounds(nav_size: int, frame_bytes: int, num_partitions: int | None = None,
                     num_workers: int = 1, align: int = 1, align_offset: int = 0,
                     stored_bytes: int | None = None) -> list[tuple[int, int]]:
    """Return ``(start, stop)`` per partition.

    ``stored_bytes`` (default ``nav_size * frame_bytes``) is what all partitions read
    together, where the format stores less than dense frames.

    With ``align > 1`` every boundary ``b`` between partitions is moved to the nearest
    position with ``(b + align_offset) % align == 0`` (chunk boundaries of the file, when
    position ``i`` reads file frame ``i + align_offset``); partitions that become empty are
    dropped, so there may be fewer than asked for.

    Examples
    --------
    >>> partition_bounds(10, 1, num_partitions=3)
    [(0, 3), (3, 6), (6, 10)]
    >>> len(partition_bounds(128 * 128, 256 * 256 * 2, num_workers=2))
    8
    >>> partition_bounds(64, 4096)
    [(0, 64)]
    >>> partition_bounds(20, 1, num_partitions=3, align=4)
    [(0, 4), (4, 12), (12, 20)]
    >>> partition_bounds(20, 1, num_partitions=3, align=4, align_offset=1)
    [(0, 7), (7, 11), (11, 20)]
    >>> partition_bounds(128 * 128, 256 * 256 * 2, num_workers=2, stored_bytes=6 << 20)
    [(0, 16384)]
    """
    if num_partitions is not None:
        n = int(num_partitions)
        if n < 1:
            raise ValueError(f"num_partitions: expected a positive integer, got {num_partitions!r}")
    else:
        total = nav_size * frame_bytes if stored_bytes is None else int(stored_bytes)
        n = max(math.ceil(total / TARGET_PARTITION_BYTES), 2 * max(1, num_workers))
        n = min(n, max(1, total // MIN_PARTITION_BYTES))
    n = max(1, min(n, nav_size))
    cuts = [i * nav_size // n for i in range(n + 1)]
    if align > 1:
        cuts = [0] + [_nearest_aligned(c, align, align_offset) for c in cuts[1:-1]] + [nav_size]
        cuts = sorted({min(max(c, 0), nav_size) for c in cuts})
    return [(a, b) for a, b in zip(cuts[:-1], cuts[1:]) if b > a]


def partition_reason(nav_size: int, frame_bytes: int, num_partitions: int | None = None,
                     num_workers: int = 1, align: int = 1, stored_bytes: int | None = None,
                     stored_what: str = "stored frames") -> str:
    """Which rule of the module docstring gives :func:`partition_bounds` its count, in words.

    Follows the same branches as :func:`partition_bounds` (a run plan shows the sentence);
    ``stored_what`` names what ``stored_bytes`` counts.

    Examples
    --------
    >>> partition_reason(128 * 128, 256 * 256 * 2, num_workers=2)
    '2 GiB of stored frames in partitions of about 256 MiB: 8 partitions'
    >>> partition_reason(64, 4096)
    'the data set (256 KiB) is smaller than two 8 MiB partitions per worker: 1 partition'
    >>> partition_reason(10, 1, num_partitions=3)
    'num_partitions=3 was given'
    >>> print(partition_reason(128 * 128, 256 * 256 * 2, num_workers=2, stored_bytes=6 << 20,
    ...                        stored_what="CSR arrays"))  # doctest: +NORMALIZE_WHITESPACE
    the data set (6 MiB of CSR arrays) is smaller than two 8 MiB partitions per worker:
    1 partition
    """
    if num_partitions is not None:
        n = max(1, min(int(num_partitions), nav_size))
        why = f"num_partitions={int(num_partitions)} was given"
        if n < int(num_partitions):
            why += f", capped at one frame per partition ({n})"
    else:
        total = nav_size * frame_bytes if stored_bytes is None else int(stored_bytes)
        by_size = math.ceil(total / TARGET_PARTITION_BYTES)
        per_worker = 2 * max(1, num_workers)
        most = max(1, total // MIN_PARTITION_BYTES)
        n = max(1, min(max(by_size, per_worker), most, nav_size))
        size = _size(total) if stored_bytes is None else f"{_size(total)} of {stored_what}"
        if max(by_size, per_worker) > most:
            why = (f"the data set ({size}) is smaller than two {_size(MIN_PARTITION_BYTES)} "
                   f"partitions per worker")
        elif per_worker > by_size:
            why = (f"two partitions per worker ({max(1, num_workers)} worker"
                   f"{'s' if num_workers > 1 else ''}) so that no worker idles at the end")
        else:
            why = (f"{_size(total)} of {stored_what} in partitions of about "
                   f"{_size(TARGET_PARTITION_BYTES)}")
        if n == nav_size and n < min(max(by_size, per_worker), most):
            why += ", at most one frame each"
        why += f": {n} partition{'s' if n != 1 else ''}"
    if align > 1:
        why += f"; boundaries moved to multiples of {align} frames (the file's chunks)"
    return why


def _size(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if n < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" or n == int(n) else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n} B"  # pragma: no cover


def _nearest_aligned(c: int, align: int, offset: int) -> int:
    below = c - (c + offset) % align
    above = below + align
    return below if c - below <= above - c else above


def check_num_partitions(where: str, num_partitions: Any,
                         error: type[Exception] = ValueError) -> int | None:
    """``None`` or a positive integer."""
    if num_partitions is None:
        return None
    if isinstance(num_partitions, bool) or not isinstance(num_partitions, numbers.Integral) \
            or num_partitions < 1:
        raise error(f"{where}: num_partitions: expected a positive integer, got {num_partitions!r}")
    return int(num_partitions)
