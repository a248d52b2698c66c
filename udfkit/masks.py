"""Mask factories for virtual detectors: disks, rings, rectangles, gradients and radial bins.

The functions have LiberTEM's names, signatures and values (``libertem.masks``), so that
``from libertem import masks`` ports by changing the import. Every mask is a 2D array of
shape ``(imageSizeY, imageSizeX)`` indexed ``[y, x]``; centres are given as ``centerX``
(column) and ``centerY`` (row) in pixels and may lie between pixels or outside the image.

Use them with :class:`~udfkit.udf.ApplyMasksUDF` (pass the factory, e.g. a
:func:`functools.partial`, rather than the array: factories are called on the workers):

>>> from functools import partial
>>> import numpy as np
>>> from udfkit import Context
>>> from udfkit.udf import ApplyMasksUDF
>>> data = np.ones((2, 3, 16, 16), dtype="uint16")
>>> disk = partial(circular, centerX=8, centerY=8, imageSizeX=16, imageSizeY=16, radius=3)
>>> ctx = Context.make_with("inline")
>>> res = ctx.run_udf(dataset=ctx.load("memory", data=data), udf=ApplyMasksUDF(mask_factories=[disk]))
>>> bool(res["intensity"].data[0, 0, 0] == disk().sum())
True

Geometry conventions
--------------------
* ``circular`` and ``ring`` select pixels by the distance ``r`` of the pixel centre from the
  centre: ``r <= radius`` (disk), ``radius_inner < r <= radius`` (ring).
* ``antialiased=True`` weighs each pixel by how much of a one-pixel wide band around the
  boundary it covers (a linear ramp of ``r``), so that a mask moved by a fraction of a pixel
  changes smoothly; these masks are float.
* ``rectangular`` includes both edges, as LiberTEM does: ``Width=3`` starting at ``X=2``
  covers the columns 2 to 5.

The sparse results (``radial_bins(use_sparse=True)``, ``sparse_template_multi_stack``) are
pydata ``sparse.COO`` arrays and need the ``sparse`` package; everything else needs numpy
only.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, DTypeLike

from .errors import MaskError

__all__ = [
    "circular",
    "ring",
    "rectangular",
    "background_subtraction",
    "radial_gradient",
    "radial_gradient_background_subtraction",
    "radial_bins",
    "polar_map",
    "balance",
    "bounding_radius",
    "gradient_x",
    "gradient_y",
    "sparse_template_multi_stack",
    "sparse_circular_multi_stack",
    "to_dense",
    "to_sparse",
    "is_sparse",
]


def _check_size(imageSizeX, imageSizeY, where):  # noqa: N803 - LiberTEM's argument names
    for name, value in (("imageSizeX", imageSizeX), ("imageSizeY", imageSizeY)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 0:
            raise MaskError(f"{where}: {name} must be a non-negative integer (pixels), got {value!r}")
    return int(imageSizeX), int(imageSizeY)


def _offsets(centerX, centerY, imageSizeX, imageSizeY):  # noqa: N803
    """``(dy, dx)``: distances of pixel centres from the centre, broadcastable to the image."""
    dy = (np.arange(imageSizeY, dtype=np.float64) - centerY)[:, np.newaxis]
    dx = (np.arange(imageSizeX, dtype=np.float64) - centerX)[np.newaxis, :]
    return dy, dx


def circular(centerX: float, centerY: float, imageSizeX: int, imageSizeY: int,  # noqa: N803
             radius: float, antialiased: bool = False) -> np.ndarray:
    """A disk: ``True`` where a pixel centre lies within ``radius`` of the centre.

    Parameters
    ----------
    centerX, centerY : float
        Centre of the disk (column, row), in pixels.
    imageSizeX, imageSizeY : int
        Width and height of the mask.
    radius : float
        Radius in pixels; a pixel at exactly ``radius`` belongs to the disk.
    antialiased : bool
        Weigh the pixels along the edge by their overlap with a one-pixel ramp (float mask)
        instead of a hard edge (bool mask).

    Returns
    -------
    numpy.ndarray
        Shape ``(imageSizeY, imageSizeX)``; bool, or float64 when antialiased.

    Examples
    --------
    >>> circular(centerX=2, centerY=2, imageSizeX=5, imageSizeY=5, radius=1).astype(int)
    array([[0, 0, 0, 0, 0],
           [0, 0, 1, 0, 0],
           [0, 1, 1, 1, 0],
           [0, 0, 1, 0, 0],
           [0, 0, 0, 0, 0]])
    """
    imageSizeX, imageSizeY = _check_size(imageSizeX, imageSizeY, "circular")  # noqa: N806
    if antialiased:
        return radial_bins(centerX, centerY, imageSizeX, imageSizeY, radius=radius, n_bins=1,
                           use_sparse=False)[0]
    dy, dx = _offsets(centerX, centerY, imageSizeX, imageSizeY)
    return dy * dy + dx * dx <= radius * radius


def ring(centerX: float, centerY: float, imageSizeX: int, imageSizeY: int,  # noqa: N803
         radius: float, radius_inner: float, antialiased: bool = False) -> np.ndarray:
    """A ring: ``True`` where ``radius_inner < r <= radius`` (``r``: distance from the centre).

    Parameters
    ----------
    centerX, centerY : float
        Centre of the ring (column, row), in pixels.
    imageSizeX, imageSizeY : int
        Width and height of the mask.
    radius : float
        Outer radius (included).
    radius_inner : float
        Inner radius (excluded).
    antialiased : bool
        Soft edges (float mask), see :func:`circular`.

    Returns
    -------
    numpy.ndarray
        Shape ``(imageSizeY, imageSizeX)``; bool, or float64 when antialiased.

    Examples
    --------
    >>> ring(2, 2, 5, 5, radius=1, radius_inner=0).astype(int)
    array([[0, 0, 0, 0, 0],
           [0, 0, 1, 0, 0],
           [0, 1, 0, 1, 0],
           [0, 0, 1, 0, 0],
           [0, 0, 0, 0, 0]])
    """
    imageSizeX, imageSizeY = _check_size(imageSizeX, imageSizeY, "ring")  # noqa: N806
    if antialiased:
        return radial_bins(centerX, centerY, imageSizeX, imageSizeY, radius=radius,
                           radius_inner=radius_inner, n_bins=1, use_sparse=False)[0]
    dy, dx = _offsets(centerX, centerY, imageSizeX, imageSizeY)
    r2 = dy * dy + dx * dx
    return (r2 <= radius * radius) & ~(r2 <= radius_inner * radius_inner)


def background_subtraction(centerX: float, centerY: float, imageSizeX: int,  # noqa: N803
                           imageSizeY: int, radius: float, radius_inner: float,
                           antialiased: bool = False) -> np.ndarray:
    """A disk of radius ``radius_inner`` minus the ring out to ``radius``, scaled to sum to 0.

    Applied to a frame it gives the disk's intensity minus the local background estimated
    from the surrounding ring; a flat background gives 0.

    Parameters
    ----------
    centerX, centerY : float
    imageSizeX, imageSizeY : int
    radius : float
        Outer radius of the background ring.
    radius_inner : float
        Radius of the disk (and inner radius of the ring).
    antialiased : bool

    Returns
    -------
    numpy.ndarray
        float64, shape ``(imageSizeY, imageSizeX)``: 1 inside the disk, ``-disk area / ring
        area`` on the ring.

    Examples
    --------
    >>> m = background_subtraction(10, 10, 20, 20, radius=5, radius_inner=3)
    >>> bool(np.isclose(m.sum(), 0)), float(m.max())
    (True, 1.0)
    """
    disk = circular(centerX, centerY, imageSizeX, imageSizeY, radius_inner, antialiased=antialiased)
    outer = ring(centerX, centerY, imageSizeX, imageSizeY, radius, radius_inner,
                 antialiased=antialiased)
    outer_sum = np.sum(outer)
    if outer_sum == 0:
        raise MaskError(f"background_subtraction: the ring {radius_inner} < r <= {radius} around "
                        f"({centerX}, {centerY}) holds no pixel of the {imageSizeX}x{imageSizeY} "
                        "image; choose radius > radius_inner + 1 or move the centre")
    return disk - outer * (np.sum(disk) / outer_sum)


def rectangular(X: int, Y: int, Width: int, Height: int, imageSizeX: int,  # noqa: N803
                imageSizeY: int) -> np.ndarray:
    """A rectangle from corner ``(X, Y)`` spanning ``Width`` columns and ``Height`` rows.

    Negative ``Width`` / ``Height`` extend left / up from the corner. As in LiberTEM, both
    edges are included (rows ``min(Y, Y + Height)`` to ``max(Y, Y + Height)``, coordinates
    truncated towards zero), and a zero ``Width`` or ``Height`` gives an empty mask. Parts
    outside the image are cut off.

    Parameters
    ----------
    X, Y : int or float
        Corner (column, row).
    Width, Height : int or float
        Extent; the sign gives the direction.
    imageSizeX, imageSizeY : int

    Returns
    -------
    numpy.ndarray
        bool, shape ``(imageSizeY, imageSizeX)``.

    Examples
    --------
    >>> rectangular(X=1, Y=0, Width=2, Height=1, imageSizeX=5, imageSizeY=3).astype(int)
    array([[0, 1, 1, 1, 0],
           [0, 1, 1, 1, 0],
           [0, 0, 0, 0, 0]])
    """
    imageSizeX, imageSizeY = _check_size(imageSizeX, imageSizeY, "rectangular")  # noqa: N806
    mask = np.zeros((imageSizeY, imageSizeX), dtype=bool)
    if Width == 0 or Height == 0:
        return mask
    y0, y1 = int(min(Y, Y + Height)), int(max(Y, Y + Height))
    x0, x1 = int(min(X, X + Width)), int(max(X, X + Width))
    # clip explicitly: a negative end must not wrap around as a Python slice would
    y0, x0 = max(0, y0), max(0, x0)
    y1, x1 = min(imageSizeY - 1, y1), min(imageSizeX - 1, x1)
    if y0 <= y1 and x0 <= x1:
        mask[y0:y1 + 1, x0:x1 + 1] = True
    return mask


def polar_map(centerX: float, centerY: float, imageSizeX: int, imageSizeY: int,  # noqa: N803
              stretchY: float = 1., angle: float = 0.) -> tuple[np.ndarray, np.ndarray]:
    """Radius and angle of every pixel around a centre, optionally in an elliptic frame.

    Parameters
    ----------
    centerX, centerY : float
        Origin (column, row), in pixels.
    imageSizeX, imageSizeY : int
    stretchY : float
        Divide the distance along the direction ``angle`` by this factor (an ellipse whose
        axis along ``angle`` is ``stretchY`` times longer has constant radius).
    angle : float
        Direction of the stretch in radians; ``0`` is the y axis. The coordinate frame is
        rotated by this angle before stretching.

    Returns
    -------
    r, phi : numpy.ndarray
        float64, each of shape ``(imageSizeY, imageSizeX)``: the distance, and the angle
        ``arctan2(dy, dx)`` in ``[-pi, pi]`` (in the rotated frame when stretched).

    Examples
    --------
    >>> r, phi = polar_map(centerX=1, centerY=1, imageSizeX=3, imageSizeY=3)
    >>> float(r[1, 2]), float(phi[2, 1])   # one pixel right; one pixel down
    (1.0, 1.5707963267948966)
    """
    imageSizeX, imageSizeY = _check_size(imageSizeX, imageSizeY, "polar_map")  # noqa: N806
    dy, dx = _offsets(centerX, centerY, imageSizeX, imageSizeY)
    dy, dx = np.broadcast_arrays(dy, dx)
    if stretchY != 1.0 or angle != 0.0:
        c, s = np.cos(angle), np.sin(angle)
        dy, dx = (dy * c - dx * s) / stretchY, dx * c + dy * s
    return np.hypot(dy, dx), np.arctan2(dy, dx)


def radial_gradient(centerX: float, centerY: float, imageSizeX: int, imageSizeY: int,  # noqa: N803
                    radius: float, antialiased: bool = False) -> np.ndarray:
    """``r / radius`` inside the disk of ``radius`` (a linear ramp from 0 to 1), 0 outside.

    Parameters
    ----------
    centerX, centerY : float
    imageSizeX, imageSizeY : int
    radius : float
    antialiased : bool
        Ramp down linearly over the last pixel instead of a hard edge (see
        :func:`radial_gradient_background_subtraction` with ``r_outer=0``).

    Returns
    -------
    numpy.ndarray
        float64, shape ``(imageSizeY, imageSizeX)``.

    Examples
    --------
    >>> radial_gradient(2, 0, 5, 1, radius=2)
    array([[1. , 0.5, 0. , 0.5, 1. ]])
    """
    imageSizeX, imageSizeY = _check_size(imageSizeX, imageSizeY, "radial_gradient")  # noqa: N806
    dy, dx = _offsets(centerX, centerY, imageSizeX, imageSizeY)
    r2 = dy * dy + dx * dx
    r = np.sqrt(r2)
    if antialiased:
        return radial_gradient_background_subtraction(r=r, r0=radius, r_outer=0)
    return (r2 <= radius * radius) * (r / radius)


def radial_gradient_background_subtraction(r: np.ndarray, r0: float, r_outer: float,
                                           delta: float = 1) -> np.ndarray:
    """A template from a map of radii: ramp ``r / r0`` inside, -1 on a ring outside.

    * ``r < r0 - delta/2``: ``r / r0``;
    * ``r0 - delta/2 <= r < r0 + delta/2``: ``(r0 - r) / (delta/2)`` (a linear transition
      from about 1 to -1, for anti-aliasing);
    * ``r0 + delta/2 <= r <= r_outer``: -1;
    * elsewhere 0.

    Parameters
    ----------
    r : numpy.ndarray
        Radius of every pixel, e.g. from :func:`polar_map` (which can also make elliptic
        maps).
    r0 : float
        Radius of the ramp.
    r_outer : float
        Outer radius of the negative ring.
    delta : float
        Width of the transition.

    Returns
    -------
    numpy.ndarray
        Same shape and dtype as ``r``. Use :func:`balance` to make it sum to zero.

    Examples
    --------
    >>> radial_gradient_background_subtraction(np.array([0., 1., 2., 3., 4.]), r0=2, r_outer=3)
    array([ 0. ,  0.5,  0. , -1. ,  0. ])
    """
    r = np.asarray(r)
    half = delta / 2
    out = np.zeros_like(r)
    inside = r < r0 - half
    out[inside] = r[inside] / r0
    edge = (r >= r0 - half) & (r < r0 + half)
    out[edge] = (r0 - r[edge]) / half
    out[(r >= r0 + half) & (r <= r_outer)] = -1
    return out


def balance(template: ArrayLike) -> np.ndarray:
    """Scale the negative part of ``template`` so that the whole sums to zero.

    A balanced template gives 0 on a uniform background or a linear gradient.

    Examples
    --------
    >>> balance(np.array([1.0, 1.0, -1.0]))
    array([ 1.,  1., -2.])
    """
    template = np.asarray(template)
    out = template.copy()
    pos = template > 0
    neg = template < 0
    neg_sum = template[neg].sum()
    if neg_sum == 0:
        raise MaskError("balance: the template has no negative values to scale")
    out[neg] *= -template[pos].sum() / neg_sum
    return out


def bounding_radius(centerX: float, centerY: float, imageSizeX: int,  # noqa: N803
                    imageSizeY: int) -> float:
    """A whole-pixel radius around the centre that covers the whole image (plus one pixel).

    Examples
    --------
    >>> bounding_radius(0, 0, 3, 4)
    6
    """
    dy = max(centerY, imageSizeY - centerY)
    dx = max(centerX, imageSizeX - centerX)
    return int(math.ceil(math.hypot(dy, dx))) + 1


def radial_bins(centerX: float, centerY: float, imageSizeX: int, imageSizeY: int,  # noqa: N803
                radius: float | None = None, radius_inner: float = 0, n_bins: int | None = None,
                normalize: bool = False, use_sparse: bool | None = None,
                dtype: DTypeLike | None = None) -> Any:
    """A stack of anti-aliased rings of equal width from ``radius_inner`` to ``radius``.

    Ring ``i`` is centred on ``r_i = radius_inner + (i + 1/2) * width`` with ``width =
    (radius - radius_inner) / n_bins``; a pixel at distance ``r`` has the weight
    ``clip(width/2 + 1/2 - |r - r_i|, 0, 1)``, so neighbouring rings overlap by one pixel
    and the weights of all rings add up to 1 inside the covered annulus. The centre pixel
    gets ``1 - radius_inner`` in the first ring when ``radius_inner < 0.5``.

    Parameters
    ----------
    centerX, centerY : float
    imageSizeX, imageSizeY : int
    radius : float, optional
        Outer radius; default :func:`bounding_radius` (the whole image).
    radius_inner : float
        Inner radius (default 0).
    n_bins : int, optional
        Number of rings; default one per pixel of radius.
    normalize : bool
        Scale every ring to sum 1.
    use_sparse : bool, optional
        Return a pydata ``sparse.COO`` array instead of a numpy array. Default: sparse when
        one ring covers less than a tenth of the image and the ``sparse`` package is
        installed.
    dtype : dtype, optional
        Dtype of the result (default float64).

    Returns
    -------
    numpy.ndarray or sparse.COO
        Shape ``(n_bins, imageSizeY, imageSizeX)``.

    Examples
    --------
    >>> bins = radial_bins(8, 8, 16, 16, radius=6, n_bins=3, use_sparse=False)
    >>> bins.shape
    (3, 16, 16)
    >>> r, _ = polar_map(8, 8, 16, 16)
    >>> bool(np.allclose(bins.sum(axis=0)[r <= 5.5], 1))   # the rings tile the disk
    True
    """
    imageSizeX, imageSizeY = _check_size(imageSizeX, imageSizeY, "radial_bins")  # noqa: N806
    if radius is None:
        radius = bounding_radius(centerX, centerY, imageSizeX, imageSizeY)
    if n_bins is None:
        n_bins = int(np.round(radius - radius_inner))
    if isinstance(n_bins, bool) or not isinstance(n_bins, (int, np.integer)) or n_bins < 1:
        raise MaskError(f"radial_bins: n_bins must be a positive integer, got {n_bins!r} "
                        f"(radius={radius}, radius_inner={radius_inner})")
    if radius <= radius_inner:
        raise MaskError(f"radial_bins: radius ({radius}) must be larger than radius_inner "
                        f"({radius_inner})")
    n_bins = int(n_bins)
    width = (radius - radius_inner) / n_bins
    if use_sparse is None:
        outer_ring_area = np.pi * (radius ** 2 - (radius - width) ** 2)
        use_sparse = outer_ring_area / max(1, imageSizeX * imageSizeY) < 0.1 and _have_sparse()
    r, _ = polar_map(centerX, centerY, imageSizeX, imageSizeY)
    r = r.reshape(-1)
    out_dtype = np.dtype(np.float64 if dtype is None else dtype)
    centres = np.linspace(radius_inner, radius - width, n_bins) + width / 2
    stack = np.empty((n_bins, r.size), dtype=np.float64)
    for i, r_i in enumerate(centres):
        # the extra half pixel makes neighbouring rings overlap so that they sum to exactly 1
        stack[i] = np.clip(width / 2 + 0.5 - np.abs(r - r_i), 0, 1)
    if normalize:
        sums = stack.sum(axis=1)
        nonzero = ~np.isclose(sums, 0)
        stack[nonzero] /= sums[nonzero, np.newaxis]
    if radius_inner < 0.5:
        # the centre pixel: r = 0 weighs only 1/2 + width/2 - width/2 in the first ring
        yy, xx = int(np.round(centerY)), int(np.round(centerX))
        if 0 <= yy < imageSizeY and 0 <= xx < imageSizeX:
            stack[0, yy * imageSizeX + xx] = 1 - radius_inner
    masks = stack.reshape(n_bins, imageSizeY, imageSizeX).astype(out_dtype, copy=False)
    if use_sparse:
        return _sparse_module("radial_bins(use_sparse=True)").COO.from_numpy(masks)
    return masks


def gradient_x(imageSizeX: int, imageSizeY: int, dtype: DTypeLike = np.float32) -> np.ndarray:  # noqa: N803
    """A mask whose value is the column index ``x`` (for centre-of-mass style sums).

    Examples
    --------
    >>> gradient_x(3, 2)
    array([[0., 1., 2.],
           [0., 1., 2.]], dtype=float32)
    """
    imageSizeX, imageSizeY = _check_size(imageSizeX, imageSizeY, "gradient_x")  # noqa: N806
    return np.broadcast_to(np.arange(imageSizeX, dtype=dtype), (imageSizeY, imageSizeX)).copy()


def gradient_y(imageSizeX: int, imageSizeY: int, dtype: DTypeLike = np.float32) -> np.ndarray:  # noqa: N803
    """A mask whose value is the row index ``y``.

    Examples
    --------
    >>> gradient_y(2, 3)
    array([[0., 0.],
           [1., 1.],
           [2., 2.]], dtype=float32)
    """
    imageSizeX, imageSizeY = _check_size(imageSizeX, imageSizeY, "gradient_y")  # noqa: N806
    column = np.arange(imageSizeY, dtype=dtype)[:, np.newaxis]
    return np.broadcast_to(column, (imageSizeY, imageSizeX)).copy()


def sparse_template_multi_stack(mask_index: ArrayLike, offsetX: ArrayLike,  # noqa: N803
                                offsetY: ArrayLike, template: ArrayLike, imageSizeX: int,
                                imageSizeY: int) -> Any:
    """Stamp ``template`` into a sparse mask stack, one stamp per entry of ``mask_index``.

    Stamp ``i`` goes into mask ``mask_index[i]`` with its top-left corner at
    ``(offsetY[i], offsetX[i])``; parts outside the image are cut off.

    Returns
    -------
    sparse.COO
        Shape ``(max(mask_index) + 1, imageSizeY, imageSizeX)`` (needs the ``sparse`` package).

    Examples
    --------
    >>> stack = sparse_template_multi_stack([0, 1], offsetX=[0, 3], offsetY=[0, 1],
    ...                                     template=np.ones((2, 2)), imageSizeX=4, imageSizeY=3)
    >>> stack.todense()[1]
    array([[0., 0., 0., 0.],
           [0., 0., 0., 1.],
           [0., 0., 0., 1.]])
    """
    sparse = _sparse_module("sparse_template_multi_stack")
    imageSizeX, imageSizeY = _check_size(imageSizeX, imageSizeY, "sparse_template_multi_stack")  # noqa: N806
    template = np.asarray(template)
    mask_index = np.asarray(mask_index, dtype=np.int64).reshape(-1)
    offsetX = np.asarray(offsetX, dtype=np.int64).reshape(-1)  # noqa: N806
    offsetY = np.asarray(offsetY, dtype=np.int64).reshape(-1)  # noqa: N806
    if template.ndim != 2:
        raise MaskError(f"sparse_template_multi_stack: template must be 2D, got shape {template.shape}")
    if not (len(mask_index) == len(offsetX) == len(offsetY)) or len(mask_index) == 0:
        raise MaskError("sparse_template_multi_stack: mask_index, offsetX and offsetY must have the "
                        f"same, non-zero length, got {len(mask_index)}, {len(offsetX)}, {len(offsetY)}")
    grid = np.indices(template.shape).reshape(2, -1)
    ty, tx, values = grid[0], grid[1], template.reshape(-1)
    layer = np.repeat(mask_index, values.size)
    ys = (offsetY[:, np.newaxis] + ty).reshape(-1)
    xs = (offsetX[:, np.newaxis] + tx).reshape(-1)
    vals = np.tile(values, len(mask_index))
    keep = (ys >= 0) & (ys < imageSizeY) & (xs >= 0) & (xs < imageSizeX)
    return sparse.COO(coords=np.stack([layer[keep], ys[keep], xs[keep]]), data=vals[keep],
                      shape=(int(mask_index.max()) + 1, imageSizeY, imageSizeX))


def sparse_circular_multi_stack(mask_index: ArrayLike, centerX: ArrayLike,  # noqa: N803
                                centerY: ArrayLike, imageSizeX: int, imageSizeY: int,
                                radius: float) -> Any:
    """Sparse stack of disks of ``radius`` at integer centres ``(centerY[i], centerX[i])``.

    The disk template is :func:`circular` in an odd-sized box of side ``2 * ceil(radius) + 1``
    centred on the pixel; centres are truncated to integers.

    Returns
    -------
    sparse.COO
        Bool, shape ``(max(mask_index) + 1, imageSizeY, imageSizeX)``.

    Examples
    --------
    >>> stack = sparse_circular_multi_stack([0], centerX=[2], centerY=[1], imageSizeX=5,
    ...                                     imageSizeY=3, radius=1)
    >>> stack.todense()[0].astype(int)
    array([[0, 0, 1, 0, 0],
           [0, 1, 1, 1, 0],
           [0, 0, 1, 0, 0]])
    """
    box = int(2 * np.ceil(radius) + 1)
    mid = (box - 1) // 2
    template = circular(centerX=mid, centerY=mid, imageSizeX=box, imageSizeY=box, radius=radius)
    return sparse_template_multi_stack(
        mask_index=mask_index,
        offsetX=np.asarray(centerX).astype(np.int64) - mid,
        offsetY=np.asarray(centerY).astype(np.int64) - mid,
        template=template, imageSizeX=imageSizeX, imageSizeY=imageSizeY)


def is_sparse(a: Any) -> bool:
    """True for ``scipy.sparse`` matrices / arrays and pydata ``sparse`` arrays.

    Examples
    --------
    >>> import scipy.sparse
    >>> is_sparse(scipy.sparse.eye(2)), is_sparse(np.eye(2))
    (True, False)
    """
    mod = type(a).__module__
    return mod.startswith("scipy.sparse") or mod == "sparse" or mod.startswith("sparse.")


def to_dense(a: Any) -> np.ndarray:
    """A numpy array from a dense or sparse (``scipy.sparse``, pydata ``sparse``) array.

    Examples
    --------
    >>> import scipy.sparse
    >>> to_dense(scipy.sparse.eye(2))
    array([[1., 0.],
           [0., 1.]])
    """
    if type(a).__module__.startswith("scipy.sparse"):
        return a.toarray()
    if is_sparse(a):
        return a.todense()
    return np.array(a)


def to_sparse(a: Any, shape: tuple[int, ...] | None = None) -> Any:
    """A pydata ``sparse.COO`` array from a dense or sparse array, or from coordinates.

    Parameters
    ----------
    a : array_like, scipy.sparse or sparse array, or list of coordinates
        A list of index tuples (``[(y, x), ...]``) or of ``(index, value)`` pairs with one
        common truth value makes a bool array of ``shape``, true at those indices (false
        if the value is false, and then true everywhere else).
    shape : tuple of int, optional
        Required for coordinates.

    Examples
    --------
    >>> to_sparse([(0, 1), (1, 0)], shape=(2, 2)).todense()
    array([[False,  True],
           [ True, False]])
    """
    sparse = _sparse_module("to_sparse")
    if isinstance(a, (list, tuple)):
        if shape is None:
            raise MaskError("to_sparse: a list of coordinates needs shape=")
        items = list(a)
        if items and all(isinstance(i, (int, np.integer)) for i in items):
            items = [(tuple(items), True)]  # one coordinate tuple
        pairs = []
        for item in items:
            if len(item) == 2 and isinstance(item[0], (tuple, list)):
                pairs.append((tuple(item[0]), bool(item[1])))
            else:
                pairs.append((tuple(item), True))
        truths = {v for _, v in pairs}
        if len(truths) > 1:
            raise MaskError("to_sparse: coordinates with both true and false values; give one "
                            "truth value for all")
        value = truths.pop() if truths else True
        shape = tuple(int(s) for s in shape)
        coords = np.array([c for c, _ in pairs], dtype=np.int64).reshape(-1, len(shape)).T
        return sparse.COO(coords=coords, data=np.full(coords.shape[1], value), shape=shape,
                          fill_value=not value)
    if type(a).__module__.startswith("scipy.sparse"):
        return sparse.COO.from_scipy_sparse(a)
    if isinstance(a, sparse.SparseArray):
        return a.asformat("coo")
    return sparse.COO.from_numpy(np.asarray(a))


def _have_sparse() -> bool:
    try:
        import sparse  # noqa: F401
    except ImportError:
        return False
    return True


def _sparse_module(what: str):
    try:
        import sparse
    except ImportError:
        raise MaskError(f"{what} makes pydata sparse arrays and needs the 'sparse' package: "
                        "pip install sparse (or pass use_sparse=False where offered)") from None
    return sparse
