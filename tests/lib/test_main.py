"""`python -m coex.lib <command>`: the process interface the Pants rules use, run as the rules
run it (Pants' interpreter, PYTHONPATH = a copy of the coex/ and coex_runtime/ sources)."""
import json
import os
import shutil
import subprocess
import sys

import pytest

from coex.lib.lockfile import lock_entries
from coex.lib.records import LockedPlatform
from coex.lib.request import inputs_sha256
from coex_runtime.format import open_archive
from tests.lib.conftest import make_request, write_json

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@pytest.fixture(scope="module")
def sandbox(tmp_path_factory):
    """A sandbox-like copy of the sources (nothing else of the repo on the path)."""
    root = tmp_path_factory.mktemp("sandbox")
    shutil.copytree(os.path.join(REPO, "pants-plugins", "coex"), str(root / "tool" / "coex"),
                    ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copytree(os.path.join(REPO, "coex_runtime"), str(root / "tool" / "coex_runtime"),
                    ignore=shutil.ignore_patterns("__pycache__"))
    return root


def lib(sandbox, *args):
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "PYTHONPATH": str(sandbox / "tool")}
    return subprocess.run([sys.executable, "-m", "coex.lib"] + list(args), cwd=str(sandbox),
                          env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          universal_newlines=True, timeout=300)


def ok(r):
    assert r.returncode == 0, r.stderr
    return r.stdout


def test_full_pipeline_through_processes(sandbox, tiny_channel):
    req = make_request(tiny_channel, platforms=["linux-64"])
    write_json(sandbox / "req.json", req.to_json())
    header = json.loads(ok(lib(sandbox, "solve", "--request", "req.json", "--out", "coex.lock")))
    assert header["inputs_sha256"] == inputs_sha256(req)
    assert ok(lib(sandbox, "entries", "--lock", "coex.lock", "--platform", "linux-64",
                  "--out", "entries.json")) == ""
    entries = json.loads((sandbox / "entries.json").read_text())
    assert LockedPlatform.from_json(entries) == lock_entries(sandbox / "coex.lock", "linux-64")
    ok(lib(sandbox, "entries", "--lock", "coex.lock", "--platform", "linux-64", "--root", "tinypy",
           "--out", "part.json"))
    part = LockedPlatform.from_json(json.loads((sandbox / "part.json").read_text()))
    assert part == lock_entries(sandbox / "coex.lock", "linux-64", ["tinypy"])
    assert "prefixprog" not in [p.name for p in part.packages] and part.locked == entries["locked"]
    items = []
    for p in entries["packages"]:
        out = "pkgs/" + p["filename"]
        ok(lib(sandbox, "fetch", "--url", p["url"], "--sha256", p["sha256"],
               "--size", str(p["size"]), "--out", out))
        if out.endswith(".tar.bz2"):
            zst = out[:-len(".tar.bz2")] + ".tar.zst"
            ok(lib(sandbox, "transcode", "--in", out, "--out", zst, "--level", "3"))
            items.append({"path": zst, "package": p, "encoding": "tar.zst"})
        else:
            items.append({"path": out, "package": p, "encoding": "conda"})
    (sandbox / "app").mkdir()
    (sandbox / "app" / "main.py").write_text("print('hi')\n")
    spec = {"platform": "linux-64", "packages": items, "app_root": "app",
            "entry_points": {"commands": {"main": "python main.py"}, "default": "main"},
            "env": {}, "requested_specs": list(req.specs), "build": {"target": "//tests:lib"}}
    write_json(sandbox / "spec.json", spec)
    result = json.loads(ok(lib(sandbox, "assemble", "--spec", "spec.json", "--out",
                               "dist/app.coex")))
    with open_archive(str(sandbox / "dist" / "app.coex")) as ar:
        assert result["env_id"] == ar.info["env_id"] and result["archive_id"] == ar.id
        assert [rel for rel, _ in ar.app_members()] == ["main.py"]
    ok(lib(sandbox, "explicit", "--lock", "coex.lock", "--platform", "linux-64",
           "--out", "explicit.txt"))
    assert "@EXPLICIT" in (sandbox / "explicit.txt").read_text()


@pytest.mark.parametrize("args, needle", [
    (["fetch", "--url", "file:///nonexistent/x-1-0.conda", "--sha256", "a" * 64, "--size", "1",
      "--out", "x"], "x-1-0.conda"),
    (["entries", "--lock", "missing.lock", "--platform", "linux-64", "--out", "e.json"],
     "Cannot read lockfile missing.lock"),
    (["solve", "--request", "missing.json", "--out", "l"], "Cannot read solve request"),
    (["transcode", "--in", "nope.tar.bz2", "--out", "o.tar.zst"], "Cannot transcode"),
    (["assemble", "--spec", "bad.json", "--out", "o.coex"], "is not valid JSON"),
])
def test_errors_exit_1_with_message_on_stderr_only(sandbox, args, needle):
    (sandbox / "bad.json").write_text("{nope")
    r = lib(sandbox, *args)
    assert r.returncode == 1
    assert r.stdout == ""
    assert r.stderr.startswith("coex: error: ") and needle in r.stderr
    assert "Traceback" not in r.stderr


def test_usage_error_exits_2(sandbox):
    r = lib(sandbox, "fetch", "--url", "x")
    assert r.returncode == 2 and "required" in r.stderr


def test_failed_solve_exits_1_every_time(sandbox, tmp_path):
    """py-rattler's runtime threads could crash CPython's finalization after a failed solve
    (SIGSEGV/SIGABRT ~1 run in 12); the command must exit 1 cleanly every time."""
    empty = tmp_path / "empty-channel"
    empty.mkdir()
    write_json(sandbox / "bad-req.json", {"specs": ["python"], "channels": [str(empty)],
                                          "origin": "bad"})
    for _ in range(6):
        r = lib(sandbox, "solve", "--request", "bad-req.json", "--out", "bad.lock")
        assert r.returncode == 1, r.stderr
        assert "Cannot read the channels" in r.stderr and "Fatal Python error" not in r.stderr


@pytest.mark.parametrize("module, dist", [("rattler", "py-rattler"), ("zstandard", "zstandard")])
def test_a_missing_dependency_is_named_with_the_fix(sandbox, tmp_path, tiny_channel, module, dist):
    """An interpreter without py-rattler (or zstandard): one message naming the distribution and
    the interpreter, exit 1, no ModuleNotFoundError traceback."""
    hide = tmp_path / "hide"
    hide.mkdir()
    (hide / (module + ".py")).write_text(
        "raise ModuleNotFoundError('No module named %r' % __name__, name=__name__)\n")
    request = make_request(tiny_channel, ["python"])
    write_json(sandbox / "missing-dep-request.json", request.to_json())
    args = {"rattler": ["solve", "--request", "missing-dep-request.json", "--out", "x.lock"],
            "zstandard": ["transcode", "--in", str(tiny_channel.file("libtiny", version="1.0")),
                          "--out", str(tmp_path / "x.tar.zst")]}[module]
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"),
           "PYTHONPATH": os.pathsep.join([str(hide), str(sandbox / "tool")])}
    r = subprocess.run([sys.executable, "-m", "coex.lib"] + args, cwd=str(sandbox), env=env,
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, universal_newlines=True,
                       timeout=300)
    assert r.returncode == 1, r.stderr
    assert "Traceback" not in r.stderr and "ModuleNotFoundError" not in r.stderr, r.stderr
    assert r.stderr.startswith("coex: error: the Python package %s (module `%s`) is not "
                               "installed for %s" % (dist, module, sys.executable)), r.stderr
    assert "pip install" in r.stderr
