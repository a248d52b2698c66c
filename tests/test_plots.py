"""Live plots: ``run_udf(plots=...)`` and the plot interface of :mod:`udfkit.viz`.

matplotlib runs with the Agg backend (no display); the figures' data must equal the results
at the end of the run, and partial results must have reached the plots on the way.
"""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest

matplotlib = pytest.importorskip("matplotlib", reason="live plots need the 'plot' extra (matplotlib)")
matplotlib.use("Agg")

from udfkit import UDF, Context  # noqa: E402
from udfkit.errors import UdfkitWarning  # noqa: E402
from udfkit.udf import StdDevUDF, SumSigUDF, SumUDF  # noqa: E402
from udfkit.viz import (  # noqa: E402
    Dummy2DPlot,
    Live2DPlot,
    dry_run,
    get_plottable_2D_channels,
    visualize_simple,
)
from udfkit.viz.mpl import MPLLive2DPlot  # noqa: E402

DATA = np.random.default_rng(3).random((4, 6, 5, 7)).astype(np.float32)
AGG = "cannot show figures"


@pytest.fixture(scope="module")
def ctx():
    with Context.make_with("inline") as c:
        yield c


@pytest.fixture(scope="module")
def ds(ctx):
    return ctx.load("memory", data=DATA, num_partitions=4)


def test_plots_true_one_figure_per_result(ctx, ds):
    with pytest.warns(UdfkitWarning, match=AGG):
        res_sig, res_sum = ctx.run_udf(ds, [SumSigUDF(), SumUDF()], plots=True)
    plots = ctx.last_plots
    assert [p.title for p in plots] == ["SumSigUDF: intensity", "SumUDF: intensity"]
    nav, sig = (p.im_obj.get_array() for p in plots)
    # nav buffers are images over the scan, sig buffers images of the detector
    np.testing.assert_allclose(nav, res_sig["intensity"].data)
    np.testing.assert_allclose(sig, res_sum["intensity"].data)
    np.testing.assert_allclose(nav, DATA.sum(axis=(2, 3)), rtol=1e-5)
    assert plots[0].axes.get_title() == "SumSigUDF: intensity"
    lo, hi = plots[0].im_obj.get_clim()
    assert (lo, hi) == pytest.approx((nav.min(), nav.max()))


def test_plot_selection_per_udf(ctx, ds):
    with pytest.warns(UdfkitWarning, match=AGG):
        res = ctx.run_udf(ds, [StdDevUDF(), SumUDF()],
                          plots=[["std", ("mean", np.sqrt)], []])
    plots = ctx.last_plots
    assert [p.title for p in plots] == ["StdDevUDF: std", "StdDevUDF: sqrt(mean)"]
    np.testing.assert_allclose(plots[0].im_obj.get_array(), res[0]["std"].data)
    np.testing.assert_allclose(plots[1].im_obj.get_array(), np.sqrt(res[0]["mean"].data))
    np.testing.assert_allclose(res[0]["std"].data, DATA.reshape(24, 5, 7).std(axis=0), rtol=1e-4)


def test_plot_with_roi_masks_unprocessed_positions(ctx, ds):
    roi = np.zeros((4, 6), dtype=bool)
    roi[1:3, ::2] = True
    with pytest.warns(UdfkitWarning, match=AGG):
        res = ctx.run_udf(ds, SumSigUDF(), roi=roi, plots=True)
    shown = ctx.last_plots[0].im_obj.get_array()
    np.testing.assert_array_equal(np.ma.getmaskarray(shown), ~roi)
    np.testing.assert_allclose(shown[roi], res["intensity"].data[roi])
    np.testing.assert_allclose(shown[roi], DATA.sum(axis=(2, 3))[roi], rtol=1e-5)


class Recorder(Live2DPlot):
    """A plot object of LiberTEM's interface that records what it is given."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.calls = []
        self.displayed = False

    def update(self, damage, force=False):
        self.calls.append((np.ma.filled(np.ma.asarray(self.data, dtype=np.float64), np.nan).copy(),
                           np.array(damage), force))

    def display(self):
        self.displayed = True


def test_pluggable_plot_objects_see_partial_results(ctx, ds):
    udf = SumSigUDF()
    rec = Recorder(ds, udf, channel="intensity")  # min_delta=0: every partial result
    res = ctx.run_udf(ds, udf, plots=[rec])
    assert not rec.displayed  # plot objects given by the user are displayed by the user
    assert len(rec.calls) == 4  # three partial results and the forced final one
    assert [force for *_, force in rec.calls] == [False, False, False, True]
    covered = [damage.sum() for _, damage, _ in rec.calls]
    assert covered == sorted(covered) and covered[-1] == 24 and covered[0] < 24
    final, damage, _ = rec.calls[-1]
    np.testing.assert_allclose(final, res["intensity"].data)
    # partial pictures hold the merged values where damage is set
    part, damage, _ = rec.calls[0]
    np.testing.assert_allclose(part[damage], DATA.sum(axis=(2, 3))[damage], rtol=1e-5)


def test_plot_class_on_context_and_callable_channel(ds):
    def ratio(udf_results, damage):
        return udf_results["intensity"].data / 2, damage

    with Context.make_with("inline", plot_class=Dummy2DPlot) as c:
        res = c.run_udf(ds, SumSigUDF(), plots=[[ratio]])  # no warning: Dummy2DPlot draws nothing
        (plot,) = c.last_plots
        assert isinstance(plot, Dummy2DPlot) and plot.title == "SumSigUDF: ratio"
        np.testing.assert_allclose(plot.data, res["intensity"].data / 2)


def test_run_udf_iter_drives_plots(ctx, ds):
    udf = SumUDF()
    rec = Recorder(ds, udf)
    parts = list(ctx.run_udf_iter(ds, udf, plots=[rec]))
    assert len(rec.calls) == len(parts) == 4
    np.testing.assert_allclose(rec.calls[-1][0], parts[-1].buffers[0]["intensity"].data)


def test_one_dimensional_results_are_line_plots(ctx):
    data = np.arange(9 * 4 * 4, dtype=np.uint16).reshape(9, 4, 4)
    ds1 = ctx.load("memory", data=data, sig_dims=2, num_partitions=2)
    with pytest.warns(UdfkitWarning, match=AGG):
        res = ctx.run_udf(ds1, SumSigUDF(), plots=True)
    (plot,) = ctx.last_plots
    np.testing.assert_allclose(plot.im_obj.get_ydata(), res["intensity"].data)
    np.testing.assert_allclose(plot.im_obj.get_ydata(), data.sum(axis=(1, 2)))


class NothingToPlot(UDF):
    def get_result_buffers(self):
        return {"total": self.buffer(kind="single", dtype="float64")}

    def process_frame(self, frame):
        self.results.total[:] += frame.sum()

    def merge(self, dest, src):
        dest.total[:] += src.total


def test_udf_without_plottable_result_warns(ctx, ds):
    with pytest.warns(UdfkitWarning, match=r"UDF #0 NothingToPlot has no 1D or 2D result to plot"):
        res = ctx.run_udf(ds, NothingToPlot(), plots=True)
    assert ctx.last_plots == []
    np.testing.assert_allclose(res["total"].data, DATA.sum(dtype=np.float64), rtol=1e-6)


def test_without_matplotlib_one_warning_and_results(ctx, ds, monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "matplotlib" else real(name, *a))
    with pytest.warns(UdfkitWarning, match=r"matplotlib is not installed \(pip install 'udfkit\[plot\]'\)"):
        res = ctx.run_udf(ds, SumUDF(), plots=True)
    assert ctx.last_plots == []
    np.testing.assert_allclose(res["intensity"].data, DATA.sum(axis=(0, 1)), rtol=1e-5)


@pytest.mark.parametrize("plots, match", [
    ("yes", "plots: expected None, True, a list of channel lists"),
    ([["nope"]], r"channel 'nope' not found or not plottable"),
    ([["intensity"], ["intensity"]], "2 lists of channels for 1 UDFs"),
])
def test_bad_plots_arguments(ctx, ds, plots, match):
    with pytest.raises(ValueError, match=match):
        ctx.run_udf(ds, SumUDF(), plots=plots)


def test_plot_of_another_udf_is_refused(ctx, ds):
    rec = Recorder(ds, SumUDF())
    with pytest.raises(ValueError, match="belongs to a UDF that is not in this run"):
        ctx.run_udf(ds, SumUDF(), plots=[rec])


def test_mpl_plot_made_by_hand(ctx, ds):
    udf = SumSigUDF()
    plot = MPLLive2DPlot(ds, udf, channel="intensity", cmap="gray")
    plot.display()
    assert plot.im_obj.get_cmap().name == "gray"
    res = ctx.run_udf(ds, udf, plots=[plot])
    np.testing.assert_allclose(plot.im_obj.get_array(), res["intensity"].data)


def test_dry_run_and_channels(ds):
    dry = dry_run([SumSigUDF(), SumUDF(), StdDevUDF()], ds)
    assert get_plottable_2D_channels(dry.buffers[0]) == ["intensity"]
    assert not dry.damage.any() and dry.damage.shape == (4, 6)
    nav = dry.buffers[0]["intensity"]
    assert nav.data.shape == (4, 6) and not nav.valid_mask.any()
    assert dry.buffers[1]["intensity"].data.shape == (5, 7)
    assert "num_frames" not in get_plottable_2D_channels(dry.buffers[2])


def test_visualize_simple():
    img = visualize_simple(np.arange(12.0).reshape(3, 4))
    assert img.shape == (3, 4, 4) and img.dtype == np.uint8
    log = visualize_simple(np.arange(12.0).reshape(3, 4), logarithmic=True)
    assert not np.array_equal(img, log)


def test_complex_results_are_plotted_as_magnitude(ctx):
    data = (DATA + 1j * DATA[..., ::-1]).astype(np.complex64)
    dsc = ctx.load("memory", data=data, num_partitions=2)
    with pytest.warns(UdfkitWarning, match=AGG):
        res = ctx.run_udf(dsc, SumSigUDF(), plots=True)
    np.testing.assert_allclose(ctx.last_plots[0].im_obj.get_array(), np.abs(res["intensity"].data))
