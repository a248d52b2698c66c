"""Atomic replacement of a small file: write a temporary file beside it, fsync, rename."""

from __future__ import annotations

import os
import tempfile

__all__ = ["atomic_write_bytes", "atomic_writer"]


def _fsync_dir(path: str) -> None:
    try:
        fd = os.open(os.path.dirname(os.path.abspath(path)) or ".", os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def atomic_writer(path: str, write) -> None:
    """Call ``write(fileobj)`` on a temporary file, then put it at ``path`` atomically.

    A failure (a full disk) removes the temporary file and leaves ``path`` as it was.
    """
    d = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix="." + os.path.basename(path) + ".", suffix=".tmp", dir=d)
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.remove(tmp)
        except OSError:
            pass
        raise
    _fsync_dir(path)


def atomic_write_bytes(path: str, data: bytes) -> None:
    atomic_writer(path, lambda f: f.write(data))
