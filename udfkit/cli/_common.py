"""Shared pieces of the ``udfkit`` subcommands: data set options, parsing, output."""

from __future__ import annotations

import argparse
import os
import sys

from ..errors import UdfkitError

__all__ = ["CLIError", "add_dataset_options", "dataset_params", "parse_shape", "human_bytes",
           "progress_flag", "EXPECTED_ERRORS"]


class CLIError(UdfkitError):
    """A bad command line: reported as one line, exit code 2."""


#: errors that are the user's input, not udfkit's bug: one line, no traceback
EXPECTED_ERRORS = (UdfkitError, OSError, ValueError, TypeError, KeyError)


def parse_shape(text: str) -> tuple:
    """``"128,128"`` or ``"128x128"`` → ``(128, 128)``."""
    parts = text.replace("x", ",").replace("X", ",").split(",")
    try:
        shape = tuple(int(p) for p in parts if p.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a shape like 128,128, got {text!r}") from None
    if not shape or any(n < 1 for n in shape):
        raise argparse.ArgumentTypeError(f"expected positive sizes like 128,128, got {text!r}")
    return shape


def add_dataset_options(p: argparse.ArgumentParser) -> None:
    """``PATH`` and the load parameters shared by ``info`` and ``run``."""
    p.add_argument("path", metavar="PATH", help="data file")
    p.add_argument("--type", default="auto", metavar="T",
                   help="format: raw, npy or auto (default: detect from the file)")
    p.add_argument("--nav-shape", type=parse_shape, metavar="SHAPE", help="e.g. 128,128")
    p.add_argument("--sig-shape", type=parse_shape, metavar="SHAPE", help="e.g. 256,256")
    p.add_argument("--dtype", help="stored dtype of a raw file, e.g. uint16 or '>f4'")
    p.add_argument("--sync-offset", type=int, default=None, metavar="N",
                   help="skip N frames at the start (negative: N positions have no frame)")
    p.add_argument("--num-partitions", type=int, default=None, metavar="N")
    p.add_argument("--io-backend", default=None, metavar="NAME",
                   help="mmap (default), buffered or direct")


def dataset_params(args) -> tuple[str, dict]:
    """``(filetype, params)`` for ``Context.load`` from the parsed options."""
    params = {"path": args.path}
    for name in ("nav_shape", "sig_shape", "dtype", "sync_offset", "num_partitions", "io_backend"):
        value = getattr(args, name)
        if value is not None:
            params[name] = value
    return args.type, params


def human_bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n} B"  # pragma: no cover


def progress_flag(args) -> bool:
    """Progress bars on a terminal, unless ``--no-progress``."""
    if getattr(args, "no_progress", False):
        return False
    return sys.stderr.isatty() or bool(os.environ.get("UDFKIT_PROGRESS"))
