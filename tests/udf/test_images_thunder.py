"""Thunder parity of the image built-ins on Thunder's own example data
(``../shared/fixtures/thunder``): the mouse stack (500 binary images of 64 x 64 int16) and the
fish stack (20 time points of a 2 x 76 x 87 uint8 TIFF volume). Each built-in equals the same
computation written with numpy/scipy after Thunder's definitions
(``thunder/images/images.py``), the references reading the files with numpy / tifffile."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
from _images_ref import localcorr, localcorr_thunder, size_filter
from scipy import ndimage

from udfkit import Context
from udfkit.udf import (
    BinUDF,
    GaussianFilterUDF,
    LocalCorrUDF,
    MaxMinProjectionUDF,
    MaxProjectionUDF,
    MedianFilterUDF,
    SubsampleUDF,
    UniformFilterUDF,
)

FIXTURES = Path(__file__).parents[2] / ".." / "shared" / "fixtures" / "thunder"


def fixture(name) -> str:
    if not FIXTURES.is_dir():
        pytest.fail(f"the real sample files are missing: expected them in ../shared/fixtures "
                    f"({FIXTURES.resolve()})")
    return str(FIXTURES / name)


@pytest.fixture(scope="module")
def ctx():
    with Context.make_with("threads", cpus=2) as c:
        yield c


@pytest.fixture(scope="module")
def mouse():
    """The mouse stack read with numpy: one int16 image per sorted ``.bin`` file."""
    folder = fixture("mouse-images")
    with open(os.path.join(folder, "conf.json")) as f:
        conf = json.load(f)
    files = sorted(n for n in os.listdir(folder) if n.endswith(".bin"))
    return np.stack([np.fromfile(os.path.join(folder, n), dtype=conf["dtype"]).reshape(conf["dims"])
                     for n in files])


@pytest.fixture(scope="module")
def fish():
    """The fish stack read with tifffile: one (2, 76, 87) volume per time point."""
    tifffile = pytest.importorskip("tifffile")
    folder = fixture("fish-images")
    files = sorted(n for n in os.listdir(folder) if n.endswith(".tif"))
    return np.stack([tifffile.imread(os.path.join(folder, n)) for n in files])


def run(ctx, ds, udf, name="intensity"):
    return ctx.run_udf(dataset=ds, udf=udf)[name].data


@pytest.fixture(scope="module")
def mouse_ds(ctx):
    return ctx.load("binary", path=fixture("mouse-images"), num_partitions=3)


@pytest.fixture(scope="module")
def fish_ds(ctx):
    return ctx.load("tiff", path=fixture("fish-images"), nplanes=2, num_partitions=3)


# -- mouse: 2-D images ------------------------------------------------------------------------

def test_mouse_shapes(mouse, mouse_ds):
    assert mouse.shape == (500, 64, 64) and mouse.dtype == np.int16
    assert mouse_ds.shape.to_tuple() == mouse.shape


def test_mouse_filters(ctx, mouse, mouse_ds):
    """Thunder's defaults: ``gaussian_filter(sigma=2)``, ``uniform_filter(size=2)``,
    ``median_filter(size=2)``, each frame on its own, mode ``reflect`` (scipy's default);
    on every third frame (a ROI)."""
    roi = np.arange(500) % 3 == 0
    x = mouse[roi].astype(np.float32)  # the input dtype udfkit gives int16 frames
    for udf, func in [(GaussianFilterUDF(), lambda f: ndimage.gaussian_filter(f, 2)),
                      (UniformFilterUDF(), lambda f: ndimage.uniform_filter(f, 2)),
                      (MedianFilterUDF(), lambda f: ndimage.median_filter(f, 2))]:
        got = ctx.run_udf(dataset=mouse_ds, udf=udf, roi=roi)["intensity"]
        assert got.data.dtype == np.float32, udf
        assert np.isnan(got.data[~roi]).all()
        want = np.stack([func(f) for f in x])
        np.testing.assert_allclose(got.data[roi], want, rtol=1e-6, atol=1e-3, err_msg=repr(udf))
    # Thunder itself filters the stored int16 (scipy casts its result back to int16); on
    # integer data the difference is at most the one count that scipy's cast drops
    thunder = np.stack([ndimage.uniform_filter(f, 2) for f in mouse[roi]])
    got = ctx.run_udf(dataset=mouse_ds, udf=UniformFilterUDF(), roi=roi)["intensity"].data[roi]
    assert np.abs(got - thunder).max() <= 1


def test_mouse_subsample_and_bin(ctx, mouse, mouse_ds):
    got = run(ctx, mouse_ds, SubsampleUDF(factor=(2, 3)))
    assert got.dtype == np.int16
    np.testing.assert_array_equal(got, mouse[:, ::2, ::3])
    binned = run(ctx, mouse_ds, BinUDF(factor=2))
    want = mouse.astype(np.int64).reshape(500, 32, 2, 32, 2).sum(axis=(2, 4))
    assert binned.dtype == np.int64
    np.testing.assert_array_equal(binned, want)
    mean = run(ctx, mouse_ds, BinUDF(factor=3, reduce="mean"))
    want = mouse[:, :63, :63].astype(np.float64).reshape(500, 21, 3, 21, 3).mean(axis=(2, 4))
    np.testing.assert_allclose(mean, want, rtol=1e-6)


def test_mouse_localcorr(ctx, mouse, mouse_ds):
    """Thunder's ``localcorr(size=2)``: ``corrcoef`` of each pixel's series with its blurred
    series, pixel by pixel."""
    got = run(ctx, mouse_ds, LocalCorrUDF(), "localcorr")
    assert got.shape == (64, 64) and got.dtype == np.float64
    want = localcorr_thunder(mouse.astype(np.float64), 2)
    np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-12)
    # NaN where Thunder has NaN (a row of constant pixels); neighbours correlate elsewhere
    assert np.isnan(got).any() and (got[np.isfinite(got)] > 0).mean() > 0.9
    got5 = run(ctx, mouse_ds, LocalCorrUDF(size=5), "localcorr")
    np.testing.assert_allclose(got5, localcorr(mouse, 5), rtol=1e-10, atol=1e-12)


# -- fish: volumes ----------------------------------------------------------------------------

def test_fish_shapes(fish, fish_ds):
    assert fish.shape == (20, 2, 76, 87) and fish.dtype == np.uint8
    assert fish_ds.shape.to_tuple() == fish.shape and fish_ds.shape.sig_dims == 3


@pytest.mark.parametrize("axis", [2, 0, 1, -1])
def test_fish_projections(ctx, fish, fish_ds, axis):
    """``max_projection(axis)`` (default 2, as Thunder) and ``max_min_projection(axis)``:
    ``amax(v, axis)`` and ``amax(v, axis) + amin(v, axis)`` of each volume."""
    udf = MaxProjectionUDF() if axis == 2 else MaxProjectionUDF(axis=axis)
    got = run(ctx, fish_ds, udf)
    assert got.dtype == np.uint8
    np.testing.assert_array_equal(got, np.stack([np.amax(v, axis) for v in fish]))
    got = run(ctx, fish_ds, MaxMinProjectionUDF(axis=axis))
    want = np.stack([np.amax(v, axis).astype(np.int64) + np.amin(v, axis) for v in fish])
    assert got.dtype == np.int64
    np.testing.assert_array_equal(got, want)


def test_fish_filters_in_3d_and_per_plane(ctx, fish, fish_ds):
    """A scalar size filters the whole volume in 3-D (Thunder's ``[size] * 3``); a size of 0
    on an axis filters each slice along it on its own (Thunder's ``size[2] == 0`` rule)."""
    x = fish.astype(np.float32)
    for size in (2, 3, (3, 3, 0), (0, 3, 3)):
        got = run(ctx, fish_ds, UniformFilterUDF(size=size))
        want = np.stack([size_filter(ndimage.uniform_filter, v, size) for v in x])
        np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-4, err_msg=str(size))
        got = run(ctx, fish_ds, MedianFilterUDF(size=size))
        want = np.stack([size_filter(ndimage.median_filter, v, size) for v in x])
        np.testing.assert_array_equal(got, want, err_msg=str(size))
    for sigma in (2, (0, 1.5, 1.5)):  # Thunder's default: 3-D, over the 2 planes too
        got = run(ctx, fish_ds, GaussianFilterUDF(sigma=sigma))
        want = np.stack([ndimage.gaussian_filter(v, sigma) for v in x])
        np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-4, err_msg=str(sigma))


def test_fish_subsample_and_localcorr(ctx, fish, fish_ds):
    np.testing.assert_array_equal(run(ctx, fish_ds, SubsampleUDF(factor=(1, 4, 4))),
                                  fish[:, :, ::4, ::4])
    got = run(ctx, fish_ds, LocalCorrUDF(), "localcorr")
    assert got.shape == (2, 76, 87)
    want = localcorr(fish, 2)
    np.testing.assert_array_equal(np.isnan(got), np.isnan(want))
    np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-12)
