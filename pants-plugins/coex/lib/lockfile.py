"""Solving (py-rattler), coex lock files, and reading them back.

A coex lock file is the rattler lock format (the pixi.lock YAML that py-rattler writes: every
package with url, sha256, md5, size, subdir, depends, channel), preceded by YAML comment lines:

    # coex-lockfile: {"channels": [...], "inputs_sha256": "...", "platforms": [...], "resolve": ...,
    #                 "specs": [...], "version": 1, "virtual_packages": {"linux-64": [...]}}   (one line)
    # This lock also pins one `zstd` package per platform: every archive carries its libzstd for
    # the runtime's decoder.

PyPI requirements (`coex.lib.pypi`) are resolved after the conda solve, per platform, against
the python it locked (`coex.lib.pipsolve`), and recorded as the rattler lock format's `pypi:`
entries: url (a `coex://` placeholder for a `--find-links` directory in the build root), name,
version, sha256, requires_dist, requires_python, and coex's `size` (what fetching a wheel is keyed
on with the url and sha256; rattler keeps unknown keys out of its model, so coex reads it from the
YAML). py-rattler 0.25 writes only url, name and version of a PyPI package, so the other keys are
added to each entry after it writes the file.

Repodata is read into a fresh temporary cache per solve (so a solve always sees the channels as
they are now), or into $COEX_REPODATA_CACHE when set (worth it for big https channels: rattler
revalidates cached repodata with the server).

`solve_to_lockfile(SolveRequest)` writes a lock; `lock_entries` reads one platform back as a
`LockedPlatform` (or the part some root specs need). The pure side is `coex.lib.request`.
"""
from __future__ import annotations

import asyncio
import json
import os
import shutil
import tempfile
from typing import Iterable, Optional

from coex.lib.channels import locate, placeholder_url
from coex.lib.envspec import check_specs
from coex.lib.errors import CoexError
from coex.lib.fsutil import atomic_output
from coex.lib.platforms import virtual_package_needs
from coex.lib.records import (
    LockedPackage,
    LockedPlatform,
    LockedWheel,
    LockHeader,
    PypiSettings,
    SolveRequest,
)
from coex.lib.request import HEADER_PREFIX, lock_header, read_header

ZSTD_NOTE = ("# This lock also pins one `zstd` package per platform: every archive carries its "
             "libzstd for the runtime's decoder.")


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


def spec_name(spec: str) -> Optional[str]:
    from rattler import MatchSpec

    name = MatchSpec(spec).name
    return name.normalized if name is not None else None


def solve_records(request: SolveRequest, cache_dir: Optional[str] = None):
    """Solve `request` for every platform: (its header, {platform: [RepoDataRecord]}), zstd always
    included."""
    from rattler import Channel, Gateway, Platform, solve
    from rattler.exceptions import SolverError

    header = lock_header(request)
    origin = request.origin
    for where, specs in request.sources:
        check_specs(specs, where)  # a bad spec is reported with where it comes from
    check_specs(header.specs, origin)
    vpkgs = dict(header.virtual_packages)
    # a platform some targets do not build for is solved for the specs of those that do
    origins = {p.platform: p.origin for p in request.per_platform if p.origin}

    def specs_of(plat):
        specs = list(header.specs_of(plat))
        return specs if "zstd" in [spec_name(s) for s in specs] else specs + ["zstd"]
    tmp = None
    if cache_dir is None:
        cache_dir = os.environ.get("COEX_REPODATA_CACHE") or None
    if cache_dir is None:
        tmp = cache_dir = tempfile.mkdtemp(prefix="coex-repodata-")
    try:
        try:  # placeholders (local channels in the build root, named ones) -> where they are
            channels = [Channel(locate(c, request.locations, origin)) for c in header.channels]
        except CoexError:
            raise
        except Exception as e:
            raise CoexError("{}: invalid channel: {}".format(origin, e))
        gateway = Gateway(cache_dir=cache_dir)
        result = {}
        for plat in header.platforms:
            try:
                records = asyncio.run(solve(
                    sources=channels, specs=specs_of(plat), gateway=gateway,
                    platforms=[Platform(plat), Platform("noarch")],
                    virtual_packages=_generic_vpkgs(vpkgs[plat])))
            except SolverError as e:
                raise CoexError(
                    "Cannot solve resolve {!r} for platform {} (specs from {}: {}).\n"
                    "py-rattler says: {}\n"
                    "Fix the specs, or add a channel that provides them. (coex always adds `zstd`: "
                    "its libzstd is the runtime's decoder, so the channels must provide it; "
                    "assumed virtual packages: {}.)".format(
                        header.resolve, plat, origins.get(plat, origin),
                        ", ".join(header.specs_of(plat)), str(e).strip(),
                        ", ".join(vpkgs[plat]) or "none"))
            except CoexError:
                raise
            except Exception as e:
                raise CoexError(
                    "Cannot read the channels {} for platform {} (resolve {!r}, from {}): {}: {}\n"
                    "Check the channel URLs and that each has {}/ and noarch/ repodata.".format(
                        ", ".join(header.channels), plat, header.resolve, origin, type(e).__name__,
                        str(e).strip(), plat))
            result[plat] = records
        return header, result
    finally:
        if tmp:
            shutil.rmtree(tmp, ignore_errors=True)


class _Record:
    """A solved conda record as `coex.lib.pypi` reads packages (name, version, build, depends,
    noarch)."""

    def __init__(self, rec):
        self.name = rec.name.normalized
        self.version = str(rec.version)
        self.build = rec.build
        self.depends = tuple(rec.depends)
        self.noarch = "python" if rec.noarch.python else None


def resolve_pypi(header: LockHeader, request: SolveRequest,
                 records: dict) -> dict[str, list[LockedWheel]]:
    """{platform: the wheels pip chooses for the PyPI requirements of that platform} (platforms
    without PyPI requirements are left out)."""
    from coex.lib.pipsolve import resolve_wheels

    settings = PypiSettings(header.pypi_indexes, header.pypi_find_links)
    vpkgs = dict(header.virtual_packages)
    origins = {p.platform: p.origin for p in request.per_platform if p.origin}
    out = {}
    for plat in header.platforms:
        reqs = header.pypi_of(plat)
        if reqs:
            where = "; ".join(w for w, _ in request.pypi_sources) or request.origin
            out[plat] = resolve_wheels(reqs, settings, plat, [_Record(r) for r in records[plat]],
                                       vpkgs[plat], request.locations,
                                       "The PyPI requirements of {} ({})".format(
                                           header.resolve, origins.get(plat, where)))
    return out


def _wheel_fields(w: LockedWheel) -> str:
    """The keys of a `pypi:` entry that py-rattler 0.25 does not write, as YAML lines."""
    import yaml

    fields = {"sha256": w.sha256, "size": w.size}
    if w.requires_dist:
        fields["requires_dist"] = list(w.requires_dist)
    if w.requires_python:
        fields["requires_python"] = w.requires_python
    text = yaml.safe_dump(fields, sort_keys=False, default_flow_style=False, width=1000)
    return "".join("  " + line + "\n" for line in text.splitlines())


def _add_wheel_fields(body: str, wheels: dict) -> str:
    """`body` (a lock py-rattler wrote) with each `pypi:` package entry completed."""
    import yaml

    out, current = [], None
    lines = body.splitlines(True)
    for i, line in enumerate(lines):
        out.append(line)
        if line.startswith("- pypi: "):  # (the URL as YAML writes it: maybe quoted)
            current = str(yaml.safe_load(line[len("- pypi: "):]))
        nxt = lines[i + 1] if i + 1 < len(lines) else ""
        if current is not None and not nxt.startswith("  "):
            out.append(_wheel_fields(wheels[current]))
            current = None
    return "".join(out)


def solve_to_lockfile(request: SolveRequest, out_path: str,
                      cache_dir: Optional[str] = None) -> LockHeader:
    """Solve `request` (and resolve its PyPI requirements) and write the coex lock file to
    `out_path` (atomically). Packages of a placeholder channel (`coex.lib.channels`) are recorded
    by placeholder too, as are wheels of a `--find-links` directory in the build root."""
    from rattler import LockChannel, LockFile, LockPlatform

    header, result = solve_records(request, cache_dir)
    wheels = resolve_pypi(header, request, result)
    plats = [LockPlatform(p, virtual_packages=list(v)) for p, v in header.virtual_packages]
    lf = LockFile(plats)
    lf.set_channels("default", [LockChannel(_lock_channel_url(c)) for c in header.channels])
    for plat, lp in zip(header.platforms, plats):
        for rec in sorted(result[plat], key=lambda r: r.name.normalized):
            portable = placeholder_url(rec.url, header.channels, request.locations)
            if portable is not None:
                rec.channel, rec.url = portable
            lf.add_conda_package("default", lp, rec)
        for w in wheels.get(plat, ()):
            lf.add_pypi_package("default", lp, w.name, w.version, w.url)
    with atomic_output(out_path) as tmp:
        lf.to_path(tmp)
        with open(tmp, "r", encoding="utf-8") as f:
            body = f.read()
        if wheels:
            body = _add_wheel_fields(body, {w.url: w for ws in wheels.values() for w in ws})
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(HEADER_PREFIX
                    + json.dumps(header.to_json(), sort_keys=True, separators=(", ", ": "))
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

def lock_records(lock_path: str, platform: str) -> tuple[LockHeader, list]:
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


def locked_package(rec, lock_path: str) -> LockedPackage:
    """The record of one RepoDataRecord (a lock without sha256 or size cannot be used)."""
    if rec.sha256 is None or rec.size is None:
        raise CoexError(
            "Lockfile {}: package {} has no sha256/size; coex needs both to verify downloads. "
            "Regenerate the lockfile from a channel whose repodata has them.".format(
                lock_path, rec.file_name))
    ts = rec.timestamp
    return LockedPackage(
        name=rec.name.normalized, version=str(rec.version), build=rec.build,
        build_number=rec.build_number, subdir=rec.subdir, filename=rec.file_name, url=rec.url,
        sha256=rec.sha256.hex(), size=rec.size, md5=rec.md5.hex() if rec.md5 else None,
        depends=tuple(rec.depends), constrains=tuple(rec.constrains), channel=rec.channel,
        noarch="python" if rec.noarch.python else "generic" if rec.noarch.generic else None,
        timestamp=int(round(ts.timestamp() * 1000)) if ts is not None else None,
        license=rec.license)


def environment_subset(packages: Iterable[LockedPackage],
                       roots: Iterable[str]) -> tuple[LockedPackage, ...]:
    """The packages that the `roots` specs (and the runtime's `zstd`) need: their closure over the
    packages' `depends`, in the given (install) order. No roots: all of them."""
    packages, roots = tuple(packages), tuple(roots)
    if not roots:
        return packages
    by_name = {p.name: p for p in packages}
    todo = [spec_name(s) for s in roots] + ["zstd"]
    keep = set()
    while todo:
        name = todo.pop()
        if not name or name in keep or name not in by_name:
            continue
        keep.add(name)
        todo.extend(spec_name(dep) for dep in by_name[name].depends)
    return tuple(p for p in packages if p.name in keep)


def _wheel_sizes(lock_path: str) -> dict:
    """{url: size} of the lock's `pypi:` entries (a key rattler's model does not keep)."""
    import yaml

    with open(lock_path, "r", encoding="utf-8") as f:
        data = yaml.safe_load(f)
    packages = data.get("packages") if isinstance(data, dict) else None
    return {str(p["pypi"]): p.get("size") for p in packages or ()
            if isinstance(p, dict) and "pypi" in p}


def lock_wheels(lock_path: str, header: LockHeader, platform: str) -> list[LockedWheel]:
    """The PyPI wheels one platform of a lock has, by name (`requested`: asked for by name)."""
    from rattler import LockFile

    if not header.pypi_of(platform):
        return []
    from coex.lib.pypi import canonical_name, parse_wheel_filename, requirement_name

    env = LockFile.from_path(os.fspath(lock_path)).default_environment()
    plats = {p.name: p for p in env.platforms()}
    found = env.pypi_packages_for_platform(plats[platform]) if platform in plats else None
    sizes = _wheel_sizes(lock_path)
    asked = {requirement_name(r) for r in header.pypi_of(platform)}
    out = []
    for p in found or ():
        url = p.location
        filename = url.split("#", 1)[0].rsplit("/", 1)[-1]
        sha256 = p.hashes.sha256.hex() if p.hashes is not None and p.hashes.sha256 else None
        size = sizes.get(url)
        if sha256 is None or not isinstance(size, int):
            raise CoexError(
                "Lockfile {}: the PyPI package {} has no sha256/size; coex needs both to verify "
                "downloads. Regenerate the lockfile with coex.".format(lock_path, url))
        parse_wheel_filename(filename)  # (a CoexError when it is not a wheel)
        name = canonical_name(p.name)
        out.append(LockedWheel(name, str(p.version), filename, url, sha256, size,
                               tuple(p.requires_dist), p.requires_python, name in asked))
    return sorted(out, key=lambda w: w.name)


def lock_entries(lock_path: str, platform: str, roots: Iterable[str] = (),
                 pypi_roots: Optional[Iterable[str]] = None) -> LockedPlatform:
    """One platform of a lock, in install order: all its packages and wheels, or (with `roots`)
    the part those specs need (as a pex takes its requirements' subset of a Python lock), and
    (with `pypi_roots`) the wheels those requirements need, with the conda packages they need."""
    from coex.lib import pypi

    header, records = lock_records(lock_path, platform)
    locked = [locked_package(r, lock_path) for r in records]
    if not any(p.name == "zstd" for p in locked):
        raise CoexError(
            "Lockfile {} pins no `zstd` package for {} (coex locks always do: the archive carries "
            "its libzstd). Regenerate the lockfile with coex.".format(lock_path, platform))
    all_wheels = lock_wheels(lock_path, header, platform)
    wheels = all_wheels
    roots = tuple(roots)
    if all_wheels and (roots or pypi_roots is not None):
        provided = pypi.conda_provides(locked)
        target = pypi.target_of(locked, "Lockfile {} ({})".format(lock_path, platform))
        wheels, need = pypi.requirement_closure(
            all_wheels, pypi_roots or (), pypi.marker_environment(platform, target), provided)
        roots = roots + tuple(provided[n][0] for n in sorted(need))
    packages = environment_subset(locked, roots)
    if wheels:  # (their python, at least)
        packages = environment_subset(locked, roots + ("python",)) if roots else packages
    vpkgs = virtual_package_needs([p.depends for p in packages]
                                  + [pypi.wheel_virtual_packages(w.filename) for w in wheels])
    return LockedPlatform(header, platform, packages, len(locked), tuple(vpkgs),
                          tuple(wheels), len(all_wheels))
