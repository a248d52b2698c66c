"""CorrectionSet: accepted forms, errors, the neighbour table and the tile corrector.

The neighbour table is checked against a literal reading of the definition (grow a box
around the pixel until it holds a valid pixel inside the frame), the corrector against
numpy on tiles cut every way a tiling scheme can cut them. Runs through ``Context.run_udf``
are in ``tests/udf/test_corrections_run.py``.
"""

from __future__ import annotations

import pickle
from math import prod

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from udfkit import CorrectionError, CorrectionSet, UdfkitError
from udfkit.common import Shape, Slice
from udfkit.io.corrections import CorrectionPlan, neighbour_table
from udfkit.io.tiles import DataTile
from udfkit.io.tiling import TilingScheme
from udfkit.testing.profiles import examples

# -- the reference: the definition, read literally ---------------------------------------------

def ref_neighbours(mask, pixel):
    """Flat indices of the valid pixels in the smallest box (radius >= 1) around ``pixel``
    that holds any, the box clipped to the frame."""
    shape = mask.shape
    r = 1
    while True:
        box = tuple(slice(max(p - r, 0), min(p + r + 1, s)) for p, s in zip(pixel, shape))
        idx = np.indices(shape)[(slice(None),) + box].reshape(len(shape), -1)
        flat = np.ravel_multi_index(tuple(idx), shape)
        valid = flat[~mask.reshape(-1)[flat]]
        if valid.size:
            return np.sort(valid)
        r += 1


def ref_correct(frames, dark=None, gain=None, mask=None):
    """``(raw - dark) * gain``, then each excluded pixel the mean of its neighbours (float64)."""
    frames = np.asarray(frames)
    wide = np.complex128 if frames.dtype.kind == "c" else np.float64
    out = frames.astype(wide)
    if dark is not None:
        out = out - dark
    if gain is not None:
        out = out * gain
    if mask is not None:
        n = out.shape[0]
        flat_in = out.reshape(n, -1)
        flat_out = flat_in.copy()
        for pixel in np.argwhere(mask):
            p = np.ravel_multi_index(tuple(pixel), mask.shape)
            flat_out[:, p] = flat_in[:, ref_neighbours(mask, tuple(pixel))].mean(axis=1)
        out = flat_out.reshape(out.shape)
    return out


@st.composite
def masks(draw, max_dims=3):
    """Random masks of 1D-3D shapes: scattered pixels, clusters, nearly everything excluded."""
    d = draw(st.integers(1, max_dims))
    shape = tuple(draw(st.lists(st.integers(1, {1: 20, 2: 9, 3: 5}[d]), min_size=d, max_size=d)))
    size = prod(shape)
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    kind = draw(st.sampled_from(["scattered", "dense", "cluster", "all_but_one"]))
    if kind == "scattered":
        mask = rng.random(shape) < 0.15
    elif kind == "dense":
        mask = rng.random(shape) < 0.7
    elif kind == "cluster":
        mask = np.zeros(shape, bool)
        lo = [int(rng.integers(0, s)) for s in shape]
        hi = [int(rng.integers(a, s)) + 1 for a, s in zip(lo, shape)]
        mask[tuple(slice(a, b) for a, b in zip(lo, hi))] = True
    else:
        mask = np.ones(shape, bool)
        mask.flat[int(rng.integers(0, size))] = False
    if mask.all():
        mask.flat[int(rng.integers(0, size))] = False
    return mask


# -- neighbour table -----------------------------------------------------------------------------

@settings(max_examples=examples(150), deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mask=masks())
def test_neighbour_table_matches_the_definition(mask):
    excluded, indptr, nbrs = neighbour_table(mask)
    np.testing.assert_array_equal(excluded, np.flatnonzero(mask))
    assert indptr.shape == (excluded.size + 1,) and indptr[0] == 0 and indptr[-1] == nbrs.size
    for k, p in enumerate(excluded):
        pixel = np.unravel_index(p, mask.shape)
        np.testing.assert_array_equal(nbrs[indptr[k]:indptr[k + 1]], ref_neighbours(mask, pixel))
    assert not mask.reshape(-1)[nbrs].any()


@pytest.mark.parametrize("pixel, expected", [
    ((0, 0), [(0, 1), (1, 0), (1, 1)]),                      # corner: 3 of the 3×3 box
    ((0, 2), [(0, 1), (0, 3), (1, 1), (1, 2), (1, 3)]),      # edge: 5
    ((4, 4), [(3, 3), (3, 4), (4, 3)]),                      # opposite corner
    ((2, 2), [(1, 1), (1, 2), (1, 3), (2, 1), (2, 3), (3, 1), (3, 2), (3, 3)]),  # inside: 8
])
def test_single_excluded_pixel(pixel, expected):
    mask = np.zeros((5, 5), bool)
    mask[pixel] = True
    plan = CorrectionSet(excluded_pixels=mask).plan((5, 5))
    want = sorted(np.ravel_multi_index(p, (5, 5)) for p in expected)
    assert plan.neighbours_of(0).tolist() == want


def test_cluster_grows_the_box():
    """A 3×3 cluster: its centre has no valid pixel in its 3×3 box and uses the 16 valid pixels
    of the 5×5 box; the cluster's edge pixels use the valid pixels of their 3×3 box."""
    mask = np.zeros((7, 7), bool)
    mask[2:5, 2:5] = True
    plan = CorrectionSet(excluded_pixels=mask).plan((7, 7))
    k = list(plan.excluded).index(np.ravel_multi_index((3, 3), (7, 7)))
    ring = np.zeros((7, 7), bool)
    ring[1:6, 1:6] = True
    ring[2:5, 2:5] = False
    assert plan.neighbours_of(k).tolist() == np.flatnonzero(ring).tolist()
    k = list(plan.excluded).index(np.ravel_multi_index((2, 2), (7, 7)))
    assert len(plan.neighbours_of(k)) == 5  # (1,1) (1,2) (1,3) (2,1) (3,1)


def test_one_valid_pixel_serves_the_whole_frame():
    mask = np.ones((6, 4), bool)
    mask[5, 3] = False
    plan = CorrectionSet(excluded_pixels=mask).plan((6, 4))
    assert plan.excluded.size == 23
    assert (plan.nbrs == np.ravel_multi_index((5, 3), (6, 4))).all()
    assert np.diff(plan.indptr).tolist() == [1] * 23


def test_large_cluster_is_fast():
    """Half of a 256×256 frame excluded: radii up to 128; only shells are examined."""
    import time

    mask = np.zeros((256, 256), bool)
    mask[:, :128] = True
    t0 = time.perf_counter()
    excluded, indptr, nbrs = neighbour_table(mask)
    assert time.perf_counter() - t0 < 5
    # pixel (0, 0) is 128 columns away from the valid half: its box reaches column 128 only
    assert nbrs[indptr[0]:indptr[1]].tolist() == [r * 256 + 128 for r in range(129)]


# -- accepted forms ------------------------------------------------------------------------------

def test_coordinates_and_mask_are_the_same():
    mask = np.zeros((4, 5), bool)
    mask[0, 0] = mask[3, 4] = mask[1, 2] = True
    coords = [(0, 0), (3, 4), (1, 2), (1, 2)]  # duplicates are harmless
    for form in (coords, np.array(coords), np.array(coords, dtype=np.uint8), np.argwhere(mask)):
        corr = CorrectionSet(excluded_pixels=form)
        assert corr.sig_shape is None
        np.testing.assert_array_equal(corr.excluded_mask((4, 5)), mask)
        plan = corr.plan((4, 5))
        np.testing.assert_array_equal(plan.excluded, np.flatnonzero(mask))
    # with dark, the shape is known at once and the coordinates become the mask
    corr = CorrectionSet(dark=np.zeros((4, 5)), excluded_pixels=coords)
    assert corr.excluded_pixels.dtype == bool and corr.sig_shape == (4, 5)
    np.testing.assert_array_equal(corr.excluded_pixels, mask)


@pytest.mark.parametrize("excluded", [None, [], np.zeros((0, 2), int), np.zeros((3, 3), bool)])
def test_nothing_excluded(excluded):
    corr = CorrectionSet(excluded_pixels=excluded)
    assert corr.is_empty and (corr.excluded_pixels is None or not corr.excluded_pixels.any())
    plan = CorrectionSet(gain=np.ones((3, 3)), excluded_pixels=excluded).plan((3, 3))
    assert plan.excluded.size == 0 and not plan.needs_whole_frames


def test_arrays_are_private_copies():
    dark = np.zeros((2, 3))
    corr = CorrectionSet(dark=dark, gain=np.ones((2, 3), dtype=">f4"))
    dark[0, 0] = 5
    assert corr.dark[0, 0] == 0
    assert not corr.dark.flags.writeable and corr.gain.dtype == np.dtype("float32")
    with pytest.raises(ValueError):
        corr.dark[0, 0] = 1


def test_plan_pickles_and_repr():
    corr = CorrectionSet(dark=np.arange(6).reshape(2, 3), excluded_pixels=[(0, 1)])
    assert repr(corr) == "CorrectionSet(dark=int64[2, 3], excluded_pixels=1)"
    plan = corr.plan((2, 3))
    back = pickle.loads(pickle.dumps(plan))
    assert isinstance(back, CorrectionPlan) and back.sig_shape == (2, 3)
    np.testing.assert_array_equal(back.nbrs, plan.nbrs)
    np.testing.assert_array_equal(back.dark, np.arange(6))


def test_non_finite_gain_at_excluded_pixels_is_allowed():
    gain = np.ones((3, 4))
    gain[1, 1] = np.nan
    dark = np.zeros((3, 4))
    dark[2, 3] = np.inf
    plan = CorrectionSet(dark=dark, gain=gain, excluded_pixels=[(1, 1), (2, 3)]).plan((3, 4))
    assert plan.excluded.tolist() == [5, 11]


# -- errors --------------------------------------------------------------------------------------

@pytest.mark.parametrize("kwargs, match", [
    (dict(dark=5.0), r"dark: expected an array of the sig shape, got the scalar 5\.0"),
    (dict(gain=np.ones((2, 2), complex)), "gain: expected an array of real numbers.*complex"),
    (dict(dark=np.ones((2, 2), bool)), "dark: expected an array of real numbers.*dtype bool"),
    (dict(dark=[["a", "b"]]), "dark: expected an array of real numbers"),
    (dict(dark=np.zeros((4, 4)), gain=np.ones((4, 5))),
     r"shapes differ: dark \(4, 4\), gain \(4, 5\)"),
    (dict(gain=np.ones((4, 4)), excluded_pixels=np.zeros((4, 3), bool)),
     r"gain \(4, 4\), the excluded_pixels mask \(4, 3\)"),
    (dict(excluded_pixels=[3, 5]), r"coordinates and need the shape \(n, sig_dims\), got shape \(2,\)"),
    (dict(excluded_pixels=[(0.5, 1.0)]), "integer coordinates .*got dtype float64"),
    (dict(excluded_pixels=np.True_), "got the scalar True"),
    (dict(dark=np.zeros((4, 4)), excluded_pixels=[(0, 0), (4, 1)]),
     r"1 coordinate\(s\) outside the sig shape \(4, 4\).*\(4, 1\) \(row 1\)"),
    (dict(dark=np.zeros((4, 4)), excluded_pixels=[(-1, 0)]),
     r"\(-1, 0\) \(row 0\).*negative indices are not allowed"),
])
def test_construction_errors(kwargs, match):
    with pytest.raises(CorrectionError, match=match) as info:
        CorrectionSet(**kwargs)
    assert isinstance(info.value, ValueError) and isinstance(info.value, UdfkitError)


@pytest.mark.parametrize("kwargs, match", [
    (dict(dark=np.zeros((4, 5))),
     r"dark has shape \(4, 5\), but the sig shape of my data is \(4, 4\)"),
    (dict(gain=np.ones(16)), r"gain has shape \(16,\), but the sig shape of my data is \(4, 4\)"),
    (dict(excluded_pixels=np.zeros((4, 5), bool) | True),
     r"mask has shape \(4, 5\), but my data needs exactly the sig shape \(4, 4\)"),
    (dict(excluded_pixels=[(1, 2, 3)]),
     r"coordinates have 3 columns, but the sig shape \(4, 4\) of my data has 2 dimensions"),
    (dict(excluded_pixels=[(0, 0)] * 6 + [(9, 9)] * 7),
     r"7 coordinate\(s\) outside the sig shape \(4, 4\) of my data: \(9, 9\) \(row 6\).* and 2 more"),
    (dict(excluded_pixels=np.ones((4, 4), bool)), "excludes all 16 pixels"),
    (dict(gain=np.full((4, 4), np.nan), excluded_pixels=[(0, 0)]),
     r"gain has 15 non-finite value\(s\) .* the first at \(0, 1\).*add those pixels to excluded_pixels"),
    (dict(dark=np.full((4, 4), -np.inf)), r"dark has 16 non-finite .*the first at \(0, 0\)"),
])
def test_plan_errors(kwargs, match):
    with pytest.raises(CorrectionError, match=match):
        CorrectionSet(**kwargs).plan((4, 4), where="my data")


# -- the tile corrector --------------------------------------------------------------------------

def tiles_of(frames, scheme, dtype, frame_view=True):
    """Tiles of ``frames`` for ``scheme``: read-only views (like zero-copy tiles) or copies."""
    sig_dims = frames.ndim - 1
    frames = frames.astype(dtype)
    frames.flags.writeable = False
    for k0 in range(0, frames.shape[0], scheme.depth):
        block = frames[k0:k0 + scheme.depth]
        n = block.shape[0]
        for idx, sl in enumerate(scheme.slices):
            data = block[(slice(None),) + sl.get()]
            if not frame_view:
                data = np.ascontiguousarray(data)
                data.flags.writeable = False
            ts = Slice((k0,) + sl.origin, Shape((n,) + sl.shape.to_tuple(), sig_dims=sig_dims))
            yield DataTile(data, ts, idx, np.arange(k0, k0 + n), k0)


@settings(max_examples=examples(120), deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mask=masks(), seed=st.integers(0, 2**32 - 1),
       src=st.sampled_from(["uint8", "uint16", "int32", "float32", "float64", "uint64", "complex64"]),
       parts=st.sampled_from(["dark", "gain", "both", "none"]), depth=st.integers(1, 4),
       split=st.booleans(), frame_view=st.booleans(), use_mask=st.booleans())
def test_corrector_equals_numpy(mask, seed, src, parts, depth, split, frame_view, use_mask):
    sig = mask.shape
    rng = np.random.default_rng(seed)
    frames = rng.integers(0, 60, size=(5,) + sig)
    if src == "complex64":
        frames = frames + 1j * rng.integers(-9, 9, size=frames.shape)
    dark = rng.integers(-20, 20, size=sig) / 4 if parts in ("dark", "both") else None
    gain = rng.integers(1, 17, size=sig) / 8 if parts in ("gain", "both") else None
    if not use_mask:
        mask = None
    corr = CorrectionSet(dark=dark, gain=gain, excluded_pixels=mask)
    plan = corr.plan(sig)
    out_dtype = np.result_type(src, np.float32)
    if split and mask is None:  # cut frames into parts (rows, columns) like a tile scheme
        tile_sig = tuple(int(rng.integers(1, s + 1)) for s in sig)
    else:
        tile_sig = sig
    scheme = TilingScheme.make(sig, tile_sig, depth, "tile")
    correct = plan.corrector(scheme, out_dtype)
    got = np.full((5,) + sig, np.nan, dtype=out_dtype)
    for tile in tiles_of(frames, scheme, src, frame_view):
        before = tile.data.copy()
        out = correct(tile)
        assert out.data.dtype == out_dtype and not out.data.flags.writeable
        assert out.data.shape == tile.data.shape and out.scheme_idx == tile.scheme_idx
        np.testing.assert_array_equal(tile.data, before)  # the source is never written
        got[(slice(out.tile_slice.origin[0], out.tile_slice.origin[0] + out.data.shape[0]),)
            + scheme[out.scheme_idx].get()] = out.data
    want = ref_correct(frames.astype(src), dark, gain, mask)
    rtol = 1e-6 if out_dtype in (np.float32, np.complex64) else 1e-12
    np.testing.assert_allclose(got, want, rtol=rtol, atol=1e-12)


def test_corrector_refuses_split_tiles_with_excluded_pixels():
    plan = CorrectionSet(excluded_pixels=[(1, 1)]).plan((4, 4))
    with pytest.raises(CorrectionError, match="excluded pixels need tiles of whole frames"):
        plan.corrector(TilingScheme.make((4, 4), (2, 4), 1, "tile"), np.float32)
    with pytest.raises(CorrectionError, match="float or complex input dtype, got uint16"):
        plan.corrector(TilingScheme.make((4, 4), (4, 4), 1, "tile"), np.uint16)


@pytest.mark.parametrize("stored, outs, want", [
    ("uint16", ["float32"], "uint16"), (">u2", ["float32", "float64"], "uint16"),
    ("float16", ["float32"], "float32"), ("float16", ["float32", "float64"], "float64"),
    ("bool", ["float32"], "float32"), (">c8", ["complex64"], "complex64"),
])
def test_source_dtype(stored, outs, want):
    plan = CorrectionSet(gain=np.ones(3)).plan((3,))
    assert plan.source_dtype(np.dtype(stored), [np.dtype(o) for o in outs]) == np.dtype(want)


CACHE_SCRIPT = """
import numpy as np
from udfkit.io import _correct
src = np.arange(32, dtype=np.uint16)
src.flags.writeable = False
out = np.empty((2, 16), np.float32)
dark, gain = np.ones(16, np.float32), np.full(16, 2, np.float32)
exc, indptr, nbrs = np.array([0]), np.array([0, 1]), np.array([1])
_correct.correct_rows(src, 16, dark, gain, True, True, out, exc, indptr, nbrs)
assert out[1, 0] == out[1, 1] == 32 and out[0, 5] == 8
stats = _correct.correct_rows.stats
print(len(stats.cache_hits), len(stats.cache_misses))
"""


def test_kernel_is_loaded_from_the_disk_cache(tmp_path):
    """``cache=True``: a second process loads the compiled kernel instead of compiling it."""
    import os
    import subprocess
    import sys

    env = dict(os.environ, NUMBA_CACHE_DIR=str(tmp_path))

    def run():
        out = subprocess.run([sys.executable, "-c", CACHE_SCRIPT], env=env, capture_output=True,
                             text=True, timeout=300)
        assert out.returncode == 0, out.stderr
        return tuple(map(int, out.stdout.split()))

    assert run() == (0, 1)
    assert run() == (1, 0)
