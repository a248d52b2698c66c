"""``RecordUDF``: write the frames of a run to a file, streaming (behind ``Context.export``).

The target is created on the main process before any partition runs (a ``.npy`` header,
or a raw file plus a JSON sidecar, sized to the final length); every partition then writes
its frames at their place with ``os.pwrite``, so workers on several processes or machines
(with a shared file system) fill one file without passing frames around.
"""

from __future__ import annotations

import json
import os

import numpy as np

from ...errors import UDFError
from ..base import UDF

__all__ = ["RecordUDF", "export_layout"]

FORMATS = ("npy", "raw")


def _format_for(path: str, fmt) -> str:
    if fmt is None:
        return "npy" if str(path).lower().endswith(".npy") else "raw"
    if fmt not in FORMATS:
        raise UDFError(f"RecordUDF: format must be one of {FORMATS} or None, got {fmt!r}")
    return fmt


def export_layout(meta, fmt: str):
    """``(header bytes, output shape, dtype)`` of the file a run with this ``meta`` writes.

    Without a ROI (and without missing frames) the file has the data set's shape; otherwise
    it holds the processed frames in flattened nav order: ``(n, *sig_shape)``.
    """
    sig = meta.dataset_shape.sig.to_tuple()
    if meta.roi is None:
        shape = meta.dataset_shape.to_tuple()
    else:
        shape = (int(np.count_nonzero(meta.roi)),) + sig
    dtype = meta.input_dtype
    if fmt == "raw":
        return b"", shape, dtype
    header = {"descr": np.lib.format.dtype_to_descr(dtype), "fortran_order": False, "shape": shape}
    import io

    buf = io.BytesIO()
    if _needs_v2(header):
        np.lib.format.write_array_header_2_0(buf, header)
    else:
        np.lib.format.write_array_header_1_0(buf, header)
    return buf.getvalue(), shape, dtype


def _needs_v2(header) -> bool:
    return len(repr(header)) > 65000


class RecordUDF(UDF):
    """Write every processed frame, in its stored dtype, to ``path``.

    Parameters
    ----------
    path : str or os.PathLike
        Target file. ``.npy`` files get a numpy header; other names are written raw, with a
        JSON sidecar ``<path>.json`` holding ``dtype``, ``nav_shape`` and ``sig_shape``.
    overwrite : bool
        Replace an existing target (default: refuse, before anything is read).
    format : {"npy", "raw"}, optional
        Override the choice made from the file name.

    Notes
    -----
    The result ``frames_written`` counts the frames written. With a ROI the file holds the
    selected frames in flattened nav order, shape ``(n, *sig_shape)``. A run that fails
    leaves a partly written file behind. On a cluster ``path`` must be on a file system
    that every worker can write to.

    Examples
    --------
    >>> import os, tempfile
    >>> import numpy as np
    >>> from udfkit import Context
    >>> from udfkit.udf import RecordUDF
    >>> data = np.arange(2 * 3 * 4 * 4, dtype="uint16").reshape(2, 3, 4, 4)
    >>> ctx = Context.make_with("inline")
    >>> target = os.path.join(tempfile.mkdtemp(), "copy.npy")
    >>> res = ctx.run_udf(dataset=ctx.load("memory", data=data), udf=RecordUDF(path=target))
    >>> int(res["frames_written"].data[0]), np.array_equal(np.load(target), data)
    (6, True)
    """

    def __init__(self, path=None, overwrite=False, format=None):
        if path is None:
            raise UDFError("RecordUDF: path is required")
        super().__init__(path=os.fspath(path), overwrite=bool(overwrite),
                         format=_format_for(os.fspath(path), format))

    def get_preferred_input_dtype(self):
        return self.USE_NATIVE_DTYPE

    def get_tiling_preferences(self):
        # whole frames: each tile is one contiguous run of bytes in the target
        return {"whole_frames": True}

    def get_result_buffers(self):
        return {"frames_written": self.buffer(kind="single", dtype=np.int64)}

    def preprocess(self):
        self._fd = None
        header, shape, dtype = export_layout(self.meta, self.params.format)
        self._offset = len(header)
        self._frame_bytes = self.meta.dataset_shape.sig.size * dtype.itemsize
        if self.meta.partition_shape is None:
            # the main process, before any partition runs
            self._create(header, shape, dtype)
            return
        self._positions = None if self.meta.roi is None else np.flatnonzero(self.meta.roi)
        self._fd = os.open(self.params.path, os.O_WRONLY)

    def _create(self, header, shape, dtype):
        path = self.params.path
        if os.path.exists(path):
            for source in self.meta.dataset_paths:
                if os.path.exists(source) and os.path.samefile(source, path):
                    raise UDFError(f"RecordUDF: the target {path!r} is the file of the data set "
                                   "being read; choose another path")
            if not self.params.overwrite:
                raise FileExistsError(f"RecordUDF: {path} exists; pass overwrite=True to replace it")
        total = len(header) + int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
        with open(path, "wb") as f:
            f.write(header)
            f.truncate(total)
        if self.params.format == "raw":
            sig_dims = self.meta.dataset_shape.sig_dims
            side = {"dtype": dtype.str, "nav_shape": list(shape[:-sig_dims]),
                    "sig_shape": list(shape[-sig_dims:])}
            with open(path + ".json", "w") as f:
                json.dump(side, f, indent=1)

    def process_tile(self, tile):
        first = int(self.meta.frame_index[0])
        row = first if self._positions is None else int(np.searchsorted(self._positions, first))
        data = memoryview(np.ascontiguousarray(tile)).cast("B")
        pos = self._offset + row * self._frame_bytes
        while data:
            written = os.pwrite(self._fd, data, pos)
            data = data[written:]
            pos += written

    def postprocess(self):
        self.results.frames_written[:] = self.meta.partition_shape.nav.size

    def cleanup(self):
        if getattr(self, "_fd", None) is not None:
            os.close(self._fd)
            self._fd = None

    def merge(self, dest, src):
        dest.frames_written += src.frames_written
