"""The user entry point: :class:`Context`.

The Context speaks LiberTEM's dialect as well as udfkit's own: LiberTEM's executor names in
:meth:`Context.make_with`, positional load parameters, ``roi`` in every form LiberTEM takes,
``backends=``, ``plots=`` and ``sync=False`` in :meth:`Context.run_udf`, and the
``create_*_analysis`` shortcuts with :meth:`Context.run`. What udfkit does not offer is refused
with one line naming the argument and the udfkit alternative.
"""

from __future__ import annotations

import os
from collections.abc import Iterable

from .errors import DataSetError, ROIError, UDFError
from .executor import Executor, make_executor
from .executor.progress import make_reporter
from .io.formats import make_dataset
from .udf.base import UDF
from .udf.driver import UDFRun
from .udf.plan import SMALL_RUN_BYTES, RunPlan, plan_run
from .udf.series import SeriesPlan, SeriesRun

__all__ = ["Context", "LIBERTEM_LOAD_POSITIONAL", "BACKEND_NAMES"]

#: LiberTEM's order of the positional load parameters, per format; other formats take
#: their own parameter order (``udfkit.io.formats.get_format(name).params``)
LIBERTEM_LOAD_POSITIONAL = {
    "auto": ("path",),
    "raw": ("path", "dtype", "scan_size", "detector_size"),
    "npy": ("path", "sig_dims", "nav_shape", "sig_shape", "sync_offset"),
    "hdf5": ("path", "ds_path", "tileshape", "nav_shape", "sig_shape"),
    "memory": ("tileshape", "num_partitions", "data"),
    "dask": ("dask_array",),
}

#: LiberTEM load parameters with another name (or no counterpart) in udfkit:
#: name → (udfkit name or None, what to do instead)
_LOAD_RENAMES = {
    "scan_size": ("nav_shape", "LiberTEM's old name of nav_shape"),
    "detector_size": ("sig_shape", "LiberTEM's old name of sig_shape"),
    "tileshape": (None, "udfkit's negotiator picks the tiles; a UDF states what it wants in "
                        "get_tiling_preferences() (memory data sets take tileshape=)"),
    "target_size": (None, "pass num_partitions= to choose the partitioning"),
    "min_num_partitions": (None, "pass num_partitions= to choose the partitioning"),
    "detector_size_raw": (None, "describe per-frame headers/footers with frame_header_bytes= / "
                                "frame_footer_bytes= (raw format)"),
    "crop_detector_to": (None, "load the full frame; crop inside the UDF or with sig_shape="),
    "check_cast": (None, "udfkit converts to the UDF's input dtype with numpy's rules"),
    "tiledelay": (None, "a LiberTEM testing aid; udfkit has none"),
    "force_need_decode": (None, "a LiberTEM testing aid; udfkit has none"),
    "array_backends": (None, "a data set gives numpy arrays (raw_csr also CSR rows); a UDF "
                             "that lists sparse backends gets its tiles converted"),
    "datashape": (None, "give data= with its shape"),
    "base_shape": (None, "udfkit derives tile constraints from the format"),
}

#: array back-end names LiberTEM's ``backends=`` accepts (udfkit serves numpy and the CPU
#: sparse ones whose package is installed; the GPU ones are refused)
BACKEND_NAMES = {
    "numpy": "numpy", "cupy": "CuPy (GPU)", "cuda": "CUDA (GPU)",
    "sparse.COO": "pydata sparse", "sparse.GCXS": "pydata sparse", "sparse.DOK": "pydata sparse",
    "scipy.sparse.coo_matrix": "scipy.sparse", "scipy.sparse.csr_matrix": "scipy.sparse",
    "scipy.sparse.csc_matrix": "scipy.sparse", "scipy.sparse.coo_array": "scipy.sparse",
    "scipy.sparse.csr_array": "scipy.sparse", "scipy.sparse.csc_array": "scipy.sparse",
    "cupyx.scipy.sparse.coo_matrix": "CuPy sparse (GPU)",
    "cupyx.scipy.sparse.csr_matrix": "CuPy sparse (GPU)",
    "cupyx.scipy.sparse.csc_matrix": "CuPy sparse (GPU)",
}


def _is_many(udf) -> bool:
    """A list, tuple or other iterable of UDFs (LiberTEM takes any iterable)."""
    return not isinstance(udf, UDF) and isinstance(udf, Iterable)


def _udf_list(udf) -> list:
    return list(udf) if _is_many(udf) else [udf]


def _check_dataset(dataset, method: str = "run_udf") -> None:
    """``dataset=`` must be a loaded data set; anything else fails later with an AttributeError."""
    from .io.base import DataSet

    if isinstance(dataset, DataSet):
        return
    hint = "; load one with ctx.load(...)"
    if hasattr(dataset, "shape") and hasattr(dataset, "dtype"):  # numpy, dask, zarr arrays
        hint = ("; wrap an array with ctx.load('memory', data=arr) (a dask array: "
                "ctx.load('dask', dask_array=arr))")
    raise TypeError(f"{method}: dataset: expected a udfkit DataSet, got "
                    f"{'None' if dataset is None else type(dataset).__qualname__}{hint}")


def _out_target(out, overwrite, resume):
    """``run_udf(out=, overwrite=, resume=)`` as a ResultStore, or None."""
    if out is None:
        if overwrite or resume:
            from .errors import ResultStoreError

            raise ResultStoreError("overwrite=/resume= apply to results on disk; give out= too")
        return None
    from .udf.store import ResultStore

    return ResultStore.coerce(out, overwrite=overwrite, resume=resume)


def _check_backends(backends, udfs) -> None:
    """``backends=``: LiberTEM's names, at least one of which udfkit serves on the CPU (numpy and
    the installed sparse formats); which one each UDF gets is the run plan's choice
    (:func:`udfkit.udf.validation.choose_backends`), limited to these."""
    if backends is None:
        return
    from .common.udf import available_backends

    names = (backends,) if isinstance(backends, str) else tuple(backends)
    unknown = [b for b in names if b not in BACKEND_NAMES]
    if unknown:
        raise UDFError(f"backends: unknown array back-end{'s' if len(unknown) > 1 else ''} "
                       f"{', '.join(map(repr, unknown))}; LiberTEM's names are {sorted(BACKEND_NAMES)}")
    served = available_backends()
    if not any(b in served for b in names):
        what = ", ".join(sorted({BACKEND_NAMES[b] for b in names})) or "nothing"
        raise UDFError(f"backends={backends!r} asks for {what} only: udfkit runs UDFs on the CPU "
                       f"with {list(served)}; pass backends=None or some of these")



def _warm_modules(executor) -> list:
    """What the workers of ``executor`` import before their first task: the UDF layer, and
    on worker processes that the Context starts itself also the cached kernels (loaded
    while the process waits for a task anyway; on a dask cluster the kernels load with the
    first task, since registering modules there waits for every worker's imports)."""
    from .udf.warmup import WARM_MODULE

    return ["udfkit.udf", WARM_MODULE] if getattr(executor, "kind", None) == "processes" \
        else ["udfkit.udf"]

def _small_run_bytes(value, own_executor: bool) -> int:
    """``Context(small_run_bytes=...)`` as bytes: the default where ``None`` (see
    :class:`Context`)."""
    from .common.parse import parse_size

    if value is None:
        if not own_executor:
            return 0
        env = os.environ.get("UDFKIT_SMALL_RUN_BYTES")
        if env is None or not env.strip():
            return SMALL_RUN_BYTES
        return parse_size(env, error=ValueError)
    if value is False:
        return 0
    return parse_size(value, error=ValueError)


class Context:
    """Load data sets and run UDFs on them.

    Parameters
    ----------
    executor : Executor, optional
        Where partitions run; default: worker processes, one per physical core (they start
        with the first run). :meth:`make_with` gives the other kinds. The worker processes do
        not run the script again, so a script needs no ``if __name__ == "__main__":`` guard
        and may come from standard input (``python - < analysis.py``).
    plot_class : type, optional
        The live-plot class ``run_udf(plots=...)`` uses (LiberTEM's parameter); default
        :class:`udfkit.viz.mpl.MPLLive2DPlot`.
    small_run_bytes : int or str, optional
        Small runs go to the main process: a run of one task (not cut while it goes) that
        reads at most this many bytes runs in the calling thread, as the inline executor
        runs it, instead of on a worker process, where the round trip would cost more than
        the work (:func:`udfkit.udf.plan.plan_run`, *Small runs*; ``ctx.plan`` shows it).
        Default: :data:`~udfkit.udf.plan.SMALL_RUN_BYTES` (8 MiB) for a Context that makes
        its own executor (``Context()``), 0 (never) for one given an executor or made by
        :meth:`make_with`; ``UDFKIT_SMALL_RUN_BYTES`` changes the default (0: off). A UDF
        must work in the main process anyway (inline is the reference executor).

    Examples
    --------
    >>> import numpy as np
    >>> from udfkit import Context
    >>> from udfkit.udf import MapUDF
    >>> with Context.make_with("inline") as ctx:
    ...     ds = ctx.load("memory", data=np.ones((4, 4, 8, 8), dtype="uint16"))
    ...     res = ctx.run_udf(dataset=ds, udf=MapUDF(f=lambda frame: frame.max()))
    >>> res["result"].data.shape
    (4, 4)
    """

    def __init__(self, executor: Executor | None = None, plot_class=None, *,
                 small_run_bytes=None):
        self.small_run_bytes = _small_run_bytes(small_run_bytes, own_executor=executor is None)
        self._main_executor: Executor | None = None
        if executor is None:
            executor = make_executor("processes")
        if not isinstance(executor, Executor):
            raise TypeError(f"executor: expected an Executor, got {type(executor).__name__}")
        self.executor = executor
        # executors know nothing of UDFs: the Context says what their workers should import
        executor.warm_modules(_warm_modules(executor))
        # workers start now and warm up while the script goes on to load its data, so that
        # the first run does not wait for their start (Executor.start)
        executor.start()
        self._plot_class = plot_class
        #: the live plots of the last ``run_udf(plots=...)`` (their figures stay inspectable)
        self.last_plots: list = []

    @classmethod
    def make_with(cls, kind: str | None = None, *, cpus=None, gpus=None, plot_class=None,
                  snooze_timeout=None, main_process_gpu=None, executor_spec: str | None = None,
                  small_run_bytes=None, **options) -> Context:
        """A Context with a new executor of ``kind``.

        ``"inline"`` runs partitions one by one in this thread (``debug=True`` pickles every
        task and result round trip); ``"threads"`` runs them on a pool of ``cpus`` threads,
        ``"processes"`` on ``cpus`` spawned worker processes (both default to one per
        physical core); ``"dask"`` on a local dask cluster of ``cpus`` workers bound to
        127.0.0.1, or, with ``scheduler="tcp://host:port"``, on a running cluster.

        LiberTEM's names map onto these: ``"synchronous"`` → inline, ``"pipelined"`` →
        processes, ``"dask-make-default"`` → dask (its client is the default dask scheduler
        until the Context closes), ``"dask-integration"`` → dask on the running
        ``distributed`` client. ``"delayed"`` and GPU workers are not offered and raise
        :class:`~udfkit.errors.ExecutorSpecError` naming the alternative.

        Parameters
        ----------
        kind : str, optional
            The executor (``executor_spec`` is LiberTEM's name of this parameter). Default:
            udfkit's default executor, worker processes, as for ``Context()`` (LiberTEM's
            default is its dask cluster); so ``make_with(cpus=4)`` is four worker processes.
        cpus : int or list of int, optional
            Number of workers; a list of core ids counts as its length (no pinning).
        gpus : int or list of int, optional
            Only 0 / empty: udfkit has no GPU back-end.
        plot_class : type, optional
            See :class:`Context`.
        snooze_timeout, main_process_gpu
            LiberTEM's; not offered (see :func:`udfkit.executor._spec.executor_from_spec`).
        small_run_bytes : int or str, optional
            See :class:`Context`; default 0 here: every run goes to the executor asked for.
        **options
            Passed on to the executor (``debug``, ``scheduler``, ``client``, ...).

        Examples
        --------
        >>> from udfkit import Context
        >>> with Context.make_with("threads", cpus=2) as ctx:
        ...     ctx.executor.num_workers
        2
        >>> Context.make_with("dask", gpus=1)  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        udfkit.errors.ExecutorSpecError: make_with('dask'): gpus=1 is not offered: ...on CPUs with numpy ...
        """
        from .executor._spec import executor_from_spec

        if executor_spec is not None:
            if kind is not None and kind != executor_spec:
                raise TypeError(f"make_with: kind={kind!r} and executor_spec={executor_spec!r} name "
                                "the same parameter; give one")
            kind = executor_spec
        kind = "processes" if kind is None else kind
        executor = executor_from_spec(kind, cpus=cpus, gpus=gpus, snooze_timeout=snooze_timeout,
                                      main_process_gpu=main_process_gpu, **options)
        return cls(executor=executor, plot_class=plot_class, small_run_bytes=small_run_bytes)

    @property
    def plot_class(self):
        """The live-plot class of ``run_udf(plots=...)`` (default: the matplotlib one)."""
        if self._plot_class is None:
            from .viz.mpl import MPLLive2DPlot

            self._plot_class = MPLLive2DPlot
        return self._plot_class

    @plot_class.setter
    def plot_class(self, value):
        self._plot_class = value

    def load(self, filetype: str, *args, **params):
        """Open a data set: ``ctx.load("raw", "scan.raw", dtype=..., nav_shape=..., sig_shape=...)``.

        Parameters
        ----------
        filetype : str
            A format name (``"raw"``, ``"npy"``, ``"hdf5"``, ...; see
            :mod:`udfkit.io.formats`) or ``"auto"``.
        *args
            Positional parameters in LiberTEM's order for its formats
            (:data:`LIBERTEM_LOAD_POSITIONAL`: ``"raw"`` takes ``path, dtype``, ``"hdf5"``
            ``path, ds_path``, ``"npy"`` ``path, sig_dims, nav_shape``...), in the format's
            own parameter order for the others (the first is the path).
        **params
            Parameters of the format (see its class in :mod:`udfkit.io.formats`). LiberTEM's
            ``scan_size`` / ``detector_size`` mean ``nav_shape`` / ``sig_shape``, and
            ``enable_direct=True`` means ``io_backend="direct"``.

        Raises
        ------
        DataSetError
            When the parameters do not match the file (the message names the file), for an
            unknown parameter, or a LiberTEM parameter udfkit does not offer (the message
            names the alternative).

        Examples
        --------
        >>> import os, tempfile
        >>> import numpy as np
        >>> from udfkit import Context
        >>> path = os.path.join(tempfile.mkdtemp(), "scan.raw")
        >>> np.zeros((2, 3, 4, 4), dtype="uint16").tofile(path)
        >>> ctx = Context.make_with("inline")
        >>> ds = ctx.load("raw", path, "uint16", nav_shape=(2, 3), sig_shape=(4, 4))
        >>> ds.shape, ds.dtype
        (Shape((2, 3, 4, 4), sig_dims=2), dtype('uint16'))
        """
        params = self._load_params(filetype, args, params)
        ds = make_dataset(filetype, params)
        return ds.initialize(self.executor)

    @staticmethod
    def _load_params(filetype, args, params) -> dict:
        params = dict(params)
        name = filetype.lower() if isinstance(filetype, str) else filetype
        if args:
            order = LIBERTEM_LOAD_POSITIONAL.get(name)
            if order is None:
                from .io.formats import get_format

                order = tuple(get_format(filetype).param_names())
            if len(args) > len(order):
                raise DataSetError(f"ctx.load({filetype!r}, ...): {len(args)} positional parameters, "
                                   f"but it takes at most {len(order)} ({', '.join(order)}); pass the "
                                   "others by name")
            for key, value in zip(order, args):
                if key in params:
                    raise DataSetError(f"ctx.load({filetype!r}, ...): {key} given by position and "
                                       "by name")
                params[key] = value
        if params.pop("enable_direct", False):
            if params.get("io_backend") not in (None, "direct"):
                raise DataSetError("ctx.load: enable_direct=True and io_backend= both choose the "
                                   "I/O backend; give one (udfkit: io_backend='direct')")
            params["io_backend"] = "direct"
        if params.get("io_backend", "") is None:
            # LiberTEM scripts pass io_backend=None everywhere, also to in-memory formats
            params.pop("io_backend")
        native = ()
        if isinstance(name, str) and name != "auto":
            from .io.formats import get_format

            native = get_format(name).param_names()
        for key in list(params):
            if key not in _LOAD_RENAMES or key in native:
                # a format that takes the parameter itself (memory: tileshape) keeps it
                continue
            target, hint = _LOAD_RENAMES[key]
            value = params.pop(key)
            if value is None:
                continue
            if target is None:
                raise DataSetError(f"ctx.load({filetype!r}): {key}= is not offered by udfkit: {hint}")
            if params.get(target) is not None:
                raise DataSetError(f"ctx.load({filetype!r}): {key}= ({hint}) and {target}= both given; "
                                   f"give {target}=")
            params[target] = value
        return params

    def _run(self, dataset, udf, roi, progress, iterate, deterministic=False, corrections=None,
             retries=None, backends=None, target=None):
        _check_dataset(dataset)
        udfs = _udf_list(udf)
        if not udfs:
            raise ValueError("udf: expected a UDF or a non-empty list of UDFs")
        executor = self.executor.with_retries(retries)
        # the run executes its plan: what Context.plan shows is what runs
        plan = plan_run(dataset, udfs, roi=roi, corrections=corrections, executor=executor,
                        backends=backends, small_run_bytes=self.small_run_bytes,
                        out=target)
        if getattr(plan, "in_main_process", False):
            executor = self._inline()
        if isinstance(plan, SeriesPlan):
            # a series plan (every UDF defines process_series) has its own run; its results
            # are sig buffers, kept in memory
            if target is not None:
                raise UDFError(f"out={target!r}: results on disk hold nav buffers; the series "
                               f"UDFs {[type(u).__name__ for u in udfs]} write sig buffers, "
                               "which stay in memory: run them without out=")
            return SeriesRun(plan).execute(executor, iterate=iterate,
                                           progress=make_reporter(progress),
                                           deterministic=deterministic)
        run = UDFRun(plan)
        store = None
        if target is not None:
            from .udf.store import StoreSession

            store = StoreSession(target)
        return run.execute(executor, iterate=iterate, progress=make_reporter(progress),
                           deterministic=deterministic, store=store)

    def plan(self, dataset, udf, roi=None, corrections=None, backends=None,
             out=None) -> RunPlan | SeriesPlan:
        """What :meth:`run_udf` with these arguments will do, before a byte is read.

        Parameters
        ----------
        dataset : DataSet
        udf : UDF or list of UDF
        roi, corrections, backends
            As for :meth:`run_udf`.
        out : str, os.PathLike or ResultStore, optional
            As for :meth:`run_udf`: the plan then shows the store (format, arrays and
            their chunks, bytes to write, whether workers write directly) as ``plan.store``.

        Returns
        -------
        RunPlan or SeriesPlan
            A :class:`~udfkit.udf.series.SeriesPlan` when every UDF defines
            ``process_series`` (series mode: blocks of pixels, how they are read). Otherwise:
            tile shape and the negotiator's reason, partitions with their processed frames,
            each UDF's method, input dtype and buffers, bytes read, memory per worker of this
            Context's executor and on the main process, result sizes. ``print(plan)`` shows
            a short table; see :mod:`udfkit.udf.plan` for what the memory estimate counts.

        Raises
        ------
        UDFError, ROIError, CorrectionError
            As :meth:`run_udf` would, before reading.

        Examples
        --------
        >>> import numpy as np
        >>> from udfkit import Context
        >>> from udfkit.udf import SumUDF
        >>> ctx = Context.make_with("inline")
        >>> ds = ctx.load("memory", data=np.zeros((8, 8, 32, 32), dtype="uint16"), num_partitions=2)
        >>> plan = ctx.plan(ds, SumUDF(), roi=np.eye(8, dtype=bool))
        >>> plan.tile_shape, [p.processed for p in plan.partitions], plan.udfs[0].buffers[0].shape
        ((32, 32, 32), [4, 4], (32, 32))
        """
        udfs = _udf_list(udf)
        if not udfs:
            raise ValueError("udf: expected a UDF or a non-empty list of UDFs")
        _check_backends(backends, udfs)
        _check_dataset(dataset, "plan")
        target = None
        if out is not None:
            from .udf.store import ResultStore

            target = ResultStore.coerce(out)
        return plan_run(dataset, udfs, roi=roi, corrections=corrections, executor=self.executor,
                        backends=backends, small_run_bytes=self.small_run_bytes,
                        out=target)

    def _inline(self) -> Executor:
        """The executor of small runs (the plan's small-run rule): the calling thread."""
        if self._main_executor is None:
            self._main_executor = make_executor("inline")
        return self._main_executor

    def run_udf(self, dataset, udf, roi=None, corrections=None, progress=False, backends=None,
                plots=None, sync=True, *, deterministic=False, retries=None, out=None,
                overwrite=False, resume=False):
        """Run one UDF (returns its result dict) or a list of UDFs in one pass (a list of dicts).

        Parameters
        ----------
        dataset : DataSet
        udf : UDF or list of UDF
        roi : optional
            The positions to process, in any form :func:`udfkit.common.parse_roi` accepts: a
            bool (or 0/1) array of the nav shape or flat, a ``(y, x)`` coordinate, a list of
            coordinates, LiberTEM's ``[((y, x), True), ...]``, a scipy.sparse or ``sparse``
            array.
        corrections : CorrectionSet, optional
            Dark frame, gain map and excluded pixels, applied to every frame before the UDFs
            see it; frames then arrive as float (at least ``float32``). See
            :class:`~udfkit.CorrectionSet` for the exact rules.
        progress : bool or reporter
            ``True`` shows a progress bar of frames.
        backends : str or iterable of str, optional
            LiberTEM's restriction of the array back-ends; udfkit runs numpy only, so it must
            include ``"numpy"`` (a request for only ``"cupy"``/``"cuda"`` is an error).
        plots : None, True, list of lists of channel names, or list of plot objects
            Live plots of the results while the run goes (see :mod:`udfkit.viz`): ``True``
            plots every 1D/2D result of every UDF; ``[["intensity"], []]`` names the
            channels per UDF (an entry may be ``(name, function)``); plot objects with
            LiberTEM's interface (``get_udf``, ``new_data``, ``display``) are used as given.
            Without matplotlib (or for a UDF with nothing to plot) one warning, no plots.
        sync : bool
            ``False`` returns an awaitable instead (the run goes in a worker thread).
        deterministic : bool
            Merge partition results in partition order, not as they arrive: floating-point
            results are then bit-identical whatever the executor (at the cost of holding
            early results until their predecessors are merged).
        retries : int, optional
            How many times a partition whose worker died (killed, out of memory) is run
            again on a fresh worker before the run fails; default the executor's (1 for
            processes and dask, 0 for inline and threads, whose workers cannot die alone).
        out : str, os.PathLike or ResultStore, optional
            Put the nav results on disk, written as partitions are merged, so that they need
            not fit in memory: ``*.zarr`` a zarr store, ``*.h5`` an HDF5 file, another name a
            directory of ``.npy`` files (see :class:`~udfkit.ResultStore` and
            :doc:`/results-on-disk`). Nav results are then lazily read arrays in the store;
            sig and single results are saved there too. Merges go in partition order.
        overwrite : bool
            With ``out``: replace an existing udfkit result store.
        resume : bool
            With ``out``: go on with the interrupted run whose journal is in the store
            (refused, naming what differs, when the data set, ROI or UDFs are not the same).

        Returns
        -------
        dict or list of dict
            ``{name: BufferResult}`` per UDF (an awaitable of it with ``sync=False``).

        Raises
        ------
        CorrectionError
            When ``corrections`` do not fit the data set (checked before any data is read).
        ROIError
            For a ``roi`` of a form or shape that does not fit.
        UDFError
            For ``backends`` that exclude numpy.

        Examples
        --------
        >>> import asyncio
        >>> import numpy as np
        >>> from udfkit import Context
        >>> from udfkit.udf import SumSigUDF
        >>> ctx = Context.make_with("inline")
        >>> ds = ctx.load("memory", data=np.arange(2 * 2 * 3 * 3).reshape(2, 2, 3, 3))
        >>> ctx.run_udf(ds, SumSigUDF(), (1, 0))["intensity"].raw_data.tolist()
        [198.0]
        >>> res = asyncio.run(ctx.run_udf(ds, SumSigUDF(), sync=False))
        >>> res["intensity"].data.tolist()
        [[36.0, 117.0], [198.0, 279.0]]
        """
        _check_dataset(dataset)
        if not sync:
            return self._run_async(dataset, udf, roi=roi, corrections=corrections, progress=progress,
                                   backends=backends, plots=plots, deterministic=deterministic,
                                   retries=retries, out=out, overwrite=overwrite, resume=resume)
        udfs = _udf_list(udf)
        _check_backends(backends, udfs)
        target = _out_target(out, overwrite, resume)
        if plots:
            final = self._run_with_plots(dataset, udfs, roi, corrections, progress, plots,
                                         deterministic, retries, backends, target)
        else:
            # without iterate the run yields exactly one, final, result
            (final,) = self._run(dataset, udfs, roi, progress, iterate=False,
                                 deterministic=deterministic, corrections=corrections,
                                 retries=retries, backends=backends, target=target)
        return final.buffers if _is_many(udf) else final.buffers[0]

    async def _run_async(self, dataset, udf, **kwargs):
        import asyncio

        return await asyncio.to_thread(self.run_udf, dataset, udf, **kwargs)

    def _run_with_plots(self, dataset, udfs, roi, corrections, progress, plots, deterministic,
                        retries=None, backends=None, target=None):
        from .viz import prepare_plots, update_plots

        self.last_plots = live = prepare_plots(self, dataset, udfs, roi, plots)
        final = None
        for final in self._run(dataset, udfs, roi, progress, iterate=bool(live),
                               deterministic=deterministic, corrections=corrections,
                               retries=retries, backends=backends, target=target):
            if live and not final.complete:
                update_plots(live, udfs, final, force=False)
        if live:
            update_plots(live, udfs, final, force=True)
        return final

    def run_udf_iter(self, dataset, udf, roi=None, corrections=None, progress=False, backends=None,
                     plots=None, sync=True, *, deterministic=False, retries=None, out=None,
                     overwrite=False, resume=False):
        """Like :meth:`run_udf`, but a generator of :class:`~udfkit.udf.RunResults`, one after
        every merged partition, the last one complete. Closing it early stops the run.

        With ``sync=False`` it is an asynchronous iterator (``async for``; ``await
        it.aclose()`` stops the run); with ``plots`` the plots follow every yield. ``retries``
        as for :meth:`run_udf`, and so are ``out``, ``overwrite`` and ``resume`` (partial
        results then read the store; ``valid_mask`` shows what is merged).

        Examples
        --------
        >>> import asyncio
        >>> import numpy as np
        >>> from udfkit import Context
        >>> from udfkit.udf import SumUDF
        >>> ctx = Context.make_with("inline")
        >>> ds = ctx.load("memory", data=np.ones((4, 2, 3), dtype="uint8"), sig_dims=2,
        ...               num_partitions=2)
        >>> async def last():
        ...     async for part in ctx.run_udf_iter(ds, SumUDF(), sync=False):
        ...         res = part
        ...     return res
        >>> final = asyncio.run(last())
        >>> final.complete, final.buffers[0]["intensity"].data.tolist()
        (True, [[4.0, 4.0, 4.0], [4.0, 4.0, 4.0]])
        """
        udfs = _udf_list(udf)
        _check_backends(backends, udfs)
        gen = self._iter_with_plots(dataset, udfs, roi, corrections, progress, plots, deterministic,
                                    retries, backends, _out_target(out, overwrite, resume))
        if sync:
            return gen
        return _AsyncResults(gen)

    def _iter_with_plots(self, dataset, udfs, roi, corrections, progress, plots, deterministic,
                         retries=None, backends=None, target=None):
        live = []
        if plots:
            from .viz import prepare_plots, update_plots

            self.last_plots = live = prepare_plots(self, dataset, udfs, roi, plots)
        stream = self._run(dataset, udfs, roi, progress, iterate=True, deterministic=deterministic,
                           corrections=corrections, retries=retries, backends=backends,
                           target=target)
        try:
            for part in stream:
                yield part
                if live:
                    update_plots(live, udfs, part, force=part.complete)
        finally:
            stream.close()

    def display(self, dataset, udf, roi=None):
        """What ``udf`` will compute on ``dataset``: its method, input dtype and result
        buffers (kind, extra shape, shape, dtype), without reading data. Shows as a table in
        a notebook (``_repr_html_``) and as text otherwise.

        Examples
        --------
        >>> import numpy as np
        >>> from udfkit import Context
        >>> from udfkit.udf import SumSigUDF
        >>> ctx = Context.make_with("inline")
        >>> ds = ctx.load("memory", data=np.zeros((2, 3, 4, 4), dtype="uint8"))
        >>> print(ctx.display(ds, SumSigUDF()))  # doctest: +NORMALIZE_WHITESPACE
        SumSigUDF
          intensity: kind=nav extra_shape=() shape=(2, 3) dtype=float64
        """
        from .viz.base import dry_run

        buffers = dry_run([udf], dataset, roi).buffers[0]
        return _UDFInfo(type(udf).__name__, udf, buffers)

    # -- LiberTEM's analyses -------------------------------------------------------------
    def create_sum_analysis(self, dataset):
        """Sum of all frames; ``ctx.run(analysis).intensity`` (see :mod:`udfkit.analysis`)."""
        from .analysis import SumAnalysis

        return SumAnalysis(dataset=dataset, parameters={})

    def create_pick_analysis(self, dataset, x: int, y: int | None = None, z: int | None = None):
        """The frame at nav position ``(z, y, x)`` (as many as the data set has nav axes).

        Examples
        --------
        >>> import numpy as np
        >>> from udfkit import Context
        >>> ctx = Context.make_with("inline")
        >>> data = np.arange(2 * 3 * 2 * 2).reshape(2, 3, 2, 2)
        >>> ds = ctx.load("memory", data=data)
        >>> res = ctx.run(ctx.create_pick_analysis(dataset=ds, x=2, y=1))
        >>> np.array_equal(res.intensity.raw_data, data[1, 2])
        True
        """
        from .analysis import PickFrameAnalysis

        params = {k: v for k, v in (("x", x), ("y", y), ("z", z)) if v is not None}
        return PickFrameAnalysis(dataset=dataset, parameters=params)

    def create_mask_analysis(self, factories, dataset, use_sparse=None, mask_count=None,
                             mask_dtype=None, dtype=None):
        """Apply masks (``factories``: callables returning sig-shaped masks, or one returning
        a stack); results ``mask_0``, ``mask_1``, ... of the nav shape."""
        from .analysis import MasksAnalysis

        return MasksAnalysis(dataset=dataset, parameters={
            "factories": factories, "use_sparse": use_sparse, "mask_count": mask_count,
            "mask_dtype": mask_dtype, "dtype": dtype})

    def create_disk_analysis(self, dataset, cx=None, cy=None, r=None):
        """Integrate a disk of radius ``r`` around ``(cy, cx)`` of every frame (result
        ``intensity``, nav-shaped)."""
        from .analysis import DiskMaskAnalysis

        params = {k: v for k, v in (("cx", cx), ("cy", cy), ("r", r)) if v is not None}
        return DiskMaskAnalysis(dataset=dataset, parameters=params)

    def create_ring_analysis(self, dataset, cx=None, cy=None, ri=None, ro=None):
        """Integrate a ring ``ri <= r < ro`` around ``(cy, cx)`` of every frame."""
        from .analysis import RingMaskAnalysis

        params = {k: v for k, v in (("cx", cx), ("cy", cy), ("ri", ri), ("ro", ro)) if v is not None}
        return RingMaskAnalysis(dataset=dataset, parameters=params)

    def create_point_analysis(self, dataset, x=None, y=None):
        """The pixel ``(y, x)`` of every frame."""
        from .analysis import PointMaskAnalysis

        if len(dataset.shape.nav) > 2:
            raise UDFError(f"create_point_analysis: needs at most two nav dimensions, the data set "
                           f"has nav shape {tuple(dataset.shape.nav)}")
        params = {k: v for k, v in (("cx", x), ("cy", y)) if v is not None}
        return PointMaskAnalysis(dataset=dataset, parameters=params)

    def create_com_analysis(self, dataset, cx=None, cy=None, mask_radius=None, flip_y=False,
                            mask_radius_inner=None, scan_rotation=0.0):
        """Centre of mass within ``mask_radius`` (and outside ``mask_radius_inner``) of
        ``(cy, cx)``; results ``field``, ``magnitude``, ``divergence``, ``curl``, ``x``, ``y``
        (a thin wrapper over :class:`~udfkit.udf.CoMUDF`, which offers more: regression,
        ``raw_com``).

        Examples
        --------
        >>> import numpy as np
        >>> from udfkit import Context
        >>> data = np.zeros((2, 3, 16, 16), dtype="float32")
        >>> data[..., 9, 6] = 1
        >>> ctx = Context.make_with("inline")
        >>> res = ctx.run(ctx.create_com_analysis(ctx.load("memory", data=data), cx=8, cy=8))
        >>> float(res.x.raw_data[0, 0]), float(res.y.raw_data[0, 0])
        (-2.0, 1.0)
        """
        from .analysis import COMAnalysis

        nav, sig = tuple(dataset.shape.nav), tuple(dataset.shape.sig)
        if len(nav) != 2 or len(sig) != 2:
            raise UDFError(f"create_com_analysis: needs two nav and two signal dimensions, the data "
                           f"set has nav shape {nav} and sig shape {sig}")
        params = {k: v for k, v in (("cx", cx), ("cy", cy), ("flip_y", flip_y),
                                    ("scan_rotation", scan_rotation)) if v is not None}
        if mask_radius is not None:
            params["r"] = mask_radius
        if mask_radius_inner is not None:
            if mask_radius is None:
                raise UDFError("create_com_analysis: mask_radius_inner needs mask_radius too (an "
                               "annulus between the two)")
            params["ri"] = mask_radius_inner
        return COMAnalysis(dataset=dataset, parameters=params)

    def run(self, job, roi=None, progress=False, corrections=None):
        """Run an analysis from ``create_*_analysis``; returns its
        :class:`~udfkit.analysis.AnalysisResultSet`.

        Parameters
        ----------
        job : Analysis
        roi : optional
            Any ROI form of :meth:`run_udf`; default the analysis's own (picking) or all.
        progress : bool
        corrections : CorrectionSet, optional
        """
        from .analysis.base import Analysis
        from .common import parse_roi

        if not isinstance(job, Analysis):
            raise UDFError(f"ctx.run: expected an analysis from ctx.create_*_analysis(...), got "
                           f"{type(job).__name__}; run UDFs with ctx.run_udf(dataset, udf)")
        dataset = job.dataset
        if roi is None:
            roi = job.get_roi()
        nav = tuple(dataset.shape.nav)
        roi = parse_roi(roi, nav, error=ROIError, where=dataset.description)
        results = self.run_udf(dataset, job.get_udf(), roi=roi, corrections=corrections,
                               progress=progress)
        damage = True if roi is None else roi.reshape(nav)
        return job.get_udf_results(results, roi if roi is None else roi.reshape(nav), damage=damage)

    def map(self, dataset, f, roi=None, progress=False, corrections=None, backends=None, *,
            out=None, overwrite=False, resume=False):
        """Apply ``f`` to every frame; returns a :class:`~udfkit.udf.BufferResult` (``.data``).

        With ``corrections`` (a :class:`~udfkit.CorrectionSet`), ``f`` sees corrected frames.
        ``roi`` and ``backends`` as in :meth:`run_udf`; the parameters are in LiberTEM's order.
        With ``out`` the results go to disk as in :meth:`run_udf`: for an ``f`` that returns a
        frame, the store is a new data set that :meth:`load` opens (``"auto"``).
        """
        from .udf.builtins.map import MapUDF

        return self.run_udf(dataset, MapUDF(f=f), roi=roi, corrections=corrections,
                            progress=progress, backends=backends, out=out, overwrite=overwrite,
                            resume=resume)["result"]

    def export(self, dataset, path, *, roi=None, overwrite=False, format=None, compression=None,
               chunks=None, ds_path=None, array_path=None, zarr_format=3, threshold=None,
               progress=False):
        """Write the data set (or the frames in ``roi``) to ``path``, streaming.

        Parameters
        ----------
        dataset : DataSet
        path : str or os.PathLike
            The target; its name chooses the format unless ``format`` is given.
        roi : numpy.ndarray of bool, optional
            Only these frames, as an array ``(n, *sig_shape)`` in flattened nav order.
        overwrite : bool
            Replace an existing target (default: refuse with ``FileExistsError``): a whole
            file, or a whole zarr store; of a directory only a binary stack's own files.
        format : {"npy", "raw", "hdf5", "zarr", "binary", "raw_csr"}, optional
            Default: from the name: ``.npy`` → npy (numpy header), ``.h5``/``.hdf5``/``.hdf``
            → hdf5, ``.zarr`` → zarr (a directory store), ``.toml`` → raw_csr, any other name
            → raw (next to a JSON sidecar ``<path>.json`` with ``dtype``, ``nav_shape`` and
            ``sig_shape``). ``"binary"`` writes a Thunder image stack into the directory
            ``path``: one ``image-NNNNN.bin`` per frame and ``conf.json``, as Thunder's
            ``tobinary``. ``"raw_csr"`` writes LiberTEM's sparse format: ``path`` is the TOML
            descriptor, the three arrays go beside it (``<stem>.indptr.raw``, ...).
        compression : str, optional
            hdf5: ``"gzip"``, ``"lzf"``, ``"zstd"``, ``"blosc"`` (the last two through
            hdf5plugin); zarr: ``"gzip"``, ``"zstd"``, ``"blosc"``; with a level as
            ``"zstd:5"``. Default: none; an uncompressed hdf5 target is one contiguous
            dataset, which udfkit and others read without decoding.
        chunks : tuple of int, optional
            Chunk shape of an hdf5 or zarr target (one entry per axis of the written array).
            Default: whole frames, as many along the last nav axis as fit 1 MiB.
        ds_path, array_path : str, optional
            Name of the array inside the HDF5 file or zarr store (default ``"data"``); the
            two names are one parameter, as ``ctx.load("hdf5"/"zarr", ...)`` spell it.
        zarr_format : {3, 2}
            Zarr format of a zarr target.
        threshold : float, optional
            raw_csr: keep the pixels with ``abs(value) > threshold`` (default: the pixels
            that are not exactly zero).
        progress : bool or reporter

        Returns
        -------
        pathlib.Path
            The written file (or directory).

        Raises
        ------
        UDFError
            For an unknown format or compression, or a missing optional dependency (the
            message names the extra to install); before anything is read or written.

        Examples
        --------
        >>> import os, tempfile
        >>> import h5py
        >>> import numpy as np
        >>> from udfkit import Context
        >>> ctx = Context.make_with("inline")
        >>> data = np.arange(2 * 2 * 3 * 3, dtype="int16").reshape(2, 2, 3, 3)
        >>> out = ctx.export(ctx.load("memory", data=data), os.path.join(tempfile.mkdtemp(), "d.npy"))
        >>> np.array_equal(np.load(out), data)
        True
        >>> out = ctx.export(ctx.load("memory", data=data), os.path.join(tempfile.mkdtemp(), "d.h5"),
        ...                  compression="gzip")
        >>> with h5py.File(out, "r") as f:
        ...     np.array_equal(f["data"][()], data), f["data"].compression
        (True, 'gzip')
        """
        import pathlib

        from .errors import UDFError
        from .udf.builtins.record import RecordUDF

        if ds_path is not None and array_path is not None and ds_path != array_path:
            raise UDFError(f"export: ds_path={ds_path!r} and array_path={array_path!r} name the "
                           "same thing; give one")
        # RecordUDF refuses to overwrite the data set's own file
        udf = RecordUDF(path=path, overwrite=overwrite, format=format, compression=compression,
                        chunks=chunks, ds_path=ds_path if ds_path is not None else array_path,
                        zarr_format=zarr_format, threshold=threshold)
        try:
            self.run_udf(dataset, udf, roi=roi, progress=progress)
        except BaseException:
            # a failed or interrupted run leaves no spool files behind
            udf.remove_temporaries()
            raise
        return pathlib.Path(udf.params.path)

    def export_dataset(self, dataset, *, path, progress=False, overwrite=False, **options):
        """LiberTEM's name for :meth:`export`, with its signature (``path`` by keyword).

        LiberTEM 0.16 writes ``.npy`` only; here the name chooses any format :meth:`export`
        writes, and its other keywords (``format``, ``compression``, ``roi``, ...) pass on.

        Examples
        --------
        >>> import os, tempfile
        >>> import numpy as np
        >>> from udfkit import Context
        >>> ctx = Context.make_with("inline")
        >>> ds = ctx.load("memory", data=np.ones((2, 2, 3, 3), dtype="uint8"))
        >>> out = ctx.export_dataset(ds, path=os.path.join(tempfile.mkdtemp(), "d.npy"))
        >>> np.load(out).shape
        (2, 2, 3, 3)
        """
        return self.export(dataset, path, progress=progress, overwrite=overwrite, **options)

    def close(self) -> None:
        """Shut the executor down."""
        self.executor.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __repr__(self):
        return f"Context(executor={self.executor!r})"


class _UDFInfo:
    """What :meth:`Context.display` returns: text, or an HTML table in a notebook."""

    def __init__(self, title, udf, buffers):
        self.title = title
        self.udf = udf
        self.buffers = buffers

    def _rows(self):
        return [(name, b.kind, b.extra_shape, b.data.shape, b.dtype) for name, b in self.buffers.items()]

    def __str__(self):
        lines = [self.title] + [f"  {n}: kind={k} extra_shape={e} shape={s} dtype={d}"
                                for n, k, e, s, d in self._rows()]
        return "\n".join(lines)

    def _repr_html_(self):
        import html

        def cell(x):
            return f"<td>{html.escape(str(x))}</td>"

        rows = "".join("<tr>" + "".join(cell(x) for x in row) + "</tr>" for row in self._rows())
        return (f"<h3>{html.escape(self.title)}</h3><p>method: {html.escape(str(self.udf.get_method()))}"
                "</p><table><thead><tr><th>Name</th><th>Kind</th><th>Extra shape</th><th>Shape</th>"
                f"<th>dtype</th></tr></thead><tbody>{rows}</tbody></table>")


class _AsyncResults:
    """``run_udf_iter(..., sync=False)``: the run's generator, advanced in one worker thread.

    A generator must not be resumed from two threads at once; one single-thread pool runs
    every step (and the final close), so the event loop never blocks on a partition.
    """

    def __init__(self, gen):
        from concurrent.futures import ThreadPoolExecutor

        self._gen = gen
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="udfkit-async")

    def __aiter__(self):
        return self

    def _step(self):
        try:
            return True, next(self._gen)
        except StopIteration:
            return False, None

    async def __anext__(self):
        import asyncio

        loop = asyncio.get_running_loop()
        try:
            more, value = await loop.run_in_executor(self._pool, self._step)
        except BaseException:
            self._pool.shutdown(wait=False)
            raise
        if not more:
            self._pool.shutdown(wait=False)
            raise StopAsyncIteration
        return value

    async def aclose(self):
        """Stop the run (the remaining partitions are cancelled)."""
        import asyncio

        loop = asyncio.get_running_loop()
        try:
            await loop.run_in_executor(self._pool, self._gen.close)
        except RuntimeError:  # the pool was shut down after the last step
            self._gen.close()
        self._pool.shutdown(wait=False)


# re-exported for "from udfkit.api import UDF" ports of LiberTEM scripts
UDF = UDF
