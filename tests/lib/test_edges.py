"""Edge cases of ./coex and the build library found in review: symlinks in SRC, hand-edited
lockfiles, stale --lockfile advice, relative file channels."""
import os
import re

import pytest

from coex.cli import main, stage_sources
from coex.lib.errors import CoexError
from coex.lib.lockfile import lock_entries, local_channel, solve_to_lockfile
from tests.lib.conftest import make_request


def test_sources_with_symlinks_are_followed(tmp_path, monkeypatch):
    src = tmp_path / "src"
    (src / "pkg").mkdir(parents=True)
    (tmp_path / "shared").mkdir()
    (tmp_path / "shared" / "d.txt").write_text("d\n")
    (src / "pkg" / "main.py").write_text("x = 1\n")
    os.symlink("../../shared", str(src / "pkg" / "linked"))  # a dir outside SRC
    os.symlink("main.py", str(src / "pkg" / "alias.py"))  # a file
    monkeypatch.chdir(tmp_path)
    dest = tmp_path / "app"
    stage_sources(["src"], str(dest))
    assert (dest / "src" / "pkg" / "linked" / "d.txt").read_text() == "d\n"
    assert (dest / "src" / "pkg" / "alias.py").read_text() == "x = 1\n"
    assert not os.path.islink(str(dest / "src" / "pkg" / "alias.py"))


def test_sources_with_a_dangling_symlink(tmp_path, monkeypatch):
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "ok.py").write_text("")
    os.symlink("/nonexistent/target", str(tmp_path / "src" / "broken"))
    monkeypatch.chdir(tmp_path)
    with pytest.raises(CoexError) as e:
        stage_sources(["src"], str(tmp_path / "app"))
    msg = str(e.value)
    assert "src/broken" in msg and "/nonexistent/target" in msg and "dangling" in msg


def test_sources_with_a_symlink_loop(tmp_path, monkeypatch):
    (tmp_path / "src" / "pkg").mkdir(parents=True)
    (tmp_path / "src" / "pkg" / "m.py").write_text("")
    os.symlink("..", str(tmp_path / "src" / "pkg" / "up"))
    monkeypatch.chdir(tmp_path)
    with pytest.raises(CoexError) as e:
        stage_sources(["src"], str(tmp_path / "app"))
    msg = str(e.value)
    assert "src/pkg/up" in msg and "loop" in msg
    assert len(msg) < 600


def test_create_with_a_dangling_symlink_exits_1(tiny_channel, tmp_path, monkeypatch, capsys):
    (tmp_path / "src").mkdir()
    os.symlink("missing.py", str(tmp_path / "src" / "gone.py"))
    (tmp_path / "environment.yml").write_text(
        "channels: [{}]\ndependencies: [prefixprog]\n".format(tiny_channel.url))
    monkeypatch.chdir(tmp_path)
    rc = main(["create", "-f", "environment.yml", "-e", "prefixprog", "-o", "a.coex",
               "--cache-dir", str(tmp_path / "cache"), "src"])
    assert rc == 1
    assert "src/gone.py" in capsys.readouterr().err
    assert not (tmp_path / "a.coex").exists()


def _sha_field(text, package):
    m = re.search(r"conda: \S*{}-\S+\n(?:  .*\n)*?  sha256: ([0-9a-f]{{64}})".format(
        re.escape(package)), text)
    assert m, text
    return m.group(1)


def test_hand_edited_lockfile_names_the_package(tiny_channel, tmp_path):
    lock = tmp_path / "coex.lock"
    solve_to_lockfile(make_request(tiny_channel, platforms=["linux-64"]), lock)
    text = lock.read_text()
    sha = _sha_field(text, "prefixprog")
    lock.write_text(text.replace(sha, sha[:-3]))  # a truncated digest
    with pytest.raises(CoexError) as e:
        lock_entries(lock, "linux-64")
    msg = str(e.value)
    assert "prefixprog-1.0-h0_0.conda" in msg and "sha256" in msg and sha[:-3] in msg
    assert "regenerate" in msg


def test_stale_lockfile_advice_is_the_exact_command(tiny_channel, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "env.yml").write_text(
        "channels: [{}]\ndependencies: [prefixprog]\n".format(tiny_channel.url))
    assert main(["lock", "-f", "env.yml", "-o", "two.lock", "--platform", "linux-64",
                 "--platform", "linux-aarch64"]) == 0
    (tmp_path / "env.yml").write_text(
        "channels: [{}]\ndependencies: [prefixprog, oldstyle]\n".format(tiny_channel.url))
    capsys.readouterr()
    rc = main(["create", "-f", "env.yml", "-e", "prefixprog", "-o", "a.coex", "--lockfile",
               "two.lock", "--cache-dir", str(tmp_path / "cache")])
    err = capsys.readouterr().err
    assert rc == 1 and "specs added: oldstyle" in err
    assert "./coex lock -f env.yml -o two.lock --platform linux-64 --platform linux-aarch64" in err


def test_local_channel_paths(tmp_path):
    (tmp_path / "3rdparty" / "chan").mkdir(parents=True)
    base = str(tmp_path)
    assert local_channel("3rdparty/chan", base) == str(tmp_path / "3rdparty" / "chan")
    assert local_channel("./x/../3rdparty/chan", base) == str(tmp_path / "3rdparty" / "chan")
    assert local_channel("/abs/chan", base) == "/abs/chan"
    assert local_channel("conda-forge", base) == "conda-forge"
    assert local_channel("conda-forge/label/dev", base) == "conda-forge/label/dev"
    assert local_channel("file:///srv/c", base) == "file:///srv/c"
    assert local_channel("https://x.org/c", base) == "https://x.org/c"


def test_source_dot_is_the_app_root(tmp_path, monkeypatch):
    (tmp_path / "proj" / "src").mkdir(parents=True)
    (tmp_path / "proj" / "src" / "main.py").write_text("")
    (tmp_path / "proj" / "run.sh").write_text("")
    monkeypatch.chdir(tmp_path / "proj")
    dest = tmp_path / "app"
    stage_sources(["."], str(dest))
    # `-e "python src/main.py" .` must find src/main.py (was proj/src/main.py)
    assert sorted(os.listdir(str(dest))) == ["run.sh", "src"]
    (tmp_path / "proj" / "app.coex").write_text("old archive")
    dest2 = tmp_path / "app2"
    stage_sources(["."], str(dest2), exclude=["app.coex"])
    assert sorted(os.listdir(str(dest2))) == ["run.sh", "src"]  # not the archive being rewritten


def test_bad_platform_option_is_named(tiny_channel, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "env.yml").write_text("channels: [{}]\ndependencies: [prefixprog]\n".format(
        tiny_channel.url))
    assert main(["lock", "-f", "env.yml", "-o", "x.lock", "--platform", "linux64"]) == 1
    err = capsys.readouterr().err
    assert "'linux64' (from --platform)" in err and "linux-64" in err  # was "(from env.yml)"


def test_lockfile_with_merge_conflict_markers(tiny_channel, tmp_path):
    from coex.lib.lockfile import read_header

    lock = tmp_path / "coex.lock"
    solve_to_lockfile(make_request(tiny_channel, platforms=["linux-64"]), lock)
    lines = lock.read_text().splitlines(True)
    lock.write_text("".join(["<<<<<<< HEAD\n"] + lines + ["=======\n"] + lines + [">>>>>>> b\n"]))
    for read in (lambda: read_header(lock), lambda: lock_entries(lock, "linux-64")):
        with pytest.raises(CoexError) as e:
            read()
        assert "merge conflict markers" in str(e.value) and "regenerate" in str(e.value)
