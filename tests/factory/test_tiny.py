"""The tiny channel: deterministic, indexed, solvable, installable with py-rattler, and the
installed programs run with the real prefix patched in."""
import bz2
import io
import json
import os
import stat
import subprocess
import tarfile
import zipfile

import pytest
import zstandard

from tests.factory import tiny
from tests.factory.condapkg import LONG_PLACEHOLDER
from tests.factory.fixtures import rattler_install, rattler_solve


def _members(pkg):
    """{name: (TarInfo, bytes|None)} of all tar members of a .conda or .tar.bz2."""
    out = {}
    if pkg.name.endswith(".conda"):
        with zipfile.ZipFile(pkg) as zf:
            blobs = [zstandard.ZstdDecompressor().decompress(zf.read(n), max_output_size=1 << 28)
                     for n in zf.namelist() if n.endswith(".tar.zst")]
    else:
        blobs = [bz2.decompress(pkg.read_bytes())]
    for raw in blobs:
        with tarfile.open(fileobj=io.BytesIO(raw)) as tf:
            for m in tf.getmembers():
                out[m.name] = (m, tf.extractfile(m).read() if m.isfile() else None)
    return out


@pytest.fixture(scope="module")
def installed(tiny_channel, tmp_path_factory):
    # a long prefix (well over 100 chars) so binary padding is really exercised
    prefix = tmp_path_factory.mktemp("p") / ("env_" + "x" * 100)
    records = rattler_install(tiny_channel.url, tiny.ALL_SPECS, prefix, execute_link_scripts=True)
    return prefix, {r.name.normalized: r for r in records}


def run(*cmd, **kw):
    return subprocess.run([str(c) for c in cmd], capture_output=True, text=True, timeout=60, **kw)


def test_build_is_deterministic(tiny_channel, tmp_path):
    again = tiny.build(tmp_path / "again")
    assert set(again.files) == set(tiny_channel.files)
    for key, path in tiny_channel.files.items():
        assert again.files[key].read_bytes() == path.read_bytes(), key


def test_channel_layout_and_formats(tiny_channel):
    ch = tiny_channel
    assert ch.url.startswith("file://")
    for sd in tiny.SUBDIRS:
        assert (ch.path / sd / "repodata.json").is_file()
    assert ch.file("libtiny", version="1.0").name.endswith(".tar.bz2")
    assert ch.file("libtiny", version="2.0").name.endswith(".conda")
    assert ch.file("zstd", subdir="linux-aarch64").name == "zstd-1.5.4-h0_placeholder.conda"
    repo = json.loads((ch.path / "noarch" / "repodata.json").read_text())
    assert repo["packages.conda"]["tinypy-1.0-pyh0_0.conda"]["noarch"] == "python"
    with zipfile.ZipFile(ch.file("prefixprog")) as zf:
        assert zf.namelist() == ["metadata.json", "pkg-prefixprog-1.0-h0_0.tar.zst",
                                 "info-prefixprog-1.0-h0_0.tar.zst"]
        assert all(i.compress_type == zipfile.ZIP_STORED for i in zf.infolist())


def test_package_metadata(tiny_channel):
    m = _members(tiny_channel.file("prefixprog"))
    paths = {e["_path"]: e for e in json.loads(m["info/paths.json"][1])["paths"]}
    assert paths["bin/prefixprog"]["file_mode"] == "binary"
    assert paths["bin/prefixprog"]["prefix_placeholder"] == LONG_PLACEHOLDER
    assert paths["etc/prefixprog.conf"]["file_mode"] == "text"
    assert paths["bin/pp"]["path_type"] == "softlink"
    assert paths["share/prefixprog/docs"]["path_type"] == "softlink"
    assert "file_mode" not in paths["share/prefixprog/plain.txt"]
    import hashlib
    data = m["share/prefixprog/plain.txt"][1]
    assert paths["share/prefixprog/plain.txt"]["sha256"] == hashlib.sha256(data).hexdigest()
    assert paths["share/prefixprog/plain.txt"]["size_in_bytes"] == len(data)
    assert m["share/prefixprog/b.txt"][0].islnk()
    assert m["share/prefixprog/b.txt"][0].linkname == "share/prefixprog/a.txt"
    assert m["bin/prefixprog"][0].mode == 0o755 and m["share/prefixprog/plain.txt"][0].mode == 0o644
    assert all(ti.mtime == m["bin/prefixprog"][0].mtime and ti.uid == 0 for ti, _ in m.values())
    assert "has_prefix" in json.dumps(sorted(m)) and "info/files" in m

    old = _members(tiny_channel.file("oldstyle"))
    assert "info/paths.json" not in old
    lines = old["info/has_prefix"][1].decode().splitlines()
    assert "bin/oldstyle" in lines  # bare line = default placeholder, text
    assert "%s binary bin/oldstyle-bin" % LONG_PLACEHOLDER in lines

    link = json.loads(_members(tiny_channel.file("tinypy"))["info/link.json"][1])
    assert link["noarch"]["type"] == "python"
    assert "tinypy = tinypy.cli:main" in link["noarch"]["entry_points"]


def test_programs_run_with_real_prefix(installed):
    prefix, recs = installed
    p = str(prefix)
    assert str(recs["libtiny"].version) == "1.0"  # prefixprog pins libtiny <2
    assert run(prefix / "bin/prefixprog").stdout == p + "\n"
    assert run(prefix / "bin/pp").stdout == p + "\n"
    assert run(prefix / "bin/prefixprog-sh").stdout == p + "\n"
    assert run(prefix / "bin/oldstyle").stdout == p + "\n"
    assert run(prefix / "bin/oldstyle-bin").stdout == p + "\n"
    assert run(prefix / "bin/python", "--print-prefix").stdout == p + "\n"
    assert (prefix / "etc/prefixprog.conf").read_text() == "prefix=%s\n" % p
    assert (prefix / "etc/oldstyle.conf").read_text() == "prefix=%s\n" % p
    assert (prefix / "lib/libtiny.txt").read_text() == "libtiny 1.0 at %s\n" % p
    binary = (prefix / "bin/prefixprog").read_bytes()
    assert b"placehold" not in binary and (p.encode() + b"\0") in binary


def test_binary_replacement_keeps_size(installed, tiny_channel):
    prefix, _ = installed
    packaged = _members(tiny_channel.file("prefixprog"))["bin/prefixprog"][1]
    assert LONG_PLACEHOLDER.encode() in packaged
    assert len((prefix / "bin/prefixprog").read_bytes()) == len(packaged)


def test_noarch_python_and_entry_points(installed):
    prefix, _ = installed
    sp = prefix / "lib/python3.9/site-packages/tinypy/cli.py"
    assert sp.is_file()
    r = run(prefix / "bin/tinypy")
    assert r.returncode == 0 and r.stdout == "tinypy ok %s\n" % sp, r.stderr
    assert run(prefix / "bin/tinypy-fail").returncode == 3
    assert run(prefix / "bin/tinypy-script").stdout == "tinypy-script ok\n"
    r = run(prefix / "bin/python", "-c", "import tinypy, sys; print(tinypy.__file__)")
    assert r.stdout.strip() == str(prefix / "lib/python3.9/site-packages/tinypy/__init__.py")


def test_links_modes_scripts_and_activation_files(installed):
    prefix, _ = installed
    share = prefix / "share/prefixprog"
    assert os.readlink(str(share / "docs")) == "../prefixprog-docs"
    assert (share / "docs" / "readme.txt").read_text() == "prefixprog docs\n"
    assert os.readlink(str(prefix / "lib/libzstd.so.1")) == "libzstd.so.1.5.4"
    assert os.readlink(str(prefix / "bin/python")) == "python3.9"
    assert (share / "a.txt").read_text() == (share / "b.txt").read_text() == "hardlinked content\n"
    assert os.stat(str(prefix / "bin/prefixprog")).st_mode & stat.S_IXUSR
    assert not os.stat(str(share / "plain.txt")).st_mode & stat.S_IXUSR
    assert (share / "post-link-ran").read_text() == "%s prefixprog\n" % prefix
    assert (prefix / "bin/.prefixprog-pre-link.sh").is_file()
    act = (prefix / "etc/conda/activate.d/prefixprog.sh").read_text()
    assert act == 'export PREFIXPROG_HOME="%s/share/prefixprog"\n' % prefix
    envs = json.loads((prefix / "etc/conda/env_vars.d/prefixprog.json").read_text())
    assert envs == {"PREFIXPROG_MODE": "tiny"}


def test_zstd_package_works(installed, tmp_path):
    prefix, _ = installed
    src = tmp_path / "data.txt"
    src.write_text("coex " * 1000)
    assert run(prefix / "bin/zstd", "-q", "-o", tmp_path / "d.zst", src).returncode == 0
    r = subprocess.run([str(prefix / "bin/zstd"), "-dc", str(tmp_path / "d.zst")], capture_output=True)
    assert r.stdout == src.read_bytes()


def test_unsolvable_and_failing_postlink(tiny_channel, tmp_path):
    from rattler.exceptions import SolverError

    with pytest.raises(SolverError, match="does-not-exist"):
        rattler_solve(tiny_channel.url, [tiny.UNSOLVABLE_SPEC])
    recs = rattler_solve(tiny_channel.url, [tiny.FAILING_POSTLINK_SPEC])
    assert [r.name.normalized for r in recs] == ["postlink-fails"]
    m = _members(tiny_channel.file("postlink-fails"))
    script = m["bin/.postlink-fails-post-link.sh"]
    assert script[0].mode == 0o755 and b"exit 1" in script[1]
    # normal solves never pull it in
    assert "postlink-fails" not in {r.name.normalized for r in rattler_solve(tiny_channel.url, tiny.ALL_SPECS)}


def test_aarch64_subdir(tiny_channel, tmp_path):
    recs = rattler_install(tiny_channel.url, tiny.ALL_SPECS, tmp_path / "a64", platform="linux-aarch64")
    by = {r.name.normalized: r for r in recs}
    assert by["zstd"].subdir == "linux-aarch64" and by["tinypy"].subdir == "noarch"
    assert (tmp_path / "a64/etc/prefixprog.conf").read_text() == "prefix=%s\n" % (tmp_path / "a64")
    assert (tmp_path / "a64/lib/python3.9/site-packages/tinypy/cli.py").is_file()
