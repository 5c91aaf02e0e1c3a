"""condapkg: packages from a staged directory are deterministic, carry the right metadata, and
py-rattler installs them (prefix replacement detected by scanning, links, modes)."""
import io
import json
import os
import subprocess
import tarfile
import time
import zipfile

import pytest
import zstandard

from tests.factory import tiny
from tests.factory.condapkg import (
    LONG_PLACEHOLDER,
    PackageMeta,
    build_from_files,
    build_package,
)
from tests.factory.fixtures import rattler_install


def _stage(root, mtime):
    (root / "bin").mkdir(parents=True)
    (root / "share" / "real").mkdir(parents=True)
    (root / "bin" / "tool").write_text("#!/bin/sh\necho %s\n" % LONG_PLACEHOLDER)
    os.chmod(str(root / "bin" / "tool"), 0o700)  # any exec bit -> 0o755 in the package
    (root / "share" / "blob.bin").write_bytes(b"\0\1" + LONG_PLACEHOLDER.encode() + b"\0tail")
    (root / "share" / "real" / "f.txt").write_text("f\n")
    os.chmod(str(root / "share" / "real" / "f.txt"), 0o600)
    os.link(str(root / "share" / "real" / "f.txt"), str(root / "share" / "hard.txt"))
    os.symlink("real", str(root / "share" / "dirlink"))
    os.symlink("../bin/tool", str(root / "share" / "toollink"))
    for p in root.rglob("*"):
        if not p.is_symlink():
            os.utime(str(p), (mtime, mtime))


META = dict(name="staged", version="2.1", build="h1_0", depends=["python >=3"],
            detect_placeholder=LONG_PLACEHOLDER)


def _tar(pkg):
    with zipfile.ZipFile(pkg) as zf:
        data = {n.split("-")[0]: zstandard.ZstdDecompressor().decompress(zf.read(n), max_output_size=1 << 24)
                for n in zf.namelist() if n.endswith(".tar.zst")}
    return {k: tarfile.open(fileobj=io.BytesIO(v)) for k, v in data.items()}


def test_stage_dir_package_is_deterministic(tmp_path):
    _stage(tmp_path / "s1", 1_000_000)
    _stage(tmp_path / "s2", time.time())
    for fmt in ("conda", "tar.bz2"):
        a = build_package(tmp_path / "s1", tmp_path / "o1", PackageMeta(**META), fmt=fmt)
        b = build_package(tmp_path / "s2", tmp_path / "o2", PackageMeta(**META), fmt=fmt)
        assert a.name == "staged-2.1-h1_0." + fmt
        assert a.read_bytes() == b.read_bytes(), fmt


def test_stage_dir_metadata(tmp_path):
    _stage(tmp_path / "s", 1_000_000)
    pkg = build_package(tmp_path / "s", tmp_path / "out", PackageMeta(**META))
    t = _tar(pkg)
    members = {m.name: m for m in t["pkg"].getmembers()}
    assert sorted(members) == ["bin/tool", "share/blob.bin", "share/dirlink", "share/hard.txt",
                               "share/real/f.txt", "share/toollink"]
    assert members["bin/tool"].mode == 0o755 and members["share/real/f.txt"].mode == 0o644
    assert members["share/dirlink"].issym() and members["share/dirlink"].linkname == "real"
    assert members["share/hard.txt"].islnk() or members["share/real/f.txt"].islnk()
    info = {m.name: t["info"].extractfile(m).read() for m in t["info"].getmembers()}
    paths = {e["_path"]: e for e in json.loads(info["info/paths.json"])["paths"]}
    assert paths["bin/tool"]["file_mode"] == "text"
    assert paths["share/blob.bin"]["file_mode"] == "binary"
    assert "file_mode" not in paths["share/real/f.txt"]
    assert paths["share/dirlink"]["path_type"] == "softlink" and "sha256" not in paths["share/dirlink"]
    idx = json.loads(info["info/index.json"])
    assert (idx["subdir"], idx["arch"], idx["platform"]) == ("linux-64", "x86_64", "linux")
    assert info["info/files"].decode().splitlines() == sorted(paths)
    assert "%s binary share/blob.bin" % LONG_PLACEHOLDER in info["info/has_prefix"].decode()


def test_rattler_installs_stage_dir_package(tmp_path):
    chan = tmp_path / "chan"
    _stage(tmp_path / "s", 1_000_000)
    build_package(tmp_path / "s", chan / "linux-64", PackageMeta("staged", "2.1", "h1_0",
                                                                 detect_placeholder=LONG_PLACEHOLDER))
    tiny.index_channel(chan)
    prefix = tmp_path / "p"
    rattler_install(chan.as_uri(), ["staged"], prefix, cache_dir=tmp_path / "c")
    assert subprocess.run([str(prefix / "share/toollink")], capture_output=True,
                          text=True).stdout == "%s\n" % prefix
    blob = (prefix / "share/blob.bin").read_bytes()
    assert blob.startswith(b"\0\1" + str(prefix).encode() + b"\0")
    assert len(blob) == 2 + len(LONG_PLACEHOLDER) + 5
    assert (prefix / "share/dirlink/f.txt").read_text() == "f\n"
    assert (prefix / "share/hard.txt").read_text() == "f\n"


def test_old_style_and_errors(tmp_path):
    p = build_from_files({"bin/x": ("exec", "#!/bin/sh\necho /opt/anaconda1anaconda2anaconda3\n")},
                         tmp_path, PackageMeta("old", "1", old_style=True, has_prefix_bare=["bin/x"]),
                         fmt="tar.bz2")
    with tarfile.open(str(p)) as tf:
        names = tf.getnames()
        assert "info/paths.json" not in names and names.index("info/index.json") < names.index("bin/x")
        assert tf.extractfile("info/has_prefix").read() == b"bin/x\n"
    with pytest.raises(ValueError, match="not in files"):
        build_from_files({"a": "x"}, tmp_path, PackageMeta("e", "1", prefix_files={"b": ("/p", "text")}))
    with pytest.raises(ValueError, match=".conda or .tar.bz2"):
        build_from_files({"a": "x"}, tmp_path, PackageMeta("e", "1"), fmt="zip")
