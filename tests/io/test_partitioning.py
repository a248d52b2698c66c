"""Tests of :func:`udfkit.io.partitioning.partition_bounds` (rules in its module docstring)."""

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from udfkit.errors import DataSetError
from udfkit.io.partitioning import MIN_PARTITION_BYTES, TARGET_PARTITION_BYTES, partition_bounds
from udfkit.testing.profiles import examples

MiB = 1 << 20
GiB = 1 << 30


def check_bounds(bounds, nav_size):
    assert bounds[0][0] == 0
    assert bounds[-1][1] == nav_size
    assert all(a[1] == b[0] for a, b in zip(bounds, bounds[1:]))
    sizes = [b - a for a, b in bounds]
    assert min(sizes) >= 1
    assert max(sizes) - min(sizes) <= 1


def test_constants():
    assert TARGET_PARTITION_BYTES == 256 * MiB
    assert MIN_PARTITION_BYTES == 8 * MiB


def test_docstring_examples():
    assert partition_bounds(10, 1, num_partitions=3) == [(0, 3), (3, 6), (6, 10)]
    assert len(partition_bounds(128 * 128, 256 * 256 * 2, num_workers=2)) == 8
    assert partition_bounds(64, 4096) == [(0, 64)]


@pytest.mark.parametrize(
    "nav_size, num_partitions, expected",
    [
        (10, 1, [(0, 10)]),
        (10, 2, [(0, 5), (5, 10)]),
        (10, 4, [(0, 2), (2, 5), (5, 7), (7, 10)]),
        (7, 7, [(i, i + 1) for i in range(7)]),
        (5, 10, [(i, i + 1) for i in range(5)]),  # capped at one frame per partition
        (1, 3, [(0, 1)]),
        (3, 1000, [(0, 1), (1, 2), (2, 3)]),
    ],
)
def test_num_partitions_wins(nav_size, num_partitions, expected):
    # frame size and workers do not matter when the user says how many
    for frame_bytes, workers in [(1, 1), (64 * MiB, 16)]:
        bounds = partition_bounds(nav_size, frame_bytes, num_partitions=num_partitions,
                                  num_workers=workers)
        assert bounds == expected
        check_bounds(bounds, nav_size)


@pytest.mark.parametrize("num_partitions", [0, -1, -100])
def test_invalid_num_partitions(num_partitions):
    pattern = rf"num_partitions: expected a positive integer, got {num_partitions}"
    with pytest.raises(ValueError, match=pattern):
        partition_bounds(10, 100, num_partitions=num_partitions)


@pytest.mark.parametrize(
    "nav_size, frame_bytes, workers, expected",
    [
        (64, 4096, 1, 1),  # 256 KiB: a single partition
        (64, 4096, 16, 1),  # tiny data sets are not forced apart for workers
        (100, 100 * 1024, 8, 1),  # 9.8 MiB: one MIN_PARTITION_BYTES partition at most
        (160, 128 * 1024, 4, 2),  # 20 MiB: two 8 MiB partitions fit, not eight
        (800, 128 * 1024, 4, 8),  # 100 MiB: two per worker
        (800, 128 * 1024, 1, 2),
        (128 * 128, 128 * 1024, 1, 8),  # 2 GiB: 256 MiB each
        (128 * 128, 128 * 1024, 2, 8),
        (128 * 128, 128 * 1024, 8, 16),  # two per worker beats the size target
        (128 * 128, 128 * 1024, 100, 200),
        (128 * 128, 128 * 1024, 1000, 256),  # but not below MIN_PARTITION_BYTES
        (10 * 1024, 1 * MiB, 1, 40),  # 10 GiB
        (3, GiB, 1, 3),  # capped at the nav size
        (1, 4 * GiB, 4, 1),
        (800, 128 * 1024, 0, 2),  # num_workers < 1 counts as one worker
    ],
)
def test_automatic_partition_count(nav_size, frame_bytes, workers, expected):
    bounds = partition_bounds(nav_size, frame_bytes, num_workers=workers)
    assert len(bounds) == expected
    check_bounds(bounds, nav_size)


@settings(max_examples=examples(300), deadline=None)
@given(nav_size=st.integers(1, 10**6), frame_bytes=st.integers(1, 64 * MiB),
       num_partitions=st.none() | st.integers(1, 2000), workers=st.integers(1, 64))
def test_partition_bounds_properties(nav_size, frame_bytes, num_partitions, workers):
    bounds = partition_bounds(nav_size, frame_bytes, num_partitions=num_partitions,
                              num_workers=workers)
    check_bounds(bounds, nav_size)
    n = len(bounds)
    assert 1 <= n <= nav_size
    if num_partitions is not None:
        assert n == min(num_partitions, nav_size)
        return
    total = nav_size * frame_bytes
    biggest = max(b - a for a, b in bounds) * frame_bytes
    smallest = min(b - a for a, b in bounds) * frame_bytes
    if n < nav_size:
        # at most the target size per partition (up to the rounding to whole frames)
        assert biggest <= TARGET_PARTITION_BYTES + frame_bytes
    if n > 1:
        # never smaller than the minimum size (up to one frame)
        assert smallest >= MIN_PARTITION_BYTES - frame_bytes
    if total < 2 * MIN_PARTITION_BYTES:
        assert n == 1
    if total >= 2 * workers * MIN_PARTITION_BYTES and nav_size >= 2 * workers:
        assert n >= 2 * workers  # at least two partitions per worker
    expected = min(max(math.ceil(total / TARGET_PARTITION_BYTES), 2 * workers),
                   max(1, total // MIN_PARTITION_BYTES), nav_size)
    assert n == expected


# -- through a data set -------------------------------------------------------------------------

@pytest.mark.parametrize("num_partitions, expected",
                         [(None, 1), (1, 1), (4, 4), (12, 12), (50, 12)])
def test_dataset_partitions(inline_ctx, num_partitions, expected):
    ds = inline_ctx.load("memory", data=np.zeros((3, 4, 8, 8)), num_partitions=num_partitions)
    assert ds.get_num_partitions() == expected
    bounds = ds.partition_bounds()
    assert bounds == partition_bounds(12, 8 * 8 * 8, num_partitions=num_partitions)
    assert [(p.start, p.stop) for p in ds.get_partitions()] == bounds


@pytest.mark.parametrize("num_partitions", [0, -2])
def test_invalid_num_partitions_at_load(inline_ctx, write_raw, num_partitions):
    path = write_raw(np.zeros((4, 2, 2), "uint8"), name="parts.raw")
    with pytest.raises(DataSetError, match=r"parts\.raw.*num_partitions"):
        inline_ctx.load("raw", path=path, dtype="uint8", nav_shape=(4,), sig_shape=(2, 2),
                        num_partitions=num_partitions)


@pytest.mark.parametrize("num_partitions", [0, -2])
def test_invalid_num_partitions_fails_before_reading(inline_ctx, num_partitions):
    """Whenever it is detected, the error is a ValueError naming the parameter."""
    with pytest.raises(ValueError, match="num_partitions"):
        ds = inline_ctx.load("memory", data=np.zeros((4, 2, 2)), num_partitions=num_partitions)
        ds.get_partitions()
