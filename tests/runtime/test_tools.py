"""COEX_TOOLS=1 tools: info, verify, extract DIR, gc [--older-than]."""
import fcntl
import json
import os
import shutil
import stat
import subprocess
import time

import pytest

from tests.runtime import rt_helpers as H

TOOLS = {"COEX_TOOLS": "1"}


def _info(arc, root):
    r = H.run(arc, "info", root=root, env=TOOLS)
    assert r.returncode == 0, H.text(r)
    return json.loads(r.stdout.decode())


def test_info_reports_record_and_cache_state(std_archive, root):
    arc, info = std_archive
    before = _info(arc, root)
    assert before["record"] == info
    assert before["archive"] == str(arc)
    c = before["cache"]
    assert c["root"] == str(root) and c["fallback"] is None
    assert (c["env_ready"], c["launcher_ready"], c["packages_cached"], c["last_use"]) == (False, False, 0, None)
    assert H.run(arc, root=root).returncode == 0
    c = _info(arc, root)["cache"]
    assert c["env_ready"] and c["app_ready"] and c["launcher_ready"]
    assert c["packages_cached"] == c["packages_total"] == len(info["packages"])
    assert c["last_use"] is not None and c["env_dir"].endswith(H.ids(info)[1])


def test_verify_ok(std_archive, root):
    arc, info = std_archive
    r = H.run(arc, "verify", root=root, env=TOOLS)
    assert r.returncode == 0 and "OK: %d packages" % len(info["packages"]) in r.stdout.decode()
    assert not os.path.exists(str(root))  # verify touches no cache


def test_extract_into_a_prefix_of_my_choice(std_archive, root, tmp_path):
    arc, info = std_archive
    dest = tmp_path / "my env"
    r = H.run(arc, "extract", str(dest), root=root, env=TOOLS)
    assert r.returncode == 0, H.text(r)
    out = subprocess.run([str(dest / "bin" / "prefixprog")], stdout=subprocess.PIPE).stdout.decode().strip()
    assert out == str(dest)  # binary prefix replaced for DIR
    assert (dest / "share" / "prefixprog" / "post-link-ran").read_text().startswith(str(dest) + " ")
    assert len(list((dest / "conda-meta").glob("*.json"))) == len(info["packages"])
    assert not list(tmp_path.glob(".my env.coex-*"))  # no staging left beside it
    # refuses a non-empty target, and usage errors are usage errors
    r = H.run(arc, "extract", str(dest), root=root, env=TOOLS)
    assert r.returncode == 1 and "not an empty directory" in r.stderr.decode()
    r = H.run(arc, "extract", root=root, env=TOOLS)
    assert r.returncode == 2 and "usage" in r.stderr.decode()
    empty = tmp_path / "empty"
    empty.mkdir()
    assert H.run(arc, "extract", str(empty), root=root, env=TOOLS).returncode == 0
    assert (empty / "bin" / "prefixprog").exists()


def test_extract_of_a_damaged_archive_leaves_nothing(std_archive, root, tmp_path):
    import shutil
    arc0, info = std_archive
    arc = tmp_path / "bad.coex"
    shutil.copy(str(arc0), str(arc))
    H.flip_byte(arc, [p for p in info["packages"] if p["name"] == "python"][0]["member"])
    dest = tmp_path / "out"
    r = H.run(arc, "extract", str(dest), root=root, env=TOOLS)
    assert r.returncode == 1 and "damaged" in r.stderr.decode(), H.text(r)
    assert not dest.exists()
    assert set(os.listdir(str(tmp_path))) <= {"bad.coex", "home"}  # no staging left either


def _age(path, days):
    t = time.time() - days * 86400
    os.utime(str(path), (t, t), follow_symlinks=False)


def test_gc_removes_unused_and_keeps_what_is_in_use(std_archive, tiny_channel, tmp_path, root):
    a, info_a = std_archive
    b = tmp_path / "b.coex"
    info_b = H.make_archive(tiny_channel.path, b, names=("libtiny", "prefixprog"),
                            entry_points={"pp": "prefixprog"}, app={})
    assert H.run(a, root=root).returncode == 0 and H.run(b, root=root).returncode == 0
    ida, enva, appa = H.ids(info_a)
    idb, envb, _ = H.ids(info_b)
    launch = root / "launch"
    for p in (launch / (ida + ".used"), launch / (ida + ".sh"), root / "envs" / enva / ".coex-ready",
              root / "apps" / appa):
        _age(p, 30)
    for p in (root / "pkgs").iterdir():
        _age(p, 30)
    for p in (launch / (idb + ".used"), launch / (idb + ".sh")):
        _age(p, 10)  # used 10 days ago: inside the default 14 days
    (root / "tmp" / "env-dead-123-x").mkdir()  # debris of a killed run
    (root / "code" / "0123-cpython-39").write_bytes(b"x")  # the runtime's code for an old Python
    _age(root / "code" / "0123-cpython-39", 30)
    (root / "code" / "0123-cpython-39.tmp-1").write_bytes(b"x")  # a killed first run's
    code = sorted(p.name for p in (root / "code").iterdir() if "0123" not in p.name)
    assert code  # the runs' own, used just now
    r = H.run(a, "gc", root=root, env=TOOLS)
    assert r.returncode == 0, H.text(r)
    assert "removed 1 launchers" in r.stdout.decode() and "removed 1 environments" in r.stdout.decode()
    assert not (launch / (ida + ".sh")).exists() and not (root / "envs" / enva).exists()
    assert not (root / "apps" / appa).exists()
    assert (launch / (idb + ".sh")).exists() and (root / "envs" / envb / ".coex-ready").exists()
    kept = {p["stored_sha256"] for p in info_b["packages"]}
    assert {p.name for p in (root / "pkgs").iterdir()} == kept  # only b's packages remain
    assert list((root / "tmp").iterdir()) == []
    assert sorted(p.name for p in (root / "code").iterdir()) == code
    r = H.run(b, root=root, env={"COEX_VERBOSE": "1"})  # b is still warm
    assert r.returncode == 0 and r.stderr == b"", H.text(r)
    r = H.run(a, root=root, env={"COEX_VERBOSE": "1"})  # a simply installs again
    assert r.returncode == 0 and "extract+link" in r.stderr.decode()
    for p in (launch / (idb + ".used"), launch / (idb + ".sh")):
        _age(p, 10)
    r = H.run(a, "gc", "--older-than", "5d", root=root, env=TOOLS)
    assert "removed 1 launchers" in r.stdout.decode()  # b (10 days) goes, a (just now) stays
    assert (launch / (ida + ".sh")).exists() and not (launch / (idb + ".sh")).exists()


def test_gc_waits_for_running_installs_and_rejects_bad_durations(std_archive, root):
    arc, _ = std_archive
    r = H.run(arc, "gc", "--older-than", "soon", root=root, env=TOOLS)
    assert r.returncode == 2 and "cannot read the duration 'soon'" in r.stderr.decode()
    assert H.run(arc, root=root).returncode == 0
    fd = os.open(str(root / "gc.lock"), os.O_RDWR)
    fcntl.flock(fd, fcntl.LOCK_SH)  # what an install in progress holds
    env = H.base_env(root)
    env.update(TOOLS)
    p = subprocess.Popen([str(arc), "gc", "--older-than", "0"], env=env, stdout=subprocess.PIPE)
    time.sleep(1.0)
    assert p.poll() is None  # gc waits
    os.close(fd)
    assert p.wait(30) == 0
    assert b"removed 1 launchers" in p.stdout.read()
    p.stdout.close()


def test_unknown_tool_is_a_usage_error(std_archive, root):
    arc, _ = std_archive
    r = H.run(arc, "frobnicate", root=root, env=TOOLS)
    assert r.returncode == 2 and "unknown tool 'frobnicate'" in r.stderr.decode()
    assert "extract DIR" in r.stderr.decode()


@pytest.mark.parametrize("ver,py", sorted(H.PYTHONS.items()), ids=sorted(H.PYTHONS))
def test_tools_on_every_python(std_archive, root, tmp_path, ver, py):
    arc, info = std_archive
    r = H.run(arc, "info", root=root, python=py, env=TOOLS)
    assert r.returncode == 0 and json.loads(r.stdout.decode())["record"] == info, H.text(r)
    r = H.run(arc, "verify", root=root, python=py, env=TOOLS)
    assert r.returncode == 0 and "OK" in r.stdout.decode(), H.text(r)
    dest = tmp_path / "x"
    r = H.run(arc, "extract", str(dest), root=root, python=py, env=TOOLS)
    assert r.returncode == 0, H.text(r)
    out = subprocess.run([str(dest / "bin" / "prefixprog")], stdout=subprocess.PIPE).stdout.decode()
    assert out.strip() == str(dest)
    r = H.run(arc, "gc", "--older-than", "0", root=root, python=py, env=TOOLS)
    assert r.returncode == 0 and "coex gc:" in r.stdout.decode(), H.text(r)


def test_gc_keeps_the_environment_of_a_running_program(std_archive, root):
    arc, info = std_archive
    env = H.base_env(root, COEX_ENTRYPOINT="sh")
    p = subprocess.Popen([str(arc), "echo ready; exec sleep 60"], env=env, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE)
    try:
        assert p.stdout.readline() == b"ready\n"
        r = H.run(arc, "gc", "--older-than", "0s", root=root, env={"COEX_TOOLS": "1"})
        assert r.returncode == 0, H.text(r)
        assert os.path.isfile(os.path.join(H.prefix_of(root, info), ".coex-ready")), r.stdout.decode()
        assert os.path.isdir(os.path.join(str(root), "apps", H.ids(info)[2]))
    finally:
        p.kill()
        p.wait()
        p.stdout.close()
        p.stderr.close()
    r = H.run(arc, "gc", "--older-than", "0s", root=root, env={"COEX_TOOLS": "1"})
    assert r.returncode == 0 and not os.path.exists(H.prefix_of(root, info)), H.text(r)


def test_info_of_a_never_run_archive_creates_nothing(std_archive, tmp_path):
    import json
    arc, info = std_archive
    home = tmp_path / "home"
    home.mkdir()
    env = {"PATH": os.path.dirname(H.HOST_PY) + ":/usr/bin:/bin", "HOME": str(home), "COEX_TOOLS": "1"}
    r = subprocess.run([str(arc), "info"], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert r.returncode == 0, H.text(r)
    c = json.loads(r.stdout.decode())["cache"]
    assert c["root"] == str(home / ".cache" / "coex") and c["exists"] is False
    assert (c["env_ready"], c["launcher_ready"], c["packages_cached"], c["last_use"]) == (False, False, 0, None)
    assert os.listdir(str(home)) == []
    del env["COEX_TOOLS"]
    assert subprocess.run([str(arc)], env=env, stdout=subprocess.PIPE).returncode == 0
    r = subprocess.run([str(arc), "info"], env=dict(env, COEX_TOOLS="1"), stdout=subprocess.PIPE)
    c = json.loads(r.stdout.decode())["cache"]
    assert c["exists"] is True and c["launcher_ready"] is True and c["last_use"] is not None


def test_extract_into_the_current_directory_keeps_it(std_archive, tmp_path):
    """`mkdir env && cd env && app.coex extract .`: the caller's cwd must stay the directory that
    now holds the environment (it was removed and replaced by another one)."""
    arc, _ = std_archive
    d = tmp_path / "env"
    d.mkdir()
    env = H.base_env(tmp_path / "root", COEX_TOOLS="1")
    r = H.sh("%s extract . >/dev/null && ls bin && bin/prefixprog" % arc, env, cwd=str(d))
    assert r.returncode == 0, H.text(r)
    lines = r.stdout.decode().split()
    assert "prefixprog" in lines and lines[-1] == str(d), H.text(r)


@pytest.mark.parametrize("args,msg", [(["--older-than"], "needs a duration"), (["--older-than", "-1d"], "zero or more"),
                                      (["--older-than=nan"], "zero or more")])
def test_gc_refuses_missing_negative_and_odd_durations(std_archive, root, args, msg):
    arc, info = std_archive
    assert H.run(arc, root=root).returncode == 0
    r = H.run(arc, "gc", *args, root=root, env={"COEX_TOOLS": "1"})
    assert r.returncode == 2 and msg in r.stderr.decode(), H.text(r)
    assert os.path.isfile(os.path.join(H.prefix_of(root, info), ".coex-ready"))


def test_extract_refuses_a_prefix_with_shell_special_characters(std_archive, tmp_path):
    arc, _ = std_archive
    dest = tmp_path / "env$HOME"
    r = H.run(arc, "extract", str(dest), root=tmp_path / "root", env={"COEX_TOOLS": "1"})
    assert r.returncode == 1 and "contains '$'" in r.stderr.decode(), H.text(r)
    assert not dest.exists() and not (tmp_path / "root").exists()


@pytest.mark.parametrize("how", ["warm", "warm-bash", "cold"])
def test_gc_never_removes_an_environment_a_run_is_activating(tiny_channel, tmp_path, root, how):
    """`gc --older-than 0s` while a run is inside its activate.d scripts (before the exec):
    sourced by dash (which keeps the launcher open) or bash (which does not), warm, or on the
    first run (the sh the cold path execs): the environment stays, and the program runs."""
    pkg = H.custom_package(tmp_path / "chan", "slowact", {
        # (not when a post-link script runs in the activated environment while installing)
        "etc/conda/activate.d/slowact.sh": 'if [ -n "${SLOWACT_FIFO:-}" ] && [ -z "${PKG_NAME:-}" ]; then '
                                           'read _x < "$SLOWACT_FIFO"; fi\n'})
    arc = tmp_path / "slowact.coex"
    info = H.make_archive(tiny_channel.path, arc, names=("libtiny", "prefixprog"), extra=[pkg],
                          entry_points={"p": "prefixprog"}, default="p", app={})
    if how != "cold":
        assert H.run(arc, root=root).returncode == 0
    barrier = H.Barrier(tmp_path, "activate")
    argv = (["bash"] if how == "warm-bash" else []) + [str(arc)]
    p = subprocess.Popen(argv, env=H.base_env(root, SLOWACT_FIFO=barrier.path),
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        barrier.wait(p)  # the run is in its activate.d script
        r = H.run(arc, "gc", "--older-than", "0s", root=root, env=TOOLS)
        assert r.returncode == 0, H.text(r)
    finally:
        barrier.release()
    out, err = p.communicate(timeout=60)
    assert p.returncode == 0 and out.decode().strip() == H.prefix_of(root, info), err.decode()
    assert "removed 1 launchers" in r.stdout.decode()  # its launcher went, its environment stayed
    assert os.path.isfile(os.path.join(H.prefix_of(root, info), ".coex-ready"))
    r = H.run(arc, "gc", "--older-than", "0s", root=root, env=TOOLS)  # nothing runs now
    assert r.returncode == 0 and not os.path.exists(H.prefix_of(root, info)), H.text(r)


def test_extract_into_a_new_directory_makes_a_complete_runnable_copy(std_archive, tmp_path):
    """`extract a/new/dir` makes the parents (as conda create -p, venv, pixi-unpack do), the
    prefix 0777 minus the umask (as conda), and a copy that runs without the archive or the
    cache: coex/run (the default entry point, or COEX_ENTRYPOINT), coex/bin/<entry point>, and
    activate.sh for a shell."""
    arc0, info = std_archive
    arc = tmp_path / "app.coex"
    shutil.copy(str(arc0), str(arc))
    root, dest = tmp_path / "root", tmp_path / "a" / "new" / "dir"
    r = H.sh("umask 027 && %s extract %s" % (arc, dest), H.base_env(root, COEX_TOOLS="1"))
    assert r.returncode == 0, H.text(r)
    assert "coex/run" in r.stdout.decode() and "activate.sh" in r.stdout.decode()
    assert stat.S_IMODE(os.stat(str(dest)).st_mode) == 0o750
    assert stat.S_IMODE(os.stat(str(tmp_path / "a")).st_mode) == 0o750
    os.unlink(str(arc))
    shutil.rmtree(str(root))
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}

    def run(*argv, **extra):
        r = subprocess.run([str(a) for a in argv], env=dict(env, **extra), stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE)
        assert r.returncode == 0, H.text(r)
        return r.stdout.decode()
    assert run(dest / "coex" / "run").strip() == str(dest)  # prefixprog, prefix replaced for DIR
    assert run(dest / "coex" / "bin" / "run", "x").strip() == "run.sh ok -v x"  # an app-layer script
    assert run(dest / "coex" / "run", "y", COEX_ENTRYPOINT="main").strip() == "main ok ['y']"
    assert run(dest / "coex" / "bin" / "tinypy").strip() != ""
    out = run("/bin/sh", "-c", '. "$1/activate.sh" && prefixprog && echo "$CONDA_PREFIX" && '
              'command -v main && echo "$COEX_TEST_VAR"', "sh", dest).split()
    assert out == [str(dest), str(dest), str(dest / "coex" / "bin" / "main"), "from-record"], out
    assert (dest / "coex" / "app" / "src" / "main.py").is_file() and not (tmp_path / "root").exists()
