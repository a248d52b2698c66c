"""The ``stack`` format: several data sets of one frame shape, concatenated along nav.

Rules
-----
* **Members** are loaded data sets (from ``ctx.load``) or dicts ``{"filetype": ..., **params}``
  that the stack loads itself. All have the same signal shape and the same dtype in native
  byte order; the byte order may differ between members (each member's tiles are decoded
  from its own bytes).
* **Frames.** The stack's frames are the members' navigation positions, in order, each
  member's flattened. ``nav_shape`` reshapes them (it may use fewer), ``sync_offset`` shifts
  them as in any format. A member with positions that have no frame (its own negative
  ``sync_offset``, ``allow_partial``) is refused: the stack would have holes.
* **No copy.** Every partition of the stack lies within one member: it wraps a partition of
  that member (made by the member itself, with its own alignment, I/O backend, zero-copy
  support and stored byte order) and only renumbers frames. The stack's partition count
  (``num_partitions`` or udfkit's sizing) is shared out among the members by frame count,
  at least one partition each. Where members store less than dense frames (``raw_csr``),
  udfkit's sizing counts the bytes they store, as such a member sizes itself.
* **Sparse members.** A stack whose members all give CSR rows (``raw_csr``) gives them too:
  its partitions hand the member partition's rows to UDFs that ask for
  ``BACKEND_SCIPY_CSR`` (``csr_blocks``, ``get_sparse_tiles``), never densified. Members of
  mixed kinds give what all give: dense tiles.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Sequence
from math import prod
from typing import Any

import numpy as np

from ...common import Shape
from ...common.parse import ShapeLike
from ...common.udf import BACKEND_NUMPY
from ...errors import DataSetError
from ..base import DataSet, DataSetMeta, FrameSource, Partition
from ..partitioning import partition_bounds
from ..tiles import SourcePartition
from ..tiling import TilingConstraints
from ._common import check_frame_count, check_sync_offset, parse_dims
from .base import COMMON_PARAMS, Format, Param

__all__ = ["StackFormat", "StackDataSet", "StackPartition"]


class StackFormat(Format):
    """Several data sets concatenated along the navigation axis."""

    name = "stack"
    dataset = "udfkit.io.formats.stack:StackDataSet"
    array_param = "datasets"
    params = (
        Param("datasets", "object", None,
              'the members: loaded data sets or dicts {"filetype": ..., **params}'),
        COMMON_PARAMS["nav_shape"], COMMON_PARAMS["sync_offset"], COMMON_PARAMS["num_partitions"],
    )


class StackPartition(SourcePartition):
    """A partition of a :class:`StackDataSet`: a part of one member's partition.

    Parameters
    ----------
    member : SourcePartition
        The member's partition holding all frames of this one.
    shift : int
        Added to a stack frame number to get the member's file frame number.
    member_index : int
        Which member (for messages and ``udfkit info``).
    **kwargs
        See :class:`~udfkit.io.base.Partition`.
    """

    def __init__(self, *, member: SourcePartition, shift: int, member_index: int, **kwargs: Any):
        super().__init__(raw_dtype=member.raw_dtype, **kwargs)
        self.member = member
        self.shift = int(shift)
        self.member_index = int(member_index)

    @property
    def supports_zero_copy(self) -> bool:
        return self.member.supports_zero_copy

    def open_source(self, frames: np.ndarray, depth: int) -> FrameSource:
        return self.member.open_source(np.asarray(frames, dtype=np.int64) + self.shift, depth)

    # -- sparse members (raw_csr): their CSR rows, as the member's own partition gives them --

    @property
    def sparse_backend(self) -> str | None:
        """The member partition's sparse tile form (``None``: it has none, tiles are dense)."""
        return getattr(self.member, "sparse_backend", None)

    def _sparse_member(self):
        if self.sparse_backend is None:
            raise TypeError(f"stack partition {self.index}: member {self.member_index} "
                            f"({type(self.member).__name__}) has no sparse rows")
        return self.member

    def csr_blocks(self, depth: int, roi=None):
        """As :meth:`~udfkit.io.formats.raw_csr.CSRPartition.csr_blocks` of a ``raw_csr``
        member (positions local to this partition)."""
        return self._sparse_member().csr_blocks_at(self.selected_positions(roi), depth,
                                                   self.start + self.sync_offset + self.shift)

    def get_sparse_tiles(self, tiling_scheme, dest_dtype="float32", roi=None, max_entries=None):
        """As :meth:`~udfkit.io.formats.raw_csr.CSRPartition.get_sparse_tiles` of a
        ``raw_csr`` member: its CSR rows of this partition's frames, never densified."""
        return self._sparse_member().sparse_tiles_at(
            self.selected_positions(roi), self.start, self.start + self.sync_offset + self.shift,
            tiling_scheme, dest_dtype, max_entries)


class StackDataSet(DataSet):
    """Data sets of the same frame shape and dtype, read one after the other as one.

    Parameters
    ----------
    datasets : list
        Loaded data sets (``ctx.load(...)``) or dicts ``{"filetype": name, **load params}``.
    nav_shape : tuple of int, optional
        Navigation shape of the stack (default: one axis with all members' positions).
    sync_offset : int
        Position ``i`` of the stack holds the stack's frame ``i + sync_offset``.
    num_partitions : int, optional
        Shared out among the members by their frame counts (at least one each).

    Examples
    --------
    >>> import numpy as np
    >>> from udfkit import Context
    >>> ctx = Context.make_with("inline")
    >>> first = ctx.load("memory", data=np.zeros((4, 8, 8)))
    >>> ds = ctx.load("stack", datasets=[first, {"filetype": "memory", "data": np.ones((6, 8, 8))}],
    ...               nav_shape=(2, 5))
    >>> ds.shape, [(p.start, p.stop) for p in ds.get_partitions()]
    (Shape((2, 5, 8, 8), sig_dims=2), [(0, 4), (4, 10)])
    """

    format_name = "stack"

    def __init__(self, datasets: Sequence[Any] | None = None, nav_shape: ShapeLike | None = None,
                 sync_offset: int = 0, num_partitions: int | None = None):
        super().__init__(nav_shape=nav_shape, sync_offset=sync_offset,
                         num_partitions=num_partitions)
        self._datasets_arg = datasets
        self._executor = None
        self._members: list = []
        self._offsets: list = []

    def initialize(self, executor: Any = None) -> DataSet:
        self._executor = executor
        return super().initialize(executor)

    @property
    def members(self) -> list:
        """The member data sets (loaded)."""
        self._require_meta()
        return list(self._members)

    @property
    def description(self) -> str:
        return f"StackDataSet of {len(self._members)} data sets"

    def _load_member(self, i: int, entry):
        from . import make_dataset

        if isinstance(entry, DataSet):
            return entry if entry._meta is not None else entry.initialize(self._executor)
        if not isinstance(entry, dict) or "filetype" not in entry:
            raise DataSetError(f"stack data set: datasets[{i}]: expected a loaded data set or a dict "
                               f"with 'filetype' and its load parameters, got {type(entry).__name__}"
                               + (f" with keys {sorted(entry)}" if isinstance(entry, dict) else ""))
        params = dict(entry)
        filetype = params.pop("filetype")
        try:
            return make_dataset(filetype, params).initialize(self._executor)
        except DataSetError as e:
            # keep the type (file not found, ...), say which member it is
            raise type(e)(f"stack data set: datasets[{i}] ({filetype}): {e}") from e

    def _initialize(self) -> DataSetMeta:
        where = "stack data set"
        entries = self._datasets_arg
        if not isinstance(entries, (list, tuple)) or not entries:
            raise DataSetError(f"{where}: datasets: expected a non-empty list of data sets, got "
                               f"{entries!r:.80}")
        members = [self._load_member(i, e) for i, e in enumerate(entries)]
        first = members[0]
        sig = first.shape.sig.to_tuple()
        native = first.native_dtype
        for i, m in enumerate(members):
            name = f"{where}: datasets[{i}] ({m.description})"
            if m.shape.sig.to_tuple() != sig:
                raise DataSetError(f"{name} has frames of shape {m.shape.sig.to_tuple()}; expected "
                                   f"{sig} like datasets[0] ({first.description})")
            if m.native_dtype != native:
                raise DataSetError(f"{name} has dtype {m.dtype}; expected {first.dtype} like "
                                   f"datasets[0] ({first.description}) (byte order may differ)")
            if m.get_valid_mask() is not None:
                raise DataSetError(
                    f"{name} has navigation positions without a frame (sync_offset "
                    f"{m.sync_offset}, {m.image_count} frames for {m.shape.nav.size} positions); "
                    "a stack concatenates whole members: load it without them, and give the "
                    "stack its sync_offset instead")
        counts = [m.shape.nav.size for m in members]
        total = sum(counts)
        nav_shape = parse_dims(self._nav_shape_arg, "nav_shape", where) or (total,)
        check_frame_count(where, nav_shape, total, False, f"{len(members)} data sets",
                          f"sig_shape {sig}")
        sync_offset = check_sync_offset(where, self._sync_offset_arg, prod(nav_shape), total)
        self._members = members
        self._offsets = [0] + list(np.cumsum(counts[:-1]).tolist())
        file_bytes = sum(int(m.meta.metadata.get("file_bytes", 0) or 0) for m in members)
        paths = [m.meta.metadata.get("path") for m in members]
        return DataSetMeta(shape=Shape(tuple(nav_shape) + sig, sig_dims=len(sig)),
                           raw_dtype=first.dtype, image_count=total, sync_offset=sync_offset,
                           metadata={"file_bytes": file_bytes, "paths": paths,
                                     "member_frames": counts})

    def check_valid(self) -> bool:
        for m in self._members:
            m.check_valid()
        return True

    # -- tiles --------------------------------------------------------------------------------

    @property
    def supports_zero_copy(self) -> bool:
        return all(m.supports_zero_copy for m in self._members)

    @property
    def array_backends(self) -> tuple:
        """The tile forms every member hands out without converting, in the first member's
        order (a stack of ``raw_csr`` data sets gives CSR rows, like each of them)."""
        forms = [tuple(getattr(m, "array_backends", (BACKEND_NUMPY,))) for m in self._members]
        return tuple(b for b in forms[0] if all(b in f for f in forms[1:]))

    def get_tiling_constraints(self) -> TilingConstraints:
        """What all members allow: signal parts in multiples of every member's base shape,
        no deeper than the shallowest member allows."""
        cons = [m.get_tiling_constraints() for m in self._members]
        base = tuple(math.lcm(*axis) for axis in zip(*(c.base_shape for c in cons)))
        sig = self.shape.sig.to_tuple()
        base = tuple(min(b, s) for b, s in zip(base, sig))
        depths = [c.max_depth for c in cons if c.max_depth is not None]
        forced = next((c.tileshape for c in cons if c.tileshape is not None), None)
        return TilingConstraints(base_shape=base, tileshape=forced,
                                 max_depth=min(depths) if depths else None)

    # -- partitions ---------------------------------------------------------------------------

    def _plan(self) -> list:
        """``(start, stop, member index, member partition)`` of every partition."""
        meta = self._require_meta()
        nav_size = meta.shape.nav.size
        total = meta.image_count
        s = meta.sync_offset
        n = self._num_partitions_arg
        if n is None:
            frame_bytes = meta.shape.sig.size * meta.raw_dtype.itemsize
            n = len(partition_bounds(total, frame_bytes, None, self._num_workers,
                                     stored_bytes=self._stored_bytes()))
        plan = []
        for k, (m, off) in enumerate(zip(self._members, self._offsets)):
            count = m.shape.nav.size
            # a shallow copy, so that the user's data set keeps its own partition count
            sized = copy.copy(m)
            sized._num_partitions_arg = max(1, min(count, round(n * count / total)))
            for p in sized.get_partitions():
                a = min(max(off + p.start - s, 0), nav_size)
                b = min(max(off + p.stop - s, 0), nav_size)
                if b > a:
                    plan.append([a, b, k, p])
        # positions before the first frame and past the last belong to the end partitions
        plan[0][0] = 0
        plan[-1][1] = nav_size
        return [tuple(x) for x in plan]

    def _stored_bytes(self) -> int | None:
        """Bytes the members' frames read where some member stores less than dense frames
        (``raw_csr``: ``metadata["stored_bytes"]``), else ``None``: partitions are sized by
        them as such a member sizes its own."""
        members = self._members
        if not any("stored_bytes" in m.meta.metadata for m in members):
            return None
        frame_bytes = self.shape.sig.size * self.meta.raw_dtype.itemsize
        return sum(int(m.meta.metadata.get("stored_bytes", m.shape.nav.size * frame_bytes))
                   for m in members)

    def partition_reason(self) -> str:
        """Why :meth:`partition_bounds` gives its count, in words (shown by a run plan)."""
        from ..partitioning import partition_reason

        meta = self._require_meta()
        stored = self._stored_bytes()
        why = partition_reason(meta.image_count, meta.shape.sig.size * meta.raw_dtype.itemsize,
                               self._num_partitions_arg, self._num_workers, stored_bytes=stored,
                               stored_what="data stored by the members")
        count = len(self._plan())
        return (f"{why}; shared out among the {len(self._members)} members by their frames, at "
                f"least one each: {count}")

    def partition_bounds(self) -> list:
        return [(a, b) for a, b, _, _ in self._plan()]

    def get_partitions(self) -> list[Partition]:
        meta = self._require_meta()
        parts: list[Partition] = []
        for i, (start, stop, k, p) in enumerate(self._plan()):
            # stack frame f is the member's position f - offset, its file frame that plus
            # the member's own sync_offset
            shift = p.sync_offset - self._offsets[k]
            parts.append(StackPartition(member=p, shift=shift, member_index=k, shape=meta.shape,
                                        start=start, stop=stop, image_count=meta.image_count,
                                        sync_offset=meta.sync_offset, index=i))
        return parts

    def layout_info(self) -> dict:
        return {
            "members": [{"format": m.format_name, "data_set": m.description,
                         "frames": m.shape.nav.size, "dtype": m.dtype.str,
                         "layout": m.layout_info()} for m in self._members],
        }
