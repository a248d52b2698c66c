"""``CoMUDF``: centre of mass of every frame, with LiberTEM 0.16's parameters and results.

How the numbers come about
--------------------------
Per frame, inside the selection (a disk of radius ``r`` around ``(cy, cx)``, or a ring
``ri < d <= r``; the whole frame by default) three sums are taken in one matrix product per
tile, over the bounding box of the selection only (sparse tiles: the stored entries times the
masks over the whole frame): the intensity, and the intensity weighted
with the row and with the column index. Their
ratios are the centre of mass ``raw_com`` in pixel coordinates of the frame; a frame whose
selected intensity is zero gets the reference point ``(cy, cx)`` itself. The rest happens in
:meth:`CoMUDF.get_results`, on the main process, on the whole scan:

1. ``raw_shifts = raw_com - (cy, cx)``;
2. ``field`` = the shifts turned into scan coordinates: first ``flip_y`` (``dy -> -dy``),
   then a rotation by ``scan_rotation`` degrees (clockwise for positive angles), see
   :func:`apply_correction`;
3. a background field is subtracted from ``field`` at the processed positions: nothing,
   the mean, a least-squares plane ``a + b*y + c*x`` per component, or a given ``(3, 2)``
   matrix (``regression``); the matrix used is the ``regression`` result;
4. ``magnitude``, ``divergence`` and ``curl`` of the field with :func:`numpy.gradient` on
   the nav grid (central differences inside, one-sided at the edges). Positions outside the
   ROI are NaN, so the derivative at a processed position next to one is NaN too, as in
   LiberTEM. Along a nav axis of length 1 the derivative is zero (LiberTEM raises).

Compared with LiberTEM the only difference in arithmetic is that the three sums of a frame
are turned into ``raw_com`` on the worker (tiles hold whole frames), in float64, and stored;
results agree with LiberTEM's to float32 rounding.
"""

from __future__ import annotations

import numbers
from enum import IntEnum
from functools import lru_cache
from math import prod
from typing import NamedTuple

import numpy as np

from ...errors import UDFError, UDFParameterError
from ..base import UDF
from ._geometry import check_number, disk, ring
from ._sparse import as_csr, is_sparse

__all__ = ["CoMUDF", "CoMParams", "RegressionOptions", "GuessResult", "guess_corrections",
           "apply_correction", "center_shifts", "divergence", "curl_2d", "magnitude",
           "coordinate_check", "com_masks_factory", "com_masks_generic"]

_TILE_DEPTH = 64
_TILE_BYTES = 4 << 20


class RegressionOptions(IntEnum):
    """The regression orders of :class:`CoMUDF` (also accepted as the integers -1, 0, 1).

    Examples
    --------
    >>> RegressionOptions.SUBTRACT_LINEAR == 1
    True
    """

    #: subtract nothing
    NO_REGRESSION = -1
    #: subtract the mean field (a centre offset)
    SUBTRACT_MEAN = 0
    #: subtract the mean and a linear dependence on the scan position (descan error)
    SUBTRACT_LINEAR = 1


class CoMParams(NamedTuple):
    """Parameters of :class:`CoMUDF`; build them with :meth:`CoMUDF.with_params`.

    Attributes
    ----------
    cy, cx : float or None
        Centre of the selection and reference point of the shifts; None means the frame
        centre ``(sig_y // 2, sig_x // 2)``.
    r : float
        Outer radius of the selection (``inf``: the whole frame).
    ri : float or None
        Inner radius: pixels at distance ``<= ri`` are left out (0 or None: none).
    scan_rotation : float
        Rotation from detector to scan coordinates, in degrees.
    flip_y : bool
        Flip the detector's y axis before rotating.
    regression : RegressionOptions, int or array of shape (3, 2)
        Background field to subtract.

    Examples
    --------
    >>> CoMParams(cy=7.0, cx=8.0, r=4.0).r
    4.0
    """

    cy: float | None = None
    cx: float | None = None
    r: float = float("inf")
    ri: float | None = 0.0
    scan_rotation: float = 0.0
    flip_y: bool = False
    regression: object = RegressionOptions.NO_REGRESSION


class GuessResult(NamedTuple):
    """What :func:`guess_corrections` infers; ``CoMUDF.with_params(**guess._asdict())``.

    Examples
    --------
    >>> GuessResult(scan_rotation=90, flip_y=False, cy=0.5, cx=-0.25)._asdict()["scan_rotation"]
    90
    """

    scan_rotation: int
    flip_y: bool
    cy: float
    cx: float


#: whole-frame CoM around the frame centre, no corrections
_DEFAULT_PARAMS = CoMParams()


# -- masks --------------------------------------------------------------------------------

def com_masks_factory(detector_y, detector_x, cy, cx, r):
    """The three CoM masks of a disk as factories: disk, disk × row index, disk × column index.

    Parameters
    ----------
    detector_y, detector_x : int
        Frame shape.
    cy, cx : float
        Centre of the disk.
    r : float
        Radius (pixels at distance ``<= r``; ``inf``: the whole frame).

    Returns
    -------
    list of callable
        Each returns a float32 array of shape ``(detector_y, detector_x)``.

    Examples
    --------
    >>> import numpy as np
    >>> m = [f() for f in com_masks_factory(4, 5, cy=1, cx=2, r=1)]
    >>> m[0].astype(int)
    array([[0, 0, 1, 0, 0],
           [0, 1, 1, 1, 0],
           [0, 0, 1, 0, 0],
           [0, 0, 0, 0, 0]])
    >>> float(m[1].sum()), float(m[2].sum())
    (5.0, 10.0)
    """
    def selection():
        return disk((detector_y, detector_x), cy, cx, r)

    return com_masks_generic(detector_y, detector_x, selection)


def com_masks_generic(detector_y, detector_x, base_mask_factory):
    """The three CoM masks for any selection: selection, selection × row, selection × column.

    Parameters
    ----------
    detector_y, detector_x : int
        Frame shape.
    base_mask_factory : callable
        Returns the selection (bool or weights) of shape ``(detector_y, detector_x)``.

    Returns
    -------
    list of callable
        Each returns a float32 array of the frame shape.

    Examples
    --------
    >>> import numpy as np
    >>> m = [f() for f in com_masks_generic(2, 3, lambda: np.ones((2, 3)))]
    >>> m[2]
    array([[0., 1., 2.],
           [0., 1., 2.]], dtype=float32)
    """
    def rows():
        return np.broadcast_to(np.arange(detector_y, dtype=np.float32)[:, np.newaxis],
                               (detector_y, detector_x))

    def cols():
        return np.broadcast_to(np.arange(detector_x, dtype=np.float32)[np.newaxis, :],
                               (detector_y, detector_x))

    return [
        lambda: np.asarray(base_mask_factory(), dtype=np.float32),
        lambda: rows() * np.asarray(base_mask_factory(), dtype=np.float32),
        lambda: cols() * np.asarray(base_mask_factory(), dtype=np.float32),
    ]


@lru_cache(maxsize=4)
def _mask_matrix(sig_shape, cy, cx, r, ri, dtype):
    """The three masks cut to the bounding box of the selection, cached per process.

    Returns ``(box, matrix)``: ``box`` the ``(slice_y, slice_x)`` of the frame that holds
    every selected pixel (empty slices when none is), ``matrix`` read-only, ``(box pixels, 3)``.
    A small disk thus costs only its box, not the frame.
    """
    h, w = sig_shape
    if ri is None or np.isclose(ri, 0.0):
        selection = disk(sig_shape, cy, cx, r)
    else:
        selection = ring(sig_shape, cy, cx, r, ri)
    rows = np.flatnonzero(selection.any(axis=1))
    cols = np.flatnonzero(selection.any(axis=0))
    if rows.size == 0:
        box = (slice(0, 0), slice(0, 0))
    else:
        box = (slice(int(rows[0]), int(rows[-1]) + 1), slice(int(cols[0]), int(cols[-1]) + 1))
    factories = com_masks_generic(h, w, lambda: selection)
    mat = np.stack([f()[box].reshape(-1) for f in factories], axis=1).astype(dtype)
    mat.setflags(write=False)
    return box, mat


@lru_cache(maxsize=4)
def _frame_matrix(sig_shape, cy, cx, r, ri, dtype):
    """The three masks over the whole frame, ``(pixels, 3)``, for sparse tiles: a CSR row
    block times this matrix costs one multiply-add per stored entry, with no box to cut."""
    box, mat = _mask_matrix(sig_shape, cy, cx, r, ri, dtype)
    full = np.zeros(tuple(sig_shape) + (3,), dtype=mat.dtype)
    full[box] = mat.reshape(full[box].shape)
    full = full.reshape(-1, 3)
    full.setflags(write=False)
    return full


# -- the pieces of get_results, usable on their own ------------------------------------------

def center_shifts(img_sum, img_y, img_x, ref_y, ref_x):
    """Shift of the centre of mass from ``(ref_y, ref_x)``, from the three mask sums.

    Where ``img_sum`` is zero the shift is zero.

    Parameters
    ----------
    img_sum, img_y, img_x : numpy.ndarray
        Sum of the intensity, and of the intensity times the row / column index.
    ref_y, ref_x : float
        Reference point.

    Returns
    -------
    (y_shifts, x_shifts) : tuple of numpy.ndarray

    Examples
    --------
    >>> import numpy as np
    >>> center_shifts(np.array([2.0, 0.0]), np.array([6.0, 0.0]), np.array([2.0, 0.0]), 2, 2)
    (array([1., 0.]), array([-1.,  0.]))
    """
    img_sum = np.asarray(img_sum)
    nonzero = img_sum != 0
    # where the sum is zero the divisions are left out, and the reference point is taken
    y = np.full(img_sum.shape, ref_y, dtype=np.result_type(img_y, img_sum, np.float32))
    x = np.full(img_sum.shape, ref_x, dtype=y.dtype)
    np.divide(img_y, img_sum, out=y, where=nonzero)
    np.divide(img_x, img_sum, out=x, where=nonzero)
    y -= ref_y
    x -= ref_x
    return (y, x)


def _transform(scan_rotation: float, flip_y: bool) -> np.ndarray:
    """2×2 matrix acting on ``(y, x)`` column vectors: rotation after the optional y flip."""
    phi = np.deg2rad(scan_rotation)
    rot = np.array([[np.cos(phi), np.sin(phi)],
                    [-np.sin(phi), np.cos(phi)]])
    flip = np.array([[-1.0, 0.0], [0.0, 1.0]]) if flip_y else np.eye(2)
    return rot @ flip


def apply_correction(y_centers, x_centers, scan_rotation, flip_y, forward=True):
    """Turn shifts from detector to scan coordinates (or back, with ``forward=False``).

    ``flip_y`` negates the y component first; then the vector is rotated by
    ``scan_rotation`` degrees, clockwise as an image is shown (y down) for positive angles:
    ``(dy, dx) = (0, 1)`` becomes ``(1, 0)`` at 90°.

    Parameters
    ----------
    y_centers, x_centers : numpy.ndarray
        Components of the shifts (any shape, the same for both).
    scan_rotation : float
        Degrees.
    flip_y : bool
    forward : bool
        False applies the inverse transformation.

    Returns
    -------
    (y, x) : tuple of numpy.ndarray
        float64 arrays of the input shape.

    Examples
    --------
    >>> import numpy as np
    >>> y, x = apply_correction(np.array([0.0]), np.array([1.0]), scan_rotation=90, flip_y=False)
    >>> np.round(y, 12), np.round(x, 12)
    (array([1.]), array([0.]))
    """
    y_centers = np.asarray(y_centers)
    x_centers = np.asarray(x_centers)
    shape = y_centers.shape
    mat = _transform(scan_rotation, flip_y)
    if not forward:
        mat = np.linalg.inv(mat)
    vec = np.stack([y_centers.reshape(-1), x_centers.reshape(-1)])
    y, x = mat @ vec
    return (y.reshape(shape), x.reshape(shape))


def divergence(y_centers, x_centers):
    """``d field_y / dy + d field_x / dx`` on the nav grid (axis 0 is y), by ``numpy.gradient``.

    Along an axis of length 1 (a line scan) the derivative is taken as zero.

    Examples
    --------
    >>> import numpy as np
    >>> y, x = np.mgrid[0:3, 0:4].astype(float)
    >>> divergence(y, x)
    array([[2., 2., 2., 2.],
           [2., 2., 2., 2.],
           [2., 2., 2., 2.]])
    """
    return _gradient(y_centers, 0) + _gradient(x_centers, 1)


def _gradient(values, axis: int) -> np.ndarray:
    """``numpy.gradient`` along ``axis``; zero along an axis of length 1 (a line scan), where
    numpy has no difference to take (LiberTEM raises there)."""
    values = np.asarray(values)
    if values.shape[axis] < 2:
        return np.zeros(values.shape, dtype=np.result_type(values, np.float64))
    return np.gradient(values, axis=axis)


def curl_2d(y_centers, x_centers):
    """``d field_y / dx - d field_x / dy`` on the nav grid (axis 0 is y), by ``numpy.gradient``.

    Along an axis of length 1 (a line scan) the derivative is taken as zero.

    Examples
    --------
    >>> import numpy as np
    >>> y, x = np.mgrid[0:3, 0:4].astype(float)
    >>> curl_2d(x, -y)  # a rotation: curl 2
    array([[2., 2., 2., 2.],
           [2., 2., 2., 2.],
           [2., 2., 2., 2.]])
    """
    return _gradient(y_centers, 1) - _gradient(x_centers, 0)


def magnitude(y_centers, x_centers):
    """Length of the field vectors.

    Examples
    --------
    >>> import numpy as np
    >>> magnitude(np.array([3.0]), np.array([4.0]))
    array([5.])
    """
    return np.sqrt(np.square(y_centers) + np.square(x_centers))


def _default_selector(roi):
    # the last row and column carry one-sided differences of a field that wraps a scan
    # line: leave them out of the statistics unless told otherwise
    return (slice(0, -1), slice(0, -1)) if roi is None else roi


def coordinate_check(y_centers, x_centers, roi=None):
    """RMS curl of the corrected field for every ``scan_rotation`` 0…359° and both ``flip_y``.

    An electrostatic field has no curl, so for atomic-resolution data of a non-magnetic
    specimen the right settings make the RMS curl small.

    Parameters
    ----------
    y_centers, x_centers : numpy.ndarray
        2D shifts (e.g. ``raw_shifts``).
    roi : index, optional
        Which positions enter the statistics; default all but the last row and column.

    Returns
    -------
    (straight, flipped) : tuple of numpy.ndarray
        Shape ``(360,)`` each: RMS curl per whole degree, for ``flip_y`` False and True.

    Examples
    --------
    >>> import numpy as np
    >>> y, x = np.mgrid[0:8, 0:8].astype(float)
    >>> straight, flipped = coordinate_check(y, x)
    >>> straight.shape, bool(straight[0] < 1e-12)
    ((360,), True)
    """
    selector = _default_selector(roi)
    straight = np.zeros(360)
    flipped = np.zeros(360)
    for angle in range(360):
        for flip, out in ((False, straight), (True, flipped)):
            fy, fx = apply_correction(y_centers, x_centers, scan_rotation=angle, flip_y=flip)
            out[angle] = np.sqrt(np.mean(curl_2d(fy, fx)[selector] ** 2))
    return (straight, flipped)


def guess_corrections(y_centers, x_centers, roi=None) -> GuessResult:
    """Guess ``scan_rotation``, ``flip_y`` and the centre offset from CoM shifts.

    Assumes atomic-resolution data of an electrostatic potential: the right rotation and flip
    minimise the RMS curl (:func:`coordinate_check`); of the two angles 180° apart that do,
    the one that makes the divergence's histogram heavier at its negative end is taken
    (electrons are pulled towards the nuclei); ``cy``, ``cx`` are the mean shifts, i.e.
    relative to whatever reference the shifts were computed from.

    Parameters
    ----------
    y_centers, x_centers : numpy.ndarray
        2D shifts, e.g. ``result["raw_shifts"].data[..., 0]`` and ``[..., 1]``.
    roi : index, optional
        Positions used; default all but the last row and column.

    Returns
    -------
    GuessResult

    Examples
    --------
    >>> import numpy as np
    >>> yy, xx = np.mgrid[0:24, 0:24].astype(float)
    >>> atoms = [(5, 7), (12, 18), (19, 6), (16, 13)]
    >>> potential = sum(np.exp(-((yy - y) ** 2 + (xx - x) ** 2) / 8) for y, x in atoms)
    >>> gy, gx = np.gradient(potential)  # the beam is deflected towards the atoms
    >>> # as seen by a flipped detector rotated by 75 degrees, with a centre offset
    >>> fy, fx = apply_correction(gy, gx, scan_rotation=-75, flip_y=True, forward=False)
    >>> guess = guess_corrections(fy + 0.5, fx - 0.25)
    >>> guess.scan_rotation, guess.flip_y, round(guess.cy, 2), round(guess.cx, 2)
    (-75, True, 0.5, -0.25)
    """
    selector = _default_selector(roi)
    straight, flipped = coordinate_check(y_centers, x_centers, roi=selector)
    flip_y = bool(np.min(flipped) < np.min(straight))
    angle = int(np.argmin(flipped if flip_y else straight))
    fy, fx = apply_correction(y_centers, x_centers, scan_rotation=angle, flip_y=flip_y)
    div = divergence(fy, fx)[selector]
    bound = np.maximum(-np.min(div), np.max(div))
    hist, _ = np.histogram(div, range=(-bound, bound), bins=5)
    if hist[0] < hist[-1]:
        # more strongly positive than negative divergence: the field points the wrong way
        angle += 180
    if angle > 180:
        angle -= 360
    return GuessResult(scan_rotation=int(angle), flip_y=flip_y,
                       cy=float(np.mean(np.asarray(y_centers)[selector])),
                       cx=float(np.mean(np.asarray(x_centers)[selector])))


# -- the UDF ------------------------------------------------------------------------------

def _parse_regression(value, where: str):
    """An int -1/0/1 (RegressionOptions kept as such) or a float64 (3, 2) array."""
    if isinstance(value, numbers.Integral) and not isinstance(value, bool):
        if int(value) not in (-1, 0, 1):
            raise UDFError(f"{where}: regression must be -1, 0, 1 (RegressionOptions) or a (3, 2) "
                           f"array [[y, x], [dy/dy, dx/dy], [dy/dx, dx/dx]], got {value!r}")
        return value if isinstance(value, RegressionOptions) else int(value)
    try:
        arr = np.array(value, dtype=np.float64)
    except (TypeError, ValueError):
        arr = None
    if arr is None or arr.shape != (3, 2):
        got = f"shape {arr.shape}" if arr is not None else repr(value)
        raise UDFError(f"{where}: regression must be -1, 0, 1 (RegressionOptions) or an array of "
                       f"shape (3, 2) [[y, x], [dy/dy, dx/dy], [dy/dx, dx/dx]], got {got}")
    if not np.isfinite(arr).all():
        raise UDFParameterError(f"{where}: the regression matrix must be finite, got {arr.tolist()}")
    return arr


def _checked_params(p, where: str) -> CoMParams:
    if not isinstance(p, CoMParams):
        raise UDFError(f"{where}: com_params must be a CoMParams, got {type(p).__name__}; "
                       "use CoMUDF.with_params(cy=..., cx=..., r=..., ...)")
    cy = check_number(p.cy, "cy", where, allow_none=True)
    cx = check_number(p.cx, "cx", where, allow_none=True)
    r = check_number(p.r, "r", where, allow_inf=True)
    if r <= 0:
        raise UDFParameterError(f"{where}: the radius r must be > 0, got {p.r!r}")
    ri = check_number(p.ri, "ri", where, allow_none=True, minimum=0.0)
    if ri is not None and ri >= r:
        raise UDFParameterError(f"{where}: the inner radius ri ({p.ri!r}) must be less than the outer "
                       f"radius r ({p.r!r}) for an annular CoM")
    rot = check_number(p.scan_rotation, "scan_rotation", where)
    if not isinstance(p.flip_y, (bool, np.bool_)):
        raise UDFError(f"{where}: flip_y must be True or False, got {p.flip_y!r}")
    return CoMParams(cy=cy, cx=cx, r=r, ri=ri, scan_rotation=rot, flip_y=bool(p.flip_y),
                     regression=_parse_regression(p.regression, where))


class CoMUDF(UDF):
    """Centre of mass of every frame: shifts, the field in scan coordinates, its divergence and curl.

    Build it with :meth:`with_params`. All results are ``nav`` results except ``regression``:

    ===============  ============  ===========================================================
    name             extra shape   meaning
    ===============  ============  ===========================================================
    ``raw_com``      ``(2,)``      centre of mass ``(y, x)`` in pixel coordinates of the frame
    ``raw_shifts``   ``(2,)``      ``raw_com - (cy, cx)``
    ``field``        ``(2,)``      the shifts after ``flip_y``, ``scan_rotation`` and regression
    ``field_y``      ``()``        ``field[..., 0]``
    ``field_x``      ``()``        ``field[..., 1]``
    ``magnitude``    ``()``        length of ``field``
    ``divergence``   ``()``        divergence of ``field`` over the scan (``numpy.gradient``)
    ``curl``         ``()``        curl of ``field`` over the scan
    ``regression``   ``(3, 2)``    (single, float64) the subtracted background
                                   ``[[y, x], [dy/dy, dx/dy], [dy/dx, dx/dx]]``
    ===============  ============  ===========================================================

    ``raw_com`` and ``raw_shifts`` are float32 for float32 input (the default for integer
    data), float64 for float64 data; the field and what is derived from it are float64 (as
    LiberTEM returns them without a ROI; with a ROI LiberTEM gives float32). The data set
    must have a 2D nav (scan) and 2D real-valued frames. Outside a ROI every nav result is
    NaN, and so are derivatives next to such positions. Frames whose sums are NaN (NaN in the
    data) are left out of the regression fit; LiberTEM's fit would be NaN.

    Parameters
    ----------
    com_params : CoMParams, optional
        Default: whole-frame CoM relative to the frame centre, no corrections.

    Examples
    --------
    >>> import numpy as np
    >>> from udfkit import Context
    >>> from udfkit.udf import CoMUDF
    >>> data = np.zeros((2, 3, 16, 16), dtype="float32")
    >>> data[..., 9, 6] = 1  # a spot at (9, 6) in every frame
    >>> ctx = Context.make_with("inline")
    >>> ds = ctx.load("memory", data=data)
    >>> res = ctx.run_udf(dataset=ds, udf=CoMUDF.with_params(cy=8, cx=8, r=5))
    >>> res["raw_shifts"].data[0, 0]
    array([ 1., -2.], dtype=float32)
    >>> res["field"].data.shape, res["divergence"].data.shape, res["regression"].data.shape
    ((2, 3, 2), (2, 3), (3, 2))
    """

    def __init__(self, com_params: CoMParams = _DEFAULT_PARAMS):
        # checked here, so that a bad value fails before any data is read
        _checked_params(com_params, type(self).__name__)
        super().__init__(com_params=com_params)

    @classmethod
    def with_params(cls, *, cy=None, cx=None, r=float("inf"), ri=0.0, scan_rotation=0.0,
                    flip_y=False, regression=RegressionOptions.NO_REGRESSION):
        """A CoMUDF with the given parameters.

        Parameters
        ----------
        cy, cx : float or None
            Centre of the selection and reference point of the shifts; None (default): the
            frame centre ``(sig_y // 2, sig_x // 2)``.
        r : float
            Radius of the selection: pixels at distance ``<= r`` from ``(cy, cx)`` (pixel
            ``(i, j)`` is at its centre ``(i, j)``). Default ``inf``: the whole frame.
        ri : float
            Inner radius: pixels at distance ``<= ri`` are left out (an annular CoM);
            must be less than ``r``. Default 0: none (as in LiberTEM, also for values
            within 1e-8 of 0, by ``numpy.isclose``).
        scan_rotation : float
            Degrees; rotates the shift vectors clockwise for positive values, to turn detector
            coordinates into scan coordinates. If the detector appears rotated to the right of
            the scan, this is negative.
        flip_y : bool
            Negate the y component first (detectors with pixel (0, 0) at the lower left).
        regression : RegressionOptions, {-1, 0, 1} or array of shape (3, 2)
            Background field subtracted from ``field`` at the processed positions: -1 nothing,
            0 the mean, 1 the mean and a plane in the scan position (descan error), or the
            given matrix ``[[y, x], [dy/dy, dx/dy], [dy/dx, dx/dx]]`` (field at scan position
            ``(sy, sx)``: ``row0 + sy * row1 + sx * row2``).

        Returns
        -------
        CoMUDF

        Examples
        --------
        >>> udf = CoMUDF.with_params(cy=7.5, cx=8.0, r=4.0, regression=RegressionOptions.SUBTRACT_MEAN)
        >>> udf.params.com_params.r
        4.0
        """
        return cls(com_params=CoMParams(cy=cy, cx=cx, r=r, ri=ri, scan_rotation=scan_rotation,
                                        flip_y=flip_y, regression=regression))

    # -- declarations ---------------------------------------------------------------------
    def _check_shape(self):
        shape = self.meta.dataset_shape
        if shape.nav.dims != 2 or shape.sig.dims != 2:
            raise UDFError(f"{type(self).__name__} needs a 2D scan and 2D frames; the data set has "
                           f"nav shape {shape.nav.to_tuple()} and sig shape {shape.sig.to_tuple()} "
                           "(load it with nav_shape=(ny, nx) and a 2D sig_shape)")
        if self.meta.dataset_dtype.kind == "c":
            raise UDFError(f"{type(self).__name__} needs real-valued data; the data set is "
                           f"{self.meta.dataset_dtype}")

    def _dtype(self):
        return np.result_type(self.meta.input_dtype, np.float32)

    def get_result_buffers(self):
        self._check_shape()
        dtype = self._dtype()
        # the field is rotated in float64, and LiberTEM returns it so (without a ROI)
        wide = np.result_type(dtype, np.float64)
        return {
            # computed on the workers; everything else is derived from it on the main process
            "raw_com": self.buffer(kind="nav", extra_shape=(2,), dtype=dtype),
            "raw_shifts": self.buffer(kind="nav", extra_shape=(2,), dtype=dtype, use="result_only"),
            "field": self.buffer(kind="nav", extra_shape=(2,), dtype=wide, use="result_only"),
            "field_y": self.buffer(kind="nav", dtype=wide, use="result_only"),
            "field_x": self.buffer(kind="nav", dtype=wide, use="result_only"),
            "magnitude": self.buffer(kind="nav", dtype=wide, use="result_only"),
            "divergence": self.buffer(kind="nav", dtype=wide, use="result_only"),
            "curl": self.buffer(kind="nav", dtype=wide, use="result_only"),
            "regression": self.buffer(kind="single", extra_shape=(3, 2), dtype=np.float64,
                                      use="result_only"),
        }

    def get_backends(self):
        # CSR first: on raw_csr the three sums come from the stored entries only
        return (self.BACKEND_SCIPY_CSR, self.BACKEND_NUMPY)

    def get_tiling_preferences(self):
        # the centre of mass of a frame needs all three sums of the frame: whole frames;
        # many of them per matrix product
        return {"whole_frames": True, "depth": _TILE_DEPTH, "total_size": _TILE_BYTES}

    def get_params(self) -> CoMParams:
        """The parameters with ``cy``/``cx`` resolved (frame centre where None) and checked."""
        p = _checked_params(self.params.com_params, type(self).__name__)
        sig = self.meta.dataset_shape.sig.to_tuple()
        return p._replace(cy=float(sig[0] // 2) if p.cy is None else p.cy,
                          cx=float(sig[1] // 2) if p.cx is None else p.cx)

    def get_task_data(self):
        p = self.get_params()
        sig = self.meta.dataset_shape.sig.to_tuple()
        dtype = np.dtype(self.meta.input_dtype).str
        box, mat = _mask_matrix(sig, p.cy, p.cx, p.r, p.ri, dtype)
        if self.meta.array_backend != self.BACKEND_NUMPY:
            # sparse tiles are (depth, pixels): the masks over the whole frame
            return {"com_params": p, "box": None,
                    "mask_matrix": _frame_matrix(sig, p.cy, p.cx, p.r, p.ri, dtype)}
        return {"com_params": p, "box": box, "mask_matrix": mat}

    def preprocess(self):
        # on the main process: rows not merged yet are NaN, i.e. "not computed", so that
        # partial results leave them out of the regression
        self.results.raw_com[:] = np.nan

    def process_tile(self, tile):
        p = self.task_data.com_params
        depth = tile.shape[0]
        if is_sparse(tile):
            sums = np.asarray(as_csr(tile) @ self.task_data.mask_matrix, dtype=np.float64)
        else:
            # the selection's box of every frame, as rows (a copy only where the box is narrower)
            rows = tile[(slice(None),) + self.task_data.box].reshape(depth, -1)
            sums = (rows @ self.task_data.mask_matrix).astype(np.float64)
        total = sums[:, 0:1]
        com = np.empty((depth, 2))
        com[:] = (p.cy, p.cx)  # where nothing is selected the CoM is the reference point
        np.divide(sums[:, 1:], total, out=com, where=total != 0)
        self.results.raw_com[:] = com

    # -- results --------------------------------------------------------------------------
    def get_field_results(self, field_y, field_x):
        """Results derived from the corrected field; override to add or replace some.

        Parameters
        ----------
        field_y, field_x : numpy.ndarray
            The field components on the whole nav grid (NaN where not processed).

        Returns
        -------
        dict
            ``magnitude``, ``divergence`` and ``curl``, each of the nav shape.
        """
        return {"magnitude": magnitude(field_y, field_x),
                "divergence": divergence(field_y, field_x),
                "curl": curl_2d(field_y, field_x)}

    def get_regression(self, field: np.ndarray, valid_mask: np.ndarray):
        """The ``(3, 2)`` background matrix and, when it has a linear part, the regressors.

        Parameters
        ----------
        field : numpy.ndarray
            ``(ny, nx, 2)`` field before subtraction.
        valid_mask : numpy.ndarray of bool
            ``(ny, nx)``: positions that take part.

        Returns
        -------
        (regression, inp) : (numpy.ndarray, numpy.ndarray or None)
            ``inp`` is ``(ny, nx, 3)`` with columns ``1, y, x`` where the matrix has a
            non-zero linear part, else None.
        """
        option = self.get_params().regression
        result = np.zeros((3, 2))
        inp = _regressors(field.shape[:2])
        picked = field[valid_mask]
        if isinstance(option, np.ndarray):
            result[:] = option
        elif option == 0 and picked.shape[0] > 0:
            result[0] = picked.mean(axis=0)
        elif option == 1 and picked.shape[0] > 0:
            result[:] = np.linalg.lstsq(inp[valid_mask], picked, rcond=None)[0]
        return result, (None if np.allclose(result[1:], 0) else inp)

    def apply_mean_regression(self, regression, field_inout, valid_mask):
        """Subtract the offset row of ``regression`` at the valid positions (in place)."""
        field_inout[valid_mask] -= regression[0]

    def apply_lin_regression(self, regression, inp, field_inout, valid_mask):
        """Subtract ``inp @ regression`` at the valid positions (in place)."""
        field_inout[valid_mask] -= inp[valid_mask] @ regression

    def get_results(self):
        p = self.get_params()
        nav = self.meta.dataset_shape.nav.to_tuple()
        roi = self.meta.roi
        raw = np.asarray(self.results.raw_com, dtype=np.float64)
        com = np.full((prod(nav), 2), np.nan)
        if roi is None:
            com[:] = raw
        else:
            com[np.asarray(roi).reshape(-1)] = raw
        com = com.reshape(nav + (2,))
        shifts = com - (p.cy, p.cx)
        fy, fx = apply_correction(shifts[..., 0], shifts[..., 1], scan_rotation=p.scan_rotation,
                                  flip_y=p.flip_y)
        field = np.stack([fy, fx], axis=-1)
        valid = ~np.isnan(com[..., 0])
        regression, inp = self.get_regression(field, valid_mask=valid)
        if inp is not None:
            self.apply_lin_regression(regression, inp, field, valid)
        elif not np.allclose(regression[0], 0):
            self.apply_mean_regression(regression, field, valid)
        results = {
            "raw_com": com,
            "raw_shifts": shifts,
            "field": field,
            "field_y": field[..., 0],
            "field_x": field[..., 1],
        }
        results.update(self.get_field_results(field_y=field[..., 0], field_x=field[..., 1]))
        # nav results with one row per processed frame, like the buffers, in the declared
        # dtypes (get_results' arrays are taken as they are)
        specs = self.get_result_buffers()
        keep = None if roi is None else np.asarray(roi).reshape(-1)
        for name, value in results.items():
            flat = value.reshape((prod(nav),) + value.shape[2:])
            flat = flat if keep is None else flat[keep]
            results[name] = flat.astype(specs[name].dtype, copy=False)
        results["regression"] = regression.astype(np.float64)
        return results


def _regressors(nav_shape) -> np.ndarray:
    """``(ny, nx, 3)``: ``1, y, x`` at every scan position."""
    inp = np.ones(tuple(nav_shape) + (3,))
    inp[..., 1] = np.arange(nav_shape[0])[:, np.newaxis]
    inp[..., 2] = np.arange(nav_shape[1])[np.newaxis, :]
    return inp
