"""`pants export --resolve=NAME` for coex resolves: conda `@EXPLICIT` files, one per locked
platform, at `dist/export/coex/<resolve>/<platform>.explicit.txt` (usable with
`conda create --name env --file <file>`; lines are `url#md5`, in install order, with the
lockfile's `coex://` placeholders resolved to where the channels are on this machine).
The lockfile must be fresh, as for `package`.
"""
from __future__ import annotations

from dataclasses import dataclass

from pants.core.goals.export import ExportRequest, ExportResult, ExportResults, ExportSubsystem
from pants.engine.fs import Digest, MergeDigests
from pants.engine.rules import Get, MultiGet, collect_rules, rule
from pants.engine.unions import UnionRule
from pants.util.logging import LogLevel

from coex.lib.records import ChannelLocations
from coex.subsystem import CoexSubsystem
from coex.util_rules import resolve
from coex.util_rules.resolve import CoexLockfile, CoexResolveName
from coex.util_rules.tool import CoexLibProcess, CoexLibResult


@dataclass(frozen=True)
class ExportCoexResolves(ExportRequest):
    pass


@rule(desc="Export coex resolves", level=LogLevel.DEBUG)
async def export_coex_resolves(
    _: ExportCoexResolves, export: ExportSubsystem, coex: CoexSubsystem,
    locations: ChannelLocations,
) -> ExportResults:
    resolves = [r for r in export.resolve if r in coex.resolves]
    where = [
        *(("--root", locations.root) if locations.root else ()),
        *(arg for name, url in locations.named for arg in ("--location", f"{name}={url}")),
    ]
    locks = await MultiGet(Get(CoexLockfile, CoexResolveName(r)) for r in resolves)
    results = []
    for lock in locks:
        files = await MultiGet(
            Get(
                CoexLibResult,
                CoexLibProcess(
                    ("explicit", "--lock", lock.path, "--platform", p,
                     "--out", f"{p}.explicit.txt", *where),
                    description=f"Export {lock.resolve} for {p} as @EXPLICIT",
                    failure=f"Exporting the resolve {lock.resolve!r} for {p} failed.",
                    input_digest=lock.digest,
                    output_files=(f"{p}.explicit.txt",),
                ),
            )
            for p in lock.header.platforms
        )
        digest = await Get(Digest, MergeDigests(f.output_digest for f in files))
        results.append(
            ExportResult(
                f"conda @EXPLICIT files of coex resolve {lock.resolve} "
                f"({', '.join(lock.header.platforms)})",
                f"coex/{lock.resolve}",
                digest=digest,
                resolve=lock.resolve,
            )
        )
    return ExportResults(results)


def rules():
    return (*collect_rules(), *resolve.rules(), UnionRule(ExportRequest, ExportCoexResolves))
