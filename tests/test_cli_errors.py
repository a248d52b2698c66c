"""The ``udfkit`` command's errors speak the command line, and ``run -o`` writes what it names.

Issue 15, item 8: one line per error, options instead of Python keyword arguments
(``--allow-partial``, not ``allow_partial=True``), ``-o out.npy`` a file, clear errors for a
directory given to ``info`` and for an existing file given to ``run -o``.
"""

import re

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import udfkit.api
from udfkit.cli import build_parser, main
from udfkit.cli._common import COMMAND_KEYWORDS, _cli_options, command_line_message, error_line
from udfkit.testing.profiles import examples

NAV, SIG = (4, 5), (8, 6)
RAW = ["--dtype", "uint16", "--nav-shape", "4,5", "--sig-shape", "8,6"]


@pytest.fixture(autouse=True)
def inline_context(monkeypatch):
    """``main`` on the inline executor: these tests are about words and files, not workers
    (tests/test_cli.py runs the default Context)."""
    real = udfkit.api.Context
    monkeypatch.setattr(udfkit.api, "Context", lambda: real.make_with("inline"))


@pytest.fixture
def data():
    return np.random.default_rng(11).integers(0, 1000, NAV + SIG).astype(np.uint16)


@pytest.fixture
def npy(tmp_path, data):
    path = tmp_path / "scan.npy"
    np.save(path, data)
    return str(path)


@pytest.fixture
def short_npy(tmp_path, data):
    """scan.npy without its last 500 bytes: 14 whole frames of 20 (96 bytes each)."""
    path = tmp_path / "short.npy"
    np.save(path, data)
    raw = path.read_bytes()
    path.write_bytes(raw[:-500])
    return str(path)


def cli(args, capsys):
    try:
        code = main([str(a) for a in args])
    except SystemExit as e:
        code = e.code
    out, err = capsys.readouterr()
    return code, out, err


def one_line(err):
    assert err.count("\n") == 1 and "Traceback" not in err, err
    # no Python advice left in a command-line error
    assert not re.search(r"\b[a-z_]+=(True|False)\b", err), err
    assert "ctx.load" not in err, err
    return err


# ---------------------------------------------------------------- run -o


def test_out_npy_is_a_file(npy, data, tmp_path, capsys):
    out = tmp_path / "sub" / "out.npy"
    code, stdout, err = cli(["run", "sum", npy, "-o", out], capsys)
    assert code == 0, err
    assert out.is_file()
    np.testing.assert_array_equal(np.load(out), data.astype(np.float64).sum(axis=(0, 1)))
    assert str(out) in stdout
    # an existing file needs --overwrite
    before = out.read_bytes()
    code, _, err = cli(["run", "sumsig", npy, "-o", out], capsys)
    assert code == 1 and f"-o {str(out)!r} exists; add --overwrite" in one_line(err)
    assert out.read_bytes() == before
    code, _, err = cli(["run", "sumsig", npy, "-o", out, "--overwrite"], capsys)
    assert code == 0, err
    np.testing.assert_array_equal(np.load(out), data.astype(np.float64).sum(axis=(2, 3)))


def test_out_npz_holds_every_result(npy, data, tmp_path, capsys):
    out = tmp_path / "all.npz"
    code, _, err = cli(["run", "sum,stddev", npy, "-o", out], capsys)
    assert code == 0, err
    with np.load(out) as z:
        assert {"sum_intensity", "stddev_var", "stddev_mean"} <= set(z.files)
        flat = data.reshape(-1, *SIG).astype(np.float64)
        np.testing.assert_array_equal(z["sum_intensity"], flat.sum(axis=0))
        np.testing.assert_allclose(z["stddev_var"], flat.var(axis=0))
        np.testing.assert_allclose(z["stddev_mean"], flat.mean(axis=0))


def test_out_file_name_is_kept(npy, data, tmp_path, capsys):
    out = tmp_path / "RESULT.NPY"
    code, _, err = cli(["run", "sum", npy, "-o", out], capsys)
    assert code == 0, err
    assert [p.name for p in tmp_path.glob("RESULT*")] == ["RESULT.NPY"]
    np.testing.assert_array_equal(np.load(out), data.astype(np.float64).sum(axis=(0, 1)))


def test_existing_directory_named_npy_stays_a_directory(npy, tmp_path, capsys):
    out = tmp_path / "results.npy"
    out.mkdir()
    code, _, err = cli(["run", "sum", npy, "-o", out], capsys)
    assert code == 0, err
    assert (out / "sum_intensity.npy").is_file()


@pytest.mark.parametrize("args, needle", [
    # several results for one .npy file: refused before the run, nothing written
    (["run", "stddev", "{npy}", "-o", "{tmp}/o.npy"],
     "-o '{tmp}/o.npy' names one .npy file, but stddev gives 6 results (num_frames, sum, varsum, "
     "mean, var, std); name a directory or a .npz file"),
    (["run", "sum,sumsig", "{npy}", "-o", "{tmp}/o.npy"], "2 UDFs give several results"),
    (["run", "sum", "{npy}", "--npz", "-o", "{tmp}/o.npy"], "drop --npz"),
    # an existing file where a directory is wanted
    (["run", "sum", "{npy}", "-o", "{tmp}/notes.txt"], "is an existing file, not a directory"),
    (["run", "sum", "{npy}", "-o", "{tmp}/notes.txt/deeper"],
     "is a file, so no directory can be made"),
    # the input itself, even with --overwrite
    (["run", "sum", "{npy}", "-o", "{npy}", "--overwrite"], "is the input file"),
])
def test_run_out_errors(args, needle, npy, tmp_path, capsys):
    (tmp_path / "notes.txt").write_text("not a directory")
    fill = dict(npy=npy, tmp=str(tmp_path))
    code, _, err = cli([a.format(**fill) for a in args], capsys)
    assert code == 1
    assert needle.format(**fill) in one_line(err)
    assert not (tmp_path / "o.npy").exists()


# ---------------------------------------------------------------- options, not keywords


def test_truncated_file_advises_the_switch(short_npy, data, tmp_path, capsys):
    code, _, err = cli(["run", "sum", short_npy, "-o", tmp_path / "o"], capsys)
    assert code == 1
    assert "add --allow-partial to read" in one_line(err)
    # the advice works as written: the switch alone
    code, _, err = cli(["run", "sum", short_npy, "--allow-partial", "-o", tmp_path / "o.npy"],
                       capsys)
    assert code == 0, err
    whole = (2048 - 500 - 128) // (8 * 6 * 2)  # bytes after the npy header / frame bytes
    np.testing.assert_array_equal(np.load(tmp_path / "o.npy"),
                                  data.reshape(-1, *SIG)[:whole].astype(np.float64).sum(axis=0))
    # and with a value, as before
    code, _, err = cli(["info", short_npy, "--allow-partial", "true", "--json"], capsys)
    assert code == 0, err
    code, _, err = cli(["info", short_npy, "--allow-partial", "no"], capsys)
    assert code == 1 and "--allow-partial" in one_line(err)


def test_switch_before_path_says_so(short_npy, capsys):
    code, _, err = cli(["info", "--allow-partial", short_npy], capsys)
    assert code == 2
    assert "expected true or false" in err and "put it after PATH" in one_line(err)


def test_export_advice(npy, tmp_path, capsys):
    target = tmp_path / "copy.npy"
    code, _, err = cli(["export", npy, "-o", target], capsys)
    assert code == 0, err
    code, _, err = cli(["export", npy, "-o", target], capsys)
    assert code == 1
    assert one_line(err) == f"udfkit export: error: {target} exists; add --overwrite to replace it\n"
    code, _, err = cli(["export", npy, "-o", tmp_path], capsys)
    assert code == 1 and "--format binary" in one_line(err)


def test_info_on_a_directory(tmp_path, capsys):
    empty = tmp_path / "empty"
    empty.mkdir()
    code, _, err = cli(["info", empty], capsys)
    assert code == 1
    assert f"cannot detect the format of {str(empty)!r}" in one_line(err)
    assert "udfkit info PATH --type FORMAT" in err
    for extra in (["--type", "npy"], ["--type", "raw", *RAW]):
        code, _, err = cli(["info", empty, *extra], capsys)
        assert code == 1 and f"{str(empty)!r} is not a regular file" in one_line(err)
    # an option the format does not take
    code, _, err = cli(["info", empty, "--type", "npy", "--dtype", "uint16"], capsys)
    assert code == 1
    assert "unknown parameter --dtype; accepted parameters: PATH, --nav-shape" in one_line(err)


def test_shapes_in_messages_as_options(tmp_path, data, capsys):
    path = tmp_path / "short.raw"
    path.write_bytes(data.tobytes()[:-100])
    code, _, err = cli(["run", "sum", path, *RAW, "-o", tmp_path / "o"], capsys)
    assert code == 1
    one_line(err)
    assert "--sig-shape 8,6" in err and "--nav-shape 4,5" in err
    assert "(8, 6)" not in err and "sig_shape" not in err


def test_os_errors_name_the_path():
    e = PermissionError(13, "Permission denied", "/data/out.npy")
    assert error_line(e, "run") == "udfkit run: error: /data/out.npy: Permission denied"
    e = FileNotFoundError(2, "No such file or directory", "a", None, "b")
    assert error_line(e, "export") == "udfkit export: error: a -> b: No such file or directory"
    assert error_line(KeyError("x"), "info") == "udfkit info: error: 'x'"


_names = sorted(_cli_options())
_subcommands = build_parser()._subparsers._group_actions[0].choices


@settings(max_examples=examples(100))
@given(command=st.sampled_from(["info", "run", "export"]), data=st.data())
def test_every_keyword_advice_names_a_real_option(command, data):
    """``pass NAME=VALUE`` of any load parameter (or of the command's own keyword
    arguments) becomes an option that the command's parser has, with its value in the
    form the option takes."""
    names = _names + sorted(COMMAND_KEYWORDS.get(command, {}))
    name = data.draw(st.sampled_from(names))
    value = data.draw(st.sampled_from(["True", "False", "(3, 5)", "[7]", "'uint16'", "12"]))
    message = command_line_message(f"the file is odd; pass {name}={value} to read it", command)
    flag = re.search(r"(?:add|leave out) (--[a-z-]+)", message)
    assert flag, message
    assert flag.group(1) in _subcommands[command]._option_string_actions, message
    assert "=" not in message and "pass" not in message, message
    if value == "(3, 5)":
        assert message.endswith(f"{flag.group(1)} 3,5 to read it")
