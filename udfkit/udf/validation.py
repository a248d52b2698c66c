"""Checks of a UDF against the contract, on the main process, before any data is read.

Each check raises a :class:`~udfkit.errors.UDFError` that names the UDF class and says
what was expected and what was found.
"""

from __future__ import annotations

import pickle
import weakref

import numpy as np

from ..common import parse_size
from ..common import udf as _c
from ..errors import UDFError, UDFResultError
from ..io.tiling import ZERO_COPY_BUDGET, TilingRequest
from .base import UDF, _overrides
from .buffers import ArrayWithMask, AuxData, BufferSpec, buffer_shape, check_buffer_name

__all__ = ["check_udf", "check_buffers", "check_results", "check_backends", "choose_backends",
           "tiling_request", "preferred_dtype"]

METHODS = ("tile", "frame", "partition", "frame_stack")


def _name(udf) -> str:
    return type(udf).__name__


def check_udf(udf) -> str:
    """Check class, process method and picklability; return the method name."""
    if not isinstance(udf, UDF):
        raise UDFError(f"expected a UDF instance, got {type(udf).__name__}: {udf!r}")
    where = _name(udf)
    if not hasattr(udf, "_kwargs") or not hasattr(udf, "params"):
        raise UDFError(f"{where}.__init__ did not call super().__init__(**kwargs); the UDF is "
                       "rebuilt on every worker from the keyword arguments given to UDF.__init__")
    implemented = [m for m in METHODS if _overrides(type(udf), f"process_{m}")]
    if not implemented:
        raise UDFError(f"{where} has no process method: implement one of process_frame, "
                       "process_tile, process_frame_stack or process_partition")
    method = udf.get_method()
    if method not in METHODS:
        raise UDFError(f"{where}.get_method() returned {method!r}; expected one of {METHODS} "
                       "or a member of UDF.UDF_METHOD")
    # a UDFMethod member equals its string; the run works with the plain string
    name = str(getattr(method, "value", method))
    if name not in implemented:
        raise UDFError(f"{where}.get_method() returned {name!r}, but {where} does not "
                       f"implement process_{name} (it implements {implemented})")
    if name not in ("frame_stack", "partition") and udf.get_halo() is not None:
        raise UDFError(f"{where} declares a halo (get_halo) but runs process_{name}: a halo is "
                       "only delivered with process_frame_stack or process_partition")
    check_picklable(udf)
    try:
        type(udf)(**udf._kwargs)
    except Exception as e:
        raise UDFError(f"{where} cannot be rebuilt as {where}(**kwargs) from the keyword arguments "
                       f"it passed to UDF.__init__ ({sorted(udf._kwargs)}), which is how every "
                       f"worker creates it: {type(e).__name__}: {e}") from None
    return name


_PICKLABLE_CLASSES: weakref.WeakSet = weakref.WeakSet()


def check_picklable(udf) -> None:
    """The UDF's class and kwargs must survive cloudpickle (they travel to the workers)."""
    import cloudpickle

    cls = type(udf)
    # a class defined in a script is pickled by value, which costs ~0.3 ms: check it once
    payload = udf._kwargs if cls in _PICKLABLE_CLASSES else (cls, udf._kwargs)
    try:
        # protocol 5 with a buffer callback: large arrays are not copied by this check
        cloudpickle.dumps(payload, protocol=5, buffer_callback=lambda b: None)
    except (pickle.PicklingError, TypeError, AttributeError) as e:
        raise UDFError(f"{_name(udf)}: its parameters cannot be pickled, but every worker needs "
                       f"them: {type(e).__name__}: {e}") from None
    except Exception as e:
        raise UDFError(f"{_name(udf)}: its parameters cannot be pickled: {type(e).__name__}: {e}") from None
    _PICKLABLE_CLASSES.add(cls)


def check_backends(udf, allowed=None, native=(_c.BACKEND_NUMPY,)) -> str:
    """The array backend ``udf`` runs with, alone in a run; see :func:`choose_backends`."""
    return choose_backends([udf], allowed=allowed, native=native)[0]


def choose_backends(udfs, allowed=None, native=(_c.BACKEND_NUMPY,)) -> list:
    """The array backend each UDF of a run gets its tiles in.

    Rules (LiberTEM's execution plan, with the UDF's own order among forms that cost nothing):

    1. A UDF that lists a backend the data set delivers natively (``native``: numpy for dense
       formats; scipy.sparse CSR and numpy for ``raw_csr``) gets the first such backend *in
       the UDF's order*: SumUDF, which lists CSR before numpy as in LiberTEM, gets CSR row
       blocks from a sparse file and numpy tiles from a dense one.
    2. Any other UDF gets a form it has to be converted to: among the backends it lists that
       are installed, the one listed by most such UDFs of the run (the tile is converted once
       per form and shared), ties in the UDF's order.

    ``allowed`` restricts the backends further (``run_udf(backends=...)``).

    Raises
    ------
    UDFError
        For a backend name that is not one of LiberTEM's (naming the UDF, the name and the
        known ones), or a UDF with no backend udfkit can serve (GPU only, package missing).

    Examples
    --------
    >>> from udfkit.udf import SumUDF
    >>> choose_backends([SumUDF()])
    ['numpy']
    >>> choose_backends([SumUDF()], native=(_c.BACKEND_SCIPY_CSR, _c.BACKEND_NUMPY))
    ['scipy.sparse.csr_matrix']
    """
    available = _c.available_backends()
    if allowed is not None:
        allowed = _c.canonical_backends(allowed)
        bad = [b for b in allowed if b not in _c.BACKENDS]
        if bad:
            raise UDFError(f"backends: unknown backends {bad}; expected UDF.BACKEND_* names: "
                           f"{sorted(_c.BACKENDS)}")
        available = tuple(b for b in available if b in allowed)
    usable = []
    for udf in udfs:
        where = _name(udf)
        backends = _c.canonical_backends(udf.get_backends())
        unknown = [b for b in backends if b not in _c.BACKENDS]
        if unknown:
            raise UDFError(f"{where}.get_backends() returned unknown backends {unknown}; the "
                           "known ones are "
                           f"{sorted(_c.BACKENDS)} (UDF.BACKEND_* names)")
        ok = [b for b in backends if b in available]
        if not ok:
            limit = "" if allowed is None else f" (backends= limits the run to {list(allowed)})"
            raise UDFError(f"{where}.get_backends() returned {list(backends)}, but udfkit runs UDFs "
                           f"on the CPU with {list(available)}{limit}: add UDF.BACKEND_NUMPY "
                           "('numpy') to get_backends() and convert inside the UDF if needed")
        usable.append(ok)
    native = tuple(native)
    chosen = [next((b for b in ok if b in native), None) for ok in usable]
    # forms needing a conversion: the most shared one, so that a tile is converted once for
    # as many UDFs as possible
    votes: dict = {}
    for ok, c in zip(usable, chosen):
        if c is None:
            for b in ok:
                votes[b] = votes.get(b, 0) + 1
    return [c if c is not None else max(ok, key=lambda b: (votes[b], -ok.index(b)))
            for ok, c in zip(usable, chosen)]


def preferred_dtype(udf) -> np.dtype:
    """The UDF's input dtype preference, checked."""
    value = udf.get_preferred_input_dtype()
    try:
        dt = np.dtype(value)
    except TypeError:
        raise UDFError(f"{_name(udf)}.get_preferred_input_dtype() returned {value!r}; "
                       "expected a numpy dtype or UDF.USE_NATIVE_DTYPE") from None
    if dt.kind not in "biufc":
        raise UDFError(f"{_name(udf)}.get_preferred_input_dtype() returned {dt}; expected a numeric dtype")
    return dt


def tiling_request(udf, method: str) -> TilingRequest:
    """The UDF's tiling preferences as a :class:`TilingRequest`."""
    prefs = udf.get_tiling_preferences() or {}
    if not isinstance(prefs, dict):
        raise UDFError(f"{_name(udf)}.get_tiling_preferences() returned {type(prefs).__name__}; "
                       "expected a dict with optional keys 'depth', 'total_size' and 'whole_frames'")
    unknown = set(prefs) - {"depth", "total_size", "whole_frames"}
    if unknown:
        raise UDFError(f"{_name(udf)}.get_tiling_preferences(): unknown keys {sorted(unknown)}; "
                       "expected 'depth', 'total_size' and/or 'whole_frames'")
    depth = prefs.get("depth")
    total = prefs.get("total_size")
    # LiberTEM's markers: "default" leaves the choice to the negotiator, "max" asks for the
    # largest (a depth beyond the partition is capped there, as in LiberTEM)
    if depth is _c.TILE_DEPTH_DEFAULT:
        depth = None
    elif _is_inf(depth):
        depth = _MAX_DEPTH
    if total is _c.TILE_SIZE_BEST_FIT:
        total = None
    elif _is_inf(total):
        total = ZERO_COPY_BUDGET
    where = f"{_name(udf)}.get_tiling_preferences()"
    try:
        depth = None if depth is None else int(depth)
    except (TypeError, ValueError):
        raise UDFError(f"{where}: depth: expected a positive integer, got {depth!r}") from None
    try:
        total = None if total is None else parse_size(total)
    except (TypeError, ValueError) as e:
        raise UDFError(f"{where}: total_size: expected a positive byte count, got {total!r} "
                       f"({e})") from None
    try:
        return TilingRequest(method=method, depth=depth, total_size=total,
                             whole_frames=bool(prefs.get("whole_frames", False)))
    except (TypeError, ValueError) as e:
        # TilingRequest's messages name the field (depth:, total_size:)
        raise UDFError(f"{where}: {e}") from None


#: stands for an unlimited depth: the negotiator caps it at the largest partition
_MAX_DEPTH = 1 << 62


def _is_inf(value) -> bool:
    return isinstance(value, (float, np.floating)) and bool(np.isinf(value)) and bool(value > 0)


def check_buffers(udf, *, sig_placed: bool = False) -> dict:
    """Call ``get_result_buffers`` and check the declarations; return ``{name: BufferSpec}``.

    With ``sig_placed`` (series mode, whose blocks are disjoint parts of the signal) sig
    buffers need no ``merge`` of the UDF's own: the default one places them.
    """
    where = _name(udf)
    specs = udf.get_result_buffers()
    if not isinstance(specs, dict):
        raise UDFError(f"{where}.get_result_buffers() returned {type(specs).__name__}; "
                       "expected a dict {name: self.buffer(...)}")
    if not specs:
        raise UDFError(f"{where}.get_result_buffers() declared no buffer")
    aux_names = {k for k, v in udf._kwargs.items() if isinstance(v, AuxData)}
    for name, spec in specs.items():
        check_buffer_name(name, f"{where}.get_result_buffers()")
        if not isinstance(spec, BufferSpec):
            raise UDFError(f"{where}.get_result_buffers()[{name!r}] is {type(spec).__name__}; "
                           "expected self.buffer(kind=..., dtype=...)")
        if name in aux_names:
            raise UDFError(f"{where}: buffer name {name!r} clashes with the aux_data parameter of "
                           "the same name; rename one of them")
    # private sig/single buffers without a merge stay worker scratch (never shipped back)
    merged = [n for n, s in specs.items() if s.kind != "nav" and s.use is None
              and not (sig_placed and s.kind == "sig")]
    if merged and not _overrides(type(udf), "merge"):
        raise UDFError(f"{where} has {'/'.join(sorted({specs[n].kind for n in merged}))} buffers "
                       f"{merged} but no merge(dest, src); the default merge only handles nav buffers")
    result_only = [n for n, s in specs.items() if s.use == "result_only"]
    if result_only and not _overrides(type(udf), "get_results"):
        raise UDFError(f"{where} declares result_only buffers {result_only} but does not "
                       "implement get_results() to produce them")
    return specs


def check_results(udf, specs: dict, results, n_nav: int, nav_shape, sig_shape, roi=None) -> dict:
    """Check what ``get_results`` returned; return ``{name: (ndarray, mask or None)}`` in
    storage shape, with the public buffers it did not return passed through (LiberTEM's rule).

    Nav results may be returned either with one entry per processed frame or in the full
    nav shape (then only the processed entries are kept). A result keeps the dtype it is
    returned in when that has the declared dtype's kind (as in LiberTEM); one of another kind
    is cast to the declared dtype where numpy casts it safely within a kind
    (``same_kind``), else it is an error. A result wrapped by ``with_mask(data, mask)``
    carries its valid mask.
    """
    where = f"{_name(udf)}.get_results()"
    if not isinstance(results, dict):
        raise UDFResultError(f"{where} returned {type(results).__name__}; expected a dict")
    public = {n for n, s in specs.items() if s.use != "private"}
    undeclared = set(results) - public
    if undeclared:
        private = sorted(undeclared & set(specs))
        extra = f" ({private} are private buffers, which are never returned)" if private else ""
        raise UDFResultError(f"{where} returned {sorted(undeclared)}, which are not declared "
                             f"result buffers{extra}; declared: {sorted(public)}")
    missing = [n for n, s in specs.items() if s.use == "result_only" and n not in results]
    if missing:
        raise UDFResultError(f"{where} did not return its result_only buffers {missing}")
    results = dict(results)
    for name, spec in specs.items():
        if spec.use is None and name not in results:
            results[name] = udf.results[name]
    out = {}
    for name, value in results.items():
        spec = specs[name]
        mask = None
        if isinstance(value, ArrayWithMask):
            mask = value.mask
            value = value.arr
        arr = np.asarray(value)
        want = buffer_shape(spec, n_nav, sig_shape)
        full_nav = tuple(nav_shape) + spec.extra_shape
        flat_nav = (int(np.prod(nav_shape)),) + spec.extra_shape
        if spec.kind == "nav" and arr.shape in (full_nav, flat_nav) and arr.shape != want:
            arr = arr.reshape((-1,) + spec.extra_shape)
            if mask is not None:
                mask = mask.reshape((-1,) + spec.extra_shape)
            if roi is not None:
                flat_roi = roi.reshape(-1)
                arr = arr[flat_roi]
                mask = None if mask is None else mask[flat_roi]
        if arr.shape != want:
            shapes = [want] + ([s for s in (flat_nav, full_nav) if s != want]
                               if spec.kind == "nav" else [])
            raise UDFResultError(f"{where}[{name!r}] has shape {arr.shape}; the {spec.kind} buffer "
                                 f"needs {' or '.join(str(s) for s in shapes)}")
        if arr.dtype.kind != spec.dtype.kind:
            if not np.can_cast(arr.dtype, spec.dtype, casting="same_kind"):
                raise UDFResultError(f"{where}[{name!r}] has dtype {arr.dtype}, which cannot be "
                                     f"stored in the declared dtype {spec.dtype}")
            arr = arr.astype(spec.dtype)
        out[name] = (arr, mask)
    return out
