"""The cache and first-run safety: concurrent cold starts, kill -9 at any instant, fallback roots,
shared pkgs/, and refusing damaged or hostile archives before anything runs."""
import glob
import json
import os
import shutil
import signal
import subprocess
import time
import zipfile

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


def _no_install(root, info):
    assert not os.path.exists(_launcher(root, info))
    assert not os.path.exists(os.path.join(_prefix(root, info), ".coex-ready"))


def test_altered_package_is_refused_before_anything_runs(std_archive, tmp_path, root):
    arc0, info = std_archive
    arc = tmp_path / "altered.coex"
    shutil.copy(str(arc0), str(arc))
    pp = [p for p in info["packages"] if p["name"] == "prefixprog"][0]
    H.flip_byte(arc, pp["member"])
    r = H.run(arc, root=root)
    assert r.returncode != 0 and r.stdout == b""
    err = r.stderr.decode()
    assert "prefixprog" in err and ("damaged" in err or "sha256" in err), err
    assert "Traceback" not in err
    _no_install(root, info)
    assert not os.path.exists(os.path.join(str(root), "pkgs", pp["stored_sha256"]))
    assert not os.path.exists(os.path.join(str(root), "envs", H.ids(info)[1]))
    r = H.run(arc, "verify", root=root, env={"COEX_TOOLS": "1"})
    assert r.returncode == 1 and "FAILED" in r.stderr.decode() and pp["member"] in r.stderr.decode()


def test_altered_app_layer_and_truncated_archive_are_refused(std_archive, tmp_path, root):
    arc0, info = std_archive
    arc = tmp_path / "altered-app.coex"
    shutil.copy(str(arc0), str(arc))
    with zipfile.ZipFile(str(arc)) as zf:
        member = [n for n in zf.namelist() if n.startswith("app/")][0]
    H.flip_byte(arc, member, at=0)
    r = H.run(arc, root=root)
    assert r.returncode != 0 and r.stdout == b"" and "Traceback" not in r.stderr.decode()
    assert "member %s" % member in r.stderr.decode() and "truncated or altered" in r.stderr.decode()
    _no_install(root, info)
    assert glob.glob(os.path.join(str(root), "apps", "*", "")) == []
    data = arc0.read_bytes()
    for cut in (1, 10, 22, 23, len(data) * 4 // 10):
        trunc = tmp_path / ("truncated-%d.coex" % cut)
        trunc.write_bytes(data[: len(data) - cut])
        os.chmod(str(trunc), 0o755)
        r = H.run(trunc, root=root)
        assert r.returncode == 1 and r.stdout == b"", (cut, H.text(r))
        assert "damaged" in r.stderr.decode() and "truncated" in r.stderr.decode(), (cut, H.text(r))
    _no_install(root, info)


def test_zip_slip_in_the_app_layer_is_refused(std_archive, tmp_path, root):
    arc0, info = std_archive
    arc = tmp_path / "slip.coex"
    shutil.copy(str(arc0), str(arc))
    with zipfile.ZipFile(str(arc), "a") as zf:
        zf.writestr(zipfile.ZipInfo("app/../../../../evil.txt"), b"pwned")
    r = H.run(arc, root=root)
    assert r.returncode != 0 and r.stdout == b""
    assert "escapes the layer" in r.stderr.decode(), H.text(r)
    assert not glob.glob(str(tmp_path / "**" / "evil.txt"), recursive=True)
    _no_install(root, info)


@pytest.mark.parametrize("bad", ["bad-escape", "bad-symlink-outside", "bad-device", "bad-setuid"])
def test_hostile_package_is_refused(bad_channel, tmp_path, root, bad):
    import hashlib
    path = bad_channel.file(bad)
    data = path.read_bytes()
    entry = {"name": bad, "version": "1.0", "build": "h0_0", "subdir": "linux-64",
             "filename": path.name, "sha256": hashlib.sha256(data).hexdigest(), "size": len(data)}
    from coex_runtime import format as F
    arc = tmp_path / "bad.coex"
    enc = "conda" if path.name.endswith(".conda") else "tar.bz2"
    info = F.write_archive(str(arc), "linux-64", [{"path": str(path), "entry": entry, "encoding": enc}],
                           {"sh": "sh -c"}, libzstd_path=H.LIBZSTD)
    r = H.run(arc, "echo ran", root=root)
    assert r.returncode != 0 and b"ran" not in r.stdout, H.text(r)
    assert bad in r.stderr.decode() and "Traceback" not in r.stderr.decode()
    _no_install(root, info)
    assert not glob.glob(str(tmp_path / "**" / "escaped.txt"), recursive=True)


def test_wrong_platform_and_missing_virtual_packages_stop_before_installing(tiny_channel, tmp_path, root):
    arm = tmp_path / "arm.coex"
    H.make_archive(tiny_channel.path, arm, names=("libtiny", "prefixprog"), subdir="linux-aarch64",
                   entry_points={"pp": "prefixprog"}, app={})
    r = H.run(arm, root=root)
    assert r.returncode == 1
    assert "built for linux-aarch64, but this host is linux-64" in r.stderr.decode()
    assert not os.path.exists(os.path.join(str(root), "envs")) or not os.listdir(os.path.join(str(root), "envs"))
    g = tmp_path / "glibc.coex"
    H.make_archive(tiny_channel.path, g, names=("libtiny", "prefixprog"), entry_points={"pp": "prefixprog"},
                   app={}, virtual_packages=["__glibc >=99", "__unix"])
    r = H.run(g, root=root)
    host = os.confstr("CS_GNU_LIBC_VERSION").split()[1]
    assert r.returncode == 1
    assert "needs glibc >= 99, this host has %s" % host in r.stderr.decode()
    r = H.run(g, root=root, env={"CONDA_OVERRIDE_GLIBC": "99.1"})
    assert r.returncode == 0, H.text(r)


def test_readiness_marker_and_launcher_written_last(std_archive, root):
    arc, info = std_archive
    assert H.run(arc, root=root).returncode == 0
    marker = os.path.join(_prefix(root, info), ".coex-ready")
    with open(marker) as f:
        m = json.load(f)
    assert m["env_id"] == info["env_id"]
    assert sorted(m["packages"]) == sorted(p["stored_sha256"] for p in info["packages"])
    assert os.stat(_launcher(root, info)).st_mtime >= os.stat(marker).st_mtime


def test_archive_libzstd_is_sha_checked_and_cached(std_archive, tmp_path, root):
    arc0, info = std_archive
    assert H.run(arc0, root=root).returncode == 0
    lib = os.path.join(str(root), "lib", info["libzstd"]["sha256"], "libzstd.so.1")
    assert os.path.isfile(lib) and os.access(lib, os.X_OK)
    arc = tmp_path / "badlib.coex"
    shutil.copy(str(arc0), str(arc))
    H.flip_byte(arc, info["libzstd"]["member"])
    root2 = tmp_path / "root2"
    r = H.run(arc, root=root2)
    assert r.returncode == 1 and r.stdout == b""
    assert "libzstd.so.1 is damaged" in r.stderr.decode(), H.text(r)
    assert not os.path.exists(os.path.join(str(root2), "lib", info["libzstd"]["sha256"]))
    _no_install(root2, info)


def test_environment_dir_name_changes_with_the_install_layout(monkeypatch):
    """An environment installed by a runtime whose installer laid packages out differently is
    not reused: its directory name covers INSTALL_LAYOUT as well as the locked packages."""
    env_id = "ab" * 32
    before = C.env_dir_name(env_id)
    assert len(before) == 16 and before != env_id[:16] and before != C.env_dir_name("cd" * 32)
    monkeypatch.setattr(C, "INSTALL_LAYOUT", C.INSTALL_LAYOUT + 1)
    assert C.env_dir_name(env_id) != before
