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


def test_bench_sparse_quick(tmp_path):
    """bench_sparse.py's smoke test runs end to end and finds the three ways agree."""
    out = subprocess.run([sys.executable, str(BENCHMARKS / "bench_sparse.py"), "--quick",
                          "--executor", "inline", "--dir", str(tmp_path)],
                         capture_output=True, text=True, timeout=300, cwd=BENCHMARKS)
    assert out.returncode == 0, out.stderr
    rows = [line.split() for line in out.stdout.splitlines() if line.startswith(("sum ", "masks4 "))]
    assert [r[0] for r in rows] == ["sum", "masks4"] and all(r[-1] == "True" for r in rows)


@pytest.mark.slow
def test_bench_series_quick_run():
    """bench_series.py on its small stack: both contenders run and agree with numpy."""
    out = subprocess.run([sys.executable, str(BENCHMARKS / "bench_series.py"), "--quick",
                          "--executor", "inline", "--cpus", "1"], capture_output=True, text=True,
                         timeout=600, cwd=BENCHMARKS)
    assert out.returncode == 0, out.stderr
    assert "every result == numpy: True" in out.stdout and "udfkit == dask: True" in out.stdout


@pytest.mark.cluster
def test_bench_scale_smallest_run():
    """bench_scale.py on one worker, four tiny partitions: it drives the run's merge and the
    executor's task loop directly, so it breaks when their interfaces move."""
    out = subprocess.run([sys.executable, str(BENCHMARKS / "bench_scale.py"), "--workers", "1",
                          "--parts", "4", "--sig", "32", "--param-mib", "1", "--repeats", "1"],
                         capture_output=True, text=True, timeout=300, cwd=BENCHMARKS)
    assert out.returncode == 0, out.stderr
    rows = [line.split() for line in out.stdout.splitlines() if line.split()[:1] == ["1"]]
    assert len(rows) == 1 and len(rows[0]) == 11, out.stdout


@pytest.mark.slow
def test_bench_results_on_disk_quick_run(tmp_path):
    """bench_results_on_disk.py on its small file: direct and main-process zarr writes run
    and their first binned frame equals numpy (the script asserts it)."""
    out = subprocess.run([sys.executable, str(BENCHMARKS / "bench_results_on_disk.py"), "--quick",
                          "--out", str(tmp_path), "--configs", "udfkit-zarr,udfkit-zarr-main"],
                         capture_output=True, text=True, timeout=600, cwd=BENCHMARKS)
    assert out.returncode == 0, out.stderr
    assert "udfkit-zarr-main" in out.stdout and "failed" not in out.stdout
