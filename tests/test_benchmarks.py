"""The benchmark scripts at least start: they import, and their options parse (``--help``).

Running them needs the standard 2 GiB files and minutes; ``--help`` catches the breakage a
refactoring leaves behind (imports, names) in a second.
"""

import subprocess
import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parent.parent / "benchmarks"
SCRIPTS = sorted(p.name for p in BENCHMARKS.glob("bench_*.py") if p.name != "bench_common.py")


def test_every_benchmark_is_listed():
    assert {"bench_io.py", "bench_executors.py", "bench_corrections.py", "bench_builtins.py",
            "bench_patterns.py"} <= set(SCRIPTS)


@pytest.mark.parametrize("script", SCRIPTS)
def test_benchmark_starts(script):
    out = subprocess.run([sys.executable, str(BENCHMARKS / script), "--help"], capture_output=True,
                         text=True, timeout=120, cwd=BENCHMARKS)
    assert out.returncode == 0, out.stderr
    assert "usage" in out.stdout.lower()
