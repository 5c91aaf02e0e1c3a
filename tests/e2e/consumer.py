"""A user's own repository, at a path of its own, that adopts coex the way the README says:
its own pants.toml, BUILD files, environment.yml, sources and a local conda channel copied into
it, and a Pants that is NOT this checkout's (`pants` from a venv with the wheel installed, or
Pants resolving the plugin itself through `[GLOBAL].plugins`).

* ``write_consumer(root, channel_dir, pants_toml)``: lay the repository out.
* ``ConsumerPants(bin_dir, root, state)``: run that Pants there, with private caches, no pantsd
  unless asked, and none of this checkout's environment (PYTHONPATH, PANTS_*, COEX_*).
"""
from __future__ import annotations

import shutil
import subprocess
import time
from pathlib import Path

from tests.packaging.wheel import clean_env

# The pants.toml of the README's "Using coex_binary in your repository" (pip-installed Pants).
PANTS_TOML = """\
[GLOBAL]
pants_version = "2.17.1"
backend_packages = ["coex"]

[coex]
resolves = { default = "3rdparty/conda/default.lock" }
default_resolve = "default"
channels = ["3rdparty/channel"]
platforms = ["linux-64"]
"""

ENVIRONMENT_YML = """\
dependencies:
  - python
  - tinypy
"""

BUILD = """\
resources(name="sources", sources=["greet/*.py"])

coex_binary(
    name="app",
    environment_file="environment.yml",
    entry_point="python -m greet",
    dependencies=[":sources"],
    env={"GREETING": "hello"},
)
"""

MAIN = """\
import os, sys
print(os.environ["GREETING"], "from greet:", " ".join(sys.argv[1:]))
"""


def write_consumer(root: Path, channel_dir: Path, pants_toml: str = PANTS_TOML) -> Path:
    (root / "src" / "greet").mkdir(parents=True)
    (root / "pants.toml").write_text(pants_toml)
    (root / "BUILD").write_text("")
    (root / "src" / "BUILD").write_text(BUILD)
    (root / "src" / "environment.yml").write_text(ENVIRONMENT_YML)
    (root / "src" / "greet" / "__init__.py").write_text("")
    (root / "src" / "greet" / "__main__.py").write_text(MAIN)
    shutil.copytree(channel_dir, root / "3rdparty" / "channel")
    (root / ".gitignore").write_text("/dist/\n/.pants.d/\n/.pids/\n")
    return root


class ConsumerPants:
    def __init__(self, bin_dir: Path, root: Path, state: Path, **env: str):
        self.pants = str(bin_dir / "pants")
        self.root = root
        self.env = clean_env(
            NO_SCIE_WARNING="1",
            PANTS_PANTSD="false",
            PANTS_LOCAL_STORE_DIR=str(state / "lmdb_store"),
            PANTS_NAMED_CACHES_DIR=str(state / "named_caches"),
            PANTS_LOCAL_EXECUTION_ROOT_DIR=str(state / "sandboxes"),
            COEX_ROOT=str(state / "coex-root"),
            **env,
        )
        (state / "sandboxes").mkdir(parents=True, exist_ok=True)

    def run(self, *args: str, check: bool = True, **kw) -> subprocess.CompletedProcess:
        start = time.perf_counter()
        proc = subprocess.run([self.pants, *args], cwd=self.root, env=self.env, text=True,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=900, **kw)
        self.last_seconds = time.perf_counter() - start
        if check and proc.returncode != 0:
            raise AssertionError(f"pants {' '.join(args)} failed ({proc.returncode}):\n"
                                 f"{proc.stdout[-4000:]}\n{proc.stderr[-8000:]}")
        return proc
