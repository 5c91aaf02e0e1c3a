"""Unit tests of the installer pieces: zstd stream, prefix replacement, linking semantics
(hardlinks, modes, umask, clobbering), the package cache (reuse, concurrency), progress."""
import hashlib
import io
import os
import stat
import threading

import pytest
import zstandard

from coex_runtime import extract, install, prefix, tar, zstd
from tests.factory.condapkg import (LONG_PLACEHOLDER, Member, PackageMeta, build_from_files,
                                    info_files, write_archive)
from tests.installer import helpers

# --------------------------------------------------------------------------------------------
# zstd


def _frames(*parts, level=3):
    cctx = zstandard.ZstdCompressor(level=level, write_checksum=True)
    return b"".join(cctx.compress(p) for p in parts)


def test_zstd_stream_multi_frame_and_bounded_reads():
    a, b = os.urandom(300000) * 2, b"hello " * 200000
    r = zstd.open_reader(io.BytesIO(_frames(a, b)))
    got = []
    while True:
        block = r.read(65536)
        if not block:
            break
        assert len(block) <= 65536
        got.append(block)
    assert b"".join(got) == a + b


@pytest.mark.parametrize("damage,word", [
    (lambda c: c[:-50], "truncated"),
    (lambda c: c[:20] + bytes(x ^ 0x5A for x in c[20:]), "corrupt"),
    (lambda c: b"not zstd at all" * 10, "corrupt"),
    (lambda c: b"", "empty"),
])
def test_zstd_bad_streams_name_the_stream(damage, word):
    c = _frames(os.urandom(100000))
    with pytest.raises(zstd.ZstdError) as ei:
        zstd.open_reader(io.BytesIO(damage(c)), name="pkg-x.tar.zst").read()
    assert word in str(ei.value) and "pkg-x.tar.zst" in str(ei.value)


def test_zstd_libzstd_path_first_then_host(tmp_path, monkeypatch):
    host = zstd.load_libzstd()
    # a path that does not load falls back to the host's library
    assert zstd.load_libzstd(str(tmp_path / "missing.so")) is host
    # nothing at all: a clear error listing what was tried
    monkeypatch.setattr(zstd, "_load_one", lambda p: "%s: cannot open" % p)
    monkeypatch.setattr(zstd.ctypes.util, "find_library", lambda n: None)
    with pytest.raises(zstd.ZstdError) as ei:
        zstd.load_libzstd(str(tmp_path / "missing.so"))
    msg = str(ei.value)
    assert "missing.so" in msg and "libzstd.so.1" in msg and "compression.zstd" in msg


def test_zstd_explicit_library_is_used(tmp_path):
    import ctypes.util
    import shutil

    src = "/lib/x86_64-linux-gnu/libzstd.so.1"
    if not os.path.exists(src):
        src = ctypes.util.find_library("zstd")
    copy = tmp_path / "libzstd.so.1"
    shutil.copy(os.path.realpath(src), str(copy))
    lib = zstd.load_libzstd(str(copy))
    assert lib._name == str(copy)
    data = b"abc" * 100000
    assert zstd.open_reader(io.BytesIO(_frames(data)), libzstd=str(copy)).read() == data


def test_zstd_threads_decompress_in_parallel():
    blobs = [os.urandom(50000) * 20 for _ in range(4)]
    comp = [_frames(b) for b in blobs]
    out = [None] * 4

    def work(i):
        out[i] = zstd.open_reader(io.BytesIO(comp[i])).read()

    ts = [threading.Thread(target=work, args=(i,)) for i in range(4)]
    [t.start() for t in ts]
    [t.join() for t in ts]
    assert out == blobs


# --------------------------------------------------------------------------------------------
# prefix replacement

PH = b"/ph_" + b"x" * 60


def test_binary_replacement_pads_each_c_string():
    data = b"\x7fELF..." + PH + b"/lib:" + PH + b"/lib64\0tail" + b"\0" * 3 + PH + b"\0end"
    new = prefix.replace_binary(data, PH, b"/short", "pkg: bin/x")
    assert len(new) == len(data)
    first = b"/short/lib:/short/lib64"
    i = new.index(first)
    assert new[i + len(first): i + len(first) + len(data) - len(new)] == b""
    # the string keeps its slot: new contents, then NULs up to where the old NUL was
    old_len = len(PH + b"/lib:" + PH + b"/lib64")
    assert new[i:i + old_len] == first + b"\0" * (old_len - len(first))
    assert new.endswith(b"/short" + b"\0" * (len(PH) - len(b"/short")) + b"\0end")
    assert PH not in new


def test_binary_replacement_too_long_names_the_file():
    with pytest.raises(prefix.PrefixError) as ei:
        prefix.replace_binary(b"a" + PH + b"\0", PH, b"/" + b"y" * 100, "pkg-1.0-0.conda: bin/x")
    assert "pkg-1.0-0.conda: bin/x" in str(ei.value) and "placeholder" in str(ei.value)


def test_text_replacement_everywhere():
    data = b"a=" + PH + b"\nb=" + PH + b"/lib\n"
    assert prefix.replace_text(data, PH, b"/opt/env") == b"a=/opt/env\nb=/opt/env/lib\n"


def test_shebangs():
    long_prefix = b"/" + b"p" * 130
    # python: the sh re-exec form (that exact python)
    out = prefix.replace_text(b"#!" + PH + b"/bin/python3.11 -E\nprint(1)\n", PH, long_prefix)
    assert out == (b"#!/bin/sh\n'''exec' \"" + long_prefix + b"/bin/python3.11\" -E \"$0\" \"$@\" "
                   b"#'''\nprint(1)\n")
    # anything else: /usr/bin/env <prog> <args>
    out = prefix.replace_text(b"#!" + PH + b"/bin/perl -w\nprint 1;\n", PH, long_prefix)
    assert out == b"#!/usr/bin/env perl -w\nprint 1;\n"
    # short enough: untouched
    out = prefix.replace_text(b"#!" + PH + b"/bin/perl\n", PH, b"/opt/e")
    assert out == b"#!/opt/e/bin/perl\n"
    # a blank in the prefix cannot be in a shebang
    out = prefix.replace_text(b"#!" + PH + b"/bin/bash\necho " + PH + b"\n", PH, b"/opt/my env")
    assert out == b"#!/usr/bin/env bash\necho /opt/my env\n"


# --------------------------------------------------------------------------------------------
# linking semantics


def _pkg(tmp_path, name, files, **kw):
    meta = PackageMeta(name, "1.0", "h0_0", **kw)
    path = build_from_files(files, tmp_path / "chan" / "linux-64", meta)
    return helpers.entry_from_file(path, meta.index_json())


def test_hardlinks_from_the_package_cache(tmp_path):
    e = _pkg(tmp_path, "plain", {"share/plain/a.txt": "a\n", "bin/run": ("exec", "#!/bin/sh\n"),
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
    e = _pkg(tmp_path, "nolink", {"share/nl/x.txt": "x\n", "share/nl/y.txt": "y\n"},
             no_link=["share/nl/x.txt"])
    env = helpers.coex_install([e], tmp_path / "pkgs", tmp_path / "env")
    cached = tmp_path / "pkgs" / e["stored_sha256"]
    assert not os.path.samefile(str(env / "share/nl/x.txt"), str(cached / "share/nl/x.txt"))
    assert os.path.samefile(str(env / "share/nl/y.txt"), str(cached / "share/nl/y.txt"))
    rec = helpers.conda_meta(env)["nolink-1.0-h0_0.json"]
    [x] = [p for p in rec["paths_data"]["paths"] if p["_path"] == "share/nl/x.txt"]
    assert x.get("no_link") is True


def test_modes_kept_nothing_world_writable_umask_respected(tmp_path):
    members = [Member("bin/tool", data=b"#!/bin/sh\necho " + LONG_PLACEHOLDER.encode() + b"\n",
                      mode=0o777),
               Member("share/ww/data.txt", data=b"d\n", mode=0o666),
               Member("share/ww/ro.txt", data=b"r\n", mode=0o444)]
    meta = PackageMeta("ww", "1.0", "h0_0", prefix_files={"bin/tool": (LONG_PLACEHOLDER, "text")})
    path = write_archive(tmp_path / "chan" / "ww-1.0-h0_0.conda", info_files(meta, members), members)
    e = helpers.entry_from_file(path, meta.index_json())
    old = os.umask(0o027)
    try:
        env = helpers.coex_install([e], tmp_path / "pkgs", tmp_path / "env")
    finally:
        os.umask(old)
    modes = {p: stat.S_IMODE((env / p).stat().st_mode)
             for p in ("bin/tool", "share/ww/data.txt", "share/ww/ro.txt")}
    assert modes == {"bin/tool": 0o750, "share/ww/data.txt": 0o640, "share/ww/ro.txt": 0o440}
    cached = tmp_path / "pkgs" / e["stored_sha256"]
    assert stat.S_IMODE(cached.stat().st_mode) == 0o750
    assert stat.S_IMODE((env / "share" / "ww").stat().st_mode) == 0o750
    for root, dirs, files in os.walk(str(env)):
        for n in dirs + files:
            st = os.lstat(os.path.join(root, n))
            if not stat.S_ISLNK(st.st_mode):
                assert not st.st_mode & 0o002, os.path.join(root, n)


def test_clobbering_later_package_wins(tmp_path):
    a = _pkg(tmp_path, "first", {"share/same.txt": "first\n", "share/first.txt": "1\n"})
    b = _pkg(tmp_path, "second", {"share/same.txt": "second\n"}, depends=["first"])
    env = helpers.coex_install([a, b], tmp_path / "pkgs", tmp_path / "env", jobs=4)
    assert (env / "share/same.txt").read_text() == "second\n"
    assert (env / "share/first.txt").read_text() == "1\n"


def test_cache_is_reused_and_shared(tmp_path, tiny_channel):
    e = helpers.entry_from_file(tiny_channel.file("prefixprog"))
    opened = []

    def counting(entry):
        opened.append(entry["filename"])
        return open(entry["path"], "rb")

    for n in range(2):
        staging, final = tmp_path / ("st%d" % n), tmp_path / ("env%d" % n)
        install.install_env([e], counting, str(tmp_path / "pkgs"), str(staging), str(final))
        os.rename(str(staging), str(final))
        install.finalize_env(str(final), [e])
    assert opened == ["prefixprog-1.0-h0_0.conda"]  # the second env came from the cache
    assert os.path.samefile(str(tmp_path / "env0/bin/.prefixprog-post-link.sh"),
                            str(tmp_path / "env1/bin/.prefixprog-post-link.sh"))


def test_concurrent_extraction_of_one_package(tmp_path, tiny_channel):
    e = helpers.entry_from_file(tiny_channel.file("python"))
    pkgs = tmp_path / "pkgs"
    results, errors = [], []

    def work():
        try:
            results.append(extract.extract_to_cache(e, helpers.open_payload, str(pkgs)))
        except Exception as ex:  # pragma: no cover - reported below
            errors.append(ex)

    ts = [threading.Thread(target=work) for _ in range(4)]
    [t.start() for t in ts]
    [t.join() for t in ts]
    assert not errors
    assert len(set(results)) == 1
    assert sorted(os.listdir(str(pkgs))) == [e["stored_sha256"]]


def test_progress_reports_every_package(tmp_path, tiny_channel):
    entries = [helpers.entry_from_file(tiny_channel.file(n)) for n in ("oldstyle", "prefixprog")]
    seen = []
    lock = threading.Lock()

    def progress(phase, done, total, name):
        with lock:
            seen.append((phase, done, total))

    helpers.coex_install(entries, tmp_path / "pkgs", tmp_path / "env", progress=progress)
    assert sorted(x for x in seen if x[0] == "extract") == [("extract", 1, 2), ("extract", 2, 2)]
    assert sorted(x for x in seen if x[0] == "link") == [("link", 1, 2), ("link", 2, 2)]


def test_paths_json_digests_are_checked(tmp_path):
    """A payload file whose bytes differ from paths.json stops extraction (the package's
    own checksums, beyond the stored-bytes digest)."""
    members = [Member("share/d.txt", data=b"right\n")]
    meta = PackageMeta("dig", "1.0", "h0_0")
    info = info_files(meta, members)
    members[0].data = b"wrong\n"
    path = write_archive(tmp_path / "dig-1.0-h0_0.conda", info, members)
    e = helpers.entry_from_file(path, meta.index_json())
    with pytest.raises(install.InstallError) as ei:
        helpers.coex_install([e], tmp_path / "pkgs", tmp_path / "env")
    assert "share/d.txt" in str(ei.value) and "sha256" in str(ei.value)
    assert hashlib.sha256(b"wrong\n").hexdigest() in str(ei.value)


def test_stdlib_zstd_backend_is_preferred(monkeypatch):
    """On CPython 3.14+ `compression.zstd` is used (not in this image: a stand-in with the same
    ZstdFile/ZstdError surface, built on zstandard, checks the wrapper and error mapping)."""
    import types

    class ZstdError(Exception):
        pass

    class ZstdFile(io.RawIOBase):
        def __init__(self, f, mode="r"):
            assert mode in ("r", "rb")
            self._r = zstandard.ZstdDecompressor().stream_reader(f, read_across_frames=True)

        def readinto(self, b):
            try:
                return self._r.readinto(b)
            except zstandard.ZstdError as e:
                raise ZstdError(str(e))

    fake = types.SimpleNamespace(ZstdFile=ZstdFile, ZstdError=ZstdError)
    monkeypatch.setattr(zstd, "stdlib_zstd", lambda: fake)
    monkeypatch.setattr(zstd, "load_libzstd", lambda *a: pytest.fail("libzstd must not be loaded"))
    data = b"stdlib backend " * 50000
    assert zstd.backend() == "compression.zstd"
    assert zstd.open_reader(io.BytesIO(_frames(data, data))).read() == data + data
    bad = _frames(data)
    with pytest.raises(zstd.ZstdError) as ei:
        zstd.open_reader(io.BytesIO(bad[:20] + b"\xff" * 200 + bad[220:]), name="x.tar.zst").read()
    assert "x.tar.zst" in str(ei.value)


# --------------------------------------------------------------------------------------------
# the streaming tar reader


def _tar(fmt, members):
    import tarfile

    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=fmt) as tf:
        for name, kind, data, extra in members:
            ti = tarfile.TarInfo(name)
            ti.mtime = 1600000000
            if kind == "file":
                ti.size, ti.mode = len(data), extra or 0o644
                tf.addfile(ti, io.BytesIO(data))
            elif kind == "symlink":
                ti.type, ti.linkname = tarfile.SYMTYPE, data
                tf.addfile(ti)
            elif kind == "dir":
                ti.type, ti.mode = tarfile.DIRTYPE, 0o755
                tf.addfile(ti)
    return buf.getvalue()


@pytest.mark.parametrize("fmt", ["GNU_FORMAT", "PAX_FORMAT", "USTAR_FORMAT"])
def test_tar_reader_formats(fmt):
    import tarfile

    deep = "/".join(["d%02d" % i for i in range(20)])           # 79 chars of directories
    long_name = deep + "/" + "f" * 90                           # > 100: prefix, pax or GNU 'L'
    members = [("lib/", "dir", None, None),
               (long_name, "file", b"long\n", 0o755),
               ("lib/data.bin", "file", os.urandom(70000), None),
               ("lib/link", "symlink", "data.bin", None)]
    if fmt != "USTAR_FORMAT":
        members.append(("lib/long-link", "symlink", "../" + "t" * 120, None))  # GNU 'K' / pax
        members.append(("lib/caf\u00e9.txt", "file", b"utf8\n", None))
    raw = _tar(getattr(tarfile, fmt), members)
    got = []
    for m in tar.iter_tar(io.BufferedReader(io.BytesIO(raw))):
        got.append((m.name.rstrip("/"), m.kind, m.read() if m.kind == "file" else m.linkname or None,
                    m.mtime))
    want = [(n.rstrip("/"), k, d, 1600000000) for n, k, d, _ in members]
    assert got == want


def test_tar_reader_skips_unread_data_and_rejects_damage():
    import tarfile

    raw = _tar(tarfile.PAX_FORMAT, [("a", "file", b"x" * 5000, None), ("b", "file", b"yy", None)])
    names = [m.name for m in tar.iter_tar(io.BytesIO(raw))]  # data never read
    assert names == ["a", "b"]
    bad = bytearray(raw)
    bad[0] ^= 0x41  # the first header's checksum no longer matches
    with pytest.raises(tar.TarError, match="checksum"):
        list(tar.iter_tar(io.BytesIO(bytes(bad))))
    with pytest.raises(tar.TarError, match="truncated"):
        for m in tar.iter_tar(io.BytesIO(raw[:1500])):
            m.read()
    no_end = raw[: raw.index(b"yy") + 512]
    with pytest.raises(tar.TarError, match="end-of-archive"):
        list(tar.iter_tar(io.BytesIO(no_end)))


def test_tar_numbers():
    assert tar._tar_number(b"0000644\0") == 0o644
    assert tar._tar_number(b"\x80" + (8 << 30).to_bytes(11, "big")) == 8 << 30  # base-256
    with pytest.raises(tar.TarError):
        tar._tar_number(b"12x4\0")


def _rezip(src, dst, compress, stream=False):
    import zipfile

    class Unseekable(io.RawIOBase):
        def __init__(self, f):
            self.f = f

        def writable(self):
            return True

        def write(self, b):
            return self.f.write(b)

    with zipfile.ZipFile(str(src)) as zin, open(str(dst), "wb") as raw:
        out = Unseekable(raw) if stream else raw
        with zipfile.ZipFile(out, "w", compression=compress) as zout:
            for zi in zin.infolist():
                zout.writestr(zi.filename, zin.read(zi), compress_type=compress)
    return dst


def test_conda_zip_variants(tiny_channel, tmp_path):
    """Deflated members are read; a zip written as a stream (data descriptors, sizes unknown
    up front) is refused with a clear message rather than misread."""
    import zipfile

    src = tiny_channel.file("prefixprog")
    deflated = _rezip(src, tmp_path / "prefixprog-1.0-h0_0.conda", zipfile.ZIP_DEFLATED)
    e = helpers.entry_from_file(deflated)
    env = helpers.coex_install([e], tmp_path / "pkgs", tmp_path / "env")
    assert (env / "etc/prefixprog.conf").read_text() == "prefix=%s\n" % env

    (tmp_path / "s").mkdir()
    streamed = _rezip(src, tmp_path / "s" / "prefixprog-1.0-h0_0.conda", zipfile.ZIP_STORED,
                      stream=True)
    e = helpers.entry_from_file(streamed)
    with pytest.raises(install.InstallError) as ei:
        helpers.coex_install([e], tmp_path / "pkgs2", tmp_path / "env2")
    assert "prefixprog-1.0-h0_0.conda" in str(ei.value) and "data descriptor" in str(ei.value)


def test_damaged_cache_entry_is_extracted_again(tmp_path, tiny_channel):
    e = helpers.entry_from_file(tiny_channel.file("prefixprog"))
    pkgs = tmp_path / "pkgs"
    helpers.coex_install([e], pkgs, tmp_path / "env0")
    cached = pkgs / e["stored_sha256"]
    (cached / "share/prefixprog/plain.txt").unlink()          # e.g. a partial cache cleanup
    (cached / "etc/prefixprog.conf").write_text("trunc")       # or a truncated file
    env = helpers.coex_install([e], pkgs, tmp_path / "env1")
    assert (env / "share/prefixprog/plain.txt").exists()
    assert (env / "etc/prefixprog.conf").read_text() == "prefix=%s\n" % env
    assert sorted(os.listdir(str(pkgs))) == [e["stored_sha256"]]


def test_noarch_python_site_packages_path_cep17(tmp_path, tiny_channel):
    """A python whose index.json declares python_site_packages_path (CEP 17, e.g. free-threaded
    builds) gets noarch packages there; .pyc are compiled and recorded where python put them."""
    import json
    import sys

    host = "/root/.pyenv/versions/3.9.18/bin/python3.9"
    if not os.path.exists(host):
        host = sys.executable
    members = [Member("bin/python3.9", data=('#!/bin/sh\nexec "%s" "$@"\n' % host).encode(),
                      mode=0o755)]
    meta = PackageMeta("python", "3.9.18", "h0_cep17")
    info = info_files(meta, members)
    index = json.loads(info["info/index.json"])
    index["python_site_packages_path"] = "lib/python3.9t/site-packages"
    info["info/index.json"] = json.dumps(index).encode()
    py = helpers.entry_from_file(
        write_archive(tmp_path / "python-3.9.18-h0_cep17.conda", info, members), meta.index_json())
    tp = helpers.entry_from_file(tiny_channel.file("tinypy"), noarch="python")
    env = helpers.coex_install([py, tp], tmp_path / "pkgs", tmp_path / "env")
    sp = env / "lib/python3.9t/site-packages/tinypy"
    assert (sp / "cli.py").exists() and not (env / "lib/python3.9").exists()
    rec = helpers.conda_meta(env)["tinypy-1.0-pyh0_0.json"]
    pycs = [p["_path"] for p in rec["paths_data"]["paths"] if p["path_type"] == "pyc_file"]
    assert "lib/python3.9t/site-packages/tinypy/__pycache__/cli.cpython-39.pyc" in pycs
    assert all((env / p).exists() for p in pycs)


def test_zstd_host_library_found_without_a_subprocess(monkeypatch):
    """libzstd.so.1 loads by name: ctypes.util.find_library (which runs `ldconfig -p` in a
    subprocess, once per stream before) is not consulted."""
    zstd.load_libzstd()  # the host's library is there

    def boom(name):
        raise AssertionError("find_library called")
    monkeypatch.setattr(zstd.ctypes.util, "find_library", boom)
    data = b"abc" * 1000
    assert zstd.open_reader(io.BytesIO(_frames(data))).read() == data
