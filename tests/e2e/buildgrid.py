"""A real REAPI cache for the tests and the benchmark: BuildGrid (PyPI `buildgrid`) serving CAS +
ActionCache + ByteStream on 127.0.0.1, no auth, the action cache in memory (lost when the server
stops; the CAS blobs are on disk under the server's directory).

* ``ensure_bgd() -> Path``: the `bgd` command of a CPython 3.11 venv under
  ``${XDG_CACHE_HOME:-~/.cache}/coex-buildgrid/<version>-<hash of the pinned requirements>``,
  created from ``buildgrid-requirements.txt`` (PyPI, ~25 s) when missing; concurrent callers wait
  for one install. ``python -m tests.e2e.buildgrid install`` does it ahead (``.ci/run``).
* ``BuildGrid(workdir)``: ``start()`` on a free port (``address`` is ``grpc://127.0.0.1:PORT``,
  the instance is ``main``), ``stop()`` (SIGTERM, then SIGKILL), also as a context manager.
* ``pants_flags(address, read=..., write=...)``: Pants 2.17's options for that cache.
"""
from __future__ import annotations

import fcntl
import glob
import hashlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Optional

HERE = Path(__file__).resolve().parent
REQUIREMENTS = HERE / "buildgrid-requirements.txt"
VERSION = "0.4.4"
INSTANCE = "main"

CONFIG = """\
description: coex tests - CAS + ActionCache (+ ByteStream; Capabilities is implicit)
server:
  - !channel
    address: "127.0.0.1:{port}"
    insecure-mode: true
authorization:
  method: none
storages:
  - !disk-storage &cas-store
    path: {cas}
caches:
  - !lru-action-cache &ac
    storage: *cas-store
    max-cached-refs: 100000
    allow-updates: true
    cache-failed-actions: false
instances:
  - name: "{instance}"
    services:
      - !action-cache
        cache: *ac
      - !cas
        storage: *cas-store
      - !bytestream
        storage: *cas-store
"""


def _python311() -> str:
    """A CPython 3.11 (BuildGrid 0.4.4 installs there; Pants' 3.9 venv is too old for it)."""
    candidates = []
    try:
        root = subprocess.run(["pyenv", "root"], stdout=subprocess.PIPE, text=True,
                              check=True).stdout.strip()
        candidates += sorted(glob.glob(os.path.join(root, "versions", "3.11*", "bin", "python")))
    except (OSError, subprocess.CalledProcessError):
        pass
    candidates += [p for p in (shutil.which("python3.11"),) if p]
    if not candidates:
        raise RuntimeError("BuildGrid needs a CPython 3.11 (pyenv's, or python3.11 on PATH); "
                           "none was found.")
    return candidates[0]


def venv_dir() -> Path:
    cache = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    key = hashlib.sha256(REQUIREMENTS.read_bytes()).hexdigest()[:12]
    return Path(cache) / "coex-buildgrid" / f"{VERSION}-{key}"


def ensure_bgd() -> Path:
    venv = venv_dir()
    bgd, done = venv / "bin" / "bgd", venv / ".installed"
    if done.exists():
        return bgd
    venv.parent.mkdir(parents=True, exist_ok=True)
    with open(venv.parent / ".install.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # xdist workers: one installs, the others wait
        if done.exists():
            return bgd
        shutil.rmtree(venv, ignore_errors=True)  # a half-made one
        subprocess.run([_python311(), "-m", "venv", str(venv)], check=True)
        # the machine's pip.conf adds a constraints file and the CA bundle: drop the former,
        # keep the latter
        cert = "/etc/ssl/certs/ca-certificates.crt"
        proc = subprocess.run(
            [str(venv / "bin" / "python"), "-m", "pip", "install", "-q",
             "--disable-pip-version-check", *(["--cert", cert] if os.path.exists(cert) else []),
             "-r", str(REQUIREMENTS)],
            env=dict(os.environ, PIP_CONFIG_FILE=os.devnull),
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        if proc.returncode != 0:
            shutil.rmtree(venv, ignore_errors=True)
            raise RuntimeError(f"installing BuildGrid failed:\n{proc.stdout[-4000:]}")
        done.write_text(VERSION + "\n")
    return bgd


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _listening(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.2)
        return s.connect_ex(("127.0.0.1", port)) == 0


class BuildGrid:
    def __init__(self, workdir: Path, port: Optional[int] = None):
        self.workdir = Path(workdir)
        self.port = port
        self.proc: Optional[subprocess.Popen] = None

    @property
    def address(self) -> str:
        return f"grpc://127.0.0.1:{self.port}"

    def start(self, timeout: float = 60) -> "BuildGrid":
        bgd = ensure_bgd()
        self.port = self.port or free_port()
        (self.workdir / "cas").mkdir(parents=True, exist_ok=True)
        config = self.workdir / "config.yml"
        config.write_text(CONFIG.format(port=self.port, cas=self.workdir / "cas",
                                        instance=INSTANCE))
        self.log = open(self.workdir / "bgd.log", "ab")
        self.proc = subprocess.Popen([str(bgd), "server", "start", str(config)],
                                     stdout=self.log, stderr=subprocess.STDOUT,
                                     start_new_session=True)
        deadline = time.monotonic() + timeout
        while not _listening(self.port):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError("BuildGrid did not start:\n"
                                   + (self.workdir / "bgd.log").read_text()[-4000:])
            time.sleep(0.1)
        return self

    def stop(self) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None
        self.log.close()

    def __enter__(self) -> "BuildGrid":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def pants_flags(address: str, read: bool = False, write: bool = False) -> list[str]:
    return [
        f"--remote-store-address={address}",
        f"--remote-instance-name={INSTANCE}",
        f"--{'' if read else 'no-'}remote-cache-read",
        f"--{'' if write else 'no-'}remote-cache-write",
    ]


if __name__ == "__main__":
    if sys.argv[1:] != ["install"]:
        sys.exit("usage: python -m tests.e2e.buildgrid install")
    print(ensure_bgd())
