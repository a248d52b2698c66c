"""All exceptions and warnings of udfkit, in one module.

Every exception derives from :class:`UdfkitError`, and also from the builtin exception a
user would naturally catch (``ValueError`` for bad parameters, ``FileNotFoundError`` for a
missing path, ...), so both ``except UdfkitError`` and ``except ValueError`` work.

This module sits at the bottom of the layer stack next to :mod:`udfkit.common`: it imports
nothing from udfkit.
"""

__all__ = [
    "UdfkitError",
    "DataSetError",
    "DataSetFileNotFoundError",
    "ROIError",
    "TilingError",
    "CorrectionError",
    "UDFError",
    "UDFResultError",
    "UDFParameterError",
    "MaskError",
    "ExecutorError",
    "ExecutorSpecError",
    "IOBackendError",
    "FileChangedError",
    "CLIError",
    "ResultStoreError",
    "ResultStoreExistsError",
    "UdfkitWarning",
]


class UdfkitError(Exception):
    """Root of all udfkit exceptions."""


class DataSetError(UdfkitError, ValueError):
    """Bad load parameters, or a file that does not match them."""


class DataSetFileNotFoundError(DataSetError, FileNotFoundError):
    """The path given to ``Context.load`` does not exist."""


class ROIError(UdfkitError, ValueError):
    """A region of interest of the wrong shape or type."""


class TilingError(UdfkitError, ValueError):
    """The UDFs' tiling preferences cannot be met by the data set."""


class CorrectionError(UdfkitError, ValueError):
    """Detector corrections (dark, gain, excluded pixels) that do not fit the data set."""


class UDFError(UdfkitError, TypeError):
    """A UDF that breaks the UDF contract (detected before any data is read)."""


class UDFResultError(UDFError):
    """A UDF's ``get_results`` returned something that does not fit its declared buffers."""


class UDFParameterError(UDFError, ValueError):
    """A UDF or export parameter of the right kind whose value is out of range (a radius of
    0, an inner radius above the outer one, an unknown compression name). It is a
    ``ValueError`` too, as the same mistake is in LiberTEM and numpy, so ported
    ``except ValueError`` clauses catch it."""


class MaskError(UDFParameterError):
    """A mask, mask factory or mask geometry (``udfkit.masks``, ``MaskContainer``,
    ``ApplyMasksUDF``) that does not fit: wrong shape, dtype or argument value."""


class ExecutorError(UdfkitError, RuntimeError):
    """An executor failed to run a task (not an exception raised by the UDF itself).

    ``task_index`` is the position of the task it concerns in the run's task list (None
    when it concerns no single task), so the caller can name the partition."""

    task_index: int | None = None


class ExecutorSpecError(UdfkitError, ValueError):
    """A ``Context.make_with`` request udfkit does not offer (a kind, ``cpus`` or ``gpus``),
    or an executor argument out of range (``cpus=0``, ``retries=-1``)."""


class IOBackendError(UdfkitError, OSError):
    """An I/O backend cannot read a file the way it was asked to.

    Raised while a run reads: the operating system refused to open or read a file of the
    data set (``errno``, ``filename`` and the message say which file, which bytes and why),
    or the file no longer holds what it held when it was loaded (:class:`FileChangedError`).
    It is an ``OSError``, so code that catches ``OSError`` around a run keeps working.

    Examples
    --------
    >>> import errno
    >>> e = IOBackendError(errno.EIO, "reading 4096 bytes at offset 0 of file 'a.raw' failed: "
    ...                    "Input/output error", "a.raw")
    >>> str(e), e.errno == errno.EIO, e.filename, isinstance(e, OSError)
    ("reading 4096 bytes at offset 0 of file 'a.raw' failed: Input/output error", True, 'a.raw', True)
    """

    def __str__(self) -> str:
        # the message names the file, the bytes and the reason itself; OSError's
        # "[Errno 5] message: 'file'" would name the file twice
        if self.strerror is not None:
            return str(self.strerror)
        return super().__str__()


class FileChangedError(IOBackendError, DataSetError):
    """A file of a loaded data set changed while a run reads it: it was truncated or removed
    after ``Context.load`` checked it.

    Both an :class:`IOBackendError` (an ``OSError``: the read failed) and a
    :class:`DataSetError` (the file no longer matches the load parameters), so handlers
    written for either catch it.
    """


class ResultStoreError(UdfkitError, OSError):
    """Results on disk (``run_udf(out=...)``) cannot be written or resumed: a location that
    cannot be written, a full disk, a journal that does not fit the run, a buffer that cannot
    be stored. The message names the store, what was expected and what to do.

    Examples
    --------
    >>> e = ResultStoreError("cannot create the result store 'r.zarr': Permission denied")
    >>> str(e), isinstance(e, OSError)
    ("cannot create the result store 'r.zarr': Permission denied", True)
    """


class ResultStoreExistsError(ResultStoreError, FileExistsError):
    """The target of ``run_udf(out=...)`` exists, and neither ``overwrite=True`` nor
    ``resume=True`` was given (or it is not a udfkit result store, which udfkit never
    deletes)."""


class CLIError(UdfkitError):
    """A bad command line of the ``udfkit`` command: reported as one line, exit code 1 (argparse's
    own errors, such as an unknown option, exit with 2)."""


class UdfkitWarning(UserWarning):
    """Warnings issued by udfkit."""
