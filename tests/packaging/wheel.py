"""The `pants-backend-coex` wheel, built exactly as the README says (`pip wheel --no-deps -w OUT .`
at the repository root), and venvs that install it the way a user does.

* ``build_wheel(out_dir) -> Path``: the wheel file.
* fixtures (registered by tests/conftest.py): ``coex_wheel``, ``wheel_bin`` (a venv with the
  wheel: the `coex` command), ``pants_wheel_bin`` (a venv with Pants 2.17.1 and the wheel),
  ``pants_bin`` (a venv with Pants 2.17.1 only, for `[GLOBAL].plugins`).
* ``make_venv(dest, *requirements)``: a CPython 3.9 venv with the requirements (a wheel's path,
  or names; their dependencies from PyPI or pip's cache) installed; returns its ``bin``
  directory. ``pip(bin_dir, *args)`` runs that venv's pip.
"""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
DIST = "pants-backend-coex"


def _run(argv, **kw):
    proc = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                          timeout=900, **kw)
    if proc.returncode != 0:
        raise RuntimeError(f"{argv} failed ({proc.returncode}):\n{proc.stdout[-6000:]}")
    return proc.stdout


def build_wheel(out_dir: Path, source: Path = REPO) -> Path:
    """`pip wheel --no-deps -w OUT .` in `source` (by default the checkout itself, copy-free;
    setuptools' in-tree `build/` and `*.egg-info` are gitignored)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    _run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--disable-pip-version-check",
          "-w", str(out_dir), "."], cwd=source)
    (wheel,) = out_dir.glob("pants_backend_coex-*.whl")
    return wheel


def make_venv(dest: Path, *requirements: str | Path) -> Path:
    # the Pants venv's python is CPython 3.9 (a venv made from a venv uses the base interpreter)
    _run([sys.executable, "-m", "venv", str(dest)])
    pip(dest / "bin", "install", *map(str, requirements))
    return dest / "bin"


def pip(bin_dir: Path, *args: str) -> str:
    return _run([str(bin_dir / "python"), "-m", "pip", args[0], "-q",
                 "--disable-pip-version-check", *args[1:]])


@pytest.fixture(scope="session")
def coex_wheel(tmp_path_factory) -> Path:
    """The wheel, built once per test session."""
    return build_wheel(tmp_path_factory.mktemp("wheel"))


@pytest.fixture(scope="session")
def wheel_bin(coex_wheel, tmp_path_factory) -> Path:
    """`bin/` of a venv with only the wheel (and its dependencies): a `coex` command line."""
    return make_venv(tmp_path_factory.mktemp("wheel-venv") / "venv", coex_wheel)


@pytest.fixture(scope="session")
def pants_wheel_bin(coex_wheel, tmp_path_factory) -> Path:
    """`bin/` of a venv with `pantsbuild.pants==2.17.1` and the wheel: a pip-installed Pants
    that has the coex backend, as a user's repository gets it."""
    return make_venv(tmp_path_factory.mktemp("pants-venv") / "venv", coex_wheel,
                     "pantsbuild.pants==2.17.1")


@pytest.fixture(scope="session")
def pants_bin(tmp_path_factory) -> Path:
    """`bin/` of a venv with `pantsbuild.pants==2.17.1` only: Pants resolves coex itself
    (`[GLOBAL].plugins`)."""
    return make_venv(tmp_path_factory.mktemp("plain-pants-venv") / "venv",
                     "pantsbuild.pants==2.17.1")


def clean_env(**extra: str) -> dict:
    """The environment a user's shell has: none of this checkout's PYTHONPATH/PANTS_/COEX_
    settings."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("PANTS_", "COEX_", "PYTHON")) and k != "VIRTUAL_ENV"}
    env.update(extra)
    return env
