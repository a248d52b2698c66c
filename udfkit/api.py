"""The user entry point: :class:`Context`."""

from __future__ import annotations

from .executor import Executor, make_executor
from .executor.progress import make_reporter
from .io.formats import make_dataset
from .udf.base import UDF
from .udf.driver import UDFRun

__all__ = ["Context"]


class Context:
    """Load data sets and run UDFs on them.

    Parameters
    ----------
    executor : Executor, optional
        Where partitions run; default: worker processes, one per physical core (they start
        with the first run). :meth:`make_with` gives the other kinds. A script that uses the
        default must keep its work under ``if __name__ == "__main__":``, because the worker
        processes are spawned and import the script.

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

    def __init__(self, executor: Executor | None = None):
        if executor is None:
            executor = make_executor("processes")
        if not isinstance(executor, Executor):
            raise TypeError(f"executor: expected an Executor, got {type(executor).__name__}")
        self.executor = executor

    @classmethod
    def make_with(cls, kind: str = "inline", **kwargs) -> Context:
        """A Context with a new executor of ``kind``.

        ``"inline"`` runs partitions one by one in this thread (``debug=True`` pickles every
        task and result round trip); ``"threads"`` runs them on a pool of ``cpus`` threads,
        ``"processes"`` on ``cpus`` spawned worker processes (both default to one per
        physical core); ``"dask"`` on a local dask cluster of ``cpus`` workers bound to
        127.0.0.1, or, with ``scheduler="tcp://host:port"``, on a running cluster.
        """
        return cls(executor=make_executor(kind, **kwargs))

    def load(self, filetype: str, **params):
        """Open a data set: ``ctx.load("raw", path=..., dtype=..., nav_shape=..., sig_shape=...)``.

        Parameters
        ----------
        filetype : str
            ``"raw"``, ``"npy"``, ``"memory"`` or ``"auto"``.
        **params
            Parameters of the format (see its class in :mod:`udfkit.io.formats`).

        Raises
        ------
        DataSetError
            When the parameters do not match the file; the message names the file.
        """
        ds = make_dataset(filetype, params)
        return ds.initialize(self.executor)

    def _run(self, dataset, udf, roi, progress, iterate, deterministic=False, corrections=None):
        udfs = list(udf) if isinstance(udf, (list, tuple)) else [udf]
        if not udfs:
            raise ValueError("udf: expected a UDF or a non-empty list of UDFs")
        run = UDFRun(dataset, udfs, roi=roi, corrections=corrections)
        return run.execute(self.executor, iterate=iterate, progress=make_reporter(progress),
                           deterministic=deterministic)

    def run_udf(self, dataset, udf, *, roi=None, corrections=None, progress=False,
                deterministic=False):
        """Run one UDF (returns its result dict) or a list of UDFs in one pass (a list of dicts).

        Parameters
        ----------
        dataset : DataSet
        udf : UDF or list of UDF
        roi : numpy.ndarray of bool, optional
            Nav-shaped (or flat) mask of the positions to process.
        corrections : CorrectionSet, optional
            Dark frame, gain map and excluded pixels, applied to every frame before the UDFs
            see it; frames then arrive as float (at least ``float32``). See
            :class:`~udfkit.CorrectionSet` for the exact rules.
        progress : bool or reporter
            ``True`` shows a progress bar of frames.
        deterministic : bool
            Merge partition results in partition order, not as they arrive: floating-point
            results are then bit-identical whatever the executor (at the cost of holding
            early results until their predecessors are merged).

        Returns
        -------
        dict or list of dict
            ``{name: BufferResult}`` per UDF.

        Raises
        ------
        CorrectionError
            When ``corrections`` do not fit the data set (checked before any data is read).
        """
        # without iterate the run yields exactly one, final, result
        (final,) = self._run(dataset, udf, roi, progress, iterate=False, deterministic=deterministic,
                             corrections=corrections)
        return final.buffers if isinstance(udf, (list, tuple)) else final.buffers[0]

    def run_udf_iter(self, dataset, udf, *, roi=None, corrections=None, progress=False,
                     deterministic=False):
        """Like :meth:`run_udf`, but a generator of :class:`~udfkit.udf.RunResults`, one after
        every merged partition, the last one complete. Closing it early stops the run."""
        return self._run(dataset, udf, roi, progress, iterate=True, deterministic=deterministic,
                         corrections=corrections)

    def map(self, dataset, f, *, roi=None, corrections=None, progress=False):
        """Apply ``f`` to every frame; returns a :class:`~udfkit.udf.BufferResult` (``.data``).

        With ``corrections`` (a :class:`~udfkit.CorrectionSet`), ``f`` sees corrected frames.
        """
        from .udf.builtins.map import MapUDF

        return self.run_udf(dataset, MapUDF(f=f), roi=roi, corrections=corrections,
                            progress=progress)["result"]

    def export(self, dataset, path, *, roi=None, overwrite=False, format=None, compression=None,
               chunks=None, ds_path=None, array_path=None, zarr_format=3, progress=False):
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
        format : {"npy", "raw", "hdf5", "zarr", "binary"}, optional
            Default: from the name: ``.npy`` → npy (numpy header), ``.h5``/``.hdf5``/``.hdf``
            → hdf5, ``.zarr`` → zarr (a directory store), any other name → raw (next to a
            JSON sidecar ``<path>.json`` with ``dtype``, ``nav_shape`` and ``sig_shape``).
            ``"binary"`` writes a Thunder image stack into the directory ``path``: one
            ``image-NNNNN.bin`` per frame and ``conf.json``, as Thunder's ``tobinary``.
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
                        zarr_format=zarr_format)
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


# re-exported for "from udfkit.api import UDF" ports of LiberTEM scripts
UDF = UDF
