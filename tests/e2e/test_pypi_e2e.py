"""Real `./pants` runs of examples/wheels (a conda environment plus an environment file's `pip:`
section: real wheels from PyPI) in a temp build root against the realistic local channel:
generate-lockfiles asks PyPI (pip's resolver) -> package fetches each wheel as a digest -> the
archive runs the app (a pure wheel and a C extension imported), a wheel's console script, and
`python -m pip list` inside shows the wheels installed by coex.

Skipped, with the reason, when PyPI cannot be reached. Two Pants runs: keep it that way.
"""
from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from tests.e2e.buildroot import Pants, make_buildroot, spawned
from tests.lib.wheels import pypi_or_skip

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

TARGET = "examples/wheels:render"
ARCHIVE = "dist/examples.wheels/render.coex"
MARKUPSAFE = "MarkupSafe-3.0.2-cp311-cp311-manylinux_2_17_x86_64.manylinux2014_x86_64.whl"
WHEELS = ("markdown-it-py 3.0.0", "MarkupSafe 3.0.2", "mdurl 0.1.2", "pip 25.0.1")


def run(archive: Path, env: dict, *args: str, entry: str | None = None, tools=False) -> str:
    env = dict(env, **({"COEX_ENTRYPOINT": entry} if entry else {}),
               **({"COEX_TOOLS": "1"} if tools else {}))
    proc = subprocess.run([str(archive), *args], env=env, stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def test_examples_wheels_lock_package_run(tmp_path, realistic_channel):
    pypi_or_skip("examples/wheels cannot be locked")
    root = make_buildroot(tmp_path / "repo")
    pants = Pants(root, tmp_path / "state", Path(realistic_channel).as_uri())

    pants("generate-lockfiles", "--resolve=wheels")
    lock = (root / "examples" / "wheels.lock").read_text()
    assert "- pypi: https://files.pythonhosted.org/packages/" in lock
    assert MARKUPSAFE in lock and "mdurl-0.1.2-py3-none-any.whl" in lock  # a dependency, locked

    proc = pants("package", TARGET, debug=True)
    steps = [step for step, _ in spawned(proc.stderr)]
    # one fetch per conda package (python, zstd) and per wheel (4): each its own digest
    assert steps.count("fetch") == 6 and steps.count("assemble") == 1, steps
    assert "4 of its 4 PyPI wheels" in proc.stderr
    archive = root / ARCHIVE

    out = run(archive, pants.env, "# PyPI *wheels*", "<coex & pip>")
    assert "markdown-it-py 3.0.0: <h1>PyPI <em>wheels</em></h1>" in out, out
    # the C extension of the MarkupSafe wheel computed the escape
    assert ("markupsafe 3.0.2 (_speedups.cpython-311-x86_64-linux-gnu.so): "
            "&lt;coex &amp; pip&gt;") in out, out

    doc = tmp_path / "doc.md"
    doc.write_text("# Title\n\n*x*\n")
    out = run(archive, pants.env, str(doc), entry="markdown-it")  # the wheel's console script
    assert out == "<h1>Title</h1>\n<p><em>x</em></p>\n", out

    listed = run(archive, pants.env, "-m", "pip", "list", "-v", "--disable-pip-version-check",
                 entry="python")
    rows = {" ".join(line.split()[:2]): line.split()[-1] for line in listed.splitlines()[2:]}
    assert rows == {w: "coex" for w in WHEELS}, listed

    run(archive, pants.env, "verify", tools=True)  # the record checks out, wheels included
