"""Writing Merlin MIB files (for tests, examples and benchmarks; udfkit does not export MIB).

The files follow the layout that :mod:`udfkit.io.formats._mib_header` describes: a header
per frame (384 bytes for one chip, 768 for a quad), the counters big-endian (``U08``,
``U16``, ``U32``) or bit-packed (``R64``, see :mod:`udfkit.io.formats._mib_decode`), and a
``.hdr`` acquisition file.
"""

from __future__ import annotations

import numpy as np

__all__ = ["write_mib", "write_hdr", "frame_header"]

_DECODED_TYPE = {1: ("U08", "u1"), 6: ("U08", "u1"), 12: ("U16", ">u2"), 24: ("U32", ">u4")}
_DACS = ",".join(["3RX"] + ["000"] * 27)


def frame_header(seq: int, shape, *, depth: int, raw: bool = False, quad: bool = False,
                 header_bytes: int | None = None) -> bytes:
    """The header of frame ``seq`` (from 1) of frames of ``shape`` (decoded height, width).

    Examples
    --------
    >>> frame_header(3, (256, 256), depth=12)[:41]
    b'MQ1,000003,00384,01,0256,0256,U16,   1x1,'
    >>> frame_header(1, (512, 512), depth=1, raw=True, quad=True)[:41]
    b'MQ1,000001,00768,04,1024,0256,R64,   2x2,'
    """
    h, w = shape
    chips = 4 if quad else 1
    if header_bytes is None:
        header_bytes = 768 if quad else 384
    if raw:
        pixel_type = "R64"
        if quad:  # raw rows: the four chips side by side, half the height
            h, w = h // 2, w * 2
        if depth == 24:  # two 12-bit frames
            w *= 2
    else:
        pixel_type = _DECODED_TYPE[depth][0]
    text = (f"MQ1,{seq:06d},{header_bytes:05d},{chips:02d},{w:04d},{h:04d},{pixel_type},"
            f"{'2x2' if quad else '1x1':>6},{(1 << chips) - 1:02X},2026-01-01 00:00:00.000000,"
            f"0.001000,0,0,0,{','.join(['0.000000E+0'] * 8)},"
            + ",".join([_DACS] * chips)
            + f",MQ1A,2026-01-01T00:00:00.000000000Z,1000000ns,{depth},")
    raw_text = text.encode("ascii")
    if len(raw_text) > header_bytes:
        raise ValueError(f"a header of {len(raw_text)} bytes does not fit into {header_bytes}")
    return raw_text + b"\0" * (header_bytes - len(raw_text))


def write_mib(path, frames, *, depth: int, raw: bool = False, quad: bool = False,
              first_seq: int = 1) -> None:
    """Write ``frames`` ``(n, height, width)`` as one ``.mib`` file.

    Parameters
    ----------
    path : str
    frames : array-like
        Integer counts that fit into ``depth`` bits.
    depth : int
        Counter depth, 1, 6, 12 or 24.
    raw : bool
        The bit-packed raw layout (``R64``) instead of big-endian integers.
    quad : bool
        A 2×2 quad (four chips) instead of one chip.
    first_seq : int
        Sequence number of the first frame (the next file of a series goes on from there).
    """
    from ._mib_decode import encode_raw

    frames = np.asarray(frames)
    if frames.ndim != 3:
        raise ValueError(f"frames: expected shape (n, height, width), got {frames.shape}")
    if raw:
        records = encode_raw(frames, depth, quad)
    else:
        records = frames.astype(_DECODED_TYPE[depth][1]).reshape(len(frames), -1).view(np.uint8)
    with open(path, "wb") as f:
        for k, rec in enumerate(records):
            f.write(frame_header(first_seq + k, frames.shape[1:], depth=depth, raw=raw, quad=quad))
            f.write(rec.tobytes())


def write_hdr(path, *, frames: int, frames_per_trigger: int, depth: int, quad: bool = False,
              extra: dict | None = None) -> None:
    """Write a ``.hdr`` acquisition file (the fields udfkit and other readers use)."""
    fields = {
        "Time and Date Stamp (day, mnth, yr, hr, min, s)": "01/01/2026 00:00:00",
        "Chip ID": "W000_A1, - , - , - ",
        "Chip Type (Medipix 3.0, Medipix 3.1, Medipix 3RX)": "Medipix 3RX",
        "Assembly Size (NX1, 2X2)": "   2x2" if quad else "   1x1",
        "Chip Mode  (SPM, CSM, CM, CSCM)": "SPM",
        "Counter Depth (number)": str(depth),
        "Frames in Acquisition (Number)": str(frames),
        "Frames per Trigger (Number)": str(frames_per_trigger),
        "Readout System": "Merlin Quad",
        **(extra or {}),
    }
    text = "HDR,\t\n" + "".join(f"{k}:\t{v}\n" for k, v in fields.items()) + "End\t"
    with open(path, "wb") as f:
        f.write(text.encode("latin-1").ljust(2048, b" "))
