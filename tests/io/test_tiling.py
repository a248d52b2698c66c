"""Tests of the tiling negotiator and :class:`TilingScheme` (rules in udfkit/io/tiling.py)."""

import pickle
from math import prod

import numpy as np
import pytest

from udfkit.common import Shape, Slice
from udfkit.errors import TilingError
from udfkit.io.tiling import (
    ZERO_COPY_BUDGET,
    Negotiator,
    TilingConstraints,
    TilingRequest,
    TilingScheme,
    copy_budget,
)

R = TilingRequest
BIG = 10**6  # max_partition_frames that never limits


@pytest.fixture
def neg():
    # fixed budgets, so results do not depend on the cache size of the machine
    return Negotiator(copy_size="1M", zero_copy_size="16M")


def assert_covers_frame(scheme, sig_shape):
    """The scheme's signal slices cover the frame exactly once."""
    count = np.zeros(sig_shape, dtype=np.uint8)
    for sl in scheme:
        assert isinstance(sl, Slice)
        assert len(sl.origin) == len(sig_shape)
        count[sl.get()] += 1
    assert (count == 1).all()


def get(neg, requests, sig_shape, dtype="float32", mpf=BIG, **kw):
    scheme = neg.get_scheme(requests, sig_shape=sig_shape, dtype=dtype,
                            max_partition_frames=mpf, **kw)
    assert_covers_frame(scheme, sig_shape)
    assert scheme.sig_shape == tuple(sig_shape)
    return scheme


# -- rule 4/5: budget -------------------------------------------------------------------------

@pytest.mark.parametrize(
    "sig, dtype, zero_copy, shape, n_slices",
    [
        ((256, 256), "float32", False, (4, 256, 256), 1),  # 1 MiB / 256 KiB
        ((256, 256), "uint16", False, (8, 256, 256), 1),
        ((256, 256), "float64", False, (2, 256, 256), 1),
        ((256, 256), "complex128", False, (1, 256, 256), 1),
        ((256, 256), "float32", True, (64, 256, 256), 1),  # 16 MiB / 256 KiB
        ((256, 256), "uint16", True, (128, 256, 256), 1),
        ((128, 128), "float32", False, (16, 128, 128), 1),
        ((100, 100), "float32", False, (26, 100, 100), 1),  # 262144 // 10000
    ],
)
def test_tile_depth_from_budget(neg, sig, dtype, zero_copy, shape, n_slices):
    s = get(neg, [R("tile")], sig, dtype, zero_copy=zero_copy)
    assert s.shape == shape
    assert s.depth == shape[0]
    assert len(s) == n_slices
    assert s.intent == "tile"


@pytest.mark.parametrize(
    "sig, dtype, zero_copy, shape, n_slices",
    [
        ((4096, 4096), "float32", False, (1, 64, 4096), 64),  # 1 MiB / (4096 * 4 B) rows
        ((4096, 4096), "float64", False, (1, 32, 4096), 128),
        ((4096, 4096), "float32", True, (1, 1024, 4096), 4),  # 16 MiB budget
        ((4096, 4000), "float32", False, (1, 65, 4000), 64),  # 262144 // 4000 = 65, ragged
    ],
)
def test_large_frame_split_into_row_blocks(neg, sig, dtype, zero_copy, shape, n_slices):
    s = get(neg, [R("tile")], sig, dtype, zero_copy=zero_copy)
    assert s.shape == shape
    assert len(s) == n_slices
    # row blocks: every slice spans full rows
    assert all(sl.shape[1] == sig[1] and sl.origin[1] == 0 for sl in s)


def test_ragged_row_blocks_last_block(neg):
    s = get(neg, [R("tile")], (4096, 4000))
    assert s[-1].origin == (63 * 65, 0)
    assert s[-1].shape.to_tuple() == (4096 - 63 * 65, 4000)


# -- rule 1: partition ------------------------------------------------------------------------

@pytest.mark.parametrize("sig", [(256, 256), (4096, 4096), (1000,), (4, 32, 32)])
@pytest.mark.parametrize("mpf", [1, 37, 5000])
def test_partition_method(neg, sig, mpf):
    s = get(neg, [R("partition")], sig, mpf=mpf)
    assert s.shape == (mpf,) + sig
    assert len(s) == 1
    assert s.intent == "partition"


def test_partition_method_wins_over_everything(neg):
    c = TilingConstraints(base_shape=(1, 256), tileshape=(2, 16, 16))
    s = get(neg, [R("tile", depth=2, total_size=1024), R("frame"), R("partition")],
            (256, 256), mpf=50, constraints=c, zero_copy=True)
    assert s.shape == (50, 256, 256)
    assert s.intent == "partition"


# -- rule 2: frames ---------------------------------------------------------------------------

@pytest.mark.parametrize(
    "sig, dtype, zero_copy, shape",
    [
        ((4096, 4096), "float32", False, (1, 4096, 4096)),  # 64 MiB frame, never split
        ((4096, 4096), "float32", True, (1, 4096, 4096)),
        ((256, 256), "float32", False, (4, 256, 256)),
        ((256, 256), "float32", True, (64, 256, 256)),
        ((2048, 2048, 4), "float64", False, (1, 2048, 2048, 4)),
    ],
)
def test_frame_method_never_splits(neg, sig, dtype, zero_copy, shape):
    s = get(neg, [R("frame")], sig, dtype, zero_copy=zero_copy)
    assert s.shape == shape
    assert len(s) == 1
    assert s.intent == "frame"


def test_frame_with_depth_never_splits(neg):
    s = get(neg, [R("frame", depth=16)], (256, 256))
    assert s.shape == (16, 256, 256)
    assert len(s) == 1


def test_frame_and_tile_get_frame(neg):
    s = get(neg, [R("tile"), R("frame")], (4096, 4096))
    assert s.shape == (1, 4096, 4096)
    assert s.intent == "frame"


# -- rule 5/6: depth preference -------------------------------------------------------------

@pytest.mark.parametrize(
    "depths, mpf, shape, n_slices",
    [
        ([2], BIG, (2, 256, 256), 1),
        ([8, 3], BIG, (3, 256, 256), 1),  # smallest request
        ([3, None, 8], BIG, (3, 256, 256), 1),
        ([4], BIG, (4, 256, 256), 1),  # exactly the budget
        ([16], BIG, (16, 64, 256), 4),  # split for budget / depth = 16384 items = 64 rows
        ([1000], BIG, (1000, 1, 256), 256),  # at least one row
        ([16], 5, (5, 204, 256), 2),  # capped at partition size; 262144 // 5 // 256 = 204 rows
        ([1], BIG, (1, 256, 256), 1),
    ],
)
def test_depth_preference(neg, depths, mpf, shape, n_slices):
    s = get(neg, [R("tile", depth=d) for d in depths], (256, 256), mpf=mpf)
    assert s.shape == shape
    assert len(s) == n_slices


def test_depth_preference_large_frame(neg):
    s = get(neg, [R("tile", depth=4)], (4096, 4096))
    assert s.shape == (4, 16, 4096)  # 262144 / 4 / 4096
    assert len(s) == 256


def test_depth_preference_zero_copy(neg):
    s = get(neg, [R("tile", depth=2)], (256, 256), zero_copy=True)
    assert s.shape == (2, 256, 256)


# -- total_size preference --------------------------------------------------------------------

@pytest.mark.parametrize(
    "sizes, zero_copy, shape, n_slices",
    [
        ([256 << 10], False, (1, 256, 256), 1),
        ([64 << 10], False, (1, 64, 256), 4),
        ([4 << 20, 512 << 10], False, (2, 256, 256), 1),  # smallest wins
        ([512 << 10, None], False, (2, 256, 256), 1),
        ([4 << 20], False, (16, 256, 256), 1),  # replaces the (smaller) copy budget
        ([2 << 20], True, (8, 256, 256), 1),  # replaces the zero-copy budget
        ([1], False, (1, 1, 256), 256),  # at least one base unit (a row)
    ],
)
def test_total_size_preference(neg, sizes, zero_copy, shape, n_slices):
    s = get(neg, [R("tile", total_size=t) for t in sizes], (256, 256), zero_copy=zero_copy)
    assert s.shape == shape
    assert len(s) == n_slices


def test_total_size_and_depth(neg):
    # budget 512 KiB = 131072 items, depth 4 -> 32768 items per tile = 128 rows
    s = get(neg, [R("tile", depth=4), R("tile", total_size=512 << 10)], (256, 256))
    assert s.shape == (4, 128, 256)


# -- rule 3: forced tile shape ----------------------------------------------------------------

@pytest.mark.parametrize(
    "methods, tileshape, mpf, shape, n_slices",
    [
        (["tile"], (3, 32, 64), BIG, (3, 32, 64), 32),
        (["tile"], (3, 100, 100), BIG, (3, 100, 100), 9),  # ragged grid
        (["tile"], (100, 32, 64), 7, (7, 32, 64), 32),  # depth capped at partition size
        (["tile"], (3, 300, 300), BIG, (3, 256, 256), 1),  # clipped to the frame
        (["frame"], (3, 32, 64), BIG, (3, 256, 256), 1),  # widened to the full frame
        (["tile", "frame"], (2, 1, 1), BIG, (2, 256, 256), 1),
        (["frame"], (100, 32, 64), 7, (7, 256, 256), 1),
        (["partition"], (3, 32, 64), 11, (11, 256, 256), 1),
    ],
)
def test_forced_tileshape(neg, methods, tileshape, mpf, shape, n_slices):
    c = TilingConstraints(base_shape=(1, 256), tileshape=tileshape)
    s = get(neg, [R(m) for m in methods], (256, 256), mpf=mpf, constraints=c)
    assert s.shape == shape
    assert len(s) == n_slices


def test_forced_tileshape_used_as_given(neg):
    # "used as given": neither depth preferences nor budgets change it
    c = TilingConstraints(base_shape=(1, 256), tileshape=(3, 32, 64))
    s = get(neg, [R("tile", depth=1, total_size=16)], (256, 256), constraints=c,
            zero_copy=True)
    assert s.shape == (3, 32, 64)


def test_forced_tileshape_wrong_dims(neg):
    c = TilingConstraints(base_shape=(1, 256), tileshape=(3, 32))
    pattern = r"tileshape \(3, 32\) does not match sig_shape \(256, 256\)"
    with pytest.raises(TilingError, match=pattern):
        neg.get_scheme([R("tile")], sig_shape=(256, 256), dtype="float32",
                       max_partition_frames=BIG, constraints=c)


# -- rule 6: base shape -----------------------------------------------------------------------

@pytest.mark.parametrize(
    "base, shape",
    [
        ((1, 4096), (1, 64, 4096)),
        ((16, 4096), (1, 64, 4096)),
        ((48, 4096), (1, 48, 4096)),  # multiple of the base below the budget
        ((128, 4096), (1, 128, 4096)),  # at least one base unit
        ((1, 1), (1, 64, 4096)),
    ],
)
def test_base_shape(neg, base, shape):
    s = get(neg, [R("tile")], (4096, 4096), constraints=TilingConstraints(base_shape=base))
    assert s.shape == shape


def test_base_shape_splits_last_axis(neg):
    # a frame whose single row is bigger than the budget; base (1, 1) allows column blocks
    s = get(neg, [R("tile")], (4, 1 << 20), constraints=TilingConstraints(base_shape=(1, 1)))
    assert s.shape == (1, 1, 1 << 18)
    assert len(s) == 16
    # with whole rows as base unit, one row is the smallest tile
    s = get(neg, [R("tile")], (4, 1 << 20))
    assert s.shape == (1, 1, 1 << 20)


# -- rule 7: depth cap ------------------------------------------------------------------------

@pytest.mark.parametrize(
    "mpf, zero_copy, depth",
    [(3, False, 3), (4, False, 4), (5, False, 4), (1, True, 1), (10, True, 10), (0, False, 1)],
)
def test_depth_capped_at_partition(neg, mpf, zero_copy, depth):
    s = get(neg, [R("tile")], (256, 256), mpf=mpf, zero_copy=zero_copy)
    assert s.shape == (depth, 256, 256)


# -- 1D and 3D signals ------------------------------------------------------------------------

@pytest.mark.parametrize(
    "sig, constraints, shape, n_slices",
    [
        ((100000,), None, (2, 100000), 1),  # 400 kB frames
        ((1000,), None, (262, 1000), 1),
        ((1 << 20,), None, (1, 1 << 20), 1),  # default base: the whole (single) row
        ((1 << 20,), TilingConstraints(base_shape=(1,)), (1, 1 << 18), 4),
        ((1 << 20,), TilingConstraints(base_shape=(1000,)), (1, 262000), 5),
        ((64, 256, 256), None, (1, 4, 256, 256), 16),
        ((8, 16, 16), None, (128, 8, 16, 16), 1),
        ((4, 4096, 4096), None, (1, 1, 64, 4096), 256),
        ((3, 200, 300), None, (1, 3, 200, 300), 1),  # 180000 items: one frame fits
        ((3, 20, 300), None, (14, 3, 20, 300), 1),
    ],
)
def test_1d_and_3d_sig(neg, sig, constraints, shape, n_slices):
    s = get(neg, [R("tile")], sig, constraints=constraints)
    assert s.shape == shape
    assert len(s) == n_slices


def test_3d_sig_with_depth(neg):
    s = get(neg, [R("tile", depth=2)], (64, 256, 256))
    assert s.shape == (2, 2, 256, 256)
    assert len(s) == 32


def test_3d_sig_frame(neg):
    s = get(neg, [R("frame")], (64, 256, 256))
    assert s.shape == (1, 64, 256, 256)


# -- several UDFs share one scheme -----------------------------------------------------------

@pytest.mark.parametrize(
    "requests, shape, intent",
    [
        ([R("tile"), R("tile")], (4, 256, 256), "tile"),
        ([R("tile", depth=8), R("frame", total_size=512 << 10)], (8, 256, 256), "frame"),
        ([R("tile", depth=8), R("tile", total_size=512 << 10)], (8, 64, 256), "tile"),
        ([R("frame"), R("tile", depth=2)], (2, 256, 256), "frame"),
        ([R("tile"), R("partition", depth=2)], (9, 256, 256), "partition"),
    ],
)
def test_several_requests(neg, requests, shape, intent):
    s = get(neg, requests, (256, 256), mpf=9)
    assert s.shape == (min(shape[0], 9),) + shape[1:]
    assert s.intent == intent


# -- errors and defaults ----------------------------------------------------------------------

def test_no_requests(neg):
    with pytest.raises(TilingError, match="no UDFs"):
        neg.get_scheme([], sig_shape=(8, 8), dtype="float32", max_partition_frames=4)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(method="pixel"), "method: expected 'frame', 'tile', 'partition' or 'frame_stack', got 'pixel'"),
        (dict(method="tile", depth=0), "depth: expected a positive integer, got 0"),
        (dict(method="tile", depth=-3), "depth: expected a positive integer"),
        (dict(method="tile", total_size=0), "total_size: expected a positive byte count, got 0"),
    ],
)
def test_bad_requests(kwargs, match):
    with pytest.raises(TilingError, match=match):
        TilingRequest(**kwargs)


def test_tiling_error_is_value_error():
    assert issubclass(TilingError, ValueError)


def test_default_budgets():
    n = Negotiator()
    assert 512 << 10 <= n.copy_size <= 4 << 20
    assert n.copy_size == copy_budget()
    assert n.zero_copy_size == ZERO_COPY_BUDGET == 16 << 20


def test_budgets_accept_ints_and_strings():
    n = Negotiator(copy_size=123456, zero_copy_size="2MiB")
    assert n.copy_size == 123456
    assert n.zero_copy_size == 2 << 20


def test_negotiator_bad_budget():
    with pytest.raises(ValueError, match="byte size"):
        Negotiator(copy_size="lots")


def test_results_independent_of_machine():
    a = Negotiator(copy_size="1M", zero_copy_size="16M")
    b = Negotiator(copy_size=1 << 20, zero_copy_size=16 << 20)
    kw = dict(sig_shape=(4096, 4096), dtype="float32", max_partition_frames=100)
    assert a.get_scheme([R("tile")], **kw) == b.get_scheme([R("tile")], **kw)


# -- TilingScheme -----------------------------------------------------------------------------

def test_scheme_make_docstring_example():
    s = TilingScheme.make(sig_shape=(8, 8), tile_sig=(4, 8), depth=2, intent="tile")
    assert len(s) == 2
    assert s.shape == (2, 4, 8)
    assert [sl.origin for sl in s] == [(0, 0), (4, 0)]
    assert s[1] == Slice((4, 0), Shape((4, 8), sig_dims=2))
    assert s.depth == 2
    assert s.intent == "tile"
    assert s.sig_shape == (8, 8)


@pytest.mark.parametrize(
    "sig, tile, n",
    [((10, 10), (4, 4), 9), ((10, 10), (10, 10), 1), ((7,), (3,), 3), ((5, 6, 7), (2, 6, 3), 9)],
)
def test_scheme_make_grid(sig, tile, n):
    s = TilingScheme.make(sig, tile, 3, "tile")
    assert len(s) == n
    assert len(list(iter(s))) == n
    assert s.shape == (3,) + tile
    assert_covers_frame(s, sig)
    assert all(sl.shape.sig_dims == len(sig) for sl in s)
    assert sum(prod(sl.shape) for sl in s) == prod(sig)


def test_scheme_equality():
    a = TilingScheme.make((8, 8), (4, 8), 2, "tile")
    assert a == TilingScheme.make((8, 8), (4, 8), 2, "tile")
    assert a != TilingScheme.make((8, 8), (4, 8), 3, "tile")
    assert a != TilingScheme.make((8, 8), (4, 8), 2, "frame")
    assert a != TilingScheme.make((8, 8), (2, 8), 2, "tile")
    assert (a == "scheme") is False


def test_scheme_pickle():
    a = TilingScheme.make((10, 12), (4, 5), 7, "tile")
    b = pickle.loads(pickle.dumps(a))
    assert b == a
    assert b.sig_shape == (10, 12)
    assert b.shape == (7, 4, 5)
    assert list(b) == list(a)


def test_scheme_repr():
    a = TilingScheme.make((8, 8), (4, 8), 2, "tile")
    assert repr(a) == "TilingScheme(shape=(2, 4, 8), slices=2, intent='tile')"
