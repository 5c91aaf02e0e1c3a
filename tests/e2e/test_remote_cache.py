"""Monorepo CI at scale: two checkouts of one repository, at different paths, each with its own
empty Pants local store, sharing Pants' REAPI remote cache (a real BuildGrid on loopback). The
conda channel is served over HTTP and named in `[coex].channel_locations`, so the lockfile holds
the name, not the server.

1. checkout A: `generate-lockfiles`; `package ::` writing the remote cache;
2. checkout B, no remote cache: `generate-lockfiles` writes A's lockfile byte for byte (nothing
   in it depends on the checkout's path or the server's address);
3. B reading the remote cache: `package ::` spawns no process at all (no fetch, no transcode,
   no assembly; Pants' own counters and process log say so), the channel serves nothing, and the
   archives are byte-identical to A's;
4. B again with the channel server down: the same, from the cache;
5. a lockfile change in B (one more package) rebuilds only what it touches: the new package's
   fetch and transcode, the lock's `entries` and the assemblies.

Seven Pants runs (~7 s each).
"""
from __future__ import annotations

import shutil
from collections import Counter
from pathlib import Path

import pytest

from tests.e2e.buildgrid import pants_flags
from tests.e2e.buildroot import Pants, copy_backend, counters, spawned
from tests.e2e.channel_server import ChannelServer

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

LOCK = "3rdparty/conda/default.lock"
PANTS_TOML = """\
[GLOBAL]
pants_version = "2.17.1"
pythonpath = ["%(buildroot)s/pants-plugins", "%(buildroot)s"]
backend_packages = ["coex"]

[coex]
resolves = {{ default = "{lock}" }}
default_resolve = "default"
channels = ["tiny"]
# where the channel named `tiny` is (on every CI machine, in this test: a local HTTP server)
channel_locations = {{ tiny = "{url}" }}
"""
APP_BUILD = 'coex_binary(name="app", conda_dependencies=["prefixprog"], entry_point="prefixprog")\n'
TOOL_BUILD = """\
resources(name="sources", sources=["*.py"])
coex_binary(name="tool", conda_dependencies={deps}, entry_point="tinypy",
            dependencies=[":sources"])
"""


def write_monorepo(root: Path, channel_url: str) -> Path:
    copy_backend(root)
    (root / "pants.toml").write_text(PANTS_TOML.format(lock=LOCK, url=channel_url))
    (root / "BUILD").write_text("")
    (root / ".gitignore").write_text("/dist/\n/.pants.d/\n/.pids/\n")
    (root / "src" / "app").mkdir(parents=True)
    (root / "src" / "app" / "BUILD").write_text(APP_BUILD)
    (root / "src" / "tool").mkdir(parents=True)
    (root / "src" / "tool" / "BUILD").write_text(TOOL_BUILD.format(deps=["tinypy"]))
    (root / "src" / "tool" / "hello.py").write_text("print('hello')\n")
    return root


def archives(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root / "dist").as_posix(): p.read_bytes()
            for p in sorted((root / "dist").rglob("*.coex"))}


def package_all(root: Path, state: Path, *flags: str):
    """`package ::` with an empty local store: (steps spawned, counters, archives)."""
    shutil.rmtree(root / "dist", ignore_errors=True)
    run = Pants(root, state)("package", "::", "--stats-log", *flags, debug=True)
    return spawned(run.stderr), counters(run.stderr), archives(root)


def test_second_checkout_builds_from_the_remote_cache(tmp_path, tiny_channel, buildgrid):
    server = ChannelServer(tiny_channel.path).start()
    try:
        # 1. checkout A writes the remote cache
        a = write_monorepo(tmp_path / "ci-a" / "repo", server.url)
        Pants(a, tmp_path / "state-a0")("generate-lockfiles")
        lock = (a / LOCK).read_text()
        assert "coex://tiny/linux-64/libtiny-1.0-h0_0.tar.bz2" in lock
        assert server.url not in lock and str(tmp_path) not in lock
        steps, count, built = package_all(a, tmp_path / "state-a1",
                                          *pants_flags(buildgrid.address, write=True))
        assert Counter(s for s, _ in steps) == {
            "fetch": 5, "transcode": 1, "entries": 2, "assemble": 2}, steps
        assert count["remote_cache_write_successes"] == len(steps), count
        assert sorted(built) == ["src.app/app.coex", "src.tool/tool.coex"]

        # 2. checkout B, elsewhere, no remote cache: the same lockfile
        b = tmp_path / "ci-b" / "workspace" / "repo"
        shutil.copytree(a, b, ignore=shutil.ignore_patterns("dist", ".pants.d", ".pids"))
        Pants(b, tmp_path / "state-b0")("generate-lockfiles")
        assert (b / LOCK).read_text() == lock

        # 3. B reads the remote cache: no process runs, nothing is fetched, same bytes
        requests = len(server.served)
        read = pants_flags(buildgrid.address, read=True)
        steps, count, again = package_all(b, tmp_path / "state-b1", *read)
        assert steps == [] and count.get("local_execution_requests", 0) == 0, (steps, count)
        assert count["remote_cache_requests_cached"] == 10, count
        assert count.get("remote_cache_requests_uncached", 0) == 0, count
        assert len(server.served) == requests  # the channel served nothing
        assert again == built

        # 4. the channel is down: B still builds, from the cache
        server.stop()
        steps, count, again = package_all(b, tmp_path / "state-b2", *read)
        assert steps == [] and count["remote_cache_requests_cached"] == 10, (steps, count)
        assert again == built
        server.start()  # the same port

        # 5. one more package in B's lock: only its fetch and transcode run, plus what reads the
        # lock (entries) and the archives (assembly); every other package comes from the cache
        (b / "src" / "tool" / "BUILD").write_text(TOOL_BUILD.format(deps=["tinypy", "oldstyle"]))
        Pants(b, tmp_path / "state-b3")("generate-lockfiles")
        steps, count, changed = package_all(b, tmp_path / "state-b4", *read)
        per_package = sorted(d for s, d in steps if s in ("fetch", "transcode"))
        assert per_package == ["Fetch oldstyle-1.0-h0_0.tar.bz2",
                               "Transcode oldstyle-1.0-h0_0.tar.bz2 to .tar.zst"], steps
        assert Counter(s for s, _ in steps) == {
            "fetch": 1, "transcode": 1, "entries": 2, "assemble": 2}, steps
        assert count["remote_cache_requests_cached"] == 6, count  # 5 fetches + 1 transcode
        assert changed["src.tool/tool.coex"] != built["src.tool/tool.coex"]
    finally:
        server.stop()
