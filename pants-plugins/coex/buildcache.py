"""The build cache of the `coex` command line, and scripts that carry their environment.

Layout under the root (`coex.entry.build_cache_root`: `--cache-dir`, else
`${XDG_CACHE_HOME:-~/.cache}/coex-build`):

    pkgs/<sha256>/<filename>            fetched packages, content addressed (`coex create` too)
    transcoded/<sha256>-zstd<N>/<stem>.tar.zst    `.tar.bz2` packages, transcoded
    wheels/<sha256>/<filename>          fetched PyPI wheels, content addressed
    scripts/<key>.coex                  a script's archive; key = coex.entry.script_key (coex
                                        version, host, script name + bytes, the lock beside it,
                                        --channels): what the warm path can compute
    scripts/<key>.used                  touched by every run (warm ones too): its last use
    scripts/<key>.json                  what it was built from (script, lock), for `coex gc`
    scripts/locks/<inputs>.lock         the lock of a script header, by the inputs hash of its
                                        normalized specs, channels and platforms (what a
                                        lockfile's `# coex-lockfile:` header records)
    tmp/                                flocks and work files (debris once no build runs)
    gc.lock                             builds hold it shared, `coex gc` exclusive

`coex run SCRIPT` cold: parse the header (`coex.lib.script`), find or solve its lock (the lock
beside the script when there is one, else the cached lock of the header), find or build the
archive, exec it (`coex.entry.exec_archive`). Concurrent first runs of one script solve and
build once: each step is double-checked under an flock of its own key.

`coex gc` removes what has not been used for a while, as the runtime's `gc` does in its cache:
script archives by their last use (never one a running process was started from: its
`COEX_ARCHIVE`, which the archive's preamble exports, is in `/proc/<pid>/environ`), locks no kept
archive was built from, and packages and wheels by their last use; builds hold `gc.lock`
shared, so gc waits for them.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import sys
import tempfile
import time
from typing import Optional, Sequence

from coex.entry import (
    archive_path,
    build_cache_root,
    key_channel,
    lock_beside,
    script_key,
    touch_used,
)
from coex.lib.errors import CoexError
from coex.lib.records import (
    ChannelLocations,
    LockedPackage,
    LockedWheel,
    PreparedPackage,
    PreparedWheel,
    SolveRequest,
)
from coex.lib.script import ScriptHeader
from coex_runtime.atomic import Lock


class BuildCache:
    def __init__(self, root: str):
        self.root = root
        self.pkgs = os.path.join(root, "pkgs")
        self.transcoded = os.path.join(root, "transcoded")
        self.wheels = os.path.join(root, "wheels")
        self.scripts = os.path.join(root, "scripts")
        self.locks = os.path.join(self.scripts, "locks")
        self.tmp = os.path.join(root, "tmp")
        self.gc_lock = os.path.join(root, "gc.lock")

    @classmethod
    def of(cls, cache_dir: Optional[str] = None) -> BuildCache:
        return cls(build_cache_root(cache_dir))

    def building(self) -> Lock:
        """Held (shared) while a build uses the cache: `coex gc` waits for it."""
        return Lock(self.gc_lock, shared=True)

    def flock(self, what: str) -> Lock:
        """An flock serializing the makers of one thing (named `what`)."""
        return Lock(os.path.join(self.tmp, what + ".flock"))


def _touch(path: str) -> None:
    try:
        os.utime(path)
    except OSError:
        pass


def fetch_cached(locked, cache: str, locations: ChannelLocations = ChannelLocations()) -> str:
    """The file of a locked package or wheel (url, sha256, size, filename, fetch_path) under
    `cache`: reused when it is there and intact (its mtime touched), else fetched."""
    from coex.lib.channels import locate
    from coex.lib.fetch import fetch
    from coex_runtime.format import sha256_file

    dest = os.path.join(cache, locked.fetch_path)
    if (os.path.isfile(dest) and os.path.getsize(dest) == locked.size
            and sha256_file(dest) == locked.sha256):
        _touch(dest)
    else:
        fetch(locate(locked.url, locations), locked.sha256, locked.size, dest,
              name=locked.filename)
    return dest


def prepare_wheels(wheels: Sequence[LockedWheel], cache: str,
                   locations: ChannelLocations = ChannelLocations()) -> list[PreparedWheel]:
    """Fetch every wheel (content-addressed under `cache`), as the Pants rules do."""
    return [PreparedWheel(fetch_cached(w, cache, locations), w) for w in wheels]


def prepare_packages(packages: Sequence[LockedPackage], cache: str, level: int,
                     locations: ChannelLocations = ChannelLocations()) -> list[PreparedPackage]:
    """Fetch (content-addressed under `cache`) and transcode every package, as the Pants rules
    do in the engine's store; return the PreparedPackages. A reused file's mtime is its last
    use (for `coex gc`)."""
    from coex.lib.transcode import transcode

    items = []
    for p in packages:
        dest = fetch_cached(p, cache, locations)
        prepared = os.path.join(cache, p.prepared_path(level))
        if p.encoding == "tar.zst":
            if os.path.isfile(prepared):
                _touch(prepared)
            else:
                transcode(dest, prepared, level)
        items.append(PreparedPackage(prepared, p, p.encoding))
    return items


# ------------------------------------------------------------------------------------------------
# scripts
# ------------------------------------------------------------------------------------------------

def _say(quiet: bool, text: str) -> None:
    if not quiet:
        sys.stderr.write("coex: {}\n".format(text))
        sys.stderr.flush()


def script_request(header: ScriptHeader, script: str, channels: Sequence[str],
                   platforms: Sequence[str], beside: bool) -> SolveRequest:
    """The solve request of a script's header: `--channel`s (relative to the current directory)
    before the header's (relative to the script). A lock kept beside the script records local
    channels under the script's directory relative to it (`coex://buildroot/...`), so script and
    lock can move together."""
    from coex.lib.channels import check_locations
    from coex.lib.request import local_channel, solve_request

    script_dir = os.path.dirname(os.path.abspath(script))
    chans = [local_channel(c, os.getcwd(), origin="--channel") for c in channels] + [
        local_channel(c, script_dir, origin=header.name) for c in header.channels]
    if not chans:
        raise CoexError(
            "{} names no channels and none was given: add `channels = [\"conda-forge\"]` to the "
            "`# /// conda` block (`# channels:` to a `# conda execute` header), or pass "
            "--channel URL.".format(header.name))
    locations = check_locations(script_dir, ()) if beside else ChannelLocations()
    return solve_request(os.path.basename(script), [(header.name, header.specs)], chans,
                         platforms, None, origin=header.name, locations=locations,
                         pypi_sources=[(header.name, header.pypi)])


def script_platforms(header: ScriptHeader, platform: str) -> tuple[str, ...]:
    """What a script's lock covers: the header's `platforms` (which must hold `platform`), else
    `platform` alone."""
    from coex.lib.platforms import check_platform

    if header.platforms is None:
        return (platform,)
    for p in header.platforms:
        check_platform(p, origin=header.name)
    if platform not in header.platforms:
        raise CoexError(
            "{} lists the platforms {}, not {} (which this archive is for): add it to "
            "`platforms`.".format(header.name, ", ".join(header.platforms), platform))
    return tuple(header.platforms)


def _solve(req: SolveRequest, out: str, header: ScriptHeader, script: str, quiet: bool) -> None:
    from coex.lib.lockfile import solve_to_lockfile
    from coex.lib.script import check_header_specs

    check_header_specs(header)  # (a bad spec named with its line)
    _say(quiet, "solving the environment of {} ({}; {})".format(
        script, ", ".join(header.specs + header.pypi), ", ".join(req.platforms)))
    solve_to_lockfile(req, out)


def ensure_script_lock(cache: BuildCache, header: ScriptHeader, script: str,
                       channels: Sequence[str], platform: str, write_beside: bool,
                       quiet: bool) -> tuple[str, Optional[bytes], ChannelLocations]:
    """(the lock to build from, its bytes when it is the lock beside the script, where its
    channels are). The lock beside the script is used when it exists (it must be fresh);
    `write_beside` (`--lock`) writes it when it is missing or stale; otherwise the header's
    cached lock, solved once."""
    from coex.lib.request import lock_header, read_header, stale_reason

    platforms = script_platforms(header, platform)
    beside = lock_beside(script)
    if write_beside or os.path.exists(beside):
        req = script_request(header, script, channels, platforms, beside=True)
        if os.path.exists(beside):
            reason = stale_reason(read_header(beside), req)
            if reason is None:
                with open(beside, "rb") as f:
                    return beside, f.read(), req.locations
            if not write_beside:
                raise CoexError(
                    "The lock {} is stale ({}): update it with `coex run --lock {}` (or `coex "
                    "build --lock`), or delete it.".format(beside, reason, script))
        with cache.flock("lock-" + hashlib.sha256(
                os.path.abspath(beside).encode("utf-8", "surrogateescape")).hexdigest()[:32]):
            _solve(req, beside, header, script, quiet)
        _say(quiet, "wrote {}".format(beside))
        with open(beside, "rb") as f:
            return beside, f.read(), req.locations
    req = script_request(header, script, channels, platforms, beside=False)
    path = os.path.join(cache.locks, lock_header(req).inputs_sha256 + ".lock")
    if not os.path.isfile(path):
        with cache.flock("lock-" + os.path.basename(path)[:-len(".lock")]):
            if not os.path.isfile(path):
                _solve(req, path, header, script, quiet)
    _touch(path)
    return path, None, req.locations


def _stage_script(data: bytes, script: str, app_dir: str) -> str:
    """The script's bytes (those its key was computed from) as the app layer's one file."""
    name = os.path.basename(script)
    os.makedirs(app_dir)
    path = os.path.join(app_dir, name)
    with open(path, "wb") as f:
        f.write(data)
    os.chmod(path, 0o755 if os.access(script, os.X_OK) else 0o644)
    return name


def build_script_archive(cache: BuildCache, script: str, data: bytes, header: ScriptHeader,
                         lock: str, lock_kept: bool, locations: ChannelLocations, platform: str,
                         out: str, level: int, builder: str) -> int:
    """Write the archive of a script (its whole locked environment for `platform`, the script
    as the app layer, run by `coex.lib.script.script_command`) to `out`; return its package
    count."""
    from coex.lib.assemble import EnvIndex, assemble
    from coex.lib.fsutil import atomic_output
    from coex.lib.lockfile import lock_entries
    from coex.lib.records import AssembleSpec, BuildRecord, EntryPoints, entry_point_name
    from coex.lib.script import script_command
    from coex_runtime.format import sha256_file

    entries = lock_entries(lock, platform)
    items = prepare_packages(entries.packages, cache.root, level, locations)
    wheels = prepare_wheels(entries.wheels, cache.root, locations)
    index = EnvIndex(items, wheels)  # (the wheels' console scripts are programs too)
    tmp = tempfile.mkdtemp(prefix="coex-script-", dir=_made(cache.tmp))
    try:
        name = _stage_script(data, script, os.path.join(tmp, "app"))
        command = script_command(header, name, index.programs)
        origin = "{} {}".format(builder, script)
        eps = EntryPoints.of([(entry_point_name(os.path.splitext(name)[0]), command)], None,
                             origin)
        build = BuildRecord(os.path.basename(script), sha256_file(lock), origin, builder,
                            os.path.abspath(lock) if lock_kept else None)
        spec = AssembleSpec(platform, tuple(items), eps, build, os.path.join(tmp, "app"), (),
                            header.specs, wheels=tuple(wheels))
        with atomic_output(out, 0o755) as part:
            assemble(spec, part, env_index=index)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return len(items)


def _made(path: str) -> str:
    os.makedirs(path, exist_ok=True)
    return path


def ensure_script_archive(script: str, channels: Sequence[str] = (), write_lock: bool = False,
                          cache_dir: Optional[str] = None, platform: Optional[str] = None,
                          level: Optional[int] = None, quiet: bool = False,
                          builder: str = "coex run") -> str:
    """The path of the script's archive in the build cache, built if needed (with its lock)."""
    from coex.lib.script import read_script
    from coex.lib.transcode import DEFAULT_ZSTD_LEVEL
    from coex_runtime.vpkgs import host_subdir

    host = host_subdir()
    platform = platform or host
    cache = BuildCache.of(cache_dir)
    data, header = read_script(script)
    with cache.building():
        lock, lock_bytes, locations = ensure_script_lock(
            cache, header, script, channels, platform, write_lock, quiet)
        key = script_key(os.path.basename(script), data, lock_bytes,
                         [key_channel(c) for c in channels],
                         host=None if platform == host else platform)
        out = archive_path(cache.root, key)
        if not os.path.isfile(out):
            with cache.flock("archive-" + key):
                if not os.path.isfile(out):
                    _say(quiet, "building the archive of {} ({})".format(script, platform))
                    n = build_script_archive(
                        cache, script, data, header, lock, lock_bytes is not None, locations,
                        platform, out, DEFAULT_ZSTD_LEVEL if level is None else level, builder)
                    _write_json(out[: -len(".coex")] + ".json", {
                        "script": os.path.abspath(script), "lock": os.path.abspath(lock),
                        "platform": platform, "packages": n, "built": int(time.time())})
        touch_used(out)  # (while gc waits: running an old archive is a use)
    return out


def _write_json(path: str, obj) -> None:
    from coex.lib.fsutil import atomic_output

    with atomic_output(path) as tmp, open(tmp, "w", encoding="utf-8") as f:
        json.dump(obj, f, indent=1, sort_keys=True)
        f.write("\n")


# ------------------------------------------------------------------------------------------------
# gc
# ------------------------------------------------------------------------------------------------

def archives_in_use() -> set[str]:
    """The real paths of the archives running processes were started from: the `COEX_ARCHIVE`
    each archive's preamble exports (children inherit it), in every `/proc/<pid>/environ` this
    user may read. Empty where there is no /proc."""
    out = set()
    try:
        pids = [n for n in os.listdir("/proc") if n.isdigit()]
    except OSError:
        return out
    for pid in pids:
        try:
            with open("/proc/{}/environ".format(pid), "rb") as f:
                data = f.read()
        except OSError:
            continue
        for item in data.split(b"\0"):
            if item.startswith(b"COEX_ARCHIVE="):
                out.add(os.path.realpath(os.fsdecode(item[len(b"COEX_ARCHIVE="):])))
    return out


def _mtime(path: str) -> float:
    try:
        return os.stat(path).st_mtime
    except OSError:
        return 0.0


def _remove(path: str) -> int:
    """Remove a file or directory tree; return the bytes it held."""
    from coex_runtime.tools import _size  # (what the runtime's gc counts)

    if os.path.isdir(path) and not os.path.islink(path):
        size = _size(path)
        shutil.rmtree(path, ignore_errors=True)
        return size
    size = 0
    try:
        size = os.lstat(path).st_size
        os.unlink(path)
    except FileNotFoundError:
        pass
    return size


def _listdir(path: str) -> list[str]:
    try:
        return sorted(os.listdir(path))
    except FileNotFoundError:
        return []


def gc(cache: BuildCache, older_than: float, now: Optional[float] = None) -> dict:
    """Remove what the build cache holds unused for `older_than` seconds (see the module
    docstring); return {what: count removed} and `freed` bytes."""
    cutoff = (time.time() if now is None else now) - older_than
    removed = {"script archives": 0, "script locks": 0, "packages": 0}
    freed = 0
    if not os.path.isdir(cache.root):
        return dict(removed, freed=0, kept=0)
    with Lock(cache.gc_lock):
        running = archives_in_use()
        kept_locks, kept = set(), 0
        for n in _listdir(cache.scripts):
            if not n.endswith(".coex"):
                continue
            path = os.path.join(cache.scripts, n)
            base = path[: -len(".coex")]
            used = max(_mtime(base + ".used"), _mtime(path))
            if used >= cutoff or os.path.realpath(path) in running:
                kept += 1
                try:
                    with open(base + ".json", "r", encoding="utf-8") as f:
                        kept_locks.add(os.path.realpath(json.load(f)["lock"]))
                except (OSError, ValueError, KeyError, TypeError):
                    pass
                continue
            freed += _remove(path)  # the archive first: from now on runs build it again
            for extra in (base + ".used", base + ".json"):
                _remove(extra)
            removed["script archives"] += 1
        for n in _listdir(cache.scripts):  # what removed archives left
            base, ext = os.path.splitext(n)
            if ext in (".used", ".json") and not os.path.exists(
                    os.path.join(cache.scripts, base + ".coex")):
                _remove(os.path.join(cache.scripts, n))
        for n in _listdir(cache.locks):
            path = os.path.join(cache.locks, n)
            if os.path.realpath(path) not in kept_locks and _mtime(path) < cutoff:
                freed += _remove(path)
                removed["script locks"] += 1
        for top in (cache.pkgs, cache.transcoded, cache.wheels):  # (a wheel counts as a package)
            for n in _listdir(top):
                d = os.path.join(top, n)
                newest = max([_mtime(os.path.join(d, f)) for f in _listdir(d)] or [0.0])
                if newest < cutoff:
                    freed += _remove(d)
                    removed["packages"] += 1
        for n in _listdir(cache.tmp):  # no build runs now: all of it is debris
            freed += _remove(os.path.join(cache.tmp, n))
    return dict(removed, freed=freed, kept=kept)
