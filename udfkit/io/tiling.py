"""Tiling schemes and the negotiator that picks one for a run.

A *tile* is ``depth`` consecutive processed frames times one rectangular part of the
signal. A :class:`TilingScheme` is the list of signal slices (a grid over the frame, smaller
at the far edges) plus the depth; all UDFs of one run share one scheme, because the data are
read once for all of them.

Rules of :class:`Negotiator` (in this order)
--------------------------------------------
1. **Partition method.** If any UDF processes whole partitions, a tile is the whole frame and
   as deep as the largest partition (intent ``"partition"``).
2. **Whole frames.** If any UDF processes single frames, the signal is not split
   (intent ``"frame"``); nor if any processes stacks of whole frames (``process_frame_stack``,
   intent ``"frame_stack"``, whose stacks are tiles of whole frames, their depth chosen by
   rules 4, 5 and 7); otherwise (only ``process_tile`` UDFs) it may be (intent ``"tile"``),
   unless a UDF asks for ``whole_frames`` (it needs every pixel of a frame at once, e.g. a
   per-frame minimum).
3. **Forced tile shape.** A data set may force a tile shape (the ``memory`` format's
   ``tileshape=`` for tests); it is used as given, except that rule 2 widens its signal part
   to the whole frame (as does ``whole_frames``). Depth is capped at the partition size.
4. **Size budget.** Otherwise tiles are sized by a byte budget counted in the dtype the UDFs
   receive:

   * copied tiles (conversion, byte swap or ROI gaps) are written by the decoder and read by
     the UDF right away, so they should stay in the core's cache: the budget is this core's
     L2 plus its share of the L3, clamped to 0.5–4 MiB (:func:`copy_budget`). Below 1 MiB
     the fixed cost of a tile (a few µs of Python per UDF call) starts to show; measured on a
     2-core EPYC (1 MiB L2, 32 MiB L3) a uint16 → float32 tile sum ran at 4 GB/s with
     256 KiB tiles, 8 with 1 MiB and 11 with 4 MiB;
   * zero-copy tiles are views of the file; they cost no copy whatever their size, but
     a UDF's temporaries are tile-sized, so they are capped at :data:`ZERO_COPY_BUDGET`;
   * the smallest ``total_size`` any UDF asks for in ``get_tiling_preferences()`` replaces the
     budget;
   * otherwise copied stacks of ``process_frame_stack`` UDFs (intent ``"frame_stack"``) get a
     quarter of the copy budget (:data:`STACK_TEMPORARIES`): their vectorised per-frame work
     (an FFT: complex results, magnitudes, squares) makes several stack-sized temporaries, which
     should stay in the cache too. Measured on the 2-core EPYC with 256×256 frames and a 4 MiB
     budget, a per-frame FFT ran at 305 frames/s with stacks of 4 and 163 with stacks of 16
     (``benchmarks/bench_patterns.py --cases fft``).
5. **Depth.** If UDFs ask for a ``depth``, the smallest request is used. Otherwise the depth is
   as many whole frames as fit into the budget (at least 1).
6. **Signal part.** When a split is allowed and ``depth`` frames do not fit, the signal part
   grows from the last axis towards the first in multiples of the data set's ``base_shape``
   (whole rows of a C-order file by default) until the budget is reached; at least one base
   unit is used. With an explicit depth the part is sized for ``budget / depth``.
7. Depth never exceeds the largest partition, nor the frames that fit into the read buffer
   of a block I/O backend (``buffered``, ``direct``: ``max_depth`` of the constraints), so
   that a tile is always one slice of one read.

The rules produce exact shapes, which the tests check: for a 256×256 ``float32`` result of a
``uint16`` file with a 1 MiB budget, ``process_tile`` UDFs get tiles of ``(4, 256, 256)``.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from math import prod

import numpy as np
from numpy.typing import DTypeLike

from ..common import Shape, Slice, parse_size
from ..errors import TilingError

__all__ = ["TilingScheme", "TilingRequest", "TilingConstraints", "Negotiator", "copy_budget",
           "ZERO_COPY_BUDGET", "STACK_TEMPORARIES"]

ZERO_COPY_BUDGET = 16 << 20
#: a frame stack's share of the copy budget is 1/STACK_TEMPORARIES (rule 4)
STACK_TEMPORARIES = 4
_MIN_COPY, _MAX_COPY = 512 << 10, 4 << 20


def _cache_bytes(level: int) -> int | None:
    base = "/sys/devices/system/cpu/cpu0/cache"
    try:
        for entry in sorted(os.listdir(base)):
            path = os.path.join(base, entry)
            with open(os.path.join(path, "level")) as f:
                if int(f.read()) != level:
                    continue
            with open(os.path.join(path, "type")) as f:
                if f.read().strip() not in ("Unified", "Data"):
                    continue
            with open(os.path.join(path, "size")) as f:
                return parse_size(f.read().strip())
    except (OSError, ValueError):
        pass
    return None


@lru_cache(maxsize=1)
def per_core_cache_bytes() -> int:
    """This core's L2 plus its share of the L3 (1 MiB when the sizes cannot be read)."""
    l2 = _cache_bytes(2)
    if l2 is None:
        return 1 << 20
    l3 = _cache_bytes(3) or 0
    return l2 + l3 // max(1, os.cpu_count() or 1)


def copy_budget() -> int:
    """Byte budget for copied tiles: :func:`per_core_cache_bytes`, clamped to 0.5–4 MiB."""
    return int(min(max(per_core_cache_bytes(), _MIN_COPY), _MAX_COPY))


@dataclass(frozen=True)
class TilingRequest:
    """What one UDF needs from the tiling (built by the UDF layer).

    Attributes
    ----------
    method : {"frame", "tile", "partition", "frame_stack"}
    depth : int or None
        Preferred number of frames per tile.
    total_size : int or None
        Preferred tile size in bytes.
    whole_frames : bool
        The signal must not be split (tiles hold whole frames).
    """

    method: str
    depth: int | None = None
    total_size: int | None = None
    whole_frames: bool = False

    def __post_init__(self):
        if self.method not in ("frame", "tile", "partition", "frame_stack"):
            raise TilingError(f"method: expected 'frame', 'tile', 'partition' or 'frame_stack', "
                              f"got {self.method!r}")
        if self.depth is not None and int(self.depth) < 1:
            raise TilingError(f"depth: expected a positive integer, got {self.depth!r}")
        if self.total_size is not None and int(self.total_size) < 1:
            raise TilingError(f"total_size: expected a positive byte count, got {self.total_size!r}")


@dataclass(frozen=True)
class TilingConstraints:
    """What a data set imposes on tiles.

    Attributes
    ----------
    base_shape : tuple of int
        Signal parts are multiples of this (e.g. whole rows).
    tileshape : tuple of int or None
        A forced ``(depth, *sig_part)``.
    max_depth : int or None
        At most this many frames per tile: what fits into the read buffer of a block I/O
        backend (``None``: no limit).
    """

    base_shape: tuple
    tileshape: tuple | None = None
    max_depth: int | None = None


class TilingScheme:
    """Signal slices plus depth: how every partition of a run is cut into tiles.

    Parameters
    ----------
    slices : sequence of Slice
        Signal-only slices covering the frame without overlap.
    depth : int
        Frames per tile (the last tile of a partition may hold fewer).
    intent : {"frame", "tile", "partition"}
    dataset_shape : Shape
        Shape of the data set (the scheme's signal part must match).

    Examples
    --------
    >>> from udfkit.common import Shape
    >>> s = TilingScheme.make(sig_shape=(8, 8), tile_sig=(4, 8), depth=2, intent="tile")
    >>> len(s), s.shape
    (2, (2, 4, 8))
    >>> [sl.origin for sl in s]
    [(0, 0), (4, 0)]
    """

    __slots__ = ("slices", "depth", "intent", "sig_shape")

    def __init__(self, slices: Iterable[Slice], depth: int, intent: str,
                 sig_shape: Iterable[int]):
        self.slices = tuple(slices)
        self.depth = int(depth)
        self.intent = intent
        self.sig_shape = tuple(sig_shape)

    @classmethod
    def make(cls, sig_shape: Iterable[int], tile_sig: Iterable[int], depth: int,
             intent: str) -> TilingScheme:
        """Build a scheme from a signal tile shape (grid over the frame)."""
        sig_shape = tuple(sig_shape)
        full = Slice((0,) * len(sig_shape), Shape(sig_shape, sig_dims=len(sig_shape)))
        return cls(full.subslices(tuple(tile_sig)), depth, intent, sig_shape)

    @property
    def shape(self) -> tuple:
        """``(depth, *sig_part)`` of a full tile."""
        return (self.depth,) + self.slices[0].shape.to_tuple()

    def __len__(self):
        return len(self.slices)

    def __iter__(self):
        return iter(self.slices)

    def __getitem__(self, i):
        return self.slices[i]

    def __eq__(self, other):
        if not isinstance(other, TilingScheme):
            return NotImplemented
        return (self.slices, self.depth, self.intent) == (other.slices, other.depth, other.intent)

    def __reduce__(self):
        return (TilingScheme, (self.slices, self.depth, self.intent, self.sig_shape))

    def __repr__(self):
        return f"TilingScheme(shape={self.shape}, slices={len(self.slices)}, intent={self.intent!r})"


class Negotiator:
    """Choose the :class:`TilingScheme` for a run (rules in the module docstring).

    Parameters
    ----------
    copy_size : int or str, optional
        Budget for copied tiles; default :func:`copy_budget`.
    zero_copy_size : int or str, optional
        Budget for zero-copy tiles; default :data:`ZERO_COPY_BUDGET`.
    """

    def __init__(self, copy_size: int | str | None = None, zero_copy_size: int | str | None = None):
        self.copy_size = parse_size(copy_size) if copy_size is not None else copy_budget()
        self.zero_copy_size = (parse_size(zero_copy_size) if zero_copy_size is not None
                               else ZERO_COPY_BUDGET)

    def get_scheme(self, requests: Sequence[TilingRequest], *, sig_shape: tuple[int, ...],
                   dtype: DTypeLike, max_partition_frames: int,
                   constraints: TilingConstraints | None = None,
                   zero_copy: bool = False) -> TilingScheme:
        """Return the scheme for UDFs with these ``requests`` on a data set.

        Parameters
        ----------
        requests : list of TilingRequest
        sig_shape : tuple of int
        dtype : dtype
            What the UDFs receive (the budget counts bytes of this dtype).
        max_partition_frames : int
        constraints : TilingConstraints, optional
        zero_copy : bool
            Whether tiles will be views of the stored bytes.
        """
        return self.negotiate(requests, sig_shape=sig_shape, dtype=dtype,
                              max_partition_frames=max_partition_frames,
                              constraints=constraints, zero_copy=zero_copy)[0]

    def negotiate(self, requests: Sequence[TilingRequest], *, sig_shape: tuple[int, ...],
                  dtype: DTypeLike, max_partition_frames: int,
                  constraints: TilingConstraints | None = None,
                  zero_copy: bool = False) -> tuple[TilingScheme, str]:
        """Like :meth:`get_scheme`, and say which rule decided: ``(scheme, reason)``.

        The reason is one sentence naming the rule of the module docstring that fixed the
        tile shape (a run plan shows it); it is produced by the branch that made the choice,
        so it cannot drift from the rules.

        Examples
        --------
        >>> scheme, why = Negotiator(copy_size="1MiB").negotiate(
        ...     [TilingRequest("tile")], sig_shape=(256, 256), dtype="float32",
        ...     max_partition_frames=100)
        >>> scheme.shape
        (4, 256, 256)
        >>> print(why)  # doctest: +NORMALIZE_WHITESPACE
        copied tiles (conversion, byte swap or ROI gaps) sized for the cache: 4 whole frames
        of float32 fit the 1.0 MiB budget (rule 4)
        """
        requests = list(requests)
        if not requests:
            raise TilingError("no UDFs to negotiate a tiling for")
        sig_shape = tuple(int(x) for x in sig_shape)
        if constraints is None:
            constraints = TilingConstraints(base_shape=(1,) * (len(sig_shape) - 1) + (sig_shape[-1],))
        max_depth = max(1, int(max_partition_frames))
        capped_by = "the largest partition"
        if constraints.max_depth is not None and int(constraints.max_depth) < max_depth:
            max_depth = max(1, int(constraints.max_depth))
            capped_by = "the I/O backend's read buffer"
        methods = {r.method for r in requests}

        if "partition" in methods:
            return (TilingScheme.make(sig_shape, sig_shape, max_depth, "partition"),
                    f"a UDF processes whole partitions: whole frames, {max_depth} deep "
                    f"(capped by {capped_by}) (rule 1)")
        intent = ("frame" if "frame" in methods
                  else "frame_stack" if "frame_stack" in methods else "tile")
        whole = intent != "tile" or any(r.whole_frames for r in requests)
        why_whole = ("a UDF processes single frames" if intent == "frame"
                     else "a UDF processes stacks of whole frames" if intent == "frame_stack"
                     else "a UDF (or the corrections) needs whole frames")

        if constraints.tileshape is not None:
            depth = min(int(constraints.tileshape[0]), max_depth)
            tile_sig = tuple(constraints.tileshape[1:])
            if len(tile_sig) != len(sig_shape):
                raise TilingError(f"tileshape {constraints.tileshape} does not match sig_shape {sig_shape}")
            widened = ""
            if whole:
                tile_sig = sig_shape
                widened = f", widened to whole frames because {why_whole}"
            tile_sig = tuple(min(t, s) for t, s in zip(tile_sig, sig_shape))
            return (TilingScheme.make(sig_shape, tile_sig, depth, intent),
                    f"the data set forces the tile shape {tuple(constraints.tileshape)}"
                    f"{widened} (rule 3)")

        itemsize = np.dtype(dtype).itemsize
        budget = self.zero_copy_size if zero_copy else self.copy_size
        if zero_copy:
            budget_why = "zero-copy tiles (views of the file), capped"
        else:
            budget_why = "copied tiles (conversion, byte swap or ROI gaps) sized for the cache"
        sizes = [r.total_size for r in requests if r.total_size is not None]
        if sizes:
            budget = min(sizes)
            budget_why = "a UDF asks for tiles of total_size"
        elif intent == "frame_stack" and not zero_copy:
            budget = max(1, budget // STACK_TEMPORARIES)
            budget_why += (f", a {STACK_TEMPORARIES}th of it for frame stacks (their "
                           "vectorised per-frame work makes stack-sized temporaries)")
        budget_items = max(1, budget // itemsize)
        frame_items = prod(sig_shape)
        depths = [r.depth for r in requests if r.depth is not None]
        budget_text = f"{_human(budget)} budget"

        if depths:
            depth = min(min(depths), max_depth)
            depth_why = f"a UDF asks for depth {min(depths)}" + (
                f", capped by {capped_by}" if depth < min(depths) else "") + " (rule 5)"
        else:
            depth = min(max(1, budget_items // frame_items), max_depth)
            depth_why = None
            if depth < max(1, budget_items // frame_items):
                depth_why = f"capped at {depth} frames by {capped_by} (rule 7)"

        if whole or depth * frame_items <= budget_items:
            scheme = TilingScheme.make(sig_shape, sig_shape, depth, intent)
            if whole and depth * frame_items > budget_items:
                why = f"whole frames because {why_whole} (rule 2)"
            elif depth_why is None:
                why = (f"{budget_why}: {depth} whole frame{'s' if depth > 1 else ''} of "
                       f"{np.dtype(dtype).name} fit the {budget_text} (rule 4)")
            else:
                why = f"{budget_why}: whole frames within the {budget_text}"
            if depth_why is not None:
                why += f"; depth: {depth_why}"
            elif whole and "rule 2" not in why and intent != "tile":
                why += f"; whole frames because {why_whole} (rule 2)"
            return scheme, why
        tile_sig = _grow_sig_part(sig_shape, constraints.base_shape, max(1, budget_items // depth))
        why = (f"{budget_why}: a whole frame of {np.dtype(dtype).name} exceeds the {budget_text}, "
               f"so the signal is split into parts of {tile_sig} (multiples of the base shape "
               f"{tuple(constraints.base_shape)}) (rule 6)")
        if depth_why is not None:
            why += f"; depth: {depth_why}"
        return TilingScheme.make(sig_shape, tile_sig, depth, intent), why


def _human(n: float) -> str:
    """``1048576`` → ``'1.0 MiB'`` (for reasons; io cannot import the CLI's formatter)."""
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n} B" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n} B"  # pragma: no cover


def _grow_sig_part(sig_shape, base_shape, budget_items: int) -> tuple:
    """Largest signal part (multiples of ``base_shape``, filled from the last axis) within budget."""
    base = tuple(min(int(b), s) for b, s in zip(base_shape, sig_shape))
    part = list(base)
    for ax in reversed(range(len(sig_shape))):
        inner = prod(part[ax + 1:])
        fits = budget_items // inner
        n = max(base[ax], (fits // base[ax]) * base[ax])
        part[ax] = min(sig_shape[ax], n)
        if part[ax] < sig_shape[ax]:
            break
    return tuple(part)
