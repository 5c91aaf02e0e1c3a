"""Resolves: what each one should lock (gathered from its targets), and its lockfile, checked.

* `CoexResolveInputs` for a resolve name: the solve request (`coex.lib solve --request`'s JSON:
  resolve, specs, channels, platforms, virtual_packages, origin) built from every `coex_binary`
  of that resolve, in address order. `generate-lockfiles` solves it; `package` hashes it with
  `coex.lib.lockfile.inputs_sha256` and compares with the lockfile's header (staleness).
* `CoexLockfile` for a resolve name: the lockfile digest, read from `[coex].resolves`, with a
  clear error when the resolve is unknown, the lockfile is missing, not a coex lockfile, or stale.
* `CoexLockedPlatform` for (resolve, platform): the locked packages in install order, from
  `coex.lib entries` run in a process (cached by the lockfile's digest).
"""
from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass

from pants.base.build_root import BuildRoot
from pants.engine.fs import Digest, DigestContents, PathGlobs, Snapshot
from pants.engine.rules import Get, MultiGet, collect_rules, rule
from pants.engine.target import AllTargets, HydratedSources, HydrateSourcesRequest, Target
from pants.util.docutil import bin_name
from pants.util.logging import LogLevel
from pants.util.strutil import softwrap

from coex.lib.envspec import check_specs, parse_environment_text
from coex.lib.errors import CoexError
from coex.lib.lockfile import spec_name  # py-rattler's MatchSpec name
from coex.lib.lockfile import inputs_sha256, local_channel, parse_header, stale_reason
from coex.lib.platforms import check_platform
from coex.subsystem import CoexSubsystem
from coex.target_types import (
    CoexBinaryTarget,
    CoexCondaDependenciesField,
    CoexEnvironmentFileField,
    CoexPlatformsField,
    CoexResolveField,
)
from coex.util_rules.tool import CoexBuildError, CoexLibProcess, CoexLibResult


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
    root = os.path.realpath(build_root.path)
    full = os.path.normpath(os.path.join(root, path))
    rel = os.path.relpath(full, root)
    if not path or rel == "." or rel.startswith(".." + os.sep) or rel == "..":
        raise CoexBuildError(
            softwrap(
                f"""
                The lockfile path of resolve {resolve!r} in `[coex].resolves`, {path!r}, is not
                a file inside the build root ({root}): Pants can only read and write lockfiles
                there. Fix: use a path relative to the build root, e.g.
                `[coex].resolves = {{"{resolve}": "3rdparty/conda/{resolve}.lock"}}`.
                """
            )
        )
    return rel.replace(os.sep, "/")


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
        try:
            check_platform(platform, origin="the `[coex].platforms` option")
        except CoexError as e:
            raise CoexBuildError(str(e))
    return tuple(dict.fromkeys(coex.platforms))


@dataclass(frozen=True)
class AllCoexBinaries:
    targets: tuple[Target, ...]


@rule(desc="Find coex_binary targets", level=LogLevel.DEBUG)
async def all_coex_binaries(all_targets: AllTargets) -> AllCoexBinaries:
    binaries = (t for t in all_targets if t.alias == CoexBinaryTarget.alias)
    return AllCoexBinaries(tuple(sorted(binaries, key=lambda t: t.address)))


@dataclass(frozen=True)
class CoexResolveName:
    name: str


@dataclass(frozen=True)
class CoexResolveInputs:
    resolve: str
    lockfile_path: str
    request_json: str  # canonical JSON of the solve request
    inputs_sha256: str
    target_specs_json: str = "{}"  # {address: [the specs that target itself gives]}

    @property
    def request(self) -> dict:
        return json.loads(self.request_json)

    def target_specs(self, address) -> tuple[str, ...]:
        return tuple(json.loads(self.target_specs_json).get(str(address), ()))

    @property
    def empty(self) -> bool:
        """No target of the resolve gives any conda spec (nothing to lock)."""
        return not self.inputs_sha256

    def require_specs(self) -> "CoexResolveInputs":
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


@rule(desc="Gather the conda specs of a coex resolve", level=LogLevel.DEBUG)
async def coex_resolve_inputs(
    name: CoexResolveName, binaries: AllCoexBinaries, coex: CoexSubsystem, build_root: BuildRoot
) -> CoexResolveInputs:
    resolve = check_resolve_name(coex, name.name, f"The request for resolve {name.name!r}")
    members = [t for t in binaries.targets if t[CoexResolveField].normalized_value(coex) == resolve]
    env_files = [t for t in members if t[CoexEnvironmentFileField].value is not None]
    hydrated = await MultiGet(
        Get(HydratedSources, HydrateSourcesRequest(t[CoexEnvironmentFileField])) for t in env_files
    )
    contents = await MultiGet(
        Get(DigestContents, Digest, h.snapshot.digest) for h in hydrated
    )
    env_text = {t.address: c[0] for t, c in zip(env_files, contents)}

    specs: list[str] = []
    env_channels: list[str] = []
    origins: list[str] = []
    platforms: list[str] = []
    by_target: dict[str, list[str]] = {}
    for t in members:
        own = by_target.setdefault(str(t.address), [])
        file_content = env_text.get(t.address)
        if file_content is not None:
            origin = f"{file_content.path} (`environment_file` of {t.address})"
            try:
                env = parse_environment_text(file_content.content.decode("utf-8"), origin)
            except UnicodeDecodeError:
                raise CoexBuildError(f"{origin} is not UTF-8 text: is it an environment.yml?")
            except CoexError as e:
                raise CoexBuildError(str(e))
            specs.extend(env.specs)
            own.extend(env.specs)
            # a relative channel path is relative to the environment file, as with conda
            env_dir = os.path.join(build_root.path, os.path.dirname(file_content.path))
            env_channels.extend(local_channel(c, env_dir) for c in env.channels)
            origins.append(origin)
        inline = t[CoexCondaDependenciesField].value or ()
        if inline:
            origin = f"the `conda_dependencies` of {t.address}"
            try:
                checked = check_specs(list(inline), origin)
            except CoexError as e:
                raise CoexBuildError(str(e))
            specs.extend(checked)
            own.extend(checked)
            origins.append(origin)
        platforms.extend(platforms_of(t[CoexPlatformsField], coex))
    if not members:
        platforms.extend(coex.platforms)
    request = {
        "resolve": resolve,
        "specs": sorted(set(specs)),
        "channels": list(dict.fromkeys(env_channels))
        or [local_channel(c, build_root.path) for c in coex.channels],
        "platforms": sorted(set(platforms)),
        "virtual_packages": list(coex.virtual_packages),
        "origin": f"resolve {resolve!r}: " + ("; ".join(origins) if origins else "no targets"),
    }
    if not request["specs"]:
        return CoexResolveInputs(
            resolve, lockfile_path(coex, resolve, build_root), json.dumps(request), ""
        )
    request_json = json.dumps(request, sort_keys=True)
    try:
        digest = inputs_sha256(request)
    except CoexError as e:
        raise CoexBuildError(str(e))
    return CoexResolveInputs(
        resolve,
        lockfile_path(coex, resolve, build_root),
        request_json,
        digest,
        json.dumps(by_target, sort_keys=True),
    )


@dataclass(frozen=True)
class CoexLockfile:
    resolve: str
    path: str
    digest: Digest  # the lockfile at `path`
    sha256: str  # of the lockfile's bytes
    platforms: tuple[str, ...]
    header_json: str


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
    if path not in snapshot.files and os.path.isfile(os.path.join(build_root.path, path)):
        # (a look at the disk, only to explain the failure)
        raise CoexBuildError(
            softwrap(
                f"""
                The lockfile for resolve {resolve!r} ({path}) exists, but Pants ignores it (a
                `.gitignore` or `[GLOBAL].pants_ignore` pattern matches it), so builds cannot
                read it. Fix: un-ignore it for Pants, e.g. `[GLOBAL].pants_ignore.add =
                ["!/{path}"]` in pants.toml, or move it (`[coex].resolves`).
                """
            )
        )
    if path not in snapshot.files:
        raise CoexBuildError(
            softwrap(
                f"""
                The lockfile for resolve {resolve!r} does not exist: {path} (from
                `[coex].resolves`). Generate it with `{regenerate_command(resolve)}`.
                """
            )
        )
    contents = await Get(DigestContents, Digest, snapshot.digest)
    text = contents[0].content.decode("utf-8", "replace")
    sha256 = hashlib.sha256(contents[0].content).hexdigest()
    try:
        header = parse_header(text, origin=f"{path} (the lockfile of resolve {resolve!r})")
    except CoexError as e:
        raise CoexBuildError(f"{e}\nRegenerate it with `{regenerate_command(resolve)}`.")
    if header.get("inputs_sha256") != inputs.inputs_sha256:
        reason = stale_reason(header, inputs.request)
        raise CoexBuildError(
            f"The lockfile for resolve {resolve!r} is stale: run `{regenerate_command(resolve)}`. "
            f"({path} no longer matches what the resolve's targets ask for: {reason}.)"
        )
    return CoexLockfile(
        resolve,
        path,
        snapshot.digest,
        sha256,
        tuple(header.get("platforms") or ()),
        json.dumps(header, sort_keys=True),
    )


@dataclass(frozen=True)
class CondaPackage:
    """One locked package of one platform, as `coex.lib entries` describes it."""

    name: str
    filename: str
    subdir: str
    url: str
    sha256: str
    size: int
    entry_json: str  # the whole entries.json record (canonical JSON), handed to assemble

    @property
    def entry(self) -> dict:
        return json.loads(self.entry_json)


def environment_subset(
    packages: tuple[CondaPackage, ...], root_specs: tuple[str, ...]
) -> tuple[CondaPackage, ...]:
    """The packages that `root_specs` (and the runtime's `zstd`) need: their closure over the
    locked packages' `depends`, in the lock's install order. No roots: the whole environment."""
    if not root_specs:
        return packages
    by_name = {p.name: p for p in packages}
    todo = [spec_name(s) for s in root_specs] + ["zstd"]
    keep: set[str] = set()
    while todo:
        name = todo.pop()
        if not name or name in keep or name not in by_name:
            continue
        keep.add(name)
        todo.extend(spec_name(dep) for dep in by_name[name].entry.get("depends") or ())
    return tuple(p for p in packages if p.name in keep)


@dataclass(frozen=True)
class CoexLockedPlatformRequest:
    resolve: str
    platform: str


@dataclass(frozen=True)
class CoexLockedPlatform:
    resolve: str
    platform: str
    packages: tuple[CondaPackage, ...]  # install (topological) order
    virtual_packages: tuple[str, ...]
    zstd_filename: str


@rule(desc="List the locked conda packages of a platform", level=LogLevel.DEBUG)
async def coex_locked_platform(request: CoexLockedPlatformRequest) -> CoexLockedPlatform:
    lock = await Get(CoexLockfile, CoexResolveName(request.resolve))
    if request.platform not in lock.platforms:
        raise CoexBuildError(
            softwrap(
                f"""
                The lockfile of resolve {request.resolve!r} ({lock.path}) has no platform
                {request.platform!r} (it locks {', '.join(lock.platforms) or 'none'}), which a
                target of the resolve builds for. Run `{regenerate_command(request.resolve)}`.
                """
            )
        )
    result = await Get(
        CoexLibResult,
        CoexLibProcess,
        CoexLibProcess.of(
            ["entries", "--lock", lock.path, "--platform", request.platform,
             "--out", "entries.json"],
            description=f"List locked conda packages of {request.resolve} for {request.platform}",
            failure=f"Reading the lockfile {lock.path} of resolve {request.resolve!r} failed.",
            input_digest=lock.digest,
            output_files=["entries.json"],
        ),
    )
    contents = await Get(DigestContents, Digest, result.output_digest)
    data = json.loads(contents[0].content)
    packages = tuple(
        CondaPackage(
            name=p["name"],
            filename=p["filename"],
            subdir=p["subdir"],
            url=p["url"],
            sha256=p["sha256"],
            size=int(p["size"]),
            entry_json=json.dumps(p, sort_keys=True),
        )
        for p in data["packages"]
    )
    return CoexLockedPlatform(
        request.resolve,
        request.platform,
        packages,
        tuple(data.get("virtual_packages") or ()),
        data.get("zstd_filename") or "",
    )


def rules():
    return collect_rules()
