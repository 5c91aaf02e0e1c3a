"""RuleRunner tests of the coex backend (tiny channel): `pants export --resolve=NAME`: conda
@EXPLICIT files."""
from pants.core.goals.export import ExportResults
from pants.engine.fs import DigestContents

from coex.goals.export import ExportCoexResolves
from tests.backend.helpers import (
    generate_lockfile,
    set_coex_options,
)


def test_export_explicit_files(rule_runner, tiny_channel):
    generate_lockfile(rule_runner)
    set_coex_options(rule_runner, tiny_channel.url, "--export-resolve=tiny")
    (result,) = rule_runner.request(ExportResults, [ExportCoexResolves(())])
    assert result.reldir == "coex/tiny" and result.resolve == "tiny"
    (content,) = rule_runner.request(DigestContents, [result.digest])
    assert content.path == "linux-64.explicit.txt"
    lines = content.content.decode().splitlines()
    assert "@EXPLICIT" in lines
    urls = [line for line in lines if line.startswith("file:")]
    assert any("/linux-64/prefixprog-1.0-h0_0.conda#" in u for u in urls)
    assert all(len(u.rsplit("#", 1)[1]) == 32 for u in urls)  # md5 fragments
