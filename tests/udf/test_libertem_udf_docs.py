"""UDFs written exactly as LiberTEM 0.16's documentation writes them, with ``libertem``
replaced by ``udfkit`` in the imports, compared against numpy on every executor, with and
without a ROI.

Sources (LiberTEM repository): ``docs/source/udf/basic.rst`` (the UDF tutorial),
``docs/source/udf/advanced.rst`` (the "advanced topics" page) and the docstrings of
``libertem.udf.base.UDF`` (``aux_data``, ``with_mask``). Each test names its section. The
UDF bodies are copied from the documentation; only the setup (data set, ROI) and the numpy
comparison are this module's.
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from udfkit.common.buffers import BufferWrapper, reshaped_view
from udfkit.common.math import count_nonzero
from udfkit.errors import UDFError
from udfkit.testing.contexts import ALL_EXECUTORS, SharedContexts
from udfkit.udf import UDF, SumUDF
from udfkit.udf import SumSigUDF as BuiltinSumSigUDF
from udfkit.udf.base import UDFMeta, UDFMethod

shared_context = SharedContexts()
_close_shared_contexts = shared_context.closing_fixture()

NAV, SIG = (6, 7), (5, 4)


def make_data(dtype=np.float32, seed=0):
    # LiberTEM's docs use np.random.random((16, 16, 32, 32)).astype(np.float32); integers keep
    # the sums exact, so the comparisons can be strict
    rng = np.random.default_rng(seed)
    return rng.integers(0, 64, size=NAV + SIG).astype(dtype)


ROI = np.random.default_rng(7).choice([True, False], NAV)


@pytest.fixture(params=list(ALL_EXECUTORS))
def ctx(request):
    return shared_context(request.param)


@pytest.fixture(params=[None, "roi"], ids=["noroi", "roi"])
def roi(request):
    return None if request.param is None else ROI.copy()


def load(ctx, data=None, num_partitions=3):
    data = make_data() if data is None else data
    return ctx.load("memory", data=data, sig_dims=2, num_partitions=num_partitions), data


def selected(data, roi):
    """Frames of the processed positions, flattened nav, in order."""
    frames = data.reshape((-1,) + SIG)
    return frames if roi is None else frames[roi.reshape(-1)]


def nav_result(values, roi):
    """A nav result as LiberTEM's ``.data`` shows it: NaN outside the ROI."""
    out = np.full(int(np.prod(NAV)), np.nan)
    out[slice(None) if roi is None else roi.reshape(-1)] = values
    return out.reshape(NAV)


# == basic.rst, "Implementing the processing function" (SumOverSig) ========================

class SumOverSig(UDF):
    def get_result_buffers(self):
        """
        Describe the buffers we need to store our results:
        kind="nav" means we want to have a value for each coordinate
        in the navigation dimensions. We name our buffer 'pixelsum'.
        """
        return {
            'pixelsum': self.buffer(
                kind="nav", dtype="float32"
            )
        }

    def process_frame(self, frame):
        self.results.pixelsum[:] = np.sum(frame)


def test_basic_sumoversig(ctx, roi):
    ds, data = load(ctx)
    res = ctx.run_udf(udf=SumOverSig(), dataset=ds, roi=roi)
    np.testing.assert_array_equal(res['pixelsum'].data,
                                  nav_result(selected(data, roi).sum(axis=(1, 2)), roi))
    np.testing.assert_array_equal(res['pixelsum'].raw_data, selected(data, roi).sum(axis=(1, 2)))


# == basic.rst, "Merging partial results" (MaxUDF) =========================================

class MaxUDF(UDF):
    def get_result_buffers(self):
        return {
            'maxbuf': self.buffer(
                kind="sig", dtype=self.meta.input_dtype
            )
        }

    def preprocess(self):
        """
        Initialize buffer with neutral element for maximum.
        """
        self.results.maxbuf[:] = -np.inf

    def process_frame(self, frame):
        self.results.maxbuf[:] = np.maximum(frame, self.results.maxbuf)

    def merge(self, dest, src):
        """
        merge two partial results, from src into dest
        """
        dest.maxbuf[:] = np.maximum(dest.maxbuf, src.maxbuf)


def test_basic_maxudf(ctx, roi):
    ds, data = load(ctx)
    res = ctx.run_udf(udf=MaxUDF(), dataset=ds, roi=roi)
    np.testing.assert_array_equal(res['maxbuf'].data, selected(data, roi).max(axis=0))


# == basic.rst, "Declaring buffers" (getresultbuffers) =====================================

class DeclaringBuffers(UDF):
    def get_result_buffers(self):
        buffers = {
            "nav_buffer": self.buffer(kind="nav", extra_shape=(3, 2), dtype="float32"),
            "sig_buffer": self.buffer(kind="sig", extra_shape=(2,), dtype="float32"),
            "single_buffer": self.buffer(kind="single", extra_shape=(16, 16), dtype="float32"),
        }
        return buffers

    def process_frame(self, frame):
        pass

    def merge(self, dest, src):
        pass


def test_basic_declaring_buffers():
    ctx = shared_context("inline")
    ds, _ = load(ctx)
    res = ctx.run_udf(dataset=ds, udf=DeclaringBuffers())
    assert res["nav_buffer"].data.shape == NAV + (3, 2)
    assert res["sig_buffer"].data.shape == SIG + (2,)
    assert res["single_buffer"].data.shape == (16, 16)


# == basic.rst, "Declaring a constructor" (MyParamUDF, an object buffer) ====================

class MyParamUDF(UDF):
    def __init__(self, my_param=None):
        if my_param is None:
            my_param = "Eins, zwei drei!"
        super().__init__(my_param=my_param)

    def get_result_buffers(self):
        return {
            'demo': self.buffer(
                kind='single',
                dtype=object
            ),
        }

    def process_frame(self, frame):
        self.results.demo[:] = self.params.my_param

    def merge(self, dest, src):
        dest.demo[:] = src.demo


def test_basic_constructor(ctx):
    ds, _ = load(ctx)
    res = ctx.run_udf(dataset=ds, udf=MyParamUDF())
    assert res['demo'].data[0] == "Eins, zwei drei!"
    res2 = ctx.run_udf(dataset=ds, udf=MyParamUDF(my_param=42))
    assert res2['demo'].data[0] == 42


# == basic.rst, "Running UDFs" (a list of UDFs, np.array / np.sum on results) ==============

def test_basic_running_list_of_udfs(ctx, roi):
    ds, data = load(ctx)
    res, res_sum = ctx.run_udf(udf=[SumOverSig(), SumUDF()], dataset=ds, roi=roi)
    arr = np.array(res['pixelsum'])
    np.testing.assert_array_equal(arr, nav_result(selected(data, roi).sum(axis=(1, 2)), roi))
    np.testing.assert_array_equal(res_sum['intensity'].data, selected(data, roi).sum(axis=0))


# == basic.rst, "Partial results" and advanced.rst, "Valid data masking" ====================

def test_partial_results_and_valid_mask(ctx, roi):
    ds, data = load(ctx, num_partitions=4)
    seen = 0
    for udf_results in ctx.run_udf_iter(dataset=ds, udf=BuiltinSumSigUDF(), roi=roi):
        buf = udf_results.buffers[0]['intensity']
        mask = buf.valid_mask
        masked_data = buf.masked_data
        want = nav_result(selected(data, roi).sum(axis=(1, 2)), roi)
        np.testing.assert_array_equal(masked_data[mask], want[mask])
        # LiberTEM's helpers on the same mask
        box = buf.valid_slice_bounding
        assert mask[box].sum() == mask.sum()
        assert mask[buf.get_valid_slice_inner(axis=0)].all()
        np.testing.assert_array_equal(buf.raw_masked_data.compressed(), masked_data.compressed())
        assert mask.sum() >= seen
        seen = mask.sum()
    assert seen == (np.prod(NAV) if roi is None else roi.sum())


# == advanced.rst, "Post-processing after merging" (AverageUDF) =============================

class AverageUDF(UDF):
    """
    Like SumUDF, but also computes the average
    """
    def get_result_buffers(self):
        return {
            'sum': self.buffer(kind='sig', dtype=np.float32),
            'num_frames': self.buffer(kind='single', dtype=np.uint64),
            'average': self.buffer(kind='sig', dtype=np.float32, use='result_only'),
        }

    def process_frame(self, frame):
        self.results.sum[:] += frame
        self.results.num_frames[:] += 1

    def merge(self, dest, src):
        dest.sum[:] += src.sum
        dest.num_frames[:] += src.num_frames

    def get_results(self):
        return {
            # NOTE: 'sum' omitted here, will be returned unchanged
            'average': self.results.sum / self.results.num_frames,
        }


def test_advanced_average_udf(ctx, roi):
    ds, data = load(ctx)
    res = ctx.run_udf(dataset=ds, udf=AverageUDF(), roi=roi)
    frames = selected(data, roi).astype(np.float64)
    # 'sum' and 'num_frames' are passed through although get_results omits them
    assert set(res) == {'sum', 'num_frames', 'average'}
    np.testing.assert_array_equal(res['sum'].data, frames.sum(axis=0))
    assert res['num_frames'].data[0] == len(frames)
    np.testing.assert_allclose(res['average'].data, frames.mean(axis=0), rtol=1e-6)
    # float32 / uint64 is float64 in numpy; the result keeps that dtype, as in LiberTEM
    assert res['average'].data.dtype == np.float64


# == advanced.rst, "Valid data masking" (CustomValidMask: with_mask, get_valid_nav_mask) ====

class CustomValidMask(UDF):
    def get_result_buffers(self):
        nav_shape = self.meta.dataset_shape.nav

        if self.meta.roi is not None:
            nav_shape = (count_nonzero(self.meta.roi),)

        return {
            'custom_2d': self.buffer(kind='single', dtype=np.float32, extra_shape=nav_shape),
        }

    def process_frame(self, frame):
        self.results.custom_2d[self.meta.coordinates] = np.sum(frame)

    def get_results(self):
        valid_nav_mask = self.meta.get_valid_nav_mask()

        return {
            'custom_2d': self.with_mask(
                self.results.custom_2d,
                mask=valid_nav_mask.reshape(self.results.custom_2d.shape)
            ),
        }

    def merge(self, dest, src):
        dest.custom_2d += src.custom_2d


def test_advanced_custom_valid_mask(ctx):
    """The docs run it without a ROI on a square scan (its indexing with the coordinate
    array needs one); the valid mask of the partial results follows the merged partitions,
    the final one is all valid."""
    data = np.random.default_rng(1).integers(0, 64, size=(7, 7) + SIG).astype(np.float32)
    ds = ctx.load("memory", data=data, sig_dims=2, num_partitions=3)
    sizes = [p.num_frames for p in ds.get_partitions()]
    masks = []
    for part in ctx.run_udf_iter(dataset=ds, udf=CustomValidMask()):
        masks.append(part.buffers[0]['custom_2d'].valid_mask.copy())
    assert masks[-1].all() and masks[-1].shape == (7, 7)
    # partial results: the positions of whole partitions become valid (in any order)
    done = {sum(c) for k in range(1, len(sizes)) for c in itertools.combinations(sizes, k)}
    for m in masks[:-1]:
        assert 0 < m.sum() < m.size and int(m.sum()) in done


class CustomValidMaskCoords(CustomValidMask):
    """The same, with the coordinates turned into a position index (the docs' intent)."""

    def process_frame(self, frame):
        if self.meta.roi is None:
            self.results.custom_2d[tuple(self.meta.coordinates[0])] = np.sum(frame)
        else:
            self.results.custom_2d[self.meta.slice.get(nav_only=True)] = np.sum(frame)


def test_advanced_custom_valid_mask_numbers(ctx, roi):
    ds, data = load(ctx)
    res = ctx.run_udf(dataset=ds, udf=CustomValidMaskCoords(), roi=roi)
    sums = selected(data, roi).sum(axis=(1, 2))
    want = sums.reshape(NAV) if roi is None else sums
    np.testing.assert_array_equal(res['custom_2d'].data, want)
    assert res['custom_2d'].valid_mask.all()


# == advanced.rst, "ROI and current slice" (PixelsumUDF) ====================================

class PixelsumUDF(UDF):
    def get_result_buffers(self):
        if self.meta.roi is not None:
            navsize = np.count_nonzero(self.meta.roi)
        else:
            navsize = np.prod(self.meta.dataset_shape.nav)
        return {
            'pixelsum_nav_raw': self.buffer(
                kind="single",
                dtype=self.meta.dataset_dtype,
                extra_shape=(navsize, ),
            )
        }

    def merge(self, dest, src):
        dest.pixelsum_nav_raw[:] += src.pixelsum_nav_raw

    def process_frame(self, frame):
        np_slice = self.meta.slice.get(nav_only=True)
        self.results.pixelsum_nav_raw[np_slice] = np.sum(frame)


def test_advanced_pixelsum_meta_slice(ctx, roi):
    ds, data = load(ctx, num_partitions=4)
    res = ctx.run_udf(dataset=ds, udf=PixelsumUDF(), roi=roi)
    # the docs' check: assert np.allclose(res['pixelsum_nav_raw'].data,
    #                                     dataset.data[roi].sum(axis=(1, 2)))
    np.testing.assert_array_equal(res['pixelsum_nav_raw'].data, selected(data, roi).sum(axis=(1, 2)))


# == advanced.rst, "Coordinates" (CoordUDF) =================================================

class CoordUDF(UDF):
    def get_result_buffers(self):
        nav_dims = len(self.meta.dataset_shape.nav)
        return {
            'coords': self.buffer(
                kind="nav",
                dtype=int,
                extra_shape=(nav_dims, ),
            )
        }

    def process_tile(self, tile):
        self.results.coords[:] = self.meta.coordinates


def test_advanced_coordinates(ctx):
    ds, _ = load(ctx)
    my_roi = np.zeros(NAV, dtype=bool)
    my_roi[4, 5] = True
    my_roi[1, 3] = True
    res = ctx.run_udf(dataset=ds, udf=CoordUDF(), roi=my_roi)
    assert np.all(res['coords'].raw_data == np.array([(1, 3), (4, 5)]))
    full = ctx.run_udf(dataset=ds, udf=CoordUDF())
    np.testing.assert_array_equal(full['coords'].data, np.stack(np.indices(NAV), axis=-1))


# == UDF.aux_data docstring and advanced.rst, "AUX data" =====================================

class AuxDumpUDF(UDF):
    def get_result_buffers(self):
        # Result buffer for debug output
        return {'aux_dump': self.buffer(kind='nav', dtype='object')}

    def process_frame(self, frame):
        # Extract value of aux data for demonstration
        self.results.aux_dump[:] = str(self.params.aux_data[:])


def test_aux_data_docstring(ctx, roi):
    ds, _ = load(ctx)
    # for each frame, provide three values from a sequential series:
    aux1 = AuxDumpUDF.aux_data(
        data=np.arange(np.prod(ds.shape.nav) * 3, dtype=np.float32),
        kind="nav", extra_shape=(3,), dtype="float32"
    )
    udf = AuxDumpUDF(aux_data=aux1)
    res = ctx.run_udf(dataset=ds, udf=udf, roi=roi)
    flat = np.arange(np.prod(NAV) * 3, dtype=np.float32).reshape(-1, 3)
    for i in np.flatnonzero(np.ones(NAV, bool) if roi is None else roi):
        assert res['aux_dump'].data.reshape(-1)[i] == str(flat[i])
    if roi is not None:
        assert res['aux_dump'].data.reshape(-1)[~roi.reshape(-1)].tolist() == \
            [None] * int((~roi).sum())


class AuxWeighted(UDF):
    """Aux data as a buffer outside process_*: shape and dtype in get_result_buffers, the
    ROI-reduced rows in get_results."""

    def get_result_buffers(self):
        aux = self.params.weights
        return {"weighted": self.buffer(kind="nav", dtype=aux.dtype),
                "total": self.buffer(kind="single", extra_shape=aux.shape[1:] or (1,),
                                     dtype=aux.dtype, use="result_only")}

    def process_tile(self, tile):
        self.results.weighted[:] = tile.reshape(tile.shape[0], -1).sum(axis=1) * self.params.weights

    def get_results(self):
        return {"total": np.array([np.sum(self.params.weights[:])])}


def test_aux_data_is_a_buffer_outside_process(ctx, roi):
    ds, data = load(ctx)
    w = np.random.default_rng(3).random(NAV)
    res = ctx.run_udf(dataset=ds, udf=AuxWeighted(weights=UDF.aux_data(w, kind="nav")), roi=roi)
    wsel = w.reshape(-1) if roi is None else w[roi]
    np.testing.assert_allclose(res["weighted"].raw_data,
                               selected(data, roi).sum(axis=(1, 2)) * wsel, rtol=1e-12)
    np.testing.assert_allclose(res["total"].data, [wsel.sum()])
    aux = UDF.aux_data(w, kind="nav")
    assert aux.shape == (np.prod(NAV),) and aux.dtype == np.float64
    np.testing.assert_array_equal(aux[3], w.reshape(-1)[3])


# == advanced.rst, "Sparse arrays" (SumSigUDF with BACKEND_ALL, where='device', forbuf) =====

class SparseDocSumSigUDF(UDF):
    def get_backends(self):
        return self.BACKEND_ALL

    def get_result_buffers(self):
        dtype = np.result_type(self.meta.input_dtype, np.float32)
        return {
            'intensity': self.buffer(
                kind="nav", dtype=dtype, where='device'
            ),
            'backend_is_numpy': self.buffer(kind="nav", dtype=bool),
        }

    def process_tile(self, tile):
        self.results.backend_is_numpy[:] = self.meta.array_backend == UDF.BACKEND_NUMPY
        self.results.intensity[:] += self.forbuf(
            np.sum(
                # Flatten and sum axis 1 for cupyx.scipy.sparse support
                tile.reshape((tile.shape[0], -1)),
                axis=1
            ),
            self.results.intensity
        )


def test_advanced_sparse_doc_udf_runs_on_numpy(ctx, roi):
    ds, data = load(ctx)
    res = ctx.run_udf(dataset=ds, udf=SparseDocSumSigUDF(), roi=roi)
    np.testing.assert_array_equal(res['intensity'].raw_data, selected(data, roi).sum(axis=(1, 2)))
    assert res['backend_is_numpy'].raw_data.all()


class CupyOnly(UDF):
    def get_backends(self):
        return (UDF.BACKEND_CUPY,)

    def get_result_buffers(self):
        return {"x": self.buffer(kind="nav")}

    def process_frame(self, frame):
        self.results.x[:] = self.xp.sum(frame)


def test_backend_not_available_is_one_clear_line():
    ctx = shared_context("inline")
    ds, _ = load(ctx)
    with pytest.raises(UDFError, match=r"CupyOnly.get_backends\(\) returned \['cupy'\].*"
                                       r"BACKEND_NUMPY") as info:
        ctx.run_udf(dataset=ds, udf=CupyOnly())
    assert "\n" not in str(info.value)


def test_xp_and_device_class():
    ctx = shared_context("inline")
    ds, data = load(ctx)

    class XP(UDF):
        def get_backends(self):
            return (UDF.BACKEND_CUPY, UDF.BACKEND_NUMPY)

        def get_result_buffers(self):
            return {"s": self.buffer(kind="nav", dtype="float64", where="device")}

        def process_frame(self, frame):
            assert self.meta.device_class == "cpu" and self.meta.array_backend == "numpy"
            self.results.s[:] = self.xp.sum(frame)

    res = ctx.run_udf(dataset=ds, udf=XP())
    np.testing.assert_array_equal(res["s"].data, data.sum(axis=(2, 3)))


# == advanced.rst, "Precedence" (get_method returning a UDF_METHOD member) ==================

class BothMethods(UDF):
    def get_result_buffers(self):
        return {"which": self.buffer(kind="nav", dtype="int64"),
                "s": self.buffer(kind="nav", dtype="float64")}

    def get_method(self):
        return self.UDF_METHOD.FRAME

    def process_tile(self, tile):
        self.results.which[:] = 1

    def process_frame(self, frame):
        self.results.which[:] = 2
        self.results.s[:] = frame.sum()


def test_advanced_precedence_get_method(ctx, roi):
    ds, data = load(ctx)
    assert UDF().get_method is not None and UDFMethod.FRAME == "frame"
    res = ctx.run_udf(dataset=ds, udf=BothMethods(), roi=roi)
    assert (res["which"].raw_data == 2).all()
    np.testing.assert_array_equal(res["s"].raw_data, selected(data, roi).sum(axis=(1, 2)))
    assert BothMethods().get_method() is UDFMethod.FRAME
    assert SumOverSig().get_method() == UDF.UDF_METHOD.FRAME == "frame"


# == advanced.rst, "Tiled processing" and UDF.get_tiling_preferences (TILE_* constants) =====

class TilePrefs(UDF):
    def __init__(self, depth, total_size):
        super().__init__(depth=depth, total_size=total_size)

    def get_tiling_preferences(self):
        return {"depth": self.params.depth, "total_size": self.params.total_size}

    def get_result_buffers(self):
        return {"depth": self.buffer(kind="nav", dtype="int64"),
                "s": self.buffer(kind="nav", dtype="float64")}

    def process_tile(self, tile):
        self.results.depth[:] = self.meta.tiling_scheme.depth
        self.results.s[:] += tile.reshape(tile.shape[0], -1).sum(axis=1)


@pytest.mark.parametrize("depth, total_size, want_depth", [
    (UDF.TILE_DEPTH_MAX, UDF.TILE_SIZE_MAX, 14),     # as deep as the largest partition
    (UDF.TILE_DEPTH_DEFAULT, UDF.TILE_SIZE_BEST_FIT, None),
    (UDF.TILE_DEPTH_DEFAULT, UDF.TILE_SIZE_MAX, None),
    (3, UDF.TILE_SIZE_BEST_FIT, 3),
], ids=["max-max", "default-bestfit", "default-max", "3-bestfit"])
def test_tiling_preference_constants(ctx, roi, depth, total_size, want_depth):
    ds, data = load(ctx, num_partitions=3)  # 14 frames per partition
    res = ctx.run_udf(dataset=ds, udf=TilePrefs(depth=depth, total_size=total_size), roi=roi)
    np.testing.assert_array_equal(res["s"].raw_data, selected(data, roi).sum(axis=(1, 2)))
    if want_depth is not None:
        assert (res["depth"].raw_data == want_depth).all()
    else:
        # the negotiator's choice: the whole (tiny) partition fits the budget
        assert (res["depth"].raw_data >= 1).all()


# == advanced.rst, "Post-processing after merging": rules for private/result_only buffers ===

class PrivateInMerge(UDF):
    """Rules 3, 4, 8: a private buffer is merged and read in get_results, never returned; a
    public buffer that get_results omits is passed through; assignment forms in merge."""

    def get_result_buffers(self):
        return {
            'count': self.buffer(kind='single', dtype=np.int64, use='private'),
            'total': self.buffer(kind='sig', dtype=np.float64, use='private'),
            'peak': self.buffer(kind='sig', dtype=np.float64),
            'mean': self.buffer(kind='sig', dtype=np.float64, use='result_only'),
            'merged_before': self.buffer(kind='single', dtype=np.int64, use='private'),
        }

    def preprocess(self):
        self.results.peak[:] = -np.inf

    def process_frame(self, frame):
        self.results.count[:] += 1
        self.results.total[:] += frame
        self.results.peak[:] = np.maximum(self.results.peak, frame)

    def merge(self, dest, src):
        # valid nav mask: the positions merged before this partition
        dest.merged_before[:] += self.meta.get_valid_nav_mask().sum()
        dest.count = dest.count + src.count            # attribute assignment writes the buffer
        dest.total += src.total                         # in-place forms
        dest.peak[:] = np.maximum(dest.peak, src.peak)  # slice assignment

    def get_results(self):
        assert self.results.get_buffer('total').kind == 'sig'
        assert self.results.get_buffer('total').use == 'private'
        assert self.results.get_buffer('total').shape == SIG
        return {'mean': self.results.total / self.results.count[0]}


def test_private_buffers_merged_not_returned(ctx, roi):
    ds, data = load(ctx, num_partitions=3)
    res = ctx.run_udf(dataset=ds, udf=PrivateInMerge(), roi=roi)
    frames = selected(data, roi).astype(np.float64)
    assert set(res) == {'peak', 'mean'}
    np.testing.assert_allclose(res['mean'].data, frames.mean(axis=0))
    np.testing.assert_array_equal(res['peak'].data, frames.max(axis=0))


# == things LiberTEM's UDFs import from the helper modules ==================================

def test_common_buffers_module():
    a = np.arange(12)
    v = reshaped_view(a, (3, 4))
    assert v.base is a
    with pytest.raises(AttributeError):
        reshaped_view(np.zeros((4, 4)).T, (16,))
    buf = UDF().buffer(kind="nav", extra_shape=(2,), dtype="float32", where="device")
    assert isinstance(buf, BufferWrapper)
    assert (buf.kind, buf.extra_shape, buf.dtype, buf.where, buf.use) == \
        ("nav", (2,), np.float32, "device", None)
    assert UDFMeta is type(None) or UDFMeta.__name__ == "UDFMeta"


# == LiberTEM-style arguments udfkit does not take: one clear line ==========================

class BadWhere(UDF):
    def get_result_buffers(self):
        return {"x": self.buffer(kind="nav", where="gpu")}

    def process_frame(self, frame):
        pass


class BadTilingKey(UDF):
    def get_result_buffers(self):
        return {"x": self.buffer(kind="nav")}

    def get_tiling_preferences(self):
        return {"depth": 4, "tile_shape": (1, 8, 8)}

    def process_tile(self, tile):
        pass


class BadMethod(UDF):
    def get_result_buffers(self):
        return {"x": self.buffer(kind="nav")}

    def get_method(self):
        return "frames"

    def process_frame(self, frame):
        pass


class BadBackendName(UDF):
    def get_result_buffers(self):
        return {"x": self.buffer(kind="nav")}

    def get_backends(self):
        return ("torch",)

    def process_frame(self, frame):
        pass


class BadMask(UDF):
    def get_result_buffers(self):
        return {"x": self.buffer(kind="nav")}

    def process_frame(self, frame):
        pass

    def get_results(self):
        return {"x": self.with_mask(self.results.x, mask=np.ones(3, dtype=bool))}


@pytest.mark.parametrize("make, match", [
    (lambda: BadWhere(), r"buffer where: expected None or 'device'.*got 'gpu'"),
    (lambda: BadTilingKey(), r"unknown keys \['tile_shape'\]"),
    (lambda: BadMethod(), r"get_method\(\) returned 'frames'"),
    (lambda: BadBackendName(), r"unknown backends \['torch'\]"),
    (lambda: BadMask(), r"with_mask: mask of shape \(3,\) does not broadcast"),
    (lambda: SumOverSig(aux=UDF.aux_data(np.zeros(SIG), kind="sig")),
     r"aux_data kind: only 'nav'"),
], ids=["where", "tiling-key", "method", "backend-name", "with_mask-shape", "aux-sig"])
def test_unsupported_libertem_arguments(make, match):
    ctx = shared_context("inline")
    ds, _ = load(ctx)
    with pytest.raises(UDFError, match=match) as info:
        ctx.run_udf(dataset=ds, udf=make())
    assert "\n" not in str(info.value)


def test_run_backends_argument_limits_the_run():
    from udfkit.udf.driver import UDFRun

    ctx = shared_context("inline")
    ds, _ = load(ctx)
    UDFRun(ds, [SumOverSig()], backends=(UDF.BACKEND_NUMPY,))
    with pytest.raises(UDFError, match=r"backends= limits the run to \['cupy'\]"):
        UDFRun(ds, [SumOverSig()], backends=UDF.BACKEND_CUPY)


def test_forbuf_converts_sparse_and_flattened_results():
    """advanced.rst, "Sparse arrays": forbuf makes results assignable to a buffer."""
    import scipy.sparse
    import sparse

    udf = UDF()
    target = np.zeros((3, 4))
    dense = np.arange(12.0).reshape(3, 4)
    for arr in (scipy.sparse.csr_matrix(dense), scipy.sparse.coo_array(dense),
                sparse.COO.from_numpy(dense), dense.reshape(3, 4)):
        out = udf.forbuf(arr, target)
        assert type(out) is np.ndarray
        np.testing.assert_array_equal(out, dense)
    # flattened signal axes are reshaped to the buffer's
    np.testing.assert_array_equal(udf.forbuf(dense.reshape(3, 4).ravel(), target), dense)
    # a scalar stays a scalar
    assert udf.forbuf(2.5, np.zeros(1)) == 2.5
    assert udf.xp is np


class SparseOnlySumSig(UDF):
    """advanced.rst, "Sparse arrays": a UDF that supports only sparse formats gets its
    tiles converted (2D formats with flattened signal axes, frames with a leading axis of 1);
    meta.array_backend says which."""

    def __init__(self, backend, method="tile"):
        super().__init__(backend=backend, method=method)

    def get_backends(self):
        return (self.params.backend,)

    def get_method(self):
        return self.UDF_METHOD(self.params.method)

    def get_result_buffers(self):
        return {"intensity": self.buffer(kind="nav", dtype="float64"),
                "backend_ok": self.buffer(kind="nav", dtype=bool)}

    def _unit(self, data):
        self.results.backend_ok[:] = self.meta.array_backend == self.params.backend
        flat = data.reshape((data.shape[0], -1)) if self.params.backend in UDF.ND_BACKENDS else data
        self.results.intensity[:] += self.forbuf(flat.sum(axis=1), self.results.intensity)

    def process_tile(self, tile):
        self._unit(tile)

    def process_frame(self, frame):
        if self.params.backend in UDF.D2_BACKENDS:
            assert frame.shape == (1, int(np.prod(SIG)))
            self._unit(frame)
        else:
            assert frame.shape == SIG
            self._unit(frame.reshape((1,) + SIG))


@pytest.mark.parametrize("backend", [
    UDF.BACKEND_SCIPY_CSR, UDF.BACKEND_SCIPY_COO_ARRAY, UDF.BACKEND_SPARSE_COO,
    # GCXS compiles sparse's numba kernels on first use (~10-25 s)
    pytest.param(UDF.BACKEND_SPARSE_GCXS, marks=pytest.mark.slow)])
@pytest.mark.parametrize("method", ["tile", "frame"])
def test_sparse_only_udf_gets_converted_tiles(backend, method):
    ctx = shared_context("inline")
    ds, data = load(ctx)
    res = ctx.run_udf(dataset=ds, udf=SparseOnlySumSig(backend=backend, method=method), roi=ROI)
    np.testing.assert_allclose(res["intensity"].raw_data, selected(data, ROI).sum(axis=(1, 2)))
    assert res["backend_ok"].raw_data.all()


def test_sparse_only_udf_on_every_executor(ctx, roi):
    ds, data = load(ctx)
    udf = SparseOnlySumSig(backend=UDF.BACKEND_SCIPY_CSR)
    res, res_np = ctx.run_udf(dataset=ds, udf=[udf, SumOverSig()], roi=roi)
    np.testing.assert_allclose(res["intensity"].raw_data, selected(data, roi).sum(axis=(1, 2)))
    np.testing.assert_array_equal(res_np["pixelsum"].raw_data, res["intensity"].raw_data)


class SchemeIdx(UDF):
    """UDFMeta docs: sig_slice is tiling_scheme[tiling_scheme_idx]; a sig-sliced sum by it."""

    def get_result_buffers(self):
        return {"sum": self.buffer(kind="sig", dtype="float64"),
                "parts": self.buffer(kind="single", dtype="int64")}

    def process_tile(self, tile):
        meta = self.meta
        assert meta.sig_slice == meta.tiling_scheme[meta.tiling_scheme_idx]
        assert meta.slice.sig == meta.sig_slice
        self.results.sum[:] += tile.sum(axis=0)
        self.results.parts[:] = max(self.results.parts[0], meta.tiling_scheme_idx + 1)

    def merge(self, dest, src):
        dest.sum += src.sum
        dest.parts = np.maximum(dest.parts, src.parts)


def test_tiling_scheme_idx(ctx, roi):
    data = make_data()
    ds = ctx.load("memory", data=data, sig_dims=2, num_partitions=2, tileshape=(3, 2, 4))
    res = ctx.run_udf(dataset=ds, udf=SchemeIdx(), roi=roi)
    np.testing.assert_array_equal(res["sum"].data, selected(data, roi).sum(axis=0))
    assert res["parts"].data[0] == 3  # signal rows 5 in parts of 2


class SeesCorrections(UDF):
    """UDFMeta.corrections: the corrections of the run, on the main process and the workers."""

    def get_result_buffers(self):
        return {"dark_sum_main": self.buffer(kind="single", dtype="float64"),
                "dark_sum_worker": self.buffer(kind="nav", dtype="float64"),
                "excluded_worker": self.buffer(kind="nav", dtype="int64")}

    def _dark_sum(self):
        dark = self.meta.corrections.dark
        return 0.0 if dark is None else float(np.sum(dark))

    def preprocess(self):
        if self.meta.partition_shape is None:  # the main process
            self.results.dark_sum_main[:] = self._dark_sum()

    def process_frame(self, frame):
        mask = self.meta.corrections.excluded_mask(self.meta.dataset_shape.sig.to_tuple())
        self.results.dark_sum_worker[:] = self._dark_sum()
        self.results.excluded_worker[:] = np.count_nonzero(mask)

    def merge(self, dest, src):
        dest.dark_sum_worker = src.dark_sum_worker
        dest.excluded_worker = src.excluded_worker


def test_meta_corrections(ctx):
    from udfkit import CorrectionSet

    ds, data = load(ctx)
    dark = np.full(SIG, 2.0)
    excluded = np.zeros(SIG, dtype=bool)
    excluded[1, 2] = True
    res = ctx.run_udf(dataset=ds, udf=SeesCorrections(),
                      corrections=CorrectionSet(dark=dark, excluded_pixels=excluded))
    assert res["dark_sum_main"].data[0] == dark.sum()
    assert (res["dark_sum_worker"].data == dark.sum()).all()
    assert (res["excluded_worker"].data == 1).all()
    plain = ctx.run_udf(dataset=ds, udf=SeesCorrections())
    assert (plain["dark_sum_worker"].data == 0).all() and (plain["excluded_worker"].data == 0).all()


class DoubledViaSuper(UDF):
    """LiberTEM's default get_results returns the public buffers: overrides build on it."""

    def get_result_buffers(self):
        return {"s": self.buffer(kind="nav", dtype="float64"),
                "tmp": self.buffer(kind="nav", dtype="float64", use="private")}

    def process_frame(self, frame):
        self.results.s[:] = frame.sum()
        self.results.tmp[:] = 1

    def get_results(self):
        res = super().get_results()
        assert set(res) == {"s"}
        res["s"] = res["s"] * 2
        return res


def test_get_results_override_builds_on_super(ctx, roi):
    ds, data = load(ctx)
    res = ctx.run_udf(dataset=ds, udf=DoubledViaSuper(), roi=roi)
    assert set(res) == {"s"}
    np.testing.assert_array_equal(res["s"].raw_data, 2 * selected(data, roi).sum(axis=(1, 2)))
