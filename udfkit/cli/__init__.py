"""The ``udfkit`` command: ``demo``, ``info``, ``plan``, ``run``, ``export``.

Bad input ends the command with a one-line message on stderr and a non-zero exit code
(2 for a bad command line, 1 for a failed run); ``--debug`` shows the traceback instead.
"""

from __future__ import annotations

import argparse
import sys

from ._common import EXPECTED_ERRORS

__all__ = ["main", "build_parser"]


class _Parser(argparse.ArgumentParser):
    """argparse, with errors on one line (the usage is one ``--help`` away)."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    from .. import __version__
    from . import demo, info, plan, run, worker

    parser = _Parser(prog="udfkit", description="Run user-defined functions over large "
                                                "n-dimensional data sets.")
    parser.add_argument("--version", action="version", version=f"udfkit {__version__}")
    parser.add_argument("--debug", action="store_true", help="show tracebacks of errors")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    demo.add_parser(sub)
    info.add_parser(sub)
    plan.add_parser(sub)
    run.add_parsers(sub)
    worker.add_parser(sub)
    return parser


def main(argv=None) -> int:
    """Entry point of the console script; returns the exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    try:
        if not getattr(args, "needs_context", True):
            return args.func(args)
        from ..api import Context

        with Context() as ctx:
            return args.func(args, ctx)
    except KeyboardInterrupt:
        print(f"udfkit {args.command}: interrupted", file=sys.stderr)
        return 130
    except EXPECTED_ERRORS as e:
        if args.debug:
            raise
        from ._common import error_line

        print(error_line(e, args.command), file=sys.stderr)
        return 1
