"""What a user's repository needs from outside to get coex, made the way the README says: the
pex tool Pants 2.17 would download from GitHub (built from PyPI's `pex==2.1.137`), a find-links
directory Pants resolves `[GLOBAL].plugins` from offline (the coex wheel and its dependencies'
wheels), and an upgrade of the coex wheel (a copy of this checkout with a later version and a
visible change). Nothing built here is kept in the repository.

* ``build_pex_cli(dest) -> PexCli`` (path, sha256, size), and the session fixture ``pex_cli``.
* ``fill_find_links(dest, pants_bin, *wheels)``: copy the wheels, then `pip download` the
  dependencies coex declares, at the versions the Pants venv at ``pants_bin`` has (Pants
  resolves plugins with its own distributions as constraints), cp39 wheels only.
* ``upgraded_wheel(out_dir) -> Path``: the wheel of version ``UPGRADE_VERSION`` whose
  `coex_binary` help says ``UPGRADE_MARKER``.
"""
from __future__ import annotations

import hashlib
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

import coex
from tests.packaging.wheel import REPO, build_wheel, make_venv, pip

PEX_VERSION = "2.1.137"  # Pants 2.17.1's default `[pex-cli].version`
UPGRADE_VERSION = coex.__version__ + ".post1"
UPGRADE_MARKER = "(this coex is the upgraded build)"


@dataclass(frozen=True)
class PexCli:
    path: Path
    sha256: str
    size: int


def build_pex_cli(dest: Path) -> PexCli:
    """`pex pex==2.1.137 -c pex -o DEST` from a venv with PyPI's pex (the build is reproducible:
    the same bytes every time)."""
    bin_dir = make_venv(dest.parent / "pex-venv", f"pex=={PEX_VERSION}")
    proc = subprocess.run(
        [str(bin_dir / "pex"), f"pex=={PEX_VERSION}", "-c", "pex", "-o", str(dest),
         "--python-shebang", "/usr/bin/env python3"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=600)
    if proc.returncode != 0:
        raise RuntimeError(f"building the pex tool failed:\n{proc.stdout[-4000:]}")
    data = dest.read_bytes()
    return PexCli(dest, hashlib.sha256(data).hexdigest(), len(data))


@pytest.fixture(scope="session")
def pex_cli(tmp_path_factory) -> PexCli:
    return build_pex_cli(tmp_path_factory.mktemp("pex-cli") / "pex")


def fill_find_links(dest: Path, pants_bin: Path, *wheels: Path) -> Path:
    dest.mkdir(parents=True, exist_ok=True)
    for wheel in wheels:
        shutil.copy(wheel, dest)
    yaml_version = subprocess.run(
        [str(pants_bin / "python"), "-c", "import yaml; print(yaml.__version__)"],
        stdout=subprocess.PIPE, text=True, check=True).stdout.strip()
    pins = dict(line.split("==") for line in
                (REPO / "pants-plugins" / "requirements.txt").read_text().splitlines()
                if "==" in line and not line.startswith("#"))
    import tomli  # (in the test venv: the version the suite runs with)

    pip(pants_bin, "download", "--only-binary", ":all:", "--no-deps", "-d", str(dest),
        f"py-rattler=={pins['py-rattler']}", f"zstandard=={pins['zstandard']}",
        f"PyYAML=={yaml_version}", f"tomli=={tomli.__version__}")
    return dest


def upgraded_wheel(out_dir: Path) -> Path:
    """The wheel of a copy of this checkout at version UPGRADE_VERSION, whose `coex_binary` help
    ends with UPGRADE_MARKER."""
    src = out_dir / "src"
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    shutil.copytree(REPO / "pants-plugins" / "coex", src / "pants-plugins" / "coex", ignore=ignore)
    shutil.copytree(REPO / "coex_runtime", src / "coex_runtime", ignore=ignore)
    shutil.copytree(REPO / "pants-plugins" / "bin", src / "pants-plugins" / "bin", ignore=ignore)
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / name, src / name)
    init = src / "pants-plugins" / "coex" / "__init__.py"
    init.write_text(init.read_text().replace(
        f'__version__ = "{coex.__version__}"', f'__version__ = "{UPGRADE_VERSION}"'))
    target_types = src / "pants-plugins" / "coex" / "target_types.py"
    text = target_types.read_text()
    anchor = "with `{bin_name()} run path/to:target -- args`."
    assert anchor in text, "the coex_binary help changed: update tests/e2e/plugins.py"
    target_types.write_text(text.replace(anchor, f"{anchor} {UPGRADE_MARKER}"))
    wheel = build_wheel(out_dir / "dist", source=src)
    assert wheel.name.startswith(f"pants_backend_coex-{UPGRADE_VERSION}-"), wheel
    return wheel



@pytest.fixture(scope="session")
def upgraded_coex_wheel(tmp_path_factory) -> Path:
    return upgraded_wheel(tmp_path_factory.mktemp("upgraded-wheel"))
