"""`pants generate-lockfiles` for coex resolves (the three-union protocol, as the javascript
backend does it): known resolve names come from `[coex].resolves`; each requested resolve's
specs are gathered from its `coex_binary` targets (`CoexResolveInputs`); `coex.lib solve` runs in
a process that is never memoized across runs (`ProcessCacheScope.PER_SESSION`), since a channel
may have changed since the last solve.

Lockfiles are in the dependency graph, as the Python backend's are in 2.17: every resolve of
`[coex].resolves` gets a synthetic `_lockfiles` target (`_coex_<resolve>_lockfile`, declared in
the lockfile's directory), and every `coex_binary` depends on its resolve's lockfile (an inferred
dependency). So `--changed-since=... --changed-dependents=transitive` marks the binaries of a
resolve whose lockfile changed, and CI rebuilds their archives.
"""
from __future__ import annotations

import itertools
import json
import logging
import os
from dataclasses import dataclass
from operator import itemgetter

from pants.core.goals.generate_lockfiles import (
    GenerateLockfile,
    GenerateLockfileResult,
    GenerateLockfilesSubsystem,
    KnownUserResolveNames,
    KnownUserResolveNamesRequest,
    RequestedUserResolveNames,
    UserGenerateLockfiles,
)
from pants.base.build_root import BuildRoot
from pants.engine.addresses import Address
from pants.engine.fs import CreateDigest, Digest, FileContent, PathGlobs, Paths
from pants.engine.internals.synthetic_targets import SyntheticAddressMaps, SyntheticTargetsRequest
from pants.engine.internals.target_adaptor import TargetAdaptor
from pants.engine.process import ProcessCacheScope
from pants.engine.rules import Get, MultiGet, collect_rules, rule
from pants.engine.target import FieldSet, InferDependenciesRequest, InferredDependencies
from pants.engine.unions import UnionRule
from pants.util.logging import LogLevel

from coex.subsystem import CoexSubsystem
from coex.util_rules import resolve
from coex.target_types import CoexResolveField
from coex.util_rules.resolve import (
    AllCoexBinaries,
    CoexResolveInputs,
    CoexResolveName,
    check_resolve_name,
    lockfile_path,
)
from coex.util_rules.tool import CoexBuildError, CoexLibProcess, CoexLibResult

logger = logging.getLogger(__name__)

REQUEST = "coex-solve-request.json"


@dataclass(frozen=True)
class GenerateCoexLockfile(GenerateLockfile):
    inputs: CoexResolveInputs


class KnownCoexResolveNamesRequest(KnownUserResolveNamesRequest):
    pass


class RequestedCoexResolveNames(RequestedUserResolveNames):
    pass


@rule
def known_coex_resolves(
    _: KnownCoexResolveNamesRequest, coex: CoexSubsystem
) -> KnownUserResolveNames:
    return KnownUserResolveNames(
        names=tuple(coex.resolves),
        option_name="[coex].resolves",
        requested_resolve_names_cls=RequestedCoexResolveNames,
    )


@rule
async def coex_lockfile_requests(
    requested: RequestedCoexResolveNames,
    generate: GenerateLockfilesSubsystem,
    binaries: AllCoexBinaries,
    coex: CoexSubsystem,
) -> UserGenerateLockfiles:
    # a target of a resolve that does not exist would otherwise be left out of every lock
    for target in binaries.targets:
        check_resolve_name(
            coex, target[CoexResolveField].normalized_value(coex), f"The target {target.address}"
        )
    all_inputs = await MultiGet(
        Get(CoexResolveInputs, CoexResolveName(name)) for name in requested
    )
    explicit = set(generate.resolve)
    for inputs in all_inputs:
        if inputs.empty and inputs.resolve not in explicit:
            # `generate-lockfiles` without --resolve: a resolve nothing uses has nothing to lock
            logger.warning(
                f"Skipping the coex resolve {inputs.resolve!r}: no `coex_binary` target gives it "
                f"conda specs."
            )
    all_inputs = tuple(
        i.require_specs() for i in all_inputs if not (i.empty and i.resolve not in explicit)
    )
    return UserGenerateLockfiles(
        GenerateCoexLockfile(
            resolve_name=inputs.resolve,
            lockfile_dest=inputs.lockfile_path,
            diff=False,
            inputs=inputs,
        )
        for inputs in all_inputs
    )


@rule(desc="Generate a coex lockfile", level=LogLevel.DEBUG)
async def generate_coex_lockfile(request: GenerateCoexLockfile) -> GenerateLockfileResult:
    inputs = request.inputs
    request_json = json.dumps(inputs.request.to_json(), sort_keys=True).encode()
    request_digest = await Get(Digest, CreateDigest([FileContent(REQUEST, request_json)]))
    result = await Get(
        CoexLibResult,
        CoexLibProcess(
            ("solve", "--request", REQUEST, "--out", request.lockfile_dest),
            description=f"Solve the conda environment of resolve {inputs.resolve}",
            failure=f"Locking the resolve {inputs.resolve!r} failed.",
            input_digest=request_digest,
            output_files=(request.lockfile_dest,),
            cache_scope=ProcessCacheScope.PER_SESSION,
            level=LogLevel.INFO,
        ),
    )
    return GenerateLockfileResult(result.output_digest, request.resolve_name, request.lockfile_dest)


@dataclass(frozen=True)
class CoexLockfileTargetsRequest(SyntheticTargetsRequest):
    # every lockfile path is known from `[coex].resolves`: one request for all of them
    path: str = SyntheticTargetsRequest.SINGLE_REQUEST_FOR_ALL_TARGETS


def lockfile_target_name(resolve: str) -> str:
    return f"_coex_{resolve}_lockfile"


def lockfile_paths(coex: CoexSubsystem, build_root: BuildRoot) -> dict[str, str]:
    """{resolve: lockfile path relative to the build root}, for the resolves whose path is valid
    (building a target of one that is not says what is wrong with it)."""
    paths = {}
    for name in coex.resolves:
        try:
            paths[name] = lockfile_path(coex, name, build_root)
        except CoexBuildError:
            continue
    return paths


@rule
def coex_lockfile_targets(
    request: CoexLockfileTargetsRequest, coex: CoexSubsystem, build_root: BuildRoot
) -> SyntheticAddressMaps:
    by_dir = itertools.groupby(
        sorted(
            (os.path.dirname(path), os.path.basename(path), name)
            for name, path in lockfile_paths(coex, build_root).items()
        ),
        key=itemgetter(0),
    )
    return SyntheticAddressMaps.for_targets_request(
        request,
        [
            (
                os.path.join(spec_path, "BUILD.coex-lockfiles"),
                tuple(
                    TargetAdaptor(
                        "_lockfiles",
                        name=lockfile_target_name(name),
                        sources=[filename],
                        __description_of_origin__=f"the [coex].resolves option {name!r}",
                    )
                    for _, filename, name in lockfiles
                ),
            )
            for spec_path, lockfiles in by_dir
        ],
    )


@dataclass(frozen=True)
class CoexLockfileDependencyFieldSet(FieldSet):
    required_fields = (CoexResolveField,)

    resolve: CoexResolveField


class InferCoexLockfileDependency(InferDependenciesRequest):
    infer_from = CoexLockfileDependencyFieldSet


@rule(desc="Infer the lockfile a coex_binary depends on", level=LogLevel.DEBUG)
async def infer_coex_lockfile_dependency(
    request: InferCoexLockfileDependency, coex: CoexSubsystem, build_root: BuildRoot
) -> InferredDependencies:
    resolve = request.field_set.resolve.normalized_value(coex)
    path = lockfile_paths(coex, build_root).get(resolve)
    if path is None:
        return InferredDependencies([])
    # the `_lockfile` target exists once the lockfile does (before the first generate-lockfiles
    # there is nothing to depend on)
    paths = await Get(Paths, PathGlobs([path]))
    if path not in paths.files:
        return InferredDependencies([])
    return InferredDependencies(
        [
            Address(
                os.path.dirname(path),
                target_name=lockfile_target_name(resolve),
                relative_file_path=os.path.basename(path),
            )
        ]
    )


def rules():
    return (
        *collect_rules(),
        *resolve.rules(),
        *CoexLockfileTargetsRequest.rules(),
        UnionRule(InferDependenciesRequest, InferCoexLockfileDependency),
        UnionRule(GenerateLockfile, GenerateCoexLockfile),
        UnionRule(KnownUserResolveNamesRequest, KnownCoexResolveNamesRequest),
        UnionRule(RequestedUserResolveNames, RequestedCoexResolveNames),
    )
