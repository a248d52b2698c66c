"""Live plots of UDF results while a run goes, with LiberTEM's plot interface.

``ctx.run_udf(..., plots=True)`` makes one plot per plottable result (1D or 2D once axes of
length 1 are dropped: nav buffers as images over the scan, sig buffers as images of the
detector), updates them after every merged partition and once more with the final result.
A plot is any object with LiberTEM's interface (:class:`~udfkit.viz.base.Live2DPlot`):
``get_udf()``, ``new_data(udf_results, damage, force)``, ``update(damage, force)`` and
``display()``; :class:`~udfkit.viz.mpl.MPLLive2DPlot` draws with matplotlib (the optional
extra ``plot``), :class:`~udfkit.viz.base.Dummy2DPlot` draws nothing.

Where matplotlib is missing, ``plots=`` gives one warning and the run goes on without
plots; with a backend that cannot show windows (Agg, as on a headless machine) the figures
are drawn off-screen, one warning says so, and ``ctx.last_plots`` holds them.
"""

from __future__ import annotations

from .base import (
    Dummy2DPlot,
    Live2DPlot,
    dry_run,
    get_plottable_2D_channels,
    prepare_plots,
    rgb_from_2dvector,
    update_plots,
    visualize_simple,
)

__all__ = ["Live2DPlot", "Dummy2DPlot", "get_plottable_2D_channels", "visualize_simple",
           "rgb_from_2dvector", "dry_run", "prepare_plots", "update_plots"]
