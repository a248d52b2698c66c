"""``udfkit plan``: what a run of built-in UDFs on a file will do, before reading a byte."""

from __future__ import annotations

import json
import os

import numpy as np

from ._common import CLIError, add_dataset_options, dataset_params

__all__ = ["add_parser"]


def add_parser(sub) -> None:
    from .run import BUILTIN_NAMES

    names = ", ".join(BUILTIN_NAMES)
    p = sub.add_parser("plan", help="show the plan of a run: tiles, partitions, memory, results",
                       description="Show what 'udfkit run' would do on a file without reading "
                                   "its frames: tile shape, partitions, each UDF's input dtype "
                                   "and buffers, bytes read, memory per worker and on the main "
                                   "process, result sizes, and why each choice was made. "
                                   f"UDF names: {names} (comma-separated for several).")
    add_dataset_options(p)
    p.add_argument("--udf", default="sum", metavar="UDF",
                   help=f"one of {names}, or several separated by commas (default: sum)")
    p.add_argument("--roi", metavar="ROI.npy", help="bool array of the nav shape (or flat)")
    p.add_argument("--masks", metavar="MASKS.npy",
                   help="masks for 'masks': an array of shape (N, *sig_shape) or sig_shape")
    p.add_argument("--json", action="store_true", help="print the plan as JSON")
    p.set_defaults(func=run)


def _load_roi(path: str) -> np.ndarray:
    if not os.path.isfile(path):
        raise CLIError(f"--roi file {path!r} does not exist")
    try:
        return np.load(path, allow_pickle=False)
    except ValueError as e:
        raise CLIError(f"--roi file {path!r} is not a readable .npy file: {e}") from None


def run(args, ctx) -> int:
    from .run import make_udfs

    filetype, params = dataset_params(args)
    named = make_udfs(args.udf, args.masks)
    ds = ctx.load(filetype, **params)
    roi = _load_roi(args.roi) if args.roi else None
    plan = ctx.plan(ds, [u for _, u in named], roi=roi)
    if args.json:
        print(json.dumps(plan.to_dict(), indent=1))
    else:
        print(plan)
    return 0
