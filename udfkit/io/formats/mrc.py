"""The ``mrc`` format: MRC / MRC2014 image stacks, volumes and volume stacks.

The 1024-byte header is parsed by :mod:`mrcfile` (the ``mrc`` extra): its machine stamp gives
the byte order, ``mode`` the data type, ``nx, ny, nz`` (and ``mz`` for volume stacks) the
shape, ``nsymbt`` the size of the extended header after it. The data are then plain C-order
images from byte ``1024 + nsymbt`` on, so udfkit's own read planner and I/O backends read
them (``mmap``, ``buffered``, ``direct``); mrcfile opens no data.

Shapes: an image stack or volume of ``nz`` sections of ``ny x nx`` pixels is ``nz`` frames
(``nav_shape=(nz,)``, ``sig_shape=(ny, nx)``); a volume stack (space group 401-630) of
``nz / mz`` volumes is ``nav_shape=(nz / mz, mz)``, or frames of whole volumes with
``sig_dims=3``. ``nav_shape`` / ``sig_shape`` reshape as for ``npy`` files.

Modes: 0 (int8), 1 (int16), 2 (float32), 4 (complex64), 6 (uint16) and 12 (float16), in
either byte order. Modes 3 (complex int16) and 101 (4-bit packed) have no numpy dtype and are
refused with an error naming the mode.

A header that mrcfile's strict parser refuses is an error, except where the only fault is the
machine stamp (zeros, as some older programs write): then the byte order in which the mode
word is valid is taken, as mrcfile's permissive mode does, with a warning.
"""

from __future__ import annotations

import os
from math import prod

import numpy as np

from ...common import Shape
from ...common.parse import ShapeLike
from ...errors import DataSetError
from ..base import DataSetMeta, IOBackend
from ..file_based import FileDataSet
from ..layout import FileLayout, FileSet
from ._common import check_frame_count, check_path, check_sync_offset, parse_dims, resolve_shapes
from .base import COMMON_PARAMS, Format, Param, read_head

__all__ = ["MRCFormat", "MRCDataSet", "read_mrc_header", "MRCHeader"]

#: the main header; the extended header (``nsymbt`` bytes) and the data follow it
HEADER_BYTES = 1024
#: where the map ID ``"MAP "`` sits in the header
MAP_OFFSET = 208
#: modes and the dtypes mrcfile gives them (MRC2014)
SUPPORTED_MODES = {0: "int8", 1: "int16", 2: "float32", 4: "complex64", 6: "uint16", 12: "float16"}
_MODE_NAMES = {3: "complex int16", 101: "4-bit packed integers"}


class MRCFormat(Format):
    """MRC files (``.mrc``, ``.mrcs``); the header is read with mrcfile."""

    name = "mrc"
    dataset = "udfkit.io.formats.mrc:MRCDataSet"
    extensions = (".mrc", ".mrcs")
    requires = ("mrcfile", "mrc")
    params = (
        Param("path", "path", None, "the MRC file"),
        COMMON_PARAMS["nav_shape"], COMMON_PARAMS["sig_shape"], COMMON_PARAMS["sig_dims"],
        COMMON_PARAMS["sync_offset"], COMMON_PARAMS["io_backend"], COMMON_PARAMS["num_partitions"],
        COMMON_PARAMS["allow_partial"],
    )

    @classmethod
    def guess_can_open(cls, path: str) -> float:
        """1.0 for a file with the map ID ``"MAP"`` at byte 208, 0.5 for the extension only."""
        if not os.path.isfile(path):
            return 0.0
        head = read_head(path, HEADER_BYTES)
        # MRC2014 asks for "MAP " here; older writers put "MAP" and a NUL
        if len(head) == HEADER_BYTES and head[MAP_OFFSET:MAP_OFFSET + 3] == b"MAP":
            return 1.0
        return 0.5 if path.lower().endswith(cls.extensions) else 0.0


class MRCHeader:
    """What udfkit takes from an MRC header (see :func:`read_mrc_header`).

    Attributes
    ----------
    dtype : numpy.dtype
        Of the data, in the file's byte order.
    mode : int
    nx, ny, nz, mz : int
        Columns, rows, sections; ``mz`` sections per volume.
    shape : tuple of int
        The data's shape as mrcfile gives it, ``(nz, ny, nx)`` or ``(nz // mz, mz, ny, nx)``
        for a volume stack (a single image also as ``(1, ny, nx)``).
    kind : str
        ``"image stack"``, ``"volume"`` or ``"volume stack"``.
    data_offset : int
        ``1024 + nsymbt``.
    facts : dict
        Further fields for ``udfkit info``.
    """

    def __init__(self, *, dtype, mode, nx, ny, nz, mz, shape, kind, data_offset, facts):
        self.dtype = dtype
        self.mode = mode
        self.nx, self.ny, self.nz, self.mz = nx, ny, nz, mz
        self.shape = shape
        self.kind = kind
        self.data_offset = data_offset
        self.facts = facts


def read_mrc_header(path: str) -> MRCHeader:
    """Parse the header of the MRC file ``path`` with mrcfile.

    Raises
    ------
    DataSetError
        When the header does not parse (no map ID, unknown machine stamp, file shorter than
        1024 bytes), or has a mode without a numpy dtype or a non-positive size; the message
        names the file, what was expected and what was found.
    """
    import warnings

    import mrcfile
    import mrcfile.utils

    where = f"mrc file {path!r}"
    try:
        with warnings.catch_warnings():
            # strict parsing raises instead of warning; nothing should warn, but a warning
            # from mrcfile must not leak as if it came from udfkit
            warnings.simplefilter("ignore")
            with mrcfile.open(path, mode="r", header_only=True, permissive=False) as mrc:
                header = mrc.header.copy()
                extended = int(mrc.header.nsymbt)
    except (ValueError, OSError, EOFError) as e:
        header, extended = _header_without_machine_stamp(path, where, e)
    mode = int(header.mode)
    if mode not in SUPPORTED_MODES:
        what = f" ({_MODE_NAMES[mode]})" if mode in _MODE_NAMES else ""
        raise DataSetError(f"{where} has mode {mode}{what}, which udfkit does not read; expected "
                           f"one of the modes {', '.join(f'{m} ({d})' for m, d in SUPPORTED_MODES.items())}")
    dtype = mrcfile.utils.data_dtype_from_header(header)
    if dtype.isnative:
        # mrcfile spells the machine's own byte order out ('<u2'); numpy's default reads better
        dtype = dtype.newbyteorder("=")
    nx, ny, nz, mz = (int(header[k]) for k in ("nx", "ny", "nz", "mz"))
    if min(nx, ny, nz) < 1:
        raise DataSetError(f"{where}: header size nx, ny, nz = {nx}, {ny}, {nz}; expected positive "
                           "numbers of columns, rows and sections")
    if extended < 0:
        raise DataSetError(f"{where}: header field nsymbt (extended header bytes) is {extended}; "
                           "expected >= 0")
    ispg = int(header.ispg)
    shape: tuple[int, ...]
    if mrcfile.utils.spacegroup_is_volume_stack(ispg) and mz >= 1 and nz % mz == 0:
        kind, shape = "volume stack", (nz // mz, mz, ny, nx)
    else:
        kind = "image stack" if ispg == mrcfile.utils.IMAGE_STACK_SPACEGROUP else "volume"
        shape = (nz, ny, nx)
    byte_order = "big-endian" if dtype.byteorder == ">" or (
        dtype.byteorder == "=" and not np.little_endian) else "little-endian"
    facts = {
        "mode": f"{mode} ({SUPPORTED_MODES[mode]})",
        "byte_order": byte_order,
        "header_shape": f"nx={nx}, ny={ny}, nz={nz}, mz={mz}",
        "kind": kind,
        "space_group": ispg,
        "extended_header_bytes": extended,
        "data_offset": HEADER_BYTES + extended,
    }
    exttyp = bytes(header.exttyp).rstrip(b"\0 ").decode("ascii", "replace")
    if exttyp:
        facts["extended_header_type"] = exttyp
    nversion = int(header.nversion)
    if nversion:
        facts["mrc_version"] = nversion
    return MRCHeader(dtype=dtype, mode=mode, nx=nx, ny=ny, nz=nz, mz=mz, shape=shape, kind=kind,
                     data_offset=HEADER_BYTES + extended, facts=facts)


def _header_without_machine_stamp(path: str, where: str, strict_error: Exception):
    """The header of a file whose only fault is its machine stamp (zeros, or a byte order
    that its mode word contradicts; written so by some older software), with a warning;
    any other fault is the strict parser's error."""
    import warnings

    import mrcfile

    from ...errors import UdfkitWarning

    size = os.path.getsize(path)
    refused = DataSetError(f"{where} has no valid MRC header ({size} bytes): mrcfile says: {strict_error}; "
                           f"expected the map ID 'MAP ' at byte {MAP_OFFSET} and a known machine stamp "
                           "in a header of 1024 bytes")
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            with mrcfile.open(path, mode="r", header_only=True, permissive=True) as mrc:
                header = mrc.header.copy() if mrc.header is not None else None
                extended = int(mrc.header.nsymbt) if header is not None else 0
    except (ValueError, OSError, EOFError):
        raise refused from None
    complaints = [str(w.message) for w in caught]
    if header is None or not complaints or any("machine stamp" not in c.lower() for c in complaints):
        raise refused from None
    order = "big" if header.mode.dtype.byteorder == ">" or (
        header.mode.dtype.byteorder in "=|" and not np.little_endian) else "little"
    warnings.warn(UdfkitWarning(f"{where}: {'; '.join(complaints)}; reading it as {order}-endian, the "
                                "byte order in which its mode word is valid"), stacklevel=4)
    return header, extended


class MRCDataSet(FileDataSet):
    """An MRC file: header by mrcfile, data by udfkit's read path.

    Parameters
    ----------
    path : str or os.PathLike
        The ``.mrc`` / ``.mrcs`` file.
    nav_shape, sig_shape : tuple of int, optional
        Reinterpret the data (the frames must fill them, as for ``npy``). By default the
        sections are the frames: ``nav_shape=(nz,)``, ``sig_shape=(ny, nx)``; for a volume
        stack ``nav_shape=(nz // mz, mz)``.
    sig_dims : int, optional
        Number of trailing axes of the header's shape that form a frame when ``sig_shape``
        is not given (3: whole volumes of a volume stack).
    sync_offset, num_partitions, allow_partial
        As for the raw format; ``allow_partial`` accepts a file cut short of the header's
        ``nz`` sections.
    io_backend : str or IOBackend, optional
        ``"mmap"`` (default), ``"buffered"`` or ``"direct"``, or a backend instance.

    Notes
    -----
    The stored dtype keeps the file's byte order (``>i2`` for a big-endian mode-1 file).
    Mode 0 is read as int8, as MRC2014 and mrcfile define it (some old files meant uint8).

    Examples
    --------
    >>> import numpy as np, tempfile, os, mrcfile
    >>> from udfkit import Context
    >>> path = os.path.join(tempfile.mkdtemp(), "movie.mrc")
    >>> with mrcfile.new(path) as mrc:
    ...     mrc.set_data(np.zeros((6, 16, 12), dtype="uint16"))
    >>> ds = Context.make_with("inline").load("mrc", path=path, nav_shape=(2, 3))
    >>> ds.shape, ds.dtype, ds.layout_info()["mode"]
    (Shape((2, 3, 16, 12), sig_dims=2), dtype('uint16'), '6 (uint16)')
    """

    format_name = "mrc"

    def __init__(self, path: str | os.PathLike[str] | None = None, nav_shape: ShapeLike | None = None,
                 sig_shape: ShapeLike | None = None, sig_dims: int | None = None, sync_offset: int = 0,
                 io_backend: str | IOBackend | None = None, num_partitions: int | None = None,
                 allow_partial: bool = False):
        super().__init__(nav_shape=nav_shape, sig_shape=sig_shape, sync_offset=sync_offset,
                         num_partitions=num_partitions, allow_partial=allow_partial,
                         io_backend=io_backend)
        self._path_arg = path
        self._sig_dims_arg = sig_dims
        self._info: dict = {}

    def _initialize(self) -> DataSetMeta:
        MRCFormat.check_requirements()
        path = check_path(self._path_arg, "mrc file")
        where = f"mrc file {path!r}"
        head = read_mrc_header(path)
        dtype = head.dtype
        nav_shape = parse_dims(self._nav_shape_arg, "nav_shape", where)
        sig_shape = parse_dims(self._sig_shape_arg, "sig_shape", where)
        total = prod(head.shape)
        nav_shape, sig_shape, header_frames = resolve_shapes(
            where, head.shape, self._sig_dims_arg, nav_shape, sig_shape, total, self._allow_partial)
        size = os.path.getsize(path)
        frame_bytes = prod(sig_shape) * dtype.itemsize
        in_file = max(0, size - head.data_offset) // frame_bytes
        image_count = min(header_frames, in_file)
        data_bytes = total * dtype.itemsize
        if image_count < header_frames and not self._allow_partial:
            raise DataSetError(
                f"{where} is truncated: its header promises {head.kind} {head.shape} of {dtype} "
                f"({head.data_offset} + {data_bytes} = {head.data_offset + data_bytes} bytes), but the "
                f"file has {size} bytes, {image_count} whole frames of {sig_shape}; pass "
                "allow_partial=True to read the whole frames and report the rest as missing")
        desc = f"sig_shape {sig_shape} × {dtype} = {frame_bytes} bytes"
        check_frame_count(where, nav_shape, image_count, self._allow_partial, f"{size} bytes", desc)
        sync_offset = check_sync_offset(where, self._sync_offset_arg, prod(nav_shape), image_count)
        self._fileset = FileSet([FileLayout(path, head.data_offset, dtype, sig_shape, image_count)])
        self._info = {"path": path, **head.facts, "data_shape": head.shape,
                      "frames": f"{image_count} of {sig_shape} from byte {head.data_offset}"}
        return DataSetMeta(shape=Shape(nav_shape + sig_shape, sig_dims=len(sig_shape)),
                           raw_dtype=dtype, image_count=image_count, sync_offset=sync_offset,
                           metadata={"path": path, "file_bytes": size, "header_bytes": head.data_offset,
                                     "mrc_mode": head.mode, "io_backend": self._backend.name})

    def layout_info(self) -> dict:
        """Mode, byte order, header shape, extended header and where the frames start."""
        self._require_meta()
        return dict(self._info)
