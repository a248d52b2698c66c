"""``AutoUDF``: a UDF made from a function of one frame, with its buffer found automatically."""

from __future__ import annotations

import numpy as np

from ...errors import UDFError
from ..base import UDF

__all__ = ["AutoUDF"]


class AutoUDF(UDF):
    """Apply ``f`` to every frame; the nav result ``result`` has ``f``'s output shape and dtype.

    The shape and dtype of ``result`` are found by calling ``f`` once, on a frame of ones of
    the signal shape and input dtype (float32, or wider for wider data), as LiberTEM does.
    :class:`MapUDF` (behind :meth:`Context.map <udfkit.Context.map>`) does the same with a
    frame of zeros.

    Parameters
    ----------
    f : callable
        ``f(frame) -> scalar or array``, the same shape for every frame; must be picklable
        (cloudpickle handles lambdas and closures).
    monitor : bool, optional
        Also return ``monitor`` (a ``single`` result): the value of ``f`` for the last frame
        processed so far, e.g. to watch a live run. Default False.

    Examples
    --------
    >>> import numpy as np
    >>> from udfkit import Context
    >>> from udfkit.udf import AutoUDF
    >>> data = np.arange(2 * 3 * 4 * 4, dtype="uint16").reshape(2, 3, 4, 4)
    >>> ctx = Context.make_with("inline")
    >>> udf = AutoUDF(f=lambda frame: np.array([frame.min(), frame.max()]), monitor=True)
    >>> res = ctx.run_udf(dataset=ctx.load("memory", data=data), udf=udf)
    >>> res["result"].data.shape
    (2, 3, 2)
    >>> res["result"].data[1, 2], res["monitor"].data
    (array([80., 95.], dtype=float32), array([80., 95.], dtype=float32))
    """

    def __init__(self, f=None, monitor=False):
        if not callable(f):
            raise UDFError(f"AutoUDF: f must be a callable taking a frame, got {type(f).__name__}")
        if not isinstance(monitor, (bool, np.bool_)):
            raise UDFError(f"AutoUDF: monitor must be True or False, got {monitor!r}")
        super().__init__(f=f, monitor=bool(monitor))

    def _probe(self) -> np.ndarray:
        frame = np.ones(self.meta.dataset_shape.sig.to_tuple(), dtype=self.meta.input_dtype)
        try:
            out = np.asarray(self.params.f(frame))
        except Exception as e:
            raise UDFError(f"AutoUDF: f failed on a test frame of ones {frame.shape} "
                           f"{frame.dtype} (used to find its output shape): "
                           f"{type(e).__name__}: {e}") from e
        if out.dtype.kind not in "biufc":
            raise UDFError(f"AutoUDF: f must return numbers (a scalar or an array); on a test "
                           f"frame it returned dtype {out.dtype}")
        return out

    def auto_buffer(self, var):
        """The nav buffer for values like ``var``."""
        return self.buffer(kind="nav", extra_shape=var.shape, dtype=var.dtype)

    def auto_monitor_buffer(self, var):
        """The single, result-only buffer for one value like ``var``."""
        return self.buffer(kind="single", extra_shape=var.shape, dtype=var.dtype, use="result_only")

    def get_result_buffers(self):
        out = self._probe()
        buffers = {"result": self.auto_buffer(out)}
        if self.params.monitor:
            buffers["monitor"] = self.auto_monitor_buffer(out)
        return buffers

    def process_frame(self, frame):
        self.results.result[:] = np.asarray(self.params.f(frame))

    def get_results(self):
        result = self.results.result
        out = {"result": result}
        if self.params.monitor:
            shape = result.shape[1:] or (1,)
            if result.shape[0] == 0:
                # nothing processed (an empty ROI): the buffer's initial value, as LiberTEM
                out["monitor"] = np.zeros(shape, dtype=result.dtype)
            else:
                last = _last_valid_row(self.meta, result.shape[0])
                out["monitor"] = np.asarray(result[last]).reshape(shape)
        return out


def _last_valid_row(meta, n_rows: int) -> int:
    """Row of the last frame merged so far (partial results), else the last row."""
    getter = getattr(meta, "get_valid_nav_mask", None)
    if getter is not None:
        valid = getter()
        if valid is not None:
            rows = np.flatnonzero(np.asarray(valid).reshape(-1))
            return int(rows[-1]) if rows.size else 0
    return n_rows - 1
