"""Live plots drawn with matplotlib (the optional extra ``plot``)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from .base import DryRunResults, Live2DPlot, _display_limits

if TYPE_CHECKING:
    from ..io.base import DataSet
    from ..udf.base import UDF

__all__ = ["MPLLive2DPlot"]

#: matplotlib backends that draw into files or buffers only
_NON_INTERACTIVE = {"agg", "cairo", "pdf", "pgf", "ps", "svg", "template"}


def _backend_can_show() -> tuple[bool, str]:
    """``(can show figures, backend name)`` of the current matplotlib backend."""
    import matplotlib

    backend = matplotlib.get_backend()
    return backend.lower() not in _NON_INTERACTIVE, backend


def _is_inline(backend: str) -> bool:
    return "inline" in backend.lower() or "ipympl" in backend.lower()


class MPLLive2DPlot(Live2DPlot):
    """A live plot in a matplotlib figure: an image for 2D data, a line for 1D data.

    Parameters are those of :class:`~udfkit.viz.base.Live2DPlot`; ``min_delta`` defaults
    to 0.5 s, and other keyword arguments go to ``imshow`` (2D) or ``plot`` (1D).

    Attributes
    ----------
    fig, axes : matplotlib objects
        Set by :meth:`display`. With a backend that cannot show windows (Agg) the figure is
        not registered with pyplot, so that batch runs do not pile up open figures.
    im_obj : matplotlib artist
        The image (``AxesImage``) or line (``Line2D``) that holds the data.

    Examples
    --------
    >>> import matplotlib
    >>> matplotlib.use("Agg")
    >>> import numpy as np
    >>> from udfkit import Context
    >>> from udfkit.udf import SumSigUDF
    >>> from udfkit.viz.mpl import MPLLive2DPlot
    >>> ctx = Context.make_with("inline")
    >>> ds = ctx.load("memory", data=np.arange(2 * 3 * 2 * 2).reshape(2, 3, 2, 2))
    >>> udf = SumSigUDF()
    >>> plot = MPLLive2DPlot(ds, udf, channel="intensity")
    >>> plot.display()
    >>> res = ctx.run_udf(ds, udf, plots=[plot])
    >>> np.array_equal(plot.im_obj.get_array(), res["intensity"].data)
    True
    """

    def __init__(self, dataset: DataSet, udf: UDF, roi: Any = None, channel: Any = None,
                 title: str | None = None, min_delta: float = 0.5,
                 udfresult: DryRunResults | None = None, **kwargs: Any):
        super().__init__(dataset, udf, roi=roi, channel=channel, title=title, min_delta=min_delta,
                         udfresult=udfresult)
        self.kwargs = kwargs
        # matplotlib objects (matplotlib is imported only when the plot is displayed)
        self.fig: Any = None
        self.axes: Any = None
        self.im_obj: Any = None
        self._handle: Any = None

    @staticmethod
    def _plottable(data):
        data = np.ma.asarray(data)
        return np.ma.abs(data) if data.dtype.kind == "c" else data

    def display(self) -> None:
        """Create the figure and show it (a window, or the notebook cell)."""
        can_show, backend = _backend_can_show()
        if can_show:
            import matplotlib.pyplot as plt

            self.fig, self.axes = plt.subplots()
        else:
            from matplotlib.figure import Figure

            self.fig = Figure()
            self.axes = self.fig.subplots()
        data = self._plottable(self.data)
        if data.ndim == 1:
            (self.im_obj,) = self.axes.plot(np.ma.filled(data.astype(np.float64), np.nan),
                                            **self.kwargs)
        else:
            self.im_obj = self.axes.imshow(data, **self.kwargs)
            self.fig.colorbar(self.im_obj, ax=self.axes)
        self.axes.set_title(self.title)
        if can_show:
            if _is_inline(backend):
                try:
                    from IPython.display import display

                    self._handle = display(self.fig, display_id=True)
                except ImportError:  # pragma: no cover - inline backends come with IPython
                    self._handle = None
            else:
                self.fig.show()

    def update(self, damage: Any, force: bool = False) -> None:
        """Put ``self.data`` into the figure; the colour range covers the processed entries."""
        if self.im_obj is None:
            # LiberTEM warns here; a plot created without display() simply keeps its data
            return
        data = self._plottable(self.data)
        given = np.asarray(damage, dtype=bool)
        # a custom extract's damage that does not match the data: use all
        valid = True if given.ndim == 0 or given.shape != data.shape[:given.ndim] else given
        if data.ndim == 1:
            self.im_obj.set_ydata(np.ma.filled(data.astype(np.float64), np.nan))
            self.axes.relim()
            self.axes.autoscale_view()
        else:
            self.im_obj.set_data(data)
            shown = np.ma.filled(data.astype(np.float64), np.nan)
            lo, hi = _display_limits(shown, valid)
            self.im_obj.set_clim(lo, hi)
        self.fig.canvas.draw_idle()
        if self._handle is not None:
            self._handle.update(self.fig)
        else:
            try:
                self.fig.canvas.flush_events()
            except NotImplementedError:  # pragma: no cover - canvases without an event loop
                pass
