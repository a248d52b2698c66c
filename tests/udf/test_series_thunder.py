"""Thunder parity of the series built-ins on Thunder's own example stacks.

Each reference below is Thunder's definition (``thunder/series/series.py``) written out in
numpy, per pixel, as Thunder's ``Series.map`` applies it: the mouse stack (500 int16 images of
64×64, Thunder's binary format) and the fish stack (20 PackBits TIFF volumes of 2×76×87).
The per-pixel loops run over a sample of pixels (Thunder's literal code, one series at a
time); the statistics are checked on every pixel.
"""

from __future__ import annotations

from math import ceil
from pathlib import Path

import numpy as np
import pytest

from udfkit.testing import SharedContexts
from udfkit.udf import (
    MapSeriesUDF,
    SeriesAggregateByIndexUDF,
    SeriesCenterUDF,
    SeriesCorrelateUDF,
    SeriesNormalizeUDF,
    SeriesStandardizeUDF,
    SeriesStatsUDF,
    SeriesZScoreUDF,
)

FIXTURES = Path(__file__).resolve().parents[2] / ".." / "shared" / "fixtures" / "thunder"
MOUSE = FIXTURES / "mouse-images"
FISH = FIXTURES / "fish-images"

shared_context = SharedContexts({"threads": ("threads", {"cpus": 2})})
_close_shared_contexts = shared_context.closing_fixture()
#: pixels whose series the literal per-series references are computed for
SAMPLE = [(0, 0), (5, 60), (17, 33), (31, 31), (40, 2), (63, 63), (50, 21), (12, 47)]


@pytest.fixture(scope="module")
def mouse():
    """(data set, the stack as an array read directly: 500 × 64 × 64 int16)."""
    if not MOUSE.is_dir():
        pytest.fail(f"the shared fixtures are missing: expected {MOUSE}")
    import json

    conf = json.loads((MOUSE / "conf.json").read_text())
    files = sorted(MOUSE.glob("image-*.bin"))
    # udfkit's binary format reads an old-style ``dims`` as a C-order frame of the reversed
    # dims (Thunder's own example loader reshapes with order="F": the transposed image); the
    # series operations are per pixel, so the parity holds either way
    arr = np.stack([np.fromfile(f, dtype=conf["dtype"]).reshape(conf["dims"][::-1])
                    for f in files])
    ds = shared_context("threads").load("binary", path=str(MOUSE))
    assert ds.shape.to_tuple() == arr.shape
    return ds, arr


def run(ds, udf, **kw):
    return shared_context("threads").run_udf(ds, udf, **kw)


def series_of(arr, pixel):
    return arr[(slice(None),) + tuple(pixel)]


def test_mouse_is_read_as_thunder_reads_it(mouse):
    """A series run sees the stack as a direct read of the files gives it (the stored int16
    values: the series built-ins read the stored dtype)."""
    ds, arr = mouse
    res = run(ds, MapSeriesUDF(func=lambda s: s, dtype="int16", extra_shape="series"))
    assert np.array_equal(np.moveaxis(res["result"].data, -1, 0), arr)


def test_stats(mouse):
    ds, arr = mouse
    res = run(ds, SeriesStatsUDF(stats=("mean", "std", "var", "median", "min", "max", "sum"),
                                 percentiles=(5, 20, 50, 95)))
    x = arr.astype(np.float64)
    for name, ref in [("mean", x.mean(0)), ("std", x.std(0)), ("var", x.var(0)),
                      ("sum", x.sum(0))]:
        np.testing.assert_allclose(res[name].data, ref, rtol=1e-12, err_msg=name)
    # order statistics: exactly numpy's on the stored int16 stack
    assert np.array_equal(res["median"].data, np.median(arr, axis=0))
    assert np.array_equal(res["min"].data, arr.min(0))
    assert np.array_equal(res["max"].data, arr.max(0))
    assert np.array_equal(res["percentile"].data,
                          np.moveaxis(np.percentile(arr, (5, 20, 50, 95), axis=0), 0, -1))


def test_correlate(mouse):
    ds, arr = mouse
    signal = arr.reshape(500, -1).mean(axis=1)  # the mean time course, a typical regressor
    two = np.stack([signal, np.sin(np.arange(500) / 7.0)])
    one = run(ds, SeriesCorrelateUDF(signal=signal))["correlation"].data
    many = run(ds, SeriesCorrelateUDF(signal=two))["correlation"].data
    assert one.shape == (64, 64) and many.shape == (64, 64, 2)
    for p in SAMPLE:
        x = series_of(arr, p)
        # Thunder: corrcoef(x, s)[0, 1], NaN for a constant series; for a 2-D signal one per row
        with np.errstate(invalid="ignore", divide="ignore"):
            ref_one = np.corrcoef(x, signal)[0, 1]
            ref_many = [np.corrcoef(x, y)[0, 1] for y in two]
        np.testing.assert_allclose(one[p], ref_one, rtol=1e-10, equal_nan=True)
        np.testing.assert_allclose(many[p], ref_many, rtol=1e-10, equal_nan=True)
    assert np.isfinite(one).mean() > 0.9  # most pixels are not constant


@pytest.mark.parametrize("udf, thunder", [
    (SeriesCenterUDF(), lambda x: x - np.mean(x)),
    (SeriesStandardizeUDF(), lambda x: x / np.std(x)),
    (SeriesZScoreUDF(), lambda x: (x - np.mean(x)) / np.std(x)),
], ids=["center", "standardize", "zscore"])
def test_center_standardize_zscore(mouse, udf, thunder):
    ds, arr = mouse
    out = run(ds, udf)["series"].data
    assert out.shape == (64, 64, 500)
    for p in SAMPLE:
        with np.errstate(invalid="ignore", divide="ignore"):
            ref = thunder(series_of(arr, p).astype(np.float64))
        np.testing.assert_allclose(out[p], ref, rtol=1e-12, atol=1e-12, equal_nan=True)


def _thunder_normalize(y, method, window, perc, offset):
    """Thunder's ``normalize`` on one series, its code written out (``window-exact``'s even
    window uses ``window // 2``: Thunder's ``window/2`` is a float index on Python 3)."""
    y = np.asarray(y)
    if method == "mean":
        b = np.mean(y)
    elif method == "percentile":
        b = np.percentile(y, perc)
    elif method == "window":
        from scipy.ndimage import percentile_filter

        b = percentile_filter(y.astype(np.float64), perc, window, mode="nearest")
    else:
        if window & 0x1:
            left, right = (ceil(window / 2), ceil(window / 2) + 1)
        else:
            left, right = (window // 2, window // 2)
        n = len(y)
        b = np.asarray([np.percentile(y[max(ix - left, 0):min(ix + right + 1, n)], perc)
                        for ix in np.arange(0, n)])
    return (y - b) / (b + offset)


@pytest.mark.parametrize("method, window, perc, offset", [
    ("percentile", None, 20, 0.1), ("mean", None, 20, 0.1), ("window", 6, 20, 0.1),
    ("window-exact", 5, 50, 0.1),
    pytest.param("window", 7, 35, 1.0, marks=pytest.mark.slow),
    pytest.param("window-exact", 6, 20, 0.1, marks=pytest.mark.slow)])
def test_normalize(mouse, method, window, perc, offset):
    """On the first 150 frames (a ROI; the running baselines are the slow part)."""
    ds, arr = mouse
    roi = np.arange(500) < 150
    out = run(ds, SeriesNormalizeUDF(method=method, window=window, perc=perc,
                                     offset=offset), roi=roi)["series"].data
    assert out.shape == (64, 64, 150)
    for p in SAMPLE:
        ref = _thunder_normalize(series_of(arr, p)[:150], method, window, perc, offset)
        np.testing.assert_allclose(out[p], ref, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("function", ["mean", np.std, pytest.param("median", marks=pytest.mark.slow),
                                      pytest.param("max", marks=pytest.mark.slow)])
def test_aggregate_by_index(mouse, function):
    """``mean_by_index`` and ``aggregate_by_index``: labels per frame, sorted unique labels."""
    ds, arr = mouse
    index = (np.arange(500) * 7) % 5 + 10  # labels 10..14, interleaved
    res = run(ds, SeriesAggregateByIndexUDF(index=index, function=function))
    assert res["labels"].data.tolist() == [10, 11, 12, 13, 14]
    f = {"mean": np.mean, "median": np.median, "max": np.max}.get(function, function)
    for p in SAMPLE:
        v = series_of(arr, p)
        ref = np.asarray([f(v[index == lab]) for lab in np.unique(index)])
        np.testing.assert_allclose(res["values"].data[p], ref, rtol=1e-12)


def test_map_as_series_and_roi(mouse):
    """``Series.map(func)``, on the frames a ROI keeps (every other frame)."""
    ds, arr = mouse
    roi = np.arange(500) % 2 == 0

    def func(s):
        return np.abs(np.fft.rfft(s - s.mean()))[1:4]

    res = run(ds, MapSeriesUDF(func=func, extra_shape=(3,)), roi=roi)
    vec = run(ds, MapSeriesUDF(func=lambda b: np.abs(np.fft.rfft(b - b.mean(0), axis=0))[1:4].T,
                               extra_shape=(3,), vectorized=True), roi=roi)
    for p in SAMPLE:
        ref = func(series_of(arr, p)[roi])
        np.testing.assert_allclose(res["result"].data[p], ref, rtol=1e-10)
        np.testing.assert_allclose(vec["result"].data[p], ref, rtol=1e-10)


def test_fish_volume_stats_and_zscore():
    """The fish volumes (sig (2, 76, 87), compressed TIFF: rechunk pass)."""
    tifffile = pytest.importorskip("tifffile")
    files = sorted(FISH.glob("time*.tif"))
    arr = np.stack([tifffile.imread(f) for f in files])
    assert arr.shape == (20, 2, 76, 87)
    ds = shared_context("threads").load("tiff", path=str(FISH), nplanes=2)
    res = run(ds, [SeriesStatsUDF(stats=("mean", "std"), percentiles=(20,)), SeriesZScoreUDF()])
    x = arr.astype(np.float64)
    np.testing.assert_allclose(res[0]["std"].data, x.std(0), rtol=1e-12)
    assert np.array_equal(res[0]["percentile"].data[..., 0], np.percentile(arr, 20, axis=0))
    with np.errstate(invalid="ignore", divide="ignore"):
        ref = (x - x.mean(0)) / x.std(0)
    np.testing.assert_allclose(res[1]["series"].data, np.moveaxis(ref, 0, -1), rtol=1e-12,
                               atol=1e-12, equal_nan=True)
