"""RuleRunner setup for the coex backend (no Python backend: it would download pex), the example
target every test starts from, and small assertions."""
from __future__ import annotations

import json
import os
from textwrap import dedent

import pytest

from pants.core.goals.generate_lockfiles import (
    GenerateLockfileResult,
    KnownUserResolveNames,
    UserGenerateLockfiles,
)
from pants.core.goals.export import ExportResults
from pants.core.goals.package import BuiltPackage
from pants.core.goals.run import RunRequest
from pants.core.target_types import (
    FilesGeneratorTarget,
    FileTarget,
    LockfilesGeneratorTarget,
    LockfileTarget,
    ResourcesGeneratorTarget,
    ResourceTarget,
)
from pants.engine.addresses import Address, Addresses
from pants.engine.rules import QueryRule
from pants.engine.target import DependenciesRequest
from pants.engine.internals.scheduler import ExecutionError
from pants.testutil.rule_runner import RuleRunner

from coex import register
from coex.goals.lockfile import (
    GenerateCoexLockfile,
    KnownCoexResolveNamesRequest,
    RequestedCoexResolveNames,
)
from coex.goals.export import ExportCoexResolves
from coex.goals.package import CoexBinaryFieldSet
from coex.util_rules.packages import ArchivablePackage, ArchivablePackageRequest, FetchedCondaPackage
from coex.lib.records import LockedPackage, LockedPlatform
from coex.util_rules.resolve import (
    CoexLockedPlatformRequest,
    CoexLockfile,
    CoexResolveInputs,
    CoexResolveName,
)
from coex.util_rules.app import CoexAppLayer, CoexAppLayerRequest
from coex_runtime import format as coex_format

LOCK = "3rdparty/conda/tiny.lock"
APP = Address("app", target_name="app")
BUILD = dedent(
    """\
    coex_binary(
        name="app",
        conda_dependencies=["prefixprog", "tinypy"],
        entry_point="prefixprog",
        env={"APP_MODE": "test"},
        dependencies=[":srcs", ":data"],
    )
    resources(name="srcs", sources=["src/**/*.py"])
    files(name="data", sources=["data/*.txt"])
    """
)
APP_FILES = {
    "app/BUILD": BUILD,
    "app/src/myapp/__init__.py": "",
    "app/src/myapp/main.py": "print('hello')\n",
    "app/data/notes.txt": "notes\n",
}


def make_rule_runner(bootstrap_args: list | None = None) -> RuleRunner:
    return RuleRunner(
        bootstrap_args=bootstrap_args or [],
        target_types=[
            *register.target_types(),
            FilesGeneratorTarget,
            FileTarget,
            ResourcesGeneratorTarget,
            ResourceTarget,
            LockfilesGeneratorTarget,  # (Pants' core registers them)
            LockfileTarget,
        ],
        rules=[
            *register.rules(),
            QueryRule(BuiltPackage, [CoexBinaryFieldSet]),
            QueryRule(Addresses, [DependenciesRequest]),
            QueryRule(RunRequest, [CoexBinaryFieldSet]),
            QueryRule(GenerateLockfileResult, [GenerateCoexLockfile]),
            QueryRule(UserGenerateLockfiles, [RequestedCoexResolveNames]),
            QueryRule(KnownUserResolveNames, [KnownCoexResolveNamesRequest]),
            QueryRule(CoexResolveInputs, [CoexResolveName]),
            QueryRule(CoexLockfile, [CoexResolveName]),
            QueryRule(LockedPlatform, [CoexLockedPlatformRequest]),
            QueryRule(FetchedCondaPackage, [LockedPackage]),
            QueryRule(ArchivablePackage, [ArchivablePackageRequest]),
            QueryRule(CoexAppLayer, [CoexAppLayerRequest]),
            QueryRule(ExportResults, [ExportCoexResolves]),
        ],
    )


def set_coex_options(rule_runner: RuleRunner, channel_url: str, *extra: str,
                     resolves: dict | None = None) -> None:
    resolves = resolves or {"tiny": LOCK}
    rule_runner.set_options(
        [
            f"--coex-resolves={json.dumps(resolves)}",
            f"--coex-default-resolve={next(iter(resolves))}",
            f"--coex-channels={json.dumps([channel_url])}",
            "--coex-transcode-zstd-level=3",
            *extra,
        ],
        env_inherit={"PATH", "HOME"},
    )


def generate_lockfile(rule_runner: RuleRunner, resolve: str = "tiny") -> str:
    (request,) = rule_runner.request(UserGenerateLockfiles, [RequestedCoexResolveNames([resolve])])
    result = rule_runner.request(GenerateLockfileResult, [request])
    rule_runner.write_digest(result.digest)
    text = rule_runner.read_file(result.path)
    # write_digest does not invalidate the engine's memoized directory listings; write_files does
    rule_runner.write_files({result.path: text})
    return text


def package(rule_runner: RuleRunner, address: Address) -> BuiltPackage:
    tgt = rule_runner.get_target(address)
    return rule_runner.request(BuiltPackage, [CoexBinaryFieldSet.create(tgt)])


def archive_info(rule_runner: RuleRunner, relpath: str):
    path = os.path.join(rule_runner.build_root, "dist-test", relpath)
    return path, coex_format.open_archive(path)


def write_built(rule_runner: RuleRunner, built: BuiltPackage) -> list:
    rule_runner.write_digest(built.digest, path_prefix="dist-test")
    return [a.relpath for a in built.artifacts]


def expect_error(fn, *needles: str) -> str:
    """`fn()` fails with a Pants error whose text holds every needle."""
    with pytest.raises(ExecutionError) as exc:
        fn()
    text = str(exc.value)
    for needle in needles:
        assert needle in text, f"{needle!r} not in:\n{text}"
    return text
