"""How rules run the Pants-free library (`python -m coex.lib <command>`) in sandboxed processes.

* `BundledSources`: the `.py` files of one of coex's own packages, found from the imported
  package (a checkout, or an installed wheel alike). A package inside the build root (as in this
  repo) is read through the engine's watched file system, so an edit is seen even by a running
  pantsd (which restarts for changes to `pythonpath` entries, but not for the build root itself,
  where `coex_runtime` lives); an installed one through `importlib.resources`, once per process
  (it cannot change under a running Pants), the way Pants' own backends read bundled resources.
* `CoexTool`: the `coex` package's `__init__.py` and `coex/lib/**.py`, all a library process
  imports (`with_runtime=True` adds `coex_runtime/*.py`, what every archive carries: only
  assembly needs it, so editing the runtime does not invalidate cached transcodes). Mounted
  read-only (an immutable input) at `__coex/`.
  Every library process is keyed by these sources: editing the library reruns its processes.
* `CoexLibProcess` -> `CoexLibResult`: runs one library command with Pants' own interpreter
  (`PythonBuildStandaloneBinary`: in a local environment that is `sys.executable`, the venv that
  has py-rattler and zstandard) and turns a failure into a `CoexBuildError` carrying the library's
  one-paragraph message instead of a raw process dump.
"""
from __future__ import annotations

import functools
import importlib
import importlib.resources
import os
from dataclasses import dataclass, field

from pants.base.build_root import BuildRoot
from pants.core.util_rules import adhoc_binaries
from pants.core.util_rules.adhoc_binaries import PythonBuildStandaloneBinary
from pants.core.util_rules.environments import EnvironmentTarget, LocalEnvironmentTarget
from pants.engine.fs import (
    EMPTY_DIGEST,
    AddPrefix,
    CreateDigest,
    Digest,
    DigestEntries,
    FileContent,
    FileDigest,
    FileEntry,
    MergeDigests,
    PathGlobs,
    RemovePrefix,
    Snapshot,
)
from pants.engine.process import FallibleProcessResult, Process, ProcessCacheScope
from pants.engine.rules import Get, MultiGet, collect_rules, rule
from pants.util.frozendict import FrozenDict
from pants.util.logging import LogLevel

from coex.lib.errors import CoexError

TOOL_DIR = "__coex"


class CoexBuildError(CoexError):
    """A user-facing build failure: the message names what is wrong and how to fix it."""


@dataclass(frozen=True)
class BundledSourcesRequest:
    package: str  # dotted, e.g. "coex.lib"
    recursive: bool = False  # with its subpackages
    only: tuple[str, ...] = ()  # these file names (default: every `.py` file)


@dataclass(frozen=True)
class BundledSources:
    digest: Digest  # the files at their import paths (`coex/lib/records.py`)


@functools.lru_cache(maxsize=None)
def installed_sources(request: BundledSourcesRequest) -> tuple[FileContent, ...]:
    """The package's files read through `importlib.resources` (once per process)."""
    files = []

    def walk(node, rel: str) -> None:
        for child in sorted(node.iterdir(), key=lambda c: c.name):
            if child.is_dir():
                if request.recursive and child.name != "__pycache__":
                    walk(child, f"{rel}{child.name}/")
            elif child.name.endswith(".py") and (not request.only or child.name in request.only):
                files.append(FileContent(f"{rel}{child.name}", child.read_bytes()))

    walk(importlib.resources.files(request.package), request.package.replace(".", "/") + "/")
    return tuple(files)


@rule(desc="Collect coex sources", level=LogLevel.DEBUG)
async def bundled_sources(request: BundledSourcesRequest, build_root: BuildRoot) -> BundledSources:
    module = importlib.import_module(request.package)
    rel = os.path.relpath(os.path.dirname(os.path.abspath(module.__file__)), build_root.path)
    if rel == "." or rel.startswith(".."):
        return BundledSources(await Get(Digest, CreateDigest(installed_sources(request))))
    globs = [f"{rel}/{name}" for name in request.only] or [
        f"{rel}/{'**/' if request.recursive else ''}*.py"
    ]
    snapshot = await Get(Snapshot, PathGlobs(globs))
    stripped = await Get(Digest, RemovePrefix(snapshot.digest, rel))
    return BundledSources(
        await Get(Digest, AddPrefix(stripped, request.package.replace(".", "/")))
    )


@dataclass(frozen=True)
class CoexToolRequest:
    with_runtime: bool = False  # only assembly needs it (a runtime edit keeps transcodes cached)


@dataclass(frozen=True)
class CoexTool:
    digest: Digest  # coex/__init__.py, coex/lib/ (and coex_runtime/), to be mounted at TOOL_DIR


@rule(desc="Collect the coex build library", level=LogLevel.DEBUG)
async def coex_tool(request: CoexToolRequest) -> CoexTool:
    packages = [
        BundledSourcesRequest("coex", only=("__init__.py",)),
        BundledSourcesRequest("coex.lib", recursive=True),
        *([BundledSourcesRequest("coex_runtime")] if request.with_runtime else []),
    ]
    sources = await MultiGet(Get(BundledSources, BundledSourcesRequest, p) for p in packages)
    return CoexTool(await Get(Digest, MergeDigests(s.digest for s in sources)))


@dataclass(frozen=True)
class CoexLibProcess:
    """One `python -m coex.lib <argv...>` run. `failure` prefixes the library's message."""

    argv: tuple[str, ...]
    description: str
    failure: str
    input_digest: Digest = EMPTY_DIGEST
    immutable_input_digests: FrozenDict[str, Digest] = field(default_factory=FrozenDict)
    output_files: tuple[str, ...] = ()
    cache_scope: ProcessCacheScope = ProcessCacheScope.SUCCESSFUL
    level: LogLevel = LogLevel.DEBUG
    with_runtime: bool = False


@dataclass(frozen=True)
class CoexLibResult:
    output_digest: Digest
    stdout: bytes


@rule
async def coex_lib_process(
    request: CoexLibProcess,
    python: PythonBuildStandaloneBinary,
    env_tgt: EnvironmentTarget,
) -> Process:
    if env_tgt.val is not None and not isinstance(env_tgt.val, LocalEnvironmentTarget):
        raise CoexBuildError(
            f"{request.failure} coex builds run only in local environments: the build library "
            f"needs py-rattler and zstandard from Pants' own interpreter, and the environment "
            f"{env_tgt.val.address} is not local. Build this target with the local environment "
            f"(`environment='__local__'`)."
        )
    tool = await Get(CoexTool, CoexToolRequest(request.with_runtime))
    if TOOL_DIR in request.immutable_input_digests:
        raise AssertionError(f"{TOOL_DIR} is reserved for the coex library")
    return Process(
        argv=(python.path, "-m", "coex.lib", *request.argv),
        description=request.description,
        input_digest=request.input_digest,
        immutable_input_digests={**request.immutable_input_digests, TOOL_DIR: tool.digest},
        # A relative entry resolves against the sandbox (the process's working directory).
        env={"PYTHONPATH": TOOL_DIR, "PYTHONDONTWRITEBYTECODE": "1", "LC_ALL": "C.UTF-8"},
        append_only_caches=PythonBuildStandaloneBinary.APPEND_ONLY_CACHES,
        output_files=request.output_files,
        cache_scope=request.cache_scope,
        level=request.level,
    )


@rule
async def run_coex_lib(request: CoexLibProcess) -> CoexLibResult:
    process = await Get(Process, CoexLibProcess, request)
    result = await Get(FallibleProcessResult, Process, process)
    if result.exit_code != 0:
        message = result.stderr.decode("utf-8", "replace").strip()
        if not message:
            message = result.stdout.decode("utf-8", "replace").strip()
        raise CoexBuildError(f"{request.failure}\n\n{message}")
    return CoexLibResult(result.output_digest, result.stdout)


@dataclass(frozen=True)
class MoveFile:
    """Re-root the one file `src` of `digest` at `dst` (no bytes are copied)."""

    digest: Digest
    src: str
    dst: str
    is_executable: bool = False


@dataclass(frozen=True)
class MovedFile:
    digest: Digest  # holds exactly `dst`
    file_digest: FileDigest


@rule
async def move_file(request: MoveFile) -> MovedFile:
    entries = await Get(DigestEntries, Digest, request.digest)
    (entry,) = [e for e in entries if isinstance(e, FileEntry) and e.path == request.src]
    digest = await Get(
        Digest,
        CreateDigest([FileEntry(request.dst, entry.file_digest, request.is_executable)]),
    )
    return MovedFile(digest, entry.file_digest)


def rules():
    return [*collect_rules(), *adhoc_binaries.rules()]
