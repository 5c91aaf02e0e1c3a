"""./coex (coex.cli): create / lock / export-explicit, end to end on the tiny channel."""
import os
import subprocess
import sys
import zipfile

import pytest

from coex.cli import main, stage_sources
from coex.lib.errors import CoexError
from coex.lib.request import read_header
from coex_runtime.format import open_archive

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
COEX = os.path.join(REPO, "coex")
HAVE_RUNTIME = os.path.exists(os.path.join(REPO, "coex_runtime", "main.py"))


@pytest.fixture
def project(tiny_channel, tmp_path):
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "main.py").write_text(
        "import os, sys\nprint('hello from app', sys.argv[1:], os.environ.get('GREETING'))\n")
    (tmp_path / "environment.yml").write_text(
        "name: demo\nchannels:\n  - {}\ndependencies:\n  - python\n  - tinypy\n  - prefixprog\n"
        .format(tiny_channel.url))
    return tmp_path


def run_coex(args, cwd, env=None):
    return subprocess.run([COEX] + args, cwd=str(cwd), stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, universal_newlines=True,
                          env=dict(os.environ, **(env or {})), timeout=300)


def test_help():
    r = run_coex(["--help"], REPO)
    assert r.returncode == 0
    for cmd in ("create", "lock", "export-explicit"):
        assert cmd in r.stdout


def test_create_end_to_end(project, tmp_path):
    r = run_coex(["create", "-f", "environment.yml", "--entrypoint", "python src/main.py",
                  "-e", "tp=tinypy", "--env", "GREETING=hi", "-o", "dist/app.coex",
                  "--cache-dir", str(tmp_path / "cache"), "src"], project)
    assert r.returncode == 0, r.stderr
    assert r.stdout == ""
    out = project / "dist" / "app.coex"
    assert os.access(str(out), os.X_OK)
    with open_archive(str(out)) as ar:
        info = ar.info
        assert info["default_entry_point"] == "python"
        assert info["entry_points"]["python"]["argv"] == ["python", "src/main.py"]
        assert info["entry_points"]["tp"]["argv"] == ["tinypy"]
        assert info["env"] == {"GREETING": "hi"}
        assert [rel for rel, _ in ar.app_members()] == ["src/main.py"]
        names = [p["name"] for p in info["packages"]]
        assert {"python", "tinypy", "prefixprog", "libtiny", "zstd"} <= set(names)
        assert info["build"]["resolve"] == "demo"
    # the content-addressed cache is reused: a second build gives the same bytes
    again = project / "dist" / "again.coex"
    r = run_coex(["create", "-f", "environment.yml", "--entrypoint", "python src/main.py",
                  "-e", "tp=tinypy", "--env", "GREETING=hi", "-o", str(again),
                  "--cache-dir", str(tmp_path / "cache"), "src"], project)
    assert r.returncode == 0, r.stderr
    assert again.read_bytes() == out.read_bytes()


@pytest.mark.skipif(not HAVE_RUNTIME, reason="coex_runtime/main.py (the launcher) has not landed")
def test_created_archive_runs(project, tmp_path):
    out = project / "app.coex"
    assert main(["create", "-f", str(project / "environment.yml"), "--entrypoint",
                 "python src/main.py", "-e", "tp=tinypy", "--env", "GREETING=hi", "-o", str(out),
                 "--cache-dir", str(tmp_path / "cache"), str(project / "src")]) == 0
    env = dict(os.environ, COEX_ROOT=str(tmp_path / "root"))
    r = subprocess.run([str(out), "a", "b"], cwd=str(project), env=env, stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE, universal_newlines=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert "hello from app ['a', 'b'] hi" in r.stdout
    r = subprocess.run([str(out)], env=dict(env, COEX_ENTRYPOINT="tp"), stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE, universal_newlines=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert "tinypy ok" in r.stdout


def test_lock_then_create_from_lockfile_and_staleness(project, tmp_path, capsys):
    lock = project / "coex.lock"
    assert main(["lock", "-f", str(project / "environment.yml"), "-o", str(lock),
                 "--platform", "linux-64", "--platform", "linux-aarch64"]) == 0
    header = read_header(lock)
    assert header.platforms == ("linux-64", "linux-aarch64") and header.resolve == "demo"
    before = lock.read_bytes()
    out = project / "arm.coex"
    # a cross-platform archive from one platform of the two-platform lock (no re-solve)
    assert main(["create", "-f", str(project / "environment.yml"), "--platform", "linux-aarch64",
                 "--lockfile", str(lock), "-e", "prefixprog", "-o", str(out),
                 "--cache-dir", str(tmp_path / "cache")]) == 0
    with open_archive(str(out)) as ar:
        assert ar.info["platform"] == "linux-aarch64"
        assert {p["subdir"] for p in ar.info["packages"]} == {"linux-aarch64", "noarch"}
    assert lock.read_bytes() == before
    # edit the environment: the lock is now stale and create refuses it, naming the fix
    env_yml = project / "environment.yml"
    env_yml.write_text(env_yml.read_text() + "  - oldstyle\n")
    capsys.readouterr()
    rc = main(["create", "-f", str(env_yml), "--platform", "linux-aarch64",
               "--lockfile", str(lock), "-e", "prefixprog",
               "-o", str(project / "stale.coex"), "--cache-dir", str(tmp_path / "cache")])
    err = capsys.readouterr().err
    assert rc == 1
    assert "is stale (specs added: oldstyle)" in err and "./coex lock -f" in err
    assert not (project / "stale.coex").exists()


def test_create_writes_a_missing_lockfile(project, tmp_path):
    lock = project / "new.lock"
    assert main(["create", "-f", str(project / "environment.yml"), "--lockfile", str(lock),
                 "-e", "prefixprog", "-o", str(project / "a.coex"),
                 "--cache-dir", str(tmp_path / "cache")]) == 0
    assert read_header(lock).platforms == ("linux-64",)


def test_export_explicit(project, capsys):
    lock = project / "coex.lock"
    assert main(["lock", "-f", str(project / "environment.yml"), "-o", str(lock)]) == 0
    assert main(["export-explicit", "--lockfile", str(lock), "-o", str(project / "e.txt")]) == 0
    text = (project / "e.txt").read_text()
    assert "@EXPLICIT" in text and "# platform: linux-64" in text
    assert main(["lock", "-f", str(project / "environment.yml"), "-o", str(lock),
                 "--platform", "linux-64", "--platform", "linux-aarch64"]) == 0
    capsys.readouterr()
    assert main(["export-explicit", "-l", str(lock), "-o", str(project / "f.txt")]) == 1
    assert "choose one with --platform" in capsys.readouterr().err


@pytest.mark.parametrize("yml, args, needle", [
    ("channels: [CHAN]\ndependencies:\n  - python\n  - pip:\n    - -e .\n", [],
     "is an editable install: coex installs wheels"),
    ("dependencies: [python]\n", [], "lists no channels and none was given"),
    ("channels: [CHAN]\ndependencies: [python]\n", ["-e", "nosuch"],
     "no package of the environment installs bin/nosuch"),
    ("channels: [CHAN]\ndependencies: [unsolvable]\n", [], "Cannot solve resolve 'default'"),
    ("channels: [CHAN]\ndependencies: [python]\n", ["--platform", "linux64"],
     "Did you mean 'linux-64'"),
])
def test_bad_input_exits_1_with_one_clear_message(tiny_channel, tmp_path, yml, args, needle):
    env_yml = tmp_path / "environment.yml"
    env_yml.write_text(yml.replace("CHAN", tiny_channel.url))
    if "-e" not in args:
        args = args + ["-e", "python"]
    out = tmp_path / "x.coex"
    r = run_coex(["create", "-f", str(env_yml), "-o", str(out),
                  "--cache-dir", str(tmp_path / "cache")] + args, tmp_path)
    assert r.returncode == 1
    assert r.stdout == ""
    assert r.stderr.startswith("coex: error: ") and needle in r.stderr
    assert "Traceback" not in r.stderr
    assert not out.exists()


def test_relative_channel_path_is_resolved(tiny_channel, tmp_path, monkeypatch):
    monkeypatch.chdir(str(tiny_channel.path.parent))
    env_yml = tmp_path / "environment.yml"
    env_yml.write_text("dependencies: [prefixprog]\n")
    assert main(["lock", "-f", str(env_yml), "-c", "./" + tiny_channel.path.name,
                 "-o", str(tmp_path / "l.lock")]) == 0
    assert read_header(tmp_path / "l.lock").channels == (tiny_channel.url,)


def test_python_dash_m_coex_is_the_cli():
    r = subprocess.run([sys.executable, "-m", "coex", "--help"], stdout=subprocess.PIPE,
                       universal_newlines=True, env=dict(os.environ, PYTHONPATH=os.pathsep.join(
                           [os.path.join(REPO, "pants-plugins"), REPO])))
    assert r.returncode == 0 and "export-explicit" in r.stdout


def test_without_py_rattler_one_message_names_the_fix(project, tmp_path):
    hide = tmp_path / "hide"
    hide.mkdir()
    (hide / "rattler.py").write_text(
        "raise ModuleNotFoundError('No module named %r' % __name__, name=__name__)\n")
    r = subprocess.run(
        [sys.executable, "-m", "coex", "lock", "-f", "environment.yml", "-o", "x.lock"],
        cwd=str(project), stdout=subprocess.PIPE, stderr=subprocess.PIPE, universal_newlines=True,
        env=dict(os.environ, PYTHONPATH=os.pathsep.join(
            [str(hide), os.path.join(REPO, "pants-plugins"), REPO])), timeout=300)
    assert r.returncode == 1
    assert r.stderr.startswith("coex: error: the Python package py-rattler (module `rattler`) "
                               "is not installed for "), r.stderr
    assert "Traceback" not in r.stderr and not (project / "x.lock").exists()


def test_damaged_cache_entry_is_refetched(project, tmp_path):
    cache = tmp_path / "cache"
    args = ["create", "-f", str(project / "environment.yml"), "-e", "prefixprog",
            "--cache-dir", str(cache)]
    assert main(args + ["-o", str(project / "a.coex")]) == 0
    cached = [p for p in (cache / "pkgs").rglob("prefixprog-*.conda")]
    assert len(cached) == 1
    cached[0].write_bytes(b"\0" * cached[0].stat().st_size)      # same size, wrong bytes
    assert main(args + ["-o", str(project / "b.coex")]) == 0
    assert (project / "a.coex").read_bytes() == (project / "b.coex").read_bytes()


def test_channel_paths_in_the_file_are_relative_to_the_file(tiny_channel, tmp_path, monkeypatch):
    sub = tmp_path / "proj"
    sub.mkdir()
    rel = os.path.relpath(str(tiny_channel.path), str(sub))
    (sub / "environment.yml").write_text(
        "channels: [{}]\ndependencies: [prefixprog]\n".format(rel))
    monkeypatch.chdir(str(tmp_path))                      # not the file's directory
    assert main(["lock", "-f", "proj/environment.yml", "-o", str(tmp_path / "l.lock")]) == 0
    assert read_header(tmp_path / "l.lock").channels == (tiny_channel.url,)


def test_unwritable_lock_output_is_a_clear_error(project, capsys):
    blocker = project / "file"
    blocker.write_text("x")
    assert main(["lock", "-f", str(project / "environment.yml"),
                 "-o", str(blocker / "coex.lock")]) == 1
    assert "Cannot write {}".format(blocker / "coex.lock") in capsys.readouterr().err


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




def test_portable_lock_with_root_and_channel_location(tiny_channel, tmp_path, monkeypatch, capsys):
    """`--root`: channels under it are locked relative to it; `--channel-location NAME=URL`: a
    channel by name. The lockfile moves with the project, or to a machine with another mirror."""
    import shutil

    proj = tmp_path / "a" / "proj"
    shutil.copytree(tiny_channel.path, proj / "chan")
    (proj / "env.yml").write_text("channels: [./chan, mirror]\ndependencies: [prefixprog]\n")
    mirror = shutil.copytree(tiny_channel.path, tmp_path / "mirror-a")
    monkeypatch.chdir(proj)
    assert main(["lock", "-f", "env.yml", "-o", "app.lock", "--root", ".",
                 "--channel-location", "mirror={}".format(mirror)]) == 0
    text = (proj / "app.lock").read_text()
    assert "coex://buildroot/chan" in text and "coex://mirror" in text
    assert str(tmp_path) not in text
    # elsewhere: the same lockfile is fresh; packages come from this checkout and this mirror
    moved = tmp_path / "b" / "proj"
    shutil.move(str(proj), str(moved))
    other = shutil.move(str(mirror), str(tmp_path / "mirror-b"))
    monkeypatch.chdir(moved)
    args = ["--root", ".", "--channel-location", "mirror={}".format(other)]
    assert main(["create", "-f", "env.yml", "--lockfile", "app.lock", "-e", "prefixprog",
                 "-o", "app.coex", "--cache-dir", str(tmp_path / "cache"), *args]) == 0
    assert (moved / "app.lock").read_text() == text
    assert main(["export-explicit", "-l", "app.lock", "-o", "x.txt", *args]) == 0
    assert (moved / "chan").as_uri() in (moved / "x.txt").read_text()
    # without --root the lockfile cannot be read: it says so
    capsys.readouterr()
    assert main(["export-explicit", "-l", "app.lock", "-o", "y.txt"]) == 1
    assert "no build root is known here" in capsys.readouterr().err


def test_sources_directory_puts_its_contents_at_the_app_root(project, tmp_path, capsys,
                                                             monkeypatch):
    """`-D src` (pex's --sources-directory): `src/app/` is the package `app`, so `python -m app`
    runs; SRC `src` keeps `src/` (and the build says where `app` is instead of failing at run
    time)."""
    pkg = project / "src" / "app"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "__main__.py").write_text("import sys\nprint('app module', sys.argv[1:])\n")
    (project / "more").mkdir()
    (project / "more" / "extra.txt").write_text("x\n")
    out = project / "m.coex"
    base = ["create", "-f", str(project / "environment.yml"), "-e", "python -m app",
            "--cache-dir", str(tmp_path / "cache"), "-o", str(out)]
    assert main(base + ["-D", str(project / "src"), "--sources-directory",
                        str(project / "more")]) == 0
    with zipfile.ZipFile(str(out)) as zf:
        app = sorted(n[len("app/"):] for n in zf.namelist() if n.startswith("app/"))
    assert app == ["app/__init__.py", "app/__main__.py", "extra.txt", "main.py"]
    if HAVE_RUNTIME:
        r = subprocess.run([str(out), "x"], env=dict(os.environ, COEX_ROOT=str(tmp_path / "r")),
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                           universal_newlines=True, timeout=300)
        assert r.returncode == 0, r.stderr
        assert r.stdout == "app module ['x']\n"
    capsys.readouterr()
    monkeypatch.chdir(str(project))
    assert main(base + ["src"]) == 1
    assert "which the app layer has only under src/" in capsys.readouterr().err
    # two sources giving one path, and a -D that is not a directory
    (project / "more" / "main.py").write_text("")
    assert main(base + ["-D", "src", "-D", "more"]) == 1
    assert "would replace a file of the same app-layer path" in capsys.readouterr().err
    assert main(base + ["-D", "environment.yml"]) == 1
    assert "--sources-directory environment.yml: not a directory" in capsys.readouterr().err
