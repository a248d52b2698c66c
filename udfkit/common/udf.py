"""Constants of the UDF interface that live below the UDF layer: processing methods, array
backends and tiling preferences, spelled as LiberTEM spells them (``libertem.common.udf``),
so that ``UDF.BACKEND_NUMPY``, ``UDF.TILE_SIZE_MAX`` or ``UDFMethod.TILE`` port unchanged.

The backend names are the strings LiberTEM uses (they come from its ``sparseconverter``
package): a UDF that returns ``("numpy", "cupy")`` from ``get_backends()`` means the same on
both. udfkit computes on the CPU. A data set delivers tiles in its native forms (numpy for every
dense format; scipy.sparse CSR row blocks, or densified numpy, for ``raw_csr``);
:func:`convert_tile` turns a tile into the form a UDF asked for (scipy.sparse, pydata
sparse, numpy); :func:`available_backends` says which backends a run can hand to a UDF.
CuPy and CUDA are not offered (udfkit has no GPU support).

Examples
--------
>>> UDFMethod.TILE == "tile"
True
>>> UDFMethod("frame") is UDFMethod.FRAME
True
>>> BACKEND_NUMPY in CPU_BACKENDS and BACKEND_CUPY in CUDA_BACKENDS
True
"""

from __future__ import annotations

from enum import Enum, StrEnum
from math import prod
from typing import Any

import numpy as np

__all__ = [
    "UDFMethod", "TileDepthEnum", "TileSizeEnum",
    "TILE_SIZE_BEST_FIT", "TILE_SIZE_MAX", "TILE_DEPTH_DEFAULT", "TILE_DEPTH_MAX",
    "BACKEND_NUMPY", "BACKEND_CUPY", "BACKEND_CUDA", "BACKEND_SPARSE_COO", "BACKEND_SPARSE_GCXS",
    "BACKEND_SPARSE_DOK", "BACKEND_SCIPY_COO", "BACKEND_SCIPY_CSR", "BACKEND_SCIPY_CSC",
    "BACKEND_SCIPY_COO_ARRAY", "BACKEND_SCIPY_CSR_ARRAY", "BACKEND_SCIPY_CSC_ARRAY",
    "BACKEND_CUPY_SCIPY_COO", "BACKEND_CUPY_SCIPY_CSR", "BACKEND_CUPY_SCIPY_CSC", "BACKEND_ALL",
    "BACKENDS", "CPU_BACKENDS", "CUDA_BACKENDS", "CUPY_BACKENDS", "SPARSE_BACKENDS",
    "DENSE_BACKENDS", "ND_BACKENDS", "D2_BACKENDS", "available_backends",
    "canonical_backends", "to_backend", "convert_tile", "is_sparse_backend",
]


class UDFMethod(StrEnum):
    """The process method a UDF uses (what ``UDF.get_method()`` returns).

    A string enum: its members equal LiberTEM's strings ``"tile"``, ``"frame"`` and
    ``"partition"``, so both spellings work wherever a method is expected. ``FRAME_STACK``
    (``"frame_stack"``) is udfkit's own: stacks of whole frames (``process_frame_stack``).
    """

    TILE = "tile"
    FRAME = "frame"
    PARTITION = "partition"
    FRAME_STACK = "frame_stack"


class TileDepthEnum(Enum):
    """Marker type of :data:`TILE_DEPTH_DEFAULT`."""

    TILE_DEPTH_DEFAULT = "default"


class TileSizeEnum(Enum):
    """Marker type of :data:`TILE_SIZE_BEST_FIT`."""

    TILE_SIZE_BEST_FIT = "best_fit"


#: ``get_tiling_preferences()["total_size"]``: let the negotiator pick (cache-sized tiles)
TILE_SIZE_BEST_FIT = TileSizeEnum.TILE_SIZE_BEST_FIT
#: ``get_tiling_preferences()["total_size"]``: the largest tiles udfkit makes
TILE_SIZE_MAX = np.inf
#: ``get_tiling_preferences()["depth"]``: let the negotiator pick the depth
TILE_DEPTH_DEFAULT = TileDepthEnum.TILE_DEPTH_DEFAULT
#: ``get_tiling_preferences()["depth"]``: as many frames as a partition (and the read buffer) hold
TILE_DEPTH_MAX = np.inf

BACKEND_NUMPY = "numpy"
BACKEND_CUPY = "cupy"
BACKEND_CUDA = "cuda"
BACKEND_SPARSE_COO = "sparse.COO"
BACKEND_SPARSE_GCXS = "sparse.GCXS"
BACKEND_SPARSE_DOK = "sparse.DOK"
BACKEND_SCIPY_COO = "scipy.sparse.coo_matrix"
BACKEND_SCIPY_CSR = "scipy.sparse.csr_matrix"
BACKEND_SCIPY_CSC = "scipy.sparse.csc_matrix"
BACKEND_SCIPY_COO_ARRAY = "scipy.sparse.coo_array"
BACKEND_SCIPY_CSR_ARRAY = "scipy.sparse.csr_array"
BACKEND_SCIPY_CSC_ARRAY = "scipy.sparse.csc_array"
BACKEND_CUPY_SCIPY_COO = "cupyx.scipy.sparse.coo_matrix"
BACKEND_CUPY_SCIPY_CSR = "cupyx.scipy.sparse.csr_matrix"
BACKEND_CUPY_SCIPY_CSC = "cupyx.scipy.sparse.csc_matrix"

#: every backend, in LiberTEM's order of preference (without DOK and CUDA, as LiberTEM)
BACKEND_ALL = (
    BACKEND_CUPY_SCIPY_CSR, BACKEND_CUPY_SCIPY_CSC, BACKEND_CUPY_SCIPY_COO,
    BACKEND_SCIPY_COO_ARRAY, BACKEND_SCIPY_CSC_ARRAY, BACKEND_SCIPY_CSR_ARRAY,
    BACKEND_SCIPY_CSR, BACKEND_SCIPY_CSC, BACKEND_SCIPY_COO,
    BACKEND_CUPY, BACKEND_NUMPY,
    BACKEND_SPARSE_COO, BACKEND_SPARSE_GCXS,
)
BACKENDS = frozenset(BACKEND_ALL) | {BACKEND_CUDA, BACKEND_SPARSE_DOK}
CUPY_BACKENDS = frozenset({BACKEND_CUPY, BACKEND_CUPY_SCIPY_COO, BACKEND_CUPY_SCIPY_CSR,
                           BACKEND_CUPY_SCIPY_CSC})
CUDA_BACKENDS = CUPY_BACKENDS | {BACKEND_CUDA}
CPU_BACKENDS = BACKENDS - CUDA_BACKENDS
DENSE_BACKENDS = frozenset({BACKEND_NUMPY, BACKEND_CUDA, BACKEND_CUPY})
SPARSE_BACKENDS = BACKENDS - DENSE_BACKENDS
D2_BACKENDS = frozenset({BACKEND_SCIPY_COO, BACKEND_SCIPY_CSR, BACKEND_SCIPY_CSC,
                         BACKEND_SCIPY_COO_ARRAY, BACKEND_SCIPY_CSR_ARRAY, BACKEND_SCIPY_CSC_ARRAY,
                         BACKEND_CUPY_SCIPY_COO, BACKEND_CUPY_SCIPY_CSR, BACKEND_CUPY_SCIPY_CSC})
ND_BACKENDS = BACKENDS - D2_BACKENDS

_SCIPY_BACKENDS = (BACKEND_SCIPY_CSR, BACKEND_SCIPY_CSC, BACKEND_SCIPY_COO,
                   BACKEND_SCIPY_CSR_ARRAY, BACKEND_SCIPY_CSC_ARRAY, BACKEND_SCIPY_COO_ARRAY)
_PYDATA_BACKENDS = (BACKEND_SPARSE_COO, BACKEND_SPARSE_GCXS, BACKEND_SPARSE_DOK)


def available_backends() -> tuple:
    """The backends udfkit can hand to a UDF here: numpy, and the sparse CPU formats whose
    package is installed (scipy for ``scipy.sparse.*``, ``sparse`` for ``sparse.*``).

    Examples
    --------
    >>> available_backends()[0]
    'numpy'
    """
    global _AVAILABLE
    if _AVAILABLE is None:
        # asked by every run's plan: searching the import path for the packages (two
        # find_spec calls, dozens of stat calls) cost 40 % of planning a small run; what is
        # installed does not change while the process runs
        from importlib.util import find_spec

        out = [BACKEND_NUMPY]
        if find_spec("scipy") is not None:
            out.extend(_SCIPY_BACKENDS)
        if find_spec("sparse") is not None:
            out.extend(_PYDATA_BACKENDS)
        _AVAILABLE = tuple(out)
    return _AVAILABLE


_AVAILABLE: tuple | None = None


def to_backend(arr: np.ndarray, backend: str, frame: bool = False) -> Any:
    """A dense numpy tile (``(depth, *sig)``), or a frame (``sig``, with ``frame=True``), in
    ``backend``'s format.

    2D-only formats (``scipy.sparse``) get the signal axes flattened, and a frame gets a
    leading axis of 1, as in LiberTEM.

    Examples
    --------
    >>> a = np.arange(8.0).reshape(2, 2, 2)
    >>> to_backend(a, BACKEND_SCIPY_CSR).shape
    (2, 4)
    >>> to_backend(a[0], BACKEND_SCIPY_CSR, frame=True).shape
    (1, 4)
    >>> to_backend(a, BACKEND_NUMPY) is a
    True
    """
    if backend == BACKEND_NUMPY:
        return arr
    if backend in _SCIPY_BACKENDS:
        import scipy.sparse

        flat = arr.reshape((1, -1)) if frame else arr.reshape((arr.shape[0], -1))
        return getattr(scipy.sparse, backend.rsplit(".", 1)[1])(flat)
    if backend in _PYDATA_BACKENDS:
        import sparse

        return getattr(sparse, backend.rsplit(".", 1)[1]).from_numpy(arr)
    raise ValueError(f"backend {backend!r} is not one udfkit converts to; expected one of "
                     f"{available_backends()}")


def is_sparse_backend(backend: str) -> bool:
    """Whether ``backend`` names a sparse format (scipy.sparse or pydata sparse).

    Examples
    --------
    >>> is_sparse_backend(BACKEND_SCIPY_CSR), is_sparse_backend(BACKEND_NUMPY)
    (True, False)
    """
    return backend in _SCIPY_BACKENDS or backend in _PYDATA_BACKENDS


def convert_tile(arr: Any, source: str, target: str, shape: tuple) -> Any:
    """A tile ``arr`` held in backend ``source`` as backend ``target``.

    ``shape`` is the tile's logical shape ``(depth, *sig_part)``. Dense (numpy) and pydata
    ``sparse`` results have that shape; ``scipy.sparse`` ones are 2D, ``(depth, pixels)``,
    as LiberTEM hands them. Sparse formats convert into each other without densifying.

    Examples
    --------
    >>> import scipy.sparse
    >>> m = scipy.sparse.csr_matrix(np.array([[0, 1, 0, 0], [2, 0, 0, 3]], "float32"))
    >>> convert_tile(m, BACKEND_SCIPY_CSR, BACKEND_NUMPY, (2, 2, 2))[1]
    array([[2., 0.],
           [0., 3.]], dtype=float32)
    >>> convert_tile(m, BACKEND_SCIPY_CSR, BACKEND_SPARSE_GCXS, (2, 2, 2)).shape
    (2, 2, 2)
    >>> convert_tile(m, BACKEND_SCIPY_CSR, BACKEND_SCIPY_COO, (2, 2, 2)).format
    'coo'
    """
    if source == target:
        return arr
    shape = tuple(int(n) for n in shape)
    rows = (shape[0], prod(shape[1:]))
    if source == BACKEND_NUMPY:
        return to_backend(np.asarray(arr).reshape(shape), target)
    if source in _SCIPY_BACKENDS:
        if target == BACKEND_NUMPY:
            return arr.toarray().reshape(shape)
        if target in _SCIPY_BACKENDS:
            import scipy.sparse

            return getattr(scipy.sparse, target.rsplit(".", 1)[1])(arr)
        if target in _PYDATA_BACKENDS:
            import sparse

            coo = sparse.COO.from_scipy_sparse(arr).reshape(shape)
            return coo if target == BACKEND_SPARSE_COO else coo.asformat(
                target.rsplit(".", 1)[1].lower())
    elif source in _PYDATA_BACKENDS:
        if target == BACKEND_NUMPY:
            return np.asarray(arr.todense()).reshape(shape)
        if target in _PYDATA_BACKENDS:
            return arr.asformat(target.rsplit(".", 1)[1].lower())
        if target in _SCIPY_BACKENDS:
            import scipy.sparse

            flat = arr.asformat("coo").reshape(rows).to_scipy_sparse()
            return getattr(scipy.sparse, target.rsplit(".", 1)[1])(flat)
    raise ValueError(f"cannot convert a tile from backend {source!r} to {target!r}; udfkit "
                     f"converts between {available_backends()}")


def canonical_backends(backends: Any) -> tuple:
    """``get_backends()``'s value as a tuple of names: one name or an iterable of names.

    Examples
    --------
    >>> canonical_backends("numpy")
    ('numpy',)
    >>> canonical_backends(["cupy", "numpy"])
    ('cupy', 'numpy')
    """
    if backends is None:
        return ()
    if isinstance(backends, str):
        return (backends,)
    return tuple(backends)
