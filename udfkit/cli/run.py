"""``udfkit run``: run built-in UDFs on a file from the shell; ``udfkit export``."""

from __future__ import annotations

import os
import time

import numpy as np

from ._common import CLIError, add_dataset_options, dataset_params, human_bytes, progress_flag

__all__ = ["add_parsers", "BUILTIN_NAMES", "make_udfs"]

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
                   help="output directory (created if missing)")
    p.add_argument("--npz", action="store_true", help="one OUT/<udf>.npz per UDF instead of .npy files")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=run)

    e = sub.add_parser("export", help="write a file (or a ROI of it) to npy, raw, hdf5, zarr or a "
                                      "Thunder binary stack",
                       description="Copy the frames of a data set into another file, streaming: "
                                   ".npy, raw with a JSON sidecar, HDF5 (.h5), zarr (.zarr) or a "
                                   "Thunder binary stack (--format binary, a directory).")
    add_dataset_options(e)
    e.add_argument("-o", "--out", required=True, metavar="TARGET",
                   help="target file (or directory for zarr and binary)")
    e.add_argument("--format", dest="out_format", default=None,
                   choices=["npy", "raw", "hdf5", "zarr", "binary"],
                   help="target format (default: from the extension of TARGET; raw otherwise)")
    e.add_argument("--compression", default=None, metavar="NAME[:LEVEL]",
                   help="hdf5: gzip, lzf, zstd, blosc; zarr: gzip, zstd, blosc (default: none)")
    e.add_argument("--roi", metavar="ROI.npy", help="only these frames")
    e.add_argument("--overwrite", action="store_true", help="replace an existing target")
    e.add_argument("--no-progress", action="store_true", help="no progress bar")
    e.set_defaults(func=export)


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


def run(args, ctx) -> int:
    filetype, params = dataset_params(args)
    named = make_udfs(args.udf, args.masks)
    ds = ctx.load(filetype, **params)
    roi = _load_npy(args.roi, "--roi") if args.roi else None
    t0 = time.perf_counter()
    results = ctx.run_udf(dataset=ds, udf=[u for _, u in named], roi=roi,
                          progress=progress_flag(args))
    elapsed = time.perf_counter() - t0
    os.makedirs(args.out, exist_ok=True)
    written = []
    for (name, _), res in zip(named, results):
        arrays = {key: np.asarray(r.data) for key, r in res.items()}
        if args.npz:
            path = os.path.join(args.out, f"{name}.npz")
            np.savez(path, **arrays)
            written.append(path)
        else:
            for key, arr in arrays.items():
                path = os.path.join(args.out, f"{name}_{key}.npy")
                np.save(path, arr)
                written.append(path)
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
                      compression=args.compression, progress=progress_flag(args))
    elapsed = time.perf_counter() - t0
    print(f"wrote {path} ({human_bytes(_size_on_disk(path))}) in {elapsed:.2f} s")
    return 0


def _size_on_disk(path) -> int:
    """Bytes of a file, or of the files under a directory (zarr store, binary stack)."""
    if not os.path.isdir(path):
        return os.path.getsize(path)
    return sum(os.path.getsize(os.path.join(root, name))
               for root, _, names in os.walk(path) for name in names)
