"""Solving, coex lock files, and reading them back.

A coex lock file is the rattler lock format (the pixi.lock YAML that py-rattler writes: every
package with url, sha256, md5, size, subdir, depends, channel), preceded by YAML comment lines:

    # coex-lockfile: {"channels": [...], "inputs_sha256": "...", "platforms": [...], "resolve": ...,
    #                 "specs": [...], "version": 1, "virtual_packages": {"linux-64": [...]}}   (one line)
    # This lock also pins one `zstd` package per platform: every archive carries its libzstd for
    # the runtime's decoder.

The request (`REQ`) is a dict:
    {"resolve": "default", "specs": ["numpy >=1.26", ...], "channels": ["conda-forge" | URL, ...],
     "platforms": ["linux-64", ...], "virtual_packages": ["__glibc=2.17", ...] (optional),
     "origin": "where the specs came from, for messages"}

Repodata is read into a fresh temporary cache per solve (so a solve always sees the channels as
they are now), or into $COEX_REPODATA_CACHE when set (worth it for big https channels: rattler
revalidates cached repodata with the server).

Pure helpers (no py-rattler; the Pants rules import them): `normalize_request`,
`inputs_sha256`, `parse_header`, `read_header`, `stale_reason`.
py-rattler work: `solve_to_lockfile`, `lock_entries`, `lock_records`.
"""
import asyncio
import hashlib
import json
import os
import shutil
import tempfile

from coex.lib.errors import CoexError
from coex.lib.fsutil import atomic_output
from coex.lib.platforms import check_platform, effective_virtual_packages, virtual_package_needs

HEADER_PREFIX = "# coex-lockfile: "
LOCK_VERSION = 1
# Bump when the meaning of the hashed inputs changes (forces every lock to be regenerated).
_INPUTS_SCHEMA = 1
ZSTD_NOTE = ("# This lock also pins one `zstd` package per platform: every archive carries its "
             "libzstd for the runtime's decoder.")


# ------------------------------------------------------------------------------------------------
# Pure helpers
# ------------------------------------------------------------------------------------------------

def canonical_channel(channel, origin=None):
    """`conda-forge` stays a name; `/abs/dir` and `file:/abs` become `file:///abs`; URLs lose a
    trailing slash. Relative paths and the `defaults` meta-channel are errors."""
    where = " (from {})".format(origin) if origin else ""
    c = str(channel).strip()
    if not c:
        raise CoexError("Empty channel{}: give a channel name or URL.".format(where))
    if c == "defaults":
        raise CoexError(
            "The `defaults` meta-channel{} is not supported: list the channels explicitly "
            "(e.g. conda-forge, or https://repo.anaconda.com/pkgs/main).".format(where))
    if c.startswith("file:") and not c.startswith("file://"):
        c = "file://" + c[len("file:"):]
    if c.startswith("file://localhost/"):
        c = "file://" + c[len("file://localhost"):]
    if "://" in c:
        return c.rstrip("/") or c
    if c.startswith("/"):
        return "file://" + os.path.normpath(c)
    if c.startswith((".", "~")):
        raise CoexError(
            "Channel {!r}{} is a relative path: use an absolute path or a file:// URL.".format(
                c, where))
    return c.rstrip("/")


def local_channel(channel, base_dir):
    """A channel as written by a user, with a relative path made absolute against `base_dir`
    (the environment file's directory, the build root, or the current directory). A path is
    what starts with `.`, `/` or `~`, or names an existing directory under `base_dir`; names
    (`conda-forge`, `conda-forge/label/dev`) and URLs are returned unchanged."""
    c = str(channel).strip()
    if "://" in c or c.startswith("file:"):
        return c
    c = os.path.expanduser(c)
    if c.startswith((".", "/")) or (c and os.path.isdir(os.path.join(base_dir, c))):
        return os.path.normpath(os.path.join(base_dir, c))
    return c


def normalize_request(req):
    """Validate a REQ dict and return its canonical form (sorted specs/platforms, canonical
    channels, per-platform effective virtual packages). Raises CoexError on bad input."""
    if not isinstance(req, dict):
        raise CoexError("A solve request must be a JSON object, got {}.".format(type(req).__name__))
    origin = req.get("origin") or "the solve request"
    resolve = req.get("resolve") or "default"
    specs = req.get("specs")
    if not specs or not isinstance(specs, (list, tuple)):
        raise CoexError(
            "{}: no conda specs to solve (resolve {!r}): add dependencies.".format(origin, resolve))
    for s in specs:
        if not isinstance(s, str) or not s.strip():
            raise CoexError("{}: spec {!r} is not a non-empty string.".format(origin, s))
    norm_specs = sorted(set(" ".join(s.split()) for s in specs))
    channels = req.get("channels")
    if not channels or not isinstance(channels, (list, tuple)):
        raise CoexError(
            "{}: no channels for resolve {!r}: give at least one channel (e.g. conda-forge or a "
            "file:// URL).".format(origin, resolve))
    norm_channels = []
    for c in channels:
        c = canonical_channel(c, origin)
        if c not in norm_channels:
            norm_channels.append(c)
    platforms = req.get("platforms") or ["linux-64"]
    if isinstance(platforms, str):
        platforms = [platforms]
    norm_platforms = sorted(set(check_platform(p, origin) for p in platforms))
    vreq = req.get("virtual_packages")
    if vreq is not None and not isinstance(vreq, (list, tuple)):
        raise CoexError("{}: `virtual_packages` must be a list like ['__glibc=2.17'].".format(origin))
    vpkgs = {p: effective_virtual_packages(p, vreq, origin) for p in norm_platforms}
    return {"resolve": resolve, "specs": norm_specs, "channels": norm_channels,
            "platforms": norm_platforms, "virtual_packages": vpkgs, "origin": origin}


def inputs_sha256(req):
    """sha256 (hex) of everything that determines a solve: specs, channels (in order),
    platforms and the effective virtual packages. Not the resolve name or origin."""
    n = normalize_request(req)
    payload = {"schema": _INPUTS_SCHEMA, "specs": n["specs"], "channels": n["channels"],
               "platforms": n["platforms"], "virtual_packages": n["virtual_packages"]}
    blob = json.dumps(payload, sort_keys=True, separators=(",", ":")).encode("utf-8")
    return hashlib.sha256(blob).hexdigest()


def make_header(req):
    n = normalize_request(req)
    return {"version": LOCK_VERSION, "resolve": n["resolve"], "inputs_sha256": inputs_sha256(req),
            "platforms": n["platforms"], "channels": n["channels"], "specs": n["specs"],
            "virtual_packages": n["virtual_packages"]}


def parse_header(text, origin="the lockfile"):
    """The header dict from a lock file's text; CoexError if there is none or it is corrupt."""
    if any(line.startswith(("<<<<<<< ", ">>>>>>> ")) for line in text.splitlines()):
        raise CoexError("{} has git merge conflict markers: do not merge lockfiles by hand, "
                        "regenerate it (after merging the environment files).".format(origin))
    for line in text.splitlines():
        if line.startswith(HEADER_PREFIX):
            try:
                header = json.loads(line[len(HEADER_PREFIX):])
            except ValueError as e:
                raise CoexError("{}: corrupt `# coex-lockfile:` header ({}); regenerate the "
                                "lockfile.".format(origin, e))
            if not isinstance(header, dict) or header.get("version") != LOCK_VERSION:
                raise CoexError(
                    "{}: lockfile header version {!r} is not supported by this coex (expects {}); "
                    "regenerate the lockfile.".format(
                        origin, header.get("version") if isinstance(header, dict) else header,
                        LOCK_VERSION))
            return header
        if line.strip() and not line.startswith("#"):
            break
    raise CoexError("{} is not a coex lockfile (no `{}` header line); regenerate it with coex."
                    .format(origin, HEADER_PREFIX.strip()))


def read_header(path):
    try:
        with open(path, "r", encoding="utf-8") as f:
            text = f.read()
    except OSError as e:
        raise CoexError("Cannot read lockfile {}: {}.".format(path, e.strerror or e))
    return parse_header(text, os.fspath(path))


def stale_reason(header, req):
    """None when the lock (its header) matches the request, else a short human description of
    what changed (e.g. "specs added: numpy; platforms removed: osx-64")."""
    if header.get("inputs_sha256") == inputs_sha256(req):
        return None
    n = normalize_request(req)
    parts = []
    for key in ("specs", "channels", "platforms"):
        old, new = list(header.get(key) or []), n[key]
        added = [x for x in new if x not in old]
        removed = [x for x in old if x not in new]
        if added:
            parts.append("{} added: {}".format(key, ", ".join(added)))
        if removed:
            parts.append("{} removed: {}".format(key, ", ".join(removed)))
        if not added and not removed and old != new:
            parts.append("{} reordered".format(key))
    old_v = header.get("virtual_packages") or {}
    if any(old_v.get(p) != v for p, v in n["virtual_packages"].items() if p in old_v):
        parts.append("virtual packages changed")
    return "; ".join(parts) or "inputs changed"


# ------------------------------------------------------------------------------------------------
# Solving (py-rattler)
# ------------------------------------------------------------------------------------------------

def _generic_vpkgs(canonical):
    from rattler import GenericVirtualPackage, PackageName, Version

    out = []
    for vp in canonical:
        name, version, build = vp.split("=", 2)
        out.append(GenericVirtualPackage(PackageName(name), Version(version), build))
    return out


def spec_name(spec):
    from rattler import MatchSpec

    name = MatchSpec(spec).name
    return name.normalized if name is not None else None


def solve_records(req, cache_dir=None):
    """Solve REQ for every platform: {platform: [RepoDataRecord]} (zstd always included)."""
    from rattler import Channel, Gateway, Platform, solve
    from rattler.exceptions import SolverError

    from coex.lib.envspec import check_specs

    n = normalize_request(req)
    origin = n["origin"]
    specs = check_specs(n["specs"], origin)
    if "zstd" not in [spec_name(s) for s in specs]:
        specs = specs + ["zstd"]
    tmp = None
    if cache_dir is None:
        cache_dir = os.environ.get("COEX_REPODATA_CACHE") or None
    if cache_dir is None:
        tmp = cache_dir = tempfile.mkdtemp(prefix="coex-repodata-")
    try:
        try:
            channels = [Channel(c) for c in n["channels"]]
        except Exception as e:
            raise CoexError("{}: invalid channel: {}".format(origin, e))
        gateway = Gateway(cache_dir=cache_dir)
        result = {}
        for plat in n["platforms"]:
            try:
                records = asyncio.run(solve(
                    sources=channels, specs=specs, gateway=gateway,
                    platforms=[Platform(plat), Platform("noarch")],
                    virtual_packages=_generic_vpkgs(n["virtual_packages"][plat])))
            except SolverError as e:
                raise CoexError(
                    "Cannot solve resolve {!r} for platform {} (specs from {}: {}).\n"
                    "py-rattler says: {}\n"
                    "Fix the specs, or add a channel that provides them. (coex always adds `zstd`: "
                    "its libzstd is the runtime's decoder, so the channels must provide it; "
                    "assumed virtual packages: {}.)".format(
                        n["resolve"], plat, origin, ", ".join(n["specs"]), str(e).strip(),
                        ", ".join(n["virtual_packages"][plat]) or "none"))
            except CoexError:
                raise
            except Exception as e:
                raise CoexError(
                    "Cannot read the channels {} for platform {} (resolve {!r}, from {}): {}: {}\n"
                    "Check the channel URLs and that each has {}/ and noarch/ repodata.".format(
                        ", ".join(n["channels"]), plat, n["resolve"], origin, type(e).__name__,
                        str(e).strip(), plat))
            result[plat] = records
        return n, result
    finally:
        if tmp:
            shutil.rmtree(tmp, ignore_errors=True)


def solve_to_lockfile(req, out_path, cache_dir=None):
    """Solve REQ and write the coex lock file to `out_path` (atomically). Returns the header."""
    from rattler import LockChannel, LockFile, LockPlatform

    n, result = solve_records(req, cache_dir)
    header = make_header(req)
    plats = [LockPlatform(p, virtual_packages=n["virtual_packages"][p]) for p in n["platforms"]]
    lf = LockFile(plats)
    lf.set_channels("default", [LockChannel(_lock_channel_url(c)) for c in n["channels"]])
    for plat, lp in zip(n["platforms"], plats):
        for rec in sorted(result[plat], key=lambda r: r.name.normalized):
            lf.add_conda_package("default", lp, rec)
    with atomic_output(out_path) as tmp:
        lf.to_path(tmp)
        with open(tmp, "r", encoding="utf-8") as f:
            body = f.read()
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(HEADER_PREFIX + json.dumps(header, sort_keys=True, separators=(", ", ": "))
                    + "\n" + ZSTD_NOTE + "\n" + body)
    return header


def _lock_channel_url(channel):
    from rattler import Channel

    if "://" in channel:
        return channel
    return Channel(channel).base_url.rstrip("/")


# ------------------------------------------------------------------------------------------------
# Reading a lock back (py-rattler)
# ------------------------------------------------------------------------------------------------

def lock_records(lock_path, platform):
    """(header, [RepoDataRecord] in install order) for one platform of a coex lock file."""
    from rattler import LockFile, PackageRecord

    header = read_header(lock_path)
    try:
        lf = LockFile.from_path(os.fspath(lock_path))
    except Exception as e:
        raise CoexError("Cannot parse lockfile {}: {}{}; regenerate it.".format(
            lock_path, e, _diagnose_lock_text(lock_path)))
    env = lf.default_environment()
    plats = {p.name: p for p in (env.platforms() if env is not None else [])}
    if platform not in plats:
        raise CoexError(
            "Lockfile {} has no packages for platform {!r} (it has: {}). Add the platform to the "
            "resolve's platforms and regenerate the lockfile.".format(
                lock_path, platform, ", ".join(sorted(plats)) or "none"))
    records = env.conda_repodata_records_for_platform(plats[platform]) or []
    by_name = {r.name.normalized: r for r in records}
    ordered = [by_name[p.name.normalized] for p in PackageRecord.sort_topologically(records)]
    return header, ordered


_HEX_FIELDS = (("sha256", 64), ("md5", 32))


def _diagnose_lock_text(lock_path):
    """Name the package whose digest fields are malformed (rattler only says "failed to parse
    digest"), e.g. after a hand edit or a merge: " (package X: sha256 'abc' is not 64 hex
    digits)", or "" when nothing specific is found."""
    import re

    import yaml

    try:
        with open(lock_path, "r", encoding="utf-8") as f:
            data = yaml.safe_load(f)
    except Exception as e:  # not YAML at all: say where
        return " (not valid YAML: {})".format(" ".join(str(e).split()))
    packages = data.get("packages") if isinstance(data, dict) else None
    for p in packages if isinstance(packages, list) else ():
        if not isinstance(p, dict) or "conda" not in p:
            continue
        name = str(p["conda"]).rstrip("/").rsplit("/", 1)[-1]
        for field, digits in _HEX_FIELDS:
            value = p.get(field)
            if value is not None and not re.match(r"^[0-9a-fA-F]{%d}$" % digits, str(value)):
                return " (package {}: {} {!r} is not {} hex digits)".format(
                    name, field, value, digits)
        if "size" in p and not isinstance(p["size"], int):
            return " (package {}: size {!r} is not a number)".format(name, p["size"])
    return ""


def _noarch(rec):
    na = rec.noarch
    if na.python:
        return "python"
    if na.generic:
        return "generic"
    return None


def record_entry(rec):
    """The entries.json dict of one RepoDataRecord."""
    ts = rec.timestamp
    return {
        "name": rec.name.normalized,
        "version": str(rec.version),
        "build": rec.build,
        "build_number": rec.build_number,
        "subdir": rec.subdir,
        "filename": rec.file_name,
        "url": rec.url,
        "sha256": rec.sha256.hex() if rec.sha256 else None,
        "md5": rec.md5.hex() if rec.md5 else None,
        "size": rec.size,
        "depends": list(rec.depends),
        "constrains": list(rec.constrains),
        "channel": rec.channel,
        "noarch": _noarch(rec),
        "timestamp": int(round(ts.timestamp() * 1000)) if ts is not None else None,
        "license": rec.license,
    }


def lock_entries(lock_path, platform):
    """The `entries` command's result: {"header", "platform", "packages" (install order),
    "virtual_packages" (union of the records' `__*` dependencies), "zstd_filename"}."""
    header, records = lock_records(lock_path, platform)
    packages = [record_entry(r) for r in records]
    for p in packages:
        if not p["sha256"] or p["size"] is None:
            raise CoexError(
                "Lockfile {}: package {} has no sha256/size; coex needs both to verify downloads. "
                "Regenerate the lockfile from a channel whose repodata has them.".format(
                    lock_path, p["filename"]))
    vpkgs = virtual_package_needs(packages)
    zstd = [p["filename"] for p in packages if p["name"] == "zstd"]
    if not zstd:
        raise CoexError(
            "Lockfile {} pins no `zstd` package for {} (coex locks always do: the archive carries "
            "its libzstd). Regenerate the lockfile with coex.".format(lock_path, platform))
    return {"header": header, "platform": platform, "packages": packages,
            "virtual_packages": vpkgs, "zstd_filename": zstd[0]}
