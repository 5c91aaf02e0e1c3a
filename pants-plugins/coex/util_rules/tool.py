"""How rules run the Pants-free library (`python -m coex.lib <command>`) in sandboxed processes.

* `BundledSources`: the `.py` files of one of coex's own packages, found from the imported
  package (a checkout, or an installed wheel alike). A package inside the build root (as in this
  repo) is read through the engine's watched file system, so an edit is seen even by a running
  pantsd (which restarts for changes to `pythonpath` entries, but not for the build root itself,
  where `coex_runtime` lives); an installed one through `importlib.resources`, once per process
  (it cannot change under a running Pants), the way Pants' own backends read bundled resources.
* `CoexTool`: the `coex` package's `__init__.py` and `coex/lib/**.py`, all a library process
  imports (`with_runtime=True` adds `coex_runtime/*.py`, what every archive carries: only
  assembly needs it, so editing the runtime does not invalidate cached transcodes); or, for a
  per-package step, `only` the few modules it runs, under empty package `__init__.py`s, so that
  editing anything else in coex does not refetch or retranscode every package. Mounted
  read-only (an immutable input) at `__coex/`.
  Every library process is keyed by these sources: editing them reruns its processes.
* `CoexLibProcess` -> `CoexLibResult`: runs one library command (`python -m coex.lib ...`, or a
  step module such as `coex.lib.fetch`) and turns a failure into a `CoexBuildError` carrying the
  library's one-paragraph message instead of a raw process dump. The interpreter is
  `[coex].build_python`, else Pants' own (`PythonBuildStandaloneBinary`: in a local environment
  that is `sys.executable`), with PYTHONPATH reaching the library's third-party packages wherever
  this Pants process imports them from (its venv, or the venv Pants resolved `[GLOBAL].plugins`
  into).

Every process is keyed by content only (REAPI action key: argv, env, input files), so Pants'
remote cache can share it between checkouts and machines: nothing in argv or env is a host path
except the interpreter's (the same on machines that install it at the same path, or set
`[coex].build_python`), inputs are relative to the sandbox, and outputs are content-addressed.
"""
from __future__ import annotations

import functools
import importlib
import importlib.resources
import importlib.util
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

from coex.lib.errors import REQUIRED_DISTRIBUTIONS, CoexError
from coex.subsystem import CoexSubsystem

TOOL_DIR = "__coex"
# With `--remote-cache-read`, Pants looks a process up in the remote cache and, after this
# delay, also starts it locally and takes whichever finishes first. The default (0) starts every
# process at once, so a machine with a warm remote cache still spawns (then kills) every step.
# The lookup itself gives up after `[GLOBAL].remote_cache_rpc_timeout_millis` (1.5 s by default),
# and a miss answers at once, so waiting costs nothing; not part of the cache key.
REMOTE_CACHE_SPECULATION_DELAY_MS = 10_000


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
    only: tuple[str, ...] = ()  # just these modules of coex.lib (file names); default: all of it


@dataclass(frozen=True)
class CoexTool:
    digest: Digest  # coex/__init__.py, coex/lib/ (and coex_runtime/), to be mounted at TOOL_DIR


# What a step mounts in place of the real package `__init__.py`s when it runs `only` a few
# modules: an import of `coex.lib.fetch` needs the packages to exist, not their contents (the
# version, the library's docs), and must not fall through to another installed `coex`.
_EMPTY_INITS = (FileContent("coex/__init__.py", b""), FileContent("coex/lib/__init__.py", b""))


@rule(desc="Collect the coex build library", level=LogLevel.DEBUG)
async def coex_tool(request: CoexToolRequest) -> CoexTool:
    if request.only:
        modules, inits = await MultiGet(
            Get(BundledSources, BundledSourcesRequest("coex.lib", only=request.only)),
            Get(Digest, CreateDigest(_EMPTY_INITS)),
        )
        return CoexTool(await Get(Digest, MergeDigests([modules.digest, inits])))
    packages = [
        BundledSourcesRequest("coex", only=("__init__.py",)),
        BundledSourcesRequest("coex.lib", recursive=True),
        *([BundledSourcesRequest("coex_runtime")] if request.with_runtime else []),
    ]
    sources = await MultiGet(Get(BundledSources, BundledSourcesRequest, p) for p in packages)
    return CoexTool(await Get(Digest, MergeDigests(s.digest for s in sources)))


@dataclass(frozen=True)
class CoexLibProcess:
    """One `python -m <module> <argv...>` run. `failure` prefixes the library's message."""

    argv: tuple[str, ...]
    description: str
    failure: str
    input_digest: Digest = EMPTY_DIGEST
    immutable_input_digests: FrozenDict[str, Digest] = field(default_factory=FrozenDict)
    output_files: tuple[str, ...] = ()
    cache_scope: ProcessCacheScope = ProcessCacheScope.SUCCESSFUL
    level: LogLevel = LogLevel.DEBUG
    with_runtime: bool = False
    module: str = "coex.lib"  # what `python -m` runs
    only: tuple[str, ...] = ()  # mount only these coex.lib modules (`CoexToolRequest.only`)


@dataclass(frozen=True)
class CoexLibResult:
    output_digest: Digest
    stdout: bytes


@functools.lru_cache(maxsize=None)
def dependency_path() -> tuple[str, ...]:
    """The `sys.path` entries that hold the library's third-party packages (py-rattler,
    zstandard, PyYAML) for this Pants process. With `[GLOBAL].plugins`, Pants installs a plugin's
    dependencies into a venv of its own and puts it on its own `sys.path` only: a library process
    (a new interpreter) finds them through PYTHONPATH. Entries the interpreter has anyway (its
    site-packages) are left out, so process keys stay as they are for a pip-installed Pants. A
    package that cannot be found adds nothing (the process then says which one is missing)."""
    import site

    own = {os.path.abspath(p) for p in site.getsitepackages()}
    entries = []
    for module in REQUIRED_DISTRIBUTIONS:
        spec = importlib.util.find_spec(module)
        if spec is None or not spec.origin:
            continue
        where = os.path.dirname(os.path.abspath(spec.origin))
        if spec.submodule_search_locations is not None:  # a package: its parent directory
            where = os.path.dirname(where)
        if where not in own and where not in entries:
            entries.append(where)
    return tuple(entries)


@dataclass(frozen=True)
class CoexPython:
    path: str  # the interpreter of every library process
    pythonpath: tuple[str, ...] = ()  # where its third-party packages are, when not its own


@rule
async def coex_python(coex: CoexSubsystem, env_tgt: EnvironmentTarget) -> CoexPython:
    if coex.build_python:
        if not os.path.isabs(coex.build_python):
            raise CoexBuildError(
                f"`[coex].build_python` must be an absolute path to a Python with py-rattler and "
                f"zstandard, not {coex.build_python!r}."
            )
        return CoexPython(coex.build_python)
    if env_tgt.val is not None and not isinstance(env_tgt.val, LocalEnvironmentTarget):
        raise CoexBuildError(
            f"coex builds run in local environments unless `[coex].build_python` names a Python "
            f"with py-rattler and zstandard there: by default the build library runs on Pants' "
            f"own interpreter, and the environment {env_tgt.val.address} is not local. Build "
            f"this target with the local environment (`environment='__local__'`), or set "
            f"`[coex].build_python`."
        )
    python = await Get(PythonBuildStandaloneBinary)
    return CoexPython(python.path, dependency_path())


@rule
async def coex_lib_process(request: CoexLibProcess, python: CoexPython) -> Process:
    tool = await Get(CoexTool, CoexToolRequest(request.with_runtime, request.only))
    if TOOL_DIR in request.immutable_input_digests:
        raise AssertionError(f"{TOOL_DIR} is reserved for the coex library")
    return Process(
        argv=(python.path, "-m", request.module, *request.argv),
        description=request.description,
        input_digest=request.input_digest,
        immutable_input_digests={**request.immutable_input_digests, TOOL_DIR: tool.digest},
        # A relative entry resolves against the sandbox (the process's working directory).
        env={
            "PYTHONPATH": os.pathsep.join((TOOL_DIR, *python.pythonpath)),
            "PYTHONDONTWRITEBYTECODE": "1",
            "LC_ALL": "C.UTF-8",
        },
        output_files=request.output_files,
        cache_scope=request.cache_scope,
        level=request.level,
        remote_cache_speculation_delay_millis=REMOTE_CACHE_SPECULATION_DELAY_MS,
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
