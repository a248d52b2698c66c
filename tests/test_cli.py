"""The ``udfkit`` command: demo, info, run, export, and its error behaviour."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from udfkit import Context, __version__
from udfkit.cli import main
from udfkit.udf import StdDevUDF, SumSigUDF, SumUDF

NAV, SIG = (4, 5), (8, 6)


@pytest.fixture
def data():
    rng = np.random.default_rng(7)
    return rng.integers(0, 1000, NAV + SIG).astype(np.uint16)


@pytest.fixture
def raw_file(tmp_path, data):
    path = tmp_path / "scan.raw"
    data.tofile(path)
    return str(path)


@pytest.fixture
def npy_file(tmp_path, data):
    path = tmp_path / "scan.npy"
    np.save(path, data)
    return str(path)


RAW_ARGS = ["--dtype", "uint16", "--nav-shape", "4,5", "--sig-shape", "8x6"]


def run_cli(args, capsys):
    code = main(args)
    out, err = capsys.readouterr()
    return code, out, err


def test_version(capsys):
    with pytest.raises(SystemExit) as e:
        main(["--version"])
    assert e.value.code == 0
    assert __version__ in capsys.readouterr().out


@pytest.mark.parametrize("cmd", [[], ["demo"], ["info"], ["plan"], ["run"], ["export"], ["worker"]])
def test_help_everywhere(cmd, capsys):
    with pytest.raises(SystemExit) as e:
        main(cmd + ["--help"])
    assert e.value.code == 0
    assert "usage: udfkit" in capsys.readouterr().out


@pytest.mark.parametrize("kind", ["raw", "npy"])
def test_info_matches_api(kind, raw_file, npy_file, capsys):
    path = raw_file if kind == "raw" else npy_file
    extra = RAW_ARGS if kind == "raw" else []
    code, out, _ = run_cli(["info", path, *extra, "--num-partitions", "3", "--json"], capsys)
    assert code == 0
    facts = json.loads(out)
    ctx = Context.make_with("inline")
    params = dict(dtype="uint16", nav_shape=NAV, sig_shape=SIG) if kind == "raw" else {}
    ds = ctx.load(kind, path=path, num_partitions=3, **params)
    assert facts["format"] == kind
    assert tuple(facts["nav_shape"]) == NAV and tuple(facts["sig_shape"]) == SIG
    assert facts["dtype"] == ds.dtype.str
    assert facts["partitions"] == ds.get_num_partitions() == 3
    assert sum(facts["partition_frames"]) == 20
    assert facts["file_size"] == os.path.getsize(path)
    from udfkit.udf.driver import UDFRun
    assert tuple(facts["tile_shape_native"]) == UDFRun(ds, [SumUDF()]).scheme.shape
    # the human-readable form names the same facts
    code, out, _ = run_cli(["info", path, *extra], capsys)
    assert code == 0 and "uint16" in out and "(4, 5)" in out and "(8, 6)" in out


@pytest.mark.parametrize("kind", ["raw", "npy"])
def test_run_matches_api(kind, raw_file, npy_file, data, tmp_path, capsys):
    path = raw_file if kind == "raw" else npy_file
    extra = RAW_ARGS if kind == "raw" else []
    roi = np.random.default_rng(1).random(NAV) > 0.4
    np.save(tmp_path / "roi.npy", roi)
    out_dir = tmp_path / "out"
    code, out, err = run_cli(["run", "sum,sumsig,stddev", path, *extra, "--roi",
                              str(tmp_path / "roi.npy"), "-o", str(out_dir)], capsys)
    assert code == 0, err
    ctx = Context.make_with("inline")
    ds = ctx.load("auto", path=path, **({} if kind == "npy" else
                                        dict(dtype="uint16", nav_shape=NAV, sig_shape=SIG)))
    ref = ctx.run_udf(dataset=ds, udf=[SumUDF(), SumSigUDF(), StdDevUDF()], roi=roi)
    np.testing.assert_array_equal(np.load(out_dir / "sum_intensity.npy"), ref[0]["intensity"].data)
    np.testing.assert_array_equal(np.load(out_dir / "sumsig_intensity.npy"), ref[1]["intensity"].data)
    np.testing.assert_array_equal(np.load(out_dir / "stddev_var.npy"), ref[2]["var"].data)
    # and numpy agrees
    sel = data[roi].astype(np.float64)
    np.testing.assert_allclose(np.load(out_dir / "stddev_var.npy"), sel.var(axis=0))
    assert "GB/s" in out


@pytest.mark.parametrize("backend", ["buffered", "direct"])
def test_run_with_io_backend(backend, raw_file, data, tmp_path, capsys):
    out_dir = tmp_path / "out"
    code, out, err = run_cli(["run", "sum", raw_file, *RAW_ARGS, "--io-backend", backend,
                              "-o", str(out_dir)], capsys)
    assert code == 0, err
    np.testing.assert_array_equal(np.load(out_dir / "sum_intensity.npy"),
                                  data.astype(np.float64).sum(axis=(0, 1)))
    code, out, err = run_cli(["run", "sum", raw_file, *RAW_ARGS, "--io-backend", "tape",
                              "-o", str(out_dir)], capsys)
    assert code == 1 and "--io-backend" in err and "buffered" in err


def test_run_npz_and_masks(raw_file, data, tmp_path, capsys):
    masks = np.random.default_rng(2).random((3,) + SIG).astype(np.float32)
    np.save(tmp_path / "masks.npy", masks)
    code, _, err = run_cli(["run", "masks,pick", raw_file, *RAW_ARGS, "--masks",
                            str(tmp_path / "masks.npy"), "-o", str(tmp_path / "o"), "--npz"], capsys)
    assert code == 0, err
    got = np.load(tmp_path / "o" / "masks.npz")["intensity"]
    ref = np.einsum("yxij,mij->yxm", data.astype(np.float64), masks)
    np.testing.assert_allclose(got, ref, rtol=1e-5)
    np.testing.assert_array_equal(np.load(tmp_path / "o" / "pick.npz")["intensity"],
                                  data.reshape(-1, *SIG))


def test_export_and_reload_via_sidecar(raw_file, data, tmp_path, capsys):
    target = str(tmp_path / "copy.bin")
    code, _, err = run_cli(["export", raw_file, *RAW_ARGS, "-o", target], capsys)
    assert code == 0, err
    side = json.loads(open(target + ".json").read())
    assert side == {"dtype": "<u2", "nav_shape": list(NAV), "sig_shape": list(SIG)}
    # the sidecar fills the raw parameters, also for "auto"
    code, out, err = run_cli(["info", target, "--json"], capsys)
    assert code == 0, err
    assert json.loads(out)["nav_shape"] == list(NAV)
    np.testing.assert_array_equal(np.fromfile(target, dtype="<u2").reshape(NAV + SIG), data)
    # no overwrite without --overwrite
    before = os.path.getmtime(target)
    code, _, err = run_cli(["export", raw_file, *RAW_ARGS, "-o", target], capsys)
    assert code == 1 and "exists" in err and err.count("\n") == 1
    assert os.path.getmtime(target) == before
    code, _, err = run_cli(["export", raw_file, *RAW_ARGS, "-o", target, "--overwrite"], capsys)
    assert code == 0, err


@pytest.mark.parametrize("threshold, fmt", [(None, None), (400, None), (999.5, "raw_csr")])
def test_export_raw_csr_and_reload(raw_file, data, tmp_path, capsys, threshold, fmt):
    """--format raw_csr (or a .toml target) writes LiberTEM's sparse format with the pixels
    that are not zero (or above --threshold); udfkit reads it back ("auto") to the same
    frames, and ``udfkit run`` on it detects the format."""
    target = str(tmp_path / ("sparse.toml" if fmt is None else "sparse.descriptor"))
    args = ["export", raw_file, *RAW_ARGS, "-o", target, "--no-progress"]
    args += [] if fmt is None else ["--format", fmt]
    args += [] if threshold is None else ["--threshold", str(threshold)]
    code, out, err = run_cli(args, capsys)
    assert code == 0, err
    assert out.startswith(f"wrote {target} (") and "sparse" in out
    kept = data if threshold is None else np.where(np.abs(data) > threshold, data, 0)
    with Context.make_with("inline") as ctx:
        ds = ctx.load("raw_csr", path=target)
        assert ds.shape.to_tuple() == NAV + SIG
        assert ds.meta.metadata["nnz"] == np.count_nonzero(kept)
        res = ctx.run_udf(dataset=ds, udf=SumUDF())
    np.testing.assert_array_equal(res["intensity"].data, kept.sum(axis=(0, 1), dtype=np.float64))
    if threshold is not None:
        return
    code, _, err = run_cli(["run", "sumsig", target,
                            "-o", str(tmp_path / "sumsig.npy"), "--no-progress"], capsys)
    assert code == 0, err
    np.testing.assert_array_equal(np.load(tmp_path / "sumsig.npy"), kept.sum(axis=(2, 3)))


@pytest.mark.parametrize("extra, needle", [
    (["-o", "{tmp}/copy.npy", "--threshold", "3"],
     "only --format raw_csr takes one, got --threshold 3.0 for npy"),
    (["-o", "{tmp}/s.toml", "--threshold", "-1"], "threshold must be a finite number >= 0"),
    (["-o", "{tmp}/s.toml", "--threshold", "many"],
     "argument --threshold: expected a number >= 0, got 'many'"),
])
def test_export_threshold_errors(raw_file, tmp_path, capsys, extra, needle):
    args = [a.replace("{tmp}", str(tmp_path)) for a in extra]
    try:
        code, _, err = run_cli(["export", raw_file, *RAW_ARGS, "--no-progress", *args], capsys)
    except SystemExit as e:  # argparse refuses the value itself
        code, err = e.code, capsys.readouterr().err
    assert code != 0 and needle in err, err
    assert not os.path.exists(tmp_path / "s.toml") and not os.path.exists(tmp_path / "copy.npy")


@pytest.mark.parametrize("args, code, needle", [
    (["info", "/no/such/file.npy"], 1, "does not exist"),
    (["run", "sum", "/no/such/file.npy", "-o", "x"], 1, "does not exist"),
    (["run", "nosuchudf", "{npy}", "-o", "{tmp}"], 1, "unknown UDF"),
    (["run", "masks", "{npy}", "-o", "{tmp}"], 1, "--masks"),
    (["run", "sum", "{raw}", "--dtype", "uint16", "--nav-shape", "9,9", "--sig-shape", "8,6",
      "-o", "{tmp}"], 1, "--nav-shape"),
    # the layout a headerless file needs, in the words of the command line
    (["info", "{raw}"], 1, "raw needs --dtype, --nav-shape, --sig-shape: udfkit info PATH --type raw"),
    (["info", "{raw}", "--nav-shape", "4,a"], 2, "shape"),
    (["run", "sum", "{npy}"], 2, "-o"),
    (["frobnicate"], 2, "invalid choice"),
])
def test_bad_input_one_line_error(args, code, needle, raw_file, npy_file, tmp_path, capsys):
    args = [a.format(raw=raw_file, npy=npy_file, tmp=str(tmp_path / "o")) for a in args]
    try:
        got = main(args)
    except SystemExit as e:
        got = e.code
    out, err = capsys.readouterr()
    assert got == code
    assert needle in err
    assert err.count("\n") == 1, err
    assert "Traceback" not in err


def test_debug_shows_traceback(capsys):
    with pytest.raises(Exception, match="does not exist"):
        main(["--debug", "info", "/no/such/file.npy"])


def test_demo_small(tmp_path, capsys):
    args = ["demo", "--nav-shape", "8,8", "--sig-shape", "32,32", "--cache", str(tmp_path / "c"),
            "--out", str(tmp_path / "out"), "--no-progress"]
    code, out, err = run_cli(args, capsys)
    assert code == 0, err
    assert "written in" in out
    names = {"sum_intensity", "sumsig_intensity", "stddev_mean", "stddev_std", "ring_adf", "disk_bf"}
    assert names <= {p.stem for p in (tmp_path / "out").glob("*.npy")}
    # the results are those of the numbers in the cached scan
    (scan,) = (tmp_path / "c").glob("*.raw")
    data = np.fromfile(scan, dtype=np.uint16).reshape(8, 8, 32, 32).astype(np.float64)
    np.testing.assert_array_equal(np.load(tmp_path / "out" / "sum_intensity.npy"), data.sum(axis=(0, 1)))
    from udfkit.cli.demo import ring_mask
    np.testing.assert_allclose(np.load(tmp_path / "out" / "ring_adf.npy"),
                               (data * ring_mask((32, 32))).sum(axis=(2, 3)), rtol=1e-5)
    # the particle shows up in the ring detector: its image is not flat
    adf = np.load(tmp_path / "out" / "ring_adf.npy")
    assert adf.max() > 2 * adf.min()
    code, out, _ = run_cli(args, capsys)
    assert code == 0 and "from the cache" in out


def test_console_script_and_module(tmp_path):
    exe = os.path.join(os.path.dirname(sys.executable), "udfkit")
    cmds = [[sys.executable, "-m", "udfkit"]] + ([[exe]] if os.path.exists(exe) else [])
    for cmd in cmds:
        r = subprocess.run(cmd + ["--version"], capture_output=True, text=True, timeout=60)
        assert r.returncode == 0 and __version__ in r.stdout
        r = subprocess.run(cmd + ["info", str(tmp_path / "missing.npy")], capture_output=True,
                           text=True, timeout=60)
        assert r.returncode == 1
        assert r.stderr.count("\n") == 1 and "Traceback" not in r.stderr


def test_cli_page_names_only_real_options(capsys):
    """Every --flag and subcommand the CLI page of the docs mentions exists."""
    import re
    from pathlib import Path

    page = (Path(__file__).parent.parent / "docs" / "cli.rst").read_text()
    helps = ""
    for cmd in ([], ["demo"], ["info"], ["plan"], ["run"], ["export"], ["worker"]):
        with pytest.raises(SystemExit):
            main(cmd + ["--help"])
        helps += capsys.readouterr().out
    flags = set(re.findall(r"(--[a-z][a-z-]+)", page))
    assert flags, "no options found on the page"
    missing = sorted(f for f in flags if f not in helps)
    assert not missing, f"docs/cli.rst mentions options the command does not have: {missing}"
    for sub in re.findall(r"``udfkit ([a-z]+)", page):
        assert sub in ("demo", "info", "plan", "run", "export", "worker"), sub
