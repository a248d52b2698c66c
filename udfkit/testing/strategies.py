"""Hypothesis strategies and numpy references for property tests of UDFs.

The property tests of the built-in UDFs (``tests/udf/``) draw their data sets here, and so
can the tests of a package that brings its own UDFs. Like the rest of :mod:`udfkit.testing`
it needs the ``test`` extra (hypothesis).

A :class:`BCase` is one drawn data set: stored dtype (including big-endian and complex),
nav / sig shapes, file format, ``sync_offset`` (with frames missing at either end),
partitioning, a forced tile shape (memory format) and a ROI. It knows the "logical" frames:
position ``i`` holds file frame ``i + sync_offset`` when the file has it; positions without a
frame are excluded exactly like positions outside the ROI. :attr:`BCase.frames` are the
processed frames in flat nav order, as float64 (complex128), so every reference below is the
numpy computation on the whole array.

Data values are small integers (quarter steps for float and complex dtypes) so that sums are
exact in float32 and float64; ``big=True`` draws integers over the whole range of their dtype
(for 32-bit integers exact in float64, not in float32: the input dtype a UDF gets must be wide
enough; for 8- and 16-bit integers the edges of LogsumUDF's lookup table).

Examples
--------
>>> import numpy as np
>>> from udfkit import Context
>>> from udfkit.udf import SumUDF
>>> case = BCase(nav_shape=(2, 3), sig_shape=(4,), dtype=">u2", image_count=5, sync_offset=-1)
>>> case.processed.tolist(), case.n
([False, True, True, True, True, True], 5)
>>> with Context.make_with("inline") as ctx:
...     res = ctx.run_udf(dataset=load(ctx, case, tmpdir=None), udf=SumUDF())
>>> bool(np.array_equal(res["intensity"].data, ref_sum(case)))
True
"""

from __future__ import annotations

import os
from math import prod

import numpy as np
from hypothesis import strategies as st

__all__ = ["REAL_DTYPES", "ALL_DTYPES", "FORMATS", "BCase", "cases", "load", "rois",
           "expected_input_dtype", "ref_sum", "ref_sumsig", "ref_stddev", "ref_logsum",
           "ref_masks", "assert_nav_rows", "check_stddev", "masks_spec", "build_masks"]

REAL_DTYPES = ["uint8", "uint16", "int16", "int32", "uint32", "float32", "float64",
               ">u2", ">f4", ">i4", ">f8", "int8"]
ALL_DTYPES = REAL_DTYPES + ["complex64", "complex128"]
FORMATS = ["memory", "raw", "npy"]
MAX_ELEMENTS = 12_000


class BCase:
    """One drawn data set with its numpy reference (see the module docstring).

    Parameters
    ----------
    nav_shape, sig_shape : tuple of int
        The data set's shapes (``sig_shape`` may be 1-D to 3-D).
    dtype : dtype
        Stored dtype, byte order included.
    image_count : int
        Frames in the file or array; fewer or more than ``nav_shape`` needs.
    sync_offset : int
        Position ``i`` holds stored frame ``i + sync_offset``.
    num_partitions : int, optional
        Asked for at load.
    tileshape : tuple of int, optional
        Forced tile shape ``(depth, *sig_part)`` of the ``memory`` format.
    roi : ndarray of bool, optional
        Nav-shaped.
    seed : int
        Of the values (see :func:`make_values`).
    fmt : {"memory", "raw", "npy"}
        How :func:`load` loads it.
    big : bool
        Integers over the whole range of their dtype.
    nav_shaped_input : bool
        Give the data nav-shaped (and let the format infer the shapes) where it has
        ``nav_size`` frames.
    values : array, optional
        The values to store instead of drawn ones (``(image_count, *sig_shape)``).

    Attributes
    ----------
    stored : ndarray
        ``(image_count, *sig_shape)`` in the stored dtype.
    processed : ndarray of bool
        Per flat nav position: it has a frame and the ROI selects it.
    frames : ndarray
        The processed frames in flat nav order, float64 (complex128 for complex dtypes).
    native_frames : ndarray
        The same in the stored dtype.
    """

    def __init__(self, *, nav_shape, sig_shape, dtype, image_count, sync_offset=0,
                 num_partitions=None, tileshape=None, roi=None, seed=0, fmt="memory",
                 big=False, nav_shaped_input=False, values=None):
        self.nav_shape = tuple(nav_shape)
        self.sig_shape = tuple(sig_shape)
        self.dtype = np.dtype(dtype)
        self.image_count = int(image_count)
        self.sync_offset = int(sync_offset)
        self.num_partitions = num_partitions
        self.tileshape = tileshape
        self.roi = roi
        self.fmt = fmt
        self.big = big
        self.nav_shaped_input = nav_shaped_input and self.image_count == prod(self.nav_shape)
        shape = (self.image_count,) + self.sig_shape
        if values is None:
            values = make_values(self.dtype, shape, seed, big)
        self.stored = np.asarray(values).astype(self.dtype)
        wide = np.complex128 if self.dtype.kind == "c" else np.float64
        self.values = self.stored.astype(wide)  # the numbers, whatever the storage

        nav_size = prod(self.nav_shape)
        self.file_idx = np.arange(nav_size) + self.sync_offset
        self.has_frame = (self.file_idx >= 0) & (self.file_idx < self.image_count)
        roi_flat = np.ones(nav_size, bool) if roi is None else np.asarray(roi, bool).reshape(-1)
        self.processed = self.has_frame & roi_flat  # bool per flat nav position
        src = self.file_idx[self.processed]
        self.frames = self.values[src]            # (n, *sig), float64 / complex128
        self.native_frames = self.stored[src]     # (n, *sig), stored dtype

    @property
    def n(self) -> int:
        """Number of processed frames."""
        return int(self.processed.sum())

    @property
    def partial(self) -> bool:
        """The file holds fewer frames than ``nav_shape`` needs (``allow_partial``)."""
        return self.image_count < prod(self.nav_shape)

    @property
    def native_dtype(self) -> np.dtype:
        """The stored dtype in native byte order."""
        return self.dtype.newbyteorder("=")

    @property
    def flat(self) -> np.ndarray:
        """Processed frames as rows ``(n, pixels)``."""
        return self.frames.reshape(self.n, prod(self.sig_shape))

    def __repr__(self):
        return (f"BCase(fmt={self.fmt!r}, nav={self.nav_shape}, sig={self.sig_shape}, "
                f"dtype={self.dtype.str}, big={self.big}, image_count={self.image_count}, "
                f"sync_offset={self.sync_offset}, num_partitions={self.num_partitions}, "
                f"tileshape={self.tileshape}, nav_shaped_input={self.nav_shaped_input}, "
                f"roi={'None' if self.roi is None else np.asarray(self.roi).astype(int).tolist()})")


def make_values(dtype, shape, seed, big=False):
    """Random values whose sums are exact: small integers (quarter steps for float and complex
    dtypes), about one in ten zero; with ``big``, integers over their dtype's whole range.

    Returns the values as float64 or complex128 (or int64); :class:`BCase` casts them to the
    stored dtype.

    Examples
    --------
    >>> bool(make_values("uint8", (2, 3), seed=1, big=True).max() <= 255)
    True
    """
    dtype = np.dtype(dtype)
    rng = np.random.default_rng(seed)
    if dtype.kind == "u":
        hi = int(np.iinfo(dtype).max) if big else 50
        values = rng.integers(0, hi, size=shape, endpoint=True)
    elif dtype.kind == "i":
        info = np.iinfo(dtype)
        lo, hi = (int(info.min), int(info.max)) if big else (-50, 50)
        values = rng.integers(lo, hi, size=shape, endpoint=True)
    elif dtype.kind == "c":
        values = (rng.integers(-200, 201, size=shape) + 1j * rng.integers(-200, 201, size=shape)) / 4
    else:
        values = rng.integers(-200, 201, size=shape) / 4
    values = np.asarray(values)
    values[rng.random(shape) < 0.1] = 0
    return values


@st.composite
def rois(draw, nav_shape, kinds=("none", "none", "random", "empty", "single", "full")):
    """``None``, a random ROI, an all-false ROI, a single position or an all-true ROI."""
    kind = draw(st.sampled_from(kinds))
    nav_size = prod(nav_shape)
    if kind == "none":
        return None
    roi = np.zeros(nav_size, bool)
    if kind == "random":
        roi = np.asarray(draw(st.lists(st.booleans(), min_size=nav_size, max_size=nav_size)))
    elif kind == "single":
        roi[draw(st.integers(0, nav_size - 1))] = True
    elif kind == "full":
        roi[:] = True
    return roi.reshape(nav_shape)


@st.composite
def cases(draw, dtypes=ALL_DTYPES, formats=FORMATS, max_nav_dims=3, max_sig_dims=3,
          max_nav=6, max_sig=9, partial=True, sync=True, roi_kinds=None, tiles=True):
    """Strategy of :class:`BCase`: format, shapes, dtype, missing frames, ``sync_offset``,
    partitions, forced tile shape (``memory``) and ROI drawn.

    Parameters
    ----------
    dtypes, formats : sequence
        What to draw the stored dtype and the format from.
    max_nav_dims, max_sig_dims, max_nav, max_sig : int
        Most axes and longest axis of nav and sig (frames of more than ``MAX_ELEMENTS``
        elements in all keep only their last signal axis).
    partial, sync, tiles : bool
        Draw missing or extra frames, a ``sync_offset``, a forced tile shape.
    roi_kinds : tuple of str, optional
        Kinds of :func:`rois` to draw from.
    """
    fmt = draw(st.sampled_from(formats))
    nav_dims = draw(st.integers(1, max_nav_dims) if max_nav_dims < 3
                    else st.sampled_from([1, 1, 2, 2, 2, 3]))
    nav_shape = tuple(draw(st.lists(st.integers(1, max_nav), min_size=nav_dims,
                                    max_size=nav_dims)))
    sig_shape = tuple(draw(st.lists(st.integers(1, max_sig), min_size=1, max_size=max_sig_dims)))
    nav_size = prod(nav_shape)
    if partial:
        image_count = draw(st.one_of(st.just(nav_size),
                                     st.integers(max(1, nav_size - 3), nav_size + 3)))
    else:
        image_count = nav_size
    if (image_count + 3) * prod(sig_shape) > MAX_ELEMENTS:
        sig_shape = sig_shape[-1:]
    dtype = np.dtype(draw(st.sampled_from(dtypes)))
    big = dtype.kind in "iu" and draw(st.booleans())
    sync_offset = 0
    if sync:
        sync_offset = draw(st.one_of(st.just(0), st.integers(-nav_size + 1, image_count - 1)))
    num_partitions = draw(st.integers(1, min(nav_size + 2, 6)))
    tileshape = None
    if tiles and fmt == "memory":
        tileshape = draw(st.one_of(
            st.none(), st.tuples(st.integers(1, 5), *[st.integers(1, s) for s in sig_shape])))
    roi = draw(rois(nav_shape, **({} if roi_kinds is None else {"kinds": roi_kinds})))
    return BCase(nav_shape=nav_shape, sig_shape=sig_shape, dtype=dtype, image_count=image_count,
                 sync_offset=sync_offset, num_partitions=num_partitions, tileshape=tileshape,
                 roi=roi, seed=draw(st.integers(0, 2**32 - 1)), fmt=fmt, big=big,
                 nav_shaped_input=draw(st.booleans()))


def load(ctx, case: BCase, tmpdir, fmt=None):
    """Load ``case`` as ``fmt`` (default ``case.fmt``); raw and npy files go into ``tmpdir``
    (unused for ``memory``).

    Works for any object with :class:`BCase`'s attributes ``nav_shape``, ``sig_shape``,
    ``dtype``, ``stored``, ``sync_offset``, ``num_partitions``, ``tileshape``, ``partial`` and
    ``nav_shaped_input``.
    """
    fmt = fmt or case.fmt
    common = dict(sync_offset=case.sync_offset, num_partitions=case.num_partitions)
    if case.partial:
        common["allow_partial"] = True
    shapes = dict(nav_shape=case.nav_shape, sig_shape=case.sig_shape)
    data = case.stored
    if case.nav_shaped_input and fmt != "raw":
        data = data.reshape(case.nav_shape + case.sig_shape)
        shapes = dict(sig_dims=len(case.sig_shape))
    if fmt == "memory":
        ds = ctx.load("memory", data=data, tileshape=case.tileshape, **shapes, **common)
    elif fmt == "raw":
        path = os.path.join(str(tmpdir), "data.raw")
        data.tofile(path)
        ds = ctx.load("raw", path=path, dtype=case.dtype.str, **shapes, **common)
    elif fmt == "npy":
        path = os.path.join(str(tmpdir), "data.npy")
        np.save(path, data)
        ds = ctx.load("npy", path=path, **shapes, **common)
    else:
        raise ValueError(fmt)
    assert ds.shape.to_tuple() == case.nav_shape + case.sig_shape
    return ds


# -- references and checks -------------------------------------------------------------------

def expected_input_dtype(case: BCase, preferences) -> np.dtype:
    """numpy promotion of the UDFs' preferred input dtypes with the stored (native) dtype."""
    return np.result_type(case.native_dtype, *preferences)


def ref_sum(case):
    """``SumUDF``'s ``intensity``: the sum of the processed frames."""
    return case.frames.sum(axis=0)


def ref_sumsig(case):
    """``SumSigUDF``'s rows: the sum of each processed frame."""
    return case.flat.sum(axis=1)


def ref_stddev(case):
    """``StdDevUDF``'s results as a dict (NaN mean / var / std without a processed frame)."""
    f = case.frames
    n = f.shape[0]
    if n == 0:
        nan = np.full(case.sig_shape, np.nan)
        return dict(num_frames=0, sum=np.zeros(case.sig_shape, f.dtype), mean=nan, var=nan,
                    std=nan, varsum=np.zeros(case.sig_shape))
    var = f.var(axis=0)
    return dict(num_frames=n, sum=f.sum(axis=0), mean=f.mean(axis=0), var=var, std=np.sqrt(var),
                varsum=var * n)


def ref_logsum(case):
    """``LogsumUDF``'s ``logsum``: sum of ``log(frame - frame.min() + 1)``."""
    f = case.frames
    if f.shape[0] == 0:
        return np.zeros(case.sig_shape)
    axes = tuple(range(1, f.ndim))
    return np.log(f - f.min(axis=axes, keepdims=True) + 1).sum(axis=0)


def ref_masks(case, matrix):
    """``(n, N)`` reference dot products and an error scale ``sum |frame| * |mask|``."""
    return case.flat @ matrix.T, np.abs(case.flat) @ np.abs(matrix).T


def assert_nav_rows(res, rows, case: BCase, *, rtol=1e-12, atol=0.0, exact=False):
    """``res`` is a nav result whose processed positions hold ``rows`` (flat nav order) and
    whose other positions are NaN (floats) / 0 (ints), invalid."""
    rows = np.asarray(rows)
    extra = rows.shape[1:]
    assert res.data.shape == case.nav_shape + extra
    flat = res.data.reshape((-1,) + extra)
    got = flat[case.processed]
    assert res.raw_data.shape == (case.n,) + extra
    if exact:
        np.testing.assert_array_equal(got, rows)
        np.testing.assert_array_equal(res.raw_data, rows)
    else:
        np.testing.assert_allclose(got, rows, rtol=rtol, atol=atol)
        np.testing.assert_allclose(res.raw_data, rows, rtol=rtol, atol=atol)
    rest = flat[~case.processed]
    if res.data.dtype.kind in "fc":
        assert np.isnan(rest).all(), "positions not processed must be NaN"
    else:
        assert (rest == 0).all(), "positions not processed must be 0"
    want = np.broadcast_to(case.processed.reshape(case.nav_shape + (1,) * len(extra)),
                           case.nav_shape + extra)
    np.testing.assert_array_equal(res.valid_mask, want)


def check_stddev(res, case: BCase, *, rtol=1e-9, minmax=False, input_dtype=None):
    """``res`` (a ``StdDevUDF`` result) equals :func:`ref_stddev` of ``case``, within ``rtol``
    and an absolute tolerance from the data's magnitude; ``minmax``: its ``min`` and ``max``
    buffers too."""
    ref = ref_stddev(case)
    n = ref["num_frames"]
    assert res["num_frames"].data.shape == (1,)
    assert int(res["num_frames"].data[0]) == n
    for name in ("sum", "mean", "var", "std", "varsum"):
        assert res[name].data.shape == case.sig_shape, name
    complex_ = (case.frames.dtype if input_dtype is None else np.dtype(input_dtype)).kind == "c"
    assert res["sum"].data.dtype == (np.complex128 if complex_ else np.float64)
    assert res["var"].data.dtype == np.float64 and res["std"].data.dtype == np.float64
    if n == 0:
        np.testing.assert_array_equal(res["sum"].data, 0)
        for name in ("mean", "var", "std"):
            assert np.isnan(res[name].data).all(), name
        return
    scale = float(np.abs(case.frames).max()) if case.frames.size else 1.0
    atol_sum = 1e-12 * n * (scale + 1)
    np.testing.assert_allclose(res["sum"].data, ref["sum"], rtol=rtol, atol=atol_sum)
    np.testing.assert_allclose(res["mean"].data, ref["mean"], rtol=rtol, atol=atol_sum / n)
    atol_var = 1e-12 * (scale + 1) ** 2
    np.testing.assert_allclose(res["var"].data, ref["var"], rtol=rtol, atol=atol_var)
    np.testing.assert_allclose(res["varsum"].data, ref["varsum"], rtol=rtol, atol=atol_var * n)
    np.testing.assert_allclose(res["std"].data, ref["std"], rtol=rtol, atol=np.sqrt(atol_var))
    assert (res["var"].data >= 0).all() and not np.isnan(res["std"].data).any()
    if minmax:
        np.testing.assert_array_equal(res["min"].data, case.frames.min(axis=0))
        np.testing.assert_array_equal(res["max"].data, case.frames.max(axis=0))


# -- masks for ApplyMasksUDF -----------------------------------------------------------------

MASK_KINDS = ("array", "list", "stack", "callables", "callable_stack", "sparse", "mixed")


@st.composite
def masks_spec(draw, sig_shape, complex_ok=True):
    """``(kind, count, values, seed)`` describing the masks to build (see :func:`build_masks`)."""
    kinds = list(MASK_KINDS)
    kind = draw(st.sampled_from(kinds))
    count = 1 if kind == "array" else draw(st.integers(1, 4))
    values = draw(st.sampled_from(["int", "bool", "normal"] + (["complex"] if complex_ok else [])))
    return kind, count, values, draw(st.integers(0, 2**32 - 1))


def _mask_stack(sig_shape, count, values, seed):
    rng = np.random.default_rng(seed)
    shape = (count,) + tuple(sig_shape)
    if values == "int":
        m = rng.integers(-3, 4, size=shape).astype(np.float64)
    elif values == "bool":
        m = rng.random(shape) < 0.5
    elif values == "complex":
        m = rng.integers(-3, 4, size=shape) + 1j * rng.integers(-3, 4, size=shape)
    else:
        m = rng.normal(size=shape)
    if values != "bool":
        m[rng.random(shape) < 0.4] = 0  # sparse-ish
    return m


def build_masks(sig_shape, spec):
    """``(mask_factories, matrix)``: what to pass to ApplyMasksUDF and the ``(N, pixels)``
    reference matrix (float64 / complex128)."""
    import scipy.sparse as sp

    kind, count, values, seed = spec
    stack = _mask_stack(sig_shape, count, values, seed)
    n_px = prod(sig_shape)
    wide = np.complex128 if stack.dtype.kind == "c" else np.float64
    matrix = stack.reshape(count, n_px).astype(wide)
    two_d = len(sig_shape) == 2

    def sparse_one(m):
        # a 2D signal takes masks of the signal shape; other signals (1, pixels) rows
        return sp.csr_matrix(m) if two_d else sp.coo_array(m.reshape(1, n_px))

    if kind == "array":
        factories = stack[0]
    elif kind == "list":
        factories = [m for m in stack]
    elif kind == "stack":
        factories = stack
    elif kind == "callables":
        factories = [(lambda m=m: m) for m in stack]
    elif kind == "callable_stack":
        factories = lambda: stack  # noqa: E731
    elif kind == "sparse":
        if count > 1 and draw_alternate(seed):
            factories = [sp.csr_array(stack.reshape(count, n_px))]
        else:
            factories = [(lambda m=m: sparse_one(m)) for m in stack]
    else:  # mixed: dense, sparse and callables in one list
        factories = []
        for i, m in enumerate(stack):
            if i % 3 == 0:
                factories.append(m)
            elif i % 3 == 1:
                factories.append(sparse_one(m))
            else:
                factories.append(lambda m=m: m)
    return factories, matrix


def draw_alternate(seed) -> bool:
    """A coin flip from ``seed``, for choices made after the drawing (in :func:`build_masks`)."""
    return bool(seed % 2)
