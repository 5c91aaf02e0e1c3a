"""The app layer of a `coex_binary`: the sources of its transitive dependencies.

Source roots are stripped (as for a pex: `src/python/app/main.py` -> `app/main.py` when
`src/python` is a source root), except for `files`/`file` targets, which keep their paths
relative to the build root (also as for a pex). Environment files (of `coex_binary` and
`coex_environment` targets in the closure) and lockfiles are not app code.
"""
from __future__ import annotations

from dataclasses import dataclass

from pants.core.target_types import FileSourceField, LockfileSourceField
from pants.core.util_rules import source_files, stripped_source_files
from pants.core.util_rules.source_files import SourceFiles, SourceFilesRequest
from pants.core.util_rules.stripped_source_files import StrippedSourceFiles
from pants.engine.addresses import Address
from pants.engine.fs import Digest, MergeDigests, Snapshot
from pants.engine.rules import Get, MultiGet, collect_rules, rule
from pants.engine.target import SourcesField, TransitiveTargets, TransitiveTargetsRequest
from pants.util.logging import LogLevel

from coex.target_types import CoexEnvironmentFileField, CoexEnvironmentSourceField

# sources that describe the environment, never part of the app layer
NOT_APP_SOURCES = (CoexEnvironmentFileField, CoexEnvironmentSourceField, LockfileSourceField)


@dataclass(frozen=True)
class CoexAppLayerRequest:
    address: Address


@dataclass(frozen=True)
class CoexAppLayer:
    snapshot: Snapshot  # paths are the app layer's relative paths


@rule(desc="Collect the app layer of a coex_binary", level=LogLevel.DEBUG)
async def coex_app_layer(request: CoexAppLayerRequest) -> CoexAppLayer:
    transitive = await Get(TransitiveTargets, TransitiveTargetsRequest([request.address]))
    fields = [
        t[SourcesField]
        for t in transitive.dependencies
        if t.has_field(SourcesField) and not isinstance(t[SourcesField], NOT_APP_SOURCES)
    ]
    files_fields = [f for f in fields if isinstance(f, FileSourceField)]
    other_fields = [f for f in fields if not isinstance(f, FileSourceField)]
    stripped, unstripped = await MultiGet(
        Get(StrippedSourceFiles, SourceFilesRequest(other_fields)),
        Get(SourceFiles, SourceFilesRequest(files_fields)),
    )
    digest = await Get(
        Digest, MergeDigests([stripped.snapshot.digest, unstripped.snapshot.digest])
    )
    return CoexAppLayer(await Get(Snapshot, Digest, digest))


def rules():
    return [*collect_rules(), *source_files.rules(), *stripped_source_files.rules()]
