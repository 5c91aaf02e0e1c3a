"""Shared fixtures of the build-library tests: a tiny-channel lock (linux-64 + linux-aarch64)
and its linux-64 packages fetched and transcoded, made with coex.lib itself."""
import json
import os

import pytest

from coex.lib.fetch import fetch
from coex.lib.lockfile import lock_entries, solve_to_lockfile
from coex.lib.records import PreparedPackage, SolveRequest
from coex.lib.transcode import transcode

PLATFORMS = ["linux-64", "linux-aarch64"]
# what tiny's linux-aarch64 subdir provides (tinypy is noarch and needs python there too)
SPECS = ["python", "tinypy", "prefixprog", "oldstyle"]


def make_request(channel, specs=SPECS, platforms=PLATFORMS, **kw):
    req = {"resolve": "tiny", "specs": list(specs), "channels": [channel.url],
           "platforms": list(platforms), "origin": "tests/lib environment.yml"}
    req.update(kw)
    return SolveRequest.from_json(req)


@pytest.fixture(scope="session")
def tiny_lock(tiny_channel, tmp_path_factory):
    out = tmp_path_factory.mktemp("lock") / "coex.lock"
    solve_to_lockfile(make_request(tiny_channel), out)
    return out


def fetch_all(lock, platform, dest, level=3):
    """[PreparedPackage] for one platform of `lock` (fetch + transcode)."""
    items = []
    for p in lock_entries(lock, platform).packages:
        path = fetch(p.url, p.sha256, p.size, os.path.join(dest, p.fetch_path))
        if p.encoding == "tar.zst":
            path = transcode(path, os.path.join(dest, p.prepared_path(level)), level)
        items.append(PreparedPackage(path, p, p.encoding))
    return items


@pytest.fixture(scope="session")
def tiny_items(tiny_lock, tmp_path_factory):
    return fetch_all(tiny_lock, "linux-64", str(tmp_path_factory.mktemp("pkgs")))


@pytest.fixture(scope="session")
def tiny_items_aarch64(tiny_lock, tmp_path_factory):
    return fetch_all(tiny_lock, "linux-aarch64", str(tmp_path_factory.mktemp("pkgs-aarch64")))


def write_json(path, obj):
    with open(path, "w") as f:
        json.dump(obj, f)
    return str(path)
