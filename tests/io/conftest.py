"""Fixtures of the I/O tests: an inline Context, raw files, reading a whole data set as tiles."""

import mmap
from types import SimpleNamespace

import numpy as np
import pytest

from udfkit import Context
from udfkit.io.tiling import TilingScheme


@pytest.fixture
def inline_ctx():
    ctx = Context.make_with("inline")
    yield ctx
    ctx.close()


@pytest.fixture
def write_raw(tmp_path):
    """``write_raw(array, name="data.raw", dtype=None) -> path``: the array's bytes as a file."""

    def write(arr, name="data.raw", dtype=None):
        arr = np.asarray(arr)
        if dtype is not None:
            arr = arr.astype(dtype)
        path = tmp_path / name
        arr.tofile(path)
        return str(path)

    return write


def owner(arr):
    """The object at the end of ``arr``'s ``.base`` chain (the mmap for views of a file)."""
    x = arr
    while isinstance(x, np.ndarray) and x.base is not None:
        x = x.base
    if isinstance(x, memoryview):
        x = x.obj
    return x


def is_file_view(arr):
    """True when ``arr`` is a view into a memory-mapped file."""
    return isinstance(owner(arr), mmap.mmap)


def read_all(ds, dest_dtype=None, scheme=None, roi=None, check_tile=None):
    """Read every tile of every partition of ``ds``.

    Returns ``(out, hits)``: ``out`` has shape ``(nav_size, *sig)`` in ``dest_dtype`` with the
    tile data at the positions given by ``frame_index`` (zeros elsewhere); ``hits`` counts how
    often each element was delivered.
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
            assert t.data.dtype == dest
            assert t.data.shape == (len(t.frame_index),) + sl.shape.to_tuple()
            assert np.all((t.frame_index >= p.start) & (t.frame_index < p.stop))
            if check_tile is not None:
                check_tile(p, t)
            idx = (np.asarray(t.frame_index),) + sl.get()
            out[idx] = t.data
            hits[idx] += 1
    return out, hits


def expected_frames(frames, nav_size, sync_offset=0, roi=None):
    """What ``read_all`` should give for a file/array holding ``frames`` (image_count, *sig).

    Returns ``(data, processed)``: position ``i`` holds file frame ``i + sync_offset``;
    ``processed`` is True where that frame exists (and the ROI selects it).
    """
    frames = np.asarray(frames)
    sig = frames.shape[1:]
    data = np.zeros((nav_size,) + sig, dtype=frames.dtype)
    processed = np.zeros(nav_size, dtype=bool)
    for i in range(nav_size):
        j = i + sync_offset
        if 0 <= j < frames.shape[0]:
            data[i] = frames[j]
            processed[i] = True
    if roi is not None:
        processed &= np.asarray(roi, dtype=bool).reshape(nav_size)
    return data, processed


@pytest.fixture(scope="session")
def io_helpers():
    """The helper functions above, for test modules (avoids importing conftest)."""
    return SimpleNamespace(owner=owner, is_file_view=is_file_view, read_all=read_all,
                           expected_frames=expected_frames)
