"""The journal of a run with results on disk: what the run is (its fingerprint), which
partitions are merged into the store, and the sig/single buffers as they were after those
merges (the checkpoint), in one ``.npz`` file replaced atomically.

Fingerprint
-----------
A dict of named parts: ``dataset`` (description, shape, dtype), ``partitions`` (their nav
ranges), ``roi`` (a digest of the effective ROI), ``udfs`` (class and a digest of the
parameters of each UDF). ``resume=True`` compares it part by part, so a refusal names what
differs.

Consistency
-----------
Merges happen in partition order, so the merged partitions are always the first ``k`` of the
run's tasks. Nav boxes are written and flushed before the journal names their partition;
the journal and the checkpoint are one file written through a temporary file, fsync and
rename, so a run killed at any moment leaves either the previous journal or the new one,
never a mix. Nav boxes of partitions written after the last journal are written again,
identically, by the resumed run.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import pickle
import types
import zipfile

import numpy as np

from ._atomic import atomic_writer

__all__ = ["Journal", "fingerprint", "digest", "differences"]


def digest(value) -> str:
    """A stable text digest of a UDF parameter (arrays by content, functions by code).

    Examples
    --------
    >>> digest(1.5) == digest(1.5), digest(np.arange(3)) == digest(np.arange(3)), digest(2) == digest(3)
    (True, True, False)
    """
    h = hashlib.sha256()
    _feed(h, value)
    return h.hexdigest()[:16]


def _feed(h, value):
    if isinstance(value, np.ndarray) or hasattr(value, "__array_interface__"):
        arr = np.ascontiguousarray(value)
        h.update(f"nd{arr.dtype.str}{arr.shape}".encode())
        h.update(arr.tobytes() if arr.dtype.kind != "O" else repr(arr.tolist()).encode())
    elif isinstance(value, dict):
        h.update(b"{")
        for k in sorted(value, key=repr):
            h.update(repr(k).encode())
            _feed(h, value[k])
        h.update(b"}")
    elif isinstance(value, (list, tuple)):
        h.update(type(value).__name__.encode())
        for v in value:
            _feed(h, v)
    elif isinstance(value, (str, bytes, int, float, complex, bool, type(None), np.generic)):
        h.update(repr(value).encode())
    elif isinstance(value, types.FunctionType):
        code = value.__code__
        h.update(f"fn{value.__module__}.{value.__qualname__}".encode())
        h.update(code.co_code)
        h.update(repr(code.co_consts).encode())
        for cell in value.__closure__ or ():
            try:
                _feed(h, cell.cell_contents)
            except ValueError:
                pass
    elif hasattr(value, "_kwargs") and isinstance(getattr(value, "_kwargs"), dict):
        h.update(type(value).__qualname__.encode())
        _feed(h, value._kwargs)
    else:
        try:
            h.update(pickle.dumps(value, protocol=4))
        except Exception:  # noqa: BLE001 - an unpicklable value is named by its type and repr
            h.update(f"{type(value).__qualname__}:{value!r}".encode())


def fingerprint(dataset, udfs, roi, partitions) -> dict:
    """The parts of a run that a resumed run must share (see the module docstring)."""
    return {
        "dataset": f"{dataset.description} shape={tuple(dataset.shape)} dtype={np.dtype(dataset.dtype)}",
        "partitions": digest([(int(p.start), int(p.stop)) for p in partitions]),
        "roi": "all" if roi is None else digest(np.asarray(roi, dtype=bool)),
        "udfs": [f"{type(u).__module__}.{type(u).__qualname__}({digest(u._kwargs)})"
                 for u in udfs],
    }


def differences(old: dict, new: dict) -> list:
    """Names of the fingerprint parts that differ, with both values where they are short."""
    out = []
    for key in sorted(set(old) | set(new)):
        a, b = old.get(key), new.get(key)
        if a != b:
            if key == "udfs" and isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
                for i, (x, y) in enumerate(zip(a, b)):
                    if x != y:
                        out.append(f"UDF {i}: the store has {x}, this run has {y} "
                                   "(class or parameters differ)")
            elif key in ("dataset",):
                out.append(f"data set: the store has {a!r}, this run has {b!r}")
            else:
                out.append(f"{key}: the store's differs from this run's")
    return out


class Journal:
    """The journal file of one store.

    Attributes
    ----------
    path : str
    fingerprint : dict
    merged : list of int
        Partition indices merged into the store, in merge order.
    complete : bool
    checkpoint : dict
        ``{"group/name": ndarray}``: the sig/single buffers after the merged partitions.
    """

    def __init__(self, path: str, fingerprint: dict, merged=(), complete=False, checkpoint=None):
        self.path = path
        self.fingerprint = fingerprint
        self.merged = list(merged)
        self.complete = bool(complete)
        self.checkpoint = dict(checkpoint or {})

    def write(self) -> None:
        """Replace the journal file atomically."""
        head = json.dumps({"version": 1, "fingerprint": self.fingerprint, "merged": self.merged,
                           "complete": self.complete}).encode()
        arrays = {"journal": np.frombuffer(head, dtype=np.uint8)}
        for i, (key, arr) in enumerate(self.checkpoint.items()):
            arrays[f"b{i}"] = np.asarray(arr)
        names = {f"b{i}": key for i, key in enumerate(self.checkpoint)}
        arrays["names"] = np.frombuffer(json.dumps(names).encode(), dtype=np.uint8)
        atomic_writer(self.path, lambda f: np.savez(f, **arrays))  # type: ignore[arg-type]

    @classmethod
    def read(cls, path: str) -> Journal:
        """Read a journal; ``ValueError`` when it is damaged, ``OSError`` when missing."""
        try:
            with np.load(path, allow_pickle=False) as z:
                head = json.loads(bytes(z["journal"]).decode())
                names = json.loads(bytes(z["names"]).decode())
                ckpt = {key: z[k] for k, key in names.items()}
        except (zipfile.BadZipFile, KeyError, EOFError, io.UnsupportedOperation) as e:
            raise ValueError(f"damaged journal: {type(e).__name__}: {e}") from None
        return cls(path, head["fingerprint"], head["merged"], head["complete"], ckpt)

    def exists(self) -> bool:
        return os.path.exists(self.path)
