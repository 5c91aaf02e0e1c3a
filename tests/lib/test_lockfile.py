import json

import pytest
from rattler import LockFile

from coex.lib.errors import CoexError
from coex.lib.lockfile import (HEADER_PREFIX, canonical_channel, inputs_sha256, lock_entries,
                               read_header, solve_to_lockfile, stale_reason)
from tests.factory import tiny
from tests.lib.conftest import PLATFORMS, SPECS, make_request


def test_header_and_rattler_round_trip(tiny_channel, tiny_lock):
    text = tiny_lock.read_text()
    first, second = text.splitlines()[:2]
    assert first.startswith(HEADER_PREFIX)
    assert "zstd" in second and "decoder" in second
    header = read_header(tiny_lock)
    assert header == json.loads(first[len(HEADER_PREFIX):])
    assert header["version"] == 1 and header["resolve"] == "tiny"
    assert header["platforms"] == PLATFORMS
    assert header["channels"] == [tiny_channel.url]
    assert header["specs"] == sorted(SPECS)
    assert header["inputs_sha256"] == inputs_sha256(make_request(tiny_channel))
    assert "__archspec=1=aarch64" in header["virtual_packages"]["linux-aarch64"]
    # the body is rattler's own lock format: py-rattler reads the file, header included
    env = LockFile.from_path(tiny_lock).default_environment()
    plats = {p.name: p for p in env.platforms()}
    assert sorted(plats) == PLATFORMS
    assert plats["linux-64"].virtual_packages == header["virtual_packages"]["linux-64"]
    for p in plats.values():
        names = {r.name.normalized for r in env.conda_repodata_records_for_platform(p)}
        assert {"python", "tinypy", "prefixprog", "oldstyle", "libtiny"} <= names


def test_zstd_pinned_per_platform_without_being_asked(tiny_channel, tiny_lock):
    assert "zstd" not in SPECS
    for plat in PLATFORMS:
        e = lock_entries(tiny_lock, plat)
        zstd = [p for p in e["packages"] if p["name"] == "zstd"]
        assert len(zstd) == 1 and zstd[0]["subdir"] == plat
        assert e["zstd_filename"] == zstd[0]["filename"]
        assert zstd[0]["url"] == tiny_channel.file("zstd", subdir=plat).as_uri()


def test_entries_topological_with_virtual_packages(tiny_lock):
    e = lock_entries(tiny_lock, "linux-64")
    names = [p["name"] for p in e["packages"]]
    assert e["platform"] == "linux-64" and e["header"] == read_header(tiny_lock)
    for i, p in enumerate(e["packages"]):
        for dep in p["depends"]:
            dep_name = dep.split()[0]
            if not dep_name.startswith("__"):
                assert names.index(dep_name) < i, (p["name"], dep_name, names)
    assert names.index("libtiny") < names.index("prefixprog")
    assert names.index("python") < names.index("tinypy")
    assert "__glibc >=2.17" in e["virtual_packages"]
    assert all(v.startswith("__") for v in e["virtual_packages"])
    tinypy = e["packages"][names.index("tinypy")]
    assert tinypy["noarch"] == "python" and tinypy["subdir"] == "noarch"
    libtiny = e["packages"][names.index("libtiny")]
    assert libtiny["version"] == "1.0" and libtiny["filename"].endswith(".tar.bz2")
    keys = {"name", "version", "build", "build_number", "subdir", "filename", "url", "sha256",
            "md5", "size", "depends", "constrains", "channel", "noarch", "timestamp", "license"}
    for p in e["packages"]:
        assert set(p) == keys
        assert len(p["sha256"]) == 64 and len(p["md5"]) == 32 and p["size"] > 0


def test_solving_is_deterministic(tiny_channel, tiny_lock, tmp_path):
    again = tmp_path / "again.lock"
    solve_to_lockfile(make_request(tiny_channel), again)
    assert again.read_bytes() == tiny_lock.read_bytes()


def test_inputs_hash_and_staleness(tiny_channel, tiny_lock):
    req = make_request(tiny_channel)
    header = read_header(tiny_lock)
    assert stale_reason(header, req) is None
    # order and whitespace of specs, order of platforms, resolve name and origin do not matter
    same = make_request(tiny_channel, specs=list(reversed(SPECS)) + ["python"],
                        platforms=list(reversed(PLATFORMS)), resolve="other", origin="elsewhere")
    assert inputs_sha256(same) == header["inputs_sha256"]
    assert stale_reason(header, make_request(tiny_channel, specs=SPECS + ["zstd"])) == \
        "specs added: zstd"
    assert stale_reason(header, make_request(tiny_channel, platforms=["linux-64"])) == \
        "platforms removed: linux-aarch64"
    assert "channels added: file:///elsewhere" in stale_reason(
        header, dict(req, channels=[tiny_channel.url, "/elsewhere"]))
    assert stale_reason(header, dict(req, virtual_packages=["__glibc=2.28"])) == \
        "virtual packages changed"


def test_channel_forms():
    assert canonical_channel("/srv/chan/") == "file:///srv/chan"
    assert canonical_channel("file:/srv/chan") == "file:///srv/chan"
    assert canonical_channel("file://localhost/srv/chan") == "file:///srv/chan"
    assert canonical_channel("https://x.org/c/") == "https://x.org/c"
    assert canonical_channel("conda-forge") == "conda-forge"
    with pytest.raises(CoexError, match="`defaults` meta-channel"):
        canonical_channel("defaults")
    with pytest.raises(CoexError, match="relative path"):
        canonical_channel("./chan")


def test_unsolvable_names_origin_and_shows_rattler(tiny_channel, tmp_path):
    out = tmp_path / "x.lock"
    with pytest.raises(CoexError) as e:
        solve_to_lockfile(make_request(tiny_channel, specs=["python", tiny.UNSOLVABLE_SPEC],
                                       platforms=["linux-64"]), out)
    msg = str(e.value)
    assert "Cannot solve resolve 'tiny' for platform linux-64" in msg
    assert "tests/lib environment.yml" in msg
    assert "py-rattler says: Cannot solve the request" in msg
    assert "does-not-exist" in msg
    assert not out.exists()


def test_missing_zstd_in_channel_is_explained(tmp_path):
    import asyncio
    from rattler.index import index_fs

    chan = tmp_path / "empty"
    (chan / "noarch").mkdir(parents=True)
    (chan / "linux-64").mkdir()
    asyncio.run(index_fs(chan))
    with pytest.raises(CoexError) as e:
        solve_to_lockfile({"specs": ["python"], "channels": [str(chan)]}, tmp_path / "l")
    assert "coex always adds `zstd`" in str(e.value)


@pytest.mark.parametrize("bad, needle", [
    ({"specs": [], "channels": ["conda-forge"]}, "no conda specs"),
    ({"specs": ["x"], "channels": []}, "no channels"),
    ({"specs": ["x"], "channels": ["c"], "platforms": ["linux64"]}, "Did you mean 'linux-64'"),
    ({"specs": ["x"], "channels": ["c"], "virtual_packages": "__glibc"}, "must be a list"),
])
def test_bad_requests(bad, needle, tmp_path):
    with pytest.raises(CoexError, match=needle):
        solve_to_lockfile(dict(bad, origin="o"), tmp_path / "l")


def test_cross_platform_lock_for_aarch64(tiny_lock):
    e = lock_entries(tiny_lock, "linux-aarch64")
    subdirs = {p["subdir"] for p in e["packages"]}
    assert subdirs == {"linux-aarch64", "noarch"}


def test_reading_errors(tiny_lock, tmp_path):
    with pytest.raises(CoexError, match=r"has no packages for platform 'osx-arm64' \(it has: "
                                        r"linux-64, linux-aarch64\)"):
        lock_entries(tiny_lock, "osx-arm64")
    plain = tmp_path / "plain.lock"
    plain.write_text("\n".join(tiny_lock.read_text().splitlines()[2:]))
    with pytest.raises(CoexError, match="is not a coex lockfile"):
        lock_entries(plain, "linux-64")
    with pytest.raises(CoexError, match="Cannot read lockfile"):
        read_header(tmp_path / "missing.lock")
    corrupt = tmp_path / "corrupt.lock"
    corrupt.write_text("\n".join(tiny_lock.read_text().splitlines()[:2]) + "\nversion: [\n")
    with pytest.raises(CoexError, match="Cannot parse lockfile .*regenerate it"):
        lock_entries(corrupt, "linux-64")
    future = tmp_path / "future.lock"
    future.write_text(tiny_lock.read_text().replace('"version": 1', '"version": 99', 1))
    with pytest.raises(CoexError, match="header version 99 is not supported"):
        read_header(future)


def test_named_channel_is_recorded_as_its_url():
    from coex.lib.lockfile import _lock_channel_url

    assert _lock_channel_url("conda-forge") == "https://conda.anaconda.org/conda-forge"
    assert _lock_channel_url("file:///srv/c") == "file:///srv/c"


def test_user_pinned_zstd_is_not_doubled(tiny_channel, tmp_path):
    out = tmp_path / "z.lock"
    solve_to_lockfile(make_request(tiny_channel, specs=["prefixprog", "zstd >=1.5"],
                                   platforms=["linux-64"]), out)
    assert read_header(out)["specs"] == ["prefixprog", "zstd >=1.5"]
    assert [p["name"] for p in lock_entries(out, "linux-64")["packages"]].count("zstd") == 1
