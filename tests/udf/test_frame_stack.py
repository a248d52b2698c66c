"""``process_frame_stack``: stacks of whole frames, ``(k, *sig)``.

Frame-stack results equal frame-wise ones and numpy for every format, dtype, partitioning,
forced tile shape, ROI, ``sync_offset`` and executor; ``k`` follows the UDF's tiling
preference and the cache budget; the method precedence is the documented one.
"""

from __future__ import annotations

import tempfile

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from udfkit import UDF, Context
from udfkit.io.corrections import CorrectionSet
from udfkit.io.tiling import Negotiator, TilingRequest
from udfkit.testing import SharedContexts
from udfkit.testing.profiles import examples
from udfkit.testing.strategies import REAL_DTYPES, cases, load

# worker processes and a dask cluster run frame stacks in tests/udf/test_halo.py (next to the
# halo cases, so that their start is paid once)
EXECUTORS = {"inline-debug": ("inline", {"debug": True}), "threads": ("threads", {"cpus": 2})}
shared_context = SharedContexts(EXECUTORS)
_close_shared_contexts = shared_context.closing_fixture()


class StackUDF(UDF):
    """Per-frame sums and the sum over all frames, from stacks; records what it saw."""

    def __init__(self, depth=None):
        super().__init__(depth=depth)

    def get_preferred_input_dtype(self):
        return np.float64

    def get_tiling_preferences(self):
        return {} if self.params.depth is None else {"depth": self.params.depth}

    def get_result_buffers(self):
        return {"s": self.buffer(kind="nav", dtype="float64"),
                "k": self.buffer(kind="nav", dtype="int64"),
                "pos": self.buffer(kind="nav", dtype="int64"),
                "origin": self.buffer(kind="nav", dtype="int64"),
                "total": self.buffer(kind="sig", dtype="float64")}

    def process_frame_stack(self, stack):
        meta = self.meta
        sig = meta.dataset_shape.sig.to_tuple()
        assert stack.shape[1:] == sig  # whole frames, never split
        assert meta.sig_slice.shape.to_tuple() == sig
        assert meta.slice.shape[0] == stack.shape[0] == len(meta.frame_index)
        assert meta.coordinates.shape == (stack.shape[0], len(meta.dataset_shape.nav))
        self.results.s[:] = stack.reshape(stack.shape[0], -1).sum(axis=1)
        self.results.k[:] = stack.shape[0]
        self.results.pos[:] = meta.frame_index
        self.results.origin[:] = meta.slice.origin[0] + np.arange(stack.shape[0])
        self.results.total[:] += stack.sum(axis=0)

    def merge(self, dest, src):
        for name in ("s", "k", "pos", "origin"):
            dest[name][:] = src[name]
        dest.total[:] += src.total


class FrameUDF(UDF):
    """The same per-frame sums, frame by frame."""

    def get_preferred_input_dtype(self):
        return np.float64

    def get_result_buffers(self):
        return {"s": self.buffer(kind="nav", dtype="float64")}

    def process_frame(self, frame):
        self.results.s[:] = frame.sum()


def check_case(ctx, case, depth, corrections=None):
    with tempfile.TemporaryDirectory() as tmpdir:
        ds = load(ctx, case, tmpdir)
        stack, frame = ctx.run_udf(dataset=ds, udf=[StackUDF(depth=depth), FrameUDF()],
                                   roi=case.roi, corrections=corrections)
        frames = case.frames
        if corrections is not None:
            frames = frames - corrections.dark.astype(np.float32)
        flat = frames.reshape(case.n, int(np.prod(case.sig_shape)))
        rtol = 1e-12 if corrections is None else 1e-6  # the dark is applied in float32
        np.testing.assert_allclose(stack["s"].raw_data, flat.sum(axis=1), rtol=rtol)
        np.testing.assert_array_equal(stack["s"].raw_data, frame["s"].raw_data)
        np.testing.assert_allclose(stack["total"].data, frames.sum(axis=0), rtol=rtol)
        np.testing.assert_array_equal(stack["pos"].raw_data, np.flatnonzero(case.processed))
        np.testing.assert_array_equal(stack["origin"].raw_data, np.arange(case.n))
        if depth is not None and case.n:
            assert stack["k"].raw_data.max() <= depth


@settings(max_examples=examples(30), deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(case=cases(dtypes=REAL_DTYPES), depth=st.one_of(st.none(), st.integers(1, 9)))
def test_frame_stacks_equal_frames_and_numpy(case, depth):
    check_case(shared_context("inline-debug"), case, depth)


@settings(max_examples=examples(4), deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(case=cases(dtypes=REAL_DTYPES), depth=st.one_of(st.none(), st.integers(1, 9)))
def test_frame_stacks_on_threads(case, depth):
    check_case(shared_context("threads"), case, depth)


def test_frame_stacks_with_corrections():
    from udfkit.testing.strategies import BCase

    case = BCase(nav_shape=(4, 5), sig_shape=(6, 3), dtype="uint16", image_count=20,
                 num_partitions=3, seed=2)
    dark = np.random.default_rng(0).random((6, 3))
    check_case(shared_context("inline-debug"), case, 3, CorrectionSet(dark=dark))


# -- k: preference and cache budget -------------------------------------------------------------

@pytest.mark.parametrize("prefs, depth", [
    ({}, 4),                             # a quarter of the 4 MiB budget / 256 KiB frames
    ({"depth": 10}, 10),
    ({"total_size": 512 << 10}, 2),
    ({"depth": 500}, 100),               # capped by the largest partition
])
def test_negotiator_keeps_whole_frames(prefs, depth):
    scheme, why = Negotiator(copy_size="4MiB").negotiate(
        [TilingRequest("frame_stack", **prefs)], sig_shape=(256, 256), dtype="float32",
        max_partition_frames=100)
    assert scheme.shape == (depth, 256, 256) and len(scheme) == 1
    assert scheme.intent == "frame_stack"


def test_negotiator_whole_frames_next_to_tile_udfs():
    # a tile UDF that would split frames gets whole frames next to a frame-stack UDF
    scheme, why = Negotiator(copy_size="64KiB").negotiate(
        [TilingRequest("tile"), TilingRequest("frame_stack")], sig_shape=(256, 256),
        dtype="float32", max_partition_frames=100)
    assert scheme.shape == (1, 256, 256)
    assert "stacks of whole frames (rule 2)" in why


# -- several UDFs, each with what it asked for ---------------------------------------------------

class Seen(UDF):
    """Records the leading size of every call (the method given by ``method``)."""

    def __init__(self, method, depth=None):
        super().__init__(method=method, depth=depth)

    def get_method(self):
        return self.params.method

    def get_tiling_preferences(self):
        return {} if self.params.depth is None else {"depth": self.params.depth}

    def get_result_buffers(self):
        return {"n": self.buffer(kind="nav", dtype="int64"),
                "s": self.buffer(kind="nav", dtype="float64")}

    def _record(self, data):
        self.results.n[:] = data.shape[0]
        self.results.s[:] = data.reshape(data.shape[0], -1).sum(axis=1)

    def process_frame_stack(self, stack):
        self._record(stack)

    def process_tile(self, tile):
        assert tile.shape[1:] == self.meta.dataset_shape.sig.to_tuple()
        self._record(tile)

    def process_partition(self, partition):
        self._record(partition)

    def process_frame(self, frame):
        self.results.n[:] = 1
        self.results.s[:] = frame.sum()


def test_each_udf_gets_its_own_stacks():
    data = np.random.default_rng(0).random((5, 6, 4, 4))
    ctx = shared_context("inline-debug")
    ds = ctx.load("memory", data=data, num_partitions=2)
    udfs = [Seen("frame_stack", 3), Seen("frame_stack", 7), Seen("frame"), Seen("tile"),
            Seen("partition")]
    res = ctx.run_udf(dataset=ds, udf=udfs)
    expected = data.reshape(30, -1).sum(axis=1)
    for r in res:
        np.testing.assert_allclose(r["s"].raw_data, expected)
    assert res[0]["n"].raw_data.max() == 3
    assert res[1]["n"].raw_data.max() == 7
    assert res[2]["n"].raw_data.max() == 1
    assert res[4]["n"].raw_data.max() == 15  # a partition


# -- method precedence ---------------------------------------------------------------------------

class StackAndFrame(UDF):
    def get_result_buffers(self):
        return {"which": self.buffer(kind="nav", dtype="int64")}

    def process_frame(self, frame):
        self.results.which[:] = 1

    def process_frame_stack(self, stack):
        self.results.which[:] = 2


class TileAndStack(StackAndFrame):
    def process_tile(self, tile):
        self.results.which[:] = 3


class StackAndPartition(UDF):
    def get_result_buffers(self):
        return {"which": self.buffer(kind="nav", dtype="int64")}

    def process_partition(self, partition):
        self.results.which[:] = 4

    def process_frame_stack(self, stack):
        self.results.which[:] = 2


class FrameForced(StackAndFrame):
    def get_method(self):
        return self.UDF_METHOD.FRAME


class HaloTileAndStack(TileAndStack):
    def get_halo(self):
        return {"radius": (0, 0), "mode": "nearest"}


@pytest.mark.parametrize("cls, method, which", [
    (StackAndFrame, "frame_stack", 2),      # the vectorised form wins over frames
    (TileAndStack, "tile", 3),              # LiberTEM's tile first
    (StackAndPartition, "frame_stack", 2),
    (FrameForced, "frame", 1),              # get_method decides
    (HaloTileAndStack, "frame_stack", 2),   # a halo only comes with stacks or partitions
])
def test_method_precedence(cls, method, which):
    ctx = shared_context("inline-debug")
    ds = ctx.load("memory", data=np.ones((3, 4, 2, 2)), num_partitions=2)
    assert cls().get_method() == method
    assert ctx.plan(dataset=ds, udf=cls()).udfs[0].method == method
    assert (ctx.run_udf(dataset=ds, udf=cls())["which"].raw_data == which).all()
