"""Fixtures of the I/O tests: an inline Context, raw files, reading a whole data set as tiles
(the reading helpers live in :mod:`udfkit.testing.tiles`, shared with the format suite)."""

import mmap
from types import SimpleNamespace

import numpy as np
import pytest

from udfkit import Context
from udfkit.testing.tiles import expected_frames, read_all


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


@pytest.fixture(scope="session")
def io_helpers():
    """The helper functions (above and from :mod:`udfkit.testing.tiles`), for test modules
    (avoids importing conftest)."""
    return SimpleNamespace(owner=owner, is_file_view=is_file_view, read_all=read_all,
                           expected_frames=expected_frames)
