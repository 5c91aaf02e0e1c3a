"""Shared fixtures of the build-library tests: a tiny-channel lock (linux-64 + linux-aarch64)
and its linux-64 packages fetched and transcoded, made with coex.lib itself."""
import json
import os

import pytest

from coex.lib.fetch import fetch
from coex.lib.lockfile import lock_entries, solve_to_lockfile
from coex.lib.transcode import transcode, transcoded_filename

PLATFORMS = ["linux-64", "linux-aarch64"]
# what tiny's linux-aarch64 subdir provides (tinypy is noarch and needs python there too)
SPECS = ["python", "tinypy", "prefixprog", "oldstyle"]


def make_request(channel, specs=SPECS, platforms=PLATFORMS, **kw):
    req = {"resolve": "tiny", "specs": list(specs), "channels": [channel.url],
           "platforms": list(platforms), "origin": "tests/lib environment.yml"}
    req.update(kw)
    return req


@pytest.fixture(scope="session")
def tiny_lock(tiny_channel, tmp_path_factory):
    out = tmp_path_factory.mktemp("lock") / "coex.lock"
    solve_to_lockfile(make_request(tiny_channel), out)
    return out


def fetch_all(lock, platform, dest, level=3):
    """[assemble spec package items] for one platform of `lock` (fetch + transcode)."""
    items = []
    for p in lock_entries(lock, platform)["packages"]:
        path = fetch(p["url"], p["sha256"], p["size"], os.path.join(dest, p["filename"]))
        if p["filename"].endswith(".tar.bz2"):
            zst = os.path.join(dest, transcoded_filename(p["filename"]))
            transcode(path, zst, level)
            items.append({"path": zst, "entry": p, "encoding": "tar.zst"})
        else:
            items.append({"path": path, "entry": p, "encoding": "conda"})
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
