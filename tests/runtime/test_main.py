"""coex_runtime/main.py, the cold path: every way of invoking an archive and what the program then
sees, closed standard streams, Ctrl-C, a full disk, Python 3.6 in the C locale, a ready cache
used read-only."""
import os
import shutil
import subprocess

import pytest

from tests.runtime import rt_helpers as H


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
            r = H.sh(cmd, env, cwd=cwd)
            assert r.returncode == 0, (cmd, H.text(r))
            outs.append(r.stdout.decode())
        assert outs[0] == outs[1], (cmd, outs)
        prefix, archive, argv0, args = outs[0].rstrip("\n").split("|")
        assert prefix == H.prefix_of(root, info) and args == "b c", outs
        assert os.path.samefile(archive, str(d / "bin" / "my app.coex")), outs


def test_program_changing_directory_can_still_find_its_archive(std_archive, tmp_path):
    arc, _ = std_archive
    (tmp_path / "w").mkdir()
    shutil.copy(str(arc), str(tmp_path / "w" / "app.coex"))
    env = H.base_env(tmp_path / "root", COEX_ENTRYPOINT="sh")
    for _ in range(2):
        r = H.sh("./app.coex 'cd / && COEX_TOOLS=1 \"$COEX_ARCHIVE\" verify'", env, cwd=str(tmp_path / "w"))
        assert r.returncode == 0 and "coex verify: OK" in r.stdout.decode(), H.text(r)


def test_unknown_entry_point_fails_before_installing(std_archive, root):
    arc, info = std_archive
    r = H.run(arc, root=root, env={"COEX_ENTRYPOINT": "nope"})
    assert r.returncode == 2, H.text(r)
    assert "no entry point named 'nope'" in r.stderr.decode() and "tinypy" in r.stderr.decode()
    assert not os.path.exists(H.prefix_of(root, info))  # a typo costs no install


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
        r = H.sh("%s %s %s" % (arc, prog, redir), env)
        assert r.returncode == 0, H.text(r)
    want = "".join("c" if str(fd) in closed else "o" for fd in range(3))
    lines = out.read_text().splitlines()
    assert lines == ["%s %s" % (want, H.prefix_of(root, info))] * 2, (lines, H.text(r))


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
        assert r.returncode == 0 and r.stdout.decode().strip() == H.prefix_of(root, info), H.text(r)
        assert r.stderr.decode() == ""
    finally:
        subprocess.run(["umount", str(root)])


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
    assert not os.path.exists(os.path.join(H.prefix_of(root, info), ".coex-ready"))


@pytest.mark.parametrize("size", ["600k", "300k", "150k"])
def test_a_full_disk_is_explained_and_leaves_nothing(std_archive, tmp_path, size):
    """Full at different moments (extracting, linking, the app layer): one clear message."""
    arc, info = std_archive
    mnt = H.tmpfs(tmp_path / "small", "size=" + size)
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
        assert r.stdout.decode() == "%s|unset|C|unset|\n" % H.prefix_of(root, info), H.text(r)


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


def test_sigterm_during_the_first_install_stops_its_workers(std_archive, tmp_path, root):
    """Terminated while its forked workers extract: they stop with it (none outlives the
    archive's process), their work is removed, and the process ends by SIGTERM."""
    import signal
    arc, info = std_archive
    barrier = H.Barrier(tmp_path, "extract")
    errfile = tmp_path / "stderr"
    with open(str(errfile), "wb") as f:  # (not a pipe: workers that outlive it would hold it)
        p = subprocess.Popen([str(arc)], env=H.base_env(root, COEX_FAULT=barrier.env),
                             stdout=subprocess.DEVNULL, stderr=f)
    workers = []
    try:
        barrier.wait(p)  # a worker is extracting a package
        workers = H.children(p.pid)
        assert workers, "no worker process"
        p.send_signal(signal.SIGTERM)
        p.wait(timeout=60)
        left = [w for w in workers if H.alive(w)]
        err = errfile.read_bytes()
    finally:
        barrier.release()
        for w in workers:
            if H.alive(w):
                os.kill(w, signal.SIGKILL)
        if p.poll() is None:
            p.kill()
            p.wait()
    assert left == [], "workers still running after the archive's process ended: %s" % left
    assert p.returncode == -signal.SIGTERM, err.decode()
    assert b"Traceback" not in err and b"coex: terminated" in err, err.decode()
    assert H.debris(root) == []
    assert not os.path.exists(os.path.join(H.prefix_of(root, info), ".coex-ready"))
    r = H.run(arc, root=root)
    assert r.returncode == 0 and r.stdout.decode().strip() == H.prefix_of(root, info), H.text(r)


def test_workers_of_a_killed_install_stop_too(std_archive, tmp_path, root):
    """SIGKILL cannot be caught: the workers learn of their parent's death (Linux
    PR_SET_PDEATHSIG) and stop, removing their work directories."""
    import signal
    import time
    arc, info = std_archive
    barrier = H.Barrier(tmp_path, "extract")
    p = subprocess.Popen([str(arc)], env=H.base_env(root, COEX_FAULT=barrier.env),
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    workers = []
    try:
        barrier.wait(p)
        workers = H.children(p.pid)
        assert workers
        p.kill()
        p.wait(timeout=60)
        deadline = time.time() + 30
        while any(H.alive(w) for w in workers) and time.time() < deadline:
            time.sleep(0.01)
        left = [w for w in workers if H.alive(w)]
    finally:
        barrier.release()
        for w in workers:
            if H.alive(w):
                os.kill(w, signal.SIGKILL)
    assert left == []
    assert [n for n in os.listdir(str(root / "pkgs")) if n.startswith(".tmp-") and "trash" not in n] == []
