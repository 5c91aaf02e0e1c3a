"""coex_runtime/runtime.py: one archive against one cache: damaged or hostile archives and hosts
that cannot run them are refused before anything runs, the marker and launcher come last, the
archive's libzstd is checked (the cache's concurrency and kill -9 safety: test_cache.py)."""
import glob
import json
import os
import shutil
import subprocess
import zipfile

import pytest

from tests.runtime import rt_helpers as H


def _launcher(root, info):
    return os.path.join(str(root), "launch", H.ids(info)[0] + ".sh")


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
    assert os.path.isfile(os.path.join(H.prefix_of(tmp_path / "root", info), ".coex-ready"))


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
        assert outs[0][0].decode().strip() == H.prefix_of(root, info)
        assert len(set(o[0] for o in outs)) == 2 and os.listdir(str(root / "tmp")) == []


def _no_install(root, info):
    assert not os.path.exists(_launcher(root, info))
    assert not os.path.exists(os.path.join(H.prefix_of(root, info), ".coex-ready"))


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


@pytest.mark.parametrize("bad", ["bad-escape", "bad-symlink-outside", "bad-device"])
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
    marker = os.path.join(H.prefix_of(root, info), ".coex-ready")
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


def test_link_script_messages_are_shown_on_the_first_run_only(tiny_channel, tmp_path, root):
    """What a post-link script leaves in $PREFIX/.messages.txt is printed on stderr by the run
    that installs the environment (conda prints it), then removed; `extract` prints it too."""
    pkg = H.custom_package(tmp_path / "chan", "told", {
        "share/told/x": "x\n",
        "bin/.told-post-link.sh": 'echo "told: $PKG_NAME installed" > "$PREFIX/.messages.txt"\n'})
    arc = tmp_path / "told.coex"
    info = H.make_archive(tiny_channel.path, arc, names=("libtiny",), extra=[pkg],
                          entry_points={"sh": "sh -c"}, default="sh")
    first = H.run(arc, "echo ran", root=root)
    assert first.returncode == 0 and first.stdout == b"ran\n", H.text(first)
    assert first.stderr.decode() == "coex: a message from told-1.0-h0_0:\ntold: told installed\n"
    assert not os.path.exists(os.path.join(H.prefix_of(root, info), ".messages.txt"))
    again = H.run(arc, "echo ran", root=root)
    assert (again.returncode, again.stdout, again.stderr) == (0, b"ran\n", b""), H.text(again)
    out = tmp_path / "extracted"
    ex = H.run(arc, "extract", str(out), root=root, env={"COEX_TOOLS": "1"})
    assert ex.returncode == 0, H.text(ex)
    assert "told: told installed" in ex.stderr.decode() and not (out / ".messages.txt").exists()
