"""Reading a whole data set as tiles, and what those tiles should hold.

The reference of every I/O test: :func:`read_all` asks each partition for its tiles exactly
as a run does, and :func:`expected_frames` is the numpy picture of the same data set
(``sync_offset`` and ROI applied).
"""

from __future__ import annotations

import mmap

import numpy as np

from ..io.tiling import TilingScheme

__all__ = ["read_all", "expected_frames", "owner", "is_file_view"]


def read_all(ds, dest_dtype=None, scheme=None, roi=None, check_tile=None):
    """Read every tile of every partition of ``ds``.

    Parameters
    ----------
    ds : DataSet
        An initialized data set (``ctx.load(...)``).
    dest_dtype : dtype, optional
        The dtype the tiles are asked for; default the data set's native dtype.
    scheme : TilingScheme, optional
        Default: whole frames, three at a time.
    roi : array of bool, optional
        Nav-shaped or flat; only selected frames are read.
    check_tile : callable, optional
        ``check_tile(partition, tile)`` is called for every tile.

    Returns
    -------
    out : ndarray
        Shape ``(nav_size, *sig)`` in ``dest_dtype``: the tile data at the positions of their
        ``frame_index``, zeros where no tile was delivered.
    hits : ndarray of int32
        Same shape: how often each element was delivered (1 where read, 0 elsewhere, if the
        data set is right).

    Examples
    --------
    >>> import numpy as np
    >>> from udfkit import Context
    >>> data = np.arange(24, dtype="uint16").reshape(6, 2, 2)
    >>> ds = Context.make_with("inline").load("memory", data=data, num_partitions=2)
    >>> out, hits = read_all(ds)
    >>> np.array_equal(out, data), bool((hits == 1).all())
    (True, True)
    """
    sig = ds.shape.sig.to_tuple()
    n = ds.shape.nav.size
    dest = np.dtype(ds.native_dtype if dest_dtype is None else dest_dtype)
    if scheme is None:
        scheme = TilingScheme.make(sig, sig, 3, "tile")
    flat_roi = None if roi is None else np.asarray(roi, dtype=bool).reshape(n)
    out = np.zeros((n,) + sig, dtype=dest)
    hits = np.zeros((n,) + sig, dtype=np.int32)
    for p in ds.get_partitions():
        proi = None if flat_roi is None else flat_roi[p.start:p.stop]
        for t in p.get_tiles(scheme, dest, proi):
            sl = scheme[t.scheme_idx]
            assert t.data.dtype == dest, (t.data.dtype, dest)
            assert t.data.shape == (len(t.frame_index),) + sl.shape.to_tuple()
            assert np.all((t.frame_index >= p.start) & (t.frame_index < p.stop))
            if check_tile is not None:
                check_tile(p, t)
            idx = (np.asarray(t.frame_index),) + sl.get()
            out[idx] = t.data
            hits[idx] += 1
    return out, hits


def expected_frames(frames, nav_size, sync_offset=0, roi=None):
    """What :func:`read_all` should give for a file or array holding ``frames``.

    Parameters
    ----------
    frames : array
        ``(image_count, *sig)``: the frames in the order they are stored.
    nav_size : int
        Number of positions of the data set's nav shape.
    sync_offset : int
        Position ``i`` holds stored frame ``i + sync_offset``.
    roi : array of bool, optional
        Nav-shaped or flat.

    Returns
    -------
    data : ndarray
        ``(nav_size, *sig)``, zeros where a position has no frame.
    processed : ndarray of bool
        ``(nav_size,)``: the position has a frame and the ROI selects it.

    Examples
    --------
    >>> import numpy as np
    >>> data, processed = expected_frames(np.arange(4).reshape(4, 1), 4, sync_offset=-1)
    >>> data.ravel().tolist(), processed.tolist()
    ([0, 0, 1, 2], [False, True, True, True])
    """
    frames = np.asarray(frames)
    sig = frames.shape[1:]
    src = np.arange(nav_size) + sync_offset
    processed = (src >= 0) & (src < frames.shape[0])
    data = np.zeros((nav_size,) + sig, dtype=frames.dtype)
    data[processed] = frames[src[processed]]
    if roi is not None:
        processed &= np.asarray(roi, dtype=bool).reshape(nav_size)
    return data, processed


def owner(arr):
    """The object at the end of ``arr``'s ``.base`` chain: the mapping (or buffer) that a
    view of a file or of a read buffer lives in.

    Examples
    --------
    >>> import numpy as np
    >>> a = np.zeros(4)
    >>> owner(a[1:]) is a
    True
    """
    x = arr
    while isinstance(x, np.ndarray) and x.base is not None:
        x = x.base
    if isinstance(x, memoryview):
        x = x.obj
    return x


def is_file_view(arr) -> bool:
    """True when ``arr`` is a view into a memory-mapped file (a zero-copy tile).

    Examples
    --------
    >>> import numpy as np
    >>> is_file_view(np.zeros(3))
    False
    """
    return isinstance(owner(arr), mmap.mmap)
