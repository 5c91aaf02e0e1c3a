"""coex.lib.records: every record round-trips through JSON and is hashable; a locked package's
names on the way into an archive; entry points."""
import json
from dataclasses import replace

import pytest

from coex.lib.errors import CoexError
from coex.lib.lockfile import lock_entries
from coex.lib.records import (AssembleSpec, BuildRecord, EntryPoints, LockedPackage,
                              LockedPlatform, entry_point_name)


def test_records_round_trip_through_json(tiny_lock, tiny_items):
    platform = lock_entries(tiny_lock, "linux-64")
    spec = AssembleSpec(
        "linux-64", tuple(tiny_items), EntryPoints.of({"a": "python -m a", "b": "b"}, "b", "t"),
        BuildRecord("tiny", "ab" * 32, "t:t", "pants coex_binary", "tiny.lock"),
        "app", (("K", "V"),), ("python",))
    for record in (platform, spec, *platform.packages):
        again = type(record).from_json(json.loads(json.dumps(record.to_json())))
        assert again == record and hash(again) == hash(record)
    # a COEX-INFO package record (the lock's fields and more) reads as the locked package
    pkg = platform.packages[0]
    assert LockedPackage.from_json(dict(pkg.to_json(), member="pkgs/x", stored_size=1)) == pkg
    assert LockedPlatform.from_json(platform.to_json()).locked == len(platform.packages)
    assert BuildRecord.from_json({"target": "t"}) == BuildRecord(target="t")
    # the JSON shapes other programs read: a lock header line, a COEX-INFO package record
    assert set(platform.header.to_json()["virtual_packages"]) == {"linux-64", "linux-aarch64"}
    assert isinstance(pkg.to_json()["depends"], list) and pkg.to_json()["md5"] == pkg.md5
    assert spec.to_json()["env"] == {"K": "V"}
    assert spec.to_json()["entry_points"] == {"commands": {"a": "python -m a", "b": "b"},
                                              "default": "b"}


def test_locked_package_names(tiny_lock):
    by_encoding = {p.encoding: p for p in lock_entries(tiny_lock, "linux-64").packages}
    conda, bz2 = by_encoding["conda"], by_encoding["tar.zst"]
    assert conda.fetch_path == "pkgs/{}/{}".format(conda.sha256, conda.filename)
    assert conda.prepared_path(19) == conda.fetch_path  # stored as it is
    assert bz2.filename.endswith(".tar.bz2")
    assert bz2.prepared_path(3) == "transcoded/{}-zstd3/{}.tar.zst".format(
        bz2.sha256, bz2.filename[:-len(".tar.bz2")])
    with pytest.raises(CoexError, match="neither `.conda` nor `.tar.bz2`"):
        replace(bz2, filename="x-1-0.whl").encoding


def test_entry_points():
    eps = EntryPoints.of([("one", "python -m one")], None, "t")
    assert eps.default == "one" and eps.commands == (("one", "python -m one"),)
    assert EntryPoints.of({"a": "x", "b": "y"}, "b", "t").default == "b"
    for commands, default, needle in [
        ({}, None, "t: no entry point"),
        ({"a": "x", "b": "y"}, None, "t has 2 entry points but no default entry point: set it "
                                     "to one of a, b"),
        ({"a": "x"}, "nope", "default entry point 'nope' is not one of its entry points (a)"),
        ({"bad name": "x"}, None, "name 'bad name' is not valid"),
        ([("a", "x"), ("a", "y")], "a", "two entry points are named 'a'"),
    ]:
        with pytest.raises(CoexError) as e:
            EntryPoints.of(commands, default, "t")
        assert needle in str(e.value)
    with pytest.raises(CoexError, match="no `default_entry_point`"):
        EntryPoints.of({"a": "x", "b": "y"}, None, "t", "`default_entry_point`")


def test_entry_point_names_from_words():
    assert entry_point_name("my-app.v2") == "my-app.v2"
    assert entry_point_name("my app") == "my_app" and entry_point_name("a\n") == "a_"
    assert entry_point_name(".hidden") == "main" and entry_point_name("") == "main"
