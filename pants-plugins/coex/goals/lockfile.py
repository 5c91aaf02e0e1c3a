"""`pants generate-lockfiles` for coex resolves (the three-union protocol, as the javascript
backend does it): known resolve names come from `[coex].resolves`; each requested resolve's
specs are gathered from its `coex_binary` targets (`CoexResolveInputs`); `coex.lib solve` runs in
a process that is never memoized across runs (`ProcessCacheScope.PER_SESSION`), since a channel
may have changed since the last solve.
"""
from __future__ import annotations

import json
import logging
from dataclasses import dataclass

from pants.core.goals.generate_lockfiles import (
    GenerateLockfile,
    GenerateLockfileResult,
    GenerateLockfilesSubsystem,
    KnownUserResolveNames,
    KnownUserResolveNamesRequest,
    RequestedUserResolveNames,
    UserGenerateLockfiles,
)
from pants.engine.fs import CreateDigest, Digest, FileContent
from pants.engine.process import ProcessCacheScope
from pants.engine.rules import Get, MultiGet, collect_rules, rule
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
)
from coex.util_rules.tool import CoexLibProcess, CoexLibResult

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


def rules():
    return (
        *collect_rules(),
        *resolve.rules(),
        UnionRule(GenerateLockfile, GenerateCoexLockfile),
        UnionRule(KnownUserResolveNamesRequest, KnownCoexResolveNamesRequest),
        UnionRule(RequestedUserResolveNames, RequestedCoexResolveNames),
    )
