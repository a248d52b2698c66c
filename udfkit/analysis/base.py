"""Analysis base classes and their result containers (LiberTEM's interface)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from ..io.base import DataSet
    from ..udf.base import UDF

__all__ = ["AnalysisResult", "AnalysisResultSet", "Analysis", "BaseAnalysis"]


class AnalysisResult:
    """One result of an analysis: the numbers and, on demand, a picture of them.

    Parameters
    ----------
    raw_data : numpy.ndarray
        The numbers (``np.asarray(result)`` gives them too).
    visualized : numpy.ndarray or callable, optional
        RGBA picture, or a function that makes it; default
        :func:`udfkit.viz.visualize_simple` of ``raw_data`` (needs matplotlib, made on
        first access only).
    title, desc, key : str
        Title, short description, and the key in the :class:`AnalysisResultSet`.
    include_in_download : bool
        LiberTEM's flag for its web GUI; kept for compatibility.
    """

    def __init__(self, raw_data: Any, visualized: Any = None, title: str = "", desc: str = "",
                 key: str = "", include_in_download: bool = True, *, logarithmic: bool = False,
                 damage: Any = None):
        self.raw_data = raw_data
        self.title = title
        self.desc = desc
        self.key = key
        self.include_in_download = include_in_download
        if visualized is None:
            def visualized(raw=raw_data, log=logarithmic, damage=damage):
                from ..viz import visualize_simple

                return visualize_simple(raw, logarithmic=log, damage=damage)
        self._visualized = visualized

    @property
    def visualized(self) -> Any:
        """The RGBA picture (computed on first access)."""
        if callable(self._visualized):
            self._visualized = self._visualized()
        return self._visualized

    def __array__(self, dtype=None, copy=None):
        data = np.asarray(self.raw_data)
        if dtype is not None:
            return data.astype(dtype, copy=bool(copy))
        return data.copy() if copy else data

    def __repr__(self):
        return f"<AnalysisResult: {self.key}>"


class AnalysisResultSet:
    """The results of :meth:`udfkit.Context.run`: by key as attribute or item, by position,
    and in order when iterated.

    Examples
    --------
    >>> import numpy as np
    >>> rs = AnalysisResultSet([AnalysisResult(np.zeros(2), key="a", title="A"),
    ...                         AnalysisResult(np.ones(2), key="b", title="B")])
    >>> rs.a.title, rs["b"].title, rs[0].key, [r.key for r in rs], len(rs)
    ('A', 'B', 'a', ['a', 'b'], 2)
    >>> rs.keys()
    ['a', 'b']
    """

    def __init__(self, results: Any, raw_results: Any = None):
        self._results = results
        self.raw_results = raw_results

    @property
    def results(self) -> list:
        if callable(self._results):
            self._results = self._results()
        return self._results

    def keys(self) -> list:
        return [r.key for r in self.results]

    def __getattr__(self, key):
        if key.startswith("_"):
            raise AttributeError(key)
        for r in self.results:
            if r.key == key:
                return r
        raise AttributeError(f"result with key {key!r} not found, have: {', '.join(self.keys())}")

    def __getitem__(self, k):
        if isinstance(k, str):
            return self.__getattr__(k)
        return self.results[k]

    def __len__(self):
        return len(self.results)

    def __iter__(self):
        return iter(self.results)

    def __repr__(self):
        return repr(self.results)


class Analysis:
    """An analysis: a UDF to run, an optional ROI, and how its results are presented.

    Subclasses implement :meth:`get_udf` and :meth:`get_udf_results`; :meth:`get_roi`
    defaults to the whole data set.
    """

    TYPE = "UDF"

    def __init__(self, dataset: DataSet, parameters: dict):
        self.dataset = dataset

    def get_udf(self) -> UDF:
        """The UDF to run."""
        raise NotImplementedError(f"{type(self).__name__} must implement get_udf()")

    def get_roi(self) -> np.ndarray | None:
        """The ROI to run on when ``ctx.run`` gets none (None: everything)."""
        return None

    def get_udf_results(self, udf_results: Mapping[str, Any], roi: np.ndarray | None,
                        damage: Any) -> AnalysisResultSet:
        """Turn the UDF's ``{name: BufferResult}`` into the analysis's result set."""
        raise NotImplementedError(f"{type(self).__name__} must implement get_udf_results()")

    def get_parameters(self, parameters: dict) -> dict:
        """Defaults of the parameters (overridden by those given)."""
        return dict(parameters)

    def need_rerun(self, old_params: dict, new_params: dict) -> bool:
        return True


class BaseAnalysis(Analysis):
    """An analysis with parameters: defaults from :meth:`get_parameters`, then the given ones."""

    def __init__(self, dataset: DataSet, parameters: dict):
        super().__init__(dataset, parameters)
        self.parameters = self.get_parameters(parameters)
        self.parameters.update(parameters)

    def get_complex_results(self, data: np.ndarray, key_prefix: str, title: str, desc: str,
                            damage: Any, default_lin: bool = True) -> list:
        """LiberTEM's entries of a complex result: magnitude (linear and log), real,
        imaginary, angle and the complex numbers."""
        magn = np.abs(data)
        lin_key, log_key = ((key_prefix, f"{key_prefix}_log") if default_lin
                            else (f"{key_prefix}_lin", key_prefix))
        parts = [
            (magn, lin_key, f"{title} [magn]", False),
            (magn, log_key, f"{title} [log(magn)]", True),
            (data.real, f"{key_prefix}_real", f"{title} [real]", False),
            (data.imag, f"{key_prefix}_imag", f"{title} [imag]", False),
            (np.angle(data), f"{key_prefix}_angle", f"{title} [angle]", False),
        ]
        out = [AnalysisResult(raw, title=t, desc=f"{desc} {t[len(title) + 1:]}", key=k,
                              logarithmic=log, damage=damage) for raw, k, t, log in parts]
        out.append(AnalysisResult(data, visualized=lambda m=magn, d=damage: _visualize(m, d),
                                  title=f"{title} [complex]", desc=f"{desc} [complex]",
                                  key=f"{key_prefix}_complex"))
        return out


def _visualize(data, damage, log=False):
    from ..viz import visualize_simple

    return visualize_simple(data, logarithmic=log, damage=damage)
