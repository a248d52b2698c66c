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
    """An I/O backend cannot read a file the way it was asked to."""


class UdfkitWarning(UserWarning):
    """Warnings issued by udfkit."""
