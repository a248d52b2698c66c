"""Where the frames of a file-based data set are: :class:`FileLayout` and :class:`FileSet`.

A format describes its files; the read planner (:mod:`udfkit.io.readplan`) and the I/O
backends do the rest. A file holds a header, then frames at a fixed stride; each frame may
carry its own header and footer (detector formats often stamp every frame)::

    | file header | fh | frame 0 | ff | fh | frame 1 | ff | ...

A data set may be split over several files, each holding the next range of frames
(:class:`FileSet`).

Where frames do not lie at a fixed stride (an HDF5 dataset stored in chunks of whole
frames: each chunk is somewhere in the file), a :class:`FileLayout` carries an explicit
table of per-frame byte offsets instead (``frame_offsets``). The table need not be
increasing: chunks may be stored in any order.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from math import prod
from typing import overload

import numpy as np

__all__ = ["FileLayout", "FileSet"]


@dataclass(frozen=True)
class FileLayout:
    """One file of C-order frames.

    Attributes
    ----------
    path : str
    header_bytes : int
        Bytes before the first frame (before its frame header).
    dtype : numpy.dtype
        Stored dtype, byte order included.
    sig_shape : tuple of int
    image_count : int
        Whole frames in the file.
    frame_header_bytes, frame_footer_bytes : int
        Bytes before / after every frame.
    frame_offsets : numpy.ndarray, optional
        int64 byte offset of the data of every frame (``image_count`` entries, any order);
        when given, it replaces ``header_bytes``, the stride and the frame headers. Not part
        of equality and hashing (it follows from the file).

    Examples
    --------
    >>> lay = FileLayout("f.h5", 0, np.dtype("uint8"), (4,), 3,
    ...                  frame_offsets=np.array([100, 300, 200]))
    >>> int(lay.frame_offset(1)), lay.frame_offset(np.array([2, 0])).tolist(), lay.end
    (300, [200, 100], 304)
    >>> lay.increasing
    False
    """

    path: str
    header_bytes: int
    dtype: np.dtype
    sig_shape: tuple
    image_count: int
    frame_header_bytes: int = 0
    frame_footer_bytes: int = 0
    frame_offsets: np.ndarray | None = field(default=None, compare=False, hash=False, repr=False)

    def __post_init__(self):
        if self.frame_offsets is not None:
            table = np.ascontiguousarray(self.frame_offsets, dtype=np.int64)
            if table.shape != (self.image_count,):
                raise ValueError(f"frame_offsets of {self.path!r}: expected {self.image_count} "
                                 f"entries, got shape {table.shape}")
            table.flags.writeable = False
            object.__setattr__(self, "frame_offsets", table)

    @property
    def frame_items(self) -> int:
        return prod(self.sig_shape)

    @property
    def frame_bytes(self) -> int:
        """Bytes of the data of one frame (without its header and footer)."""
        return self.frame_items * np.dtype(self.dtype).itemsize

    @property
    def stride(self) -> int:
        """Bytes from one frame to the next."""
        return self.frame_header_bytes + self.frame_bytes + self.frame_footer_bytes

    @overload
    def frame_offset(self, k: int) -> int: ...
    @overload
    def frame_offset(self, k: np.ndarray) -> np.ndarray: ...
    def frame_offset(self, k: int | np.ndarray) -> int | np.ndarray:
        """Byte offset of the data of frame ``k`` of this file (an int, or an array of them)."""
        if self.frame_offsets is not None:
            off = self.frame_offsets[k]
            return int(off) if np.ndim(off) == 0 else off
        return self.header_bytes + k * self.stride + self.frame_header_bytes

    @property
    def end(self) -> int:
        """Bytes the file needs to hold all its frames."""
        if self.frame_offsets is not None:
            return int(self.frame_offsets.max()) + self.frame_bytes if self.image_count else 0
        return self.header_bytes + self.image_count * self.stride

    @property
    def increasing(self) -> bool:
        """Whether the frames follow each other in the file without overlap (each one at least
        a frame after the previous one): views of a mapping and the back-to-back test of
        :func:`~udfkit.io.tiles.generate_tiles` rely on it."""
        if self.frame_offsets is None:
            return True
        return bool(np.all(np.diff(self.frame_offsets) >= self.frame_bytes))

    def __reduce__(self):
        # partitions carry their layout to every worker: a table travels as its runs of
        # back-to-back frames (a few per thousand frames for HDF5 chunks), not per frame
        fields = (self.path, self.header_bytes, self.dtype, self.sig_shape, self.image_count,
                  self.frame_header_bytes, self.frame_footer_bytes)
        if self.frame_offsets is None:
            return (FileLayout, fields)
        table = self.frame_offsets
        starts = np.concatenate([[0], np.flatnonzero(np.diff(table) != self.frame_bytes) + 1])
        return (_from_runs, (fields, starts, table[starts]))


def _from_runs(fields, starts, offsets):
    """A :class:`FileLayout` whose table is rebuilt from its runs (see ``__reduce__``)."""
    image_count = fields[4]
    frame_bytes = prod(fields[3]) * np.dtype(fields[2]).itemsize
    lengths = np.diff(np.append(starts, image_count))
    within = np.arange(image_count, dtype=np.int64) - np.repeat(starts, lengths)
    table = np.repeat(offsets, lengths) + within * frame_bytes
    return FileLayout(*fields, frame_offsets=table)


class FileSet:
    """Files that hold consecutive ranges of the frames of one data set.

    Parameters
    ----------
    files : sequence of FileLayout
        In frame order; all with the same dtype and ``sig_shape``.

    Examples
    --------
    >>> a = FileLayout("a.raw", 0, np.dtype("uint16"), (4, 4), 10)
    >>> b = FileLayout("b.raw", 0, np.dtype("uint16"), (4, 4), 5)
    >>> fs = FileSet([a, b])
    >>> fs.image_count, fs.file_of(12)
    (15, 1)
    """

    def __init__(self, files: Iterable[FileLayout]):
        files = tuple(files)
        if not files:
            raise ValueError("a FileSet needs at least one file")
        first = files[0]
        for f in files[1:]:
            if np.dtype(f.dtype) != np.dtype(first.dtype) or tuple(f.sig_shape) != tuple(first.sig_shape):
                raise ValueError(f"file {f.path!r} has dtype {f.dtype} and sig_shape {f.sig_shape}; "
                                 f"{first.path!r} has {first.dtype} and {first.sig_shape}")
        self.files = files
        self.dtype = np.dtype(first.dtype)
        self.sig_shape = tuple(first.sig_shape)
        counts = np.array([f.image_count for f in files], dtype=np.int64)
        #: global frame number of the first frame of each file, plus the total at the end
        self.starts = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
        # per-file arrays for the planner (numba wants plain arrays)
        self.header_bytes = np.array([f.header_bytes for f in files], dtype=np.int64)
        self.strides = np.array([f.stride for f in files], dtype=np.int64)
        self.frame_headers = np.array([f.frame_header_bytes for f in files], dtype=np.int64)
        # explicit offset tables, one after the other; table_starts[f] is -1 for a fixed stride
        tables = [f.frame_offsets for f in files if f.frame_offsets is not None]
        self.offset_table = (np.concatenate(tables) if tables else np.zeros(0, np.int64))
        table_starts, at = [], 0
        for f in files:
            table_starts.append(-1 if f.frame_offsets is None else at)
            at += 0 if f.frame_offsets is None else f.image_count
        self.table_starts = np.array(table_starts, dtype=np.int64)

    @property
    def image_count(self) -> int:
        return int(self.starts[-1])

    @property
    def frame_items(self) -> int:
        return prod(self.sig_shape)

    @property
    def frame_bytes(self) -> int:
        return self.frame_items * self.dtype.itemsize

    @property
    def paths(self) -> tuple:
        return tuple(f.path for f in self.files)

    def file_of(self, frame: int) -> int:
        """Index of the file holding global frame ``frame``."""
        return int(np.searchsorted(self.starts, frame, side="right") - 1)

    def __len__(self):
        return len(self.files)

    def __eq__(self, other):
        return isinstance(other, FileSet) and self.files == other.files

    def __hash__(self):
        return hash(self.files)

    def __reduce__(self):
        return (FileSet, (self.files,))

    def __repr__(self):
        return f"FileSet({len(self.files)} files, {self.image_count} frames of {self.sig_shape} {self.dtype})"
