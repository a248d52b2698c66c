"""The documentation: its Python examples run, and Sphinx builds it without warnings.

The code blocks of the user guide are executed here, page by page, so that the guide
cannot drift from the API. That needs only udfkit. The Sphinx build needs the ``docs``
extra (``pip install ".[docs]"``) and is skipped without it.
"""

from __future__ import annotations

import pathlib
import re
import subprocess
import sys
import textwrap

import pytest

DOCS = pathlib.Path(__file__).resolve().parent.parent / "docs"

#: pages whose ``.. code-block:: python`` blocks run, in order, in one namespace per page
GUIDE_PAGES = ["index.rst", "concepts.rst", "writing-udfs.rst", "formats.rst", "builtin-udfs.rst"]
#: pages added one per detector format / topic: every such page that exists is a guide page
#: too (run and listed in the toctree), so a new page is tested without editing this list
GUIDE_PAGES += sorted(p.relative_to(DOCS).as_posix() for p in (DOCS / "detectors").glob("*.rst"))
GUIDE_PAGES += [p for p in ("physics-udfs.rst", "porting.rst", "thunder-images.rst", "series.rst",
                           "results-on-disk.rst")
                if (DOCS / p).is_file()]

#: languages a guide page may use; ``python`` blocks run, the others are shown only
SHOWN_ONLY = {"console", "text"}

_DIRECTIVE = re.compile(r"^(?P<indent>\s*)\.\.\s+(?:code-block|code|sourcecode)::\s*(?P<lang>\S*)\s*$")


def code_blocks(text: str) -> list[tuple[int, str, str]]:
    """``(line number, language, code)`` of every code-block directive in reST ``text``.

    The block is the indented text after the directive (options such as ``:caption:`` are
    skipped), dedented; the line number is that of its first line of code.
    """
    lines = text.splitlines()
    blocks = []
    i = 0
    while i < len(lines):
        m = _DIRECTIVE.match(lines[i])
        i += 1
        if not m:
            continue
        indent = len(m.group("indent"))
        # directive options, then blank lines, then the code
        while i < len(lines) and lines[i].strip().startswith(":") \
                and len(lines[i]) - len(lines[i].lstrip()) > indent:
            i += 1
        while i < len(lines) and not lines[i].strip():
            i += 1
        first = i
        while i < len(lines) and (not lines[i].strip()
                                  or len(lines[i]) - len(lines[i].lstrip()) > indent):
            i += 1
        code = textwrap.dedent("\n".join(lines[first:i])).strip("\n")
        blocks.append((first + 1, m.group("lang") or "python", code))
    return blocks


def test_code_block_parser():
    sample = textwrap.dedent("""\
        Title
        =====

        .. code-block:: python

           x = 1

           y = x + 1

        text

        ``def``
           .. code-block:: python
              :caption: nested

              z = 3
        .. code-block:: console

           $ udfkit --help
        """)
    assert code_blocks(sample) == [
        (6, "python", "x = 1\n\ny = x + 1"), (16, "python", "z = 3"),
        (19, "console", "$ udfkit --help")]


@pytest.mark.parametrize("page", GUIDE_PAGES)
def test_guide_code_blocks_run(page, tmp_path, monkeypatch):
    """Every Python block of the page runs, in order, in one namespace, in a scratch directory."""
    path = DOCS / page
    blocks = code_blocks(path.read_text(encoding="utf-8"))
    langs = {lang for _, lang, _ in blocks}
    assert langs <= SHOWN_ONLY | {"python"}, (
        f"{page}: code-block languages {sorted(langs - SHOWN_ONLY - {'python'})} would be neither "
        "run nor meant as shell/text; use 'python' (runs), 'console' or 'text'")
    python = [(line, code) for line, lang, code in blocks if lang == "python"]
    assert python, f"{page} has no python code block"
    monkeypatch.chdir(tmp_path)
    namespace = {"__name__": f"udfkit_docs_{path.stem.replace('-', '_')}"}
    for line, code in python:
        exec(compile(code, f"{path}:{line}", "exec"), namespace)  # noqa: S102


def test_guide_pages_are_in_the_toctree():
    index = (DOCS / "index.rst").read_text(encoding="utf-8")
    for page in GUIDE_PAGES[1:] + ["cli.rst", "api/index.rst"]:
        assert (DOCS / page).is_file(), page
        assert re.search(rf"^\s+{re.escape(page[:-4])}\s*$", index, re.M), f"{page} not in index.rst"


def _require(module: str):
    try:
        __import__(module)
    except ImportError:
        pytest.skip(f"{module} is not installed; it is in the docs extra: pip install '.[docs]'")


def test_sphinx_build(tmp_path):
    """The HTML build succeeds with warnings as errors, offline, and has the key pages."""
    _require("sphinx")
    _require("numpydoc")
    conf = (DOCS / "conf.py").read_text(encoding="utf-8")
    assert "sphinx.ext.intersphinx" not in conf, "the build must not need network access"
    out = tmp_path / "html"
    proc = subprocess.run(
        [sys.executable, "-m", "sphinx", "-W", "--keep-going", "-E", "-q", "-b", "html",
         "-d", str(tmp_path / "doctrees"), str(DOCS), str(out)],
        capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-5000:]
    for page in ["index", "concepts", "writing-udfs", "formats", "builtin-udfs", "cli",
                 "api/index", "api/context", "api/udf", "api/common", "api/io", "api/executor",
                 "api/errors", "genindex", "py-modindex", "search"]:
        assert (out / f"{page}.html").is_file(), page

    def ids(page):
        return set(re.findall(r'id="([\w.]+)"', (out / f"{page}.html").read_text(encoding="utf-8")))

    assert {"udfkit.Context", "udfkit.Context.load", "udfkit.Context.run_udf",
            "udfkit.Context.run_udf_iter", "udfkit.Context.map"} <= ids("api/context")
    assert {"udfkit.UDF", "udfkit.UDF.buffer", "udfkit.UDF.process_tile", "udfkit.UDF.merge",
            "udfkit.udf.BufferResult", "udfkit.udf.RunResults"} <= ids("api/udf")
    assert {"udfkit.io.formats.raw.RawFileDataSet", "udfkit.io.formats.npy.NPYDataSet",
            "udfkit.io.formats.memory.MemoryDataSet"} <= ids("api/io")
    assert {"udfkit.errors.DataSetError", "udfkit.errors.UdfkitError"} <= ids("api/errors")
    builtins = {f"udfkit.udf.{name}" for name in (
        "SumUDF", "SumSigUDF", "StdDevUDF", "StatsUDF", "PickUDF", "ApplyMasksUDF", "LogsumUDF",
        "MapUDF", "RecordUDF")}
    assert builtins <= ids("builtin-udfs")
