"""``udfkit run``: run built-in UDFs on a file from the shell; ``udfkit export``."""

from __future__ import annotations

import argparse
import os
import time
from typing import Any

import numpy as np

from ._common import CLIError, add_dataset_options, dataset_params, human_bytes, progress_flag

__all__ = ["add_parsers", "BUILTIN_NAMES", "make_udfs", "output_kind"]

#: command-line name → class name in udfkit.udf
BUILTIN_NAMES = {
    "sum": "SumUDF",
    "sumsig": "SumSigUDF",
    "stddev": "StdDevUDF",
    "stats": "StatsUDF",
    "pick": "PickUDF",
    "logsum": "LogsumUDF",
    "masks": "ApplyMasksUDF",
}


def add_parsers(sub) -> None:
    names = ", ".join(BUILTIN_NAMES)
    p = sub.add_parser("run", help="run built-in UDFs on a file and save the results",
                       description="Run one or more built-in UDFs in one pass over a file and save "
                                   f"their results as .npy (or .npz) files. UDF names: {names} "
                                   "(comma-separated for several).")
    p.add_argument("udf", metavar="UDF", help=f"one of {names}, or several separated by commas")
    add_dataset_options(p)
    p.add_argument("--roi", metavar="ROI.npy", help="bool array of the nav shape (or flat)")
    p.add_argument("--masks", metavar="MASKS.npy",
                   help="masks for 'masks': an array of shape (N, *sig_shape) or sig_shape")
    p.add_argument("-o", "--out", required=True, metavar="OUT",
                   help="output directory (created if missing) for OUT/<udf>_<result>.npy files; "
                        "or a file: OUT.npy for a single result (one UDF with one result, such "
                        "as sum), OUT.npz for every result in one file (<udf>_<result> arrays)")
    p.add_argument("--npz", action="store_true", help="one OUT/<udf>.npz per UDF instead of .npy files")
    p.add_argument("--overwrite", action="store_true",
                   help="replace an existing OUT.npy or OUT.npz file")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=run)

    e = sub.add_parser("export", help="write a file (or a ROI of it) to npy, raw, hdf5, zarr, a "
                                      "Thunder binary stack or sparse raw_csr",
                       description="Copy the frames of a data set into another file, streaming: "
                                   ".npy, raw with a JSON sidecar, HDF5 (.h5), zarr (.zarr), a "
                                   "Thunder binary stack (--format binary, a directory) or "
                                   "LiberTEM's sparse raw_csr (.toml: the descriptor, its three "
                                   "array files beside it; only the non-zero pixels, or those "
                                   "above --threshold).")
    add_dataset_options(e)
    e.add_argument("-o", "--out", required=True, metavar="TARGET",
                   help="target file (or directory for zarr and binary; the .toml descriptor "
                        "for raw_csr)")
    e.add_argument("--format", dest="out_format", default=None,
                   choices=["npy", "raw", "hdf5", "zarr", "binary", "raw_csr"],
                   help="target format (default: from the extension of TARGET, .toml for "
                        "raw_csr; raw otherwise)")
    e.add_argument("--compression", default=None, metavar="NAME[:LEVEL]",
                   help="hdf5: gzip, lzf, zstd, blosc; zarr: gzip, zstd, blosc (default: none)")
    e.add_argument("--threshold", default=None, type=_threshold, metavar="T",
                   help="raw_csr: keep only the pixels with abs(value) > T (default: every pixel "
                        "that is not exactly zero)")
    e.add_argument("--roi", metavar="ROI.npy", help="only these frames")
    e.add_argument("--overwrite", action="store_true", help="replace an existing target")
    e.add_argument("--no-progress", action="store_true", help="no progress bar")
    e.set_defaults(func=export)


def _threshold(text: str) -> float:
    """``--threshold``: a number (checked further by ``ctx.export``)."""
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number >= 0, got {text!r}") from None


def _load_npy(path: str, what: str) -> np.ndarray:
    if not os.path.isfile(path):
        raise CLIError(f"{what} file {path!r} does not exist")
    try:
        return np.load(path, allow_pickle=False)
    except ValueError as e:
        raise CLIError(f"{what} file {path!r} is not a readable .npy file: {e}") from None


def make_udfs(spec: str, masks_path: str | None = None) -> list:
    """``"sum,stddev"`` → ``[("sum", SumUDF()), ("stddev", StdDevUDF())]``."""
    from .. import udf as udf_module

    out = []
    for raw_name in spec.split(","):
        name = raw_name.strip().lower()
        if name.endswith("udf") and name[:-3] in BUILTIN_NAMES:
            name = name[:-3]
        if name not in BUILTIN_NAMES:
            raise CLIError(f"unknown UDF {raw_name.strip()!r}; expected one of {', '.join(BUILTIN_NAMES)}")
        cls = getattr(udf_module, BUILTIN_NAMES[name])
        if name == "masks":
            if masks_path is None:
                raise CLIError("UDF 'masks' needs --masks MASKS.npy")
            out.append((name, cls(mask_factories=_load_npy(masks_path, "--masks"))))
        else:
            out.append((name, cls()))
    if masks_path is not None and "masks" not in [n for n, _ in out]:
        raise CLIError("--masks is only used by the UDF 'masks'")
    return out


def output_kind(out: str, npz: bool, overwrite: bool) -> str:
    """What ``-o OUT`` names: ``"dir"``, ``"npy"`` (one result) or ``"npz"`` (one file).

    Checked before the run, so a target that cannot be written costs no pass over the data.
    An existing directory is always a directory, whatever its name.

    Parameters
    ----------
    out : str
        The ``-o`` argument.
    npz : bool
        ``--npz`` (one ``.npz`` per UDF in a directory).
    overwrite : bool
        ``--overwrite``: an existing ``.npy``/``.npz`` file may be replaced.

    Returns
    -------
    str
        ``"dir"``, ``"npy"`` or ``"npz"``.

    Raises
    ------
    CLIError
        An existing file where a directory is wanted, an existing target without
        ``--overwrite``, ``--npz`` with a ``.npy`` name, a directory that cannot be made.

    Examples
    --------
    >>> output_kind("no-such-results-dir", npz=False, overwrite=False)
    'dir'
    >>> output_kind("mean-pattern.npy", npz=False, overwrite=False)
    'npy'
    >>> output_kind("mean-pattern.npy", npz=True, overwrite=False)  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    udfkit.errors.CLIError: --npz writes one .npz file per UDF into a directory, but -o ...
    """
    ext = os.path.splitext(out)[1].lower()
    if ext in (".npy", ".npz") and not os.path.isdir(out):
        if npz and ext == ".npy":
            raise CLIError(f"--npz writes one .npz file per UDF into a directory, but -o {out!r} "
                           "names a .npy file; drop --npz, or give a directory or an .npz file")
        if os.path.exists(out) and not overwrite:
            raise CLIError(f"-o {out!r} exists; add --overwrite to replace it")
        kind, directory = ext[1:], os.path.dirname(os.path.abspath(out))
    else:
        if os.path.exists(out) and not os.path.isdir(out):
            raise CLIError(f"-o {out!r} is an existing file, not a directory; name a directory "
                           "for the results, a .npy file for a single result or a .npz file "
                           "for all of them")
        kind, directory = "dir", os.path.abspath(out)
    # the directory (to be made) must sit below a writable directory, not below a file
    existing = directory
    while not os.path.exists(existing):
        existing = os.path.dirname(existing)
    if not os.path.isdir(existing):
        raise CLIError(f"-o {out!r}: {existing!r} is a file, so no directory can be made in it")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise CLIError(f"-o {out!r}: no permission to write in {existing!r}")
    return kind


def _visible_results(ds, name: str, udf) -> list:
    """The result names ``udf`` returns on ``ds`` (its buffers that are not private)."""
    from ..udf.driver import UDFRun

    specs = UDFRun(ds, [udf]).specs[0]
    return [key for key, spec in specs.items() if spec.use != "private"]


def run(args, ctx) -> int:
    filetype, params = dataset_params(args)
    named = make_udfs(args.udf, args.masks)
    kind = output_kind(args.out, args.npz, args.overwrite)
    if kind != "dir" and os.path.isfile(args.out) and isinstance(params["path"], str) \
            and os.path.isfile(params["path"]) and os.path.samefile(args.out, params["path"]):
        raise CLIError(f"-o {args.out!r} is the input file; name another file for the result")
    if kind == "npy" and len(named) > 1:
        raise CLIError(f"-o {args.out!r} names one .npy file, but {len(named)} UDFs give several "
                       "results; name a directory or a .npz file")
    ds = ctx.load(filetype, **params)
    if kind == "npy":
        keys = _visible_results(ds, *named[0])
        if len(keys) != 1:
            raise CLIError(f"-o {args.out!r} names one .npy file, but {named[0][0]} gives "
                           f"{len(keys)} results ({', '.join(keys)}); name a directory or a "
                           ".npz file")
    roi = _load_npy(args.roi, "--roi") if args.roi else None
    t0 = time.perf_counter()
    results = ctx.run_udf(dataset=ds, udf=[u for _, u in named], roi=roi,
                          progress=progress_flag(args))
    elapsed = time.perf_counter() - t0
    arrays = {(name, key): np.asarray(r.data)
              for (name, _), res in zip(named, results) for key, r in res.items()}
    written = []
    if kind == "dir":
        os.makedirs(args.out, exist_ok=True)
        for name, _ in named:
            # Any: numpy's stubs would match a dict of arrays against savez's allow_pickle
            mine: dict[str, Any] = {key: arr for (n, key), arr in arrays.items() if n == name}
            if args.npz:
                path = os.path.join(args.out, f"{name}.npz")
                np.savez(path, **mine)
                written.append(path)
            else:
                for key, arr in mine.items():
                    path = os.path.join(args.out, f"{name}_{key}.npy")
                    np.save(path, arr)
                    written.append(path)
    else:
        parent = os.path.dirname(args.out)
        if parent:
            os.makedirs(parent, exist_ok=True)
        # through a file object: numpy would append .npy to a name like OUT.NPY
        with open(args.out, "wb") as f:
            if kind == "npy":
                (arr,) = arrays.values()
                np.save(f, arr)
            else:
                every: dict[str, Any] = {f"{name}_{key}": arr
                                         for (name, key), arr in arrays.items()}
                np.savez(f, **every)
        written.append(args.out)
    frames = ds.shape.nav.size if roi is None else int(np.count_nonzero(roi))
    nbytes = frames * ds.shape.sig.size * ds.dtype.itemsize
    print(f"{', '.join(n for n, _ in named)} on {params['path']}: {frames} frames, "
          f"{human_bytes(nbytes)} in {elapsed:.2f} s ({nbytes / elapsed / 1e9:.2f} GB/s)")
    for path in written:
        print(f"  {path}")
    return 0


def export(args, ctx) -> int:
    filetype, params = dataset_params(args)
    ds = ctx.load(filetype, **params)
    roi = _load_npy(args.roi, "--roi") if args.roi else None
    t0 = time.perf_counter()
    path = ctx.export(ds, args.out, roi=roi, overwrite=args.overwrite, format=args.out_format,
                      compression=args.compression, threshold=args.threshold,
                      progress=progress_flag(args))
    elapsed = time.perf_counter() - t0
    size = _size_on_disk(path)
    if args.out_format == "raw_csr" or (args.out_format is None and str(path).endswith(".toml")):
        from ..io.formats.raw_csr import read_descriptor

        # the descriptor names its three array files, which hold the data
        size += sum(os.path.getsize(f) for f in read_descriptor(path).files)
    print(f"wrote {path} ({human_bytes(size)}) in {elapsed:.2f} s")
    return 0


def _size_on_disk(path) -> int:
    """Bytes of a file, or of the files under a directory (zarr store, binary stack)."""
    if not os.path.isdir(path):
        return os.path.getsize(path)
    return sum(os.path.getsize(os.path.join(root, name))
               for root, _, names in os.walk(path) for name in names)
