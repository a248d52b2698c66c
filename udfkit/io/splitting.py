"""Cutting a partition into smaller ones while a run goes (work-sized partitions).

A run whose UDFs cost much per frame wants more, smaller partitions than the byte-based
rule of :mod:`udfkit.io.partitioning` gives, so that every worker has work until the end
(:mod:`udfkit.udf.worksize` decides when and how large). :func:`sub_partition` makes the
partition of positions ``[start, stop)`` inside a planned one, of the same format.

Only partitions whose reading depends on nothing but their range can be cut: a partition
of C-ordered frames in files (raw, npy, and the detector formats that read through a
:class:`~udfkit.io.file_based.FilePartition`) and one of an in-memory array, which then
carries only its own frames. Chunked containers (HDF5, zarr) would decode a chunk once
per piece, and formats with their own partition classes keep their cut:
:func:`can_split` says no for them.
"""

from __future__ import annotations

import copy

from .base import Partition
from .file_based import FilePartition
from .formats.memory import MemoryPartition

__all__ = ["can_split", "sub_partition"]


def can_split(partition: Partition) -> bool:
    """Whether :func:`sub_partition` can cut ``partition``.

    Examples
    --------
    >>> import numpy as np
    >>> from udfkit.io.formats.memory import MemoryDataSet
    >>> ds = MemoryDataSet(data=np.zeros((6, 4, 4), "uint8"), sig_dims=2).initialize()
    >>> can_split(ds.get_partitions()[0])
    True
    """
    # exact types: a subclass may keep more that depends on the range (a SER file's index)
    return type(partition) in (FilePartition, MemoryPartition)


def sub_partition(partition: Partition, start: int, stop: int, index: int) -> Partition:
    """The partition of flattened nav positions ``[start, stop)``, inside ``partition``.

    Parameters
    ----------
    partition : Partition
        A partition :func:`can_split` accepts.
    start, stop : int
        Absolute positions, ``partition.start <= start < stop <= partition.stop``.
    index : int
        The new partition's index (unique within the run).

    Raises
    ------
    ValueError
        For a range outside the partition, or a partition that cannot be cut.

    Examples
    --------
    >>> import numpy as np
    >>> from udfkit.io.formats.memory import MemoryDataSet
    >>> ds = MemoryDataSet(data=np.arange(6 * 4).reshape(6, 2, 2), sig_dims=2).initialize()
    >>> p = sub_partition(ds.get_partitions()[0], 2, 5, index=7)
    >>> p.index, p.start, p.stop, p.frames.shape
    (7, 2, 5, (3, 2, 2))
    """
    if not can_split(partition):
        raise ValueError(f"{type(partition).__name__} cannot be cut into smaller partitions")
    start, stop = int(start), int(stop)
    if not partition.start <= start < stop <= partition.stop:
        raise ValueError(f"sub-partition [{start}, {stop}) is not inside partition "
                         f"[{partition.start}, {partition.stop})")
    new = copy.copy(partition)
    new.start, new.stop, new.index = start, stop, int(index)
    if isinstance(partition, MemoryPartition) and isinstance(new, MemoryPartition):
        # carry only its own frames, so that shipping the piece ships just those
        lo = min(max(start + partition.sync_offset, 0), partition.image_count)
        hi = min(max(stop + partition.sync_offset, 0), partition.image_count)
        first = partition.first_frame
        new.frames = partition.frames[max(0, lo - first):max(0, hi - first)]
        new.first_frame = lo
    return new
