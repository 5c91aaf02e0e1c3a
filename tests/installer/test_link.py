"""coex_runtime/link.py: how files land in the prefix: hardlinks from the package cache, copies
(no_link, placeholders), modes and the umask, conda-meta's link type."""
import os
import stat

from tests.factory.condapkg import LONG_PLACEHOLDER, Member, PackageMeta, info_files, write_archive
from tests.installer import helpers


def test_hardlinks_from_the_package_cache(tmp_path):
    e = helpers.small_package(tmp_path, "plain", {"share/plain/a.txt": "a\n", "bin/run": ("exec", "#!/bin/sh\n"),
                                 "etc/conf": "p=" + LONG_PLACEHOLDER + "\n"},
             prefix_files={"etc/conf": (LONG_PLACEHOLDER, "text")})
    env = helpers.coex_install([e], tmp_path / "pkgs", tmp_path / "env")
    cached = tmp_path / "pkgs" / e["stored_sha256"]
    assert os.path.samefile(str(env / "share/plain/a.txt"), str(cached / "share/plain/a.txt"))
    assert os.path.samefile(str(env / "bin/run"), str(cached / "bin/run"))
    # a file with a placeholder is a copy, with the real prefix
    assert not os.path.samefile(str(env / "etc/conf"), str(cached / "etc/conf"))
    assert (env / "etc/conf").read_text() == "p=%s\n" % env
    assert stat.S_IMODE((env / "bin/run").stat().st_mode) & 0o111


def test_no_link_is_copied(tmp_path):
    e = helpers.small_package(tmp_path, "nolink", {"share/nl/x.txt": "x\n", "share/nl/y.txt": "y\n"},
             no_link=["share/nl/x.txt"])
    env = helpers.coex_install([e], tmp_path / "pkgs", tmp_path / "env")
    cached = tmp_path / "pkgs" / e["stored_sha256"]
    assert not os.path.samefile(str(env / "share/nl/x.txt"), str(cached / "share/nl/x.txt"))
    assert os.path.samefile(str(env / "share/nl/y.txt"), str(cached / "share/nl/y.txt"))
    rec = helpers.conda_meta(env)["nolink-1.0-h0_0.json"]
    [x] = [p for p in rec["paths_data"]["paths"] if p["_path"] == "share/nl/x.txt"]
    assert x.get("no_link") is True


def _modes_package(tmp_path):
    members = [Member("bin/tool", data=b"#!/bin/sh\necho " + LONG_PLACEHOLDER.encode() + b"\n",
                      mode=0o777),
               Member("bin/suid", data=b"#!/bin/sh\necho suid\n", mode=0o6775),
               Member("bin/sticky", data=b"#!/bin/sh\n", mode=0o1755),
               Member("share/ww/data.txt", data=b"d\n", mode=0o666),
               Member("share/ww/group.txt", data=b"g\n", mode=0o664),
               Member("share/ww/nolink.txt", data=b"n\n", mode=0o664),
               Member("share/ww/ro.txt", data=b"r\n", mode=0o444)]
    meta = PackageMeta("ww", "1.0", "h0_0", prefix_files={"bin/tool": (LONG_PLACEHOLDER, "text")},
                       no_link=["share/ww/nolink.txt"])
    path = write_archive(tmp_path / "chan" / "ww-1.0-h0_0.conda", info_files(meta, members), members)
    return helpers.entry_from_file(path, meta.index_json())


# the archive's modes, whatever the umask (conda and rattler keep them); setuid/setgid/sticky and
# world-write dropped, owner-read added (coex_runtime/streams.py says why)
KEPT_MODES = {"bin/tool": 0o775, "bin/suid": 0o775, "bin/sticky": 0o755,
              "share/ww/data.txt": 0o664, "share/ww/group.txt": 0o664,
              "share/ww/nolink.txt": 0o664, "share/ww/ro.txt": 0o444}


def test_the_archives_modes_are_kept_whatever_the_umask(tmp_path):
    """hardlinked (group.txt, ro.txt), copied (nolink.txt), prefix-replaced (bin/tool): all keep
    the package's mode under umask 027; directories get the umask, as conda's do."""
    e = _modes_package(tmp_path)
    old = os.umask(0o027)
    try:
        env = helpers.coex_install([e], tmp_path / "pkgs", tmp_path / "env")
    finally:
        os.umask(old)
    modes = {p: stat.S_IMODE((env / p).stat().st_mode) for p in KEPT_MODES}
    assert modes == KEPT_MODES
    cached = tmp_path / "pkgs" / e["stored_sha256"]
    assert stat.S_IMODE((cached / "share/ww/group.txt").stat().st_mode) == 0o664
    assert stat.S_IMODE((env / "share" / "ww").stat().st_mode) == 0o750
    for root, dirs, files in os.walk(str(env)):
        for n in dirs + files:
            st = os.lstat(os.path.join(root, n))
            if not stat.S_ISLNK(st.st_mode):
                assert not st.st_mode & 0o7002, os.path.join(root, n)


def test_modes_when_the_cache_is_on_another_file_system(tmp_path, monkeypatch):
    """No hardlinks (EXDEV): every file is a copy, with the same modes, and conda-meta records
    link type 3 (copy) as conda does; with hardlinks it records 1."""
    import errno
    e = _modes_package(tmp_path)
    env = helpers.coex_install([e], tmp_path / "pkgs", tmp_path / "env")
    assert helpers.conda_meta(env)["ww-1.0-h0_0.json"]["link"]["type"] == 1

    def no_link(src, dst):
        raise OSError(errno.EXDEV, "Invalid cross-device link")
    monkeypatch.setattr(os, "link", no_link)
    env2 = helpers.coex_install([e], tmp_path / "pkgs", tmp_path / "env2")
    assert {p: stat.S_IMODE((env2 / p).stat().st_mode) for p in KEPT_MODES} == KEPT_MODES
    cached = tmp_path / "pkgs" / e["stored_sha256"]
    assert not os.path.samefile(str(env2 / "share/ww/group.txt"), str(cached / "share/ww/group.txt"))
    assert helpers.conda_meta(env2)["ww-1.0-h0_0.json"]["link"]["type"] == 3


def test_linked_file_records_are_condas(tmp_path):
    """conda 23's paths_data entries (link.Linker's docstring): a symlink keeps paths.json's
    sha256/size (those of its target file) and gets no sha256_in_prefix; a file linked as it is
    gets sha256_in_prefix = sha256; a prefix-replaced one keeps the package's size and gets the
    digest of what was written; an old package's entries (no sha256/size) stay bare."""
    import hashlib
    from coex_runtime.link import Linker
    pkgdir = tmp_path / "pkg"
    (pkgdir / "lib").mkdir(parents=True)
    (pkgdir / "info").mkdir()
    (pkgdir / "info" / "index.json").write_text("{}")
    (pkgdir / "lib" / "libx.so.1").write_bytes(b"x" * 1234)
    os.symlink("libx.so.1", str(pkgdir / "lib" / "libx.so"))
    text = b"prefix=" + LONG_PLACEHOLDER.encode() + b"\n"
    (pkgdir / "lib" / "x.pc").write_bytes(text)
    sha_x, sha_pc = hashlib.sha256(b"x" * 1234).hexdigest(), hashlib.sha256(text).hexdigest()
    staging = tmp_path / "staging"
    staging.mkdir()
    final = "/opt/env"
    linker = Linker(str(staging), final, None)
    linker.probe_hardlinks(str(pkgdir))
    link = lambda p: linker.link_file("x-1.0-0.conda", str(pkgdir), p, p["_path"])
    assert link({"_path": "lib/libx.so", "path_type": "softlink", "sha256": sha_x,
                 "size_in_bytes": 1234}) == {"_path": "lib/libx.so", "path_type": "softlink",
                                             "sha256": sha_x, "size_in_bytes": 1234}
    assert link({"_path": "lib/libx.so.1", "path_type": "hardlink", "sha256": sha_x,
                 "size_in_bytes": 1234}) == {"_path": "lib/libx.so.1", "path_type": "hardlink",
                                             "sha256": sha_x, "size_in_bytes": 1234,
                                             "sha256_in_prefix": sha_x}
    written = b"prefix=/opt/env\n"
    assert link({"_path": "lib/x.pc", "path_type": "hardlink", "sha256": sha_pc,
                 "size_in_bytes": len(text), "prefix_placeholder": LONG_PLACEHOLDER,
                 "file_mode": "text"}) == {
        "_path": "lib/x.pc", "path_type": "hardlink", "sha256": sha_pc, "size_in_bytes": len(text),
        "prefix_placeholder": LONG_PLACEHOLDER, "file_mode": "text",
        "sha256_in_prefix": hashlib.sha256(written).hexdigest()}
    assert (staging / "lib" / "x.pc").read_bytes() == written
    # an old package (info/files only): nothing but the path and its type
    assert link({"_path": "lib/libx.so.1", "path_type": "hardlink"}) == {
        "_path": "lib/libx.so.1", "path_type": "hardlink"}
    assert link({"_path": "lib/libx.so", "path_type": "softlink"}) == {
        "_path": "lib/libx.so", "path_type": "softlink"}
