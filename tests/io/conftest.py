"""Fixtures of the I/O tests: an inline Context, raw files, and the tile helpers of
:mod:`udfkit.testing.tiles` as a fixture (test modules may import them from there too)."""

from types import SimpleNamespace

import numpy as np
import pytest

from udfkit import Context
from udfkit.testing.tiles import expected_frames, is_file_view, owner, read_all


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


@pytest.fixture(scope="session")
def io_helpers():
    """The helper functions of :mod:`udfkit.testing.tiles`, for the test modules that take
    them as a fixture."""
    return SimpleNamespace(owner=owner, is_file_view=is_file_view, read_all=read_all,
                           expected_frames=expected_frames)
