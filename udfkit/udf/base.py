"""The :class:`UDF` base class: what a user subclasses.

Life of a UDF in a run
----------------------
On the main process the user's instance is validated (before any data is read), its
buffers are allocated at full size and ``preprocess`` runs on them (so it can initialise,
e.g. fill a maximum with -inf). For every partition a fresh instance is built on a worker
from the class and the constructor keyword arguments; it gets ``task_data``, partition-sized
buffers, ``preprocess``, the ``process_*`` calls, ``postprocess`` and ``cleanup``. Back on the
main process, ``merge(dest, src)`` folds each partition's buffers into the full buffers, and
``get_results`` turns them into the final results.
"""

from __future__ import annotations

import numpy as np

from .buffers import AuxData, BufferSpec, Namespace, fill_value

__all__ = ["UDF"]


class UDF:
    """Base class of user-defined functions.

    Subclasses declare buffers in :meth:`get_result_buffers` and implement one of
    :meth:`process_frame`, :meth:`process_tile` or :meth:`process_partition`.

    Parameters
    ----------
    **kwargs
        Parameters of the UDF, available as ``self.params.<name>``. The UDF is rebuilt from
        them on every worker, so they must be picklable (cloudpickle).

    Examples
    --------
    >>> import numpy as np
    >>> from udfkit import Context, UDF
    >>> class MaxFrame(UDF):
    ...     def get_result_buffers(self):
    ...         return {"maxval": self.buffer(kind="nav", dtype="float32")}
    ...     def process_frame(self, frame):
    ...         self.results.maxval[:] = frame.max()
    >>> ctx = Context.make_with("inline")
    >>> ds = ctx.load("memory", data=np.arange(2 * 3 * 4 * 4).reshape(2, 3, 4, 4))
    >>> ctx.run_udf(dataset=ds, udf=MaxFrame())["maxval"].data
    array([[15., 31., 47.],
           [63., 79., 95.]], dtype=float32)
    """

    #: Return this from :meth:`get_preferred_input_dtype` to receive the stored dtype
    #: (in native byte order) instead of float. It is ``bool`` so that numpy promotion with
    #: the data set's dtype yields exactly that dtype.
    USE_NATIVE_DTYPE = np.bool_

    def __init__(self, **kwargs):
        self._kwargs = kwargs
        self.params = Namespace(kwargs)
        self.results = Namespace()
        self.task_data = Namespace()
        self.meta = None

    # -- declarations -----------------------------------------------------------------------
    @staticmethod
    def buffer(kind="nav", extra_shape=(), dtype="float32", use=None) -> BufferSpec:
        """Declare a result buffer (use in :meth:`get_result_buffers`).

        Parameters
        ----------
        kind : {"nav", "sig", "single"}
        extra_shape : tuple of int
            Extra trailing axes of each entry.
        dtype : dtype
        use : {None, "private", "result_only"}
        """
        return BufferSpec(kind=kind, extra_shape=extra_shape, dtype=dtype, use=use)

    @staticmethod
    def aux_data(data, kind="nav", extra_shape=(), dtype=None) -> AuxData:
        """Wrap per-frame auxiliary input to pass as a UDF parameter.

        Inside the process methods ``self.params.<name>`` is then the view for the current
        frame / tile / partition, exactly like a nav buffer (also with a ROI).
        """
        return AuxData(data, kind=kind, extra_shape=extra_shape, dtype=dtype)

    def get_result_buffers(self) -> dict:
        """Return ``{name: self.buffer(...)}`` (required)."""
        raise NotImplementedError(f"{type(self).__name__} must implement get_result_buffers()")

    def get_method(self) -> str:
        """``"tile"``, ``"frame"`` or ``"partition"``; by default the one implemented
        (``tile`` before ``frame`` before ``partition`` when several are)."""
        for name in ("tile", "frame", "partition"):
            if _overrides(type(self), f"process_{name}"):
                return name
        return "none"

    def get_preferred_input_dtype(self):
        """Dtype the UDF wants its data in; default float32, promoted with the stored dtype."""
        return np.float32

    def get_tiling_preferences(self) -> dict:
        """``{"depth": int, "total_size": bytes, "whole_frames": bool}``, all optional.

        ``whole_frames=True`` keeps the signal unsplit, so ``process_tile`` sees whole frames.
        """
        return {}

    def get_task_data(self) -> dict:
        """Per-partition data prepared on the worker, available as ``self.task_data``."""
        return {}

    def get_backends(self):
        """Array backends the UDF supports; udfkit runs on numpy (CPU)."""
        return ("numpy",)

    # -- hooks --------------------------------------------------------------------------------
    def preprocess(self):  # noqa: B027 - optional hook
        """Initialise buffers (runs on the main process and before each partition)."""

    def postprocess(self):  # noqa: B027 - optional hook
        """Runs on the worker after a partition has been processed."""

    def cleanup(self):  # noqa: B027 - optional hook
        """Release resources taken in ``get_task_data`` / ``preprocess``."""

    def merge(self, dest, src):
        """Fold a partition's buffers ``src`` into the full buffers ``dest``.

        The default copies nav buffers (each partition owns its frames); UDFs with sig or
        single buffers must implement it.
        """
        for name in src:
            dest[name][...] = src[name]

    def get_results(self) -> dict:
        """Final results from the merged buffers (``self.results``). Default: all public buffers."""
        return {name: getattr(self.results, name) for name in self.results}

    def with_mask(self, data, fill=None):
        """Spread an array with one entry per processed frame over the full nav axis.

        For use in :meth:`get_results`: ``data`` has ``n_processed`` entries along its first
        axis, like ``self.results.<nav buffer>``; the return value has ``nav_size`` entries,
        ``fill`` (NaN / 0 / False by default) at the positions that were not processed.
        """
        data = np.asarray(data)
        roi = self.meta.roi if self.meta is not None else None
        if roi is None:
            return data
        if fill is None:
            fill = fill_value(data.dtype)
        out = np.full((roi.size,) + data.shape[1:], fill, dtype=data.dtype)
        out[roi] = data
        return out

    def copy_for_partition(self) -> UDF:
        """A fresh instance built from the constructor arguments (what a worker does)."""
        return type(self)(**self._kwargs)

    def __repr__(self):
        return f"{type(self).__name__}({', '.join(sorted(self._kwargs))})"


def _overrides(cls, name: str) -> bool:
    """True when ``cls`` has a callable ``name`` that the base class does not provide."""
    return callable(getattr(cls, name, None)) and getattr(cls, name) is not UDF.__dict__.get(name)
