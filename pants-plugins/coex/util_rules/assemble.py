"""Assembly: one `coex.lib assemble` process writes the archive (via coex_runtime.format).

Inputs: the prepared package digests (mounted read-only at `__pkgs/`, so big packages are
linked into the sandbox, not copied), the app layer under `app/`, and the `AssembleSpec` as JSON
(the same record `./coex create` assembles from). The output is re-rooted at the target's output
path without copying bytes. The process is keyed by exactly these inputs, so editing one app file
reruns only this step. A process (not rule code) because writing tens of MB to several GB is
file-system work the engine should cache and Pants' remote cache should share: a second machine
with the same inputs downloads the archive instead of writing it (the spec holds the lockfile's
`coex://` URLs and relative paths only, so the key is the same in every checkout).
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pants.engine.fs import AddPrefix, CreateDigest, Digest, FileContent, MergeDigests
from pants.engine.rules import Get, MultiGet, collect_rules, rule
from pants.util.frozendict import FrozenDict
from pants.util.logging import LogLevel

from coex.lib.records import AssembleSpec
from coex.util_rules import tool
from coex.util_rules.tool import CoexLibProcess, CoexLibResult, MovedFile, MoveFile

PKGS_DIR = "__pkgs"
APP_DIR = "app"
SPEC = "coex-spec.json"
OUT = "out.coex"


@dataclass(frozen=True)
class CoexAssembleRequest:
    description: str  # e.g. "examples/hello:hello (linux-64)"
    spec: AssembleSpec  # package paths under PKGS_DIR, the app layer at APP_DIR
    packages: tuple[Digest, ...]  # the prepared packages
    app_digest: Digest
    output_path: str


@dataclass(frozen=True)
class CoexArchive:
    digest: Digest  # holds exactly `path`, executable
    path: str
    size: int
    archive_id: str  # sha256 of its COEX-INFO (what the runtime's cache keys launchers by)
    env_id: str  # sha256 of its locked package list (what the runtime's cache keys envs by)


@rule(desc="Assemble a coex archive", level=LogLevel.DEBUG)
async def assemble_coex_archive(request: CoexAssembleRequest) -> CoexArchive:
    spec = json.dumps(request.spec.to_json(), sort_keys=True, indent=1).encode()
    pkgs_digest, app_digest, spec_digest = await MultiGet(
        Get(Digest, MergeDigests(request.packages)),
        Get(Digest, AddPrefix(request.app_digest, APP_DIR)),
        Get(Digest, CreateDigest([FileContent(SPEC, spec)])),
    )
    input_digest = await Get(Digest, MergeDigests([app_digest, spec_digest]))
    result = await Get(
        CoexLibResult,
        CoexLibProcess(
            ("assemble", "--spec", SPEC, "--out", OUT),
            description=f"Assemble {request.output_path} for {request.description}",
            failure=f"Building the coex archive of {request.description} failed.",
            input_digest=input_digest,
            immutable_input_digests=FrozenDict({PKGS_DIR: pkgs_digest}),
            output_files=(OUT,),
            level=LogLevel.INFO,
            with_runtime=True,
        ),
    )
    moved = await Get(
        MovedFile, MoveFile(result.output_digest, OUT, request.output_path, is_executable=True)
    )
    ids = json.loads(result.stdout.decode() or "{}")
    return CoexArchive(
        moved.digest,
        request.output_path,
        moved.file_digest.serialized_bytes_length,
        ids.get("archive_id", ""),
        ids.get("env_id", ""),
    )


def rules():
    return [*collect_rules(), *tool.rules()]
