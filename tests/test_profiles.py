"""The hypothesis profiles of tests/conftest.py: chosen by ``$UDFKIT_HYPOTHESIS_PROFILE`` or
``--hypothesis-profile`` (which wins), and seen by ``@settings`` applied at import."""

from __future__ import annotations

import os
import pathlib
import shutil
import subprocess
import sys

import pytest

CONFTEST = pathlib.Path(__file__).resolve().parent / "conftest.py"

PROBE = '''
from hypothesis import given, settings, strategies as st
from udfkit.testing import examples

SEEN = []


@settings(max_examples=examples(3))
@given(st.integers())
def test_counted(x):
    SEEN.append(x)


def test_report():
    d = settings.default
    print(f"PROFILE max_examples={d.max_examples} derandomize={d.derandomize} "
          f"scaled={examples(20)} ran={len(SEEN)}")
'''


def run_probe(tmp_path, env_profile, *args):
    shutil.copy(CONFTEST, tmp_path / "conftest.py")
    (tmp_path / "test_probe.py").write_text(PROBE)
    env = dict(os.environ)
    env.pop("UDFKIT_HYPOTHESIS_PROFILE", None)
    env.pop("CI", None)  # hypothesis loads its own ci profile on CI machines
    if env_profile is not None:
        env["UDFKIT_HYPOTHESIS_PROFILE"] = env_profile
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-s", "-p", "no:cacheprovider", "-c", os.devnull,
         "--rootdir", str(tmp_path), str(tmp_path / "test_probe.py"), *args],
        capture_output=True, text=True, env=env, timeout=300, cwd=tmp_path)
    return proc


@pytest.mark.parametrize("env_profile, args, expect", [
    ("nightly", (), "max_examples=1000 derandomize=False scaled=200 ran=30"),
    ("nightly", ("--hypothesis-profile=ci",), "max_examples=50 derandomize=True scaled=10 ran=2"),
], ids=["env-nightly", "option-ci-wins"])
def test_profile_selection(tmp_path, env_profile, args, expect):
    proc = run_probe(tmp_path, env_profile, *args)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert f"PROFILE {expect}" in proc.stdout, proc.stdout[-3000:]


def test_unknown_profile_is_a_clear_error(monkeypatch):
    from udfkit.testing.profiles import load_profile

    monkeypatch.setenv("UDFKIT_HYPOTHESIS_PROFILE", "weekly")
    with pytest.raises(ValueError, match=r"UDFKIT_HYPOTHESIS_PROFILE: expected one of the hypothesis "
                                         r"profiles \['ci', 'default', 'nightly'\], got 'weekly'"):
        load_profile()  # raises before it loads anything
