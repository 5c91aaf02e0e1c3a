"""Real `./pants run` (Pants 2.17.1 subprocesses, no pantsd) on the tiny channel: the program's
stdin, arguments and exit status reach the caller, and a multi-platform target builds and runs
only the host's archive. Three Pants runs (~10 s each)."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from tests.e2e.buildroot import Pants, make_buildroot

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

BUILD = """\
coex_binary(name="cat", resolve="tiny", conda_dependencies=["prefixprog"],
            entry_point="probe/cat.sh", dependencies=[":sh"],
            platforms=["linux-64", "linux-aarch64"], output_path="bins/")
files(name="sh", sources=["cat.sh"])
"""
SCRIPT = '#!/bin/sh\nread line\necho "got:$line"\nfor a in "$@"; do echo "arg:$a"; done\nexit 7\n'


def test_run_passes_stdin_args_and_exit_status(tmp_path, tiny_channel):
    root = make_buildroot(tmp_path / "repo")
    (root / "probe").mkdir()
    (root / "probe" / "BUILD").write_text(BUILD)
    (root / "probe" / "cat.sh").write_text(SCRIPT)
    os.chmod(root / "probe" / "cat.sh", 0o755)
    pants = Pants(root, tmp_path / "state", tiny_channel.url)
    # (examples/hello and examples/wheels, also in the build root, keep their resolves: a target
    # of an unknown resolve fails generate-lockfiles)
    pants.env["PANTS_COEX_RESOLVES"] = json.dumps(
        {"tiny": "probe/tiny.lock", "examples": "examples/examples.lock",
         "wheels": "examples/wheels.lock"})
    pants("generate-lockfiles", "--resolve=tiny")

    proc = subprocess.run(
        [sys.executable, "-m", "pants", "run", "probe:cat", "--", "a", "b c"], cwd=root,
        env=pants.env, input="hello stdin\n", stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True, timeout=600,
    )
    assert proc.returncode == 7, proc.stderr
    assert proc.stdout.splitlines() == ["got:hello stdin", "arg:a", "arg:b c"], proc.stdout
    # only the host archive was assembled for `run`
    assert "bins/cat-linux-64.coex" in proc.stderr and "linux-aarch64" not in proc.stderr

    pants("package", "probe:cat")
    assert sorted(os.listdir(root / "dist" / "bins")) == [
        "cat-linux-64.coex", "cat-linux-aarch64.coex"]
