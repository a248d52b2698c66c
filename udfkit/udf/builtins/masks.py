"""``ApplyMasksUDF``: virtual detectors, i.e. the dot product of every frame with N masks.

Per tile, the frames (``depth`` rows of the tile's pixels) are multiplied with the masks'
matching pixels (``pixels × N``) in one matrix product (BLAS for dense masks, scipy for
sparse ones); tiles of several signal slices add up into the same nav entries.

Masks are built from their factories once per process: the prepared masks are cached,
keyed by the factories object itself and, for copies that arrived pickled on a worker, by
a hash of their pickled bytes. The per-slice cuts for a tiling scheme are cached with them.
"""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from math import prod

import numpy as np

from ...errors import UDFError
from ..base import UDF

__all__ = ["ApplyMasksUDF"]

_CACHE_ENTRIES = 4
_TILE_DEPTH = 64
_TILE_BYTES = 4 << 20


class ApplyMasksUDF(UDF):
    """Apply N masks to every frame: nav-shaped result ``intensity`` with ``extra_shape=(N,)``.

    ``intensity[..., i]`` is ``sum(frame * mask_i)`` for every frame.

    Parameters
    ----------
    mask_factories : callable, array or sequence of those
        Each item is a mask of the signal shape (numpy array or, for 2D signals, a
        ``scipy.sparse`` matrix), a stack ``(k, *sig_shape)`` of masks, or a callable
        returning one of these. Callables are called once per worker process, which is
        cheaper than shipping large arrays.
    use_sparse : bool or None
        ``True`` multiplies with scipy.sparse matrices, ``False`` with dense arrays;
        ``None`` (default) uses sparse when any given mask is sparse.
    mask_count : int, optional
        Expected number of masks (checked).
    mask_dtype : dtype, optional
        Dtype of the masks and of the computation; default float32 (complex64 for complex
        masks), twice as fast as float64; pass ``"float64"`` for full precision. Frames are
        converted to it (or wider, if the data are) as they are read.

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
    array([ 8., 16.], dtype=float32)
    """

    def __init__(self, mask_factories=None, use_sparse=None, mask_count=None, mask_dtype=None):
        if mask_factories is None:
            raise UDFError("ApplyMasksUDF: mask_factories is required (masks, or callables "
                           "returning masks of the signal shape)")
        if use_sparse not in (None, True, False):
            raise UDFError(f"ApplyMasksUDF: use_sparse must be True, False or None, got {use_sparse!r}")
        if mask_count is not None and (isinstance(mask_count, bool)
                                       or not isinstance(mask_count, (int, np.integer))
                                       or mask_count < 0):
            raise UDFError(f"ApplyMasksUDF: mask_count must be a non-negative integer, got {mask_count!r}")
        super().__init__(mask_factories=mask_factories, use_sparse=use_sparse,
                         mask_count=mask_count, mask_dtype=mask_dtype)

    def _masks(self) -> _Masks:
        p = self.params
        return _cached_masks(p.mask_factories, self.meta.dataset_shape.sig.to_tuple(),
                             p.use_sparse, p.mask_dtype, p.mask_count)

    def get_preferred_input_dtype(self):
        return self._masks().dtype

    def get_result_buffers(self):
        masks = self._masks()
        dtype = np.result_type(self.meta.input_dtype, masks.dtype)
        return {"intensity": self.buffer(kind="nav", extra_shape=(masks.count,), dtype=dtype)}

    def get_tiling_preferences(self):
        # BLAS wants many frames per product, and the tile and its masks in the cache: 64
        # frames of a quarter frame. Measured here, 16 masks, one BLAS thread, uint16 / float32
        # data: 8 MiB tiles of whole frames 2.2-2.6 / 3.3-4.0 GB/s, this 2.8-3.0 / 4.1-4.7
        return {"depth": _TILE_DEPTH, "total_size": _TILE_BYTES}

    def get_task_data(self):
        return {"by_slice": self._masks().for_scheme(self.meta.tiling_scheme)}

    def process_tile(self, tile):
        mat = self.task_data.by_slice[self.meta.sig_slice.origin]
        rows = tile.reshape(tile.shape[0], -1)
        self.results.intensity[:] += rows @ mat


class _Masks:
    """The masks as one ``(N, pixels)`` matrix, plus per-scheme cuts ``(slice pixels, N)``."""

    def __init__(self, matrix, sig_shape, sparse: bool):
        self.matrix = matrix
        self.sig_shape = sig_shape
        self.sparse = sparse
        self.count = matrix.shape[0]
        self.dtype = np.dtype(matrix.dtype)
        self._cuts = {}
        self._lock = threading.Lock()

    def for_scheme(self, scheme) -> dict:
        key = tuple(sl.origin + sl.shape.to_tuple() for sl in scheme.slices)
        with self._lock:
            cuts = self._cuts.get(key)
            if cuts is None:
                pixels = np.arange(prod(self.sig_shape)).reshape(self.sig_shape)
                cuts = {}
                for sl in scheme.slices:
                    idx = pixels[sl.get()].reshape(-1)
                    if self.sparse:
                        cuts[sl.origin] = self.matrix[:, idx].T.tocsr()
                    else:
                        cuts[sl.origin] = np.ascontiguousarray(self.matrix[:, idx].T)
                self._cuts = {key: cuts}  # one scheme at a time is what a run needs
        return cuts


_cache: OrderedDict = OrderedDict()
_cache_lock = threading.Lock()


def _cached_masks(factories, sig_shape, use_sparse, mask_dtype, mask_count) -> _Masks:
    settings = (tuple(sig_shape), use_sparse, None if mask_dtype is None else str(mask_dtype),
                mask_count)
    with _cache_lock:
        # callables by identity (a factory is expected to return the same masks each time);
        # arrays may have been changed in place, so they are always looked up by content
        for key, (obj, masks) in _cache.items():
            if obj is factories and key[1:] == settings and _only_callables(factories):
                _cache.move_to_end(key)
                return masks
    key = (_content_hash(factories),) + settings
    with _cache_lock:
        hit = _cache.get(key)
    if hit is not None:
        return hit[1]
    masks = _build(factories, tuple(sig_shape), use_sparse, mask_dtype, mask_count)
    with _cache_lock:
        # holding the factories object keeps its id() from being reused while cached
        _cache[key] = (factories, masks)
        while len(_cache) > _CACHE_ENTRIES:
            _cache.popitem(last=False)
    return masks


def _only_callables(factories) -> bool:
    return all(callable(item) for item in _items(factories))


def _content_hash(obj) -> str:
    import cloudpickle

    try:
        payload = cloudpickle.dumps(obj)
    except Exception as e:
        raise UDFError(f"ApplyMasksUDF: mask_factories cannot be pickled: {type(e).__name__}: {e}") from None
    return hashlib.blake2b(payload, digest_size=16).hexdigest()


def _is_sparse(x) -> bool:
    mod = type(x).__module__
    return mod.startswith("scipy.sparse")


def _items(factories):
    if callable(factories) or isinstance(factories, np.ndarray) or _is_sparse(factories):
        return [factories]
    try:
        return list(factories)
    except TypeError:
        raise UDFError(f"ApplyMasksUDF: mask_factories must be a mask, a callable or a sequence "
                       f"of those, got {type(factories).__name__}") from None


def _build(factories, sig_shape, use_sparse, mask_dtype, mask_count) -> _Masks:
    """Call the factories and stack the masks into one ``(N, pixels)`` matrix."""
    n_px = prod(sig_shape)
    rows = []
    any_sparse = False
    for i, item in enumerate(_items(factories)):
        mask = item() if callable(item) else item
        where = f"ApplyMasksUDF: mask {i}"
        if _is_sparse(mask):
            any_sparse = True
            if tuple(mask.shape) == sig_shape and len(sig_shape) == 2:
                rows.append(("sparse", mask.reshape(1, n_px)))
            elif len(mask.shape) == 2 and mask.shape[1] == n_px:
                rows.append(("sparse", mask))
            else:
                raise UDFError(f"{where} is a sparse matrix of shape {mask.shape}; expected the "
                               f"signal shape {sig_shape} or (k, {n_px})")
            continue
        mask = np.asarray(mask)
        if mask.shape == sig_shape:
            rows.append(("dense", mask.reshape(1, n_px)))
        elif mask.shape[1:] == sig_shape:
            rows.append(("dense", mask.reshape(-1, n_px)))
        else:
            raise UDFError(f"{where} has shape {mask.shape}; expected the signal shape {sig_shape} "
                           f"or a stack (k, *{sig_shape})")
        if mask.dtype.kind not in "biufc":
            raise UDFError(f"{where} has dtype {mask.dtype}; expected numbers")
    if not rows or sum(m.shape[0] for _, m in rows) == 0:
        raise UDFError("ApplyMasksUDF: mask_factories gave no masks")
    sparse = any_sparse if use_sparse is None else bool(use_sparse)
    if mask_dtype is not None:
        try:
            mask_dtype = np.dtype(mask_dtype)
        except TypeError:
            raise UDFError(f"ApplyMasksUDF: mask_dtype={mask_dtype!r} is not a numpy dtype") from None
        if mask_dtype.kind not in "fc":
            raise UDFError(f"ApplyMasksUDF: mask_dtype must be a float or complex dtype, got {mask_dtype}")
        if mask_dtype.kind != "c" and any(m.dtype.kind == "c" for _, m in rows):
            raise UDFError(f"ApplyMasksUDF: the masks are complex, but mask_dtype={mask_dtype} is "
                           "real and would drop their imaginary part; use a complex mask_dtype")
    if mask_dtype is None:
        # float32 (complex64) unless asked: twice the speed of float64 in the matrix product
        complex_ = any(m.dtype.kind == "c" for _, m in rows)
        dtype = np.dtype(np.complex64 if complex_ else np.float32)
    else:
        dtype = np.dtype(mask_dtype)
    if sparse:
        import scipy.sparse as sp

        matrix = sp.vstack([sp.csr_matrix(m) for _, m in rows], format="csr").astype(dtype)
    else:
        matrix = np.concatenate([m.toarray() if kind == "sparse" else m for kind, m in rows],
                                axis=0).astype(dtype, copy=False)
    if mask_count is not None and int(mask_count) != matrix.shape[0]:
        raise UDFError(f"ApplyMasksUDF: mask_count={mask_count}, but the factories gave "
                       f"{matrix.shape[0]} masks")
    return _Masks(matrix, sig_shape, sparse)
