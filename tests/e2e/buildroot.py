"""A temp Pants build root holding a copy of the backend, the runtime and examples/, and a
`Pants` runner for it with private caches (no pantsd). Used by the e2e tests and the benchmark.

`spawned(log)`: the coex steps Pants ran locally, from a `-ldebug` log; `counters(log)`: Pants'
`--stats-log` counters (remote cache hits, local executions, ...)."""
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
# `python -m coex.lib <command>` or `python -m coex.lib.<step>` (fetch, transcode)
SPAWNED = re.compile(
    r'spawned local process as \S+ for Process \{ argv: \[[^\]]*?"-m", '
    r'"coex\.lib(?:\.(\w+)"|", "(\w+)")[^\n]*?description: "([^"]*)"'
)
COUNTER = re.compile(r"^  (\w+): (\d+)$", re.M)
IGNORE = shutil.ignore_patterns("__pycache__", "*.pyc")


def spawned(log: str) -> list[tuple[str, str]]:
    """(step, description) of each coex process Pants spawned locally (a `-ldebug` log)."""
    return [(m.group(1) or m.group(2), m.group(3)) for m in SPAWNED.finditer(log)]


def counters(log: str) -> dict[str, int]:
    """Pants' `--stats-log` counters (printed after `Counters:`)."""
    return {k: int(v) for k, v in COUNTER.findall(log.split("Counters:", 1)[-1])}


def copy_backend(dest: Path) -> None:
    """The backend and the runtime, where pants.toml's `pythonpath` expects them."""
    shutil.copytree(REPO / "pants-plugins" / "coex", dest / "pants-plugins" / "coex", ignore=IGNORE)
    shutil.copytree(REPO / "coex_runtime", dest / "coex_runtime", ignore=IGNORE)


def make_buildroot(dest: Path) -> Path:
    dest.mkdir(parents=True)
    copy_backend(dest)
    for example in ("hello", "wheels"):  # pants.toml names both resolves
        shutil.copytree(REPO / "examples" / example, dest / "examples" / example, ignore=IGNORE)
    shutil.copy(REPO / "pants.toml", dest / "pants.toml")
    shutil.copy(REPO / "BUILD", dest / "BUILD")
    shutil.copy(REPO / ".gitignore", dest / ".gitignore")  # Pants honours it, as in the repo
    return dest


class Pants:
    """`python -m pants` in `root`, with Pants' store, named caches, sandboxes and the coex
    runtime cache under `state`, and `[coex].channels` pointed at `channel_url` (if given)."""

    def __init__(self, root: Path, state: Path, channel_url: str | None = None):
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
            COEX_ROOT=str(state / "coex-root"),
            # as examples/run does: the example lock is gitignored, and Pants hides such files
            PANTS_PANTS_IGNORE='+["!/examples/examples.lock", "!/examples/wheels.lock"]',
        )
        if channel_url is not None:
            self.env["PANTS_COEX_CHANNELS"] = f'["{channel_url}"]'
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
        """`package` the example: (coex steps of the processes spawned, log, archive)."""
        proc = self("package", TARGET, debug=True)
        steps = [step for step, _ in spawned(proc.stderr)]
        return steps, proc.stderr, (self.root / ARCHIVE).read_bytes()
