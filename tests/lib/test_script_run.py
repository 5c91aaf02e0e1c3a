"""`coex run SCRIPT` / `coex build SCRIPT` / `coex gc`: scripts that carry their environment, on
the tiny channel (its `python` is a fake that runs the host's CPython 3.9), end to end through
`python -m coex` (coex.entry, as the console script) and the sh `coex-run`."""
import hashlib
import os
import shutil
import subprocess
import sys
import threading
import time

import pytest

import coex
from coex.buildcache import BuildCache
from coex.entry import script_key
from coex_runtime.format import open_archive

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
COEX_RUN = os.path.join(REPO, "pants-plugins", "bin", "coex-run")

BODY = """\
import os, sys
print("args", sys.argv[1:])
print("stdin", sys.stdin.read().strip())
print("script", os.environ.get("COEX_SCRIPT"))
sys.exit(int(os.environ.get("RC", "0")))
"""


def pep723(channel, deps=("python", "tinypy"), body=BODY, extra=""):
    return ("#!/usr/bin/env python\n# /// conda\n# dependencies = [{}]\n# channels = [\"{}\"]\n"
            "{}# ///\n{}".format(", ".join('"{}"'.format(d) for d in deps), channel, extra, body))


@pytest.fixture
def env(tmp_path):
    e = dict(os.environ, XDG_CACHE_HOME=str(tmp_path / "xdg"), COEX_ROOT=str(tmp_path / "root"),
             COEX_PYTHON=sys.executable,
             PYTHONPATH=os.pathsep.join([os.path.join(REPO, "pants-plugins"), REPO]))
    for k in ("COEX_VERBOSE", "COEX_TOOLS", "COEX_ENTRYPOINT", "COEX_SCRIPT", "COEX_ARCHIVE"):
        e.pop(k, None)
    return e


@pytest.fixture
def work(tmp_path):
    d = tmp_path / "work"
    d.mkdir()
    return d


def coex_cmd(args, cwd, env, input="", python=(sys.executable,), timeout=300):
    return subprocess.run(list(python) + ["-m", "coex"] + list(args), cwd=str(cwd), env=env,
                          input=input, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          universal_newlines=True, timeout=timeout)


def cache_of(env):
    return BuildCache(os.path.join(env["XDG_CACHE_HOME"], "coex-build"))


def archives(env):
    d = cache_of(env).scripts
    return sorted(n for n in os.listdir(d) if n.endswith(".coex")) if os.path.isdir(d) else []


def locks(env):
    d = cache_of(env).locks
    return sorted(os.listdir(d)) if os.path.isdir(d) else []


def test_pep723_script_runs_with_args_stdin_and_exit_status(tiny_channel, work, env):
    (work / "hello.py").write_text(pep723(tiny_channel.url))
    r = coex_cmd(["run", "hello.py", "a", "b c", "--lock"], work, dict(env, RC="5"),
                 input="from stdin\n")
    assert r.returncode == 5, r.stderr
    assert r.stdout.splitlines() == [
        "args ['a', 'b c', '--lock']", "stdin from stdin", "script {}".format(work / "hello.py")]
    assert r.stderr.count("coex: solving the environment of hello.py") == 1
    assert r.stderr.count("coex: building the archive of hello.py") == 1
    assert len(archives(env)) == 1 and len(locks(env)) == 1
    assert not (work / "hello.py.lock").exists()  # (`--lock` after SCRIPT is the script's)


def test_conda_execute_shell_script(tiny_channel, work, env):
    """A `.sh` script in conda-execute's format runs with the host's /bin/sh, the
    environment's programs on PATH."""
    (work / "tool.sh").write_text(
        "# conda execute\n# env:\n#  - prefixprog\n# channels:\n#  - {}\n\n"
        "echo \"argv $*\"; prefixprog-sh; echo \"mode $PREFIXPROG_MODE\"\n".format(
            tiny_channel.url))
    r = coex_cmd(["run", "tool.sh", "x", "y"], work, env)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0] == "argv x y" and lines[-1] == "mode tiny"
    assert lines[1].startswith(os.path.join(env["COEX_ROOT"], "envs"))  # (its prefix)


def test_second_run_is_warm(tiny_channel, work, env, tmp_path):
    """The second run of an unchanged script execs the built archive: no solve, no lock read, no
    build, not even the build library (a Python without site-packages has no py-rattler, PyYAML
    or zstandard), and neither the channel nor the fetched packages are needed any more."""
    channel = tmp_path / "channel"
    shutil.copytree(str(tiny_channel.path), str(channel))
    (work / "hello.py").write_text(pep723(channel.as_uri()))
    first = coex_cmd(["run", "hello.py", "1"], work, env)
    assert first.returncode == 0, first.stderr
    (name,) = archives(env)
    cache = cache_of(env)
    archive = os.path.join(cache.scripts, name)
    before = os.stat(archive)
    used = os.stat(archive[:-5] + ".used").st_mtime_ns
    shutil.rmtree(str(channel))
    shutil.rmtree(cache.pkgs)
    shutil.rmtree(cache.locks)
    time.sleep(0.01)
    warm = coex_cmd(["run", "hello.py", "2"], work, env, python=(sys.executable, "-S"),
                    input="x")
    assert warm.returncode == 0, warm.stderr
    assert warm.stderr == ""
    assert warm.stdout.splitlines()[:2] == ["args ['2']", "stdin x"]
    after = os.stat(archive)
    assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns)
    assert os.stat(archive[:-5] + ".used").st_mtime_ns > used  # (its last use, for gc)
    assert not os.path.exists(cache.locks)
    # the cold path does need the library: the same Python fails on a script not built yet
    (work / "other.py").write_text(pep723(channel.as_uri()) + "# other\n")
    cold = coex_cmd(["run", "other.py"], work, env, python=(sys.executable, "-S"))
    assert cold.returncode != 0


def test_changed_header_new_lock_changed_body_same_lock(tiny_channel, work, env):
    script = work / "s.py"
    script.write_text(pep723(tiny_channel.url))
    assert coex_cmd(["run", "s.py"], work, env).returncode == 0
    (lock1,) = locks(env)
    lock_bytes = (cache_of(env).locks + "/" + lock1)
    with open(lock_bytes, "rb") as f:
        lock_bytes = f.read()
    # a changed body: a new archive, the same lock (not solved again)
    script.write_text(pep723(tiny_channel.url, body="print('more')\n" + BODY))
    r = coex_cmd(["run", "s.py"], work, env)
    assert r.returncode == 0 and r.stdout.splitlines()[0] == "more", r.stderr
    assert "solving" not in r.stderr and "building the archive of s.py" in r.stderr
    assert locks(env) == [lock1] and len(archives(env)) == 2
    with open(os.path.join(cache_of(env).locks, lock1), "rb") as f:
        assert f.read() == lock_bytes
    # a header that says the same in other words (order, spacing): the same lock
    script.write_text(pep723(tiny_channel.url, deps=("tinypy", "python"), body=BODY + "#\n"))
    r = coex_cmd(["run", "s.py"], work, env)
    assert r.returncode == 0 and "solving" not in r.stderr, r.stderr
    # a changed header: a new lock
    script.write_text(pep723(tiny_channel.url, deps=("python", "tinypy", "prefixprog")))
    r = coex_cmd(["run", "s.py"], work, env)
    assert r.returncode == 0 and "solving the environment of s.py" in r.stderr, r.stderr
    assert len(locks(env)) == 2 and len(archives(env)) == 4


def test_bad_header_names_the_line(tiny_channel, work, env):
    (work / "bad.py").write_text(pep723(tiny_channel.url, deps=("python", "tiny py >=>=1")))
    r = coex_cmd(["run", "bad.py"], work, env)
    assert r.returncode == 1
    assert r.stderr.startswith("coex: error: bad.py:3: invalid conda match spec 'tiny py >=>=1'")
    (work / "bad2.py").write_text("print(1)\n# /// conda\n# dependencies = [\"python\"]\n"
                                  "# pypi-dependencies = [\"req uests\"]\n# ///\n")
    r = coex_cmd(["run", "bad2.py"], work, env)
    assert r.returncode == 1 and "bad2.py:4: invalid PyPI requirement 'req uests'" in r.stderr
    (work / "none.py").write_text("print(1)\n")
    r = coex_cmd(["run", "none.py"], work, env)
    assert r.returncode == 1 and "none.py has no environment header" in r.stderr
    assert archives(env) == [] and locks(env) == []


def test_concurrent_first_runs_lock_and_build_once(tiny_channel, work, env):
    (work / "c.py").write_text(pep723(tiny_channel.url))
    procs = [subprocess.Popen([sys.executable, "-m", "coex", "run", "c.py", str(i)], cwd=str(work),
                              env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, universal_newlines=True)
             for i in range(4)]
    results = [p.communicate(timeout=300) + (p.returncode,) for p in procs]
    for i, (out, err, rc) in enumerate(results):
        assert rc == 0, err
        assert out.splitlines()[0] == "args ['{}']".format(i)
    stderr = "".join(err for _, err, _ in results)
    assert stderr.count("coex: solving the environment") == 1, stderr
    assert stderr.count("coex: building the archive") == 1, stderr
    assert len(archives(env)) == 1 and len(locks(env)) == 1


def test_lock_beside_the_script(tiny_channel, work, env):
    script = work / "r.py"
    script.write_text(pep723(tiny_channel.url))
    r = coex_cmd(["run", "--lock", "r.py"], work, env)
    assert r.returncode == 0, r.stderr
    lock = work / "r.py.lock"
    assert "coex: wrote r.py.lock" in r.stderr and lock.is_file()
    assert locks(env) == []  # (not the cache's)
    text = lock.read_text()
    # later runs use it, warm: the lock is part of the archive's key
    r = coex_cmd(["run", "r.py"], work, env)
    assert r.returncode == 0 and r.stderr == "", r.stderr
    # it is used, not solved again, when the archive is gone
    shutil.rmtree(cache_of(env).scripts)
    r = coex_cmd(["run", "r.py"], work, env)
    assert r.returncode == 0 and "solving" not in r.stderr and "building" in r.stderr, r.stderr
    assert lock.read_text() == text
    # a stale one is an error, naming the fix; --lock updates it
    script.write_text(pep723(tiny_channel.url, deps=("python", "tinypy", "prefixprog")))
    r = coex_cmd(["run", "r.py"], work, env)
    assert r.returncode == 1
    assert "The lock r.py.lock is stale (specs added: prefixprog)" in r.stderr
    assert "coex run --lock r.py" in r.stderr
    r = coex_cmd(["run", "--lock", "r.py"], work, env)
    assert r.returncode == 0 and "coex: wrote r.py.lock" in r.stderr, r.stderr
    assert "prefixprog" in lock.read_text()
    # script and lock move together (the lock's channel is its URL, not under the script's dir)
    moved = work / "moved"
    moved.mkdir()
    shutil.copy(str(script), str(moved / "r.py"))
    shutil.copy(str(lock), str(moved / "r.py.lock"))
    r = coex_cmd(["run", "moved/r.py"], work, env)
    assert r.returncode == 0 and "solving" not in r.stderr, r.stderr


def test_lock_beside_a_script_with_a_local_channel_moves_with_it(tiny_channel, work, env):
    """A channel under the script's directory is locked relative to it."""
    proj = work / "proj"
    shutil.copytree(str(tiny_channel.path), str(proj / "channel"))
    (proj / "s.py").write_text(pep723("./channel"))
    assert coex_cmd(["run", "--lock", "proj/s.py"], work, env).returncode == 0
    assert "coex://buildroot/channel" in (proj / "s.py.lock").read_text()
    shutil.move(str(proj), str(work / "elsewhere"))
    shutil.rmtree(os.path.join(env["XDG_CACHE_HOME"]))
    r = coex_cmd(["run", "elsewhere/s.py"], work, env)
    assert r.returncode == 0 and "solving" not in r.stderr, r.stderr


def test_build_gives_the_archive(tiny_channel, work, env, tmp_path):
    (work / "b.py").write_text(pep723(tiny_channel.url))
    r = coex_cmd(["build", "b.py", "-o", "dist/b.coex"], work, env)
    assert r.returncode == 0 and "coex: wrote dist/b.coex" in r.stderr, r.stderr
    out = work / "dist" / "b.coex"
    assert os.access(str(out), os.X_OK)
    # `coex run` of the same script uses the same archive (warm)
    r = coex_cmd(["run", "b.py"], work, env)
    assert r.returncode == 0 and r.stderr == "", r.stderr
    (name,) = archives(env)
    with open(os.path.join(cache_of(env).scripts, name), "rb") as f:
        assert f.read() == out.read_bytes()
    # copied elsewhere, it runs on its own (its own cache; no coex, no channel)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    shutil.copy(str(out), str(elsewhere / "b.coex"))
    run_env = dict(env, COEX_ROOT=str(tmp_path / "other-root"))
    r = subprocess.run([str(elsewhere / "b.coex"), "z"], env=run_env, input="",
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, universal_newlines=True)
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines() == ["args ['z']", "stdin ", "script None"]
    # for another platform (the lock covers the header's `platforms`)
    (work / "x.py").write_text(pep723(
        tiny_channel.url, extra='# platforms = ["linux-64", "linux-aarch64"]\n'))
    r = coex_cmd(["build", "--platform", "linux-aarch64", "x.py", "-o", "x.coex"], work, env)
    assert r.returncode == 0, r.stderr
    with open_archive(str(work / "x.coex")) as ar:
        assert ar.info["platform"] == "linux-aarch64"
        assert {p["subdir"] for p in ar.info["packages"]} == {"linux-aarch64", "noarch"}
        assert ar.info["entry_points"]["x"]["argv"] == ["python", "x.py"]
    # a platform the header's `platforms` do not list
    (work / "p.py").write_text(pep723(tiny_channel.url, extra='# platforms = ["linux-64"]\n'))
    r = coex_cmd(["build", "--platform", "linux-aarch64", "p.py", "-o", "p.coex"], work, env)
    assert r.returncode == 1
    assert "lists the platforms linux-64, not linux-aarch64" in r.stderr


def _fake_archive(path, text="ARCHIVE"):
    """An sh script in place of an archive: prints what it got. Not executable: the archive is
    run by its sh preamble, as on a noexec file system."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        f.write("#!/bin/sh\necho \"{} $# $*\"; echo \"script $COEX_SCRIPT\"\n"
                "echo \"archive $COEX_ARCHIVE\"\n".format(text))
    os.chmod(path, 0o644)


@pytest.mark.parametrize("name", ["k.py", "with space.py", "back\\slash.py"])
@pytest.mark.parametrize("with_lock", [False, True])
def test_python_and_sh_warm_paths_compute_the_same_key(work, env, name, with_lock):
    """coex/entry.py and coex-run find the same archive (a stand-in at the key's path)."""
    script = work / name
    script.write_bytes(b"#!/usr/bin/env coex-run\nprint('x')\n")
    lock = None
    if with_lock:
        lock = b"# coex-lockfile: {}\n"
        (work / (name + ".lock")).write_bytes(lock)
    key = script_key(name, script.read_bytes(), lock)
    archive = os.path.join(cache_of(env).scripts, key + ".coex")
    _fake_archive(archive)
    for argv in ([sys.executable, "-m", "coex", "run", name, "a", "b"], [COEX_RUN, name, "a", "b"]):
        r = subprocess.run(argv, cwd=str(work), env=env, stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, universal_newlines=True)
        assert r.returncode == 0, r.stderr
        assert r.stdout.splitlines() == [
            "ARCHIVE 2 a b", "script {}".format(work / name), "archive {}".format(archive)], argv


def test_coex_run_shebang(tiny_channel, work, env):
    """`#!/usr/bin/env coex-run` scripts run as programs: the first run through `coex run`, later
    ones from the sh `coex-run` alone (no Python before the archive's program)."""
    script = work / "prog.py"
    script.write_text(pep723(tiny_channel.url).replace("#!/usr/bin/env python",
                                                       "#!/usr/bin/env coex-run"))
    script.chmod(0o755)
    path_env = dict(env, PATH=os.path.dirname(COEX_RUN) + os.pathsep + env["PATH"])
    r = subprocess.run(["./prog.py", "1"], cwd=str(work), env=path_env, input="",
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, universal_newlines=True)
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines()[0] == "args ['1']" and "building" in r.stderr
    # warm: `coex run` is not reachable (no fallback), and the archive is run straight
    sh_only = dict(path_env, PATH=os.path.dirname(COEX_RUN) + os.pathsep + "/usr/bin:/bin")
    copy = work / "bin"
    copy.mkdir()
    shutil.copy(COEX_RUN, str(copy / "coex-run"))  # (no `coex` beside it)
    sh_only["PATH"] = str(copy) + os.pathsep + "/usr/bin:/bin"
    r = subprocess.run(["./prog.py", "2"], cwd=str(work), env=sh_only, input="in",
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, universal_newlines=True)
    assert r.returncode == 0 and r.stderr == "", r.stderr
    assert r.stdout.splitlines()[:2] == ["args ['2']", "stdin in"]


def test_coex_run_knows_the_version():
    with open(COEX_RUN) as f:
        assert "COEX_RUN_VERSION={}  #".format(coex.__version__) in f.read()


def test_gc(tiny_channel, work, env):
    (work / "g.py").write_text(pep723(tiny_channel.url))
    (work / "h.py").write_text(pep723(tiny_channel.url, deps=("python",)))
    for s in ("g.py", "h.py"):
        assert coex_cmd(["run", s], work, env).returncode == 0
    cache = cache_of(env)
    assert len(archives(env)) == 2 and len(locks(env)) == 2
    # recent: all kept
    r = coex_cmd(["gc", "--build-cache-only"], work, env)
    assert r.returncode == 0, r.stderr
    assert "removed 0 script archives, 0 script locks, 0 packages" in r.stdout
    assert len(archives(env)) == 2
    # a running script's archive is kept however old; the rest goes
    sleeper = subprocess.Popen([sys.executable, "-m", "coex", "run", "g.py"], cwd=str(work),
                               env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                               universal_newlines=True)
    try:
        assert sleeper.stdout.readline() == "args []\n"  # (now it waits for stdin)
        r = coex_cmd(["gc", "--older-than", "0"], work, env)
        assert r.returncode == 0, r.stderr
        assert "removed 1 script archive, 1 script lock," in r.stdout, r.stdout
        assert "1 script archive kept" in r.stdout
        (kept,) = archives(env)
        g_key = script_key("g.py", (work / "g.py").read_bytes())
        assert kept == g_key + ".coex"
        assert len(locks(env)) == 1  # g's: its archive is kept
        assert "coex gc:" in r.stdout.splitlines()[-1]  # (then the archives' cache)
    finally:
        sleeper.communicate("", timeout=60)
    assert sleeper.returncode == 0
    r = coex_cmd(["gc", "--older-than", "0", "--build-cache-only"], work, env)
    assert r.returncode == 0 and archives(env) == [] and locks(env) == [], r.stdout
    assert os.listdir(cache.pkgs) == [] and os.listdir(cache.tmp) == []
    # and a script runs again after gc (locks, builds)
    r = coex_cmd(["run", "g.py"], work, env)
    assert r.returncode == 0 and "solving" in r.stderr, r.stderr
    r = coex_cmd(["gc", "--older-than", "soon"], work, env)
    assert r.returncode == 1 and "--older-than: cannot read the duration 'soon'" in r.stderr


def test_gc_waits_for_builds(tmp_path):
    cache = BuildCache(str(tmp_path / "cache"))
    os.makedirs(cache.scripts)
    done = []
    with cache.building():
        t = threading.Thread(target=lambda: done.append(
            __import__("coex.buildcache").buildcache.gc(cache, 0)))
        t.start()
        t.join(0.5)
        assert not done  # gc waits while a build holds the cache
    t.join(30)
    assert done and done[0]["script archives"] == 0


def test_gc_removes_unused_wheels(tmp_path):
    from coex.buildcache import fetch_cached, gc
    from coex.lib.records import LockedWheel

    data = b"not really a wheel, fetched by content"
    src = tmp_path / "w-1.0-py3-none-any.whl"
    src.write_bytes(data)
    cache = BuildCache(str(tmp_path / "cache"))
    old = LockedWheel("w", "1.0", src.name, src.as_uri(), hashlib.sha256(data).hexdigest(), len(data))
    path = fetch_cached(old, cache.root)  # where `coex build` keeps the wheels of a lock
    assert os.path.dirname(os.path.dirname(path)) == cache.wheels
    fresh = os.path.join(cache.wheels, "f" * 64, "f-1.0-py3-none-any.whl")
    os.makedirs(os.path.dirname(fresh))
    open(fresh, "wb").close()
    os.utime(path, (time.time() - 3600, time.time() - 3600))
    r = gc(cache, 600)
    assert r["packages"] == 1 and r["freed"] >= len(data), r
    assert os.listdir(cache.wheels) == ["f" * 64]  # the one used within 10 minutes is kept


@pytest.mark.slow
def test_real_cpython_script(realistic_channel, work, env):
    """A conda-execute script on the realistic channel: the real CPython 3.11 runs it (its
    shebang's python3 is the environment's, not the host's), numpy imports."""
    (work / "calc").write_text(
        "#!/usr/bin/env python3\n# conda execute\n# env:\n#  - python 3.11.*\n#  - numpy\n"
        "# channels:\n#  - {}\n\nimport os, sys, numpy\nprint(sys.version_info[:2], "
        "sys.executable.startswith(os.environ['CONDA_PREFIX'] + '/bin/'), "
        "int(numpy.arange(int(sys.argv[1]) + 1).sum()))\n".format(
            realistic_channel.as_uri()))
    for _ in range(2):  # cold, then warm
        r = coex_cmd(["run", "calc", "100"], work, env)
        assert r.returncode == 0, r.stderr
        assert r.stdout == "(3, 11) True 5050\n"
    assert r.stderr == ""


@pytest.mark.slow
def test_real_cpython_script_with_pypi_dependencies(realistic_channel, work, env):
    """`pypi-dependencies` of a `# /// conda` block: locked from PyPI with the conda packages,
    installed into the environment; the script imports the wheels, runs a console script."""
    from tests.lib.wheels import pypi_or_skip

    pypi_or_skip("the script's pypi-dependencies cannot be locked")
    (work / "md.py").write_text(pep723(
        realistic_channel.as_uri(), deps=("python 3.11.*",),
        extra='# pypi-dependencies = ["markdown-it-py ==3.0.0"]\n',
        body="import os, subprocess, sys\nfrom importlib.metadata import distribution\n"
             "import markdown_it, mdurl\nprint(markdown_it.MarkdownIt().render(sys.argv[1]).strip())\n"
             "print(distribution('mdurl').read_text('INSTALLER').strip())\n"
             "sys.stdout.flush()\nsubprocess.run(['markdown-it', os.devnull], check=True)\n"))
    r = coex_cmd(["run", "md.py", "*x*"], work, env)
    assert r.returncode == 0, r.stderr
    assert r.stdout == "<p><em>x</em></p>\ncoex\n", r.stdout
    assert "markdown-it-py==3.0.0" in r.stderr  # (the solve says what it locks)
