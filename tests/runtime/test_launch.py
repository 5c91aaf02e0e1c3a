"""Launch: cold then warm runs on every host CPython, the warm path without Python, exec
pass-through (argv, stdin, exit status, signals), entry-point choice, activation."""
import os
import shutil
import signal
import subprocess
import time

import pytest

from tests.runtime import rt_helpers as H

PYS = sorted(H.PYTHONS.items())


def _prefix_of(root, info):
    return os.path.join(str(root), "envs", H.ids(info)[1])


@pytest.mark.parametrize("ver,py", PYS, ids=[v for v, _ in PYS])
def test_cold_then_warm_on_every_python(std_archive, root, ver, py):
    arc, info = std_archive
    prefix = _prefix_of(root, info)
    r = H.run(arc, root=root, python=py, env={"COEX_VERBOSE": "1"})
    assert r.returncode == 0, H.text(r)
    # the default entry point is the C program with a binary prefix placeholder: it prints the
    # prefix it was installed for, so this proves the install and the prefix replacement
    assert r.stdout.decode().strip() == prefix
    assert "extract+link" in r.stderr.decode()  # this run installed
    assert os.path.isfile(os.path.join(prefix, ".coex-ready"))
    # function entry point (console-script style) with the app layer and site-packages
    r = H.run(arc, "a b", "", root=root, python=py, env={"COEX_ENTRYPOINT": "tinypy"})
    assert r.returncode == 0 and r.stdout.decode().startswith("tinypy ok "), H.text(r)
    r = H.run(arc, "x y", "z", root=root, python=py, env={"COEX_ENTRYPOINT": "main"})
    assert r.stdout.decode().strip() == "main ok ['x y', 'z']", H.text(r)
    r = H.run(arc, root=root, python=py, env={"COEX_ENTRYPOINT": "fail"})
    assert r.returncode == 3 and "tinypy failing" in r.stderr.decode()
    # warm: no python anywhere on PATH, no COEX_PYTHON, still runs
    r = H.run(arc, root=root, env={"PATH": "/usr/bin:/bin" if not os.path.exists("/usr/bin/python3")
                                   else _no_python_path(root), "COEX_PYTHON": None})
    assert r.returncode == 0 and r.stdout.decode().strip() == prefix, H.text(r)


def _no_python_path(root):
    """A PATH with sh and a few tools but no python at all."""
    d = os.path.join(str(root) + "-bin")
    os.makedirs(d, exist_ok=True)
    for tool in ("sh", "id", "env", "cat", "sleep", "echo", "true"):
        src = shutil.which(tool)
        if src and not os.path.exists(os.path.join(d, tool)):
            os.symlink(src, os.path.join(d, tool))
    return d


def test_warm_path_execs_without_python(std_archive, root):
    arc, info = std_archive
    assert H.run(arc, root=root).returncode == 0
    if not shutil.which("strace"):
        pytest.skip("strace not installed")
    env = H.base_env(root)
    r = subprocess.run(["strace", "-f", "-qq", "-e", "trace=execve,clone,clone3,fork,vfork", str(arc), "hi"],
                       env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert r.returncode == 0, r.stderr.decode()
    lines = r.stderr.decode().splitlines()
    assert not [ln for ln in lines if "clone" in ln or "fork(" in ln], lines  # no process spawned
    execs = [ln for ln in lines if "execve(" in ln]
    # exactly: the archive itself (run by sh through its #! line) and the program
    assert len(execs) == 2, execs
    assert str(arc) in execs[0] and "bin/prefixprog" in execs[1]
    assert "python" not in r.stderr.decode()


def test_python_archive_and_unzipped_dir_both_run(std_archive, root, tmp_path):
    arc, info = std_archive
    prefix = _prefix_of(root, info)
    env = H.base_env(root)
    r = subprocess.run([H.HOST_PY, str(arc)], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert r.returncode == 0 and r.stdout.decode().strip() == prefix, r.stderr.decode()
    d = tmp_path / "unzipped"
    subprocess.run(["unzip", "-q", str(arc), "-d", str(d)], check=False)
    assert (d / "COEX-INFO").is_file()
    r = subprocess.run([H.HOST_PY, str(d), "--label"], env=dict(env, COEX_ENTRYPOINT="run"),
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert r.returncode == 0 and r.stdout.decode().strip() == "run.sh ok -v --label", r.stderr.decode()


@pytest.mark.parametrize("warm", [False, True], ids=["cold", "warm"])
def test_exit_status_0_to_255_passes_through(std_archive, root, warm):
    arc, _ = std_archive
    if warm:
        assert H.run(arc, root=root).returncode == 0
    codes = [0, 1, 2, 3, 42, 126, 127, 128, 129, 200, 254, 255]
    for i, code in enumerate(codes):
        r = H.run(arc, "exit %d" % code, root=root, env={"COEX_ENTRYPOINT": "sh"})
        assert r.returncode == code, (code, H.text(r))
        if not warm and i == 0:
            assert os.path.isdir(str(root / "envs"))


def test_argv_and_stdin_pass_through(std_archive, root):
    arc, _ = std_archive
    tricky = ["", "two words", "it's", '"q"', "$HOME", "*", "-n", "a\nb"]
    script = 'for a in "$@"; do printf "<%s>" "$a"; done; printf "|"; cat'
    for _ in range(2):  # cold, then warm
        r = H.run(arc, script, "argv0", *tricky, root=root, env={"COEX_ENTRYPOINT": "sh"},
                  input=b"from stdin\n")
        assert r.returncode == 0, H.text(r)
        assert r.stdout.decode() == "".join("<%s>" % a for a in tricky) + "|from stdin\n"


def _start_sleeper(arc, root):
    env = H.base_env(root)
    env["COEX_ENTRYPOINT"] = "sh"
    p = subprocess.Popen([str(arc), 'echo ready; exec sleep 30'], env=env, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE)
    assert p.stdout.readline() == b"ready\n"
    return p


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["TERM", "INT"])
@pytest.mark.parametrize("warm", [False, True], ids=["cold", "warm"])
def test_signals_reach_the_program(std_archive, root, sig, warm):
    arc, _ = std_archive
    if warm:
        assert H.run(arc, root=root).returncode == 0
    p = _start_sleeper(arc, root)
    try:
        # exec all the way: the pid we started IS the program now
        deadline = time.time() + 10
        while True:
            with open("/proc/%d/cmdline" % p.pid, "rb") as f:
                argv0 = f.read().split(b"\0")[0]
            if argv0 == b"sleep" or time.time() > deadline:
                break
            time.sleep(0.01)
        assert argv0 == b"sleep"
        p.send_signal(sig)
        assert p.wait(10) == -sig
    finally:
        if p.poll() is None:
            p.kill()
        p.stdout.close()
        p.stderr.close()


def test_busybox_symlink_and_coex_entrypoint(std_archive, root, tmp_path):
    arc, info = std_archive
    link = tmp_path / "tinypy"
    link.symlink_to(arc)
    r = H.run(link, root=root)
    assert r.returncode == 0 and r.stdout.decode().startswith("tinypy ok"), H.text(r)
    other = tmp_path / "not-an-entry-point"
    other.symlink_to(arc)
    r = H.run(other, root=root)  # unknown name -> the default entry point
    assert r.stdout.decode().strip() == _prefix_of(root, info)
    # COEX_ENTRYPOINT wins over the symlink name, and does not leak into the program
    r = H.run(link, "echo \"[$COEX_ENTRYPOINT]\" \"$COEX_ARGV0\"", root=root, env={"COEX_ENTRYPOINT": "sh"})
    assert r.stdout.decode().strip() == "[] %s" % link
    r = H.run(arc, root=root, env={"COEX_ENTRYPOINT": "nope"})
    assert r.returncode == 2
    assert "no entry point named 'nope'" in r.stderr.decode() and "tinypy" in r.stderr.decode()


def test_command_entry_point_with_app_path_and_args(std_archive, root):
    arc, _ = std_archive
    r = H.run(arc, "extra", root=root, env={"COEX_ENTRYPOINT": "run"})
    assert r.returncode == 0 and r.stdout.decode().strip() == "run.sh ok -v extra", H.text(r)


def _env_of(arc, root, **env):
    r = H.run(arc, "env", root=root, env=dict({"COEX_ENTRYPOINT": "sh"}, **env))
    assert r.returncode == 0, H.text(r)
    return dict(ln.split("=", 1) for ln in r.stdout.decode().splitlines() if "=" in ln)


def test_activation_environment(std_archive, root):
    arc, info = std_archive
    _, env16, app16 = H.ids(info)
    prefix = _prefix_of(root, info)
    app = os.path.join(str(root), "apps", app16)
    for _ in range(2):  # cold, warm: the same environment
        e = _env_of(arc, root, PYTHONPATH="/keep")
        assert e["PATH"].split(":")[0] == prefix + "/bin"
        assert e["CONDA_PREFIX"] == prefix and e["CONDA_DEFAULT_ENV"] == prefix
        assert e["CONDA_SHLVL"] == "1"
        assert e["PREFIXPROG_MODE"] == "tiny"                              # env_vars.d
        assert e["PREFIXPROG_HOME"] == prefix + "/share/prefixprog"        # activate.d
        assert e["COEX_TEST_VAR"] == "from-record"                         # the record's env
        assert e["PYTHONPATH"] == app + ":/keep"                           # app layer for python
        assert e["COEX_ARCHIVE"] == str(arc) and e["COEX_ARGV0"] == str(arc)
        assert e["COEX_APP"] == app


def test_conda_meta_state_overrides_env_vars_d(std_archive, root):
    arc, info = std_archive
    assert H.run(arc, root=root).returncode == 0
    prefix = _prefix_of(root, info)
    with open(os.path.join(prefix, "conda-meta", "state"), "w") as f:
        f.write('{"env_vars": {"PREFIXPROG_MODE": "from-state", "STATE_ONLY": "1"}}')
    os.unlink(os.path.join(str(root), "launch", H.ids(info)[0] + ".sh"))  # regenerate it
    e = _env_of(arc, root)
    assert e["PREFIXPROG_MODE"] == "from-state" and e["STATE_ONLY"] == "1"
    assert "extract+link" not in H.text(H.run(arc, root=root, env={"COEX_VERBOSE": "1"}))


def test_activate_d_scripts_cannot_clobber_arguments(tiny_channel, tmp_path, root):
    path, entry = H.custom_package(tmp_path / "chan", "actpkg", {
        "etc/conda/activate.d/zz-clobber.sh": "set -- clobbered\nshift\nACT_RAN=yes; export ACT_RAN\n"})
    arc = tmp_path / "a.coex"
    H.make_archive(tiny_channel.path, arc, names=("libtiny", "prefixprog"), extra=[(path, entry)],
                   entry_points={"sh": "sh -c"}, app={})
    for _ in range(2):
        r = H.run(arc, 'echo "$ACT_RAN $# $*"', "x", "1", "2", root=root)
        assert r.stdout.decode().strip() == "yes 2 1 2", H.text(r)


def test_deleted_environment_is_reinstalled(std_archive, root):
    arc, info = std_archive
    assert H.run(arc, root=root).returncode == 0
    shutil.rmtree(_prefix_of(root, info))
    r = H.run(arc, root=root, env={"COEX_VERBOSE": "1"})
    assert r.returncode == 0 and r.stdout.decode().strip() == _prefix_of(root, info), H.text(r)
    assert "extract+link" in r.stderr.decode()


def test_warm_runs_record_last_use(std_archive, root):
    arc, info = std_archive
    assert H.run(arc, root=root).returncode == 0
    used = os.path.join(str(root), "launch", H.ids(info)[0] + ".used")
    old = time.time() - 30 * 86400
    os.utime(used, (old, old))
    r = H.run(arc, root=root, env={"PATH": _no_python_path(root), "COEX_PYTHON": None})
    assert r.returncode == 0, H.text(r)
    assert os.stat(used).st_mtime > time.time() - 60


def test_verbose_prints_phases_and_progress_only_on_a_tty(std_archive, root):
    import pty
    arc, _ = std_archive
    master, slave = pty.openpty()
    try:
        p = subprocess.Popen([str(arc)], env=H.base_env(root), stdout=subprocess.PIPE, stderr=slave)
        os.close(slave)
        out = b""
        while True:
            try:
                chunk = os.read(master, 4096)
            except OSError:
                break
            if not chunk:
                break
            out += chunk
        assert p.wait(30) == 0
    finally:
        os.close(master)
    assert b"extract package 1 of 4" in out and b"MB" in out, out
    assert b"coex: extracting, " in out, out  # the stored bytes read, while packages extract
    root2 = str(root) + "-2"
    r = H.run(arc, root=root2, env={"COEX_VERBOSE": "1"})
    err = r.stderr.decode()
    assert "package 1 of" not in err  # not a terminal: no progress
    for phase in ("open", "root", "check", "extract+link", "finalize", "app", "launcher", "total"):
        assert "coex: " + phase in err, err


@pytest.mark.parametrize("opts", ["-u", "-e", "-eu", "-f", "-C", "-a"])
def test_sh_options_do_not_change_how_the_archive_runs(strict_archive, tmp_path, opts):
    """`sh -eu app.coex` (COEX_ENTRYPOINT unset, an activate.d script that is not -eu clean),
    `sh -f` (no globbing), `sh -C` (noclobber: the last-use stamp must still be updated), `sh -a`
    (the preamble's variables must not be exported to the program) behave exactly like
    `./app.coex`: the archive's shell options are its own business."""
    root = tmp_path / "root"
    env = H.base_env(root)
    for run in ("cold", "warm"):
        if run == "warm":
            used = [os.path.join(str(root), "launch", n) for n in os.listdir(str(root / "launch"))
                    if n.endswith(".used")]
            old = time.time() - 86400
            os.utime(used[0], (old, old))
        r = subprocess.run(["/bin/sh", opts, str(strict_archive), "x y"], env=env,
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        assert r.returncode == 0 and r.stdout.decode() == "tool on x y\n", H.text(r)
        r = subprocess.run(["/bin/sh", opts, str(strict_archive), "env"], env=dict(env, COEX_ENTRYPOINT="sh"),
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        assert "_coex" not in r.stdout.decode(), r.stdout.decode()
    assert os.stat(used[0]).st_mtime > time.time() - 600


def test_entry_point_names_with_dash_and_dot(strict_archive, tmp_path):
    root = tmp_path / "root"
    link = tmp_path / "my-tool.v2"
    link.symlink_to(strict_archive)
    r = H.run(link, "a", root=root)
    assert r.returncode == 0 and r.stdout.decode() == "tool on a\n", H.text(r)
    r = H.run(strict_archive, "echo sh $0", root=root, env={"COEX_ENTRYPOINT": "sh"})
    assert r.stdout.decode() == "sh sh\n", H.text(r)
    r = H.run(strict_archive, root=root, env={"COEX_ENTRYPOINT": "my-tool?v2"})
    assert r.returncode == 2 and "no entry point named 'my-tool?v2'" in r.stderr.decode()


def test_pythonhome_of_another_python_does_not_break_the_environment(std_archive, tmp_path):
    """A PYTHONHOME leaked from an outer tool (an embedded Python, another relocated env) makes
    every python fail to start; it can never be right for the environment's own python."""
    arc, _ = std_archive
    root = tmp_path / "root"
    startup = tmp_path / "startup.py"
    startup.write_text("print('STARTUP RAN')\n")
    for _ in ("cold", "warm"):
        r = H.run(arc, "a", root=root, env={"COEX_ENTRYPOINT": "tinypy", "PYTHONHOME": "/nonexistent",
                                            "PYTHONPATH": "/nonexistent", "PYTHONSAFEPATH": "1",
                                            "PYTHONSTARTUP": str(startup)})
        assert r.returncode == 0 and r.stdout.decode().startswith("tinypy ok "), H.text(r)
        assert "STARTUP RAN" not in H.text(r)


def test_archive_replaced_while_an_old_program_runs(std_archive, strict_archive, tmp_path):
    arc, info = std_archive
    root = tmp_path / "root"
    path = tmp_path / "app.coex"
    shutil.copy(str(arc), str(path))
    env = H.base_env(root, COEX_ENTRYPOINT="sh")
    p = subprocess.Popen([str(path), "echo ready; read x; echo old $CONDA_PREFIX"], env=env,
                         stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        assert p.stdout.readline() == b"ready\n"
        shutil.copy(str(strict_archive), str(path) + ".new")
        os.rename(str(path) + ".new", str(path))
        r = H.run(path, "echo new $STRICTACT", root=root, env={"COEX_ENTRYPOINT": "sh"})
        assert r.returncode == 0 and r.stdout.decode() == "new on\n", H.text(r)
        out, _ = p.communicate(b"\n", timeout=30)
        assert p.returncode == 0 and out.decode() == "old %s\n" % H.prefix_of(root, info)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()


def test_first_run_program_has_default_sigpipe(std_archive, root):
    """Python ignores SIGPIPE/SIGXFSZ and ignored signals survive exec: the first run's program
    must not inherit that (`prog | head` would make prog print 'Broken pipe' errors)."""
    arc, _ = std_archive
    prog = "grep SigIgn /proc/self/status; yes | head -n 1"
    outs = []
    for _ in ("cold", "warm"):
        r = H.run(arc, prog, root=root, env={"COEX_ENTRYPOINT": "sh"})
        assert r.returncode == 0, H.text(r)
        outs.append((r.stdout.decode(), r.stderr.decode()))
    assert outs[0] == outs[1], outs
    ign = int(outs[0][0].split()[1], 16)
    assert not ign & (1 << (13 - 1)) and not ign & (1 << (25 - 1)), outs  # SIGPIPE, SIGXFSZ
    assert "Broken pipe" not in outs[0][1]


def test_a_coex_program_started_by_another_does_not_see_its_app_layer(std_archive, tiny_channel, tmp_path):
    """The outer launcher put its app layer first on PYTHONPATH; the inner archive (its own
    python, no app layer) must not import the outer app's modules. The caller's own PYTHONPATH
    entries stay."""
    arc, info = std_archive
    inner = tmp_path / "inner.coex"
    H.make_archive(tiny_channel.path, inner, names=("libtiny", "python", "tinypy"),
                   entry_points={"python": "python"}, app={})
    root = tmp_path / "root"
    outer_app = os.path.join(str(root), "apps", H.ids(info)[2])
    prog = "%s -c 'import os; print(os.environ.get(\"PYTHONPATH\"), os.environ.get(\"COEX_APP\"))'" % inner
    for _ in ("cold", "warm"):
        r = H.run(arc, prog, root=root, env={"COEX_ENTRYPOINT": "sh", "PYTHONPATH": "/mine"})
        assert r.returncode == 0, H.text(r)
        pythonpath, coex_app = r.stdout.decode().split()
        # (the tiny channel's fake python puts its site-packages first itself)
        assert outer_app not in pythonpath and pythonpath.split(":")[-1] == "/mine", (outer_app, H.text(r))
        assert coex_app == "None"


@pytest.fixture(scope="module")
def real_py_archive(realistic_channel, tmp_path_factory):
    """An archive of the realistic channel's real CPython 3.11 and pyflakes (noarch python)."""
    import json
    from pathlib import Path
    from coex_runtime import format as F
    from tests.factory.fixtures import rattler_solve
    chan = Path(realistic_channel)
    pkgs = []
    recs = sorted(rattler_solve(chan, ["python 3.11.*", "pyflakes"]), key=lambda r: r.name.normalized != "python")
    for r in recs:  # python first: pyflakes depends on it
        rd = json.loads((chan / r.subdir / "repodata.json").read_text())
        rec = rd.get("packages.conda", {}).get(r.file_name) or rd["packages"][r.file_name]
        entry = dict(rec, filename=r.file_name, subdir=r.subdir, channel=chan.as_uri())
        pkgs.append({"path": str(chan / r.subdir / r.file_name), "entry": entry,
                     "encoding": "conda" if r.file_name.endswith(".conda") else "tar.bz2"})
    out = tmp_path_factory.mktemp("realpy") / "py.coex"
    F.write_archive(str(out), "linux-64", pkgs, {"pyflakes": "pyflakes.api:main"}, "pyflakes",
                    libzstd_path=H.LIBZSTD, requested_specs=["python 3.11.*", "pyflakes"])
    return out


def test_user_site_packages_do_not_shadow_the_locked_ones(real_py_archive, tmp_path):
    """`pip install --user pyflakes` (~/.local/lib/python3.11/site-packages comes before the
    environment's site-packages in a real CPython) must not replace the locked pyflakes;
    PYTHONNOUSERSITE= (set, empty) lets the user site in on purpose."""
    home = tmp_path / "home"
    evil = home / ".local" / "lib" / "python3.11" / "site-packages" / "pyflakes"
    evil.mkdir(parents=True)
    (evil / "__init__.py").write_text("")
    (evil / "api.py").write_text("def main():\n    print('user site pyflakes')\n")
    env = H.base_env(tmp_path / "root", HOME=str(home))
    for _ in ("cold", "warm"):
        r = subprocess.run([str(real_py_archive), "--version"], env=env, stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, timeout=120)
        assert r.returncode == 0 and r.stdout.decode().startswith("3.2.0 Python 3.11"), H.text(r)
    r = subprocess.run([str(real_py_archive)], env=dict(env, PYTHONNOUSERSITE=""), stdout=subprocess.PIPE)
    assert r.stdout.decode().strip() == "user site pyflakes"
