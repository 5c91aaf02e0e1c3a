"""PyPI wheels in the environment (coex_runtime/wheel.py): real wheels from PyPI installed by
coex into the realistic channel's CPython 3.11, against pip 25 (run by that same python) as the
oracle; bad wheels refused with nothing left behind."""
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.runtime import rt_helpers as H
from tests.runtime import wheel_helpers as W

TOOLS = {"COEX_TOOLS": "1"}
REAL = ["pyflakes-3.2.0-py2.py3-none-any.whl",
        "MarkupSafe-3.0.2-cp311-cp311-manylinux_2_17_x86_64.manylinux2014_x86_64.whl",
        "jsonpointer-3.0.0-py2.py3-none-any.whl"]


def handmade(out_dir):
    """A wheel with every .data scheme, a gui script, a #!python script ending in .py (pip
    compiles it), a file that does not compile, and an executable module."""
    return W.make_wheel(out_dir, "Hand_Made", "1.2", {
        "hand_made/__init__.py": b"VALUE = 42\n",
        "hand_made/cli.py": b"def main():\n    print('hand cli')\n\ndef gui():\n    print('hand gui')\n",
        "hand_made/broken.py": b"def (:\n",
        "hand_made/run.sh": (0o755, b"#!/bin/sh\necho run\n"),
        "Hand_Made-1.2.data/scripts/hand-tool.py": (0o755, b"#!python -u\nprint('hand tool')\n"),
        "Hand_Made-1.2.data/scripts/hand-sh": (0o644, b"#!/bin/sh\necho hand-sh\n"),
        "Hand_Made-1.2.data/headers/hand.h": b"#define HAND 1\n",
        "Hand_Made-1.2.data/data/share/hand/hand.txt": b"data\n",
        "Hand_Made-1.2.data/purelib/hand_pure.py": b"X = 1\n",
        "Hand_Made-1.2.data/platlib/hand_plat.py": b"Y = 2\n",
        "Hand_Made-1.2.dist-info/entry_points.txt":
            b"[console_scripts]\nhand-cli = hand_made.cli:main\n\n[gui_scripts]\nhand-gui = hand_made.cli:gui\n"
            b"\n[other.group]\nignored = x:y\n",
    })


@pytest.fixture(scope="module")
def wheels(tmp_path_factory):
    real = [W.fetch(f) for f in REAL]
    return real + [handmade(tmp_path_factory.mktemp("hand"))]


def _extract(arc, dest, root):
    r = H.run(arc, "extract", str(dest), root=root, env=TOOLS, timeout=300)
    assert r.returncode == 0, H.text(r)
    return r


def _pyc_same(python, pairs):
    """Both .pyc files hold the same code (marshal-loaded by ``python``; the source mtime in
    the header and co_filename aside)."""
    script = ("import marshal, sys\nbad = []\nfor a, b in zip(sys.argv[1::2], sys.argv[2::2]):\n"
              "    x, y = open(a, 'rb').read(), open(b, 'rb').read()\n"
              "    if x[:8] != y[:8] or x[12:16] != y[12:16] or marshal.loads(x[16:]) != marshal.loads(y[16:]):\n"
              "        bad.append(a)\nprint('\\n'.join(bad))\n")
    args = [p for pair in pairs for p in pair]
    r = subprocess.run([python, "-c", script] + args, stdout=subprocess.PIPE, env=W.clean_env())
    return r.stdout.decode().split()


def test_coex_installs_wheels_as_pip_does(realistic_channel, wheels, tmp_path):
    """The same tree as pip 25 installing the same wheels into the same environment with the
    same python: paths, bytes (scripts and shebangs included), modes, RECORD (INSTALLER aside:
    coex's says coex), .pyc files holding the same code."""
    arc = tmp_path / "w.coex"
    wheels = wheels + [W.fetch("pip-25.0.1-py3-none-any.whl")]  # pip, pip3, pip3.11
    info = W.make_archive(realistic_channel, arc, wheels)
    plain = tmp_path / "plain.coex"
    W.make_archive(realistic_channel, plain)
    root = tmp_path / "root"
    dest = tmp_path / "env"
    r = _extract(arc, dest, root)
    assert "5 PyPI wheels" in r.stdout.decode()
    os.rename(str(dest), str(tmp_path / "by-coex"))
    _extract(plain, dest, root)
    links = tmp_path / "links"
    links.mkdir()
    for w in wheels:
        shutil.copy(str(w), str(links))
    reqs = ["pyflakes==3.2.0", "MarkupSafe==3.0.2", "jsonpointer==3.0.0", "Hand_Made==1.2", "pip==25.0.1"]
    r = W.pip(dest, "install", "--no-deps", "--no-index", "--find-links", str(links),
              "--no-warn-script-location", *reqs)
    assert r.returncode == 0, H.text(r)
    ours, theirs = W.tree(tmp_path / "by-coex"), W.tree(dest)
    assert sorted(ours) == sorted(theirs)
    pycs, differ = [], []
    for rel in sorted(ours):
        a, b = ours[rel], theirs[rel]
        if rel.endswith(".pyc"):
            assert a[:2] == b[:2], rel
            pycs.append((str(tmp_path / "by-coex" / rel), str(dest / rel)))
            continue
        if rel.endswith(".dist-info/INSTALLER"):
            assert (a[2], b[2]) == (b"coex\n", b"pip\n")
            continue
        if rel == "bin/hand-sh":  # where coex differs on purpose: a script is made executable
            assert (a[1], b[1]) == (0o755, 0o644)
            a = b
        if rel.endswith(".dist-info/RECORD"):
            a = (a[0], a[1], W.without_installer_row(a[2]))
            b = (b[0], b[1], W.without_installer_row(b[2]))
        if a != b:
            differ.append((rel, a[:2], b[:2], a[2][:300] if a[2] else None, b[2][:300] if b[2] else None))
    assert not differ, differ
    assert len(pycs) > 20
    assert not _pyc_same(str(dest / "bin" / "python3.11"), pycs)
    # what the oracle checked is what these wheels need
    assert ours["bin/pyflakes"][1] == 0o755 and ours["bin/jsonpointer"][2].startswith(
        b"#!%s/bin/python3.11\n" % str(dest).encode())
    sp = "lib/python3.11/site-packages/"
    assert ours[sp + "markupsafe/_speedups.cpython-311-x86_64-linux-gnu.so"][1] == 0o755  # as in the wheel
    assert "include/python3.11/Hand_Made/hand.h" in ours and "share/hand/hand.txt" in ours
    assert "bin/__pycache__/hand-tool.cpython-311.pyc" in ours and "bin/hand-gui" in ours
    assert sp + "hand_made/__pycache__/broken.cpython-311.pyc" not in ours
    assert ours[sp + "pyflakes-3.2.0.dist-info/REQUESTED"][2] == b""
    assert [w["name"] for w in info["wheels"]] == ["pyflakes", "markupsafe", "jsonpointer", "hand-made", "pip"]
    assert {"bin/pip", "bin/pip3", "bin/pip3.11"} <= set(ours)


def test_the_environment_runs_its_wheels(realistic_channel, wheels, tmp_path):
    """Run from the cache: import the C extension, the console scripts, `pip list`; conda-meta
    is conda's only; verify and info cover the wheels."""
    arc = tmp_path / "w.coex"
    W.make_archive(realistic_channel, arc, wheels[:3])
    root = tmp_path / "root"
    r = H.run(arc, "-c", "import markupsafe, markupsafe._speedups, jsonpointer, pyflakes; "
              "print(markupsafe.escape('<a>'), markupsafe.__file__)", root=root, timeout=300)
    assert r.returncode == 0, H.text(r)
    out = r.stdout.decode()
    assert out.startswith("&lt;a&gt; ") and "/lib/python3.11/site-packages/markupsafe/" in out
    r = H.run(arc, "-c", "import sys; print(sys.prefix)", root=root)
    prefix = Path(r.stdout.decode().strip())
    for cmd in (["pyflakes", "--version"], ["jsonpointer", "--help"]):
        p = subprocess.run([str(prefix / "bin" / cmd[0])] + cmd[1:], stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, env=W.clean_env())
        assert p.returncode == 0, p.stdout.decode()
    r = W.pip(prefix, "list", "--format=freeze")
    assert r.returncode == 0, H.text(r)
    listed = r.stdout.decode().split()
    assert {"pyflakes==3.2.0", "MarkupSafe==3.0.2", "jsonpointer==3.0.0"} <= set(listed), listed
    r = W.pip(prefix, "check")
    assert r.returncode == 0, H.text(r)
    assert sorted(os.listdir(str(prefix / "conda-meta"))) == ["history", "python-3.11.7-h0_pyenv.json"]
    r = H.run(arc, "verify", root=root, env=TOOLS)
    assert r.returncode == 0 and "3 wheels" in r.stdout.decode(), H.text(r)
    r = H.run(arc, "info", root=root, env=TOOLS)
    assert "pyflakes 3.2.0 (pyflakes-3.2.0-py2.py3-none-any.whl)" in r.stdout.decode()


def test_a_damaged_stored_wheel_is_found_by_verify_and_install(realistic_channel, wheels, tmp_path):
    arc = tmp_path / "w.coex"
    W.make_archive(realistic_channel, arc, wheels[:1])
    H.flip_byte(arc, "wheels/" + wheels[0].name)
    root = tmp_path / "root"
    r = H.run(arc, "verify", root=root, env=TOOLS)
    assert r.returncode == 1 and "wheels/pyflakes-3.2.0-py2.py3-none-any.whl is damaged" in H.text(r)
    r = H.run(arc, "-c", "1", root=root, timeout=300)
    assert r.returncode == 1, H.text(r)
    assert "wheel pyflakes-3.2.0-py2.py3-none-any.whl: the stored file" in H.text(r)
    assert "is not the locked one" in H.text(r)
    assert os.listdir(str(root / "envs")) == [n for n in os.listdir(str(root / "envs")) if n.endswith(".lock")]


def _refused(chan, tmp_path, wheel_items, match, specs=("python 3.11.*",)):
    arc = tmp_path / "bad.coex"
    W.make_archive(chan, arc, wheel_items, specs=specs)
    dest = tmp_path / "dest"
    r = H.run(arc, "extract", str(dest), root=tmp_path / "root", env=TOOLS, timeout=300)
    assert r.returncode == 1, H.text(r)
    assert match in H.text(r), H.text(r)
    assert not dest.exists() and not [n for n in os.listdir(str(tmp_path)) if n.startswith(".dest")]
    envs = tmp_path / "root" / "envs"
    assert not envs.exists() or not [n for n in os.listdir(str(envs)) if not n.endswith(".lock")]
    return H.text(r)


def test_bad_wheels_are_refused_with_nothing_left(realistic_channel, wheels, tmp_path):
    d = tmp_path / "w"
    d.mkdir()
    # a file altered after RECORD was written
    altered = W.make_wheel(d, "altered", "1.0", {"altered.py": b"A = 1\n"},
                           record_override={"altered.py": ["altered.py", W._b64(b"A = 2\n"), "6"]})
    _refused(realistic_channel, tmp_path, [wheels[0], altered],
             "wheel altered-1.0-py3-none-any.whl: altered.py does not match its RECORD")
    # a member escaping site-packages
    (d / "esc").mkdir()
    escaping = W.make_wheel(d / "esc", "escaping", "1.0", {"../../../../etc/evil": b"x\n"})
    _refused(realistic_channel, tmp_path, [escaping], "the member '../../../../etc/evil' escapes the wheel")
    escaping = W.make_wheel(d / "esc", "escdata", "1.0", {"escdata-1.0.data/data/../../x": b"x\n"})
    _refused(realistic_channel, tmp_path, [escaping], "escapes the wheel")
    # a file the wheel has but RECORD does not list
    unlisted = W.make_wheel(d, "unlisted", "1.0", {"unlisted.py": b""}, extra_members=[("sneaky.py", b"1\n")])
    _refused(realistic_channel, tmp_path, [unlisted], "sneaky.py is not in its RECORD")
    # a wheel format this runtime does not know
    v2 = W.make_wheel(d, "future", "1.0", {"future.py": b""}, wheel_version="2.0")
    _refused(realistic_channel, tmp_path, [v2], "its Wheel-Version is '2.0'; coex installs wheels of version 1.x only")
    # an unknown .data scheme
    scheme = W.make_wheel(d, "scheme", "1.0", {"scheme-1.0.data/etc/x.conf": b""})
    _refused(realistic_channel, tmp_path, [scheme], "unknown scheme 'etc'")


def test_a_wheel_may_not_overwrite_a_conda_package_or_another_wheel(realistic_channel, wheels, tmp_path):
    text = _refused(realistic_channel, tmp_path, [wheels[0]],
                    "wheel pyflakes-3.2.0-py2.py3-none-any.whl: it would overwrite "
                    "lib/python3.11/site-packages/pyflakes/__init__.py, which the conda package "
                    "pyflakes-3.2.0-pyh_whl_0.tar.bz2 installed", specs=("python 3.11.*", "pyflakes"))
    assert "drop one of them" in text
    d = tmp_path / "w"
    d.mkdir()
    twin = W.make_wheel(d, "twin", "1.0", {"markupsafe/__init__.py": b""})
    text = _refused(realistic_channel, tmp_path, [wheels[1], twin],
                    "wheel twin-1.0-py3-none-any.whl: it would overwrite lib/python3.11/site-packages/"
                    "markupsafe/__init__.py, which the wheel MarkupSafe-3.0.2-cp311")
    assert "two wheels cannot install the same file" in text
    script = W.make_wheel(d, "script", "1.0", {"script.py": b"def main(): pass\n",
                                               "script-1.0.dist-info/entry_points.txt":
                                                   b"[console_scripts]\npython3 = script:main\n"})
    _refused(realistic_channel, tmp_path, [script], "it would overwrite bin/python3, which the conda package python-3.11.7")


@pytest.mark.parametrize("version", ["3.6", "3.13"])
def test_every_host_python_installs_the_same_tree(realistic_channel, wheels, tmp_path, version):
    """The runtime (stdlib only) runs on the host's python, whatever its version: the same
    paths and modes as with 3.11."""
    arc = tmp_path / "w.coex"
    W.make_archive(realistic_channel, arc, wheels)
    trees = []
    for v in ("3.11", version):
        dest = tmp_path / ("env" + v)
        r = H.run(arc, "extract", str(dest), root=tmp_path / ("root" + v), python=H.PYTHONS[v],
                  env=TOOLS, timeout=300)
        assert r.returncode == 0, H.text(r)
        trees.append(dict((k, v[:2]) for k, v in W.tree(dest).items()))
    assert trees[0] == trees[1]


def test_a_wheel_for_another_python_or_platform_is_refused(realistic_channel, tmp_path):
    d = tmp_path / "w"
    d.mkdir()
    cp312 = W.make_wheel(d, "fast", "1.0", {"fast.py": b""}, tag="cp312-cp312-manylinux_2_17_x86_64")
    _refused(realistic_channel, tmp_path, [cp312], "wheel fast-1.0-cp312-cp312-manylinux_2_17_x86_64.whl: "
             "its tags (cp312-cp312-manylinux_2_17_x86_64) do not fit the environment's CPython 3.11 on linux-64")
    mac = W.make_wheel(d, "mac", "1.0", {"mac.py": b""}, tag="cp311-cp311-macosx_11_0_arm64")
    _refused(realistic_channel, tmp_path, [mac], "do not fit the environment's CPython 3.11 on linux-64")


@pytest.mark.parametrize("tag,pyver,subdir,fits", [
    ("py3-none-any", "3.11", "linux-64", True),
    ("py2-none-any", "3.11", "linux-64", False),
    ("py312-none-any", "3.11", "linux-64", False),
    ("cp311-cp311-manylinux_2_17_x86_64", "3.11", "linux-64", True),
    ("cp311-cp311-manylinux_2_17_x86_64", "3.12", "linux-64", False),
    ("cp311-cp311-manylinux_2_17_aarch64", "3.11", "linux-64", False),
    ("cp311-cp311-manylinux_2_17_aarch64", "3.11", "linux-aarch64", True),
    ("cp311-cp311-musllinux_1_1_x86_64", "3.11", "linux-64", False),
    ("cp38-abi3-manylinux2014_x86_64", "3.11", "linux-64", True),
    ("cp312-abi3-manylinux2014_x86_64", "3.11", "linux-64", False),
    ("cp311-cp311-win_amd64", "3.11", "linux-64", False),
    ("cp311-cp311-macosx_10_9_universal2", "3.11", "osx-arm64", True),
    ("cp311-cp311-macosx_11_0_x86_64", "3.11", "osx-arm64", False),
    ("pp310-pypy310_pp73-manylinux_2_17_x86_64", "3.10", "linux-64", False),
])
def test_tag_fits(tag, pyver, subdir, fits):
    from coex_runtime.wheel import tag_fits
    assert tag_fits(tag, pyver, subdir) is fits
