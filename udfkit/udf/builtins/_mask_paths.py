"""How :class:`~udfkit.udf.builtins.masks.ApplyMasksUDF` applies its masks: one of two numba
kernels (:mod:`udfkit.udf.builtins._mask_kernels`) or the BLAS product.

Tiles come in the calling convention of :mod:`udfkit.udf.builtins._kernels` (``flat``,
``stride``, ``depth``, ``n``: ``depth`` rows of ``n`` pixels at a fixed element stride) and in
their stored dtype where that does not change the result dtype (8- and 16-bit integers and
float32 with float32 masks): the conversion to float happens in registers, so no decoded
float32 copy of the tile is written and read back.

Two kernels, and when each is used (:func:`choose_path`):

``"dense"`` (:func:`~udfkit.udf.builtins._mask_kernels.dense_product`)
    float32 product of a tile with the masks (two or more masks on float data, any number on
    integer data; padded with zero masks to a multiple of four), blocked four frames by four masks: each
    pass over a chunk of pixels keeps 16 running sums in registers and loads 8 values for
    16 multiply-adds, where a BLAS ``sgemm`` with only 16 columns keeps reloading its
    operands. Measured here (one core, 16 masks of 256×256, in-RAM data): 7.3 GB/s float32
    input vs 4.9 for OpenBLAS ``sgemm``; 5.1 GB/s uint16 input vs 2.2 for decode + ``sgemm``.
``"gather"`` (:func:`~udfkit.udf.builtins._mask_kernels.gather_product`)
    integer data and masks that are zero on most pixels (virtual detectors: a disk, a
    ring): only the pixels where any mask is non-zero are read, as runs of consecutive pixels of a row, so that on
    a memory-mapped file the rest of the frame is never touched.
``"blas"``
    everything else (float64 or complex arithmetic with dense masks, one dense mask on float
    data, sparse tiles, an explicitly requested sparse format): the matrix product of
    numpy / scipy.

Sums are float32 (or the compute dtype) like the BLAS product; the order of the additions
differs, so results agree with numpy's product to float32 rounding, not bit for bit.
"""

from __future__ import annotations

import os
import sys
import threading
import weakref

import numpy as np

__all__ = ["choose_path", "native_input_ok", "kernel_cut", "apply_kernel", "blas_threads",
           "mask_density",
           "padded_masks", "gather_plan", "GATHER_MAX_DENSITY", "DENSE_MIN_MASKS"]

#: at most this share of a frame's pixels may be non-zero in some mask for the gather path
GATHER_MAX_DENSITY = 0.2
#: float data with fewer dense masks go to BLAS (one mask: ``sgemv`` streams float32 data a
#: little faster than the kernel, which computes four masks, three of them zero); integer
#: data take the kernel for any number of masks (uint16, one core: 8 GB/s for one mask, 10 for
#: two to four, against 2.2-4.7 for a float32 decode plus BLAS)
DENSE_MIN_MASKS = 2

# per container: share of pixels where any mask is non-zero (made once per process)
_density: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
# per container: the kernels' cuts, {(path, origin, shape, dtype): kernel_cut(...)}
_kernel_cuts: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
_cuts_lock = threading.Lock()


def mask_density(container) -> float:
    """Share of the signal pixels where at least one of ``container``'s masks is non-zero."""
    hit = _density.get(container)
    if hit is None:
        matrix = container._matrix()
        if hasattr(matrix, "tocsc"):  # scipy sparse (masks, pixels): columns with an entry
            used = int(np.count_nonzero(np.diff((matrix != 0).tocsc().indptr)))
        else:
            used = int(np.count_nonzero(np.any(matrix != 0, axis=0)))
        hit = used / max(1, matrix.shape[1])
        _density[container] = hit
    return hit


def choose_path(container, data_dtype, compute_dtype, use_sparse) -> str:
    """``"gather"``, ``"dense"`` or ``"blas"``: how to apply the masks of ``container`` to
    tiles of ``data_dtype`` with a product in ``compute_dtype`` (module documentation).

    ``use_sparse`` is the UDF's parameter: an explicit sparse format (``True`` or a name)
    keeps the product in that format. The gather path skips the pixels where all masks are
    0, so it is taken for integer data only: on float data a NaN or inf there must still
    make the result NaN, as in numpy's product.
    """
    data_dtype = np.dtype(data_dtype)
    compute_dtype = np.dtype(compute_dtype)
    if use_sparse not in (None, False) or compute_dtype not in (np.float32, np.float64) \
            or not native_input_ok(data_dtype, compute_dtype):
        return "blas"
    if data_dtype.kind in "iu" and mask_density(container) <= GATHER_MAX_DENSITY:
        return "gather"
    if compute_dtype == np.float32 and (data_dtype.kind in "iu"
                                        or len(container) >= DENSE_MIN_MASKS):
        return "dense"
    return "blas"


def native_input_ok(data_dtype, compute_dtype) -> bool:
    """Whether a kernel may read ``data_dtype`` as stored: the product's dtype stays
    ``compute_dtype`` (as if the data had been read as float32 first) and numba reads it."""
    data_dtype = np.dtype(data_dtype)
    if data_dtype.kind not in "uif" or (data_dtype.kind == "f" and data_dtype.itemsize < 4):
        return False
    return np.result_type(data_dtype, compute_dtype) == np.dtype(compute_dtype)


def padded_masks(cut_kn: np.ndarray) -> np.ndarray:
    """The ``(K, pixels)`` float32 cut with zero masks appended up to a multiple of four."""
    k, n = cut_kn.shape
    k4 = -(-k // 4) * 4
    out = np.zeros((k4, n), np.float32)
    out[:k] = cut_kn
    return out


def gather_plan(cut_kn: np.ndarray, width: int):
    """``(starts, lengths, values)`` of the pixels where any mask is non-zero.

    ``cut_kn`` is ``(K, pixels)`` for a tile's pixels (rows of ``width`` pixels, flattened);
    runs of consecutive non-zero pixels never cross a row, so a run is one contiguous read.
    ``values`` is ``(K, n_used)``, the masks' values in run order.
    """
    used = np.any(cut_kn != 0, axis=0)
    idx = np.flatnonzero(used)
    if idx.size == 0:
        return (np.zeros(0, np.int64), np.zeros(0, np.int64),
                np.zeros((cut_kn.shape[0], 0), cut_kn.dtype))
    # a run ends where the next used pixel is not adjacent or starts a new row
    breaks = np.flatnonzero((np.diff(idx) != 1) | (idx[1:] % max(1, width) == 0)) + 1
    starts = idx[np.concatenate(([0], breaks))]
    ends = idx[np.concatenate((breaks - 1, [idx.size - 1]))] + 1
    values = np.ascontiguousarray(cut_kn[:, idx])
    return starts.astype(np.int64), (ends - starts).astype(np.int64), values


def kernel_cut(path: str, container, sig_slice, dtype):
    """What the kernel of ``path`` needs for the tiles of ``sig_slice``; made once per
    container, path, slice and dtype (a task only looks it up: nothing proportional to the
    masks' size happens per task)."""
    key = (path, tuple(sig_slice.origin), sig_slice.shape.to_tuple(), np.dtype(dtype).str)
    with _cuts_lock:
        cuts = _kernel_cuts.get(container)
        if cuts is None:
            cuts = _kernel_cuts[container] = {}
        hit = cuts.get(key)
    if hit is not None:
        return hit
    cut = container.get_for_sig_slice(sig_slice, dtype=dtype, sparse_backend=False,
                                      transpose=False)
    if path == "dense":
        made = ("dense", padded_masks(cut), cut.shape[0])
    else:
        width = sig_slice.shape.to_tuple()[-1]
        made = ("gather",) + gather_plan(cut, width)
    with _cuts_lock:
        return cuts.setdefault(key, made)


def apply_kernel(kernel, tile: np.ndarray, out: np.ndarray, threads: int = 1) -> None:
    """``out += tile_rows @ masks`` with the kernel prepared by :func:`kernel_cut`.

    ``out`` is the ``(depth, K)`` view of the result buffer for the tile's frames.
    ``threads > 1`` splits the frames over that many threads (the kernels release the GIL).
    """
    if kernel[0] == "dense":
        masks, k = kernel[1], kernel[2]
        direct = masks.shape[0] == k and out.dtype == np.float32 and out.flags.c_contiguous
        target = out if direct else np.zeros((tile.shape[0], masks.shape[0]), np.float32)
    else:
        values = kernel[3]
        direct = out.dtype == values.dtype and out.flags.c_contiguous
        target = out if direct else np.zeros((tile.shape[0], values.shape[0]), values.dtype)
    depth = tile.shape[0]
    # whole blocks of four frames per thread, and enough of them to pay for the hand-off
    step = -(-depth // max(1, threads) // 4) * 4
    if threads > 1 and depth >= 16:
        bounds = [(a, min(depth, a + step)) for a in range(0, depth, step)]
        list(_pool().map(lambda ab: _run(kernel, tile[ab[0]:ab[1]], target[ab[0]:ab[1]]), bounds))
    else:
        _run(kernel, tile, target)
    if not direct:
        out += target[:, :out.shape[1]]


def _run(kernel, tile, target):
    from ._kernels import as_rows
    from ._mask_kernels import dense_product, gather_product

    flat, stride, depth, n = as_rows(tile)
    if kernel[0] == "dense":
        dense_product(flat, stride, depth, n, kernel[1], target)
    else:
        gather_product(flat, stride, depth, kernel[1], kernel[2], kernel[3], target)


_threads: dict = {"modules": -1, "controller": None, "pool": None}
_threads_lock = threading.Lock()


def _pool():
    with _threads_lock:
        if _threads["pool"] is None:
            from concurrent.futures import ThreadPoolExecutor

            _threads["pool"] = ThreadPoolExecutor(max_workers=os.cpu_count() or 1,
                                                  thread_name_prefix="udfkit-masks")
        return _threads["pool"]


def blas_threads() -> int:
    """The number of threads BLAS may use here and now.

    The executor sets it around each task: one where partitions run side by side, more
    where a task has the machine to itself. The kernels take as many, so that they use the
    cores exactly where the BLAS product they replace would have.
    """
    # finding the loaded libraries costs milliseconds; asking one for its threads, microseconds
    with _threads_lock:
        if _threads["modules"] != len(sys.modules):
            from threadpoolctl import ThreadpoolController

            _threads["controller"] = ThreadpoolController()
            _threads["modules"] = len(sys.modules)
        controller = _threads["controller"]
    counts = [c.num_threads for c in controller.lib_controllers if c.user_api == "blas"]
    return max(1, min(counts)) if counts else 1
