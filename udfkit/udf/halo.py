"""Halo UDFs: frames of the neighbouring scan positions next to a partition's own frames.

Contract
--------
A UDF declares ``get_halo() -> {"radius": (ry, rx), "mode": "nan" | "reflect" | "nearest"}``
(one radius per nav axis; a 1-D nav takes ``(r,)``) and implements ``process_frame_stack``
or ``process_partition``. It then receives a *block*: the flattened frames of a range of
whole scan rows it owns, plus ``ry`` rows above and below and ``rx`` columns left and right,
``stack.shape == (prod(meta.halo_block_shape), *sig)`` with ``meta.halo_block_shape ==
(rows + 2 * ry, cols + 2 * rx)`` (the frame-stack contract: a stack of whole frames, in
row-major nav order). ``process_partition`` gets the unit's whole block in one call;
``process_frame_stack`` gets it in stacks of ``max(1, k // cols)`` own rows, ``k`` being the
stack depth the negotiator picks (tiling preference and cache budget), each with its halo.
``meta.own_frames`` indexes the own processed frames in the block (the rows of
``self.results``' nav views); ``meta.coordinates``/``frame_index`` describe every frame
received; ``meta.slice`` the own frames. The UDF writes results for its own positions only,
so merging is unchanged.

Values of the block
-------------------
* Positions beyond the edges of the nav grid follow the mode: ``"nan"`` fills NaN
  (``numpy.pad(mode="constant", constant_values=nan)``), ``"reflect"`` mirrors without
  repeating the edge (``numpy.pad(mode="reflect")``), ``"nearest"`` repeats the edge
  (``numpy.pad(mode="edge")``).
* Positions inside the grid that the run does not process (outside the ROI, or without a
  frame because of ``sync_offset``) are NaN in every mode: there is no frame there to use.
  The block is thus exactly ``numpy.pad(where(processed, data, nan), radius, mode)`` cut at
  the unit, which is what the tests compare with. NaN needs a float input dtype: a halo UDF
  whose input dtype is an integer is an error when NaN can occur (mode ``"nan"``, a ROI, or
  positions without a frame).

Scheduling
----------
A run with a halo UDF is scheduled in :class:`~udfkit.io.halo.HaloUnit` objects: the data
set's partitions moved to whole rows, each reading its rows plus the largest row radius of
the run above and below (rules in :mod:`udfkit.io.halo`). Rows shared by two stacks of a unit
are kept, not read again; rows shared by two units are read by both, which the plan reports
as the read amplification. All UDFs of the run are fed from the same reads (per input dtype):
a UDF without a halo gets the unit's own frames as whole-frame tiles, stacks or frames.
"""

from __future__ import annotations

from dataclasses import dataclass
from math import prod

import numpy as np

from ..common import Shape, Slice
from ..errors import UDFError
from .buffers import BufferNamespace

__all__ = ["Halo", "normalize_halo", "check_halo", "HaloPlan", "plan_halo", "process_halo"]

_MODES = {"nan": "constant", "reflect": "reflect", "nearest": "edge"}


@dataclass(frozen=True)
class Halo:
    """A UDF's neighbourhood in nav: ``radius`` per nav axis and the boundary ``mode``."""

    radius: tuple
    mode: str

    @property
    def numpy_mode(self) -> str:
        """The ``numpy.pad`` mode of :attr:`mode`."""
        return _MODES[self.mode]

    def pad(self, core: np.ndarray, before: int, after: int) -> np.ndarray:
        """``core`` (rows, *inner nav, *sig) padded with ``before``/``after`` rows and the
        inner radii, in this halo's mode (``core`` itself when nothing is padded)."""
        widths = [(before, after)] + [(r, r) for r in self.radius[1:]]
        if not any(a or b for a, b in widths):
            return core
        widths += [(0, 0)] * (core.ndim - len(widths))
        if self.mode == "nan":
            return np.pad(core, widths, mode="constant", constant_values=np.nan)
        return np.pad(core, widths, mode=self.numpy_mode)  # type: ignore[call-overload]


def normalize_halo(value, where: str = "get_halo()") -> Halo | None:
    """Parse what ``get_halo()`` returned.

    Examples
    --------
    >>> normalize_halo({"radius": (1, 2), "mode": "reflect"})
    Halo(radius=(1, 2), mode='reflect')
    >>> normalize_halo({"radius": 1}) is None
    Traceback (most recent call last):
    ...
    udfkit.errors.UDFError: get_halo(): radius: expected a tuple of non-negative integers (one per nav axis), got 1
    >>> normalize_halo(None) is None
    True
    """
    if value is None:
        return None
    if not isinstance(value, dict):
        raise UDFError(f"{where} returned {type(value).__name__}; expected None or a dict "
                       "{'radius': (ry, rx), 'mode': 'nan' | 'reflect' | 'nearest'}")
    unknown = set(value) - {"radius", "mode"}
    if unknown:
        raise UDFError(f"{where}: unknown keys {sorted(unknown)}; expected 'radius' and 'mode'")
    radius = value.get("radius")
    ok = isinstance(radius, (tuple, list)) and len(radius) > 0 and all(
        isinstance(r, (int, np.integer)) and not isinstance(r, bool) and r >= 0 for r in radius)
    if not ok:
        raise UDFError(f"{where}: radius: expected a tuple of non-negative integers (one per "
                       f"nav axis), got {radius!r}")
    mode = value.get("mode", "nan")
    if mode not in _MODES:
        raise UDFError(f"{where}: mode: expected one of {sorted(_MODES)}, got {mode!r}")
    assert isinstance(radius, (tuple, list))  # checked above
    return Halo(tuple(int(r) for r in radius), mode)


def check_halo(udf, nav_shape: tuple, input_dtype, has_missing: bool) -> Halo | None:
    """The UDF's :class:`Halo`, checked against the data set; None without a halo.

    Raises :class:`~udfkit.errors.UDFError` naming the UDF and the sizes for a radius with
    the wrong number of axes, a radius not smaller than the nav axis, and an integer input
    dtype where the block can hold NaN.
    """
    name = type(udf).__name__
    halo = normalize_halo(udf.get_halo(), f"{name}.get_halo()")
    if halo is None:
        return None
    nav_shape = tuple(nav_shape)
    if len(halo.radius) != len(nav_shape):
        raise UDFError(f"{name}.get_halo(): radius {halo.radius} has {len(halo.radius)} "
                       f"ax{'es' if len(halo.radius) != 1 else 'is'}, but the data set has "
                       f"{len(nav_shape)} nav ax{'es' if len(nav_shape) != 1 else 'is'} "
                       f"(nav shape {nav_shape}); give one radius per nav axis")
    too_big = [i for i, (r, n) in enumerate(zip(halo.radius, nav_shape)) if r >= n]
    if too_big:
        raise UDFError(f"{name}.get_halo(): radius {halo.radius} is larger than the data set: "
                       f"nav shape {nav_shape}, so each radius must be smaller than its axis "
                       f"(axis {too_big[0]}: {halo.radius[too_big[0]]} >= "
                       f"{nav_shape[too_big[0]]})")
    dtype = np.dtype(input_dtype)
    if dtype.kind not in "fc" and (halo.mode == "nan" or has_missing):
        why = ("mode 'nan' fills NaN beyond the grid" if halo.mode == "nan"
               else "positions outside the ROI or without a frame are NaN")
        raise UDFError(f"{name}.get_halo(): {why}, but the UDF's input dtype is {dtype}; "
                       "use a float input dtype (get_preferred_input_dtype)")
    return halo


@dataclass(frozen=True)
class HaloPlan:
    """The halo part of a run plan.

    Attributes
    ----------
    radius : tuple of int
        Largest radius per nav axis over the run's halo UDFs.
    halo_rows : int
        Rows each unit reads above and below its own.
    frames_owned, frames_read : int
        Positions the units own and read (own plus halo rows inside the grid).
    """

    radius: tuple
    halo_rows: int
    frames_owned: int
    frames_read: int

    @property
    def read_amplification(self) -> float:
        """Frames read over frames owned."""
        return self.frames_read / self.frames_owned if self.frames_owned else 1.0

    @property
    def reason(self) -> str:
        """One sentence for the plan's reasons."""
        return (f"a UDF has a halo of radius {self.radius}: partitions of whole nav rows, each "
                f"reading {self.halo_rows} extra row{'s' if self.halo_rows != 1 else ''} above "
                f"and below; read amplification {self.read_amplification:.3f} "
                f"({self.frames_read} positions read for {self.frames_owned})")

    def to_dict(self) -> dict:
        return {"radius": list(self.radius), "halo_rows": self.halo_rows,
                "frames_owned": self.frames_owned, "frames_read": self.frames_read,
                "read_amplification": self.read_amplification}


def plan_halo(dataset, partitions, halos):
    """``(units, HaloPlan)`` for a run whose UDFs have these halos (None entries: none), or
    ``(partitions, None)`` when no UDF has one."""
    from ..io.halo import halo_units

    halos = [h for h in halos if h is not None]
    if not halos:
        return partitions, None
    nav_shape = dataset.shape.nav.to_tuple()
    radius = tuple(max(h.radius[i] for h in halos) for i in range(len(nav_shape)))
    units = halo_units(partitions, nav_shape, radius[0])
    plan = HaloPlan(radius=radius, halo_rows=radius[0],
                    frames_owned=sum(u.num_frames for u in units),
                    frames_read=sum(u.frames_read for u in units))
    return units, plan


def block_bytes(dataset, scheme, halos, methods, input_dtypes, units) -> int:
    """Bytes of the row window a halo task holds (per input dtype) plus one padded copy."""
    nav = dataset.shape.nav.to_tuple()
    row = prod(nav[1:]) if len(nav) > 1 else 1
    frame = dataset.shape.sig.size
    rows_unit = max((u.num_frames // row for u in units), default=1)
    total = 0
    for dtype in set(np.dtype(d) for d in input_dtypes):
        group = [(h, m) for h, m, d in zip(halos, methods, input_dtypes) if np.dtype(d) == dtype]
        m_rows = _step_rows([m for h, m in group if h is not None], scheme.depth, row, rows_unit)
        big = max((h.radius[0] for h, _ in group if h is not None), default=0)
        inner = max((prod(n + 2 * r for n, r in zip(nav[1:], h.radius[1:]))
                     for h, _ in group if h is not None), default=row)
        total += (m_rows + 2 * big) * row * frame * dtype.itemsize
        total += (m_rows + 2 * big) * inner * frame * dtype.itemsize
    return total


def _step_rows(halo_methods, depth, row, rows_unit, stack_depths=None) -> int:
    """Own rows per step: the whole unit when a halo UDF processes partitions, else the
    smallest stack depth in whole rows (at least one)."""
    if "partition" in halo_methods:
        return rows_unit
    depths = [d for d in (stack_depths or []) if d is not None] or [depth]
    return max(1, min(min(depths) // row, rows_unit))


def process_halo(part, task, bound, sig_shape, progress=None) -> None:
    """Stream a :class:`~udfkit.io.halo.HaloUnit` through the UDFs (see the module docstring).

    Called by the runner in place of its tile stream. For each input dtype: a window of
    ``step + 2 * R`` whole rows (``R`` the largest row radius of the dtype's halo UDFs) is
    filled with NaN and the processed frames, sliding down the unit ``step`` rows at a time
    (the overlapping rows are moved, not read again); each halo UDF gets its padded block,
    the other UDFs the own frames through the runner's feeder.
    """
    from .runner import _Feeder

    nav = task.dataset_shape.nav.to_tuple()
    nrows = nav[0]
    inner = tuple(nav[1:])
    row = prod(inner)
    r0, r1 = part.start // row, part.stop // row
    run_roi = None if task.run_roi is None else np.asarray(task.run_roi, dtype=bool).reshape(-1)
    sel = part.selected_positions(task.roi) + part.start  # own processed positions (flat)
    scheme = task.scheme
    full_sig = Slice((0,) * len(sig_shape), Shape(sig_shape, sig_dims=len(sig_shape)))
    by_dtype: dict = {}
    for b, dtype in zip(bound, task.input_dtypes):
        by_dtype.setdefault(dtype, []).append(b)
    for dtype, group in by_dtype.items():
        halos = [(b, normalize_halo(b.udf.get_halo(), f"{type(b.udf).__name__}.get_halo()"))
                 for b in group]
        halo_udfs = [(b, h) for b, h in halos if h is not None]
        plain = [b for b, h in halos if h is None]
        big = max((h.radius[0] for _, h in halo_udfs), default=0)
        step = _step_rows([b.method for b, _ in halo_udfs], scheme.depth, row, r1 - r0,
                          [b.stack_depth for b, _ in halo_udfs])
        fill = np.nan if np.dtype(dtype).kind in "fc" else 0
        win = np.empty((step + 2 * big, row) + tuple(sig_shape), dtype=dtype)
        feeder = _Feeder(plain, scheme, sig_shape, task.processed_offset) if plain else None
        k0 = 0
        prev = None  # first grid row of the window of the previous step
        for s in range(r0, r1, step):
            n_rows = min(step, r1 - s)
            w0 = s - big  # window row j holds grid row w0 + j
            w1 = s + n_rows + big
            keep = 0
            if prev is not None:
                shift = w0 - prev
                keep = max(0, win.shape[0] - shift)
                if keep:
                    win[:keep] = win[shift:shift + keep].copy()
            win[keep:w1 - w0].fill(fill)
            lo, hi = max(w0 + keep, 0), min(w1, nrows)
            if hi > lo:
                out = win[lo - w0:hi - w0].reshape((-1,) + tuple(sig_shape))
                part.read_rows(out, lo * row, hi * row, scheme, dtype, run_roi,
                               task.corrections, task.input_dtypes)
            prev = w0
            own = sel[(sel >= s * row) & (sel < (s + n_rows) * row)]
            n = int(own.size)
            origin = task.processed_offset + k0
            for b, h in halo_udfs:
                _call_halo(b, h, win, w0, s, n_rows, nrows, inner, own, k0, n, origin,
                           full_sig, sig_shape)
            if feeder is not None and n:
                flat = win[s - w0:s - w0 + n_rows].reshape((n_rows * row,) + tuple(sig_shape))
                local = own - s * row
                data = flat if n == flat.shape[0] else flat[local]
                depth = max(1, scheme.depth)
                for i in range(0, n, depth):
                    j = min(n, i + depth)
                    feeder(_OwnTile(data[i:j], own[i:j], k0 + i))
            k0 += n
            if progress is not None and n:
                progress(n)


class _OwnTile:
    """The own frames of a halo step, in the form the runner's feeder takes a tile."""

    __slots__ = ("data", "frame_index", "processed_start", "scheme_idx")

    def __init__(self, data, frame_index, processed_start):
        self.data = data
        self.frame_index = frame_index
        self.processed_start = processed_start
        self.scheme_idx = 0


def _call_halo(b, halo, win, w0, s, n_rows, nrows, inner, own, k0, n, origin, full_sig,
               sig_shape):
    ry = halo.radius[0]
    lo, hi = max(s - ry, 0), min(s + n_rows + ry, nrows)
    core = win[lo - w0:hi - w0].reshape((hi - lo,) + inner + tuple(sig_shape))
    block = halo.pad(core, lo - (s - ry), (s + n_rows + ry) - hi)
    nav_dims = 1 + len(inner)
    shape = block.shape[:nav_dims]
    stack = block.reshape((-1,) + tuple(sig_shape))
    # own positions in block coordinates: row offset ry, inner offsets their radii
    row = prod(inner)
    rest = np.unravel_index(own % row, inner) if inner else ()
    local = [own // row - (s - ry)] + [c + r for c, r in zip(rest, halo.radius[1:])]
    own_frames = np.ravel_multi_index(tuple(local), shape) if n else np.zeros(0, np.int64)
    udf = b.udf
    views = dict(b.per_slice[0])
    for name, arr, _ in b.nav:
        views[name] = arr[k0:k0 + n]
    udf.results = BufferNamespace(views, b.specs)
    params = udf.params.__dict__
    for name, arr, _ in b.aux:
        params[name] = arr[k0:k0 + n]
    udf.meta._set_unit(own, full_sig, origin, n, 0)
    udf.meta._set_halo((s - ry,) + tuple(-r for r in halo.radius[1:]), shape, own_frames)
    if b.method == "frame_stack":
        udf.process_frame_stack(stack)
    else:
        udf.process_partition(stack)
