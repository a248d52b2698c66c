"""Flat, writable targets for kernels that accumulate into sig-buffer views.

Inside ``process_tile`` a sig buffer is seen through the tile's signal slice. For whole
frames and bands of whole rows that view is contiguous and is handed to a kernel as is;
a slice that cuts rows (only when a data set forces such a tile shape) is accumulated in a
scratch array and added back.
"""

from __future__ import annotations

from contextlib import contextmanager

import numpy as np

__all__ = ["flat_target"]


@contextmanager
def flat_target(view: np.ndarray):
    """Yield a flat array whose updates end up in ``view``."""
    if view.flags.c_contiguous:
        yield view.reshape(-1)
        return
    scratch = np.ascontiguousarray(view).reshape(-1)
    yield scratch
    view[...] = scratch.reshape(view.shape)
