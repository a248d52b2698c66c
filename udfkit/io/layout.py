"""Where the frames of a file-based data set are: :class:`FileLayout`."""

from __future__ import annotations

from dataclasses import dataclass
from math import prod

import numpy as np

__all__ = ["FileLayout"]


@dataclass(frozen=True)
class FileLayout:
    """A file holding C-order frames back to back after a header.

    Attributes
    ----------
    path : str
    header_bytes : int
        Bytes before the first frame.
    dtype : numpy.dtype
        Stored dtype, byte order included.
    sig_shape : tuple of int
    image_count : int
        Whole frames in the file.
    """

    path: str
    header_bytes: int
    dtype: np.dtype
    sig_shape: tuple
    image_count: int

    @property
    def frame_items(self) -> int:
        return prod(self.sig_shape)

    @property
    def frame_bytes(self) -> int:
        return self.frame_items * np.dtype(self.dtype).itemsize
