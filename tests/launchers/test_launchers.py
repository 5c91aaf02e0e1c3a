"""The ./pants and ./coex launchers (issue #2): the pinned CPython 3.9 venv and its errors."""
import os
import subprocess
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
PY311 = os.path.expanduser("~/.pyenv/versions/3.11.7/bin/python3.11")


def run(argv, env=None, **kw):
    return subprocess.run(argv, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          universal_newlines=True, timeout=300, **kw)


def test_pants_version_is_2_17_1():
    r = run(["./pants", "--version"], env=dict(os.environ, PANTS_PANTSD="false"))
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "2.17.1"
    assert "scheduled to be removed" not in r.stderr  # NO_SCIE_WARNING is set by the launcher


def test_coex_help_runs_from_the_same_venv():
    r = run(["./coex", "--help"])
    assert r.returncode == 0, r.stderr
    assert "create" in r.stdout and "lock" in r.stdout


@pytest.mark.parametrize("launcher", ["./pants", "./coex"])
def test_no_python39_anywhere_says_what_to_install(tmp_path, launcher):
    """No COEX_PANTS_PYTHON, no python3.9 on PATH, no pyenv: a message naming what to install,
    exit 1, and no venv directory started."""
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "XDG_CACHE_HOME": str(tmp_path / "cache")}
    if os.path.exists("/usr/bin/python3.9"):
        pytest.skip("this machine has a system python3.9")
    r = run([launcher, "--version"], env=env)
    assert r.returncode == 1
    assert "needs CPython 3.9" in r.stderr and "pyenv install 3.9" in r.stderr
    assert "COEX_PANTS_PYTHON" in r.stderr
    assert not (tmp_path / "cache" / "coex-pants").exists()


def test_wrong_coex_pants_python_is_named(tmp_path):
    env = dict(os.environ, COEX_PANTS_PYTHON=PY311 if os.path.exists(PY311) else sys.executable + "-missing",
               XDG_CACHE_HOME=str(tmp_path / "cache"))
    r = run(["./pants", "--version"], env=env)
    assert r.returncode == 1
    assert "COEX_PANTS_PYTHON=%s is not a working CPython 3.9" % env["COEX_PANTS_PYTHON"] in r.stderr
    assert not (tmp_path / "cache" / "coex-pants").exists()


def test_pyenv_shim_that_is_not_39_is_not_taken(tmp_path):
    """A `python3.9` on PATH that is not really 3.9 (a pyenv shim failing, a wrong link) is
    skipped; pyenv's versions directory is used instead."""
    fake = tmp_path / "bin"
    fake.mkdir()
    (fake / "python3.9").write_text("#!/bin/sh\necho 'pyenv: python3.9: command not found' >&2\nexit 127\n")
    os.chmod(str(fake / "python3.9"), 0o755)
    env = dict(os.environ, PATH="%s:%s" % (fake, os.environ["PATH"]), PANTS_PANTSD="false")
    env.pop("COEX_PANTS_PYTHON", None)
    r = run(["./coex", "--help"], env=env)
    assert r.returncode == 0, r.stderr
