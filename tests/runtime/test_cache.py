"""coex_runtime/cache.py (and atomic.py, which stages its directories): concurrent cold starts,
kill -9 at any instant, shared pkgs/, the environment directory name, the root and its
fallbacks (unset, relative or odd HOME / XDG_CACHE_HOME, unwritable, noexec, shell-special
characters, a file, shared with another user), the same root as the sh preamble's."""
import glob
import os
import shutil
import signal
import subprocess
import time

import pytest

from coex_runtime import cache as C
from tests.runtime import rt_helpers as H


def _prefix(root, info):
    return os.path.join(str(root), "envs", H.ids(info)[1])


def _launcher(root, info):
    return os.path.join(str(root), "launch", H.ids(info)[0] + ".sh")


def _debris(root):
    return sorted(os.listdir(os.path.join(str(root), "tmp"))) + sorted(
        glob.glob(os.path.join(str(root), "pkgs", ".tmp-*")))


def test_sixteen_cold_starts_one_install_all_run(std_archive, root):
    arc, info = std_archive
    env = H.base_env(root)
    env["COEX_VERBOSE"] = "1"
    procs = [subprocess.Popen([str(arc), "--label"], env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE) for _ in range(16)]
    outs = [p.communicate(timeout=120) + (p.returncode,) for p in procs]
    assert all(rc == 0 for _, _, rc in outs), [e.decode() for _, e, rc in outs if rc]
    assert all(o.decode().strip() == "prefix" for o, _, _ in outs)  # prefixprog --label
    installers = [e for _, e, _ in outs if b"extract+link" in e]
    assert len(installers) == 1
    # the 15 others waited in their sh preamble (flock) and took the warm path: no Python
    assert len([e for _, e, _ in outs if b"coex: open" in e]) == 1
    assert len(os.listdir(os.path.join(str(root), "pkgs"))) == len(info["packages"])
    assert _debris(root) == []


def _slow_archive(tiny_channel, tmp_path):
    """An archive whose post-link script (run by finalize, after the rename) can be made to
    stop: with COEX_TEST_SLOW=<file> it creates <file> and sleeps."""
    path, entry = H.custom_package(tmp_path / "chan", "slowpkg", {
        "bin/.slowpkg-post-link.sh": ("exec", 'if [ -n "$COEX_TEST_SLOW" ]; then : > "$COEX_TEST_SLOW"; '
                                              'sleep 60; fi\n'),
        "share/slowpkg/data.txt": "data\n"})
    arc = tmp_path / "slow.coex"
    info = H.make_archive(tiny_channel.path, arc, names=("libtiny", "python", "prefixprog", "tinypy"),
                          extra=[(path, entry)])
    return arc, info


def _assert_consistent(root, info):
    """Whatever state a killed run left: nothing half-done is treated as ready."""
    prefix = _prefix(root, info)
    if os.path.exists(_launcher(root, info)):
        assert os.path.isfile(os.path.join(prefix, ".coex-ready"))
    if os.path.isfile(os.path.join(prefix, ".coex-ready")):
        metas = glob.glob(os.path.join(prefix, "conda-meta", "*.json"))
        assert len(metas) == len(info["packages"])
        assert os.path.isfile(os.path.join(prefix, "share", "prefixprog", "post-link-ran"))


def test_kill9_after_rename_before_ready_then_recovery(tiny_channel, tmp_path, root):
    arc, info = _slow_archive(tiny_channel, tmp_path)
    flag = tmp_path / "post-link-started"
    env = H.base_env(root, COEX_TEST_SLOW=flag)
    p = subprocess.Popen([str(arc)], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         start_new_session=True)
    deadline = time.time() + 60
    while not flag.exists() and time.time() < deadline and p.poll() is None:
        time.sleep(0.01)
    assert flag.exists(), p.communicate()
    os.killpg(p.pid, signal.SIGKILL)
    p.wait()
    p.stdout.close()
    p.stderr.close()
    prefix = _prefix(root, info)
    assert os.path.isdir(prefix) and not os.path.exists(os.path.join(prefix, ".coex-ready"))
    assert not os.path.exists(_launcher(root, info))
    _assert_consistent(root, info)
    r = H.run(arc, root=root, env={"COEX_VERBOSE": "1"})
    assert r.returncode == 0 and r.stdout.decode().strip() == prefix, H.text(r)
    assert "extract+link" in r.stderr.decode()  # the debris was not taken for an environment
    assert os.path.isfile(os.path.join(prefix, ".coex-ready"))
    assert _debris(root) == []


def test_kill9_at_any_instant_never_leaves_a_ready_half_env(tiny_channel, tmp_path, root):
    arc, info = _slow_archive(tiny_channel, tmp_path)
    # how long a cold install takes here, then kill at instants spread over it
    t0 = time.time()
    assert H.run(arc, root=str(root) + "-probe").returncode == 0
    span = time.time() - t0
    for i in range(12):
        shutil.rmtree(str(root), ignore_errors=True)
        p = subprocess.Popen([str(arc)], env=H.base_env(root), stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, start_new_session=True)
        time.sleep(span * i / 12.0)
        try:
            os.killpg(p.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        p.communicate()
        _assert_consistent(root, info)
        r = H.run(arc, root=root)
        assert r.returncode == 0 and r.stdout.decode().strip() == _prefix(root, info), H.text(r)
        _assert_consistent(root, info)
    # gc (default age) removes what killed extractions left, keeps what is in use
    r = H.run(arc, "gc", root=root, env={"COEX_TOOLS": "1"})
    assert r.returncode == 0, H.text(r)
    assert _debris(root) == []
    assert H.run(arc, root=root).returncode == 0


def test_second_archive_reuses_env_and_pkgs(std_archive, tiny_channel, tmp_path, root):
    arc, info = std_archive
    assert H.run(arc, root=root).returncode == 0
    pkgs = os.path.join(str(root), "pkgs")
    before = {n: os.stat(os.path.join(pkgs, n)).st_ino for n in os.listdir(pkgs)}
    # same lock, other entry points: same environment, nothing installed again
    b = tmp_path / "b.coex"
    info_b = H.make_archive(tiny_channel.path, b, entry_points={"pp": "prefixprog"}, app={})
    assert H.ids(info_b)[1] == H.ids(info)[1] and H.ids(info_b)[0] != H.ids(info)[0]
    r = H.run(b, root=root, env={"COEX_VERBOSE": "1"})
    assert r.returncode == 0 and r.stdout.decode().strip() == _prefix(root, info)
    assert "extract+link" not in r.stderr.decode()
    # another lock sharing packages: only the new package is extracted
    c = tmp_path / "c.coex"
    info_c = H.make_archive(tiny_channel.path, c, names=("libtiny", "python", "prefixprog", "tinypy",
                                                         "oldstyle"), entry_points={"o": "oldstyle"}, app={})
    r = H.run(c, root=root)
    assert r.returncode == 0, H.text(r)
    after = {n: os.stat(os.path.join(pkgs, n)).st_ino for n in os.listdir(pkgs)}
    assert set(after) - set(before) == {p["stored_sha256"] for p in info_c["packages"]
                                        if p["name"] == "oldstyle"}
    assert all(after[n] == before[n] for n in before)  # not extracted again
    pp = [p for p in info["packages"] if p["name"] == "prefixprog"][0]
    in_env = os.path.join(_prefix(root, info_c), "share", "prefixprog", "plain.txt")
    in_pkgs = os.path.join(pkgs, pp["stored_sha256"], "share", "prefixprog", "plain.txt")
    assert os.stat(in_env).st_ino == os.stat(in_pkgs).st_ino  # hard-linked from pkgs/


def test_unwritable_home_falls_back_and_stays_warm_without_python(std_archive, tmp_path):
    arc, info = std_archive
    home = tmp_path / "home-is-a-file"
    home.write_text("not a directory")
    tmpdir = tmp_path / "t"
    tmpdir.mkdir()
    env = {"COEX_ROOT": None, "HOME": str(home), "TMPDIR": str(tmpdir)}
    r = H.run(arc, root="unused", env=env)
    fb = tmpdir / ("coex-%d" % os.getuid())
    assert r.returncode == 0, H.text(r)
    assert r.stdout.decode().strip() == _prefix(fb, info)
    err = r.stderr.decode()
    assert "not writable" in err and str(fb) in err and err.count("coex:") == 1
    assert oct(os.stat(str(fb)).st_mode & 0o777) == oct(0o700)
    # warm: the preamble finds the fallback root's launcher; no python needed, nothing said
    nopy = tmp_path / "bin"
    nopy.mkdir()
    for tool in ("sh", "id"):
        os.symlink(shutil.which(tool), str(nopy / tool))
    r = H.run(arc, root="unused", env=dict(env, PATH=str(nopy), COEX_PYTHON=None))
    assert r.returncode == 0 and r.stdout.decode().strip() == _prefix(fb, info), H.text(r)
    assert r.stderr == b""


def _unshare_ok():
    try:
        return subprocess.run(["unshare", "-m", "true"], stderr=subprocess.DEVNULL).returncode == 0
    except OSError:
        return False


@pytest.mark.skipif(not _unshare_ok(), reason="needs unshare -m (mount namespaces)")
@pytest.mark.parametrize("how", ["noexec", "readonly"])
def test_noexec_or_readonly_root_falls_back(std_archive, tmp_path, how):
    arc, info = std_archive
    croot = tmp_path / "croot"
    croot.mkdir()
    tmpdir = tmp_path / "t"
    tmpdir.mkdir()
    mount = ("mount -t tmpfs -o noexec tmpfs \"$1\"" if how == "noexec"
             else "mount --bind \"$1\" \"$1\" && mount -o remount,bind,ro \"$1\"")
    env = H.base_env(croot, TMPDIR=tmpdir)
    r = subprocess.run(["unshare", "-m", "sh", "-c", mount + ' && exec "$2"', "sh", str(croot), str(arc)],
                       env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    fb = tmpdir / ("coex-%d" % os.getuid())
    assert r.returncode == 0, H.text(r)
    assert r.stdout.decode().strip() == _prefix(fb, info)
    assert ("noexec" if how == "noexec" else "not writable") in r.stderr.decode()


def test_fallback_must_be_private_and_no_root_is_a_clear_error(tmp_path, monkeypatch):
    shared = tmp_path / "shared"
    shared.mkdir()
    os.chmod(str(shared), 0o777)
    assert "not a private directory" in C.check_root(str(shared), private=True)
    notdir = tmp_path / "file"
    notdir.write_text("x")
    monkeypatch.setattr(C, "fallback_roots", lambda environ=None: [str(notdir / "a"), str(shared)])
    with pytest.raises(C.CacheError) as e:
        C.select_root({"COEX_ROOT": str(notdir / "root")})
    assert "no usable cache directory" in str(e.value) and "COEX_ROOT" in str(e.value)


def test_environment_dir_name_changes_with_the_install_layout(monkeypatch):
    """An environment installed by a runtime whose installer laid packages out differently is
    not reused: its directory name covers INSTALL_LAYOUT as well as the locked packages."""
    env_id = "ab" * 32
    before = C.env_dir_name(env_id)
    assert len(before) == 16 and before != env_id[:16] and before != C.env_dir_name("cd" * 32)
    monkeypatch.setattr(C, "INSTALL_LAYOUT", C.INSTALL_LAYOUT + 1)
    assert C.env_dir_name(env_id) != before


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
        assert r.stdout.decode().strip() == H.prefix_of(fallback, info) + "/share/prefixprog", H.text(r)
    assert repr(char) in H.text(H.run(arc, "gc", root=root, env={"COEX_TOOLS": "1", "TMPDIR": str(tmp_path / "t")}))


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
    assert r.stdout.decode().strip() == H.prefix_of(fallback, info)
    assert "HOME" in r.stderr.decode() and str(fallback) in r.stderr.decode()
    assert not os.path.exists("/nonexistent/.cache/coex/envs/" + H.ids(info)[1])
    env["PATH"] = H.no_python_path(tmp_path / "nopy")
    r = subprocess.run([str(arc)], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert r.returncode == 0 and r.stdout.decode().strip() == H.prefix_of(fallback, info), H.text(r)
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
    want = H.prefix_of(home / ".cache" / "coex", info)
    r = subprocess.run([str(arc)], env=env, cwd=str(cwd), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert r.returncode == 0 and r.stdout.decode().strip() == want, H.text(r)
    assert os.listdir(str(cwd)) == []
    env["PATH"] = H.no_python_path(tmp_path / "nopy")  # warm, and the preamble agrees
    r = subprocess.run([str(arc)], env=env, cwd=str(cwd), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert r.returncode == 0 and r.stdout.decode().strip() == want, H.text(r)
    assert os.listdir(str(cwd)) == []


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
    r = H.sh("umask 077; %s" % pub, dict(env, HOME="/root"))
    assert r.returncode == 0 and r.stdout.decode().strip() == H.prefix_of(shared, info), H.text(r)
    probe = subprocess.run(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", H.HOST_PY, "-c", "1"],
                           stderr=subprocess.DEVNULL)
    if probe.returncode != 0:
        pytest.skip("user nobody cannot run the host python here")
    r = subprocess.run(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", str(pub)],
                       env=dict(env, HOME="/nonexistent"), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                       cwd="/")
    assert r.returncode == 0, H.text(r)
    assert r.stdout.decode().strip() == H.prefix_of(tmp_path / "t" / "coex-65534", info), H.text(r)
    assert "not writable by uid 65534" in r.stderr.decode()


def test_coex_root_that_is_a_file_is_named_as_such(std_archive, tmp_path):
    arc, info = std_archive
    f = tmp_path / "afile"
    f.write_text("")
    (tmp_path / "t").mkdir()
    r = H.run(arc, root=f, env={"TMPDIR": str(tmp_path / "t")})
    assert r.returncode == 0 and "%s is not a directory" % f in r.stderr.decode(), H.text(r)
    assert r.stdout.decode().strip() == H.prefix_of(tmp_path / "t" / ("coex-%d" % os.getuid()), info)


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
    assert prefix == H.prefix_of(want, info), H.text(r)
    env["PATH"] = H.no_python_path(tmp_path / "nopy")
    r = subprocess.run([str(arc)], env=env, cwd=str(cwd), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert r.returncode == 0 and r.stdout.decode().strip() == prefix and r.stderr.decode() == "", H.text(r)
    assert os.listdir(str(cwd)) == []


@pytest.mark.parametrize("point", ["extract", "linked", "renamed"])
def test_debris_of_a_killed_install_is_removed_by_the_next_run(std_archive, tiny_channel, tmp_path, root,
                                                                point):
    """kill -9 of the whole process group (the workers too) while a package is extracted, after
    the environment is linked in its work dir, after it is renamed into place: the next run
    removes what was left (it finds no other install running), not only a later gc."""
    arc, info = std_archive
    barrier = H.Barrier(tmp_path, point)
    p = subprocess.Popen([str(arc)], env=H.base_env(root, COEX_FAULT=barrier.env),
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        barrier.wait(p)
        os.killpg(p.pid, signal.SIGKILL)
        p.wait()
    finally:
        barrier.release()
    left = H.debris(root)
    assert left, "the kill left nothing to clean: the test is not testing"
    # another archive (its own environment) runs now: it cleans what the killed run left
    other = tmp_path / "other.coex"
    H.make_archive(tiny_channel.path, other, names=("libtiny", "prefixprog"), app={}, entry_points={"p": "prefixprog"}, default="p")
    r = H.run(other, root=root)
    assert r.returncode == 0, H.text(r)
    assert H.debris(root) == [], left
    assert H.run(arc, root=root).returncode == 0


def test_a_run_never_removes_the_work_of_an_install_in_progress(std_archive, tiny_channel, tmp_path, root):
    """While one install extracts (paused at a barrier), another archive's first run and a
    sweep attempt must leave its work directories alone; then both finish fine."""
    arc, info = std_archive
    barrier = H.Barrier(tmp_path, "extract")
    p = subprocess.Popen([str(arc)], env=H.base_env(root, COEX_FAULT=barrier.env),
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        barrier.wait(p)
        work = H.debris(root)
        assert work  # its work in progress
        other = tmp_path / "other.coex"
        H.make_archive(tiny_channel.path, other, names=("libtiny", "prefixprog"), app={},
                       entry_points={"p": "prefixprog"}, default="p")
        r = H.run(other, root=root)
        assert r.returncode == 0, H.text(r)
        assert set(work) <= set(H.debris(root))
    finally:
        barrier.release()
    out, err = p.communicate(timeout=120)
    assert p.returncode == 0 and out.decode().strip() == _prefix(root, info), err.decode()
    assert H.debris(root) == []


def test_a_first_run_waits_in_its_preamble_for_the_install_in_progress(std_archive, tmp_path, root):
    """A run arriving while another installs the same archive waits in its sh preamble (flock
    on launch/<id16>.lock: no Python started, no archive read), then runs warm; neither program
    inherits the lock."""
    import time
    arc, info = std_archive
    barrier = H.Barrier(tmp_path, "extract")
    prog = "'exec ls -l /proc/self/fd/'"
    env = H.base_env(root, COEX_FAULT=barrier.env, COEX_VERBOSE="1", COEX_ENTRYPOINT="sh")
    p1 = subprocess.Popen(["/bin/sh", "-c", "exec %s %s" % (arc, prog)], env=env,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    p2 = None
    try:
        barrier.wait(p1)
        p2 = subprocess.Popen(["/bin/sh", "-c", "exec %s %s" % (arc, prog)], env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        deadline = time.time() + 60
        waiting = []
        while not waiting and time.time() < deadline and p2.poll() is None:
            waiting = [c for c in H.children(p2.pid) if H.comm(c) == "flock"]
            time.sleep(0.01)
        assert waiting, "the second run does not wait on the lock"
        assert H.comm(p2.pid) not in ("python3", "python3.11")  # still the sh preamble
    finally:
        barrier.release()
    outs = [p.communicate(timeout=120) for p in (p1, p2)]
    assert [p.returncode for p in (p1, p2)] == [0, 0], [e.decode() for _, e in outs]
    assert b"coex: open" in outs[0][1] and b"coex: open" not in outs[1][1]
    for out, _ in outs:  # no lock left open for the program
        assert ".lock" not in out.decode() and " 9 -> " not in out.decode(), out


def test_a_descriptor_9_of_the_caller_is_the_programs_on_the_first_run(std_archive, tmp_path, root):
    arc, info = std_archive
    out = tmp_path / "nine"
    r = H.sh("%s 'echo via nine >&9' 9>%s" % (arc, out), H.base_env(root, COEX_ENTRYPOINT="sh"))
    assert r.returncode == 0, H.text(r)
    assert out.read_text() == "via nine\n"
