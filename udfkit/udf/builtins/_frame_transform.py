"""The common shape of the frame-in, frame-out built-ins (filters, subsampling, binning,
projections): one nav buffer ``intensity`` whose extra shape is the output frame's shape.

They take whole frames in stacks (``process_tile`` with ``whole_frames=True``) and compute the
whole stack with one vectorised numpy/scipy call: a filter of size 1 (sigma 0) along the stack
axis is the per-frame filter, so no Python loop runs per frame.
"""

from __future__ import annotations

import numpy as np

from ..base import UDF

__all__ = ["FrameTransformUDF"]

#: frames per stack and bytes per stack: large enough that the per-stack Python and scipy call
#: overhead vanishes, small enough that a stack and its output stay in L2/L3 cache
_TILE_DEPTH = 64
_TILE_BYTES = 4 << 20


class FrameTransformUDF(UDF):
    """Base of the built-ins that turn each frame into an output array (private helper).

    A subclass implements :meth:`output_shape` (from the data set's signal shape),
    :meth:`output_dtype` (from the UDF's input dtype) and :meth:`transform` (a stack
    ``(k, *sig)`` into its ``(k, *output_shape)`` target).
    """

    def output_shape(self, sig_shape: tuple) -> tuple:
        """Shape of one output frame for frames of ``sig_shape``."""
        raise NotImplementedError  # pragma: no cover - abstract

    def output_dtype(self, input_dtype: np.dtype) -> np.dtype:
        """Dtype of the result for frames arriving as ``input_dtype``."""
        raise NotImplementedError  # pragma: no cover - abstract

    def transform(self, stack: np.ndarray, out: np.ndarray) -> None:
        """Write the transform of every frame of ``stack`` into ``out``."""
        raise NotImplementedError  # pragma: no cover - abstract

    def check(self, sig_shape: tuple, dtype: np.dtype) -> None:  # noqa: B027 - optional hook
        """Raise a :class:`~udfkit.errors.UDFParameterError` for parameters that do not fit
        the data set (called before any data is read)."""

    def get_tiling_preferences(self):
        return {"whole_frames": True, "depth": _TILE_DEPTH, "total_size": _TILE_BYTES}

    def get_result_buffers(self):
        sig = self.meta.dataset_shape.sig.to_tuple()
        self.check(sig, self.meta.input_dtype)
        return {"intensity": self.buffer(kind="nav", extra_shape=self.output_shape(sig),
                                         dtype=self.output_dtype(self.meta.input_dtype))}

    def process_tile(self, tile):
        self.transform(tile, self.results.intensity)
