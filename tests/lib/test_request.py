"""coex.lib.request: channels, building a solve request, its inputs hash, the freshness check."""
from dataclasses import replace

import pytest

from coex.lib.errors import CoexError
from coex.lib.records import SolveRequest
from coex.lib.request import (canonical_channel, inputs_sha256, local_channel, read_header,
                              solve_request, stale_reason)
from tests.lib.conftest import PLATFORMS, SPECS, make_request


def test_inputs_hash_and_staleness(tiny_channel, tiny_lock):
    req = make_request(tiny_channel)
    header = read_header(tiny_lock)
    assert stale_reason(header, req) is None
    # order and whitespace of specs, order of platforms, resolve name and origin do not matter
    same = make_request(tiny_channel, specs=list(reversed(SPECS)) + ["python"],
                        platforms=list(reversed(PLATFORMS)), resolve="other", origin="elsewhere")
    assert inputs_sha256(same) == header.inputs_sha256
    assert stale_reason(header, make_request(tiny_channel, specs=SPECS + ["zstd"])) == \
        "specs added: zstd"
    assert stale_reason(header, make_request(tiny_channel, platforms=["linux-64"])) == \
        "platforms removed: linux-aarch64"
    assert "channels added: file:///elsewhere" in stale_reason(
        header, replace(req, channels=(tiny_channel.url, "/elsewhere")))
    assert stale_reason(header, replace(req, virtual_packages=("__glibc=2.28",))) == \
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


def test_local_channel_paths(tmp_path):
    (tmp_path / "3rdparty" / "chan").mkdir(parents=True)
    base = str(tmp_path)
    assert local_channel("3rdparty/chan", base) == str(tmp_path / "3rdparty" / "chan")
    assert local_channel("./x/../3rdparty/chan", base) == str(tmp_path / "3rdparty" / "chan")
    assert local_channel("/abs/chan", base) == "/abs/chan"
    assert local_channel("conda-forge", base) == "conda-forge"
    assert local_channel("conda-forge/label/dev", base) == "conda-forge/label/dev"
    assert local_channel("file:///srv/c", base) == "file:///srv/c"
    assert local_channel("https://x.org/c", base) == "https://x.org/c"


def test_a_missing_channel_directory_is_not_taken_for_a_channel_name(tmp_path):
    """`3rdparty/channel` that does not exist: said so (it used to be looked up on anaconda.org
    and failed with a DNS error)."""
    with pytest.raises(CoexError) as e:
        local_channel("3rdparty/channel", str(tmp_path), origin="pants.toml")
    assert str(e.value).startswith(
        "The channel '3rdparty/channel' (from pants.toml) is the directory {}, which does not "
        "exist".format(tmp_path / "3rdparty" / "channel"))
    # hosted names stay names
    assert local_channel("bioconda", str(tmp_path)) == "bioconda"
    assert local_channel("me/label/dev", str(tmp_path)) == "me/label/dev"


def test_inputs_hash_is_stable_across_coex_versions():
    """Lockfiles written by an earlier coex stay fresh: the hash of the same inputs never moves
    (these values were computed by coex before the typed records)."""
    req = SolveRequest.from_json({
        "resolve": "x", "specs": ["numpy  >=1.26", "python 3.11.*"],
        "channels": ["conda-forge", "/srv/chan/"], "platforms": ["linux-64", "osx-arm64"],
        "virtual_packages": ["__glibc=2.28"], "origin": "o"})
    assert inputs_sha256(req) == "f6bb4d90d17e79ab94078f1f0f86eb07d1452a3b2a85777d122f9fffdaaf4606"
    assert inputs_sha256(SolveRequest.from_json({"specs": ["python"], "channels": ["conda-forge"]})) \
        == "614ca1fba420f77a2e93b06753355e7da37e908851f9ee8c41fef4699355caa2"


def test_solve_request_merges_sources():
    req = solve_request("r", [("a.yml", ["numpy", "python"]), ("b's specs", ["python", "attrs"])],
                        ["c1", "c2", "c1"], ["osx-64", "linux-64", "osx-64"], ["__glibc=2.28"])
    assert req.specs == ("attrs", "numpy", "python")
    assert req.channels == ("c1", "c2") and req.platforms == ("linux-64", "osx-64")
    assert req.origin == "a.yml; b's specs" and req.virtual_packages == ("__glibc=2.28",)
    assert req.sources == (("a.yml", ("numpy", "python")), ("b's specs", ("python", "attrs")))
    assert SolveRequest.from_json(req.to_json()) == req
    with pytest.raises(CoexError, match="must be a JSON object"):
        SolveRequest.from_json(["numpy"])


def test_header_round_trip(tiny_lock):
    header = read_header(tiny_lock)
    assert type(header).from_json(header.to_json()) == header
    assert hash(header) == hash(type(header).from_json(header.to_json()))


def test_platforms_solved_for_part_of_the_specs():
    """A platform only some targets build for is solved for their specs: part of the lock's
    inputs (its hash and header), said by the freshness check; a platform whose specs are all of
    them changes nothing (earlier locks stay fresh)."""
    from coex.lib.records import PlatformSpecs
    from coex.lib.request import lock_header, solve_request, stale_reason

    sources = [("a", ["python", "numpy"]), ("b", ["python"])]
    plats = ["linux-64", "linux-aarch64"]
    plain = solve_request("r", sources, ["conda-forge"], plats)
    same = solve_request("r", sources, ["conda-forge"], plats, per_platform=[
        PlatformSpecs("linux-64", ("numpy", "python"), "a, b")])
    assert same.per_platform == () and lock_header(same) == lock_header(plain)
    part = solve_request("r", sources, ["conda-forge"], plats, per_platform=[
        PlatformSpecs("linux-aarch64", ("python",), "the targets that build for it: b")])
    header = lock_header(part)
    assert header.platform_specs == (("linux-aarch64", ("python",)),)
    assert header.specs_of("linux-aarch64") == ("python",)
    assert header.specs_of("linux-64") == ("numpy", "python")
    assert header.inputs_sha256 != lock_header(plain).inputs_sha256
    assert stale_reason(header, part) is None
    assert stale_reason(header, plain) == "specs solved for linux-aarch64: added: numpy"
    assert stale_reason(lock_header(plain), part) == "specs solved for linux-aarch64: removed: numpy"
    from coex.lib.records import LockHeader

    assert LockHeader.from_json(header.to_json()) == header
