"""Locking PyPI requirements next to a conda environment (coex.lib.pipsolve, coex.lib.lockfile):
pip resolves against the tiny channel's CPython 3.9 (linux-64 / linux-aarch64), from a local
--find-links directory of real wheels from PyPI (tests/lib/wheels.py)."""
import os

import pytest

from coex.cli import build_request
from coex.lib.channels import check_locations
from coex.lib.errors import CoexError
from coex.lib.lockfile import lock_entries, solve_to_lockfile
from coex.lib.request import read_header, stale_reason

from tests.lib.wheels import WHEELS, find_links

MARKDOWN = "markdown_it_py-3.0.0-py3-none-any.whl"
MDURL = "mdurl-0.1.2-py3-none-any.whl"
SIX = "six-1.16.0-py2.py3-none-any.whl"
MARKUPSAFE = "MarkupSafe-2.1.5-cp39-cp39-manylinux_2_17_x86_64.manylinux2014_x86_64.whl"


def env_file(root, channel, pip, conda=("python",)):
    path = root / "environment.yml"
    path.write_text("channels: [{}]\ndependencies:\n{}  - pip:\n{}".format(
        channel.url, "".join("  - {}\n".format(c) for c in conda),
        "".join("    - {}\n".format(p) for p in pip)))
    return str(path)


def lock(root, channel, pip, platforms=("linux-64",), conda=("python",)):
    f = env_file(root, channel, pip, conda)
    req = build_request(f, platforms=list(platforms),
                        locations=check_locations(str(root), ()))
    out = str(root / "coex.lock")
    solve_to_lockfile(req, out)
    return out, req


@pytest.fixture
def project(tmp_path):
    find_links(tmp_path / "wheels", MARKDOWN, MDURL, SIX, MARKUPSAFE)
    return tmp_path


def test_lock_wheels_from_find_links(project, tiny_channel):
    out, req = lock(project, tiny_channel,
                    ["--no-index", "--find-links wheels", "markdown-it-py", "Six==1.16.0",
                     "markupsafe"])
    text = open(out).read()
    assert str(project) not in text  # portable: the find-links directory by placeholder
    assert "- pypi: coex://buildroot/wheels/mdurl-0.1.2-py3-none-any.whl" in text
    header = read_header(out)
    assert header.pypi == ("markdown-it-py", "markupsafe", "six==1.16.0")
    assert header.pypi_indexes == () and header.pypi_find_links == ("coex://buildroot/wheels",)
    assert stale_reason(header, req) is None
    lp = lock_entries(out, "linux-64")
    got = {w.filename: w for w in lp.wheels}
    assert set(got) == {MARKDOWN, MDURL, SIX, MARKUPSAFE}  # mdurl: markdown-it-py's dependency
    for f, w in got.items():
        assert (w.sha256, w.size) == WHEELS[f][:2]
        assert w.url == "coex://buildroot/wheels/" + f
    assert not got[MDURL].requested and got[SIX].requested and got[MARKDOWN].requested
    assert got[MARKDOWN].requires_dist and "mdurl~=0.1" in got[MARKDOWN].requires_dist
    assert lp.wheels_locked == 4
    assert "__glibc >=2.17" in lp.virtual_packages  # the manylinux_2_17 wheel's need
    # a subset: only six (and the conda packages python needs)
    sub = lock_entries(out, "linux-64", roots=("python",), pypi_roots=("six",))
    assert [w.name for w in sub.wheels] == ["six"]
    assert lock_entries(out, "linux-64", roots=("python",)).wheels == ()


def test_stale_when_pypi_inputs_change(project, tiny_channel):
    out, _ = lock(project, tiny_channel, ["--no-index", "--find-links wheels", "six"])
    header = read_header(out)
    f = env_file(project, tiny_channel, ["--no-index", "--find-links wheels", "six", "mdurl"])
    req = build_request(f, platforms=["linux-64"], locations=check_locations(str(project), ()))
    assert "PyPI requirements added: mdurl" in stale_reason(header, req)
    f = env_file(project, tiny_channel, ["--find-links wheels", "six"])
    req = build_request(f, platforms=["linux-64"], locations=check_locations(str(project), ()))
    assert "PyPI indexes added: https://pypi.org/simple" in stale_reason(header, req)


def test_conda_only_lock_has_no_pypi_keys(tiny_channel, tmp_path):
    (tmp_path / "environment.yml").write_text(
        "channels: [{}]\ndependencies: [python]\n".format(tiny_channel.url))
    req = build_request(str(tmp_path / "environment.yml"))
    solve_to_lockfile(req, str(tmp_path / "coex.lock"))
    text = open(str(tmp_path / "coex.lock")).read()
    assert "pypi" not in text
    assert lock_entries(str(tmp_path / "coex.lock"), "linux-64").wheels == ()


def test_requirement_the_conda_env_provides(project, tiny_channel):
    with pytest.raises(CoexError) as e:
        lock(project, tiny_channel, ["--no-index", "--find-links wheels", "TinyPy>=1"],
             conda=("python", "tinypy"))
    msg = str(e.value)
    assert "`tinypy>=1`" in msg and "conda package tinypy 1.0" in msg and "Keep one" in msg
    assert not os.path.exists(str(project / "coex.lock"))


def test_sdist_only_requirement(project, tiny_channel):
    (project / "wheels" / "onlysrc-1.0.tar.gz").write_bytes(b"not really")
    with pytest.raises(CoexError) as e:
        lock(project, tiny_channel, ["--no-index", "--find-links wheels", "onlysrc"])
    msg = str(e.value)
    assert "onlysrc has only source distributions (e.g. onlysrc-1.0.tar.gz)" in msg
    assert "conda package of onlysrc" in msg
    assert not os.path.exists(str(project / "coex.lock"))


def test_wrong_platform_tag(project, tiny_channel):
    with pytest.raises(CoexError) as e:  # only an x86_64 wheel of markupsafe; lock for aarch64
        lock(project, tiny_channel, ["--no-index", "--find-links wheels", "markupsafe"],
             platforms=("linux-aarch64",))
    msg = str(e.value)
    assert "linux-aarch64" in msg and "markupsafe has wheels on" in msg
    assert "none for this platform and Python" in msg
    assert "manylinux_2_17_x86_64" in msg  # what its wheels are tagged


def test_unknown_project(project, tiny_channel):
    with pytest.raises(CoexError) as e:
        lock(project, tiny_channel, ["--no-index", "--find-links wheels", "no-such-project"])
    assert "there is no project named no-such-project" in str(e.value)


def test_real_pypi_index(tiny_channel, tmp_path):
    """One cheap resolve against pypi.org itself (skipped when it cannot be reached)."""
    from tests.lib.wheels import wheel_dir

    wheel_dir()  # (skips when PyPI is unreachable)
    out, _ = lock(tmp_path, tiny_channel, ["six==1.16.0"])
    (w,) = lock_entries(out, "linux-64").wheels
    assert w.url.startswith("https://files.pythonhosted.org/") and w.filename == SIX
    assert (w.sha256, w.size) == WHEELS[SIX][:2]


def test_create_puts_the_wheels_into_the_archive(project, tiny_channel, tmp_path, monkeypatch):
    """./coex create -f of a `pip:` section: each locked wheel stored as it is under wheels/,
    COEX-INFO `wheels` in order with name, version, filename, sha256, size, requested."""
    import hashlib
    import zipfile

    from coex.cli import main
    from coex_runtime.format import open_archive

    env_file(project, tiny_channel, ["--no-index", "--find-links wheels", "markdown-it-py"])
    monkeypatch.chdir(str(project))
    out = str(project / "app.coex")
    assert main(["create", "-f", "environment.yml", "--root", ".", "-e", "markdown-it",
                 "-e", "py=python -m markdown_it", "-o", out, "--lockfile", "coex.lock",
                 "--cache-dir", str(tmp_path / "cache")]) == 0
    with open_archive(out) as ar:
        wheels = ar.info["wheels"]
    assert [(w["name"], w["version"], w["filename"], w["requested"]) for w in wheels] == [
        ("markdown-it-py", "3.0.0", MARKDOWN, True), ("mdurl", "0.1.2", MDURL, False)]
    with zipfile.ZipFile(out) as zf:
        for w in wheels:
            assert w["member"] == "wheels/" + w["filename"]
            info = zf.getinfo(w["member"])
            assert info.compress_type == zipfile.ZIP_STORED
            data = zf.read(w["member"])
            assert (hashlib.sha256(data).hexdigest(), len(data)) == WHEELS[w["filename"]][:2]
            assert (w["sha256"], w["size"]) == WHEELS[w["filename"]][:2]
    # the lock it wrote beside it is fresh and portable
    assert str(project) not in open(str(project / "coex.lock")).read()


def test_entry_point_not_in_any_wheel(project, tiny_channel, tmp_path, monkeypatch, capsys):
    from coex.cli import main

    env_file(project, tiny_channel, ["--no-index", "--find-links wheels", "six"])
    monkeypatch.chdir(str(project))
    assert main(["create", "-f", "environment.yml", "--root", ".", "-e", "markdown-it",
                 "-o", "x.coex", "--cache-dir", str(tmp_path / "cache")]) == 1
    assert "no package of the environment installs bin/markdown-it" in capsys.readouterr().err


def test_hash_mismatch_at_fetch(project, tiny_channel, tmp_path, monkeypatch, capsys):
    """A wheel changed after locking: the fetch names it and says to regenerate the lock."""
    from coex.cli import main

    env_file(project, tiny_channel, ["--no-index", "--find-links wheels", "six"])
    monkeypatch.chdir(str(project))
    assert main(["lock", "-f", "environment.yml", "--root", ".", "-o", "coex.lock"]) == 0
    wheel = project / "wheels" / SIX
    data = bytearray(wheel.read_bytes())
    data[100] ^= 0xFF
    wheel.write_bytes(bytes(data))
    assert main(["create", "-f", "environment.yml", "--root", ".", "-e", "python",
                 "--lockfile", "coex.lock", "-o", "x.coex",
                 "--cache-dir", str(tmp_path / "cache")]) == 1
    err = capsys.readouterr().err
    assert SIX in err and "failed verification" in err and "regenerate the lockfile" in err
    assert not os.path.exists("x.coex")


def test_explicit_export_lists_the_wheels_as_comments(project, tiny_channel):
    from coex.lib.explicit import explicit_text

    out, req = lock(project, tiny_channel, ["--no-index", "--find-links wheels", "six"])
    text = explicit_text(out, "linux-64", locations=req.locations)
    lines = text.splitlines()
    wheel_line = "# file://{}/wheels/{}#sha256={}".format(project, SIX, WHEELS[SIX][0])
    assert wheel_line in lines
    assert lines.index(wheel_line) > lines.index("@EXPLICIT")
    assert all(line.startswith("#") or ".conda" in line or ".tar.bz2" in line
               for line in lines[lines.index("@EXPLICIT") + 1:])


@pytest.mark.parametrize("pip, says", [
    ("echo 22.1.2", "which has pip 22.1.2"),
    ("echo 'No module named pip' >&2; exit 1", "which has no pip"),
])
def test_build_python_pip_too_old_or_missing(tmp_path, pip, says):
    from coex.lib.pipsolve import check_pip

    python = tmp_path / "python"
    python.write_text("#!/bin/sh\n" + pip + "\n")
    python.chmod(0o755)
    with pytest.raises(CoexError) as e:
        check_pip(str(python))
    assert "needs pip 22.2 or newer in " + str(python) in str(e.value)
    assert says in str(e.value) and "-m pip install 'pip>=22.2'" in str(e.value)
    python.write_text("#!/bin/sh\necho 22.2\n")
    assert check_pip(str(python)) == "22.2"
