"""coex.lib.lockfile: solving with py-rattler, the lock file it writes, reading a platform back."""
import json
import re

import pytest
from rattler import LockFile

from coex.lib.errors import CoexError
from coex.lib.lockfile import environment_subset, lock_entries, solve_to_lockfile
from coex.lib.records import SolveRequest
from coex.lib.request import HEADER_PREFIX, inputs_sha256, read_header
from tests.factory import tiny
from tests.lib.conftest import PLATFORMS, SPECS, make_request


def test_header_and_rattler_round_trip(tiny_channel, tiny_lock):
    text = tiny_lock.read_text()
    first, second = text.splitlines()[:2]
    assert first.startswith(HEADER_PREFIX)
    assert "zstd" in second and "decoder" in second
    header = read_header(tiny_lock)
    assert header.to_json() == json.loads(first[len(HEADER_PREFIX):])
    assert header.version == 1 and header.resolve == "tiny"
    assert list(header.platforms) == PLATFORMS
    assert header.channels == (tiny_channel.url,)
    assert list(header.specs) == sorted(SPECS)
    assert header.inputs_sha256 == inputs_sha256(make_request(tiny_channel))
    vpkgs = dict(header.virtual_packages)
    assert "__archspec=1=aarch64" in vpkgs["linux-aarch64"]
    # the body is rattler's own lock format: py-rattler reads the file, header included
    env = LockFile.from_path(tiny_lock).default_environment()
    plats = {p.name: p for p in env.platforms()}
    assert sorted(plats) == PLATFORMS
    assert plats["linux-64"].virtual_packages == list(vpkgs["linux-64"])
    for p in plats.values():
        names = {r.name.normalized for r in env.conda_repodata_records_for_platform(p)}
        assert {"python", "tinypy", "prefixprog", "oldstyle", "libtiny"} <= names


def test_zstd_pinned_per_platform_without_being_asked(tiny_channel, tiny_lock):
    assert "zstd" not in SPECS
    for plat in PLATFORMS:
        e = lock_entries(tiny_lock, plat)
        zstd = [p for p in e.packages if p.name == "zstd"]
        assert len(zstd) == 1 and zstd[0].subdir == plat
        assert zstd[0].url == tiny_channel.file("zstd", subdir=plat).as_uri()


def test_entries_topological_with_virtual_packages(tiny_lock):
    e = lock_entries(tiny_lock, "linux-64")
    names = [p.name for p in e.packages]
    assert e.platform == "linux-64" and e.header == read_header(tiny_lock)
    assert e.locked == len(e.packages)
    for i, p in enumerate(e.packages):
        for dep in p.depends:
            dep_name = dep.split()[0]
            if not dep_name.startswith("__"):
                assert names.index(dep_name) < i, (p.name, dep_name, names)
    assert names.index("libtiny") < names.index("prefixprog")
    assert names.index("python") < names.index("tinypy")
    assert "__glibc >=2.17" in e.virtual_packages
    assert all(v.startswith("__") for v in e.virtual_packages)
    tinypy = e.packages[names.index("tinypy")]
    assert tinypy.noarch == "python" and tinypy.subdir == "noarch"
    libtiny = e.packages[names.index("libtiny")]
    assert libtiny.version == "1.0" and libtiny.filename.endswith(".tar.bz2")
    keys = {"name", "version", "build", "build_number", "subdir", "filename", "url", "sha256",
            "md5", "size", "depends", "constrains", "channel", "noarch", "timestamp", "license"}
    for p in e.packages:
        assert set(p.to_json()) == keys
        assert len(p.sha256) == 64 and len(p.md5) == 32 and p.size > 0


def test_solving_is_deterministic(tiny_channel, tiny_lock, tmp_path):
    again = tmp_path / "again.lock"
    solve_to_lockfile(make_request(tiny_channel), again)
    assert again.read_bytes() == tiny_lock.read_bytes()


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
        solve_to_lockfile(SolveRequest.from_json({"specs": ["python"], "channels": [str(chan)]}),
                          tmp_path / "l")
    assert "coex always adds `zstd`" in str(e.value)


@pytest.mark.parametrize("bad, needle", [
    ({"specs": [], "channels": ["conda-forge"]}, "no conda specs"),
    ({"specs": ["x"], "channels": []}, "no channels"),
    ({"specs": ["x"], "channels": ["c"], "platforms": ["linux64"]}, "Did you mean 'linux-64'"),
    ({"specs": ["x"], "channels": ["c"], "virtual_packages": "__glibc"}, "must be a list"),
])
def test_bad_requests(bad, needle, tmp_path):
    with pytest.raises(CoexError, match=needle):
        solve_to_lockfile(SolveRequest.from_json(dict(bad, origin="o")), tmp_path / "l")


def test_cross_platform_lock_for_aarch64(tiny_lock):
    e = lock_entries(tiny_lock, "linux-aarch64")
    subdirs = {p.subdir for p in e.packages}
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
    assert read_header(out).specs == ("prefixprog", "zstd >=1.5")
    assert [p.name for p in lock_entries(out, "linux-64").packages].count("zstd") == 1


def _sha_field(text, package):
    m = re.search(r"conda: \S*{}-\S+\n(?:  .*\n)*?  sha256: ([0-9a-f]{{64}})".format(
        re.escape(package)), text)
    assert m, text
    return m.group(1)


def test_hand_edited_lockfile_names_the_package(tiny_channel, tmp_path):
    lock = tmp_path / "coex.lock"
    solve_to_lockfile(make_request(tiny_channel, platforms=["linux-64"]), lock)
    text = lock.read_text()
    sha = _sha_field(text, "prefixprog")
    lock.write_text(text.replace(sha, sha[:-3]))  # a truncated digest
    with pytest.raises(CoexError) as e:
        lock_entries(lock, "linux-64")
    msg = str(e.value)
    assert "prefixprog-1.0-h0_0.conda" in msg and "sha256" in msg and sha[:-3] in msg
    assert "regenerate" in msg


def test_lockfile_with_merge_conflict_markers(tiny_channel, tmp_path):
    lock = tmp_path / "coex.lock"
    solve_to_lockfile(make_request(tiny_channel, platforms=["linux-64"]), lock)
    lines = lock.read_text().splitlines(True)
    lock.write_text("".join(["<<<<<<< HEAD\n"] + lines + ["=======\n"] + lines + [">>>>>>> b\n"]))
    for read in (lambda: read_header(lock), lambda: lock_entries(lock, "linux-64")):
        with pytest.raises(CoexError) as e:
            read()
        assert "merge conflict markers" in str(e.value) and "regenerate" in str(e.value)


def test_entries_of_root_specs_are_their_closure(tiny_lock):
    """A binary carries the part of its resolve its own specs need (and `zstd`), in install order;
    `locked` still counts the whole platform."""
    whole = lock_entries(tiny_lock, "linux-64")
    part = lock_entries(tiny_lock, "linux-64", ["prefixprog >=1"])
    names = [p.name for p in part.packages]
    assert {"prefixprog", "libtiny", "zstd"} <= set(names) and "oldstyle" not in names
    assert names == [p.name for p in whole.packages if p.name in names]
    assert part.locked == whole.locked > len(part.packages)
    assert environment_subset(whole.packages, ()) == whole.packages


@pytest.mark.slow
def test_entries_carry_repodata_timestamps(realistic_channel, tmp_path):
    solve_to_lockfile(SolveRequest.from_json({"specs": ["python 3.11.*", "numpy"],
                                              "channels": [str(realistic_channel)],
                                              "origin": "t"}), tmp_path / "l.lock")
    repodata = json.loads((realistic_channel / "linux-64" / "repodata.json").read_text())
    recs = dict(repodata.get("packages", {}), **repodata.get("packages.conda", {}))
    for p in lock_entries(tmp_path / "l.lock", "linux-64").packages:
        want = recs[p.filename].get("timestamp")
        assert p.timestamp == want and p.sha256 == recs[p.filename]["sha256"]
