"""Real `./pants` runs (Pants 2.17.1 subprocesses, no pantsd) on a copy of examples/ + the
backend in a temp build root, against the realistic local channel:

generate-lockfiles -> package (runs the archive) -> edit one app source -> package again (only the
assembly process runs: no entries, fetch or transcode) -> `run -- args` -> the same build in
a second build root with empty Pants caches gives identical bytes.

Five Pants runs in all (~15 s each): keep it that way.
"""
from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from tests.e2e.buildroot import ARCHIVE, REPO, TARGET, Pants, make_buildroot

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


def run_archive(path: Path, env: dict, *args: str) -> str:
    if not (REPO / "coex_runtime" / "main.py").exists():
        pytest.skip("coex_runtime/main.py does not exist yet: archives cannot run")
    proc = subprocess.run([str(path), *args], env=env, stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def test_examples_lock_package_edit_run_reproduce(tmp_path, realistic_channel):
    root = make_buildroot(tmp_path / "repo")
    pants = Pants(root, tmp_path / "state", Path(realistic_channel).as_uri())

    pants("generate-lockfiles", "--resolve=examples")
    lock = (root / "examples" / "examples.lock").read_text()
    assert lock.startswith("# coex-lockfile: ")
    assert "numpy-1.26.4" in lock and "zstd-" in lock

    spawned, log, first = pants.package()
    # cold: entries + a fetch per package + a transcode per .tar.bz2 package + assembly
    assert spawned.count("entries") == 1 and spawned.count("assemble") == 1, spawned
    assert "transcode" in spawned and spawned.count("fetch") == 4, spawned
    out = run_archive(root / ARCHIVE, pants.env, "x", "y")
    assert "hello from coex: numpy 1.26.4 on Python 3.11" in out
    assert "sum of squares 1..5 = 55" in out and "args: x y" in out

    main = root / "examples" / "hello" / "src" / "hello" / "__main__.py"
    main.write_text(main.read_text().replace(
        'print("sum of squares', 'print("edited build")\n    print("sum of squares'))
    spawned, log, edited = pants.package()
    assert spawned == ["assemble"], spawned  # no entries, no fetch, no transcode
    assert edited != first

    proc = pants("run", TARGET, "--", "p", "q")
    assert "edited build" in proc.stdout and "args: p q" in proc.stdout, proc.stdout

    # Another build root (another absolute path) with empty Pants caches: identical bytes.
    root2 = tmp_path / "elsewhere" / "repo"
    shutil.copytree(root, root2, ignore=shutil.ignore_patterns("dist", ".pants.d", ".pids"))
    pants2 = Pants(root2, tmp_path / "state2", Path(realistic_channel).as_uri())
    spawned, _, again = pants2.package()
    assert "transcode" in spawned  # really rebuilt from scratch
    assert again == edited
