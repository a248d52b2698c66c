"""Opening the files of a partition, with the checks every backend needs."""

from __future__ import annotations

import os

import numpy as np

from ...errors import FileChangedError, IOBackendError

__all__ = ["open_files", "needed_ends", "check_size", "read_exactly", "size_at_open",
           "truncated_message"]

# the size of each file when open_files opened it, by descriptor (an entry is overwritten when
# its number is reused), so that a truncation error can say how much the file lost
_SIZE_AT_OPEN: dict[int, int] = {}


def size_at_open(fd: int) -> int | None:
    """The size the file behind ``fd`` had when :func:`open_files` opened it (None: unknown)."""
    return _SIZE_AT_OPEN.get(fd)


def needed_ends(fileset, frames: np.ndarray) -> dict:
    """``{file index: (first frame, last frame, bytes the file must hold)}`` for ``frames``."""
    if frames.size == 0:
        return {}
    idx = np.searchsorted(fileset.starts, frames, side="right") - 1
    ends = {}
    for f in np.unique(idx):
        mine = frames[idx == f]
        last = int(mine.max())
        layout = fileset.files[f]
        if layout.frame_offsets is None:
            end = layout.frame_offset(last - int(fileset.starts[f])) + layout.frame_bytes
        else:  # frames in any order: the farthest one decides
            end = int(layout.frame_offset(mine - int(fileset.starts[f])).max()) + layout.frame_bytes
        ends[int(f)] = (int(mine.min()), last, end)
    return ends


def check_size(fd: int, path: str, need: int, frames: str = "the frames to read",
               when: str = "after it was loaded") -> int:
    """The size of the file behind ``fd``; raise when it holds fewer than ``need`` bytes."""
    size = os.fstat(fd).st_size
    if size < need:
        raise FileChangedError(f"file {path!r} has {size} bytes, but {frames} need bytes up "
                               f"to {need}; the file was truncated {when}")
    return size


def open_files(fileset, frames: np.ndarray, flags: int = 0) -> dict:
    """Open the files holding ``frames`` and check their sizes: ``{file index: fd}``."""
    fds = {}
    try:
        for f, (first, last, need) in needed_ends(fileset, frames).items():
            path = fileset.files[f].path
            try:
                fd = os.open(path, os.O_RDONLY | flags)
            except FileNotFoundError:
                raise FileChangedError(f"file {path!r} disappeared after it was loaded") from None
            except OSError as e:  # permissions changed, an I/O error, O_DIRECT refused (EINVAL)
                raise IOBackendError(e.errno, f"cannot open file {path!r} to read frames {first}.."
                                     f"{last} (bytes up to {need}): {e.strerror}", path) from e
            fds[f] = fd
            _SIZE_AT_OPEN[fd] = check_size(fd, path, need, f"frames {first}..{last}")
    except BaseException:
        for fd in fds.values():
            os.close(fd)
        raise
    return fds


def read_exactly(fd: int, view: memoryview, offset: int, need: int, path: str) -> None:
    """Read into ``view`` from ``offset`` until at least ``need`` bytes arrived.

    A read may return fewer bytes than asked (signals, network file systems, the end of
    the file for an aligned direct read); only running out before ``need`` is an error.
    """
    got = 0
    total = len(view)
    while got < need:
        try:
            n = os.preadv(fd, [view[got:total]], offset + got)
        except OSError as e:  # EIO of the device, a network file system gone stale, ...
            raise IOBackendError(e.errno, f"reading {total - got} bytes at offset {offset + got} of "
                                 f"file {path!r} failed (bytes {offset}..{offset + need} are "
                                 f"needed): {e.strerror}", path) from e
        if n == 0:
            raise FileChangedError(truncated_message(fd, path, offset + need))
        got += n


def truncated_message(fd: int, path: str, need: int) -> str:
    """What to tell the user when the file behind ``fd`` ended before byte ``need``."""
    now = os.fstat(fd).st_size
    old = size_at_open(fd)
    was = f"from {old} " if old is not None and old > now else ""
    return (f"file {path!r} shrank {was}to {now} bytes while it was being read, but the frames "
            f"to read need bytes up to {need}; do not truncate or rewrite a file while a run "
            "reads it")
