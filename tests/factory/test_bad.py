"""The bad-package channel: every package carries exactly the defect it is named for, and the
channel's repodata lets a solver pick each one by name."""
import bz2
import io
import json
import tarfile
import zipfile

import pytest
import zstandard

from tests.factory import tiny
from tests.factory.fixtures import rattler_install, rattler_solve


def _info_and_pkg(path):
    with zipfile.ZipFile(path) as zf:
        names = zf.namelist()
        blobs = {n.split("-")[0]: zf.read(n) for n in names if n.endswith(".tar.zst")}
    d = zstandard.ZstdDecompressor()
    info = tarfile.open(fileobj=io.BytesIO(d.decompress(blobs["info"], max_output_size=1 << 26)))
    pkg = tarfile.open(fileobj=io.BytesIO(d.decompress(blobs["pkg"], max_output_size=1 << 26)))
    paths = {e["_path"]: e for e in json.load(info.extractfile("info/paths.json"))["paths"]}
    return paths, {m.name: m for m in pkg.getmembers()}


def test_every_bad_package_is_listed_and_solvable(bad_channel):
    assert set(bad_channel.packages) == set(tiny.BAD_REASONS)
    for name in bad_channel.packages:
        recs = rattler_solve(bad_channel.url, [name])
        assert [r.name.normalized for r in recs] == [name]
        assert recs[0].file_name == bad_channel.file(name).name


@pytest.mark.parametrize("name,path,check", [
    ("bad-escape", "../escaped.txt", lambda m, e: m.isfile()),
    ("bad-absolute", "/tmp/coex-bad-absolute.txt", lambda m, e: m.isfile()),
    ("bad-symlink-outside", "lib/evil", lambda m, e: m.linkname == "../../../../etc/passwd"),
    ("bad-symlink-absolute", "lib/evil-abs", lambda m, e: m.linkname == "/etc/passwd"),
    ("bad-device", "dev/null-copy", lambda m, e: m.ischr()),
    ("bad-short-placeholder", "bin/shortprog",
     lambda m, e: e["file_mode"] == "binary" and len(e["prefix_placeholder"]) == 20),
])
def test_payload_defects(bad_channel, name, path, check):
    paths, members = _info_and_pkg(bad_channel.file(name))
    assert path in members and path in paths
    assert check(members[path], paths[path])


def test_paths_json_defects(bad_channel):
    import hashlib

    paths, members = _info_and_pkg(bad_channel.file("bad-missing-file"))
    assert "share/missing.txt" in paths and "share/missing.txt" not in members
    for name, field in (("bad-sha256", "sha256"), ("bad-size", "size_in_bytes")):
        paths, _ = _info_and_pkg(bad_channel.file(name))
        good = {"sha256": hashlib.sha256(b"some data\n").hexdigest(), "size_in_bytes": 10}
        assert paths["share/data.txt"][field] != good[field]
    paths, _ = _info_and_pkg(bad_channel.file("bad-path-type"))
    assert paths["share/data.txt"]["path_type"] == "weirdlink"


def test_corrupt_streams(bad_channel):
    with zipfile.ZipFile(bad_channel.file("bad-zstd")) as zf:
        pkg = [n for n in zf.namelist() if n.startswith("pkg-")][0]
        with pytest.raises(zstandard.ZstdError):
            zstandard.ZstdDecompressor().decompress(zf.read(pkg), max_output_size=1 << 26)
        info = [n for n in zf.namelist() if n.startswith("info-")][0]
        zstandard.ZstdDecompressor().decompress(zf.read(info), max_output_size=1 << 26)
    with pytest.raises(OSError):
        bz2.decompress(bad_channel.file("bad-bz2").read_bytes())


def test_rattler_rejects_some(bad_channel, tmp_path):
    """Documents the oracle: rattler refuses these (it accepts several others, e.g. bad-sha256)."""
    from rattler.exceptions import InstallerError

    for name in ("bad-escape", "bad-missing-file", "bad-path-type", "bad-zstd", "bad-bz2"):
        with pytest.raises(InstallerError):
            rattler_install(bad_channel.url, [name], tmp_path / name, cache_dir=tmp_path / "c")
