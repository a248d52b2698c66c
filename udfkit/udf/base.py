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

from ..common import udf as _c
from ..common.udf import UDFMethod
from ..errors import UDFError
from .buffers import ArrayWithMask, AuxData, BufferNamespace, BufferWrapper, Namespace, fill_value
from .meta import UDFMeta

__all__ = ["UDF", "UDFMeta", "UDFMethod", "UDFData"]

#: LiberTEM's name of the container of ``self.results`` / ``merge``'s ``dest`` and ``src``
UDFData = BufferNamespace


class _WithMask:
    """``with_mask`` works on the class (LiberTEM's static method) and on an instance."""

    def __get__(self, obj, cls=None):
        def with_mask(data, mask=_UNSET, *, fill=None):
            return UDF._with_mask(obj, data, mask, fill)

        with_mask.__doc__ = UDF._with_mask.__doc__
        return with_mask


_UNSET = object()


class UDF:
    """Base class of user-defined functions.

    Subclasses declare buffers in :meth:`get_result_buffers` and implement one of
    ``process_frame(frame)``, ``process_tile(tile)``, ``process_frame_stack(stack)`` (a stack
    of whole frames, ``(k, *sig)``) or ``process_partition(partition)`` (see
    :meth:`get_method` for which one runs when several are implemented).

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

    # LiberTEM's constants (see :mod:`udfkit.common.udf`)
    UDF_METHOD = UDFMethod  #: enum of the process methods (``get_method()`` returns a member)
    TILE_SIZE_BEST_FIT = _c.TILE_SIZE_BEST_FIT  #: tile size: the negotiator's (cache-sized) choice
    TILE_SIZE_MAX = _c.TILE_SIZE_MAX  #: tile size: the largest udfkit makes
    TILE_DEPTH_DEFAULT = _c.TILE_DEPTH_DEFAULT  #: tile depth: the negotiator's choice
    TILE_DEPTH_MAX = _c.TILE_DEPTH_MAX  #: tile depth: as deep as a partition allows
    BACKEND_NUMPY = _c.BACKEND_NUMPY  #: numpy array (the backend udfkit runs)
    BACKEND_CUPY = _c.BACKEND_CUPY  #: CuPy array (not available in udfkit)
    BACKEND_CUDA = _c.BACKEND_CUDA  #: numpy array on a CUDA worker (not available in udfkit)
    BACKEND_SPARSE_COO = _c.BACKEND_SPARSE_COO  #: sparse.COO
    BACKEND_SPARSE_GCXS = _c.BACKEND_SPARSE_GCXS  #: sparse.GCXS
    BACKEND_SPARSE_DOK = _c.BACKEND_SPARSE_DOK  #: sparse.DOK
    BACKEND_SCIPY_COO = _c.BACKEND_SCIPY_COO  #: scipy.sparse.coo_matrix
    BACKEND_SCIPY_CSR = _c.BACKEND_SCIPY_CSR  #: scipy.sparse.csr_matrix
    BACKEND_SCIPY_CSC = _c.BACKEND_SCIPY_CSC  #: scipy.sparse.csc_matrix
    BACKEND_SCIPY_COO_ARRAY = _c.BACKEND_SCIPY_COO_ARRAY  #: scipy.sparse.coo_array
    BACKEND_SCIPY_CSR_ARRAY = _c.BACKEND_SCIPY_CSR_ARRAY  #: scipy.sparse.csr_array
    BACKEND_SCIPY_CSC_ARRAY = _c.BACKEND_SCIPY_CSC_ARRAY  #: scipy.sparse.csc_array
    BACKEND_CUPY_SCIPY_COO = _c.BACKEND_CUPY_SCIPY_COO  #: cupyx.scipy.sparse.coo_matrix
    BACKEND_CUPY_SCIPY_CSR = _c.BACKEND_CUPY_SCIPY_CSR  #: cupyx.scipy.sparse.csr_matrix
    BACKEND_CUPY_SCIPY_CSC = _c.BACKEND_CUPY_SCIPY_CSC  #: cupyx.scipy.sparse.csc_matrix
    BACKEND_ALL = _c.BACKEND_ALL  #: every backend in LiberTEM's order of preference
    CPU_BACKENDS = _c.CPU_BACKENDS  #: backends of device class CPU
    CUDA_BACKENDS = _c.CUDA_BACKENDS  #: backends of device class CUDA
    CUPY_BACKENDS = _c.CUPY_BACKENDS  #: backends that use CuPy
    SPARSE_BACKENDS = _c.SPARSE_BACKENDS  #: sparse array backends
    DENSE_BACKENDS = _c.DENSE_BACKENDS  #: dense array backends
    ND_BACKENDS = _c.ND_BACKENDS  #: backends with n-dimensional arrays
    D2_BACKENDS = _c.D2_BACKENDS  #: backends with 2D matrices only

    def __init__(self, **kwargs):
        self._kwargs = kwargs
        self.params = Namespace(kwargs)
        self.results = BufferNamespace()
        self.task_data = Namespace()
        self.meta = None

    # -- declarations -----------------------------------------------------------------------
    @staticmethod
    def buffer(kind="nav", extra_shape=(), dtype="float32", where=None, use=None) -> BufferWrapper:
        """Declare a result buffer (use in :meth:`get_result_buffers`).

        Parameters
        ----------
        kind : {"nav", "sig", "single"}
        extra_shape : tuple of int
            Extra trailing axes of each entry.
        dtype : dtype
        where : {None, "device"}
            LiberTEM's device buffers; on udfkit's numpy (CPU) backend both are host memory.
        use : {None, "private", "result_only"}
            ``"private"``: merged, seen by ``get_results``, never returned;
            ``"result_only"``: only made by ``get_results``.
        """
        return BufferWrapper(kind=kind, extra_shape=extra_shape, dtype=dtype, where=where, use=use)

    @staticmethod
    def aux_data(data, kind="nav", extra_shape=(), dtype=None) -> AuxData:
        """Wrap per-frame auxiliary input to pass as a UDF parameter.

        Inside the process methods ``self.params.<name>`` is then the view for the current
        frame / tile / partition, exactly like a nav buffer (also with a ROI). Outside them it
        behaves like a buffer of the values, ``(nav_size, *extra_shape)``: ``.shape``,
        ``.dtype``, indexing; on the main process (``preprocess``, ``merge``,
        ``get_results``) it holds the processed positions' rows only.
        """
        return AuxData(data, kind=kind, extra_shape=extra_shape, dtype=dtype)

    # -- LiberTEM's array-backend helpers ------------------------------------------------------
    @property
    def xp(self):
        """The array module of the current backend: numpy (udfkit computes with numpy)."""
        return np

    def forbuf(self, arr, target):
        """``arr`` made assignable to the result buffer ``target``.

        Sparse results (scipy.sparse, pydata sparse) become dense numpy arrays, and an array
        with the same number of elements as ``target`` but flattened signal axes is reshaped
        to ``target``'s shape; anything else is returned unchanged.

        Examples
        --------
        >>> import scipy.sparse
        >>> UDF().forbuf(scipy.sparse.csr_matrix(np.eye(2)), np.zeros((2, 2)))
        array([[1., 0.],
               [0., 1.]])
        """
        if hasattr(arr, "todense") and not isinstance(arr, np.ndarray):
            arr = arr.todense()
        if hasattr(arr, "__array__"):
            # also turns scipy's np.matrix into a plain array
            arr = np.asarray(arr)
        shape = getattr(target, "shape", None)
        if (isinstance(arr, np.ndarray) and shape is not None and arr.shape != tuple(shape)
                and arr.size == int(np.prod(shape)) and arr.ndim >= 1):
            arr = arr.reshape(shape)
        return arr

    def get_result_buffers(self) -> dict:
        """Return ``{name: self.buffer(...)}`` (required)."""
        raise NotImplementedError(f"{type(self).__name__} must implement get_result_buffers()")

    def get_method(self) -> UDFMethod:
        """A :class:`~udfkit.common.udf.UDFMethod` (equal to ``"tile"``, ``"frame"``,
        ``"partition"`` or ``"frame_stack"``); by default the one implemented. An override
        may return the member or the string.

        Precedence when several are implemented: LiberTEM's ``tile`` before ``frame`` before
        ``partition``, with udfkit's ``frame_stack`` between ``tile`` and ``frame`` (a stack
        method is the vectorised form of a frame method, so it wins over it). A UDF with a
        halo (:meth:`get_halo`) can only receive frame stacks or partitions: for it the
        order is ``frame_stack`` before ``partition``, and its other methods are ignored.
        """
        order: tuple[UDFMethod, ...] = _METHOD_ORDER
        if self.get_halo() is not None:
            order = _HALO_METHOD_ORDER
        for method in order:
            if _overrides(type(self), f"process_{method.value}"):
                return method
        if order is _HALO_METHOD_ORDER:
            raise UDFError(f"{type(self).__name__} declares a halo (get_halo) but implements "
                           "neither process_frame_stack nor process_partition: a halo is only "
                           "delivered with whole frame stacks or partitions")
        raise UDFError(f"{type(self).__name__} has no process method: implement one of "
                       "process_frame, process_tile, process_frame_stack or process_partition")

    def get_halo(self) -> dict | None:
        """The neighbourhood in nav the UDF needs around its frames (udfkit's own), or None.

        Return ``{"radius": (ry, rx), "mode": "nan" | "reflect" | "nearest"}``: one radius
        per nav axis (a 1-D nav takes a 1-tuple). The UDF must then implement
        :meth:`process_frame_stack` or ``process_partition`` and receives the frames of its
        partition plus the halo; ``self.meta.own_frames`` says which of them are its own.
        Beyond the edges of the nav grid the ``mode`` decides, as ``numpy.pad``'s modes
        ``"constant"`` with NaN, ``"reflect"`` and ``"edge"``; neighbours outside the ROI or
        without a frame are NaN. See the "Halo" section of the UDF guide.
        """
        return None

    def get_preferred_input_dtype(self):
        """Dtype the UDF wants its data in; default float32, promoted with the stored dtype."""
        return np.float32

    def get_tiling_preferences(self) -> dict:
        """``{"depth": int, "total_size": bytes, "whole_frames": bool}``, all optional.

        ``depth`` may be :attr:`TILE_DEPTH_DEFAULT` (the negotiator's choice) or
        :attr:`TILE_DEPTH_MAX` (as deep as a partition and the read buffer allow);
        ``total_size`` may be :attr:`TILE_SIZE_BEST_FIT` (cache-sized, the default) or
        :attr:`TILE_SIZE_MAX` (udfkit's largest tiles, 16 MiB). ``whole_frames=True`` keeps the
        signal unsplit, so ``process_tile`` sees whole frames. (LiberTEM's default is
        ``TILE_SIZE_MAX``; udfkit's is the best fit, which is faster for copied tiles.)
        """
        return {}

    def get_task_data(self) -> dict:
        """Per-partition data prepared on the worker, available as ``self.task_data``."""
        return {}

    def get_backends(self):
        """Array backends the UDF supports (one ``BACKEND_*`` name or several, in order of
        preference). udfkit computes on the CPU: the UDF gets the first form it lists that
        the data set delivers as it is (numpy from dense formats; scipy CSR row blocks or
        numpy from ``raw_csr``), else its tiles converted to a listed sparse format
        (:func:`udfkit.udf.validation.choose_backends`); CuPy / CUDA only is a
        :class:`~udfkit.errors.UDFError`. ``self.meta.array_backend`` says which. scipy.sparse
        tiles are 2D, ``(frames, pixels)``; pydata ``sparse`` ones keep the tile's shape."""
        return (UDF.BACKEND_NUMPY,)

    # -- hooks --------------------------------------------------------------------------------
    def preprocess(self):  # noqa: B027 - optional hook
        """Initialise buffers (runs on the main process and before each partition)."""

    def postprocess(self):  # noqa: B027 - optional hook
        """Runs on the worker after a partition has been processed."""

    def cleanup(self):  # noqa: B027 - optional hook
        """Release resources taken in ``get_task_data`` / ``preprocess``."""

    def merge(self, dest, src):
        """Fold a partition's buffers ``src`` into the full buffers ``dest``.

        ``dest`` and ``src`` hold every buffer except ``result_only`` ones, private ones
        included; ``dest.x[:] = ...`` and ``dest.x = ...`` both write into the buffer. The
        default copies nav buffers (each partition owns its frames); UDFs with sig or single
        buffers must implement it.
        """
        for name in src:
            dest[name][...] = src[name]

    def get_results(self) -> dict:
        """Final results from the merged buffers (``self.results``).

        Buffers with ``use=None`` that are not returned are passed through unchanged, private
        ones are never returned, ``result_only`` ones must be. The default returns the
        ``use=None`` buffers as they are (as LiberTEM's does, so that an override may start
        from ``super().get_results()``).
        """
        results = self.results
        return {name: results[name] for name in results
                if results.get_buffer(name).use is None}

    @property
    def requires_custom_merge(self) -> bool:
        """True when the UDF has buffers the default ``merge`` cannot merge (sig or single
        buffers that are not ``result_only``; LiberTEM's property)."""
        return any(spec.kind != "nav" and spec.use != "result_only"
                   for spec in self.get_result_buffers().values())

    with_mask = _WithMask()

    def _with_mask(self, data, mask=_UNSET, fill=None):
        """``with_mask(data, mask)``: ``data`` with its valid mask, to return from
        :meth:`get_results` (LiberTEM's meaning; ``mask`` is a bool array broadcastable to
        ``data``, or True / False for all valid / none).

        ``with_mask(data)`` without a mask (udfkit's own, only on an instance): ``data``
        with one entry per processed frame along its first axis, like
        ``self.results.<nav buffer>``, spread over the full flattened nav axis, with
        ``fill`` (NaN / 0 / False by default) at the positions that were not processed.
        """
        if mask is not _UNSET:
            if fill is not None:
                raise UDFError("with_mask: pass either mask= (the valid mask of a result) or fill= "
                               "(spread a per-frame array over the nav axis), not both")
            return ArrayWithMask(data, mask=mask)
        if self is None:
            raise UDFError("UDF.with_mask(data) without mask= needs the UDF instance: call "
                           "self.with_mask(data) inside get_results")
        data = np.asarray(data)
        roi = self.meta.roi if self.meta is not None else None
        if roi is None:
            return data
        roi = roi.reshape(-1)
        if fill is None:
            fill = fill_value(data.dtype)
        out = np.full((roi.size,) + data.shape[1:], fill, dtype=data.dtype)
        out[roi] = data
        return out

    def copy(self) -> UDF:
        """A fresh instance built from the constructor arguments (LiberTEM's name)."""
        return type(self)(**self._kwargs)

    def copy_for_partition(self, *args, **kwargs) -> UDF:
        """A fresh instance built from the constructor arguments (what a worker does).

        LiberTEM's ``(partition, roi)`` arguments are accepted and not needed: udfkit cuts aux
        data to the partition when it plans the run.
        """
        return type(self)(**self._kwargs)

    def __repr__(self):
        return f"{type(self).__name__}({', '.join(sorted(self._kwargs))})"


_METHOD_ORDER = (UDFMethod.TILE, UDFMethod.FRAME_STACK, UDFMethod.FRAME, UDFMethod.PARTITION)
_HALO_METHOD_ORDER = (UDFMethod.FRAME_STACK, UDFMethod.PARTITION)


def _overrides(cls, name: str) -> bool:
    """True when ``cls`` has a callable ``name`` that the base class does not provide."""
    return callable(getattr(cls, name, None)) and getattr(cls, name) is not UDF.__dict__.get(name)
