"""The installer is stdlib-only and runs on every CPython 3.6-3.13 (forked extraction workers
included): install the tiny environment with each interpreter found in the image (the
environment's own python is the tiny tier's fake 3.9 in every case) and check the result."""
import json
import os
import subprocess

import pytest

from tests.factory import tiny
from tests.installer import helpers

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
VERSIONS = ["3.6", "3.7", "3.8", "3.9", "3.10", "3.11", "3.12", "3.13"]

CHILD = r'''
import json, os, sys
sys.path.insert(0, sys.argv[1])
from coex_runtime import install, zstd
spec = json.load(open(sys.argv[2]))
r, w = os.pipe()
def open_payload(entry):
    os.write(w, b"%d\n" % os.getpid())
    return open(entry["path"], "rb")
staging, prefix = spec["prefix"] + ".staging", spec["prefix"]
install.install_env(spec["entries"], open_payload, spec["pkgs"], staging, prefix,
                    requested_specs=spec["specs"])
os.rename(staging, prefix)
install.finalize_env(prefix, spec["entries"], requested_specs=spec["specs"])
os.close(w)
opened = set(int(x) for x in os.fdopen(r, "rb").read().split())
print("ok", sys.version_info[:2], zstd.backend(), "forked" if os.getpid() not in opened else "in-process")
'''


def _python(ver):
    root = os.path.expanduser("~/.pyenv/versions")
    if not os.path.isdir(root):
        return None
    for d in sorted(os.listdir(root)):
        if d == ver or d.startswith(ver + "."):
            exe = os.path.join(root, d, "bin", "python" + ver)
            if os.path.exists(exe):
                return exe
    return None


@pytest.fixture(scope="module")
def tiny_entries(tiny_channel, tmp_path_factory):
    from tests.factory.fixtures import rattler_solve

    recs = rattler_solve(tiny_channel.url, tiny.ALL_SPECS,
                         cache_dir=tmp_path_factory.mktemp("solve"))
    return [helpers.entry_from_record(r) for r in helpers.install_order(recs)]


@pytest.mark.parametrize("ver", VERSIONS)
def test_installer_runs_on(ver, tiny_entries, tmp_path):
    exe = _python(ver)
    if exe is None:
        pytest.skip("no CPython %s in ~/.pyenv/versions" % ver)
    prefix = tmp_path / "env"
    spec = {"entries": tiny_entries, "pkgs": str(tmp_path / "pkgs"), "prefix": str(prefix),
            "specs": tiny.ALL_SPECS}
    (tmp_path / "spec.json").write_text(json.dumps(spec))
    (tmp_path / "child.py").write_text(CHILD)
    # -I: no user site, no PYTHONPATH: only the stdlib and the runtime's own directory
    out = subprocess.run([exe, "-I", str(tmp_path / "child.py"), REPO, str(tmp_path / "spec.json")],
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    assert out.returncode == 0, out.stdout.decode()
    assert out.stdout.startswith(b"ok (" + ver.replace(".", ", ").encode() + b")"), out.stdout
    if len(os.sched_getaffinity(0)) > 1:  # packages were extracted by forked workers
        assert out.stdout.rstrip().endswith(b"forked"), out.stdout
    run = subprocess.run([str(prefix / "bin" / "prefixprog")], stdout=subprocess.PIPE, check=True)
    assert run.stdout.strip() == str(prefix).encode()
    run = subprocess.run([str(prefix / "bin" / "tinypy")], stdout=subprocess.PIPE, check=True)
    assert run.stdout.startswith(b"tinypy ok")
    names = sorted(os.listdir(str(prefix / "conda-meta")))
    assert "prefixprog-1.0-h0_0.json" in names and "history" in names
    assert (prefix / "share/prefixprog/post-link-ran").read_text().split() == [str(prefix), "prefixprog"]
