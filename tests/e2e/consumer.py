"""A user's own repository, at a path of its own, that adopts coex the way the README says:
its own pants.toml, BUILD files, environment.yml, sources and a local conda channel copied into
it, and a Pants that is NOT this checkout's (`pants` from a venv with the wheel installed, or
Pants resolving the plugin itself through `[GLOBAL].plugins`).

* ``readme_block(name)``: a file the README's "Using coex_binary in your repository" shows (the
  fenced block after `<!-- tested: NAME -->`), so the tests use exactly what users are told to.
* ``pip_pants_toml()`` / ``plugins_pants_toml(version, find_links, pex)``: those pants.toml
  files with this test's local channel (and paths) put in.
* ``write_consumer(root, channel_dir, pants_toml, **files)``: lay the repository out.
* ``ConsumerPants(bin_dir, root, state)``: run that Pants there, with private caches, no pantsd
  unless asked (``run(..., pantsd=True)``; ``stop_pantsd()``), and none of this checkout's
  environment (PYTHONPATH, PANTS_*, COEX_*).
"""
from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

from tests.packaging.wheel import REPO, clean_env

README_CHANNEL = 'channels = ["conda-forge"]'
LOCAL_CHANNEL = 'channels = ["3rdparty/channel"]'
README_FIND_LINKS = "file:///srv/pants-plugins/wheels"
README_PEX = "file:///srv/pants-plugins/pex"
README_PEX_SHA256 = "a8778b91ca860fc57e11593813dc9700e15906db7d21167d3cde1ea8fbcddd3c"
README_PEX_SIZE = "3563511"


def readme_block(name: str) -> str:
    text = (REPO / "README.md").read_text()
    marker = f"<!-- tested: {name} -->\n```"
    start = text.index("\n", text.index(marker) + len(marker)) + 1
    return text[start:text.index("\n```", start) + 1]


def _replace(text: str, old: str, new: str) -> str:
    assert old in text, f"{old!r} is not in the README's block:\n{text}"
    return text.replace(old, new)


def pip_pants_toml() -> str:
    return _replace(readme_block("pants.toml, pip-installed Pants"), README_CHANNEL, LOCAL_CHANNEL)


def plugins_pants_toml(version: str, find_links: Path, pex) -> str:
    """The README's `[GLOBAL].plugins` pants.toml pinning `version`, resolved from `find_links`
    with the pex tool `pex` (a tests.e2e.plugins.PexCli)."""
    import coex

    text = readme_block("pants.toml, [GLOBAL].plugins")
    text = _replace(text, f'"pants-backend-coex=={coex.__version__}"',
                    f'"pants-backend-coex=={version}"')
    text = _replace(text, README_CHANNEL, LOCAL_CHANNEL)
    text = _replace(text, README_FIND_LINKS, find_links.as_uri())
    text = _replace(text, README_PEX, pex.path.as_uri())
    text = _replace(text, README_PEX_SHA256, pex.sha256)
    return _replace(text, f"|{README_PEX_SIZE}\"", f"|{pex.size}\"")


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


def write_consumer(root: Path, channel_dir: Path, pants_toml: str, **files: str) -> Path:
    """The repository; `files` are more files at the root (e.g. a requirements file)."""
    (root / "src" / "greet").mkdir(parents=True)
    (root / "pants.toml").write_text(pants_toml)
    (root / "BUILD").write_text("")
    (root / "src" / "BUILD").write_text(BUILD)
    (root / "src" / "environment.yml").write_text(ENVIRONMENT_YML)
    (root / "src" / "greet" / "__init__.py").write_text("")
    (root / "src" / "greet" / "__main__.py").write_text(MAIN)
    shutil.copytree(channel_dir, root / "3rdparty" / "channel")
    (root / ".gitignore").write_text("/dist/\n/.pants.d/\n/.pids/\n")
    for name, text in files.items():
        (root / name).write_text(text)
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

    def run(self, *args: str, check: bool = True, pantsd: bool = False,
            **kw) -> subprocess.CompletedProcess:
        start = time.perf_counter()
        env = dict(self.env, PANTS_PANTSD="true") if pantsd else self.env
        proc = subprocess.run([self.pants, *args], cwd=self.root, env=env, text=True,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=900, **kw)
        self.last_seconds = time.perf_counter() - start
        if check and proc.returncode != 0:
            raise AssertionError(f"pants {' '.join(args)} failed ({proc.returncode}):\n"
                                 f"{proc.stdout[-4000:]}\n{proc.stderr[-8000:]}")
        return proc

    def pantsd_pid(self) -> int | None:
        """The running pantsd's pid (from its pid file), or None."""
        for pid_file in self.root.glob(".pids/*/pantsd/pid"):
            try:
                pid = int(pid_file.read_text())
                os.kill(pid, 0)
                return pid
            except (ValueError, OSError):
                continue
        return None

    def wait_for_pantsd_exit(self, pid: int | None, timeout: float) -> bool:
        """Whether the pantsd `pid` is gone within `timeout` seconds."""
        deadline = time.monotonic() + timeout
        while pid is not None and time.monotonic() < deadline:
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                return True
            time.sleep(0.2)
        return pid is None

    def stop_pantsd(self) -> None:
        """Stop the pantsd these runs started (by its pid), waiting until it is gone."""
        pid = self.pantsd_pid()
        if pid is None:
            return
        for sig, wait in ((signal.SIGTERM, 10), (signal.SIGKILL, 5)):
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                return
            deadline = time.monotonic() + wait
            while time.monotonic() < deadline:
                try:
                    os.kill(pid, 0)
                except ProcessLookupError:
                    return
                time.sleep(0.1)
