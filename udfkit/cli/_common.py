"""Shared pieces of the ``udfkit`` subcommands: data set options, parsing, output."""

from __future__ import annotations

import argparse
import os
import re
import sys
from typing import Any

from ..errors import CLIError, UdfkitError

__all__ = ["CLIError", "add_dataset_options", "dataset_params", "parse_shape", "human_bytes",
           "progress_flag", "EXPECTED_ERRORS", "command_line_message", "error_line"]


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


def _cli_options() -> dict:
    """``{param name: Param}`` of every registered format's command-line parameters."""
    from ..io.formats import all_formats

    options: dict[str, Any] = {}
    for fmt in all_formats().values():
        for param in fmt.params:
            if param.on_command_line:
                options.setdefault(param.name, param)
    return options


def _parse_bool(text: str) -> bool:
    if text.lower() in ("1", "true", "yes", "on"):
        return True
    if text.lower() in ("0", "false", "no", "off"):
        return False
    # "--allow-partial scan.raw" lands here: argparse gives the switch the path as its value
    raise argparse.ArgumentTypeError(f"expected true or false, got {text!r} (a switch alone "
                                     "means true; put it after PATH)")


_ARG_TYPES: dict[str, tuple[Any, str]] = {
    "shape": (parse_shape, "SHAPE"), "int": (int, "N"), "bool": (_parse_bool, "BOOL"),
    "dtype": (str, "DTYPE"), "str": (str, "TEXT"), "backend": (str, "NAME")}


def add_dataset_options(p: argparse.ArgumentParser) -> None:
    """``PATH`` and the load parameters of every format, built from their ``Param`` tables."""
    from ..io.formats import BUILTIN_FORMATS

    p.add_argument("path", metavar="PATH", help="data file, directory or glob pattern")
    p.add_argument("--type", default="auto", metavar="T",
                   help=f"format: {', '.join(BUILTIN_FORMATS)} or auto (default: detect from the file)")
    for name, param in _cli_options().items():
        conv, metavar = _ARG_TYPES.get(param.kind, (str, "VALUE"))
        # a yes/no option alone means yes (--allow-partial), as the errors advise it
        extra: dict[str, Any] = dict(nargs="?", const=True) if param.kind == "bool" else {}
        p.add_argument("--" + name.replace("_", "-"), dest=name, type=conv, default=None,
                       metavar=metavar, help=param.help, **extra)


def dataset_params(args) -> tuple[str, dict]:
    """``(filetype, params)`` for ``Context.load`` from the parsed options (only those given)."""
    params = {"path": args.path}
    for name in _cli_options():
        value = getattr(args, name, None)
        if value is not None:
            params[name] = value
    return args.type, params


_LOAD_CALL = re.compile(r"ctx\.load\((?P<q>'?)(?P<fmt>\w+)(?P=q)(?P<args>[^)]*)\)")
_NEEDS = re.compile(r"(?P<lead>\bneeds )(?P<names>\w+(?:, \w+)*)")
# a Python keyword argument in a message: name=True, name='text', name=(3, 5), name=12
_KEYWORD = re.compile(r"(?P<verb>\bpass )?(?<![\w.-])(?P<name>[a-z][a-z0-9_]*)="
                      r"(?P<value>True|False|'[^']*'|\"[^\"]*\"|\([\d, ]*\)|\[[\d, ]*\]"
                      r"|-?\d+(?:\.\d+)?\b)")

#: keyword arguments of the Python API that a subcommand offers as options of its own
COMMAND_KEYWORDS = {
    "run": {"overwrite": "--overwrite"},
    "export": {"overwrite": "--overwrite", "format": "--format", "compression": "--compression",
               "threshold": "--threshold"},
}

#: the Python names of the things a subcommand works with, as the user of the command knows them
_COMMAND_PREFIXES = {"export": ("RecordUDF: ", "export: ")}


def command_line_message(message: str, command: str) -> str:
    """An error message of the Python API, in the words of the command line.

    The formats' errors name load parameters as Python keywords (``nav_shape``) and show a
    ``ctx.load(...)`` call; on the command line the same parameters are ``--nav-shape`` and
    the call is ``udfkit <command> PATH --type <format> ...``. Advice to pass a keyword
    argument (``pass allow_partial=True``, ``overwrite=True``) becomes advice to add the
    option (``add --allow-partial``, ``--overwrite``) where the command has one.

    Examples
    --------
    >>> command_line_message("raw needs dtype, sig_shape: ctx.load('raw', path=..., dtype=..., "
    ...                      "sig_shape=...)", "info")
    'raw needs --dtype, --sig-shape: udfkit info PATH --type raw --dtype ... --sig-shape ...'
    >>> command_line_message("sync_offset 9 is larger than the 4 frames", "run")
    '--sync-offset 9 is larger than the 4 frames'
    >>> command_line_message("the file ends early; pass allow_partial=True to read it", "run")
    'the file ends early; add --allow-partial to read it'
    >>> command_line_message("RecordUDF: a.npy exists; pass overwrite=True to replace it", "export")
    'a.npy exists; add --overwrite to replace it'
    >>> command_line_message("npy: unknown parameter 'dtype'; accepted: ['path', 'sig_dims']", "run")
    'npy: unknown parameter --dtype; accepted: PATH, --sig-dims'
    >>> command_line_message("with nav_shape=(3, 5) or --sig-shape (8,) it fits", "run")
    'with --nav-shape 3,5 or --sig-shape 8 it fits'
    """
    options = _cli_options()
    keywords = COMMAND_KEYWORDS.get(command, {})

    def flag(name: str) -> str:
        return keywords.get(name) or "--" + name.replace("_", "-")

    def load_call(m):
        args = [a.strip() for a in m.group("args").split(",") if "=" in a]
        words = [f"{flag(a.split('=')[0])} ..." for a in args if a.split("=")[0] != "path"]
        return " ".join([f"udfkit {command} PATH --type {m.group('fmt')}"] + words)

    def needs(m):
        names = [flag(n) if n in options else n for n in m.group("names").split(", ")]
        return m.group("lead") + ", ".join(names)

    def keyword(m):
        name, value = m.group("name"), m.group("value")
        if name not in options and name not in keywords:
            return m.group(0)
        verb = "add " if m.group("verb") else ""
        if value == "True":
            words = flag(name)
        elif value == "False" and name not in options:
            # the command's own switches (--overwrite) are off unless given
            verb, words = ("leave out " if verb else "without "), flag(name)
        elif value == "False":
            words = f"{flag(name)} false"
        elif value[0] in "([":
            words = f"{flag(name)} {value[1:-1].replace(' ', '')}"
        else:
            words = f"{flag(name)} {value.strip(chr(39) + chr(34))}"
        return verb + words

    def name_list(m):
        names = [n.strip("'") for n in m.group(1).split(", ")]
        return ", ".join("PATH" if n == "path" else flag(n) if n in options else n for n in names)

    for prefix in _COMMAND_PREFIXES.get(command, ()):
        if message.startswith(prefix):
            message = message[len(prefix):]
    message = _LOAD_CALL.sub(load_call, message)
    message = _NEEDS.sub(needs, message)
    message = _KEYWORD.sub(keyword, message)
    # lists of parameter names (['path', 'nav_shape']) and quoted names ('dtype')
    message = re.sub(r"\[('\w+'(?:, '\w+')*)\]", name_list, message)
    message = re.sub(r"'(\w+)'", lambda m: flag(m.group(1)) if m.group(1) in options else m.group(0),
                     message)
    # remaining Python keywords with an underscore are unambiguous parameter names
    for name in options:
        if "_" in name:
            message = re.sub(rf"(?<![\w-]){name}\b", flag(name), message)
    # a shape after a flag (--nav-shape=(3, 5), --sig-shape (8, 6)) as the option takes it
    message = re.sub(r"(--[a-z][a-z-]*)[= ]\((\d+(?:, ?\d+)*),?\)",
                     lambda m: f"{m.group(1)} {m.group(2).replace(' ', '')}", message)
    return message


def error_line(error: BaseException, command: str) -> str:
    """The one line ``udfkit COMMAND`` prints for an expected error.

    Library messages are translated with :func:`command_line_message`; an operating
    system error that udfkit did not wrap (``[Errno 13] Permission denied: 'x'``) is
    written as ``x: Permission denied``, the way command-line tools do.

    Parameters
    ----------
    error : BaseException
        One of :data:`EXPECTED_ERRORS`.
    command : str
        The subcommand that raised it.

    Returns
    -------
    str
        ``udfkit COMMAND: error: MESSAGE``, one line.

    Examples
    --------
    >>> error_line(PermissionError(13, "Permission denied", "/data/out.npy"), "run")
    'udfkit run: error: /data/out.npy: Permission denied'
    >>> error_line(ValueError("sync_offset 9 is larger than the 4 frames"), "info")
    'udfkit info: error: --sync-offset 9 is larger than the 4 frames'
    """
    if isinstance(error, OSError) and not isinstance(error, UdfkitError) and error.strerror:
        where = error.filename if error.filename is not None else ""
        if error.filename2 is not None:
            where = f"{where} -> {error.filename2}"
        message = f"{where}: {error.strerror}" if where != "" else error.strerror
    else:
        message = str(error) or type(error).__name__
        message = command_line_message(message.replace("\n", " "), command)
    return f"udfkit {command}: error: {message}"


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
