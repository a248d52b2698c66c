"""Result buffers: declarations (:class:`BufferWrapper`, also called :class:`BufferSpec`),
auxiliary input (:class:`AuxData`), and the views a UDF sees as ``self.results`` /
``self.params``. The declarations live in :mod:`udfkit.common.buffers` (LiberTEM's module path)
and are re-exported here.

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

from ..common.buffers import (
    KINDS,
    USES,
    ArrayWithMask,
    AuxBufferWrapper,
    AuxData,
    BufferWrapper,
    buffer_shape,
    fill_value,
    reshaped_view,
)
from ..errors import UDFError

__all__ = ["BufferWrapper", "BufferSpec", "AuxData", "AuxBufferWrapper", "ArrayWithMask",
           "Namespace", "BufferNamespace", "UDFData", "KINDS", "USES", "buffer_shape", "fill_value",
           "reshaped_view"]

#: udfkit's earlier name of :class:`~udfkit.common.buffers.BufferWrapper`
BufferSpec = BufferWrapper


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


class BufferNamespace(Namespace):
    """The buffers of a UDF: ``self.results`` and the ``dest`` / ``src`` of ``merge``.

    Assigning to a name writes into the buffer, as in LiberTEM: ``dest.x = value`` is
    ``dest.x[...] = value`` (rebinding the name would silently drop the result).
    ``get_buffer(name)`` returns the buffer's :class:`BufferWrapper` bound to the array.

    Parameters
    ----------
    mapping : dict
        ``{name: ndarray}``.
    specs : dict, optional
        ``{name: BufferWrapper}`` declarations, for :meth:`get_buffer`.

    Examples
    --------
    >>> import numpy as np
    >>> ns = BufferNamespace({"x": np.zeros(3)})
    >>> ns.x = 2.0
    >>> ns.x += 1
    >>> ns.x
    array([3., 3., 3.])
    >>> ns.y = 1
    Traceback (most recent call last):
    ...
    AttributeError: no buffer named 'y' to assign to; have ['x'] (declare it in get_result_buffers)
    """

    def __init__(self, mapping=None, specs=None):
        super().__init__(mapping)
        object.__setattr__(self, "_specs", specs or {})

    def __setattr__(self, name, value):
        try:
            arr = self.__dict__[name]
        except KeyError:
            raise AttributeError(f"no buffer named {name!r} to assign to; have "
                                 f"{sorted(self)} (declare it in get_result_buffers)") from None
        if value is not arr:
            arr[...] = value

    __setitem__ = __setattr__

    def __iter__(self):
        return (k for k in self.__dict__ if k != "_specs")

    def __contains__(self, name):
        return name != "_specs" and name in self.__dict__

    def __len__(self):
        return len(self.__dict__) - 1

    def __getitem__(self, name):
        if name == "_specs":
            raise KeyError(name)
        return super().__getitem__(name)

    def keys(self):
        """The buffer names."""
        return list(self)

    def items(self):
        """``(name, array)`` pairs."""
        return [(k, self.__dict__[k]) for k in self]

    def get_buffer(self, name) -> BufferWrapper:
        """The :class:`BufferWrapper` of buffer ``name``, bound to its current array."""
        arr = self[name]
        spec = self._specs.get(name)
        if spec is None:
            spec = BufferWrapper(kind="single", extra_shape=arr.shape, dtype=arr.dtype)
        return spec.bound_to(arr)

    def __repr__(self):
        return f"BufferNamespace({', '.join(sorted(self))})"


#: LiberTEM's name of the buffer container
UDFData = BufferNamespace


def check_buffer_name(name, where: str) -> None:
    """Buffer names are attribute names: identifiers, no leading underscore, no keyword."""
    if not isinstance(name, str) or not name.isidentifier() or keyword.iskeyword(name) \
            or name.startswith("_"):
        raise UDFError(f"{where}: buffer name {name!r} is not usable as an attribute name "
                       "(use a Python identifier without a leading underscore)")
