"""A temp Pants build root holding a copy of the backend, the runtime and examples/hello, and a
`Pants` runner for it with private caches (no pantsd). Used by the e2e test and the benchmark."""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
TARGET = "examples/hello:hello"
ARCHIVE = "dist/examples.hello/hello.coex"
SPAWNED = re.compile(r'spawned local process as \S+ for Process \{ argv: \[[^\]]*"coex\.lib", "(\w+)"')
IGNORE = shutil.ignore_patterns("__pycache__", "*.pyc")


def make_buildroot(dest: Path) -> Path:
    dest.mkdir(parents=True)
    shutil.copytree(REPO / "pants-plugins" / "coex", dest / "pants-plugins" / "coex", ignore=IGNORE)
    shutil.copytree(REPO / "coex_runtime", dest / "coex_runtime", ignore=IGNORE)
    shutil.copytree(REPO / "examples" / "hello", dest / "examples" / "hello", ignore=IGNORE)
    shutil.copy(REPO / "pants.toml", dest / "pants.toml")
    shutil.copy(REPO / "BUILD", dest / "BUILD")
    shutil.copy(REPO / ".gitignore", dest / ".gitignore")  # Pants honours it, as in the repo
    return dest


class Pants:
    """`python -m pants` in `root`, with Pants' store, named caches, sandboxes and the coex
    runtime cache under `state`, and `[coex].channels` pointed at `channel_url`."""

    def __init__(self, root: Path, state: Path, channel_url: str):
        self.root = root
        self.env = {
            k: v for k, v in os.environ.items() if not k.startswith(("PANTS_", "COEX_"))
        }
        self.env.update(
            NO_SCIE_WARNING="1",
            PANTS_PANTSD="false",
            PANTS_LOCAL_STORE_DIR=str(state / "lmdb_store"),
            PANTS_NAMED_CACHES_DIR=str(state / "named_caches"),
            PANTS_LOCAL_EXECUTION_ROOT_DIR=str(state / "sandboxes"),
            PANTS_COEX_CHANNELS=f'["{channel_url}"]',
            COEX_ROOT=str(state / "coex-root"),
            # as examples/run does: the example lock is gitignored, and Pants hides such files
            PANTS_PANTS_IGNORE='+["!/examples/examples.lock"]',
        )
        (state / "sandboxes").mkdir(parents=True, exist_ok=True)

    def __call__(self, *args: str, debug: bool = False) -> subprocess.CompletedProcess:
        """Run Pants; a failure raises with its output."""
        argv = [sys.executable, "-m", "pants", *(["-ldebug"] if debug else []), *args]
        start = time.perf_counter()
        proc = subprocess.run(
            argv, cwd=self.root, env=self.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            text=True, timeout=600,
        )
        self.last_seconds = time.perf_counter() - start
        if proc.returncode != 0:
            raise RuntimeError(f"{argv} failed:\n{proc.stdout}\n{proc.stderr[-6000:]}")
        return proc

    def package(self) -> tuple[list[str], str, bytes]:
        """`package` the example: (coex.lib commands of the processes spawned, log, archive)."""
        proc = self("package", TARGET, debug=True)
        spawned = SPAWNED.findall(proc.stderr)
        return spawned, proc.stderr, (self.root / ARCHIVE).read_bytes()
