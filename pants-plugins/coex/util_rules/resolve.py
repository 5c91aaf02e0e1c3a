"""Resolves: what each one should lock (gathered from its targets), and its lockfile, checked.

* `CoexResolveInputs` for a resolve name: the `SolveRequest` built from every `coex_binary` of
  that resolve, in address order, and each target's own specs.
  `generate-lockfiles` solves it; `package` checks the lockfile against it
  (`coex.lib.request.stale_reason`: the same freshness check as `./coex`).
* `CoexLockfile` for a resolve name: the lockfile digest and header, read from `[coex].resolves`,
  with a clear error when the resolve is unknown, the lockfile is missing, not a coex lockfile, or
  stale.
* `LockedPlatform` for (resolve, platform, root specs): the locked packages those specs need (all
  of them without roots), in install order, from `coex.lib entries` run in a process (cached by
  the lockfile's digest and the specs, locally and in a remote cache; a process because reading
  the lock takes py-rattler, which never runs in the Pants process).
* `CoexScriptHeaders` of a target: the headers (`coex.lib.script`: a `# /// conda` block or
  conda-execute's `# conda execute` lines) of the app-layer scripts its entry points run. Their
  specs, channels and platforms join the target's own; a spec for a package the target's own
  specs constrain differently, or a platform the header does not list, is an error naming both.
* `ChannelLocations`: the build root and `[coex].channel_locations`, validated: where the
  channels a lockfile names by placeholder are (`coex.lib.channels`). Part of the solve request
  (never of its inputs hash), used by fetch and export.

Hermetic: files are read through the engine (the lockfile, environment files, and whether a
channel written as a bare name is a directory of the build root), and specs are parsed by
py-rattler only in library processes, never in the Pants process.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import posixpath
from dataclasses import dataclass

from pants.base.build_root import BuildRoot
from pants.engine.addresses import Address
from pants.engine.fs import Digest, DigestContents, DigestSubset, PathGlobs, Paths, Snapshot
from pants.engine.rules import Get, MultiGet, collect_rules, rule
from pants.engine.target import (
    AllTargets,
    HydratedSources,
    HydrateSourcesRequest,
    SourcesField,
    Target,
    TransitiveTargets,
    TransitiveTargetsRequest,
)
from pants.util.docutil import bin_name
from pants.util.frozendict import FrozenDict
from pants.util.logging import LogLevel
from pants.util.strutil import softwrap

from coex.lib.channels import absolute_inside_root, check_locations
from coex.lib.envspec import clean_specs, parse_environment_text
from coex.lib.errors import CoexError
from coex.lib.platforms import check_platform
from coex.lib.pypi import PipOptions, clean_requirements, merge_options
from coex.lib.script import ScriptHeader, parse_script, spec_package
from coex.lib.records import (
    ChannelLocations,
    LockedPlatform,
    LockHeader,
    PlatformSpecs,
    PypiSettings,
    SolveRequest,
)
from coex.lib.request import (
    channel_directory,
    local_channel,
    parse_header,
    solve_request,
    stale_reason,
)
from coex.subsystem import CoexSubsystem
from coex.target_types import (
    CoexBinaryTarget,
    CoexCondaDependenciesField,
    CoexEntryPointField,
    CoexEntryPointsField,
    CoexEnvironmentFileField,
    CoexEnvironmentSourceField,
    CoexPlatformsField,
    CoexPypiDependenciesField,
    CoexResolveField,
)
from coex.util_rules import app, tool
from coex.util_rules.app import CoexAppLayer, CoexAppLayerRequest
from coex.util_rules.tool import CoexBuildError, CoexLibProcess, CoexLibResult
from coex_runtime.format import FormatError, parse_entry_point

logger = logging.getLogger(__name__)


def regenerate_command(resolve: str) -> str:
    return f"{bin_name()} generate-lockfiles --resolve={resolve}"


def check_resolve_name(coex: CoexSubsystem, resolve: str, who: str) -> str:
    """`who` names what asked for the resolve (a target address, or an option)."""
    if resolve not in coex.resolves:
        known = ", ".join(sorted(coex.resolves)) or "none"
        raise CoexBuildError(
            softwrap(
                f"""
                {who} uses the resolve {resolve!r}, which is not defined in `[coex].resolves`
                (known resolves: {known}). Fix: add it, e.g. `[coex].resolves =
                {{"{resolve}": "3rdparty/conda/{resolve}.lock"}}` in pants.toml, or set the
                target's `resolve` field to a known one.
                """
            )
        )
    return resolve


def lockfile_path(coex: CoexSubsystem, resolve: str, build_root: BuildRoot) -> str:
    """The resolve's lockfile from `[coex].resolves`, relative to the build root (Pants reads and
    writes only there). An absolute path inside the build root (e.g. from `%(buildroot)s`) is
    made relative; one outside it, or a path leaving it with `..`, is an error (the engine would
    otherwise panic on it)."""
    path = coex.resolves[resolve]
    rel = posixpath.relpath(posixpath.normpath(posixpath.join(build_root.path, path)),
                            build_root.path)
    if not path or rel in (".", "..") or rel.startswith("../"):
        raise CoexBuildError(
            softwrap(
                f"""
                The lockfile path of resolve {resolve!r} in `[coex].resolves`, {path!r}, is not
                a file inside the build root ({build_root.path}): Pants can only read and write
                lockfiles there. Fix: use a path relative to the build root, e.g.
                `[coex].resolves = {{"{resolve}": "3rdparty/conda/{resolve}.lock"}}`.
                """
            )
        )
    return rel


def platforms_of(field: CoexPlatformsField, coex: CoexSubsystem) -> tuple[str, ...]:
    """The target's platforms, or `[coex].platforms`, validated."""
    own = field.validated()
    if own is not None:
        return own
    if not coex.platforms:
        raise CoexBuildError(
            f"`[coex].platforms` is empty, and {field.address} sets no `platforms`: list at least "
            f"one platform, e.g. `[coex].platforms = [\"linux-64\"]`."
        )
    for platform in coex.platforms:
        check_platform(platform, origin="the `[coex].platforms` option")
    return tuple(dict.fromkeys(coex.platforms))


@dataclass(frozen=True)
class AllCoexBinaries:
    targets: tuple[Target, ...]


@rule(desc="Find coex_binary targets", level=LogLevel.DEBUG)
async def all_coex_binaries(all_targets: AllTargets) -> AllCoexBinaries:
    binaries = (t for t in all_targets if t.alias == CoexBinaryTarget.alias)
    return AllCoexBinaries(tuple(sorted(binaries, key=lambda t: t.address)))


@rule(desc="Read [coex].channel_locations", level=LogLevel.DEBUG)
async def coex_channel_locations(coex: CoexSubsystem, build_root: BuildRoot) -> ChannelLocations:
    try:
        return check_locations(build_root.path, coex.channel_locations.items())
    except CoexError as e:
        raise CoexBuildError(str(e))


@dataclass(frozen=True)
class LocalChannelsRequest:
    channels: tuple[str, ...]
    base_dir: str  # relative to the build root: what relative channel paths are relative to
    origin: str | None = None  # where they are written (default: `[coex].channels`)


@dataclass(frozen=True)
class LocalChannels:
    channels: tuple[str, ...]  # relative paths made absolute (`coex.lib.request.local_channel`)


@rule(desc="Find local conda channels", level=LogLevel.DEBUG)
async def local_channels(
    request: LocalChannelsRequest, build_root: BuildRoot, locations: ChannelLocations
) -> LocalChannels:
    base = os.path.join(build_root.path, request.base_dir)
    named = dict(locations.named)  # a name of `[coex].channel_locations` is never a path
    asked = [channel_directory(c, base) for c in request.channels if c.strip() not in named]
    inside = [os.path.relpath(p, build_root.path) for p in asked if p]
    paths = await Get(Paths, PathGlobs(p for p in inside if not p.startswith("..")))
    dirs = {os.path.join(build_root.path, d) for d in paths.dirs}
    origin = request.origin or "`[coex].channels`"
    return LocalChannels(
        tuple(
            c.strip() if c.strip() in named else local_channel(c, base, dirs.__contains__, origin)
            for c in request.channels
        )
    )


@dataclass(frozen=True)
class CoexResolveName:
    name: str


@dataclass(frozen=True)
class CoexResolveInputs:
    resolve: str
    lockfile_path: str
    request: SolveRequest
    target_specs: FrozenDict[Address, tuple[str, ...]]  # the specs each target itself gives
    # the PyPI requirements each target itself gives
    target_pypi: FrozenDict[Address, tuple[str, ...]] = FrozenDict()

    @property
    def empty(self) -> bool:
        """No target of the resolve gives any conda spec (nothing to lock)."""
        return not self.request.specs

    def require_specs(self) -> CoexResolveInputs:
        if self.empty:
            raise CoexBuildError(
                softwrap(
                    f"""
                    The resolve {self.resolve!r} has no conda specs: no `coex_binary` target of
                    it sets `environment_file` or `conda_dependencies`. Fix: give at least one of
                    its targets an environment (e.g. `conda_dependencies=["python 3.11.*"]`), or
                    remove the resolve from `[coex].resolves`.
                    """
                )
            )
        return self


@dataclass(frozen=True)
class CoexEnvironmentFileRequest:
    field: SourcesField  # a `coex_binary`'s `environment_file` or a `coex_environment`'s `source`
    origin: str  # what it is, e.g. "`environment_file` of src:app"


@dataclass(frozen=True)
class CoexEnvironmentFile:
    path: str  # relative to the build root
    origin: str  # the path and what it is, for messages
    specs: tuple[str, ...]
    channels: LocalChannelsRequest  # as written; relative paths are relative to the file
    pypi: tuple[str, ...] = ()  # its `pip:` requirements
    pip_options: PipOptions | None = None  # its `pip:` index options (find-links absolute)


@rule(desc="Read a conda environment file", level=LogLevel.DEBUG)
async def read_environment_file(
    request: CoexEnvironmentFileRequest, build_root: BuildRoot
) -> CoexEnvironmentFile:
    hydrated = await Get(HydratedSources, HydrateSourcesRequest(request.field))
    contents = await Get(DigestContents, Digest, hydrated.snapshot.digest)
    if not contents:
        address = request.field.address
        path = posixpath.join(address.spec_path, request.field.value or "")
        raise CoexBuildError(
            softwrap(
                f"""
                The {request.origin} is {path}, which does not exist. Fix the path (it is
                relative to the BUILD file's directory, {address.spec_path or 'the build root'}),
                or create the file. (If it does exist, Pants ignores it: a `.gitignore` or
                `[GLOBAL].pants_ignore` pattern matches it.)
                """
            )
        )
    content = contents[0]
    origin = f"{content.path} ({request.origin})"
    try:
        text = content.content.decode("utf-8")
    except UnicodeDecodeError:
        raise CoexBuildError(f"{origin} is not UTF-8 text: is it an environment.yml?")
    # (a relative `--find-links` is relative to the file, as with pip)
    env = parse_environment_text(
        text, origin, os.path.join(build_root.path, os.path.dirname(content.path))
    )
    return CoexEnvironmentFile(
        content.path,
        origin,
        tuple(env.specs),
        # a relative channel path is relative to the environment file, as with conda
        LocalChannelsRequest(tuple(env.channels), os.path.dirname(content.path), origin),
        tuple(env.pypi),
        env.pip_options,
    )


@dataclass(frozen=True)
class CoexScriptHeadersRequest:
    address: Address
    commands: tuple[str, ...]  # its entry points, as written


@dataclass(frozen=True)
class CoexScriptHeaders:
    headers: tuple[ScriptHeader, ...]  # of the app-layer files its entry points run


@rule(desc="Read the environment headers of a coex_binary's scripts", level=LogLevel.DEBUG)
async def coex_script_headers(request: CoexScriptHeadersRequest) -> CoexScriptHeaders:
    layer = await Get(CoexAppLayer, CoexAppLayerRequest(request.address))
    files = set(layer.snapshot.files)
    paths = set()
    for text in request.commands:
        try:
            ep = parse_entry_point(text, files)
        except FormatError:
            continue  # (the build reports it)
        if ep["kind"] == "app":
            paths.add(ep["path"])
        elif ep["kind"] == "command":
            paths.update(ep["argv"][i] for i in ep["app_args"])
    if not paths:
        return CoexScriptHeaders(())
    contents = await Get(
        DigestContents, DigestSubset(layer.snapshot.digest, PathGlobs(sorted(paths)))
    )
    headers = []
    for content in contents:
        try:
            header = parse_script(content.content.decode("utf-8", "surrogateescape"), content.path)
        except CoexError as e:
            raise CoexBuildError(f"{e}\n(The script is an entry point of {request.address}.)")
        if header is not None:
            headers.append(header)
    return CoexScriptHeaders(tuple(headers))


def join_script_header(
    address: Address, header: ScriptHeader, own: dict[str, tuple[str, ...]],
    platforms: tuple[str, ...],
) -> str:
    """Check a script header of the target `address` against the target's own specs (origin ->
    specs) and platforms; return the header's origin for messages."""
    origin = f"{header.name}, a script {address} runs"
    for spec, line in zip(header.specs, header.spec_lines):
        name = spec_package(spec)
        other = next(((s, where) for where, specs in own.items() for s in specs
                      if spec_package(s) == name and s != spec and name not in (s, spec)), None)
        if other:  # (a bare name next to a constrained spec is no conflict)
            raise CoexBuildError(
                softwrap(
                    f"""
                    The `coex_binary` {address} asks for `{other[0]}` in {other[1]} and for
                    `{spec}` in {header.where(line)} ({header.name}), a script it runs: keep one
                    of them (remove the spec from the header or from the target).
                    """
                )
            )
    if header.platforms is not None:
        missing = [p for p in platforms if p not in header.platforms]
        if missing:
            raise CoexBuildError(
                f"The `coex_binary` {address} builds for {', '.join(missing)}, which "
                f"{header.name} does not list in its `platforms` "
                f"({', '.join(header.platforms)}): add it there, or set the target's `platforms`."
            )
    for channel in header.channels:
        c = channel.strip()
        if channel_directory(c, "/") and not c.startswith("/") and (
                c.startswith((".", "~")) or ("/" in c and "/label/" not in c)):
            raise CoexBuildError(
                f"{header.name} (a script {address} runs) names the channel {channel!r}, a "
                f"relative path: in Pants builds a script's channels are names or URLs (its "
                f"directory in the app layer is not the repository's). Put the local channel in "
                f"`[coex].channels` or a `coex_environment` file, or write its URL."
            )
    return origin


def entry_point_commands(t: Target) -> tuple[str, ...]:
    one = t[CoexEntryPointField].value
    many = t[CoexEntryPointsField].value or {}
    return tuple(v for v in [one, *many.values()] if v)


def platform_specs(
    by_target: dict[Address, tuple[str, ...]], by_platform: dict[Address, tuple[str, ...]],
    pypi_by_target: dict[Address, tuple[str, ...]] | None = None,
) -> list[PlatformSpecs]:
    """What each platform is solved for: the specs (and PyPI requirements) of the targets that
    build for it (a target without specs of its own takes the whole resolve), so that one target
    adding a platform does not make the other targets' specs be solved for it."""
    pypi_by_target = pypi_by_target or {}
    everything = {s for specs in by_target.values() for s in specs}
    every_pypi = {r for reqs in pypi_by_target.values() for r in reqs}
    out = []
    for platform in sorted({p for plats in by_platform.values() for p in plats}):
        targets = sorted(a for a, plats in by_platform.items() if platform in plats)
        specs = set().union(*(by_target[a] or everything for a in targets))
        pypi = set().union(*(
            pypi_by_target.get(a, ()) if by_target[a] or pypi_by_target.get(a) else every_pypi
            for a in targets))
        origin = f"the targets that build for {platform}: {', '.join(map(str, targets))}"
        out.append(PlatformSpecs(platform, tuple(sorted(specs)), origin, tuple(sorted(pypi))))
    return out


def pypi_settings(
    coex: CoexSubsystem, build_root: BuildRoot, options: list[tuple[str, PipOptions]]
) -> PypiSettings:
    """`[coex].pypi_indexes` and `[coex].pypi_find_links` (relative to the build root), with the
    index options of the environment files' `pip:` sections."""
    links = [f if "://" in f or f.startswith("file:") else os.path.join(build_root.path, f)
             for f in coex.pypi_find_links]
    try:
        indexes, find_links = merge_options(options, tuple(coex.pypi_indexes), links)
    except CoexError as e:
        raise CoexBuildError(str(e))
    return PypiSettings(indexes, find_links)


@rule(desc="Gather the conda specs of a coex resolve", level=LogLevel.DEBUG)
async def coex_resolve_inputs(
    name: CoexResolveName,
    binaries: AllCoexBinaries,
    coex: CoexSubsystem,
    build_root: BuildRoot,
    locations: ChannelLocations,
) -> CoexResolveInputs:
    resolve = check_resolve_name(coex, name.name, f"The request for resolve {name.name!r}")
    members = [t for t in binaries.targets if t[CoexResolveField].normalized_value(coex) == resolve]
    closures = await MultiGet(
        Get(TransitiveTargets, TransitiveTargetsRequest([t.address])) for t in members
    )
    # each binary's environment files: its own `environment_file`, then those of the
    # `coex_environment` targets among its dependencies (in address order)
    env_requests = [
        [
            *(
                [CoexEnvironmentFileRequest(t[CoexEnvironmentFileField],
                                            f"`environment_file` of {t.address}")]
                if t[CoexEnvironmentFileField].value is not None
                else []
            ),
            *(
                CoexEnvironmentFileRequest(d[CoexEnvironmentSourceField],
                                           f"`coex_environment` {d.address}")
                for d in sorted(closure.dependencies, key=lambda d: d.address)
                if d.has_field(CoexEnvironmentSourceField)
            ),
        ]
        for t, closure in zip(members, closures)
    ]
    unique = list(dict.fromkeys(r for requests in env_requests for r in requests))
    env_files = dict(
        zip(unique, await MultiGet(Get(CoexEnvironmentFile, CoexEnvironmentFileRequest, r)
                                   for r in unique))
    )

    scripts = await MultiGet(
        Get(CoexScriptHeaders, CoexScriptHeadersRequest(t.address, entry_point_commands(t)))
        for t in members
    )

    sources: dict[str, tuple[str, ...]] = {}  # origin -> specs
    pypi_sources: dict[str, tuple[str, ...]] = {}  # origin -> PyPI requirements
    pip_options: list[tuple[str, PipOptions]] = []
    pypi_by_target: dict[Address, tuple[str, ...]] = {}
    env_channels: list[LocalChannelsRequest] = []
    by_platform: dict[Address, tuple[str, ...]] = {}  # the platforms each target builds for
    by_target: dict[Address, tuple[str, ...]] = {}
    for t, requests, headers in zip(members, env_requests, scripts):
        mine: dict[str, tuple[str, ...]] = {}  # origin -> specs, of this target itself
        my_pypi: dict[str, tuple[str, ...]] = {}
        for env in (env_files[r] for r in requests):
            mine[env.origin] = env.specs
            env_channels.append(env.channels)
            if env.pypi:
                my_pypi[f"{env.origin} `pip:`"] = env.pypi
            if env.pip_options is not None:
                pip_options.append((env.origin, env.pip_options))
        pypi_inline = t[CoexPypiDependenciesField].value or ()
        if pypi_inline:
            origin = f"the `pypi_dependencies` of {t.address}"
            try:
                my_pypi[origin] = tuple(clean_requirements(pypi_inline, origin))
            except CoexError as e:
                raise CoexBuildError(str(e))
        pypi_sources.update(my_pypi)
        pypi_by_target[t.address] = tuple(dict.fromkeys(r for rs in my_pypi.values() for r in rs))
        inline = t[CoexCondaDependenciesField].value or ()
        if inline:
            origin = f"the `conda_dependencies` of {t.address}"
            mine[origin] = tuple(clean_specs(inline, origin))
        by_platform[t.address] = platforms_of(t[CoexPlatformsField], coex)
        for header in headers.headers:  # the scripts it runs: their headers join its specs
            origin = join_script_header(t.address, header, dict(mine), by_platform[t.address])
            mine[origin] = header.specs
            if header.pypi:  # its `pypi-dependencies` join the target's PyPI requirements
                pypi_sources[origin] = header.pypi
                pypi_by_target[t.address] = tuple(
                    dict.fromkeys(pypi_by_target[t.address] + header.pypi))
            env_channels.append(LocalChannelsRequest(header.channels, "", origin))
        sources.update(mine)
        own = [s for specs in mine.values() for s in specs]
        if not own and t[CoexResolveField].value is None:
            raise CoexBuildError(
                softwrap(
                    f"""
                    The `coex_binary` {t.address} has no conda environment: set
                    `environment_file='environment.yml'` and/or `conda_dependencies=[...]`, list
                    a `coex_environment` target in its `dependencies`, or name the `resolve`
                    whose environment (the specs of its other targets) it uses.
                    """
                )
            )
        by_target[t.address] = tuple(dict.fromkeys(own))
    *from_files, from_option = await MultiGet(
        Get(LocalChannels, LocalChannelsRequest, r)
        for r in [*dict.fromkeys(env_channels), LocalChannelsRequest(tuple(coex.channels), "")]
    )
    request = solve_request(
        resolve,
        sources.items(),
        [c for chans in from_files for c in chans.channels] or from_option.channels,
        [p for plats in by_platform.values() for p in plats] or coex.platforms,
        coex.virtual_packages,
        origin=f"resolve {resolve!r}: " + ("; ".join(sources) or "no targets"),
        locations=locations,
        per_platform=platform_specs(by_target, by_platform, pypi_by_target),
        pypi_sources=pypi_sources.items(),
        pypi_settings=pypi_settings(coex, build_root, pip_options),
    )
    path = lockfile_path(coex, resolve, build_root)
    return CoexResolveInputs(
        resolve, path, request, FrozenDict(by_target), FrozenDict(pypi_by_target)
    )


@dataclass(frozen=True)
class CoexLockfile:
    resolve: str
    path: str
    digest: Digest  # the lockfile at `path`
    sha256: str  # of the lockfile's bytes
    header: LockHeader


@rule(desc="Read a coex lockfile", level=LogLevel.DEBUG)
async def coex_lockfile(
    name: CoexResolveName, coex: CoexSubsystem, build_root: BuildRoot
) -> CoexLockfile:
    resolve = check_resolve_name(coex, name.name, f"The request for resolve {name.name!r}")
    path = lockfile_path(coex, resolve, build_root)
    inputs, snapshot = await MultiGet(
        Get(CoexResolveInputs, CoexResolveName, name), Get(Snapshot, PathGlobs([path]))
    )
    inputs.require_specs()
    if path not in snapshot.files:
        raise CoexBuildError(
            softwrap(
                f"""
                The lockfile for resolve {resolve!r} does not exist: {path} (from
                `[coex].resolves`). Generate it with `{regenerate_command(resolve)}`. (If it
                does exist, Pants ignores it: a `.gitignore` or `[GLOBAL].pants_ignore` pattern
                matches it, so builds cannot read it. Un-ignore it for Pants, e.g.
                `[GLOBAL].pants_ignore.add = ["!/{path}"]` in pants.toml, or move it.)
                """
            )
        )
    contents = await Get(DigestContents, Digest, snapshot.digest)
    text = contents[0].content.decode("utf-8", "replace")
    try:
        header = parse_header(text, origin=f"{path} (the lockfile of resolve {resolve!r})")
    except CoexError as e:
        raise CoexBuildError(f"{e}\nRegenerate it with `{regenerate_command(resolve)}`.")
    reason = stale_reason(header, inputs.request)
    if reason:
        raise CoexBuildError(
            f"The lockfile for resolve {resolve!r} is stale: run `{regenerate_command(resolve)}`. "
            f"({path} no longer matches what the resolve's targets ask for: {reason}.)"
        )
    legacy = absolute_inside_root(header.channels, inputs.request.locations)
    if legacy:
        logger.warning(
            softwrap(
                f"""
                The lockfile {path} of resolve {resolve!r} records the local channel(s)
                {', '.join(legacy)} by absolute path (it was written by an older coex), so it
                fits only this checkout. Run `{regenerate_command(resolve)}` to record them
                relative to the build root, the same in every checkout.
                """
            )
        )
    sha256 = hashlib.sha256(contents[0].content).hexdigest()
    return CoexLockfile(resolve, path, snapshot.digest, sha256, header)


@dataclass(frozen=True)
class CoexLockedPlatformRequest:
    resolve: str
    platform: str
    roots: tuple[str, ...] = ()  # only the packages these specs need; all when empty
    pypi_roots: tuple[str, ...] = ()  # only the wheels these requirements need (see `entries`)


@rule(desc="List the locked conda packages of a platform", level=LogLevel.DEBUG)
async def coex_locked_platform(request: CoexLockedPlatformRequest) -> LockedPlatform:
    lock = await Get(CoexLockfile, CoexResolveName(request.resolve))
    if request.platform not in lock.header.platforms:
        raise CoexBuildError(
            softwrap(
                f"""
                The lockfile of resolve {request.resolve!r} ({lock.path}) has no platform
                {request.platform!r} (it locks {', '.join(lock.header.platforms) or 'none'}),
                which a target of the resolve builds for. Run
                `{regenerate_command(request.resolve)}`.
                """
            )
        )
    roots = [arg for root in request.roots for arg in ("--root", root)]
    roots += [arg for root in request.pypi_roots for arg in ("--pypi-root", root)]
    result = await Get(
        CoexLibResult,
        CoexLibProcess(
            ("entries", "--lock", lock.path, "--platform", request.platform, *roots,
             "--out", "entries.json"),
            description=f"List locked conda packages of {request.resolve} for {request.platform}",
            failure=f"Reading the lockfile {lock.path} of resolve {request.resolve!r} failed.",
            input_digest=lock.digest,
            output_files=("entries.json",),
        ),
    )
    contents = await Get(DigestContents, Digest, result.output_digest)
    return LockedPlatform.from_json(json.loads(contents[0].content))


def rules():
    return [*collect_rules(), *app.rules(), *tool.rules()]
