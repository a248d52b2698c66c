"""``udfkit info``: what a run on a file would see."""

from __future__ import annotations

import json
import os

from ._common import add_dataset_options, dataset_params, human_bytes

__all__ = ["add_parser", "describe"]


def add_parser(sub) -> None:
    p = sub.add_parser("info", help="detected format, shapes, dtype, partitions and tile shape",
                       description="Show how udfkit sees a file: detected format, shapes, dtype, "
                                   "size, and the partitions and tile shapes a run would use.")
    add_dataset_options(p)
    p.add_argument("--json", action="store_true", help="print the facts as JSON")
    p.set_defaults(func=run)


def describe(ctx, filetype: str, params: dict) -> dict:
    """The facts ``udfkit info`` prints, as a dict (also used by the tests).

    The tile shapes come from the run plan: ``SumUDF``'s plan for the built-ins, which read
    the stored dtype, and the negotiator asked directly for what a ``process_tile`` UDF with
    the default float32 input would get.
    """
    import numpy as np

    from ..io.tiling import TilingRequest
    from ..udf import SumUDF
    from ..udf.plan import RunPlan, negotiate_tiling, plan_run

    ds = ctx.load(filetype, **params)
    detected = ds.format_name
    shape = ds.shape
    bounds = ds.partition_bounds()
    plan = plan_run(ds, [SumUDF()], executor=ctx.executor)
    assert isinstance(plan, RunPlan)  # a frame-wise UDF: never a series plan
    native = plan.scheme
    user, _, _ = negotiate_tiling(ds, [TilingRequest(method="tile")],
                                  [np.result_type(np.float32, ds.native_dtype)],
                                  roi=plan.inputs.roi, partitions=plan.inputs.partitions)
    frame_bytes = shape.sig.size * ds.dtype.itemsize
    path = params.get("path")
    if isinstance(path, (list, tuple)):
        path = path[0] if path else None
    return {
        "path": os.path.abspath(path) if path is not None else None,
        "format": detected,
        "file_size": int(ds.meta.metadata.get("file_bytes", 0)),
        "nav_shape": list(shape.nav.to_tuple()),
        "sig_shape": list(shape.sig.to_tuple()),
        "dtype": ds.dtype.str,
        "dtype_name": ds.dtype.name,
        "frames": int(shape.nav.size),
        "frames_in_file": int(ds.image_count),
        "sync_offset": int(ds.sync_offset),
        "partitions": len(bounds),
        "partition_frames": [int(b - a) for a, b in bounds],
        "partition_bytes": int(max(b - a for a, b in bounds) * frame_bytes),
        "tile_shape_native": list(native.shape),
        "tile_shape_float32": list(user.shape),
        "layout": ds.layout_info(),
        "series_reads": _series_reads(ds),
    }


def _series_reads(ds) -> str:
    """How a series-mode run (``process_series``) reads this data set, and why."""
    from ..io.series_read import series_read_mode

    mode, why = series_read_mode(ds)
    return f"{mode} ({why})"


def run(args, ctx) -> int:
    filetype, params = dataset_params(args)
    facts = describe(ctx, filetype, params)
    if args.json:
        print(json.dumps(facts, indent=1))
        return 0
    nav = tuple(facts["nav_shape"])
    sig = tuple(facts["sig_shape"])
    frames = facts["partition_frames"]
    print(f"path         {facts['path']}")
    print(f"format       {facts['format']}")
    print(f"file size    {human_bytes(facts['file_size'])} ({facts['file_size']} bytes)")
    print(f"shape        nav {nav} x sig {sig}  ({facts['frames']} frames, "
          f"{facts['frames_in_file']} in the file, sync_offset {facts['sync_offset']})")
    print(f"dtype        {facts['dtype_name']} ({facts['dtype']})")
    print(f"partitions   {facts['partitions']} of {min(frames)}-{max(frames)} frames "
          f"(up to {human_bytes(facts['partition_bytes'])})")
    print(f"tile shape   {tuple(facts['tile_shape_native'])} for built-ins reading the stored dtype, "
          f"{tuple(facts['tile_shape_float32'])} for a process_tile UDF with float32 input")
    for key, value in facts["layout"].items():
        print(f"{key:<12} {value}")
    print(f"series reads {facts['series_reads']}")
    return 0
