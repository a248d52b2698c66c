"""Thunder's *series* operations as series-mode UDFs (:mod:`udfkit.udf.series`).

Each UDF works on one series per pixel: the values of that pixel in every processed frame
(a ROI or ``sync_offset`` selects the frames, as in any run). The definitions are Thunder's
(``thunder/series/series.py``), which are numpy's along the time axis:

==================================  ==========================================================
Thunder                             udfkit
==================================  ==========================================================
mean/std/var/median/min/max/sum     :class:`SeriesStatsUDF` ``stats=("mean", "std", ...)``
percentile of each series           :class:`SeriesStatsUDF` ``percentiles=(q, ...)``
``correlate(signal)``               :class:`SeriesCorrelateUDF`
``center()``                        :class:`SeriesCenterUDF`
``standardize()``                   :class:`SeriesStandardizeUDF`
``zscore()``                        :class:`SeriesZScoreUDF`
``normalize(method, ...)``          :class:`SeriesNormalizeUDF`
``mean_by_index()``                 :class:`SeriesAggregateByIndexUDF` ``(index, "mean")``
``aggregate_by_index(f)``           :class:`SeriesAggregateByIndexUDF` ``(index, f)``
``map(func)``                       :class:`MapSeriesUDF`
==================================  ==========================================================

The UDFs get the stored dtype. ``mean``, ``std``, ``var`` and ``sum`` accumulate in float64
(``ddof=0``, as Thunder's); ``min``, ``max``, ``median`` and ``percentile`` are numpy's on the
stored dtype (linear interpolation), so they equal ``np.median(data, axis=0)`` etc. on the
whole array exactly; every result is stored as float64.
Operations that return a new series per pixel (``center``, ``standardize``, ``zscore``,
``normalize``) write a ``sig`` buffer ``series`` with ``extra_shape=(n_frames,)``: a result as
large as the processed data in float64, which must fit into memory on the main process (the
run checks this before reading).
"""

from __future__ import annotations

import numpy as np

from ...errors import UDFError
from ..base import UDF

__all__ = ["SeriesStatsUDF", "SeriesCorrelateUDF", "SeriesCenterUDF", "SeriesStandardizeUDF",
           "SeriesZScoreUDF", "SeriesNormalizeUDF", "SeriesAggregateByIndexUDF", "MapSeriesUDF",
           "SERIES_STATS"]

#: statistics :class:`SeriesStatsUDF` computes, with their numpy function along axis 0
SERIES_STATS = {
    "mean": lambda x: np.mean(x, axis=0, dtype=np.float64),
    "std": lambda x: np.std(x, axis=0, dtype=np.float64),
    "var": lambda x: np.var(x, axis=0, dtype=np.float64),
    "sum": lambda x: np.sum(x, axis=0, dtype=np.float64),
    "min": lambda x: np.min(x, axis=0),
    "max": lambda x: np.max(x, axis=0),
    "median": lambda x: np.median(x, axis=0),
}


def _real(udf) -> None:
    """Refuse complex data before anything is read (``get_result_buffers`` runs in the plan)."""
    if np.dtype(udf.meta.input_dtype).kind == "c":
        raise UDFError(f"{type(udf).__name__} is defined for real data, but the data set holds "
                       f"{udf.meta.dataset_dtype}; use the magnitude or the real part (for "
                       "instance ctx.export of a MapUDF's result) first")


def _nav_vector(udf, value, name: str) -> np.ndarray:
    """A per-frame parameter (one entry per position of the flattened nav axis), cut to the
    processed frames of this run."""
    arr = np.asarray(value)
    nav = udf.meta.dataset_shape.nav
    if arr.shape[:1] == (udf.meta.series_length,) and udf.meta.series_length != nav.size:
        return arr  # already one entry per processed frame
    if arr.shape[:nav.dims] == nav.to_tuple() and nav.dims > 1:
        arr = arr.reshape((nav.size,) + arr.shape[nav.dims:])
    if arr.shape[:1] != (nav.size,):
        raise UDFError(f"{type(udf).__name__}: {name} must have one entry per frame: "
                       f"{nav.size} (the nav shape {nav.to_tuple()} flattened) or "
                       f"{udf.meta.series_length} (the processed frames), got shape {arr.shape}")
    roi = udf.meta.roi
    return arr if roi is None else arr[np.asarray(roi).reshape(-1)]


class _SeriesUDF(UDF):
    """Series built-ins read the stored dtype: numpy's functions then promote exactly as on
    the whole array (``np.median`` of int16 data computes in float64, of float32 data in
    float32), and no float copy of the block is made where none is needed."""

    def get_preferred_input_dtype(self):
        return self.USE_NATIVE_DTYPE


class SeriesStatsUDF(_SeriesUDF):
    """Per-pixel statistics along the series: Thunder's series statistics.

    Parameters
    ----------
    stats : sequence of str
        Any of ``"mean"``, ``"std"``, ``"var"``, ``"sum"``, ``"min"``, ``"max"``, ``"median"``;
        each is a ``sig`` result of that name (float64).
    percentiles : sequence of float, optional
        ``q`` in [0, 100]; result ``percentile`` (sig, ``extra_shape=(len(q),)``), numpy's
        ``percentile`` along the series (linear interpolation).

    Examples
    --------
    >>> import numpy as np
    >>> from udfkit import Context
    >>> data = np.arange(3 * 2 * 2, dtype="float32").reshape(3, 2, 2)
    >>> ctx = Context.make_with("inline")
    >>> ds = ctx.load("memory", data=data, sig_dims=2)
    >>> res = ctx.run_udf(ds, SeriesStatsUDF(stats=("mean", "median"), percentiles=(50,)))
    >>> res["median"].data
    array([[4., 5.],
           [6., 7.]])
    >>> res["percentile"].data[..., 0].tolist() == res["median"].data.tolist()
    True
    """

    def __init__(self, stats=("mean", "std"), percentiles=()):
        stats = (stats,) if isinstance(stats, str) else tuple(stats)
        unknown = [s for s in stats if s not in SERIES_STATS]
        if unknown:
            raise UDFError(f"SeriesStatsUDF: unknown stats {unknown}; choose from {list(SERIES_STATS)}")
        q = tuple(float(x) for x in np.atleast_1d(percentiles))
        if any(not 0 <= x <= 100 for x in q):
            raise UDFError(f"SeriesStatsUDF: percentiles must lie in [0, 100], got {list(q)}")
        if not stats and not q:
            raise UDFError("SeriesStatsUDF: give at least one of stats or percentiles")
        super().__init__(stats=stats, percentiles=q)

    def get_result_buffers(self):
        _real(self)
        out = {s: self.buffer(kind="sig", dtype="float64") for s in self.params.stats}
        if self.params.percentiles:
            out["percentile"] = self.buffer(kind="sig", extra_shape=(len(self.params.percentiles),),
                                            dtype="float64")
        return out

    def process_series(self, block):
        for s in self.params.stats:
            self.results[s][...] = SERIES_STATS[s](block)
        if self.params.percentiles:
            p = np.percentile(block, self.params.percentiles, axis=0)
            self.results.percentile[...] = np.moveaxis(p, 0, -1)


class SeriesCorrelateUDF(_SeriesUDF):
    """Pearson correlation of each pixel's series with a signal: Thunder's ``correlate``.

    Parameters
    ----------
    signal : array_like
        One entry per frame (shape ``(n,)``), or several signals ``(k, n)``; ``n`` is the
        flattened nav size (the entries of the processed frames are used) or the number of
        processed frames. Result ``correlation``: sig, or sig with ``extra_shape=(k,)``.

    Notes
    -----
    ``corrcoef(x, s)[0, 1]`` per pixel: a constant series has no correlation (NaN), as in numpy.

    Examples
    --------
    >>> import numpy as np
    >>> from udfkit import Context
    >>> t = np.arange(4.0)
    >>> data = np.stack([t, -t]).T.reshape(4, 1, 2).astype("float32")
    >>> ds = Context.make_with("inline").load("memory", data=data, sig_dims=2)
    >>> Context.make_with("inline").run_udf(ds, SeriesCorrelateUDF(signal=t))["correlation"].data
    array([[ 1., -1.]])
    """

    def __init__(self, signal=None):
        s = np.asarray(signal, dtype=np.float64)
        if s.ndim not in (1, 2):
            raise UDFError(f"SeriesCorrelateUDF: signal must have 1 or 2 dimensions, got shape {s.shape}")
        super().__init__(signal=s)

    def _signals(self):
        s = self.params.signal
        s2 = s if s.ndim == 2 else s[None]
        return np.stack([_nav_vector(self, row, "signal") for row in s2])

    def get_result_buffers(self):
        _real(self)
        s = self.params.signal
        self._signals()  # checks the length
        extra = () if s.ndim == 1 else (s.shape[0],)
        return {"correlation": self.buffer(kind="sig", extra_shape=extra, dtype="float64")}

    def process_series(self, block):
        x = block.reshape(block.shape[0], -1).astype(np.float64)
        xc = x - x.mean(axis=0)
        sig = self._signals()
        sc = sig - sig.mean(axis=1, keepdims=True)
        with np.errstate(divide="ignore", invalid="ignore"):
            r = (sc @ xc) / np.sqrt((sc * sc).sum(axis=1)[:, None] * (xc * xc).sum(axis=0)[None])
        r = np.clip(r, -1.0, 1.0)  # as corrcoef does
        out = r.T.reshape(block.shape[1:] + (sig.shape[0],))
        if self.params.signal.ndim == 1:
            out = out[..., 0]
        self.results.correlation[...] = out


class _SeriesTransformUDF(_SeriesUDF):
    """A new series per pixel (``series``: sig, ``extra_shape=(n_frames,)``, float64)."""

    def get_result_buffers(self):
        _real(self)
        return {"series": self.buffer(kind="sig", extra_shape=(self.meta.series_length,),
                                      dtype="float64")}

    def process_series(self, block):
        x = block.astype(np.float64)
        with np.errstate(divide="ignore", invalid="ignore"):
            self.results.series[...] = np.moveaxis(self._transform(x), 0, -1)

    def _transform(self, x):
        raise NotImplementedError  # pragma: no cover - every subclass defines it


class SeriesCenterUDF(_SeriesTransformUDF):
    """Each series minus its mean: Thunder's ``center()`` (``x - mean(x)``).

    Examples
    --------
    >>> import numpy as np
    >>> from udfkit import Context
    >>> ctx = Context.make_with("inline")
    >>> ds = ctx.load("memory", data=np.array([1., 2., 6.]).reshape(3, 1, 1), sig_dims=2)
    >>> ctx.run_udf(ds, SeriesCenterUDF())["series"].data[0, 0]
    array([-2., -1.,  3.])
    """

    def _transform(self, x):
        return x - x.mean(axis=0)


class SeriesStandardizeUDF(_SeriesTransformUDF):
    """Each series divided by its standard deviation (``ddof=0``): Thunder's ``standardize()``.

    Examples
    --------
    >>> import numpy as np
    >>> from udfkit import Context
    >>> ctx = Context.make_with("inline")
    >>> ds = ctx.load("memory", data=np.array([1., 3.]).reshape(2, 1, 1), sig_dims=2)
    >>> ctx.run_udf(ds, SeriesStandardizeUDF())["series"].data[0, 0]
    array([1., 3.])
    """

    def _transform(self, x):
        return x / x.std(axis=0)


class SeriesZScoreUDF(_SeriesTransformUDF):
    """``(x - mean(x)) / std(x)`` per series (``ddof=0``): Thunder's ``zscore()``.

    Examples
    --------
    >>> import numpy as np
    >>> from udfkit import Context
    >>> ctx = Context.make_with("inline")
    >>> ds = ctx.load("memory", data=np.array([1., 3.]).reshape(2, 1, 1), sig_dims=2)
    >>> ctx.run_udf(ds, SeriesZScoreUDF())["series"].data[0, 0]
    array([-1.,  1.])
    """

    def _transform(self, x):
        return (x - x.mean(axis=0)) / x.std(axis=0)


class SeriesNormalizeUDF(_SeriesTransformUDF):
    """``(x - b) / (b + offset)`` per series for a baseline ``b``: Thunder's ``normalize``
    (ΔF/F with a percentile baseline by default).

    Parameters
    ----------
    method : {"percentile", "mean", "window", "window-exact"}
        The baseline: the series' ``perc`` percentile, its mean, a running ``perc``
        percentile over ``window`` frames (``scipy.ndimage.percentile_filter`` with
        ``mode="nearest"``), or the exact running percentile over frames
        ``[i - left, i + right]`` clipped to the series (``left = right = window // 2`` for an
        even window, ``left = ceil(window / 2)``, ``right = left + 1`` for an odd one, as in
        Thunder).
    window : int, optional
        For the window methods (default 6, Thunder's documented default).
    perc : float
        Percentile of the baseline (default 20).
    offset : float
        Added to the baseline in the denominator (default 0.1).

    Examples
    --------
    >>> import numpy as np
    >>> from udfkit import Context
    >>> ctx = Context.make_with("inline")
    >>> ds = ctx.load("memory", data=np.array([1., 1., 3.]).reshape(3, 1, 1), sig_dims=2)
    >>> ctx.run_udf(ds, SeriesNormalizeUDF(method="mean", offset=0))["series"].data[0, 0]
    array([-0.4, -0.4,  0.8])
    """

    METHODS = ("percentile", "mean", "window", "window-exact")

    def __init__(self, method="percentile", window=None, perc=20, offset=0.1):
        if method not in self.METHODS:
            raise UDFError(f"SeriesNormalizeUDF: method must be one of {self.METHODS}, got {method!r}")
        if method.startswith("window"):
            window = 6 if window is None else window
            if int(window) != window or window < 1:
                raise UDFError(f"SeriesNormalizeUDF: window must be a positive int, got {window!r}")
            window = int(window)
        elif window is not None:
            raise UDFError(f"SeriesNormalizeUDF: window= applies to the 'window' and 'window-exact' "
                           f"methods only, not to {method!r}")
        if not 0 <= float(perc) <= 100:
            raise UDFError(f"SeriesNormalizeUDF: perc must lie in [0, 100], got {perc!r}")
        super().__init__(method=method, window=window, perc=float(perc), offset=float(offset))

    def _baseline(self, x):
        p = self.params
        if p.method == "mean":
            return x.mean(axis=0)
        if p.method == "percentile":
            return np.percentile(x, p.perc, axis=0)
        if p.method == "window":
            from scipy.ndimage import percentile_filter

            size = (p.window,) + (1,) * (x.ndim - 1)
            return percentile_filter(x, p.perc, size=size, mode="nearest")
        n = x.shape[0]
        w = p.window
        left, right = ((-(-w // 2), -(-w // 2) + 1) if w & 1 else (w // 2, w // 2))
        out = np.empty_like(x)
        for i in range(n):
            out[i] = np.percentile(x[max(i - left, 0):min(i + right + 1, n)], p.perc, axis=0)
        return out

    def _transform(self, x):
        b = self._baseline(x)
        return (x - b) / (b + self.params.offset)


_AGGREGATES = {"mean": np.mean, "sum": np.sum, "median": np.median, "std": np.std,
               "min": np.min, "max": np.max, "count": np.size}


class SeriesAggregateByIndexUDF(_SeriesUDF):
    """One value per label and pixel: Thunder's ``aggregate_by_index`` / ``mean_by_index``
    (and ``sum_by_index``, ``median_by_index``, ... through ``function``).

    Parameters
    ----------
    index : array_like
        One label per frame (flattened nav size, or the number of processed frames).
    function : str or callable
        ``"mean"`` (``mean_by_index``), ``"sum"``, ``"median"``, ``"std"``, ``"min"``, ``"max"``,
        ``"count"``, or ``f(values, axis=0)`` reducing the frames of one label.

    Results: ``values`` (sig, ``extra_shape=(n_labels,)``, float64) in the order of ``labels``
    (single, the sorted unique labels of the processed frames, as Thunder orders them).

    Examples
    --------
    >>> import numpy as np
    >>> from udfkit import Context
    >>> ctx = Context.make_with("inline")
    >>> ds = ctx.load("memory", data=np.arange(4.0).reshape(4, 1, 1), sig_dims=2)
    >>> res = ctx.run_udf(ds, SeriesAggregateByIndexUDF(index=[0, 1, 0, 1]))
    >>> res["labels"].data.tolist(), res["values"].data[0, 0].tolist()
    ([0, 1], [1.0, 2.0])
    """

    def __init__(self, index=None, function="mean"):
        index = np.asarray(index)
        if index.ndim != 1:
            raise UDFError(f"SeriesAggregateByIndexUDF: index must be 1-D (one label per frame), "
                           f"got shape {index.shape}")
        if isinstance(function, str):
            if function not in _AGGREGATES:
                raise UDFError(f"SeriesAggregateByIndexUDF: function must be one of "
                               f"{list(_AGGREGATES)} or a callable, got {function!r}")
        elif not callable(function):
            raise UDFError("SeriesAggregateByIndexUDF: function must be a name or a callable")
        super().__init__(index=index, function=function)

    def _labels(self):
        idx = _nav_vector(self, self.params.index, "index")
        return idx, np.unique(idx)

    def get_result_buffers(self):
        _, labels = self._labels()
        return {"values": self.buffer(kind="sig", extra_shape=(labels.size,), dtype="float64"),
                "labels": self.buffer(kind="single", extra_shape=(labels.size,),
                                      dtype=labels.dtype, use="result_only")}

    def process_series(self, block):
        idx, labels = self._labels()
        f = self.params.function
        f = _AGGREGATES[f] if isinstance(f, str) else f
        for j, lab in enumerate(labels):
            self.results["values"][..., j] = f(block[idx == lab], axis=0)

    def get_results(self):
        return {"values": self.results["values"], "labels": self._labels()[1]}


class MapSeriesUDF(_SeriesUDF):
    """Apply ``func`` to every pixel's series: Thunder's ``Series.map``.

    Parameters
    ----------
    func : callable
        ``func(series) -> scalar or array`` on a 1-D series; with ``vectorized=True``,
        ``func(block)`` on ``(n_frames, pixels)`` returning ``(pixels, *extra_shape)``.
    dtype : dtype
        Of the result (default float64).
    extra_shape : tuple of int
        Shape of ``func``'s output per pixel (default scalar); ``"series"`` stands for
        ``(n_frames,)``.
    vectorized : bool

    Result ``result``: sig with ``extra_shape``.

    Examples
    --------
    >>> import numpy as np
    >>> from udfkit import Context
    >>> ctx = Context.make_with("inline")
    >>> ds = ctx.load("memory", data=np.arange(6.0).reshape(3, 1, 2), sig_dims=2)
    >>> ctx.run_udf(ds, MapSeriesUDF(func=lambda s: s.max() - s.min()))["result"].data
    array([[4., 4.]])
    """

    def __init__(self, func=None, dtype="float64", extra_shape=(), vectorized=False):
        if not callable(func):
            raise UDFError(f"MapSeriesUDF: func must be a callable taking a series, got "
                           f"{type(func).__name__}")
        if extra_shape != "series":
            extra_shape = tuple(int(e) for e in np.atleast_1d(extra_shape)) if extra_shape != () else ()
        super().__init__(func=func, dtype=np.dtype(dtype).str, extra_shape=extra_shape,
                         vectorized=bool(vectorized))

    def _extra(self):
        e = self.params.extra_shape
        return (self.meta.series_length,) if e == "series" else tuple(e)

    def get_result_buffers(self):
        return {"result": self.buffer(kind="sig", extra_shape=self._extra(), dtype=self.params.dtype)}

    def process_series(self, block):
        x = block.reshape(block.shape[0], -1)
        out = self.results.result.reshape((x.shape[1],) + self._extra())
        f = self.params.func
        if self.params.vectorized:
            out[...] = np.asarray(f(x)).reshape(out.shape)
        else:
            for j in range(x.shape[1]):
                out[j] = f(x[:, j])
