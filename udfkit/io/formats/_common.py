"""Checks shared by the formats: existence of paths, frame counts, sync offsets."""

from __future__ import annotations

import numbers
import os
from math import prod

from ...common import normalize_shape
from ...errors import DataSetError, DataSetFileNotFoundError

MAX_DIMS = 3


def check_path(path, what: str) -> str:
    """Return ``path`` as str; raise if it is missing or not a regular file."""
    if path is None:
        raise DataSetError(f"{what}: a path is required")
    path = os.fspath(path)
    if not os.path.exists(path):
        raise DataSetFileNotFoundError(f"{what} {path!r} does not exist")
    if not os.path.isfile(path):
        raise DataSetError(f"{what} {path!r} is not a regular file")
    if not os.access(path, os.R_OK):
        # refused here rather than as a bare PermissionError on a worker during the run
        raise DataSetError(f"{what} {path!r} cannot be read: permission denied for this user "
                           f"(mode {os.stat(path).st_mode & 0o777:o}); check its permissions")
    return path


def parse_dims(value, name: str, where: str, required: bool = False):
    """nav_shape / sig_shape with 1–3 positive dimensions (or None when not required)."""
    if value is None:
        if required:
            raise DataSetError(f"{where}: {name} is required")
        return None
    return normalize_shape(value, name, min_dims=1, max_dims=MAX_DIMS, error=DataSetError,
                           where=where)


def suggest_nav_shape(nav_shape, frames: int, exact: bool = False) -> tuple:
    """A nav shape that fits into ``frames`` frames (uses all of them with ``exact``),
    keeping the fast axes if possible.

    >>> suggest_nav_shape((128, 128), 1000)
    (7, 128)
    >>> suggest_nav_shape((128, 128), 100)
    (100,)
    >>> suggest_nav_shape((16, 16), 64, exact=True)
    (4, 16)
    >>> suggest_nav_shape((16, 16), 50, exact=True)
    (50,)
    """
    inner = prod(nav_shape[1:])
    if len(nav_shape) > 1 and frames >= inner and (not exact or frames % inner == 0):
        return (frames // inner,) + tuple(nav_shape[1:])
    return (frames,)


def check_some_frames(where: str, image_count: int, have: str, need_per_frame: str) -> None:
    """Error when not even one frame is there."""
    if image_count == 0:
        raise DataSetError(f"{where} holds no complete frame ({have}); a frame needs {need_per_frame}")


def check_frame_count(where: str, nav_shape, image_count: int, allow_partial: bool,
                      have: str, need_per_frame: str) -> None:
    """Error when the file holds fewer frames than nav_shape needs (unless allow_partial)."""
    nav_size = prod(nav_shape)
    check_some_frames(where, image_count, have, need_per_frame)
    if image_count < nav_size and not allow_partial:
        raise DataSetError(
            f"{where} holds {image_count} frames ({have}), but nav_shape {tuple(nav_shape)} needs "
            f"{nav_size} frames of {need_per_frame}; try nav_shape="
            f"{suggest_nav_shape(nav_shape, image_count)}, or pass allow_partial=True if the "
            f"acquisition was aborted (missing frames are then reported in valid_mask)")


def check_sync_offset(where: str, sync_offset, nav_size: int, image_count: int) -> int:
    """``sync_offset`` must leave at least one frame: ``-nav_size < s < image_count``."""
    integral_float = isinstance(sync_offset, float) and sync_offset.is_integer()
    if isinstance(sync_offset, bool) or not (isinstance(sync_offset, numbers.Integral)
                                             or integral_float):
        raise DataSetError(f"{where}: sync_offset: expected an integer, got {sync_offset!r}")
    sync_offset = int(sync_offset)
    if not -nav_size < sync_offset < image_count:
        raise DataSetError(
            f"{where}: sync_offset {sync_offset} is out of range: with {nav_size} nav positions "
            f"and {image_count} frames in the file it must be > {-nav_size} and < {image_count}")
    return sync_offset


def resolve_shapes(where: str, native_shape, sig_dims, nav_shape, sig_shape, total_items: int,
                   allow_partial: bool = False):
    """Apply nav_shape / sig_shape overrides to an array-like source of ``total_items`` elements.

    Returns ``(nav_shape, sig_shape, image_count)``. An override is a reshape: the signal
    shape decides the frame size and the element count must be a whole number of frames.
    ``nav_shape`` may use fewer frames than the data hold (frames past it are ignored, like
    in a raw file; with a positive ``sync_offset`` they fill the end), but not more, unless
    ``allow_partial``. Without a ``nav_shape`` the longest run of leading axes that holds
    all frames is kept.
    """
    native_shape = tuple(native_shape)
    if 0 in native_shape:
        raise DataSetError(f"{where}: shape {native_shape} has an axis of length 0; there is no "
                           "frame to process")
    if sig_shape is None:
        if sig_dims is None:
            sig_dims = 2 if len(native_shape) >= 3 else 1
        if isinstance(sig_dims, bool) or not isinstance(sig_dims, numbers.Integral) \
                or not 1 <= int(sig_dims) <= MAX_DIMS:
            raise DataSetError(f"{where}: sig_dims: expected an integer from 1 to {MAX_DIMS}, "
                               f"got {sig_dims!r}")
        sig_dims = int(sig_dims)
        if len(native_shape) <= sig_dims:
            raise DataSetError(f"{where}: shape {native_shape} has no navigation axis with "
                               f"sig_dims={sig_dims}; pass sig_shape or nav_shape explicitly")
        sig_shape = native_shape[len(native_shape) - sig_dims:]
    frame_items = prod(sig_shape)
    if total_items % frame_items:
        raise DataSetError(f"{where}: its {total_items} elements {native_shape} are not a whole "
                           f"number of frames of sig_shape {tuple(sig_shape)} ({frame_items} elements)")
    image_count = total_items // frame_items
    if nav_shape is None:
        nav_shape = (image_count,)
        n_sig = len(sig_shape)
        if len(native_shape) > n_sig and native_shape[len(native_shape) - n_sig:] == tuple(sig_shape):
            nav_shape = native_shape[:len(native_shape) - n_sig]
        else:
            # the leading axes that hold exactly the frames (the sig part takes at least one axis)
            for k in range(len(native_shape) - 1, 0, -1):
                if prod(native_shape[:k]) == image_count:
                    nav_shape = native_shape[:k]
                    break
        if len(nav_shape) > MAX_DIMS:
            raise DataSetError(f"{where}: shape {native_shape} leaves {len(nav_shape)} navigation "
                               f"axes {nav_shape}; at most {MAX_DIMS} are supported, pass nav_shape "
                               f"(e.g. nav_shape={(image_count,)})")
    nav_size = prod(nav_shape)
    if nav_size > image_count and not allow_partial:
        raise DataSetError(
            f"{where}: nav_shape {tuple(nav_shape)} × sig_shape {tuple(sig_shape)} needs "
            f"{nav_size * frame_items} elements, but the data hold {total_items} (shape "
            f"{native_shape}); try nav_shape={suggest_nav_shape(nav_shape, image_count, exact=True)}, "
            "or pass allow_partial=True to report the missing frames in valid_mask")
    return tuple(nav_shape), tuple(sig_shape), image_count


#: the I/O backends open every file of a partition at once, so stacks of many small files
#: (one frame per file) are cut into partitions of at most this many files by default;
#: a common limit of open files per process is 1024
FILES_PER_PARTITION = 256


def bound_files_per_partition(ds, bounds: list) -> list:
    """``bounds`` of a file-based data set, cut finer when its partitions would span more than
    :data:`FILES_PER_PARTITION` files and the user did not ask for a partition count."""
    fileset = ds._fileset
    if ds._num_partitions_arg is not None or fileset is None or len(fileset) <= FILES_PER_PARTITION:
        return bounds
    need = -(-len(fileset) // FILES_PER_PARTITION)
    if len(bounds) >= need:
        return bounds
    from ..partitioning import partition_bounds

    meta = ds._require_meta()
    return partition_bounds(nav_size=meta.shape.nav.size,
                            frame_bytes=meta.shape.sig.size * meta.raw_dtype.itemsize,
                            num_partitions=need, align=ds.frame_alignment,
                            align_offset=meta.sync_offset)
