"""Result buffers: declarations (:class:`BufferSpec`), auxiliary input (:class:`AuxData`),
and the views a UDF sees as ``self.results`` / ``self.params``.

Buffer kinds
------------
``nav``     one entry per *processed* frame, shape ``(n, *extra_shape)`` while running (a ROI or
            missing frames make the buffer shorter than the nav axis); results reshape it to
            ``nav_shape + extra_shape``.
``sig``     one entry per signal pixel: ``sig_shape + extra_shape``.
``single``  just ``extra_shape`` (``(1,)`` when empty).

Views
-----
In ``process_frame`` a nav buffer view is the current frame's entry: shape ``extra_shape``, or
``(1,)`` when there is no extra shape, so that ``self.results.x[:] = value`` works. In
``process_tile`` it covers the tile's frames, ``(depth, *extra_shape)``, and sig buffers see only
the tile's signal slice. In ``process_partition`` every view is the whole partition buffer.
"""

from __future__ import annotations

import keyword
from math import prod

import numpy as np

from ..common import normalize_shape
from ..errors import UDFError

__all__ = ["BufferSpec", "AuxData", "Namespace", "KINDS", "USES", "buffer_shape", "fill_value"]

KINDS = ("nav", "sig", "single")
USES = (None, "private", "result_only")


class BufferSpec:
    """Declaration of one result buffer (what ``UDF.buffer(...)`` returns).

    Parameters
    ----------
    kind : {"nav", "sig", "single"}
    extra_shape : tuple of int
    dtype : dtype
    use : {None, "private", "result_only"}
        ``"private"``: worker-side scratch, never merged nor returned. ``"result_only"``: not
        allocated on workers; produced by ``get_results``.
    """

    __slots__ = ("kind", "extra_shape", "dtype", "use")

    def __init__(self, kind="nav", extra_shape=(), dtype="float32", use=None):
        if kind not in KINDS:
            raise UDFError(f"buffer kind: expected one of {KINDS}, got {kind!r}")
        if use not in USES:
            raise UDFError(f"buffer use: expected one of {USES}, got {use!r}")
        if extra_shape is None or extra_shape == ():
            extra_shape = ()
        else:
            # zero-length axes are allowed: e.g. PickUDF with nothing selected
            extra_shape = normalize_shape(extra_shape, "extra_shape", min_dims=0, error=UDFError,
                                          allow_zero=True)
        try:
            dtype = np.dtype(dtype)
        except TypeError:
            raise UDFError(f"buffer dtype: expected a numpy dtype, got {dtype!r}") from None
        self.kind = kind
        self.extra_shape = tuple(extra_shape)
        self.dtype = dtype
        self.use = use

    def __repr__(self):
        return (f"BufferSpec(kind={self.kind!r}, extra_shape={self.extra_shape}, "
                f"dtype={self.dtype}, use={self.use!r})")

    def __reduce__(self):
        return (BufferSpec, (self.kind, self.extra_shape, self.dtype.str, self.use))


def buffer_shape(spec: BufferSpec, n_nav: int, sig_shape) -> tuple:
    """Storage shape of a buffer with ``n_nav`` processed frames."""
    if spec.kind == "nav":
        return (n_nav,) + spec.extra_shape
    if spec.kind == "sig":
        return tuple(sig_shape) + spec.extra_shape
    return spec.extra_shape or (1,)


def fill_value(dtype):
    """What ``.data`` shows outside the processed positions: NaN, 0 or False."""
    dtype = np.dtype(dtype)
    if dtype.kind in "fc":
        return np.nan
    if dtype.kind == "b":
        return False
    return 0


class AuxData:
    """Per-frame auxiliary input for a UDF, sliced like a nav buffer (see ``UDF.aux_data``).

    Parameters
    ----------
    data : array_like
        ``nav_shape + extra_shape`` or flat ``(nav_size, *extra_shape)`` values.
    kind : {"nav"}
    extra_shape : tuple of int
    dtype : dtype
    """

    __slots__ = ("data", "kind", "extra_shape", "dtype")

    def __init__(self, data, kind="nav", extra_shape=(), dtype=None):
        if kind != "nav":
            raise UDFError(f"aux_data kind: only 'nav' auxiliary data is supported, got {kind!r}")
        arr = np.asarray(data)
        self.dtype = np.dtype(dtype) if dtype is not None else arr.dtype
        self.data = np.ascontiguousarray(arr, dtype=self.dtype)
        self.kind = kind
        self.extra_shape = tuple(extra_shape) if extra_shape else ()

    def flat(self, nav_shape, where: str) -> np.ndarray:
        """The values as ``(nav_size, *extra_shape)``; a clear error when the shape is off."""
        nav_shape = tuple(nav_shape)
        nav_size = prod(nav_shape)
        accepted = (nav_shape + self.extra_shape, (nav_size,) + self.extra_shape)
        if self.data.shape not in accepted:
            raise UDFError(f"{where}: aux_data has shape {self.data.shape}; expected "
                           f"{accepted[0]} (nav_shape + extra_shape) or {accepted[1]}")
        return self.data.reshape(accepted[1])

    def __repr__(self):
        return f"AuxData(shape={self.data.shape}, dtype={self.dtype}, extra_shape={self.extra_shape})"


class Namespace:
    """Attribute and item access to named arrays: ``ns.name`` or ``ns["name"]``.

    Used for ``self.results``, ``self.params`` and the ``dest`` / ``src`` of ``merge``.
    """

    def __init__(self, mapping=None):
        if mapping:
            self.__dict__.update(mapping)

    def __getitem__(self, name):
        try:
            return self.__dict__[name]
        except KeyError:
            raise KeyError(f"no buffer or parameter named {name!r}; have {sorted(self.__dict__)}") from None

    def __setitem__(self, name, value):
        self.__dict__[name] = value

    def __getattr__(self, name):
        if name.startswith("__"):
            raise AttributeError(name)
        raise AttributeError(f"no buffer or parameter named {name!r}; have {sorted(self.__dict__)}")

    def __contains__(self, name):
        return name in self.__dict__

    def __iter__(self):
        return iter(self.__dict__)

    def __len__(self):
        return len(self.__dict__)

    def __repr__(self):
        return f"Namespace({', '.join(sorted(self.__dict__))})"


def check_buffer_name(name, where: str) -> None:
    """Buffer names are attribute names: identifiers, no leading underscore, no keyword."""
    if not isinstance(name, str) or not name.isidentifier() or keyword.iskeyword(name) \
            or name.startswith("_"):
        raise UDFError(f"{where}: buffer name {name!r} is not usable as an attribute name "
                       "(use a Python identifier without a leading underscore)")
