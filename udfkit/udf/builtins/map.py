"""``MapUDF``: apply a function to every frame (behind ``Context.map``)."""

from __future__ import annotations

import warnings

import numpy as np

from ...errors import UDFError
from ..base import UDF

__all__ = ["MapUDF"]


class MapUDF(UDF):
    """Apply ``f`` to every frame; the result is nav-shaped with ``f``'s output shape as extra shape.

    The output shape and dtype are found by calling ``f`` once on a frame of zeros.

    Parameters
    ----------
    f : callable
        ``f(frame) -> scalar or array``; must be picklable (cloudpickle handles lambdas).

    Examples
    --------
    >>> import numpy as np
    >>> from udfkit import Context
    >>> ctx = Context.make_with("inline")
    >>> ds = ctx.load("memory", data=np.ones((2, 2, 4, 4)))
    >>> ctx.map(dataset=ds, f=lambda frame: frame.sum()).data
    array([[16., 16.],
           [16., 16.]])
    """

    def __init__(self, f=None):
        if not callable(f):
            raise UDFError(f"MapUDF: f must be a callable taking a frame, got {type(f).__name__}")
        super().__init__(f=f)

    def _probe(self):
        sig = self.meta.dataset_shape.sig.to_tuple()
        # a frame of zeros makes ordinary functions divide by zero: that is not the user's bug
        with np.errstate(all="ignore"), warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            return np.asarray(self.params.f(np.zeros(sig, dtype=self.meta.input_dtype)))

    def get_result_buffers(self):
        out = self._probe()
        return {"result": self.buffer(kind="nav", extra_shape=out.shape, dtype=out.dtype)}

    def process_frame(self, frame):
        self.results.result[...] = self.params.f(frame)
