"""``ApplyMasksUDF``: virtual detectors, i.e. the dot product of every frame with N masks.

Per tile, the frames (``depth`` rows of the tile's pixels) are multiplied with the masks'
matching pixels (``pixels × N``) in one matrix product; tiles of several signal slices add up
into the same nav entries. Which product (a numba kernel that reads 8/16-bit integers as
stored, one that reads only the pixels under sparse-support masks, or BLAS / scipy / pydata
sparse) is decided in :mod:`udfkit.udf.builtins._mask_paths`. With ``shifts`` the masks move relative to each frame, so frames are processed one
by one against the overlapping part of the masks.

The masks live in a :class:`~udfkit.common.container.MaskContainer`, made once per process:
containers are cached, keyed by the factories object itself and, for copies that arrived
pickled on a worker, by a hash of their pickled bytes; the container caches its per-slice
cuts.

Dtypes (LiberTEM's rules)
-------------------------
The masks keep their own dtype unless ``mask_dtype`` is given; the result dtype is
``result_type(input dtype, mask dtype)``. The input is read as ``preferred_dtype`` if given,
else float32 promoted with the mask dtype and the data's dtype: bool masks on uint16 data
compute in float32, float64 masks in float64. Pass ``mask_dtype=np.float32`` to compute
float64 masks in float32 (about twice as fast).
"""

from __future__ import annotations

import hashlib
import logging
import threading
from collections import OrderedDict

import numpy as np

from ...common.container import SPARSE_FORMATS, MaskContainer
from ...errors import MaskError, UDFError
from ..base import UDF
from ..buffers import AuxData
from ._mask_paths import apply_kernel, blas_threads, choose_path, kernel_cut

__all__ = ["ApplyMasksUDF"]

log = logging.getLogger(__name__)

_CACHE_ENTRIES = 4
_SHIFT_CACHE_ENTRIES = 64
_TILE_DEPTH = 64
_TILE_BYTES = 4 << 20
#: partitions from this many bytes on ask how many threads BLAS may use (a lookup that costs
#: milliseconds once per process) and spread the kernels' frames over as many
_BIG_PARTITION = 16 << 20

#: LiberTEM's ``BACKEND_ALL`` without the scipy ``*_array`` backends (what LiberTEM's
#: ApplyMasksUDF supports); udfkit serves numpy and the CPU sparse ones
_LIBERTEM_BACKENDS = (
    "cupyx.scipy.sparse.csr_matrix", "cupyx.scipy.sparse.csc_matrix", "cupyx.scipy.sparse.coo_matrix",
    "scipy.sparse.csr_matrix", "scipy.sparse.csc_matrix", "scipy.sparse.coo_matrix",
    "cupy", "numpy", "sparse.COO", "sparse.GCXS",
)


class ApplyMasksUDF(UDF):
    """Apply N masks to every frame: nav-shaped result ``intensity`` with ``extra_shape=(N,)``.

    ``intensity[..., i]`` is ``sum(frame * mask_i)`` for every frame (weighted by float or
    complex masks, or a plain integral over a region for bool masks).

    Parameters
    ----------
    mask_factories : callable, array or sequence of those
        Each item is a mask of the signal shape (numpy array, ``scipy.sparse`` matrix or
        pydata ``sparse`` array), a stack ``(k, *sig_shape)`` of masks, a list of masks, or a
        callable returning one of these (LiberTEM's form: a list of callables, or one
        callable returning all masks). Callables are called once per worker process, which
        is cheaper than shipping large arrays; see :mod:`udfkit.masks` for ready-made ones.
    use_torch : bool
        Accepted for LiberTEM compatibility; udfkit computes with numpy / scipy (the same
        BLAS product torch would run on the CPU), so it has no effect.
    use_sparse : None, bool or str
        ``None`` (default): sparse products if every mask is sparse, else dense; ``True``:
        sparse (``scipy.sparse`` CSR); ``False``: dense; ``"scipy.sparse"`` /
        ``"scipy.sparse.csr"``, ``"scipy.sparse.csc"``, ``"sparse.pydata"``,
        ``"sparse.pydata.GCXS"``: that sparse format (the pydata ones need the ``sparse``
        package).
    mask_count : int, optional
        Number of masks: known without calling the factories; checked once they are called.
    mask_dtype : dtype, optional
        Dtype of the masks in the product, overriding the masks' own dtype (which decides
        the result dtype together with the input dtype); e.g. ``np.float32`` keeps float64
        masks from making the computation float64.
    preferred_dtype : dtype, optional
        Input dtype asked for instead of the default (float32 promoted with the mask
        dtype); an integer dtype with integer masks computes in integers.
        ``UDF.USE_NATIVE_DTYPE`` reads the data as stored.
    backends : iterable of str, optional
        LiberTEM's array backends the UDF may run on (default: all LiberTEM's ApplyMasksUDF
        supports, scipy CSR before numpy). udfkit runs on the CPU: the tiles come in the
        first listed form the data set delivers as it is (a ``raw_csr`` data set: its CSR
        rows, so that the product costs one multiply-add per stored entry and mask; dense
        data sets: numpy), else converted to a listed sparse format (``"sparse.COO"``, ...);
        a list of GPU backends only is an error.
    shifts : (int, int) or aux data, optional
        Shift of the masks relative to each frame, one entry per signal axis (``(y, x)`` for
        2D frames): a constant for all frames, or per frame as
        ``ApplyMasksUDF.aux_data(shifts, kind="nav", extra_shape=(2,), dtype=int)``. A
        positive y-shift moves the masks down, a positive x-shift to the right; the parts of
        mask and frame that do not overlap are left out (no overlap gives 0). Float shifts
        are truncated to integers. Frames are then processed one at a time (slower than
        without shifts).

    Examples
    --------
    >>> import numpy as np
    >>> from udfkit import Context
    >>> from udfkit.udf import ApplyMasksUDF
    >>> data = np.ones((2, 3, 4, 4), dtype="uint16")
    >>> left = np.zeros((4, 4)); left[:, :2] = 1
    >>> udf = ApplyMasksUDF(mask_factories=[lambda: left, lambda: np.ones((4, 4))])
    >>> ctx = Context.make_with("inline")
    >>> res = ctx.run_udf(dataset=ctx.load("memory", data=data), udf=udf)
    >>> res["intensity"].data.shape
    (2, 3, 2)
    >>> res["intensity"].data[0, 0]
    array([ 8., 16.])

    A constant shift moves the masks by whole pixels (here the left half moves right by 3
    columns, so that only one of its columns still overlaps the frame):

    >>> shifted = ApplyMasksUDF(mask_factories=[lambda: left], shifts=(0, 3))
    >>> ctx.run_udf(dataset=ctx.load("memory", data=data), udf=shifted)["intensity"].data[0, 0]
    array([4.])
    """

    def __init__(self, mask_factories=None, use_torch=True, use_sparse=None, mask_count=None,
                 mask_dtype=None, preferred_dtype=None, backends=None, shifts=None, **kwargs):
        if mask_factories is None:
            raise UDFError("ApplyMasksUDF: mask_factories is required (masks, or callables "
                           "returning masks of the signal shape)")
        if not (use_sparse is None or use_sparse is True or use_sparse is False
                or (isinstance(use_sparse, str) and use_sparse in SPARSE_FORMATS)):
            raise UDFError(f"ApplyMasksUDF: use_sparse must be None, True, False or one of "
                           f"{', '.join(map(repr, SPARSE_FORMATS))}; got {use_sparse!r}")
        if mask_count is not None and (isinstance(mask_count, bool)
                                       or not isinstance(mask_count, (int, np.integer))
                                       or mask_count < 0):
            raise UDFError(f"ApplyMasksUDF: mask_count must be a non-negative integer, got {mask_count!r}")
        _dtype_arg(mask_dtype, "mask_dtype")
        _dtype_arg(preferred_dtype, "preferred_dtype")
        backends = _backends_arg(backends)
        if shifts is not None and not isinstance(shifts, AuxData):
            shifts = _constant_shifts(shifts)
        if use_torch:
            _note_torch_once()
        super().__init__(mask_factories=mask_factories, use_torch=use_torch, use_sparse=use_sparse,
                         mask_count=mask_count, mask_dtype=mask_dtype, preferred_dtype=preferred_dtype,
                         backends=backends, shifts=shifts, **kwargs)

    # -- the masks ---------------------------------------------------------------------------------
    @property
    def masks(self) -> MaskContainer:
        """The :class:`~udfkit.common.container.MaskContainer` of this run's masks."""
        # once per run step (meta): looking arrays up by content hashes their bytes
        meta = self.meta
        memo = self.__dict__.get("_masks_memo")
        if memo is not None and memo[0] is meta:
            return memo[1]
        p = self.params
        # planning (no partition yet; once per run, in the main process) looks arrays up by
        # content, so that masks changed in place since the last run are made again; a task
        # trusts the object it was given (the run's one copy in this process: the main
        # process's after that check, or the one a worker received for the run)
        container = _cached_container(p.mask_factories, meta.dataset_shape.sig.to_tuple(),
                                      p.use_sparse, p.mask_count,
                                      by_identity=meta.partition_shape is not None)
        self._masks_memo = (meta, container)
        return container

    def get_mask_dtype(self) -> np.dtype:
        """``mask_dtype`` if given, else the masks' own dtype."""
        if self.params.mask_dtype is not None:
            return np.dtype(self.params.mask_dtype)
        return self.masks.dtype

    def get_mask_count(self) -> int:
        """``mask_count`` if given (checked when the masks are made), else the number of masks."""
        if self.params.mask_count is not None:
            return int(self.params.mask_count)
        return len(self.masks)

    def _check_masks(self):
        masks = self.masks
        try:
            own = masks.dtype
            len(masks)
        except MaskError as e:
            raise MaskError(f"ApplyMasksUDF: {e}") from None
        wanted = self.params.mask_dtype
        if wanted is not None and own.kind == "c" and np.dtype(wanted).kind != "c":
            raise UDFError(f"ApplyMasksUDF: the masks are complex, but mask_dtype={np.dtype(wanted)} is "
                           "real and would drop their imaginary part; use a complex mask_dtype")
        return masks

    # -- the UDF interface ----------------------------------------------------------------------
    def get_backends(self):
        return self.params.backends

    def get_method(self):
        return "frame" if self.params.shifts is not None else "tile"

    def get_preferred_input_dtype(self):
        if self.params.preferred_dtype is not None:
            return self.params.preferred_dtype
        masks = self._check_masks()
        # float32 as in LiberTEM, widened to the masks' dtype so that the product runs in one
        # dtype instead of converting every tile to the masks' dtype again
        compute = np.result_type(np.float32, self.get_mask_dtype())
        if self.meta.array_backend == "numpy" \
                and self._kernel_path(masks, self.meta.dataset_dtype, compute) != "blas":
            # the kernels convert in registers: same numbers, no decoded float32 copy
            return self.USE_NATIVE_DTYPE
        return compute

    def _compute_dtype(self) -> np.dtype:
        """Dtype of the product and the result: input and masks promoted, at least float32
        unless ``preferred_dtype`` was given (the data may arrive as stored, see above)."""
        dtype = np.result_type(self.meta.input_dtype, self.get_mask_dtype())
        if self.params.preferred_dtype is None:
            dtype = np.result_type(dtype, np.float32)
        return dtype

    def _kernel_path(self, masks, data_dtype, compute) -> str:
        """Which product applies the masks to ``data_dtype`` tiles (see ``_mask_paths``)."""
        if self.params.shifts is not None:
            return "blas"
        return choose_path(masks, data_dtype, compute, self.params.use_sparse)

    def get_result_buffers(self):
        self._check_masks()
        dtype = self._compute_dtype()
        return {"intensity": self.buffer(kind="nav", extra_shape=(self.get_mask_count(),),
                                         dtype=dtype)}

    def get_tiling_preferences(self):
        if self.params.shifts is not None:
            return {"whole_frames": True}
        # BLAS wants many frames per product, and the tile and its masks in the cache: 64
        # frames of a quarter frame. Measured here, 16 masks, one BLAS thread, uint16 / float32
        # data: 8 MiB tiles of whole frames 2.2-2.6 / 3.3-4.0 GB/s, this 2.8-3.0 / 4.1-4.7
        return {"depth": _TILE_DEPTH, "total_size": _TILE_BYTES}

    def get_task_data(self):
        masks = self._check_masks()
        dtype = self._compute_dtype()
        fmt = masks.use_sparse
        if self.params.shifts is None:
            path = self._kernel_path(masks, self.meta.input_dtype, dtype)
            if path != "blas":
                # the kernels' form of every cut; the BLAS cuts only for sparse tiles, on demand
                kernels = {sl.origin: kernel_cut(path, masks, sl, dtype)
                           for sl in self.meta.tiling_scheme}
                # as many threads as BLAS may use here (looked up for large partitions only)
                part = self.meta.partition_shape
                big = part is not None and part.size * self.meta.input_dtype.itemsize >= _BIG_PARTITION
                return {"by_slice": {}, "kernels": kernels, "pydata": _is_pydata(fmt),
                        "dtype": dtype, "threads": blas_threads() if big else 1}
            # every cut of the scheme, made before the first tile
            by_slice = {sl.origin: masks.get_for_sig_slice(sl, dtype=dtype)
                        for sl in self.meta.tiling_scheme}
            return {"by_slice": by_slice, "kernels": {}, "pydata": _is_pydata(fmt), "dtype": dtype}
        return {"dtype": dtype, "pydata": _is_pydata(fmt), "shifted": OrderedDict()}

    def process_tile(self, tile):
        td = self.task_data
        sl = self.meta.sig_slice
        kernel = td.kernels.get(sl.origin)
        if kernel is not None and isinstance(tile, np.ndarray):
            apply_kernel(kernel, tile, self.results.intensity, td.threads)
            return
        mat = td.by_slice.get(sl.origin)
        if mat is None:
            mat = td.by_slice[sl.origin] = self.masks.get_for_sig_slice(sl, dtype=td.dtype)
        # a shape tuple without -1: pydata sparse tiles reshape only like that
        rows = tile.reshape((tile.shape[0], int(np.prod(tile.shape[1:]))))
        self.results.intensity[:] += _product(rows, mat, td.pydata)

    def process_frame(self, frame):
        shifts = tuple(int(s) for s in np.asarray(self.params.shifts).reshape(-1))
        sig_shape = tuple(self.meta.dataset_shape.sig)
        if len(shifts) != len(sig_shape):
            raise UDFError(f"ApplyMasksUDF: shifts has {len(shifts)} entries ({shifts}); expected one "
                           f"per signal axis of the frames {sig_shape}")
        frame_part, mat = self._shifted(shifts, sig_shape)
        if mat is None:
            return  # no overlap: the sums stay 0
        if not isinstance(frame, np.ndarray):
            # a sparse frame (sparse backends): shifting cuts it in 2D, so it is made dense
            frame = (frame.toarray() if _is_scipy(frame) else frame.todense()).reshape(sig_shape)
        rows = frame[frame_part].reshape(1, -1)
        self.results.intensity[:] += _product(rows, mat, self.task_data.pydata)[0]

    def _shifted(self, shifts, sig_shape):
        """``(frame slices, mask cut)`` for a shift; ``(None, None)`` when nothing overlaps."""
        cache = self.task_data.shifted
        hit = cache.get(shifts)
        if hit is not None:
            cache.move_to_end(shifts)
            return hit
        from ...common.shape import Shape
        from ...common.slice import Slice

        frame_part, origin, extent = [], [], []
        for s, n in zip(shifts, sig_shape):
            # frame pixel p meets mask pixel p - s
            lo, hi = max(0, s), min(n, n + s)
            frame_part.append(slice(lo, max(lo, hi)))
            origin.append(lo - s)
            extent.append(max(0, hi - lo))
        if 0 in extent:
            hit = (None, None)
        else:
            sl = Slice(origin, Shape(tuple(extent), sig_dims=len(extent)))
            hit = (tuple(frame_part), self.masks.get_for_sig_slice(sl, dtype=self.task_data.dtype))
        cache[shifts] = hit
        while len(cache) > _SHIFT_CACHE_ENTRIES:
            cache.popitem(last=False)
        return hit


def _product(rows, mat, pydata: bool):
    """``rows @ mat`` as a dense 2D array.

    ``mat`` is dense, scipy sparse or pydata sparse; ``rows`` is a numpy array or, where the
    UDF runs on a sparse backend, a scipy sparse matrix or pydata sparse array.
    """
    if not isinstance(rows, np.ndarray):
        rows_pydata = not _is_scipy(rows)
        if pydata and not rows_pydata:
            import sparse

            rows = sparse.COO.from_scipy_sparse(rows)
        elif _is_scipy(mat) and rows_pydata:
            rows = rows.to_scipy_sparse()
    if pydata:
        # a pydata array on the left picks its own sparse @ dense kernel
        out = (mat.T @ rows.T).T
    else:
        out = rows @ mat
    if isinstance(out, np.ndarray) and not isinstance(out, np.matrix):
        return out
    if hasattr(out, "toarray"):
        return out.toarray()
    if hasattr(out, "todense"):
        out = out.todense()
    return np.asarray(out)


def _is_scipy(x) -> bool:
    return type(x).__module__.startswith("scipy.sparse")


def _is_pydata(fmt) -> bool:
    return isinstance(fmt, str) and fmt.startswith("sparse.pydata")


def _dtype_arg(value, name):
    if value is None:
        return None
    try:
        dtype = np.dtype(value)
    except TypeError:
        raise UDFError(f"ApplyMasksUDF: {name}={value!r} is not a numpy dtype") from None
    if dtype.kind not in "biufc":
        raise UDFError(f"ApplyMasksUDF: {name} must be a numeric dtype (bool, integer, float or "
                       f"complex), got {dtype}")
    return dtype


def _backends_arg(backends) -> tuple:
    if backends is None:
        return _LIBERTEM_BACKENDS
    given = (backends,) if isinstance(backends, str) else tuple(backends)
    if not all(isinstance(b, str) for b in given):
        raise UDFError(f"ApplyMasksUDF: backends must be backend names such as 'numpy', got {given!r}")
    if all(_is_gpu_backend(b) for b in given):
        raise UDFError(f"ApplyMasksUDF: backends={given!r} lists GPU backends only; udfkit computes "
                       "on the CPU: include 'numpy' (or a scipy.sparse / sparse format) or pass "
                       "backends=None")
    return given


def _is_gpu_backend(name: str) -> bool:
    return name in ("cuda", "cupy") or name.startswith("cupyx.")


def _constant_shifts(shifts) -> tuple:
    try:
        arr = np.asarray(shifts)
    except Exception:  # noqa: BLE001 - anything not array-like gets the message below
        arr = None
    if arr is None or arr.ndim != 1 or arr.size == 0 or arr.dtype.kind not in "iuf":
        raise UDFError(f"ApplyMasksUDF: shifts must be one integer per signal axis, e.g. (2, -5), "
                       f"or per-frame shifts from ApplyMasksUDF.aux_data(...); got {shifts!r}")
    return tuple(int(s) for s in arr)


_torch_noted = False


def _note_torch_once():
    """One line (log level INFO) that ``use_torch`` has no effect, once per process."""
    global _torch_noted
    if not _torch_noted:
        _torch_noted = True
        log.info("ApplyMasksUDF: use_torch has no effect in udfkit; the masks are applied with "
                 "numpy/scipy (the same CPU BLAS product)")


_cache: OrderedDict = OrderedDict()
_cache_lock = threading.Lock()


def _cached_container(factories, sig_shape, use_sparse, mask_count,
                      by_identity: bool = False) -> MaskContainer:
    """The container of ``factories``' masks, made once per process and content.

    Callables are found by identity (a factory is expected to return the same masks each
    time); arrays may have been changed in place, so they are found by a hash of their
    content, unless ``by_identity`` (a task: see :attr:`ApplyMasksUDF.masks`). Hashing is
    proportional to the masks' size, so it must not happen per task: after a hash the entry
    points to the object just hashed, and the run's further tasks in this process find it
    by identity.
    """
    settings = (tuple(sig_shape), use_sparse, mask_count)
    trust = by_identity or _only_callables(factories)
    if trust:
        with _cache_lock:
            for key, (obj, container) in _cache.items():
                if obj is factories and key[1:] == settings:
                    _cache.move_to_end(key)
                    return container
    key = (_content_hash(factories),) + settings
    with _cache_lock:
        hit = _cache.get(key)
        if hit is not None:
            _remember(key, factories, hit[1])
            return hit[1]
    try:
        container = MaskContainer(factories, use_sparse=use_sparse, count=mask_count,
                                  sig_shape=sig_shape)
        container.use_sparse  # noqa: B018 - make the masks now: errors surface before any data are read
    except MaskError as e:
        raise MaskError(f"ApplyMasksUDF: {e}") from None
    with _cache_lock:
        _remember(key, factories, container)
    return container


def _remember(key, factories, container) -> None:
    """Cache ``container`` under ``key``, found by identity from ``factories`` on (the
    caller holds the lock)."""
    # an entry of the same object and settings with other content (changed in place) must
    # not be found by identity any more
    for other in [k for k, (obj, _) in _cache.items()
                  if obj is factories and k[1:] == key[1:] and k != key]:
        del _cache[other]
    # holding the factories object keeps its id() from being reused while cached
    _cache[key] = (factories, container)
    _cache.move_to_end(key)
    while len(_cache) > _CACHE_ENTRIES:
        _cache.popitem(last=False)


def _only_callables(factories) -> bool:
    items = factories if isinstance(factories, (list, tuple)) else [factories]
    return all(callable(item) for item in items)


def _content_hash(obj) -> str:
    import cloudpickle

    try:
        payload = cloudpickle.dumps(obj)
    except Exception as e:
        raise UDFError(f"ApplyMasksUDF: mask_factories cannot be pickled: {type(e).__name__}: {e}") from None
    return hashlib.blake2b(payload, digest_size=16).hexdigest()
