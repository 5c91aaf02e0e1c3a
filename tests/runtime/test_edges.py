"""Edges a demanding user hits: odd paths and invocations, missing or odd HOME/XDG, shells run
with -e/-u, closed standard streams, Python variables that break the environment's python, gc
while a program runs, an archive replaced while it installs, read-only and noexec places."""
import os
import shutil
import subprocess
import time

import pytest

from tests.runtime import rt_helpers as H


def _prefix(root, info):
    return os.path.join(str(root), "envs", H.ids(info)[1])


def _no_python_path(d):
    """A directory with sh and a few tools but no python, for a Python-free PATH."""
    d = str(d)
    os.makedirs(d, exist_ok=True)
    for tool in ("sh", "id", "env", "cat", "sleep", "echo", "true", "pwd"):
        src = shutil.which(tool)
        if src and not os.path.exists(os.path.join(d, tool)):
            os.symlink(src, os.path.join(d, tool))
    return d


def _tmpfs(mnt, options):
    """Mount a tmpfs with ``options`` on the new directory ``mnt`` (skip where we may not);
    the caller unmounts it."""
    mnt.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(mnt)],
                      stderr=subprocess.DEVNULL).returncode != 0:
        pytest.skip("cannot mount a tmpfs (%s) here" % options)
    return mnt


def _sh(cmd, env, cwd=None, timeout=60):
    """Run a shell command line (for redirections and `sh -u archive`)."""
    return subprocess.run(["/bin/sh", "-c", cmd], env=env, cwd=cwd, stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, timeout=timeout)


# ---------------------------------------------------------------------------------------------
# paths and invocations


def test_odd_paths_and_every_way_of_invoking(std_archive, tmp_path):
    """Blanks, `$` and unicode in the archive's path, blanks and unicode in the cache's; via
    PATH, relative from another cwd, a symlink chain, `sh app.coex`, `python3 app.coex`: each
    works cold and warm, and the program sees the same COEX_ARCHIVE / COEX_ARGV0 on the cold
    and the warm run."""
    arc, info = std_archive
    d = tmp_path / "my dir $x ü"
    (d / "bin").mkdir(parents=True)
    shutil.copy(str(arc), str(d / "bin" / "my app.coex"))
    (d / "links").mkdir()
    os.symlink("../bin/my app.coex", str(d / "links" / "one"))
    os.symlink("one", str(d / "links" / "two"))
    root = tmp_path / "cache root ü"  # ($ is refused in a cache root: see the next test)
    env = H.base_env(root, PATH=str(d / "bin") + ":" + os.path.dirname(H.HOST_PY) + ":/usr/bin:/bin",
                     COEX_ENTRYPOINT="sh")
    prog = "'echo \"$CONDA_PREFIX|$COEX_ARCHIVE|$COEX_ARGV0|$*\"' a 'b c'"
    ways = [("'my app.coex' " + prog, "/"),
            ("'./bin/my app.coex' " + prog, str(d)),
            ("./links/two " + prog, str(d)),
            ("sh 'bin/my app.coex' " + prog, str(d)),
            ("%s 'bin/my app.coex' " % H.HOST_PY + prog, str(d))]
    for cmd, cwd in ways:
        shutil.rmtree(str(root), ignore_errors=True)
        outs = []
        for _ in ("cold", "warm"):
            r = _sh(cmd, env, cwd=cwd)
            assert r.returncode == 0, (cmd, H.text(r))
            outs.append(r.stdout.decode())
        assert outs[0] == outs[1], (cmd, outs)
        prefix, archive, argv0, args = outs[0].rstrip("\n").split("|")
        assert prefix == _prefix(root, info) and args == "b c", outs
        assert os.path.samefile(archive, str(d / "bin" / "my app.coex")), outs


@pytest.mark.parametrize("char", ["$", '"', "`", "\\"])
def test_cache_root_with_shell_special_characters_falls_back(std_archive, tmp_path, char):
    """Packages' activate.d scripts hold the prefix in double quotes (text replacement): a `$`
    there expanded silently (PREFIXPROG_HOME lost a part), a `"` was a syntax error. Such a
    root is not used: the private fallback is, with a note naming the character."""
    arc, info = std_archive
    root = tmp_path / ("odd%sroot" % char)
    (tmp_path / "t").mkdir()
    fallback = tmp_path / "t" / ("coex-%d" % os.getuid())
    for _ in ("cold", "warm"):
        r = H.run(arc, 'echo "$PREFIXPROG_HOME"', root=root,
                  env={"COEX_ENTRYPOINT": "sh", "TMPDIR": str(tmp_path / "t")})
        assert r.returncode == 0, H.text(r)
        assert r.stdout.decode().strip() == _prefix(fallback, info) + "/share/prefixprog", H.text(r)
    assert repr(char) in H.text(H.run(arc, "gc", root=root, env={"COEX_TOOLS": "1", "TMPDIR": str(tmp_path / "t")}))


def test_program_changing_directory_can_still_find_its_archive(std_archive, tmp_path):
    arc, _ = std_archive
    (tmp_path / "w").mkdir()
    shutil.copy(str(arc), str(tmp_path / "w" / "app.coex"))
    env = H.base_env(tmp_path / "root", COEX_ENTRYPOINT="sh")
    for _ in range(2):
        r = _sh("./app.coex 'cd / && COEX_TOOLS=1 \"$COEX_ARCHIVE\" verify'", env, cwd=str(tmp_path / "w"))
        assert r.returncode == 0 and "coex verify: OK" in r.stdout.decode(), H.text(r)


# ---------------------------------------------------------------------------------------------
# HOME and XDG_CACHE_HOME


def test_home_unset_uses_the_private_fallback_not_a_made_up_directory(std_archive, tmp_path):
    """No HOME (systemd units, `env -i`): the cache goes to the private $TMPDIR/coex-<uid> (said
    once on stderr), never to a '/nonexistent/.cache' made up and created as root; warm runs
    find it there with no Python."""
    arc, info = std_archive
    tmpdir = tmp_path / "tmp"
    tmpdir.mkdir()
    env = {"PATH": os.path.dirname(H.HOST_PY) + ":/usr/bin:/bin", "TMPDIR": str(tmpdir)}
    r = subprocess.run([str(arc)], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert r.returncode == 0, H.text(r)
    fallback = tmpdir / ("coex-%d" % os.getuid())
    assert r.stdout.decode().strip() == _prefix(fallback, info)
    assert "HOME" in r.stderr.decode() and str(fallback) in r.stderr.decode()
    assert not os.path.exists("/nonexistent/.cache/coex/envs/" + H.ids(info)[1])
    env["PATH"] = _no_python_path(tmp_path / "nopy")
    r = subprocess.run([str(arc)], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert r.returncode == 0 and r.stdout.decode().strip() == _prefix(fallback, info), H.text(r)
    assert r.stderr.decode() == ""


def test_relative_xdg_cache_home_is_ignored(std_archive, tmp_path):
    """The XDG spec: a relative XDG_CACHE_HOME is invalid and ignored (not a cache per cwd)."""
    arc, info = std_archive
    home = tmp_path / "home"
    home.mkdir()
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    env = {"PATH": os.path.dirname(H.HOST_PY) + ":/usr/bin:/bin", "HOME": str(home),
           "XDG_CACHE_HOME": "rel-cache"}
    want = _prefix(home / ".cache" / "coex", info)
    r = subprocess.run([str(arc)], env=env, cwd=str(cwd), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert r.returncode == 0 and r.stdout.decode().strip() == want, H.text(r)
    assert os.listdir(str(cwd)) == []
    env["PATH"] = _no_python_path(tmp_path / "nopy")  # warm, and the preamble agrees
    r = subprocess.run([str(arc)], env=env, cwd=str(cwd), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert r.returncode == 0 and r.stdout.decode().strip() == want, H.text(r)
    assert os.listdir(str(cwd)) == []


# ---------------------------------------------------------------------------------------------
# sh -e / -u


@pytest.fixture(scope="module")
def strict_archive(tiny_channel, tmp_path_factory):
    """An archive whose activate.d script reads an unset variable and has a failing command, as
    many real ones do: fine under conda's interactive shells, fatal under `set -eu`."""
    d = tmp_path_factory.mktemp("strict")
    pkg = H.custom_package(d / "chan", "strictact", {
        "etc/conda/activate.d/strictact.sh":
            'if [ -n "$STRICTACT_UNSET_VAR" ]; then echo never; fi\n'
            'false\n'
            'set -- "$CONDA_PREFIX"/etc/conda/activate.d/*.sh\n'
            'if [ -e "$1" ]; then STRICTACT=on; else STRICTACT=noglob; fi; export STRICTACT\n'})
    H.make_archive(tiny_channel.path, d / "strict.coex", names=("libtiny", "prefixprog"), extra=[pkg],
                   entry_points={"sh": "sh -c", "my-tool.v2": "sh -c 'echo tool \"$STRICTACT\" \"$@\"' tool"},
                   default="my-tool.v2", app={})
    return d / "strict.coex"


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


def test_unknown_entry_point_fails_before_installing(std_archive, root):
    arc, info = std_archive
    r = H.run(arc, root=root, env={"COEX_ENTRYPOINT": "nope"})
    assert r.returncode == 2, H.text(r)
    assert "no entry point named 'nope'" in r.stderr.decode() and "tinypy" in r.stderr.decode()
    assert not os.path.exists(_prefix(root, info))  # a typo costs no install


# ---------------------------------------------------------------------------------------------
# standard streams


@pytest.mark.parametrize("closed", ["0", "1", "2", "012"])
def test_closed_standard_streams_cold_and_warm(std_archive, tmp_path, closed):
    """Daemons and cron start programs with fds closed: the cold path must still install and
    exec, and the program sees the same closed fds it would see started directly."""
    arc, info = std_archive
    root = tmp_path / "root"
    out = tmp_path / "out"
    env = H.base_env(root, COEX_ENTRYPOINT="sh")
    redir = " ".join("%s>&-" % fd if fd != "0" else "<&-" for fd in closed)
    prog = ("'s=; for fd in 0 1 2; do if [ -e /proc/$$/fd/$fd ]; then s=${s}o; else s=${s}c; fi; done; "
            "echo \"$s $CONDA_PREFIX\" >>%s'" % out)
    for _ in ("cold", "warm"):
        r = _sh("%s %s %s" % (arc, prog, redir), env)
        assert r.returncode == 0, H.text(r)
    want = "".join("c" if str(fd) in closed else "o" for fd in range(3))
    lines = out.read_text().splitlines()
    assert lines == ["%s %s" % (want, _prefix(root, info))] * 2, (lines, H.text(r))


# ---------------------------------------------------------------------------------------------
# Python variables


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


# ---------------------------------------------------------------------------------------------
# gc


def test_gc_keeps_the_environment_of_a_running_program(std_archive, root):
    arc, info = std_archive
    env = H.base_env(root, COEX_ENTRYPOINT="sh")
    p = subprocess.Popen([str(arc), "echo ready; exec sleep 60"], env=env, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE)
    try:
        assert p.stdout.readline() == b"ready\n"
        r = H.run(arc, "gc", "--older-than", "0s", root=root, env={"COEX_TOOLS": "1"})
        assert r.returncode == 0, H.text(r)
        assert os.path.isfile(os.path.join(_prefix(root, info), ".coex-ready")), r.stdout.decode()
        assert os.path.isdir(os.path.join(str(root), "apps", H.ids(info)[2]))
    finally:
        p.kill()
        p.wait()
        p.stdout.close()
        p.stderr.close()
    r = H.run(arc, "gc", "--older-than", "0s", root=root, env={"COEX_TOOLS": "1"})
    assert r.returncode == 0 and not os.path.exists(_prefix(root, info)), H.text(r)


# ---------------------------------------------------------------------------------------------
# the archive file itself


def test_archive_replaced_by_a_new_build_while_installing(std_archive, strict_archive, tmp_path):
    """A rebuild renames a new archive over the path while an old cold start runs: the old run
    keeps reading the file it opened (the new one has other members at other offsets)."""
    from coex_runtime import cache as C
    from coex_runtime import format as F
    from coex_runtime.runtime import Runtime
    arc, info = std_archive
    path = tmp_path / "app.coex"
    shutil.copy(str(arc), str(path))
    a = F.open_archive(str(path))
    shutil.copy(str(strict_archive), str(path) + ".new")
    os.rename(str(path) + ".new", str(path))
    rt = Runtime(a, C.Cache(str(tmp_path / "root")))
    rt.install()
    assert os.path.isfile(os.path.join(_prefix(tmp_path / "root", info), ".coex-ready"))


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
        assert p.returncode == 0 and out.decode() == "old %s\n" % _prefix(root, info)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()


def test_read_only_archive_and_archive_on_a_noexec_mount(std_archive, tmp_path):
    arc, info = std_archive
    root = tmp_path / "root"
    ro = tmp_path / "ro.coex"
    shutil.copy(str(arc), str(ro))
    os.chmod(str(ro), 0o444)
    for _ in ("cold", "warm"):
        r = subprocess.run(["sh", str(ro)], env=H.base_env(root), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        assert r.returncode == 0 and r.stdout.decode().strip() == _prefix(root, info), H.text(r)
    mnt = _tmpfs(tmp_path / "mnt", "noexec")
    try:
        shutil.copy(str(arc), str(mnt / "app.coex"))
        root2 = tmp_path / "root2"
        with pytest.raises(PermissionError):  # the kernel refuses; `sh app.coex` is the way
            subprocess.run([str(mnt / "app.coex")], env=H.base_env(root2))
        for _ in ("cold", "warm"):
            r = subprocess.run(["sh", str(mnt / "app.coex")], env=H.base_env(root2),
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE)
            assert r.returncode == 0 and r.stdout.decode().strip() == _prefix(root2, info), H.text(r)
    finally:
        subprocess.run(["umount", str(mnt)])


def test_python_app_coex_uses_a_ready_read_only_cache(std_archive, tmp_path):
    """A cache baked into an image and mounted read-only: `./app.coex` (sh) runs from it, and so
    must `python app.coex`, instead of reinstalling into a fallback."""
    arc, info = std_archive
    root = tmp_path / "root"
    assert H.run(arc, root=root).returncode == 0
    if subprocess.run(["mount", "--bind", str(root), str(root)], stderr=subprocess.DEVNULL).returncode != 0:
        pytest.skip("cannot bind-mount here")
    try:
        if subprocess.run(["mount", "-o", "remount,bind,ro", str(root)]).returncode != 0:
            pytest.skip("cannot remount read-only here")
        env = H.base_env(root, TMPDIR=str(tmp_path))
        r = subprocess.run([H.HOST_PY, str(arc)], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        assert r.returncode == 0 and r.stdout.decode().strip() == _prefix(root, info), H.text(r)
        assert r.stderr.decode() == ""
    finally:
        subprocess.run(["umount", str(root)])


# ---------------------------------------------------------------------------------------------
# signals


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


def test_ctrl_c_during_the_first_run_ends_it_by_sigint(std_archive, root):
    """Interrupted while installing: a message, nothing left ready, and the process ends by
    SIGINT (not exit 130), so a calling shell's loop stops as it would for the program."""
    import signal
    arc, info = std_archive
    env = H.base_env(root, COEX_VERBOSE="1")
    p = subprocess.Popen([str(arc)], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        line = p.stderr.readline()
        assert line.startswith(b"coex: open"), line  # Python runs the cold path now
        p.send_signal(signal.SIGSTOP)
        p.send_signal(signal.SIGINT)
        p.send_signal(signal.SIGCONT)
        _, err = p.communicate(timeout=60)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    assert p.returncode == -signal.SIGINT, err.decode()
    assert b"coex: interrupted; nothing was left half-installed" in err
    assert not os.path.exists(os.path.join(_prefix(root, info), ".coex-ready"))


# ---------------------------------------------------------------------------------------------
# tools


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


@pytest.mark.parametrize("size", ["600k", "300k", "150k"])
def test_a_full_disk_is_explained_and_leaves_nothing(std_archive, tmp_path, size):
    """Full at different moments (extracting, linking, the app layer): one clear message."""
    arc, info = std_archive
    mnt = _tmpfs(tmp_path / "small", "size=" + size)
    try:
        root = mnt / "root"
        r = H.run(arc, root=root)
        assert r.returncode == 1, H.text(r)
        err = r.stderr.decode()
        assert "no space left" in err and str(root) in err and "COEX_ROOT" in err, err
        assert os.listdir(str(root / "tmp")) == [] and os.listdir(str(root / "pkgs")) == []
        assert [n for n in os.listdir(str(root / "envs")) if not n.endswith(".lock")] == []
    finally:
        subprocess.run(["umount", str(mnt)])


def test_python36_in_the_c_locale_with_a_non_ascii_cache_path(std_archive, tmp_path):
    """Python 3.6 in the C locale (no LANG: cron, `env -i`, bare images) decodes paths as ASCII;
    a cache under a non-ASCII directory must still install, and the program must get the
    caller's locale variables, not the ones coex used for itself."""
    arc, info = std_archive
    d = tmp_path / "caché ü"
    d.mkdir()
    root = d / "root"
    env = {"PATH": "/usr/bin:/bin", "COEX_PYTHON": H.PYTHONS["3.6"], "COEX_ROOT": str(root),
           "COEX_ENTRYPOINT": "sh", "LC_CTYPE": "C"}
    prog = 'echo "$CONDA_PREFIX|${LC_ALL-unset}|${LC_CTYPE-unset}|${LANG-unset}|$COEX_LC_REEXEC"'
    for _ in ("cold", "warm"):
        r = subprocess.run([str(arc), prog], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        assert r.returncode == 0, H.text(r)
        assert r.stdout.decode() == "%s|unset|C|unset|\n" % _prefix(root, info), H.text(r)


def test_coex_tools_and_verbose_set_to_0_mean_off(std_archive, root):
    arc, info = std_archive
    for _ in ("cold", "warm"):
        for off in ("0", "false", "no", "off"):
            r = H.run(arc, root=root, env={"COEX_TOOLS": off, "COEX_VERBOSE": off})
            assert r.returncode == 0 and r.stdout.decode().strip() == _prefix(root, info), H.text(r)
            assert r.stderr.decode() == ""
    r = H.run(arc, root=root, env={"COEX_TOOLS": "yes"})
    assert r.returncode == 2 and "usage: COEX_TOOLS=1" in r.stdout.decode()


def test_archive_fed_on_stdin_says_it_must_be_run_by_path(std_archive, tmp_path):
    arc, _ = std_archive
    with open(str(arc), "rb") as f:
        r = subprocess.run(["sh", "-s"], stdin=f, env=H.base_env(tmp_path / "root"), cwd=str(tmp_path),
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert r.returncode == 1, H.text(r)
    assert "cannot read the archive" in r.stderr.decode() and "run by its path" in r.stderr.decode()


def test_a_root_shared_with_a_user_of_umask_077_falls_back(tiny_channel, tmp_path):
    """root installed into a shared COEX_ROOT with umask 077; another user then gets a private
    fallback with a note, not 'Permission denied: gc.lock'."""
    arc = tmp_path / "nopy.coex"  # no python: the tiny channel's fake one execs a 0700 pyenv one
    info = H.make_archive(tiny_channel.path, arc, names=("libtiny", "prefixprog"),
                          entry_points={"prefixprog": "prefixprog"}, app={})
    if os.getuid() != 0 or not shutil.which("setpriv"):
        pytest.skip("needs root and setpriv")
    import tempfile
    from pathlib import Path
    tmp_path = Path(tempfile.mkdtemp(prefix="coex-umask-", dir="/tmp"))  # pytest's is 0700
    os.chmod(str(tmp_path), 0o755)
    try:
        _shared_root_077(arc, info, tmp_path)
    finally:
        shutil.rmtree(str(tmp_path), ignore_errors=True)


def _shared_root_077(arc, info, tmp_path):
    (tmp_path / "t").mkdir()
    os.chmod(str(tmp_path / "t"), 0o1777)
    shared = tmp_path / "shared"
    shared.mkdir(mode=0o777)
    os.chmod(str(shared), 0o777)
    pub = tmp_path / "app.coex"
    shutil.copy(str(arc), str(pub))
    os.chmod(str(pub), 0o755)
    env = {"PATH": os.path.dirname(H.HOST_PY) + ":/usr/bin:/bin", "COEX_ROOT": str(shared),
           "TMPDIR": str(tmp_path / "t")}
    r = _sh("umask 077; %s" % pub, dict(env, HOME="/root"))
    assert r.returncode == 0 and r.stdout.decode().strip() == _prefix(shared, info), H.text(r)
    probe = subprocess.run(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", H.HOST_PY, "-c", "1"],
                           stderr=subprocess.DEVNULL)
    if probe.returncode != 0:
        pytest.skip("user nobody cannot run the host python here")
    r = subprocess.run(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", str(pub)],
                       env=dict(env, HOME="/nonexistent"), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                       cwd="/")
    assert r.returncode == 0, H.text(r)
    assert r.stdout.decode().strip() == _prefix(tmp_path / "t" / "coex-65534", info), H.text(r)
    assert "not writable by uid 65534" in r.stderr.decode()


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


def test_extract_into_the_current_directory_keeps_it(std_archive, tmp_path):
    """`mkdir env && cd env && app.coex extract .`: the caller's cwd must stay the directory that
    now holds the environment (it was removed and replaced by another one)."""
    arc, _ = std_archive
    d = tmp_path / "env"
    d.mkdir()
    env = H.base_env(tmp_path / "root", COEX_TOOLS="1")
    r = _sh("%s extract . >/dev/null && ls bin && bin/prefixprog" % arc, env, cwd=str(d))
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
    assert os.path.isfile(os.path.join(_prefix(root, info), ".coex-ready"))


def test_two_archives_of_different_envs_sharing_packages_start_cold_at_once(std_archive, strict_archive, tmp_path):
    """Both need libtiny and prefixprog: their installs extract into the same pkgs/ at once."""
    arc, info = std_archive
    for i in range(3):
        root = tmp_path / ("root%d" % i)
        env = H.base_env(root, COEX_ENTRYPOINT="sh")
        procs = [subprocess.Popen([str(a), "echo $CONDA_PREFIX"], env=env, stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE) for a in (arc, strict_archive, arc, strict_archive)]
        outs = [p.communicate(timeout=120) for p in procs]
        assert [p.returncode for p in procs] == [0] * 4, outs
        assert outs[0][0].decode().strip() == _prefix(root, info)
        assert len(set(o[0] for o in outs)) == 2 and os.listdir(str(root / "tmp")) == []


def test_out_of_space_sees_through_the_installers_wrapping():
    import errno
    from coex_runtime import main as M

    class Wrapped(Exception):
        pass

    try:
        try:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        except OSError as inner:
            raise Wrapped("pkg: cannot extract into /x: %s" % inner)
    except Wrapped as e:
        assert M.out_of_space(e) == os.strerror(errno.ENOSPC)
    # a worker process sends its errno back with its message
    from coex_runtime import install, workers

    def full(x):
        raise OSError(errno.EDQUOT, os.strerror(errno.EDQUOT))
    with pytest.raises(install.InstallError) as ei:
        workers.fork_map(full, [1], 1)
    assert M.out_of_space(ei.value) == os.strerror(errno.EDQUOT)
    assert M.out_of_space(OSError(errno.EACCES, "Permission denied")) is None


def test_coex_root_that_is_a_file_is_named_as_such(std_archive, tmp_path):
    arc, info = std_archive
    f = tmp_path / "afile"
    f.write_text("")
    (tmp_path / "t").mkdir()
    r = H.run(arc, root=f, env={"TMPDIR": str(tmp_path / "t")})
    assert r.returncode == 0 and "%s is not a directory" % f in r.stderr.decode(), H.text(r)
    assert r.stdout.decode().strip() == _prefix(tmp_path / "t" / ("coex-%d" % os.getuid()), info)


def test_extract_refuses_a_prefix_with_shell_special_characters(std_archive, tmp_path):
    arc, _ = std_archive
    dest = tmp_path / "env$HOME"
    r = H.run(arc, "extract", str(dest), root=tmp_path / "root", env={"COEX_TOOLS": "1"})
    assert r.returncode == 1 and "contains '$'" in r.stderr.decode(), H.text(r)
    assert not dest.exists() and not (tmp_path / "root").exists()


@pytest.mark.parametrize("home", [None, "", "rel", "abs"])
@pytest.mark.parametrize("xdg", [None, "", "rel", "abs"])
def test_preamble_and_runtime_agree_on_the_cache_root(std_archive, tmp_path, home, xdg):
    """Whatever HOME / XDG_CACHE_HOME look like, the root the Python runtime installs into is the
    one the sh preamble looks in: the second run needs no Python."""
    arc, info = std_archive
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    (tmp_path / "t").mkdir()
    env = {"PATH": os.path.dirname(H.HOST_PY) + ":/usr/bin:/bin", "TMPDIR": str(tmp_path / "t")}
    for name, value in (("HOME", home), ("XDG_CACHE_HOME", xdg)):
        if value is not None:
            env[name] = str(tmp_path / name) if value == "abs" else value
    r = subprocess.run([str(arc)], env=env, cwd=str(cwd), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert r.returncode == 0, H.text(r)
    prefix = r.stdout.decode().strip()
    want = (str(tmp_path / "XDG_CACHE_HOME" / "coex") if xdg == "abs" else
            str(tmp_path / "HOME" / ".cache" / "coex") if home == "abs" else
            str(tmp_path / "t" / ("coex-%d" % os.getuid())))
    assert prefix == _prefix(want, info), H.text(r)
    env["PATH"] = _no_python_path(tmp_path / "nopy")
    r = subprocess.run([str(arc)], env=env, cwd=str(cwd), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert r.returncode == 0 and r.stdout.decode().strip() == prefix and r.stderr.decode() == "", H.text(r)
    assert os.listdir(str(cwd)) == []


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


def test_python36_in_the_c_locale_with_a_non_ascii_app_file(tiny_channel, tmp_path):
    """Not only the paths coex is given: names inside the archive (an app-layer file) are
    non-ASCII too, and Python 3.6 in the C locale must still create them."""
    arc = tmp_path / "u.coex"
    H.make_archive(tiny_channel.path, arc, app={"src/ünï ✓.py": "print(1)\n",
                                                  "src/show.sh": (0o755, '#!/bin/sh\nls "$(dirname "$0")"\n')},
                   entry_points={"show": "src/show.sh"}, default="show")
    env = {"PATH": "/usr/bin:/bin", "COEX_PYTHON": H.PYTHONS["3.6"], "COEX_ROOT": str(tmp_path / "root"),
           "LC_ALL": "C"}
    for _ in ("cold", "warm"):
        r = subprocess.run([str(arc)], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        assert r.returncode == 0, H.text(r)
        assert sorted(r.stdout.decode("utf-8").split("\n")[:2]) == ["show.sh", "ünï ✓.py"], H.text(r)
