"""``mypy udfkit`` passes (the configuration is pyproject.toml's ``[tool.mypy]``).

mypy comes with the ``test`` extra (and ``tox -e typecheck``); with its cache warm the check takes
a few seconds, a cold run about 20 s.
"""

from __future__ import annotations

import pathlib
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent


def test_package_ships_its_type_hints():
    """PEP 561: ``py.typed`` is in the package and installed with it."""
    assert (ROOT / "udfkit" / "py.typed").is_file()
    assert 'udfkit = ["py.typed"]' in (ROOT / "pyproject.toml").read_text(encoding="utf-8")


def test_mypy_passes():
    pytest.importorskip("mypy", reason="mypy is not installed (tox -e typecheck runs it)")
    out = subprocess.run([sys.executable, "-m", "mypy"], cwd=ROOT, capture_output=True,
                         text=True, timeout=300)
    assert out.returncode == 0, f"mypy found errors:\n{out.stdout[-6000:]}{out.stderr[-2000:]}"
