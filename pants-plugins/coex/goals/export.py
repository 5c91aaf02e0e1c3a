"""`pants export` for coex resolves, at `dist/export/coex/<resolve>/`:

* `<platform>.explicit.txt`: a conda `@EXPLICIT` file per locked platform (usable with
  `conda create --name env --file <file>`; lines are `url#md5`, in install order, with the
  lockfile's `coex://` placeholders resolved to where the channels are on this machine);
* `<host platform>/`: the resolve installed as a conda prefix for this machine (as the Python
  backend exports virtualenvs), for IDEs and shells: `<dir>/bin/python`, `CONDA_PREFIX=<dir>`.
  The rule builds an archive of the whole resolve (no app layer) and export's post-processing
  runs its `COEX_TOOLS=1 <archive> extract <dir>` (the runtime's installer, with every prefix
  placeholder replaced for `<dir>`), then removes the archive.

Which resolves: those named with `--resolve`; without it, the resolves of the `coex_binary`
targets given (`pants export ::`, what the Python backend does in 2.17 without `--resolve`), or,
with no targets either (`pants export`), every resolve some `coex_binary` uses. Lockfiles must be
fresh, as for `package`.
"""
from __future__ import annotations

from dataclasses import dataclass

from pants.core.goals.export import (
    ExportRequest,
    ExportResult,
    ExportResults,
    ExportSubsystem,
    PostProcessingCommand,
)
from pants.engine.env_vars import EnvironmentVars, EnvironmentVarsRequest
from pants.engine.fs import EMPTY_DIGEST, Digest, MergeDigests
from pants.engine.platform import Platform
from pants.engine.rules import Get, MultiGet, collect_rules, rule
from pants.engine.unions import UnionRule
from pants.util.logging import LogLevel

from coex.goals.package import HOST_PLATFORMS
from coex.lib.records import (
    AssembleSpec,
    BuildRecord,
    ChannelLocations,
    EntryPoints,
    LockedPlatform,
    LockedWheel,
)
from coex.subsystem import CoexSubsystem
from coex.target_types import CoexResolveField
from coex.util_rules import assemble, packages, resolve
from coex.util_rules.assemble import PKGS_DIR, CoexArchive, CoexAssembleRequest
from coex.util_rules.packages import (
    ArchivablePackage,
    ArchivablePackageRequest,
    ArchivableWheel,
)
from coex.util_rules.resolve import (
    AllCoexBinaries,
    CoexLockedPlatformRequest,
    CoexLockfile,
    CoexResolveName,
)
from coex.util_rules.tool import CoexLibProcess, CoexLibResult

# what the archive's first run reads from the environment (its cache, its Python, host overrides)
RUNTIME_ENV = (
    "HOME", "XDG_CACHE_HOME", "TMPDIR", "COEX_ROOT", "COEX_PYTHON", "COEX_VERBOSE",
    "CONDA_OVERRIDE_GLIBC", "CONDA_OVERRIDE_CUDA", "CONDA_OVERRIDE_LINUX",
    "CONDA_OVERRIDE_ARCHSPEC", "CONDA_OVERRIDE_OSX",
)


@dataclass(frozen=True)
class ExportCoexResolves(ExportRequest):
    pass


@dataclass(frozen=True)
class CoexEnvironmentExportRequest:
    resolve: str
    platform: str


@dataclass(frozen=True)
class CoexEnvironmentExport:
    archive: CoexArchive  # the whole resolve for one platform, no app layer
    prefix: str  # where export extracts it, relative to the resolve's export directory


@rule(desc="Build the environment of a coex resolve", level=LogLevel.DEBUG)
async def coex_environment_export(
    request: CoexEnvironmentExportRequest, coex: CoexSubsystem
) -> CoexEnvironmentExport:
    lock, locked = await MultiGet(
        Get(CoexLockfile, CoexResolveName(request.resolve)),
        Get(LockedPlatform, CoexLockedPlatformRequest(request.resolve, request.platform)),
    )
    prepared = await MultiGet(
        Get(ArchivablePackage, ArchivablePackageRequest(p, coex.transcode_zstd_level))
        for p in locked.packages
    )
    wheels = await MultiGet(Get(ArchivableWheel, LockedWheel, w) for w in locked.wheels)
    # the archive is only extracted, never run: its entry point is the environment's python, or
    # the zstd program every coex lock has
    program = "python" if any(p.name == "python" for p in locked.packages) else "zstd"
    description = f"resolve {request.resolve} ({request.platform})"
    archive = await Get(
        CoexArchive,
        CoexAssembleRequest(
            description,
            AssembleSpec(
                request.platform,
                tuple(p.prepared(PKGS_DIR) for p in prepared),
                EntryPoints(((program, program),), program),
                BuildRecord(request.resolve, lock.sha256, description, "pants export", lock.path),
                None,
                (),
                lock.header.specs_of(request.platform),
                wheels=tuple(w.prepared(PKGS_DIR) for w in wheels),
            ),
            tuple(p.digest for p in prepared) + tuple(w.digest for w in wheels),
            EMPTY_DIGEST,
            f".{request.platform}.coex",
        ),
    )
    return CoexEnvironmentExport(archive, request.platform)


def exported_resolves(
    request: ExportCoexResolves,
    export: ExportSubsystem,
    coex: CoexSubsystem,
    binaries: AllCoexBinaries,
) -> list[str]:
    if export.resolve:
        return [r for r in export.resolve if r in coex.resolves]
    targets = request.targets or binaries.targets
    used = {t[CoexResolveField].normalized_value(coex) for t in targets if t.has_field(CoexResolveField)}
    return sorted(used & set(coex.resolves))


@rule(desc="Export coex resolves", level=LogLevel.DEBUG)
async def export_coex_resolves(
    request: ExportCoexResolves,
    export: ExportSubsystem,
    coex: CoexSubsystem,
    binaries: AllCoexBinaries,
    platform: Platform,
    locations: ChannelLocations,
) -> ExportResults:
    resolves = exported_resolves(request, export, coex, binaries)
    where = [
        *(("--root", locations.root) if locations.root else ()),
        *(arg for name, url in locations.named for arg in ("--location", f"{name}={url}")),
    ]
    locks = await MultiGet(Get(CoexLockfile, CoexResolveName(r)) for r in resolves)
    host = HOST_PLATFORMS.get(platform)
    runtime_env = await Get(EnvironmentVars, EnvironmentVarsRequest(RUNTIME_ENV))
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
        description = (
            f"conda @EXPLICIT files of coex resolve {lock.resolve} "
            f"({', '.join(lock.header.platforms)})"
        )
        digests = [f.output_digest for f in files]
        commands: list[PostProcessingCommand] = []
        if host in lock.header.platforms:
            env = await Get(CoexEnvironmentExport, CoexEnvironmentExportRequest(lock.resolve, host))
            digests.append(env.archive.digest)
            archive = f"{{digest_root}}/{env.archive.path}"
            commands = [
                PostProcessingCommand(
                    (archive, "extract", f"{{digest_root}}/{env.prefix}"),
                    {**runtime_env, "COEX_TOOLS": "1"},
                ),
                PostProcessingCommand(("rm", "-f", archive)),
            ]
            description += f" and its {host} environment (in {env.prefix}/)"
        results.append(
            ExportResult(
                description,
                f"coex/{lock.resolve}",
                digest=await Get(Digest, MergeDigests(digests)),
                post_processing_cmds=commands,
                resolve=lock.resolve,
            )
        )
    return ExportResults(results)


def rules():
    return (
        *collect_rules(),
        *assemble.rules(),
        *packages.rules(),
        *resolve.rules(),
        UnionRule(ExportRequest, ExportCoexResolves),
    )
