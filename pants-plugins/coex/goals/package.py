"""`pants package` and `pants run` for `coex_binary`.

package: lockfile (checked fresh) -> per platform: locked packages (`coex.lib entries`) -> one
digest per package (fetched by URL + sha256/size; `.tar.bz2` transcoded) -> app layer -> one
assembly process -> `<output_path>`. run: build only the host platform's archive, then exec it
with the command-line arguments.
"""
from __future__ import annotations

import os
import posixpath
from dataclasses import dataclass

from pants.core.goals.package import BuiltPackage, BuiltPackageArtifact, PackageFieldSet
from pants.core.goals.run import RunFieldSet, RunInSandboxBehavior, RunRequest
from pants.core.util_rules.environments import EnvironmentField
from pants.engine.addresses import Address
from pants.engine.fs import Digest, MergeDigests
from pants.engine.platform import Platform
from pants.engine.rules import Get, MultiGet, collect_rules, rule
from pants.engine.unions import UnionRule
from pants.util.logging import LogLevel
from pants.util.strutil import pluralize, softwrap

from coex.lib.records import AssembleSpec, BuildRecord, LockedPlatform, LockedWheel
from coex.subsystem import CoexSubsystem
from coex.target_types import (
    CoexDefaultEntryPointField,
    CoexEntryPointField,
    CoexEntryPointsField,
    CoexEnvField,
    CoexOutputPathField,
    CoexPlatformsField,
    CoexResolveField,
    coex_entry_points,
)
from coex.util_rules import app, assemble, packages, resolve
from coex.util_rules.app import CoexAppLayer, CoexAppLayerRequest
from coex.util_rules.assemble import APP_DIR, PKGS_DIR, CoexArchive, CoexAssembleRequest
from coex.util_rules.packages import (
    ArchivablePackage,
    ArchivablePackageRequest,
    ArchivableWheel,
)
from coex.util_rules.resolve import (
    AllCoexBinaries,
    CoexLockedPlatformRequest,
    CoexLockfile,
    CoexResolveInputs,
    CoexResolveName,
    check_resolve_name,
    platforms_of,
)
from coex.util_rules.tool import CoexBuildError
from coex_runtime.cache import env_dir_name

HOST_PLATFORMS = {
    Platform.linux_x86_64: "linux-64",
    Platform.linux_arm64: "linux-aarch64",
    Platform.macos_x86_64: "osx-64",
    Platform.macos_arm64: "osx-arm64",
}


@dataclass(frozen=True)
class CoexBinaryFieldSet(PackageFieldSet, RunFieldSet):
    required_fields = (CoexResolveField,)
    run_in_sandbox_behavior = RunInSandboxBehavior.RUN_REQUEST_HERMETIC

    entry_point: CoexEntryPointField
    entry_points: CoexEntryPointsField
    default_entry_point: CoexDefaultEntryPointField
    resolve: CoexResolveField
    platforms: CoexPlatformsField
    env: CoexEnvField
    output_path: CoexOutputPathField
    environment: EnvironmentField


def output_paths(output_path: CoexOutputPathField, platforms: tuple[str, ...]) -> dict[str, str]:
    """{platform: path under dist/}: one archive, or `<stem>-<platform><ext>` per platform."""
    base = output_path.value_or_default(file_ending="coex")
    if output_path.value is not None:
        if base.endswith("/"):  # a directory: the default file name in it
            base += f"{output_path.address.target_name}.coex"
        norm = posixpath.normpath(base)
        if base.startswith("/") or norm == ".." or norm.startswith("../") or norm == ".":
            raise CoexBuildError(
                f"The `output_path` {output_path.value!r} of {output_path.address} is not a file "
                f"path inside the dist dir: give a relative path such as "
                f"'bin/{output_path.address.target_name}.coex' (it is relative to `--distdir`)."
            )
        base = norm
    if len(platforms) == 1:
        return {platforms[0]: base}
    stem, ext = os.path.splitext(base)
    return {p: f"{stem}-{p}{ext}" for p in platforms}


def check_output_path_collisions(
    address: Address, mine: dict[str, str], binaries: AllCoexBinaries, coex: CoexSubsystem
) -> None:
    wanted = set(mine.values())
    for other in binaries.targets:
        if other.address == address:
            continue
        other_platforms = platforms_of(other[CoexPlatformsField], coex)
        theirs = output_paths(other[CoexOutputPathField], other_platforms)
        clash = sorted(wanted.intersection(theirs.values()))
        if clash:
            raise CoexBuildError(
                softwrap(
                    f"""
                    The `coex_binary` targets {address} and {other.address} would both write
                    {clash[0]} under the dist dir. Fix: set a distinct `output_path` on one of
                    them (or rename a target).
                    """
                )
            )


@dataclass(frozen=True)
class CoexBuildRequest:
    """Build the archives of `field_set` for `only` of its platforms (all when empty): `pants run`
    builds just the host's."""

    field_set: CoexBinaryFieldSet
    only: tuple[str, ...] = ()


@rule(desc="Package a coex_binary", level=LogLevel.DEBUG)
async def package_coex_binary(field_set: CoexBinaryFieldSet) -> BuiltPackage:
    return await Get(BuiltPackage, CoexBuildRequest(field_set))


@rule(desc="Build coex archives", level=LogLevel.DEBUG)
async def build_coex_binary(
    request: CoexBuildRequest, coex: CoexSubsystem, binaries: AllCoexBinaries
) -> BuiltPackage:
    field_set = request.field_set
    address = field_set.address
    resolve = check_resolve_name(
        coex, field_set.resolve.normalized_value(coex), f"The target {address}"
    )
    all_platforms = platforms_of(field_set.platforms, coex)
    paths = output_paths(field_set.output_path, all_platforms)
    check_output_path_collisions(address, paths, binaries, coex)
    platforms = tuple(p for p in all_platforms if not request.only or p in request.only)
    entry_points = coex_entry_points(
        address, field_set.entry_point, field_set.entry_points, field_set.default_entry_point
    )

    lock, inputs, app = await MultiGet(
        Get(CoexLockfile, CoexResolveName(resolve)),
        Get(CoexResolveInputs, CoexResolveName(resolve)),
        Get(CoexAppLayer, CoexAppLayerRequest(address)),
    )
    build = BuildRecord(resolve, lock.sha256, str(address), "pants coex_binary", lock.path)
    # A binary carries the part of the resolve its own specs need (as a pex takes its
    # requirements' subset of a Python lockfile); one that gives no specs carries all of it.
    own_specs = inputs.target_specs.get(address, ())
    own_pypi = inputs.target_pypi.get(address, ())
    locked = await MultiGet(
        Get(
            LockedPlatform,
            CoexLockedPlatformRequest(
                resolve, p, tuple(sorted(set(own_specs))), tuple(sorted(set(own_pypi)))
            ),
        )
        for p in platforms
    )
    flat = [(i, p) for i, lp in enumerate(locked) for p in lp.packages]
    prepared_flat = await MultiGet(
        Get(ArchivablePackage, ArchivablePackageRequest(p, coex.transcode_zstd_level))
        for _, p in flat
    )
    prepared = [
        tuple(a for (i, _), a in zip(flat, prepared_flat) if i == k) for k in range(len(locked))
    ]
    flat_wheels = [(i, w) for i, lp in enumerate(locked) for w in lp.wheels]
    wheels_flat = await MultiGet(Get(ArchivableWheel, LockedWheel, w) for _, w in flat_wheels)
    wheels = [
        tuple(a for (i, _), a in zip(flat_wheels, wheels_flat) if i == k)
        for k in range(len(locked))
    ]
    env = tuple((field_set.env.value or {}).items())
    archives = await MultiGet(
        Get(
            CoexArchive,
            CoexAssembleRequest(
                f"{address} ({lp.platform})",
                AssembleSpec(lp.platform, tuple(p.prepared(PKGS_DIR) for p in pkgs), entry_points,
                             build, APP_DIR, env, own_specs or inputs.request.specs,
                             wheels=tuple(w.prepared(PKGS_DIR) for w in whls)),
                tuple(p.digest for p in pkgs) + tuple(w.digest for w in whls),
                app.snapshot.digest,
                paths[lp.platform],
            ),
        )
        for lp, pkgs, whls in zip(locked, prepared, wheels)
    )
    digest = await Get(Digest, MergeDigests(a.digest for a in archives))
    artifacts = tuple(
        BuiltPackageArtifact(
            a.path,
            extra_log_lines=(
                f"    {lp.platform}: {len(pkgs)} of the {lp.locked} conda packages of "
                f"resolve {resolve}, "
                + (f"{len(lp.wheels)} of its {lp.wheels_locked} PyPI wheels, " if lp.wheels else "")
                + f"{pluralize(len(app.snapshot.files), 'app file')}, {a.size / 1e6:.1f} MB",
                f"    archive {a.archive_id[:16]}, installs into <coex cache>/envs/{env_dir_name(a.env_id)}",
            ),
        )
        for a, lp, pkgs in zip(archives, locked, prepared)
    )
    return BuiltPackage(digest, artifacts)


@rule(desc="Run a coex_binary", level=LogLevel.DEBUG)
async def run_coex_binary(
    field_set: CoexBinaryFieldSet, platform: Platform, coex: CoexSubsystem
) -> RunRequest:
    host = HOST_PLATFORMS.get(platform)
    by_platform = output_paths(field_set.output_path, platforms_of(field_set.platforms, coex))
    relpath = by_platform.get(host) if host else None
    if relpath is None:
        raise CoexBuildError(
            f"Cannot run {field_set.address} here: it builds for "
            f"{', '.join(sorted(by_platform))}, and this machine is {host or platform.value}. "
            f"Add {host!r} to its `platforms` to run it with `pants run`."
        )
    built = await Get(BuiltPackage, CoexBuildRequest(field_set, (host,)))
    return RunRequest(digest=built.digest, args=(os.path.join("{chroot}", relpath),))


def rules():
    return (
        *collect_rules(),
        *app.rules(),
        *assemble.rules(),
        *packages.rules(),
        *resolve.rules(),
        UnionRule(PackageFieldSet, CoexBinaryFieldSet),
        *CoexBinaryFieldSet.rules(),
    )
