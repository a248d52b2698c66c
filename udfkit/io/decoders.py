"""Frame decoders: stored bytes that are not yet frames (bit-packed, shuffled) become frames.

Most file formats store frames as plain C-order arrays, which the tile generator reads in
place (views) or converts in one pass. Some detectors store frames in a layout that must be
*decoded* first: bit-packed counters, pixels shuffled inside machine words, several chips
interleaved row by row (Quantum Detectors' "raw" MIB layout). For those a file-based data
set describes the *stored records* with its :class:`~udfkit.io.layout.FileSet` (``uint8``,
one record of ``stored_frame_bytes`` per frame) and hands a :class:`FrameDecoder` to its
partitions. The read planner and the I/O backends move the records exactly as they move
plain frames (same runs, same buffers, same size checks); then, per block of ``depth``
frames, the decoder turns the records into whole frames in one pass, straight into the dtype
the UDF asked for where the decoder can write it, and tiles are views of that buffer.

Rules for a decoder
-------------------
* It is small and picklable (it travels with every partition) and stateless between calls.
* :meth:`FrameDecoder.decode` fills *whole frames*: tiles that cut the signal are views of
  the decoded block, so a block is decoded once, whatever the tiling scheme.
* ``dtype`` is the data set's dtype (native byte order): what a UDF that asks for the native
  dtype gets, and what ``DataSet.dtype`` reports.
"""

from __future__ import annotations

from abc import ABC, abstractmethod

import numpy as np

__all__ = ["FrameDecoder"]


class FrameDecoder(ABC):
    """Decodes the stored records of whole frames (see the module docstring).

    Attributes
    ----------
    dtype : numpy.dtype
        The decoded dtype, native byte order.
    frame_items : int
        Elements of one decoded frame.
    stored_frame_bytes : int
        Bytes of one stored record (without per-frame headers).

    Examples
    --------
    A decoder for frames stored as 4-bit nibbles, two pixels per byte (low nibble first):

    >>> class Nibbles(FrameDecoder):
    ...     dtype = np.dtype("uint8")
    ...     def __init__(self, items):
    ...         self.frame_items, self.stored_frame_bytes = items, items // 2
    ...     def decode(self, src, offsets, out):
    ...         for k, o in enumerate(offsets):
    ...             b = src[o:o + self.stored_frame_bytes]
    ...             out[k, 0::2] = b & 15
    ...             out[k, 1::2] = b >> 4
    >>> dec = Nibbles(4)
    >>> out = np.zeros((1, 4), np.float32)
    >>> dec.decode(np.array([0x21, 0x43], np.uint8), np.array([0]), out)
    >>> out.tolist()
    [[1.0, 2.0, 3.0, 4.0]]
    """

    dtype: np.dtype
    frame_items: int
    stored_frame_bytes: int

    def supports_output(self, dtype: np.dtype) -> bool:
        """Whether :meth:`decode` can write ``dtype`` directly (else it writes :attr:`dtype`
        and the tile generator converts). The default: native integer and float dtypes
        wide enough for the decoded values, float16 excluded."""
        dtype = np.dtype(dtype)
        if not dtype.isnative or dtype.kind not in "uif" or dtype == np.float16:
            return False
        return np.can_cast(self.dtype, dtype, casting="safe") or dtype.kind == "f"

    @abstractmethod
    def decode(self, src: np.ndarray, offsets: np.ndarray, out: np.ndarray) -> None:
        """Decode frames into ``out``.

        Parameters
        ----------
        src : numpy.ndarray
            Flat ``uint8`` array holding the stored records.
        offsets : numpy.ndarray
            int64 byte offset of each frame's record in ``src``.
        out : numpy.ndarray
            C-contiguous ``(len(offsets), frame_items)``, of :attr:`dtype` or a dtype for
            which :meth:`supports_output` is true; every element must be written.
        """

    def describe(self) -> str:
        """One line for ``udfkit info``."""
        return type(self).__name__
