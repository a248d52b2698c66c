"""``MaskContainer``: a stack of masks built from factories, cut per signal slice for matrix
products (LiberTEM's ``libertem.common.container.MaskContainer``).

A UDF that applies masks to tiles needs, for every signal slice of the tiling scheme, the
masks' pixels of that slice as a ``(pixels, n_masks)`` matrix (so that ``tile_rows @
matrix`` gives one row of results per frame), in the computation dtype and in the chosen
dense or sparse format. The container calls the factories once (lazily: on a worker, not in
the task that travels there), stacks their masks, and caches each cut.

Accepted ``mask_factories``
---------------------------
* a callable returning one mask of the signal shape, a stack ``(k, *sig_shape)``, or a list
  of masks;
* a mask or a stack itself (numpy array, ``scipy.sparse`` matrix / array, pydata ``sparse``
  array);
* a sequence of any of the above (LiberTEM's form: a list of callables each returning one
  mask).

Without ``sig_shape``, a lone callable's result is a stack and each item of a sequence is one
mask (LiberTEM's rule). With ``sig_shape`` (what :class:`~udfkit.udf.ApplyMasksUDF` passes)
every result is matched against it: the signal shape is one mask, ``(k, *sig_shape)`` is a
stack, and for signals that are not 2D a ``scipy.sparse`` matrix ``(k, pixels)`` holds ``k``
flattened masks.

Sparse formats (``use_sparse``)
-------------------------------
``None``: sparse when every factory gives a sparse mask, else dense; ``False``: dense;
``True``: ``default_sparse``; ``"scipy.sparse"`` / ``"scipy.sparse.csr"``: CSR matrices;
``"scipy.sparse.csc"``: CSC; ``"sparse.pydata"``: pydata ``sparse.COO``;
``"sparse.pydata.GCXS"``: pydata ``sparse.GCXS`` (the pydata formats need the ``sparse``
package). The dense format is a C-contiguous numpy array.
"""

from __future__ import annotations

import logging
import threading
from math import prod
from typing import Any

import numpy as np
from numpy.typing import DTypeLike

from ..errors import MaskError
from .slice import Slice

__all__ = ["MaskContainer", "SPARSE_FORMATS"]

log = logging.getLogger(__name__)

#: the values of ``use_sparse`` / ``sparse_backend`` that name a format
SPARSE_FORMATS = ("scipy.sparse", "scipy.sparse.csr", "scipy.sparse.csc", "sparse.pydata",
                  "sparse.pydata.GCXS")

#: a factory whose pickle is larger than this is shipped to every worker; a warning says so
_FACTORY_WARN_BYTES = 1 << 20


class MaskContainer:
    """Masks from factories, stacked and cut per signal slice for ``tile @ masks`` products.

    The factories are called on first use (``len()`` without ``count``, :attr:`dtype`
    without ``dtype``, :attr:`use_sparse` when it depends on the masks, :attr:`computed_masks`
    or any ``get*`` method), not when the container is made or pickled.

    Parameters
    ----------
    mask_factories : callable, array or sequence of those
        See the module documentation for the accepted forms.
    dtype : dtype, optional
        Dtype of the cut matrices; default: the masks' own dtype (numpy promotion over all
        masks).
    use_sparse : None, bool or str
        ``None``, ``False``, ``True`` or one of :data:`SPARSE_FORMATS` (see the module
        documentation).
    count : int, optional
        Number of masks, so that ``len()`` needs no factory call; checked against the masks
        once they are made.
    backend : {"numpy", None}
        Array backend of the cuts; udfkit computes with numpy (``"cuda"``, LiberTEM's numpy
        on a GPU worker, is accepted as numpy).
    default_sparse : str
        The format ``use_sparse=True`` (or all-sparse masks with ``None``) means.
    sig_shape : tuple of int, optional
        The signal shape the masks must have (a udfkit addition: checked, and it decides
        whether a result is one mask or a stack).

    Examples
    --------
    >>> import numpy as np
    >>> from udfkit.common import Shape, Slice
    >>> masks = MaskContainer([lambda: np.ones((4, 4)), lambda: np.eye(4)], dtype=np.float32)
    >>> len(masks), masks.use_sparse
    (2, False)
    >>> top = Slice(origin=(0, 0), shape=Shape((2, 4), sig_dims=2))   # rows 0-1 of the frame
    >>> m = masks.get(top)          # (pixels of the slice, n_masks)
    >>> m.shape, m.dtype
    ((8, 2), dtype('float32'))
    >>> tile = np.arange(16, dtype=np.float32).reshape(2, 8)   # 2 frames' rows 0-1
    >>> tile @ m
    array([[28.,  5.],
           [92., 21.]], dtype=float32)
    """

    def __init__(self, mask_factories: Any, dtype: DTypeLike | None = None,
                 use_sparse: bool | str | None = None, count: int | None = None,
                 backend: str | None = None, default_sparse: str = "scipy.sparse",
                 sig_shape: tuple[int, ...] | None = None):
        if mask_factories is None:
            raise MaskError("MaskContainer: mask_factories is required (callables returning masks, "
                            "or masks of the signal shape)")
        self.mask_factories = mask_factories
        self._dtype = None if dtype is None else _parse_dtype(dtype, "dtype")
        if count is not None and (isinstance(count, bool) or not isinstance(count, (int, np.integer))
                                  or count < 0):
            raise MaskError(f"MaskContainer: count must be a non-negative integer, got {count!r}")
        self._length = None if count is None else int(count)
        if backend is None:
            backend = "numpy"
        if backend not in ("numpy", "cuda"):
            raise MaskError(f"MaskContainer: backend={backend!r} is not available; udfkit computes "
                            "with numpy on the CPU: pass backend='numpy' or None")
        self.backend = "numpy"
        if default_sparse not in SPARSE_FORMATS:
            raise MaskError(f"MaskContainer: default_sparse must be one of {SPARSE_FORMATS}, "
                            f"got {default_sparse!r}")
        self._default_sparse = default_sparse
        self._use_sparse = _parse_use_sparse(use_sparse, default_sparse, "MaskContainer: use_sparse")
        self.sig_shape = None if sig_shape is None else tuple(int(s) for s in sig_shape)
        # (matrix (N, pixels): ndarray or scipy CSR, sig_shape, all sparse)
        self._computed: tuple | None = None
        self._cuts: dict = {}
        self._lock = threading.RLock()
        self.validate_mask_functions()

    # -- pickling: the masks are made again where they are used ---------------------------------
    def __getstate__(self):
        state = self.__dict__.copy()
        state["_computed"] = None
        state["_cuts"] = {}
        del state["_lock"]
        return state

    def __setstate__(self, state):
        self.__dict__.update(state)
        self._lock = threading.RLock()

    def validate_mask_functions(self) -> None:
        """Log a warning for factories whose pickle exceeds 1 MiB (they travel to every worker)."""
        items = self.mask_factories if isinstance(self.mask_factories, (list, tuple)) \
            else [self.mask_factories]
        for i, item in enumerate(items):
            if not callable(item):
                continue
            try:
                import cloudpickle

                size = len(cloudpickle.dumps(item))
            except Exception:  # noqa: BLE001 - unpicklable factories fail later, with a clear error
                continue
            if size > _FACTORY_WARN_BYTES:
                log.warning("mask factory %d pickles to %d bytes; it is sent to every worker, so "
                            "build large masks inside the factory instead of capturing them", i, size)

    # -- what the masks are ------------------------------------------------------------------------
    def __len__(self):
        if self._length is not None:
            return self._length
        return self._matrix().shape[0]

    @property
    def dtype(self) -> np.dtype:
        """Dtype of the cuts: ``dtype`` if given, else the masks' (promoted) dtype."""
        if self._dtype is not None:
            return self._dtype
        return np.dtype(self._matrix().dtype)

    @property
    def use_sparse(self) -> bool | str:
        """``False`` (dense) or the sparse format name, resolved from the masks if needed."""
        if self._use_sparse is None:
            all_sparse = self._compute()[2]
            self._use_sparse = self._default_sparse if all_sparse else False
        return self._use_sparse

    @property
    def computed_masks(self) -> Any:
        """The stack ``(n_masks, *sig_shape)``: a numpy array, or for sparse masks a pydata
        ``sparse.COO`` array (a ``scipy.sparse`` CSR matrix ``(n_masks, pixels)`` when the
        ``sparse`` package is missing)."""
        matrix, sig_shape, _ = self._compute()
        if not _is_scipy_sparse(matrix):
            return matrix.reshape((matrix.shape[0],) + sig_shape)
        try:
            import sparse
        except ImportError:
            return matrix
        return sparse.COO.from_scipy_sparse(matrix).reshape((matrix.shape[0],) + sig_shape)

    # -- cuts -----------------------------------------------------------------------------------------
    def get(self, key: Slice, dtype: DTypeLike | None = None, sparse_backend: str | None = None,
            transpose: bool = True, backend: str | None = None) -> Any:
        """The masks' pixels inside ``key``'s signal part.

        Parameters
        ----------
        key : Slice
            A slice of the data set (``tile``/``partition`` slice, ``meta.slice``); its nav
            part is ignored.
        dtype : dtype, optional
            Default :attr:`dtype`.
        sparse_backend : False or str, optional
            Default :attr:`use_sparse`.
        transpose : bool
            ``True``: ``(pixels, n_masks)`` for ``tile_rows @ m``; ``False``: ``(n_masks,
            pixels)``.
        backend : {"numpy", None}

        Returns
        -------
        numpy.ndarray, scipy.sparse matrix or sparse array
        """
        if not isinstance(key, Slice):
            raise MaskError(f"MaskContainer.get: expected a udfkit Slice (e.g. self.meta.slice or "
                            f"self.meta.sig_slice), got {type(key).__name__}")
        return self.get_for_sig_slice(key.sig, dtype=dtype, sparse_backend=sparse_backend,
                                      transpose=transpose, backend=backend)

    def get_for_idx(self, scheme: Any, idx: int, *args: Any, **kwargs: Any) -> Any:
        """:meth:`get` for the ``idx``-th signal slice of a tiling scheme."""
        return self.get_for_sig_slice(scheme[idx], *args, **kwargs)

    def get_for_sig_slice(self, sig_slice: Slice, dtype: DTypeLike | None = None,
                          sparse_backend: str | None = None, transpose: bool = True,
                          backend: str | None = None) -> Any:
        """:meth:`get` for a slice that has signal axes only (``self.meta.sig_slice``)."""
        return self.get_masks_for_slice(sig_slice, dtype=dtype, sparse_backend=sparse_backend,
                                        transpose=transpose, backend=backend)

    def get_masks_for_slice(self, slice_: Slice, dtype: DTypeLike | None = None,
                            sparse_backend: str | None = None, transpose: bool = True,
                            backend: str | None = None) -> Any:
        """The cut for a signal-only slice; cached per slice, dtype, format and orientation."""
        if backend not in (None, "numpy", "cuda"):
            raise MaskError(f"MaskContainer: backend={backend!r} is not available; udfkit computes "
                            "with numpy")
        dtype = self.dtype if dtype is None else _parse_dtype(dtype, "dtype")
        fmt = self.use_sparse if sparse_backend is None else _parse_use_sparse(
            sparse_backend, self._default_sparse, "MaskContainer: sparse_backend")
        key = (slice_.origin, slice_.shape.to_tuple(), dtype.str, fmt, bool(transpose))
        with self._lock:
            cut = self._cuts.get(key)
            if cut is None:
                cut = self._cut(slice_, dtype, fmt, bool(transpose))
                self._cuts[key] = cut
        return cut

    def _cut(self, slice_, dtype, fmt, transpose):
        matrix, sig_shape, _ = self._compute()
        if len(slice_.origin) != len(sig_shape):
            raise MaskError(f"MaskContainer: a slice with {len(slice_.origin)} signal axes "
                            f"({slice_}) does not fit masks of the signal shape {sig_shape}")
        pixels = np.arange(prod(sig_shape)).reshape(sig_shape)[slice_.get()].reshape(-1)
        part = matrix[:, pixels]
        if fmt is False:
            part = part.toarray() if _is_scipy_sparse(part) else part
            part = part.T if transpose else part
            return np.ascontiguousarray(part, dtype=dtype)
        import scipy.sparse as sp

        part = sp.csr_matrix(part, dtype=dtype)
        if transpose:
            part = part.T
        if fmt in ("scipy.sparse", "scipy.sparse.csr"):
            return part.tocsr()
        if fmt == "scipy.sparse.csc":
            return part.tocsc()
        sparse = _pydata("use_sparse=" + repr(fmt))
        coo = sparse.COO.from_scipy_sparse(part)
        return sparse.GCXS(coo) if fmt == "sparse.pydata.GCXS" else coo

    # -- making the stack -----------------------------------------------------------------------------
    def _matrix(self):
        return self._compute()[0]

    def _compute(self):
        with self._lock:
            if self._computed is None:
                self._computed = _stack(self.mask_factories, self.sig_shape, self._use_sparse)
                n = self._computed[0].shape[0]
                if self._length is not None and self._length != n:
                    self._computed = None
                    raise MaskError(f"mask_count={self._length}, but the factories gave {n} masks")
            return self._computed


def _parse_use_sparse(value, default_sparse, where):
    if value is None or value is False:
        return value
    if value is True:
        return default_sparse
    if isinstance(value, str) and value in SPARSE_FORMATS:
        return value
    raise MaskError(f"{where} must be None, True, False or one of {', '.join(map(repr, SPARSE_FORMATS))}; "
                    f"got {value!r}")


def _parse_dtype(value, name):
    try:
        dtype = np.dtype(value)
    except TypeError:
        raise MaskError(f"{name}={value!r} is not a numpy dtype") from None
    if dtype.kind not in "biufc":
        raise MaskError(f"{name} must be a numeric dtype (bool, integer, float or complex), got {dtype}")
    return dtype


def _is_scipy_sparse(x) -> bool:
    return type(x).__module__.startswith("scipy.sparse")


def _is_pydata_sparse(x) -> bool:
    mod = type(x).__module__
    return mod == "sparse" or mod.startswith("sparse.")


def _pydata(what):
    try:
        import sparse
    except ImportError:
        raise MaskError(f"{what} needs the pydata 'sparse' package: pip install sparse") from None
    return sparse


def _items(factories):
    if callable(factories) or isinstance(factories, np.ndarray) or _is_scipy_sparse(factories) \
            or _is_pydata_sparse(factories):
        return [factories], True
    if isinstance(factories, (str, bytes)) or not hasattr(factories, "__iter__"):
        raise MaskError(f"mask_factories must be a mask, a callable or a sequence of those, got "
                        f"{type(factories).__name__}")
    return list(factories), False


def _rows(mask, sig_shape, lone, where):
    """``(kind, rows (k, pixels), sig_shape)`` of one factory's result."""
    if isinstance(mask, (list, tuple)):
        # a factory returning a list of masks (LiberTEM's documented form)
        parts = [_rows(m, sig_shape, False, f"{where}[{j}]") for j, m in enumerate(mask)]
        if not parts:
            return "dense", np.zeros((0, prod(sig_shape or (0,)))), sig_shape
        sig_shape = parts[0][2]
        for _, _, s in parts[1:]:
            if s != sig_shape:
                raise MaskError(f"{where}: masks of shapes {sig_shape} and {s} in one list")
        kind, rows = _join(parts)
        return kind, rows, sig_shape
    if _is_pydata_sparse(mask):
        coo = mask.asformat("coo")
        k, sig = _split(tuple(coo.shape), sig_shape, lone, where, "a sparse array")
        return "sparse", coo.reshape((k, prod(sig))).to_scipy_sparse().tocsr(), sig
    if _is_scipy_sparse(mask):
        shape = tuple(mask.shape)
        if sig_shape is None or shape == sig_shape:
            if len(shape) != 2:
                raise MaskError(f"{where} is a sparse matrix of shape {shape}; expected 2D")
            return "sparse", mask.reshape((1, prod(shape))).tocsr(), shape
        n_px = prod(sig_shape)
        if len(shape) == 2 and shape[1] == n_px:
            return "sparse", mask.tocsr(), sig_shape
        raise MaskError(f"{where} is a sparse matrix of shape {shape}; expected the signal shape "
                        f"{sig_shape} or (k, {n_px})")
    mask = np.asarray(mask)
    k, sig = _split(mask.shape, sig_shape, lone, where, "a mask")
    if mask.dtype.kind not in "biufc":
        raise MaskError(f"{where} has dtype {mask.dtype}; expected numbers")
    return "dense", mask.reshape((k, prod(sig))), sig


def _split(shape, sig_shape, lone, where, what):
    """``(k, sig_shape)`` of a result of ``shape``: one mask or a stack of ``k``."""
    if sig_shape is not None:
        if shape == sig_shape:
            return 1, sig_shape
        if shape[1:] == sig_shape:
            return shape[0], sig_shape
        raise MaskError(f"{where} has shape {shape}; expected the signal shape {sig_shape} or a "
                        f"stack (k, *{sig_shape})")
    if len(shape) < 1 or (lone and len(shape) < 2):
        raise MaskError(f"{where} has shape {shape}; expected {what} with at least "
                        f"{2 if lone else 1} axes")
    if lone:
        return shape[0], tuple(shape[1:])
    return 1, tuple(shape)


def _join(parts):
    kinds = {kind for kind, _, _ in parts}
    if kinds == {"dense"}:
        return "dense", np.concatenate([rows for _, rows, _ in parts], axis=0)
    import scipy.sparse as sp

    return "mixed" if "dense" in kinds else "sparse", sp.vstack(
        [sp.csr_matrix(rows) for _, rows, _ in parts], format="csr")


def _stack(factories, sig_shape, use_sparse):
    """Call the factories: ``(matrix (N, pixels), sig_shape, all masks sparse)``.

    The matrix is a scipy CSR matrix when the masks will be used sparse (or all are sparse
    and the choice is still open), else a dense numpy array, both in the masks' own dtype.
    """
    items, lone = _items(factories)
    parts = []
    for i, item in enumerate(items):
        where = "mask_factories" if lone else f"mask {i}"
        result = item() if callable(item) else item
        kind, rows, shape = _rows(result, sig_shape, lone, where)
        if sig_shape is None:
            sig_shape = shape
        elif shape != sig_shape:
            raise MaskError(f"{where} has the signal shape {shape}; the masks before it have "
                            f"{sig_shape}")
        parts.append((kind, rows))
    n = sum(rows.shape[0] for _, rows in parts)
    if n == 0:
        raise MaskError("mask_factories gave no masks")
    all_sparse = all(kind == "sparse" for kind, _ in parts)
    sparse_out = use_sparse is not False and (use_sparse is not None or all_sparse)
    dtype = np.result_type(*[rows.dtype for _, rows in parts])
    if sparse_out:
        import scipy.sparse as sp

        matrix = sp.vstack([sp.csr_matrix(rows) for _, rows in parts], format="csr").astype(dtype)
    else:
        matrix = np.concatenate([rows.toarray() if _is_scipy_sparse(rows) else rows
                                 for _, rows in parts], axis=0).astype(dtype, copy=False)
    return matrix, tuple(sig_shape), all_sparse
