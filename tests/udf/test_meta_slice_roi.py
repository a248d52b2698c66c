"""``self.meta.slice`` in LiberTEM's ROI-reduced coordinates, on every executor.

With a ROI (or frames missing through ``sync_offset``), LiberTEM's ``meta.slice`` counts only
the processed frames before the current unit. UDFs written for LiberTEM index ``nav``-like
arrays with it: a ``single`` buffer of ``count_nonzero(roi)`` rows (LiberTEM's "advanced"
page, "ROI and current slice"), aux data reduced to the ROI, a user array passed in the
parameters. These tests check that every such array lines up with the data exactly as numpy
says, for random nav/sig shapes, ROIs, partitionings, tilings, sync offsets, all three
process methods and every executor; and that ``meta.coordinates`` / ``meta.frame_index`` stay
in the full (uncompressed) nav space.
"""

from __future__ import annotations

from math import prod

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from udfkit import UDF
from udfkit.testing.contexts import ALL_EXECUTORS, SharedContexts
from udfkit.testing.profiles import examples

shared_context = SharedContexts()
_close_shared_contexts = shared_context.closing_fixture()


class SliceIndexedUDF(UDF):
    """Writes through ``meta.slice`` into arrays of one row per processed frame, and through
    the ordinary views into a nav buffer, for comparison."""

    def __init__(self, method, weights, aux, full_weights):
        super().__init__(method=method, weights=weights, aux=aux, full_weights=full_weights)

    def get_method(self):
        return self.UDF_METHOD(self.params.method)

    def get_preferred_input_dtype(self):
        return np.float64

    def get_result_buffers(self):
        roi = self.meta.roi
        n = prod(self.meta.dataset_shape.nav) if roi is None else int(np.count_nonzero(roi))
        nav_dims = len(self.meta.dataset_shape.nav)
        return {
            # LiberTEM's PixelsumUDF pattern: a single buffer of the processed positions
            "by_slice": self.buffer(kind="single", extra_shape=(n,), dtype="float64"),
            # a user array of processed rows, indexed by meta.slice
            "weighted": self.buffer(kind="single", extra_shape=(n,), dtype="float64"),
            # aux data seen in the process method, stored at meta.slice
            "aux_seen": self.buffer(kind="single", extra_shape=(n,), dtype="float64"),
            # a user array of the full nav size, indexed by meta.frame_index (uncompressed)
            "full_weighted": self.buffer(kind="nav", dtype="float64"),
            "by_view": self.buffer(kind="nav", dtype="float64"),
            "coords": self.buffer(kind="nav", extra_shape=(nav_dims,), dtype="int64"),
            "slice_rows": self.buffer(kind="nav", dtype="int64"),
        }

    def _unit(self, sums, first_sig_part):
        sl = self.meta.slice.get(nav_only=True)
        r = self.results
        r.by_slice[sl] += sums
        r.weighted[sl] += self.params.weights[sl] * sums
        r.by_view[:] += sums
        r.full_weighted[:] += self.params.full_weights[self.meta.frame_index] * sums
        if first_sig_part:
            r.aux_seen[sl] = np.asarray(self.params.aux).reshape(-1)
            r.coords[:] = self.meta.coordinates
            start = self.meta.slice.origin[0]
            r.slice_rows[:] = np.arange(start, start + self.meta.slice.shape[0]).reshape(
                r.slice_rows.shape)

    def process_frame(self, frame):
        self._unit(frame.sum(), True)

    def process_tile(self, tile):
        first = all(o == 0 for o in self.meta.sig_slice.origin)
        self._unit(tile.reshape(tile.shape[0], -1).sum(axis=1), first)

    def process_partition(self, partition):
        self._unit(partition.reshape(partition.shape[0], -1).sum(axis=1), True)

    def merge(self, dest, src):
        dest.by_slice += src.by_slice
        dest.weighted += src.weighted
        dest.aux_seen += src.aux_seen
        for name in ("full_weighted", "by_view", "coords", "slice_rows"):
            setattr(dest, name, getattr(src, name))


@st.composite
def cases(draw):
    if draw(st.booleans()):
        nav = (draw(st.integers(1, 24)),)
    else:
        nav = (draw(st.integers(1, 5)), draw(st.integers(1, 6)))
    sig = (draw(st.integers(1, 5)), draw(st.integers(1, 6)))
    nav_size = prod(nav)
    params = {"num_partitions": draw(st.integers(1, min(5, nav_size)))}
    if draw(st.booleans()):
        params["tileshape"] = (draw(st.integers(1, 5)), draw(st.integers(1, sig[0])), sig[1])
    if nav_size > 1 and draw(st.booleans()):
        # a data set needs at least one frame: |sync_offset| < nav_size
        reach = min(3, nav_size - 1)
        params["sync_offset"] = draw(st.integers(-reach, reach))
    roi_kind = draw(st.sampled_from(["none", "random", "empty", "one"]))
    if roi_kind == "none":
        roi = None
    elif roi_kind == "random":
        roi = np.array(draw(st.lists(st.booleans(), min_size=nav_size, max_size=nav_size)),
                       dtype=bool).reshape(nav)
    elif roi_kind == "empty":
        roi = np.zeros(nav, dtype=bool)
    else:
        roi = np.zeros(nav_size, dtype=bool)
        roi[draw(st.integers(0, nav_size - 1))] = True
        roi = roi.reshape(nav)
    method = draw(st.sampled_from(["frame", "tile", "partition"]))
    seed = draw(st.integers(0, 2 ** 16))
    return nav, sig, params, roi, method, seed


def check_case(ctx, case):
    nav, sig, params, roi, method, seed = case
    rng = np.random.default_rng(seed)
    data = rng.integers(0, 100, size=nav + sig).astype(np.uint16)
    nav_size = prod(nav)
    sync = params.get("sync_offset", 0)
    ds = ctx.load("memory", data=data, sig_dims=2, **params)

    # numpy: which positions are processed, and the frame sums there
    idx = np.arange(nav_size) + sync
    has = (idx >= 0) & (idx < nav_size)
    processed = has if roi is None else has & roi.reshape(-1)
    pos = np.flatnonzero(processed)
    frames = data.reshape((nav_size, -1)).astype(np.float64)
    sums = frames[idx[pos]].sum(axis=1)

    weights = rng.random(pos.size)  # one weight per processed position (LiberTEM's layout)
    full_weights = rng.random(nav_size)
    aux_full = rng.random(nav_size)
    udf = SliceIndexedUDF(method=method, weights=weights, full_weights=full_weights,
                          aux=UDF.aux_data(aux_full.reshape(nav), kind="nav"))
    res = ctx.run_udf(dataset=ds, udf=udf, roi=roi)

    np.testing.assert_allclose(res["by_slice"].data, sums)
    np.testing.assert_allclose(res["weighted"].data, weights * sums)
    np.testing.assert_array_equal(res["aux_seen"].data, aux_full[pos])
    np.testing.assert_allclose(res["full_weighted"].raw_data, full_weights[pos] * sums)
    np.testing.assert_allclose(res["by_view"].raw_data, sums)
    # the nav buffer's raw rows are in the same coordinates as meta.slice
    np.testing.assert_allclose(res["by_view"].raw_data, res["by_slice"].data)
    np.testing.assert_array_equal(res["slice_rows"].raw_data, np.arange(pos.size))
    # meta.coordinates: positions in the full nav space
    np.testing.assert_array_equal(res["coords"].raw_data,
                                  np.stack(np.unravel_index(pos, nav), axis=-1).reshape(-1, len(nav)))
    want = np.full(nav_size, np.nan)
    want[pos] = sums
    np.testing.assert_allclose(res["by_view"].data, want.reshape(nav))


#: examples per executor in the default run (starting a run on worker processes costs more);
#: the ``nightly`` hypothesis profile runs ten times as many
FAST_EXAMPLES = {"inline": 25, "inline-debug": 8, "threads": 8, "processes": 5, "dask": 5}


@pytest.mark.parametrize("executor", list(ALL_EXECUTORS))
def test_meta_slice_lines_up_with_numpy(executor):
    ctx = shared_context(executor)

    @settings(max_examples=examples(FAST_EXAMPLES[executor]), deadline=None,
              suppress_health_check=[HealthCheck.too_slow])
    @given(cases())
    def run(case):
        check_case(ctx, case)

    run()


@pytest.mark.parametrize("method", ["frame", "tile", "partition"])
def test_slice_is_flat_nav_index_without_roi(method):
    """Without a ROI and with every frame present, meta.slice is the flattened nav index."""
    ctx = shared_context("inline")
    nav, sig = (4, 5), (3, 4)
    data = np.arange(prod(nav + sig), dtype=np.uint16).reshape(nav + sig)
    ds = ctx.load("memory", data=data, sig_dims=2, num_partitions=3, tileshape=(3, 2, 4))
    udf = SliceIndexedUDF(method=method, weights=np.ones(20), full_weights=np.ones(20),
                          aux=UDF.aux_data(np.zeros(nav), kind="nav"))
    res = ctx.run_udf(dataset=ds, udf=udf)
    np.testing.assert_array_equal(res["slice_rows"].data, np.arange(20).reshape(nav))


def test_worker_meta_slice_in_preprocess_and_postprocess():
    """get_task_data, preprocess and postprocess on a worker see the whole partition, in
    ROI-reduced coordinates; partition_shape agrees."""

    class PartitionSlices(UDF):
        def get_result_buffers(self):
            return {"origin": self.buffer(kind="nav", dtype="int64"),
                    "extent": self.buffer(kind="nav", dtype="int64")}

        def get_task_data(self):
            return {"at_task_data": self.meta.slice}

        def process_tile(self, tile):
            pass

        def postprocess(self):
            sl = self.meta.slice
            assert sl == self.task_data.at_task_data
            assert sl.shape[0] == self.meta.partition_shape[0]
            self.results.origin[:] = sl.origin[0]
            self.results.extent[:] = sl.shape[0]

    ctx = shared_context("inline")
    nav = (24,)
    data = np.ones(nav + (2, 2), dtype=np.uint8)
    roi = np.arange(24) % 3 == 0
    ds = ctx.load("memory", data=data, sig_dims=2, num_partitions=4)
    res = ctx.run_udf(dataset=ds, udf=PartitionSlices(), roi=roi)
    # partitions of 6 positions, 2 selected each: origins 0, 2, 4, 6
    np.testing.assert_array_equal(res["origin"].raw_data, np.repeat([0, 2, 4, 6], 2))
    np.testing.assert_array_equal(res["extent"].raw_data, np.full(8, 2))
