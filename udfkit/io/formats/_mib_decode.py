"""Decoding and encoding Quantum Detectors' bit-packed "raw" MIB layout (pixel type ``R64``).

What the layout is
------------------
In the raw layout the Merlin readout writes each chip's counters as they leave the chip:
a stream of **64-bit big-endian words**, each holding ``64 / b`` pixels of ``b`` bits,
pixel ``j`` of a word in bits ``j*b .. j*b + b - 1`` counted from the least significant
bit. ``b`` is 1 for 1-bit counters, 8 for 6-bit counters (padded to a byte), 16 for 12-bit
counters; a 24-bit frame is two 12-bit frames one after the other, the first holding the
upper 12 bits (value = ``first << 12 + second``). In memory order that means:

* 1 bit: pixel ``x`` is bit ``x % 8`` of byte ``7 - (x % 64) // 8`` of its word;
* 6 bit: the 8 bytes of a word are the pixels in reverse order;
* 12 bit: the 4 big-endian 16-bit values of a word are the pixels in reverse order.

A single chip's rows follow each other (each row whole words). A 2×2 quad stores a *raw
row* ``r`` (of ``H/2``) as the rows of the four chips side by side, ``[4 | 3 | 2 | 1]``:
chip 1 (top left) and chip 2 (top right) give row ``r`` of the frame; chips 3 (bottom left)
and 4 (bottom right) are mounted rotated by 180°, so their raw row ``r`` is frame row
``H - 1 - r`` read right to left. (Facts as LiberTEM 0.16 reads them.)

The decoder describes a layout as *blocks*: per sub-frame and raw row, ``n_blocks`` chip
rows of ``block_px`` pixels, each with where its first pixel lands in the frame and the
direction of its rows and columns. A numba kernel walks the records once, a 64-bit word at a
time, and writes the frame in the dtype the UDF asked for (no intermediate buffer).

The encoder (:func:`encode_raw`) is plain numpy, written from the description above rather
than from the kernels, so that a round trip checks one against the other; udfkit uses it to
write test and example files.
"""

from __future__ import annotations

import numba
import numpy as np

from ..decoders import FrameDecoder

__all__ = ["RawMIBDecoder", "encode_raw", "BITS_STORED", "decode_bytes_per_second"]

#: counter depth -> bits each pixel takes in the raw stream
BITS_STORED = {1: 1, 6: 8, 12: 16, 24: 16}


_U = np.uint64


@numba.njit(cache=True, nogil=True, inline="always")
def _bswap(v):
    """Byte swap of a 64-bit word (LLVM emits one ``bswap``): the stored words are big-endian."""
    return ((v >> _U(56)) | ((v >> _U(40)) & _U(0xFF00)) | ((v >> _U(24)) & _U(0xFF0000))
            | ((v >> _U(8)) & _U(0xFF000000)) | ((v << _U(8)) & _U(0xFF00000000))
            | ((v << _U(24)) & _U(0xFF0000000000)) | ((v << _U(40)) & _U(0xFF000000000000))
            | (v << _U(56)))


# The kernels read whole 64-bit words (``src`` viewed as uint64) and write each chip row into a
# contiguous slice of the frame: left to right with a plain index, right to left (the rotated
# chips of a quad) with an *unsigned* index from the end, so that numba needs no wraparound
# check and LLVM vectorizes both. A runtime direction or mode inside the inner loop, byte-wise
# loads, or a detour through a scratch row cost 2-5 times the time.


@numba.njit(cache=True, nogil=True, boundscheck=False)
def _decode1(src, offsets, out, sub_words, row_words, block_words, n_sub, n_rows, n_blocks,
             y0, ystep, x0, xstep, width):
    block_px = block_words * 64
    for i in range(offsets.shape[0]):
        o = out[i]
        for r in range(n_rows):
            base_r = offsets[i] + r * row_words
            for c in range(n_blocks):
                b = base_r + c * block_words
                y = y0[c] + ystep[c] * r
                if xstep[c] > 0:
                    first = y * width + x0[c]
                    row = o[first:first + block_px]
                    for w in range(block_words):
                        v = _bswap(src[b + w])
                        seg = row[64 * w:64 * w + 64]
                        for j in range(64):
                            seg[j] = (v >> _U(j)) & _U(1)
                else:
                    first = y * width + x0[c] - block_px + 1
                    row = o[first:first + block_px]
                    last = _U(block_px - 1)
                    for w in range(block_words):
                        v = _bswap(src[b + w])
                        for j in range(64):
                            row[last - _U(64 * w + j)] = (v >> _U(j)) & _U(1)


@numba.njit(cache=True, nogil=True, boundscheck=False)
def _decode8(src, offsets, out, sub_words, row_words, block_words, n_sub, n_rows, n_blocks,
             y0, ystep, x0, xstep, width):
    block_px = block_words * 8
    for i in range(offsets.shape[0]):
        o = out[i]
        for r in range(n_rows):
            base_r = offsets[i] + r * row_words
            for c in range(n_blocks):
                b = base_r + c * block_words
                y = y0[c] + ystep[c] * r
                if xstep[c] > 0:
                    first = y * width + x0[c]
                    row = o[first:first + block_px]
                    for w in range(block_words):
                        v = _bswap(src[b + w])
                        for j in range(8):
                            row[8 * w + j] = (v >> _U(8 * j)) & _U(0xFF)
                else:
                    first = y * width + x0[c] - block_px + 1
                    row = o[first:first + block_px]
                    last = _U(block_px - 1)
                    for w in range(block_words):
                        v = _bswap(src[b + w])
                        for j in range(8):
                            row[last - _U(8 * w + j)] = (v >> _U(8 * j)) & _U(0xFF)


@numba.njit(cache=True, nogil=True, inline="always")
def _row16(src, b, row, block_words, forward, shift):
    last = _U(row.shape[0] - 1)
    if forward:
        for w in range(block_words):
            v = _bswap(src[b + w])
            for j in range(4):
                row[4 * w + j] = ((v >> _U(16 * j)) & _U(0xFFFF)) << shift
    else:
        for w in range(block_words):
            v = _bswap(src[b + w])
            for j in range(4):
                row[last - _U(4 * w + j)] = ((v >> _U(16 * j)) & _U(0xFFFF)) << shift


@numba.njit(cache=True, nogil=True, inline="always")
def _row16_add(src, b, row, block_words, forward):
    last = _U(row.shape[0] - 1)
    if forward:
        for w in range(block_words):
            v = _bswap(src[b + w])
            for j in range(4):
                row[4 * w + j] += (v >> _U(16 * j)) & _U(0xFFFF)
    else:
        for w in range(block_words):
            v = _bswap(src[b + w])
            for j in range(4):
                row[last - _U(4 * w + j)] += (v >> _U(16 * j)) & _U(0xFFFF)


@numba.njit(cache=True, nogil=True, boundscheck=False)
def _decode16(src, offsets, out, sub_words, row_words, block_words, n_sub, n_rows, n_blocks,
              y0, ystep, x0, xstep, width):
    block_px = block_words * 4
    for i in range(offsets.shape[0]):
        o = out[i]
        for s in range(n_sub):
            base_s = offsets[i] + s * sub_words
            for r in range(n_rows):
                base_r = base_s + r * row_words
                for c in range(n_blocks):
                    b = base_r + c * block_words
                    y = y0[c] + ystep[c] * r
                    forward = xstep[c] > 0
                    first = y * width + (x0[c] if forward else x0[c] - block_px + 1)
                    row = o[first:first + block_px]
                    # 24 bit: the first sub-frame holds the upper 12 bits, the second is added
                    if n_sub == 1:
                        _row16(src, b, row, block_words, forward, _U(0))
                    elif s == 0:
                        _row16(src, b, row, block_words, forward, _U(12))
                    else:
                        _row16_add(src, b, row, block_words, forward)


_KERNELS = {1: _decode1, 8: _decode8, 16: _decode16}


class RawMIBDecoder(FrameDecoder):
    """Decodes raw (``R64``) MIB records of one chip or a 2×2 quad into frames.

    Parameters
    ----------
    depth : int
        Counter depth: 1, 6, 12 or 24.
    frame_shape : tuple of int
        ``(height, width)`` of the decoded frame.
    quad : bool
        A 2×2 quad (four chips of ``height/2 × width/2``) instead of one chip.

    Examples
    --------
    >>> frames = np.arange(2 * 4 * 128, dtype=np.uint16).reshape(2, 4, 128) % 4096
    >>> stored = encode_raw(frames, depth=12)
    >>> dec = RawMIBDecoder(12, (4, 128))
    >>> out = np.zeros((2, 4 * 128), np.float32)
    >>> dec.decode(stored.reshape(-1), np.arange(2) * dec.stored_frame_bytes, out)
    >>> bool((out.reshape(frames.shape) == frames).all())
    True
    """

    def __init__(self, depth: int, frame_shape, quad: bool = False):
        self.depth = int(depth)
        self.frame_shape = tuple(int(n) for n in frame_shape)
        self.quad = bool(quad)
        self.dtype = np.dtype({1: "uint8", 6: "uint8", 12: "uint16", 24: "uint32"}[self.depth])
        h, w = self.frame_shape
        bits = BITS_STORED[self.depth]
        self.frame_items = h * w
        self.n_sub = 2 if self.depth == 24 else 1
        if self.quad:
            self.n_rows, self.n_blocks, self.block_px = h // 2, 4, w // 2
            # raw row r = [chip 4 | chip 3 | chip 2 | chip 1]; chips 3 and 4 rotated by 180°
            self.y0 = np.array([h - 1, h - 1, 0, 0], np.int64)
            self.ystep = np.array([-1, -1, 1, 1], np.int64)
            self.x0 = np.array([w - 1, w // 2 - 1, w // 2, 0], np.int64)
            self.xstep = np.array([-1, -1, 1, 1], np.int64)
        else:
            self.n_rows, self.n_blocks, self.block_px = h, 1, w
            self.y0 = np.zeros(1, np.int64)
            self.ystep = np.ones(1, np.int64)
            self.x0 = np.zeros(1, np.int64)
            self.xstep = np.ones(1, np.int64)
        self.bits = bits
        self.block_bytes = self.block_px * bits // 8
        self.row_bytes = self.block_bytes * self.n_blocks
        self.sub_bytes = self.row_bytes * self.n_rows
        self.stored_frame_bytes = self.sub_bytes * self.n_sub

    @staticmethod
    def check_shape(depth: int, frame_shape, quad: bool) -> str | None:
        """Why the layout cannot hold frames of ``frame_shape`` (``None``: it can)."""
        h, w = frame_shape
        if quad and (h % 2 or w % 2):
            return f"a 2x2 quad frame needs an even height and width, got {h}x{w}"
        chip_w = w // 2 if quad else w
        per_word = 64 // BITS_STORED[depth]
        if chip_w % per_word:
            return (f"a chip row of {chip_w} pixels is not a whole number of 64-bit words of "
                    f"{per_word} pixels ({depth}-bit counters)")
        return None

    def decode(self, src, offsets, out):
        offsets = np.ascontiguousarray(offsets, dtype=np.int64)
        shift = int(offsets[0]) % 8 if offsets.size else 0
        if offsets.size and np.any(offsets % 8 != shift):
            # records at different offsets modulo 8 (odd frame headers): gather them first
            src = np.concatenate([src[o:o + self.stored_frame_bytes] for o in offsets])
            offsets = np.arange(len(offsets), dtype=np.int64) * self.stored_frame_bytes
            shift = 0
        words = src[shift:shift + (src.size - shift) // 8 * 8].view(np.uint64)
        _KERNELS[self.bits](words, (offsets - shift) // 8, out, self.sub_bytes // 8,
                            self.row_bytes // 8, self.block_bytes // 8, self.n_sub, self.n_rows,
                            self.n_blocks, self.y0, self.ystep, self.x0, self.xstep,
                            self.frame_shape[1])

    def describe(self) -> str:
        what = "2x2 quad" if self.quad else "single chip"
        return (f"raw {self.depth}-bit {what}: 64-bit big-endian words of {64 // self.bits} "
                f"pixels, decoded by numba into the requested dtype")

    def __eq__(self, other):
        return (type(other) is type(self) and (other.depth, other.frame_shape, other.quad)
                == (self.depth, self.frame_shape, self.quad))

    def __hash__(self):
        return hash((self.depth, self.frame_shape, self.quad))

    def __reduce__(self):
        return (RawMIBDecoder, (self.depth, self.frame_shape, self.quad))

    def __repr__(self):
        return f"RawMIBDecoder(depth={self.depth}, frame_shape={self.frame_shape}, quad={self.quad})"


def _encode_stream(px: np.ndarray, bits: int) -> np.ndarray:
    """``(rows, n)`` pixels -> ``(rows, n * bits // 8)`` bytes of 64-bit big-endian words."""
    rows, n = px.shape
    if bits == 1:
        # groups of 8 pixels become a byte, lowest pixel in the lowest bit; the 8 bytes of a
        # word are stored most significant first
        groups = np.packbits(px.astype(np.uint8).reshape(rows, n // 8, 8), axis=-1,
                             bitorder="little").reshape(rows, n // 64, 8)
        return groups[:, :, ::-1].reshape(rows, n // 8)
    if bits == 8:
        return px.astype(np.uint8).reshape(rows, n // 8, 8)[:, :, ::-1].reshape(rows, n)
    be = px.astype(">u2").reshape(rows, n // 4, 4)[:, :, ::-1]
    return np.ascontiguousarray(be).view(np.uint8).reshape(rows, n * 2)


def encode_raw(frames, depth: int, quad: bool = False) -> np.ndarray:
    """Encode frames ``(n, height, width)`` into raw MIB records ``(n, stored bytes)``, uint8.

    Values must fit into ``depth`` bits (they are masked, as a counter would wrap).

    Examples
    --------
    >>> rec = encode_raw(np.eye(1, 64, 0, dtype=np.uint8)[None], depth=1)
    >>> rec.tolist()   # pixel 0 is the lowest bit of the last byte of the word
    [[0, 0, 0, 0, 0, 0, 0, 1]]
    """
    frames = np.asarray(frames)
    if frames.ndim != 3:
        raise ValueError(f"frames: expected shape (n, height, width), got {frames.shape}")
    n, h, w = frames.shape
    bits = BITS_STORED[depth]
    problem = RawMIBDecoder.check_shape(depth, (h, w), quad)
    if problem:
        raise ValueError(problem)
    values = frames.astype(np.uint32) & np.uint32((1 << depth) - 1)
    subs = [values >> 12, values & 0xFFF] if depth == 24 else [values]
    out = []
    for sub in subs:
        if quad:
            # the bottom half rotated by 180°: its left half is chip 4 (the frame's bottom
            # right), its right half chip 3; a raw row is [4 | 3 | 2 | 1]
            top, rotated = sub[:, : h // 2], sub[:, h // 2:][:, ::-1, ::-1]
            chips = [rotated[:, :, : w // 2], rotated[:, :, w // 2:], top[:, :, w // 2:],
                     top[:, :, : w // 2]]
            enc = [_encode_stream(c.reshape(n * (h // 2), w // 2), bits).reshape(n, h // 2, -1)
                   for c in chips]
            out.append(np.concatenate(enc, axis=2).reshape(n, -1))
        else:
            out.append(_encode_stream(sub.reshape(n, h * w), bits))
    return np.ascontiguousarray(np.concatenate(out, axis=1))


def decode_bytes_per_second(depth: int = 1, quad: bool = True, frames: int = 64,
                            dtype="float32") -> float:
    """Single-thread throughput of the decode kernel, in *stored* bytes per second (for the
    benchmark: the bound of a bit-packed read on one core)."""
    import time

    shape = (512, 512) if quad else (256, 256)
    rng = np.random.default_rng(0)
    data = rng.integers(0, 1 << min(depth, 12), size=(frames,) + shape)
    rec = encode_raw(data, depth, quad)
    dec = RawMIBDecoder(depth, shape, quad)
    out = np.empty((frames, shape[0] * shape[1]), dtype)
    offsets = np.arange(frames, dtype=np.int64) * dec.stored_frame_bytes
    flat = rec.reshape(-1)
    dec.decode(flat, offsets, out)  # compile
    best = float("inf")
    for _ in range(5):
        t0 = time.perf_counter()
        dec.decode(flat, offsets, out)
        best = min(best, time.perf_counter() - t0)
    return flat.nbytes / best
