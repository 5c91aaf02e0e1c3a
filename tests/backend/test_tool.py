"""RuleRunner tests of util_rules/tool: the sources library processes run with (read through the
engine inside the build root, through importlib.resources when installed), and of every rule
module's `rules()` standing on its own, as Pants' own do."""
import os
import sys

import pytest

from pants.core.goals.export import ExportResults
from pants.core.goals.generate_lockfiles import GenerateLockfileResult
from pants.core.goals.package import BuiltPackage
from pants.core.goals.run import RunRequest
from pants.engine.fs import DigestContents
from pants.engine.rules import QueryRule
from pants.testutil.rule_runner import RuleRunner

import coex.lib
from coex.goals import export, lockfile, package
from coex.goals.export import ExportCoexResolves
from coex.goals.lockfile import GenerateCoexLockfile
from coex.goals.package import CoexBinaryFieldSet
from coex.lib.records import LockedPackage, LockedPlatform
from coex.util_rules import app, assemble, packages, resolve, tool
from coex.util_rules.app import CoexAppLayer, CoexAppLayerRequest
from coex.util_rules.assemble import CoexArchive, CoexAssembleRequest
from coex.util_rules.packages import ArchivablePackage, ArchivablePackageRequest, FetchedCondaPackage
from coex.util_rules.resolve import CoexLockedPlatformRequest, CoexResolveInputs, CoexResolveName
from coex.util_rules.tool import (
    BundledSources,
    BundledSourcesRequest,
    CoexLibProcess,
    CoexLibResult,
    CoexTool,
    CoexToolRequest,
)
from coex_runtime.format import runtime_sources

MODULES = [
    (tool, [QueryRule(CoexLibResult, [CoexLibProcess]), QueryRule(CoexTool, [CoexToolRequest])]),
    (resolve, [QueryRule(CoexResolveInputs, [CoexResolveName]),
               QueryRule(LockedPlatform, [CoexLockedPlatformRequest])]),
    (packages, [QueryRule(FetchedCondaPackage, [LockedPackage]),
                QueryRule(ArchivablePackage, [ArchivablePackageRequest])]),
    (app, [QueryRule(CoexAppLayer, [CoexAppLayerRequest])]),
    (assemble, [QueryRule(CoexArchive, [CoexAssembleRequest])]),
    (lockfile, [QueryRule(GenerateLockfileResult, [GenerateCoexLockfile])]),
    (package, [QueryRule(BuiltPackage, [CoexBinaryFieldSet]),
               QueryRule(RunRequest, [CoexBinaryFieldSet])]),
    (export, [QueryRule(ExportResults, [ExportCoexResolves])]),
]


@pytest.mark.parametrize("module, queries", MODULES, ids=[m.__name__ for m, _ in MODULES])
def test_each_modules_rules_stand_alone(module, queries):
    """A RuleRunner of one module's rules() (plus the engine's core) builds its rule graph."""
    RuleRunner(rules=[*module.rules(), *queries])


def contents(rule_runner, digest):
    return {c.path: c.content for c in rule_runner.request(DigestContents, [digest])}


def test_tool_and_runtime_are_the_installed_sources():
    """Outside the build root (here: a RuleRunner's temporary one), through importlib.resources."""
    rule_runner = RuleRunner(rules=[*tool.rules(), QueryRule(CoexTool, [CoexToolRequest])])
    lib_dir = os.path.dirname(coex.lib.__file__)
    expected = {"coex/lib/" + n for n in os.listdir(lib_dir) if n.endswith(".py")}
    library = contents(rule_runner, rule_runner.request(CoexTool, [CoexToolRequest()]).digest)
    assert set(library) == expected | {"coex/__init__.py"}
    both = contents(rule_runner, rule_runner.request(CoexTool, [CoexToolRequest(True)]).digest)
    # the runtime exactly as an archive embeds it
    assert {k: v for k, v in both.items() if k not in library} == runtime_sources()


def test_sources_inside_the_build_root_are_read_through_the_engine(monkeypatch):
    """Edits are seen by a running engine (pantsd): they are read through its file system."""
    rule_runner = RuleRunner(rules=[*tool.rules(), QueryRule(BundledSources,
                                                             [BundledSourcesRequest])])
    rule_runner.write_files({"pkgx/__init__.py": "", "pkgx/a.py": "A = 1\n",
                             "pkgx/sub/__init__.py": "", "pkgx/sub/b.py": "B = 1\n",
                             "pkgx/data.txt": "not python\n"})
    monkeypatch.syspath_prepend(rule_runner.build_root)
    monkeypatch.delitem(sys.modules, "pkgx", raising=False)

    def read(**kw):
        request = BundledSourcesRequest("pkgx", **kw)
        return contents(rule_runner, rule_runner.request(BundledSources, [request]).digest)

    assert read() == {"pkgx/__init__.py": b"", "pkgx/a.py": b"A = 1\n"}
    assert sorted(read(recursive=True)) == ["pkgx/__init__.py", "pkgx/a.py",
                                            "pkgx/sub/__init__.py", "pkgx/sub/b.py"]
    assert read(only=("a.py",)) == {"pkgx/a.py": b"A = 1\n"}
    rule_runner.write_files({"pkgx/a.py": "A = 2\n"})
    assert read(only=("a.py",)) == {"pkgx/a.py": b"A = 2\n"}


def test_a_step_mounts_only_its_modules_under_empty_package_inits():
    """The fetch and transcode processes are keyed by the modules they run, not the library."""
    rule_runner = RuleRunner(rules=[*tool.rules(), QueryRule(CoexTool, [CoexToolRequest])])
    digest = rule_runner.request(CoexTool, [CoexToolRequest(only=packages.FETCH_MODULES)]).digest
    files = contents(rule_runner, digest)
    lib_dir = os.path.dirname(coex.lib.__file__)
    assert files == {
        "coex/__init__.py": b"", "coex/lib/__init__.py": b"",
        **{f"coex/lib/{name}": open(os.path.join(lib_dir, name), "rb").read()
           for name in ("fetch.py", "errors.py", "fsutil.py")},
    }
