"""The live-plot interface (LiberTEM's ``Live2DPlot``) and how a run drives plots.

A run with plots goes like this: before any data is read, a *dry run* gives each UDF's
results as they look with nothing processed (declared shapes, nav entries unset); the
channels to plot are chosen from them; every plot is created and displayed. After each
merged partition every plot gets ``new_data(results_of_its_udf, damage)`` (throttled by its
``min_delta``), and once more with ``force=True`` at the end, so that the last picture is
the final result.
"""

from __future__ import annotations

import importlib.util
import time
import warnings
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import ArrayLike

from ..errors import UdfkitWarning

if TYPE_CHECKING:
    from ..io.base import DataSet
    from ..udf.base import UDF

__all__ = ["Live2DPlot", "Dummy2DPlot", "DryRunResults", "get_plottable_2D_channels",
           "visualize_simple", "rgb_from_2dvector", "dry_run", "prepare_plots", "update_plots"]


class DryRunResults:
    """What a run's results look like before anything is processed.

    Attributes
    ----------
    buffers : list of dict
        ``{name: BufferResult}`` per UDF: nav results unset (NaN / 0, ``valid_mask`` False),
        sig and single results zero.
    damage : numpy.ndarray of bool
        Nav-shaped, all False.
    """

    def __init__(self, buffers: list[dict[str, Any]], damage: np.ndarray):
        self.buffers = buffers
        self.damage = damage


def dry_run(udfs: Sequence[UDF], dataset: DataSet, roi: Any = None) -> DryRunResults:
    """The results of ``udfs`` on ``dataset`` as they look before the first partition.

    Nothing is read: the buffers come from each UDF's declarations (with its ``meta`` set
    as in a run, so declarations that depend on the data set or the ROI come out right).

    Examples
    --------
    >>> import numpy as np
    >>> from udfkit import Context
    >>> from udfkit.udf import SumSigUDF
    >>> ds = Context.make_with("inline").load("memory", data=np.ones((2, 3, 4, 4)))
    >>> res = dry_run([SumSigUDF()], ds)
    >>> res.buffers[0]["intensity"].data.shape, bool(res.buffers[0]["intensity"].valid_mask.any())
    ((2, 3), False)
    """
    from ..udf.buffers import buffer_shape
    from ..udf.driver import UDFRun
    from ..udf.results import BufferResult

    udfs = list(udfs)
    run = UDFRun(dataset, udfs, roi=roi)
    nav_shape, sig_shape = run.nav_shape, run.sig_shape
    buffers = []
    for specs in run.specs:
        out = {}
        for name, spec in specs.items():
            if spec.use == "private":
                continue
            raw = np.zeros(buffer_shape(spec, 0, sig_shape), dtype=spec.dtype)
            out[name] = BufferResult(raw, kind=spec.kind, nav_shape=nav_shape,
                                     extra_shape=spec.extra_shape,
                                     positions=np.zeros(0, dtype=np.int64) if spec.kind == "nav" else None)
        buffers.append(out)
    return DryRunResults(buffers, np.zeros(nav_shape, dtype=bool))


def get_plottable_2D_channels(buffers: Mapping[str, Any]) -> list:
    """Names of the results that are 2D once axes of length 1 are dropped (LiberTEM's rule).

    Examples
    --------
    >>> import numpy as np
    >>> from udfkit.udf import BufferResult
    >>> get_plottable_2D_channels({
    ...     "img": BufferResult(np.zeros((3, 4)), kind="sig", nav_shape=(2,)),
    ...     "n": BufferResult(np.zeros(1), kind="single", nav_shape=(2,))})
    ['img']
    """
    return [k for k, buf in buffers.items() if np.squeeze(buf.data).ndim == 2]


def get_plottable_channels(buffers) -> list:
    """Names of the results that are 1D or 2D once axes of length 1 are dropped."""
    return [k for k, buf in buffers.items() if np.squeeze(buf.data).ndim in (1, 2)]


def _display_limits(data, damage) -> tuple[float, float]:
    """Colour range over the finite values at damaged (processed) positions."""
    values = np.asarray(data)[damage] if np.ndim(damage) else np.asarray(data).ravel()
    values = np.asarray(values, dtype=np.float64)
    values = values[np.isfinite(values)]
    if values.size == 0:
        return 0.0, 1.0
    lo, hi = float(values.min()), float(values.max())
    if lo == hi:
        hi = lo + (abs(lo) * 1e-6 or 1.0)
    return lo, hi


def visualize_simple(result: ArrayLike, colormap: Any = None, logarithmic: bool = False,
                     vmin: float | None = None, vmax: float | None = None,
                     damage: Any = None) -> np.ndarray:
    """RGBA image (``uint8``, shape ``result.shape + (4,)``) of a 2D result (needs matplotlib).

    Parameters
    ----------
    result : numpy.ndarray
    colormap : matplotlib colormap, optional
        Default ``gist_earth``, as LiberTEM.
    logarithmic : bool
        Logarithmic colour scale (the data are shifted to start at 1).
    vmin, vmax : float, optional
        Colour range; default the range of the finite values where ``damage`` is True.
    damage : numpy.ndarray of bool, optional
        Which entries count for the colour range (default: the non-zero ones).
    """
    from matplotlib import colormaps, colors

    data = np.asarray(result)
    if data.dtype.kind == "c":
        data = np.abs(data)
    data = data.astype(np.float64)
    if logarithmic:
        finite = data[np.isfinite(data)]
        data = data - (finite.min() if finite.size else 0) + 1
    if damage is None:
        damage = data != 0
    damage = np.broadcast_to(np.asarray(damage, dtype=bool), data.shape) & np.isfinite(data)
    lo, hi = _display_limits(data, damage)
    vmin = lo if vmin is None else vmin
    vmax = hi if vmax is None else vmax
    norm = (colors.LogNorm if logarithmic else colors.Normalize)(vmin=vmin, vmax=vmax)
    cmap = colormaps["gist_earth"] if colormap is None else colormap
    return cmap(norm(data), bytes=True)


def rgb_from_2dvector(y: ArrayLike, x: ArrayLike, vmax: float | None = None) -> np.ndarray:
    """RGB picture (``uint8``, shape ``y.shape + (3,)``) of a 2D vector field (needs matplotlib).

    The hue is the direction, the brightness the length relative to ``vmax`` (default: the
    largest finite length). LiberTEM's function has the same signature and meaning; its
    colour wheel (an isoluminant cyclic map) differs from this one (matplotlib's ``hsv``).

    Examples
    --------
    >>> rgb = rgb_from_2dvector(y=np.array([[0.0, 1.0]]), x=np.array([[1.0, 0.0]]))
    >>> rgb.shape, rgb.dtype
    ((1, 2, 3), dtype('uint8'))
    """
    from matplotlib import colormaps

    y = np.asarray(y, dtype=np.float64)
    x = np.asarray(x, dtype=np.float64)
    length = np.hypot(x, y)
    finite = np.isfinite(length)
    if vmax is None:
        vmax = length[finite].max() if finite.any() else 1.0
    vmax = vmax or 1.0
    hue = (np.arctan2(y, x) + np.pi) / (2 * np.pi)
    rgba = colormaps["hsv"](np.nan_to_num(hue))
    rgba[..., :3] *= np.clip(np.nan_to_num(length / vmax), 0, 1)[..., np.newaxis]
    return (rgba[..., :3] * 255).astype(np.uint8)


class Live2DPlot:
    """Base class of live plots (LiberTEM's interface); subclasses draw.

    Parameters
    ----------
    dataset : DataSet
        The data set the UDF will run on (for the shapes of the results).
    udf : UDF
        The very instance passed to ``run_udf``.
    roi : optional
        The run's ROI (results such as ``PickUDF``'s depend on it).
    channel : None, str, (str, callable) or callable
        ``None``: the first plottable result; a name; a name and a function applied to the
        result's ``.data``; or a function ``(udf_results, damage) -> (array, damage)``.
    title : str, optional
        Default ``"<UDF class>: <channel>"``.
    min_delta : float
        Seconds between redraws at least (forced redraws excepted).
    udfresult : DryRunResults, optional
        Results to start from (default: :func:`dry_run` of ``udf``).
    """

    def __init__(self, dataset: DataSet, udf: UDF, roi: Any = None, channel: Any = None,
                 title: str | None = None, min_delta: float = 0,
                 udfresult: DryRunResults | None = None):
        if udfresult is None:
            udfresult = dry_run([udf], dataset, roi)
        buffers = udfresult.buffers[0]
        eligible = get_plottable_channels(buffers)
        if channel is None:
            if not eligible:
                raise ValueError(f"no plottable (1D or 2D) result in {type(udf).__name__}: "
                                 f"have {sorted(buffers)}")
            channel = eligible[0]
        if callable(channel):
            extract, channel_title, channel = channel, getattr(channel, "__name__", "f"), None
        elif isinstance(channel, (tuple, list)):
            name, func = channel
            if name not in buffers:
                raise ValueError(f"channel {name!r} not found in {type(udf).__name__}'s results, "
                                 f"have: {sorted(buffers)}")
            is_nav = buffers[name].kind == "nav"

            def extract(udf_results, damage, name=name, func=func, is_nav=is_nav):
                return func(udf_results[name].data), (damage if is_nav else True)

            channel_title = f"{getattr(func, '__name__', 'f')}({name})"
            channel = name
        else:
            if channel not in eligible:
                raise ValueError(f"channel {channel!r} not found or not plottable (1D/2D) in "
                                 f"{type(udf).__name__}'s results, have: {eligible}")
            extract, channel_title = None, channel
        self._extract = extract
        self.channel = channel
        self.title = f"{type(udf).__name__}: {channel_title}" if title is None else title
        self.udf = udf
        self.min_delta = min_delta
        self.last_update = 0.0
        self.data, _ = self.extract(buffers, udfresult.damage)

    def get_udf(self) -> UDF:
        """The UDF instance this plot belongs to."""
        return self.udf

    def extract(self, udf_results: Mapping[str, Any], damage: Any) -> tuple[Any, Any]:
        """``(data, damage)`` to plot from a UDF's (partial) results.

        The default is the channel's ``masked_data`` with its ``valid_mask``, without
        axes of length 1.
        """
        if self._extract is None:
            buffer = udf_results[self.channel]
            return np.ma.squeeze(buffer.masked_data), np.squeeze(buffer.valid_mask)
        return self._extract(udf_results, damage)

    def new_data(self, udf_results: Mapping[str, Any], damage: Any, force: bool = False) -> None:
        """Take new (partial) results; redraw unless the last redraw is under ``min_delta`` ago."""
        t0 = time.time()
        if not force and t0 - self.last_update < self.min_delta:
            return
        self.data, damage = self.extract(udf_results, damage)
        values = np.ma.asarray(self.data)
        if values.dtype.kind == "c":
            values = np.ma.abs(values)
        # masked entries (not processed yet) count as not finite
        finite = np.isfinite(np.ma.filled(values.astype(np.float64), np.nan))
        if hasattr(damage, "shape"):
            extra = tuple(range(np.ndim(damage), finite.ndim))
            if extra:
                finite = finite.all(axis=extra)
        damage = damage & finite
        self.update(damage, force=force)
        self.last_update = time.time()

    def update(self, damage: Any, force: bool = False) -> None:
        """Redraw from ``self.data``; ``damage`` marks the entries that hold values."""
        raise NotImplementedError(f"{type(self).__name__} must implement update()")

    def display(self) -> None:
        """Show the plot (a window, or the current notebook cell)."""
        raise NotImplementedError(f"{type(self).__name__} must implement display()")


class Dummy2DPlot(Live2DPlot):
    """A plot that draws nothing but keeps ``data`` up to date (for tests and batch runs)."""

    def update(self, damage: Any, force: bool = False) -> None:
        self.damage = damage

    def display(self) -> None:
        pass


def _is_plot(obj) -> bool:
    return all(callable(getattr(obj, m, None)) for m in ("get_udf", "new_data"))


def prepare_plots(ctx: Any, dataset: DataSet, udfs: Sequence[UDF], roi: Any, plots: Any) -> list:
    """The plots of ``run_udf(plots=...)``, created and displayed (see :mod:`udfkit.viz`).

    Returns an empty list (after one warning) where nothing can be plotted.
    """
    udfs = list(udfs)
    if isinstance(plots, (list, tuple)) and plots and all(_is_plot(p) for p in plots):
        for p in plots:
            if not any(p.get_udf() is u for u in udfs):
                raise ValueError(f"plots: {type(p).__name__} {getattr(p, 'title', '')!r} belongs to "
                                 "a UDF that is not in this run; create it with the UDF instance "
                                 "passed to run_udf")
        return list(plots)
    plot_class = ctx.plot_class
    from .mpl import MPLLive2DPlot

    if issubclass(plot_class, MPLLive2DPlot):
        if importlib.util.find_spec("matplotlib") is None:
            warnings.warn("plots: matplotlib is not installed (pip install 'udfkit[plot]'); "
                          "running without plots", UdfkitWarning, stacklevel=4)
            return []
    dry = dry_run(udfs, dataset, roi)
    if plots is True:
        channels = []
        for i, (u, buffers) in enumerate(zip(udfs, dry.buffers)):
            names = get_plottable_channels(buffers)
            if not names:
                warnings.warn(f"plots: UDF #{i} {type(u).__name__} has no 1D or 2D result to plot "
                              f"(results: {sorted(buffers)}); not plotting it", UdfkitWarning,
                              stacklevel=4)
            channels.append(names)
    elif isinstance(plots, (list, tuple)) and all(isinstance(p, (list, tuple)) for p in plots):
        channels = list(plots)
        if len(channels) > len(udfs):
            raise ValueError(f"plots: {len(channels)} lists of channels for {len(udfs)} UDFs")
    else:
        raise ValueError(f"plots: expected None, True, a list of channel lists per UDF (e.g. "
                         f"[['intensity']]) or a list of plot objects, got {plots!r}")
    made = []
    for u, chans, buffers in zip(udfs, channels, dry.buffers):
        for ch in chans:
            p = plot_class(dataset, udf=u, roi=roi, channel=ch,
                           udfresult=DryRunResults([buffers], dry.damage))
            p.display()
            made.append(p)
    if made and issubclass(plot_class, MPLLive2DPlot):
        from .mpl import _backend_can_show

        can, backend = _backend_can_show()
        if not can:
            warnings.warn(f"plots: matplotlib's backend {backend!r} cannot show figures (no "
                          "display); they are drawn off-screen, see ctx.last_plots[i].fig",
                          UdfkitWarning, stacklevel=4)
    return made


def update_plots(plots: Sequence[Live2DPlot], udfs: Sequence[UDF], results: Any,
                 force: bool = False) -> None:
    """Hand the (partial) ``results`` (a :class:`~udfkit.udf.RunResults`) to every plot."""
    damage = results.damage
    if not isinstance(damage, np.ndarray):
        # LiberTEM's damage is a nav buffer whose ``.data`` is the array
        damage = np.asarray(getattr(damage, "data", damage), dtype=bool)
    for p in plots:
        u = p.get_udf()
        index = next(i for i, v in enumerate(udfs) if v is u)
        p.new_data(results.buffers[index], damage, force=force)
