"""What a lockfile is solved from, and whether a lockfile is still fresh: pure (no py-rattler),
the same functions for the Pants rules (in the Pants process) and `./coex`. `solve_request`
builds a request; `lock_header` is its canonical form with `inputs_sha256`, the hash of what
determines a solve (specs, channels in order, platforms, the effective virtual packages, and
the PyPI requirements with where pip looks for them; not the resolve name or origin);
`stale_reason(header, request)` is the freshness check. Channels (and `--find-links`
directories) are hashed as the lockfile records them (`coex.lib.channels`: local channels
inside the build root and named channel locations by placeholder), so a lockfile stays fresh in
another checkout. A lock without PyPI requirements hashes exactly what it did before coex knew
PyPI.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
from dataclasses import replace
from typing import Callable, Iterable, Optional

from coex.lib.channels import BUILDROOT, placeholder, portable_channel
from coex.lib.errors import CoexError
from coex.lib.platforms import check_platform, effective_virtual_packages
from coex.lib.records import (
    LOCK_VERSION,
    ChannelLocations,
    LockHeader,
    PlatformSpecs,
    PypiSettings,
    SolveRequest,
)

HEADER_PREFIX = "# coex-lockfile: "
# Bump when the meaning of the hashed inputs changes (forces every lock to be regenerated).
_INPUTS_SCHEMA = 1


def canonical_channel(channel: str, origin: Optional[str] = None) -> str:
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


# the one form of a hosted channel name with a `/`: anaconda.org's `<owner>/label/<label>`
_LABEL_CHANNEL = re.compile(r"^[^/]+/label/[^/]+$")


def channel_directory(channel: str, base_dir: str) -> Optional[str]:
    """The absolute directory `channel` names if it is (or may be) a local directory: anything
    but a URL, relative to `base_dir`."""
    c = str(channel).strip()
    if not c or "://" in c or c.startswith("file:"):
        return None
    return os.path.normpath(os.path.join(base_dir, os.path.expanduser(c)))


def local_channel(channel: str, base_dir: str,
                  is_dir: Callable[[str], bool] = os.path.isdir,
                  origin: Optional[str] = None) -> str:
    """A channel as written by a user, with a relative path made absolute against `base_dir`
    (the environment file's directory, the build root, or the current directory). A path is
    what starts with `.`, `/` or `~`, has a `/` (other than `<owner>/label/<label>`, which must
    then be a directory: a missing one is a CoexError, not a channel name to look up on
    anaconda.org), or names a directory under `base_dir` (`is_dir` of its absolute path: the
    Pants rules ask the engine); names (`conda-forge`, `conda-forge/label/dev`) and URLs are
    returned unchanged."""
    c = str(channel).strip()
    path = channel_directory(c, base_dir)
    if path is None:
        return c
    if c.startswith((".", "/", "~")) or is_dir(path):
        return path
    if "/" in c and not _LABEL_CHANNEL.match(c):
        raise CoexError(
            "The channel {!r}{} is the directory {}, which does not exist: create the local "
            "channel there (a directory with noarch/ and per-platform repodata), or fix the "
            "path. (A hosted channel is a name such as conda-forge, `<owner>/label/<label>`, "
            "or a URL.)".format(c, " (from {})".format(origin) if origin else "", path))
    return c


def solve_request(resolve: str, sources: Iterable[tuple[str, Iterable[str]]],
                  channels: Iterable[str], platforms: Iterable[str],
                  virtual_packages: Optional[Iterable[str]] = None,
                  origin: Optional[str] = None,
                  locations: ChannelLocations = ChannelLocations(),
                  per_platform: Iterable[PlatformSpecs] = (),
                  pypi_sources: Iterable[tuple[str, Iterable[str]]] = (),
                  pypi_settings: PypiSettings = PypiSettings()) -> SolveRequest:
    """The request for the specs of every source ((where, specs) pairs) and the PyPI
    requirements of every `pypi_sources`: specs and requirements merged and sorted, channels in
    order of first appearance, platforms sorted; `locations` says where the build root and named
    channels are; `per_platform` the platforms solved for a part of the specs (or requirements)
    only (those equal to all of them are dropped); `pypi_settings` where pip looks for wheels."""
    sources = tuple((where, tuple(specs)) for where, specs in sources)
    specs = tuple(sorted({s for _, specs in sources for s in specs}))
    pypi_sources = tuple((where, tuple(reqs)) for where, reqs in pypi_sources if reqs)
    pypi = tuple(sorted({r for _, reqs in pypi_sources for r in reqs}))
    return SolveRequest(
        resolve=resolve,
        specs=specs,
        channels=tuple(dict.fromkeys(channels)),
        platforms=tuple(sorted(set(platforms))),
        virtual_packages=None if virtual_packages is None else tuple(virtual_packages),
        origin=origin or "; ".join(where for where, _ in sources) or "the solve request",
        sources=sources,
        locations=locations,
        per_platform=tuple(sorted(
            (replace(p, specs=tuple(sorted(set(p.specs))), pypi=tuple(sorted(set(p.pypi))))
             for p in per_platform if set(p.specs) != set(specs) or set(p.pypi) != set(pypi)),
            key=lambda p: p.platform)),
        pypi=pypi,
        pypi_sources=pypi_sources,
        pypi_settings=pypi_settings,
    )


def normalized(request: SolveRequest) -> SolveRequest:
    """The canonical request: specs whitespace-normalized and sorted, channels canonical (and
    portable: `coex.lib.channels.portable_channel`), platforms checked and sorted. A CoexError
    names what is wrong."""
    origin, resolve = request.origin, request.resolve
    if not request.specs:
        raise CoexError(
            "{}: no conda specs to solve (resolve {!r}): add dependencies.".format(origin, resolve))
    for s in request.specs:
        if not isinstance(s, str) or not s.strip():
            raise CoexError("{}: spec {!r} is not a non-empty string.".format(origin, s))
    if not request.channels:
        raise CoexError(
            "{}: no channels for resolve {!r}: give at least one channel (e.g. conda-forge or a "
            "file:// URL).".format(origin, resolve))
    specs = tuple(sorted(set(" ".join(s.split()) for s in request.specs)))
    platforms = tuple(sorted(set(check_platform(p, origin)
                                 for p in request.platforms or ("linux-64",))))
    pypi = _pypi(request.pypi, origin)
    per_platform = []
    for p in request.per_platform:
        own = tuple(sorted(set(" ".join(s.split()) for s in p.specs)))
        own_pypi = _pypi(p.pypi, p.origin or origin)
        if p.platform in platforms and (own != specs or own_pypi != pypi):
            per_platform.append(replace(p, specs=own, pypi=own_pypi))
    settings = request.pypi_settings
    return replace(
        request,
        specs=specs,
        channels=tuple(dict.fromkeys(
            portable_channel(canonical_channel(c, origin), request.locations)
            for c in request.channels)),
        platforms=platforms,
        per_platform=tuple(sorted(per_platform, key=lambda p: p.platform)),
        pypi=pypi,
        pypi_settings=PypiSettings(
            tuple(dict.fromkeys(canonical_channel(i, origin) for i in settings.indexes)),
            tuple(dict.fromkeys(
                portable_channel(canonical_channel(f, origin), request.locations)
                for f in settings.find_links))),
    )


def _pypi(requirements: Iterable[str], origin: str) -> tuple[str, ...]:
    if not requirements:
        return ()
    from coex.lib.pypi import clean_requirements

    return tuple(sorted(set(clean_requirements(requirements, origin))))


def lock_header(request: SolveRequest) -> LockHeader:
    """The header of the lockfile `request` solves into (its `inputs_sha256` included)."""
    n = normalized(request)
    vpkgs = tuple((p, tuple(effective_virtual_packages(p, n.virtual_packages, n.origin)))
                  for p in n.platforms)
    platform_specs = tuple((p.platform, p.specs) for p in n.per_platform if p.specs != n.specs)
    payload = {"schema": _INPUTS_SCHEMA, "specs": list(n.specs), "channels": list(n.channels),
               "platforms": list(n.platforms),
               "virtual_packages": {p: list(v) for p, v in vpkgs}}
    if platform_specs:  # (absent otherwise: the hash of every earlier lock stays the same)
        payload["platform_specs"] = {p: list(s) for p, s in platform_specs}
    platform_pypi, indexes, find_links = (), (), ()
    if n.pypi or any(p.pypi for p in n.per_platform):  # (absent otherwise, as platform_specs)
        platform_pypi = tuple((p.platform, p.pypi) for p in n.per_platform if p.pypi != n.pypi)
        indexes, find_links = n.pypi_settings.indexes, n.pypi_settings.find_links
        payload["pypi"] = {"requirements": list(n.pypi), "indexes": list(indexes),
                           "find_links": list(find_links),
                           "platforms": {p: list(r) for p, r in platform_pypi}}
    blob = json.dumps(payload, sort_keys=True, separators=(",", ":")).encode("utf-8")
    return LockHeader(n.resolve, hashlib.sha256(blob).hexdigest(), n.platforms, n.channels,
                      n.specs, vpkgs, platform_specs=platform_specs, pypi=n.pypi,
                      pypi_indexes=indexes, pypi_find_links=find_links,
                      platform_pypi=platform_pypi)


def inputs_sha256(request: SolveRequest) -> str:
    return lock_header(request).inputs_sha256


def stale_reason(header: LockHeader, request: SolveRequest) -> Optional[str]:
    """None when the lock (its header) matches the request, else a short human description of
    what changed (e.g. "specs added: numpy; platforms removed: osx-64"). A lockfile written
    before channels were recorded portably (local channels by absolute path) is fresh where it
    was written."""
    want = lock_header(request)
    if header.inputs_sha256 == want.inputs_sha256:
        return None
    if request.locations != ChannelLocations():
        legacy = lock_header(replace(request, locations=ChannelLocations()))
        if header.inputs_sha256 == legacy.inputs_sha256:
            return None
    parts = []
    for key, what in (("specs", "specs"), ("channels", "channels"), ("platforms", "platforms"),
                      ("pypi", "PyPI requirements"), ("pypi_indexes", "PyPI indexes"),
                      ("pypi_find_links", "PyPI find-links")):
        old, new = getattr(header, key), getattr(want, key)
        added = [x for x in new if x not in old]
        removed = [x for x in old if x not in new]
        if added:
            parts.append("{} added: {}".format(what, ", ".join(added)))
        if removed:
            parts.append("{} removed: {}".format(what, ", ".join(removed)))
        if not added and not removed and old != new:
            parts.append("{} reordered".format(what))
    if header.specs == want.specs:  # (a change of the specs themselves is said above)
        for p in want.platforms:
            old, new = header.specs_of(p), want.specs_of(p)
            if p in header.platforms and old != new:
                added = [x for x in new if x not in old]
                removed = [x for x in old if x not in new]
                parts.append("specs solved for {}: {}".format(p, "; ".join(
                    x for x in ("added: " + ", ".join(added) if added else "",
                                "removed: " + ", ".join(removed) if removed else "") if x)))
    if header.pypi == want.pypi:
        for p in want.platforms:
            old, new = header.pypi_of(p), want.pypi_of(p)
            if p in header.platforms and old != new:
                parts.append("PyPI requirements resolved for {}: {}".format(p, "; ".join(
                    x for x in ("added: " + ", ".join(r for r in new if r not in old),
                                "removed: " + ", ".join(r for r in old if r not in new))
                    if not x.endswith(": "))))
    old_v = dict(header.virtual_packages)
    if any(old_v.get(p) != v for p, v in want.virtual_packages if p in old_v):
        parts.append("virtual packages changed")
    named = dict(request.locations.named)
    unknown = [c for c in header.channels if placeholder(c) is not None
               and placeholder(c)[0] not in named and placeholder(c)[0] != BUILDROOT]
    if unknown:
        parts.append("the lockfile names the channel location(s) {}, not defined here "
                     "(`[coex].channel_locations`; `./coex --channel-location NAME=URL`)".format(
                         ", ".join(placeholder(c)[0] for c in unknown)))
    return "; ".join(parts) or "inputs changed"


def parse_header(text: str, origin: str = "the lockfile") -> LockHeader:
    """The header of a lock file's text; CoexError if there is none or it is corrupt."""
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
            return LockHeader.from_json(header)
        if line.strip() and not line.startswith("#"):
            break
    raise CoexError("{} is not a coex lockfile (no `{}` header line); regenerate it with coex."
                    .format(origin, HEADER_PREFIX.strip()))


def read_header(path: str) -> LockHeader:
    try:
        with open(path, "r", encoding="utf-8") as f:
            text = f.read()
    except OSError as e:
        raise CoexError("Cannot read lockfile {}: {}.".format(path, e.strerror or e))
    return parse_header(text, os.fspath(path))
