"""RuleRunner tests of goals/lockfile (tiny channel): `generate-lockfiles` for coex resolves:
which resolves it locks, and a failed solve naming the target."""
from tests.backend.helpers import BUILD, LOCK, expect_error, generate_lockfile, set_coex_options


def test_generate_lockfiles_skips_unused_resolves_unless_asked(rule_runner, tiny_channel):
    from pants.core.goals.generate_lockfiles import UserGenerateLockfiles

    from coex.goals.lockfile import RequestedCoexResolveNames

    resolves = {"tiny": LOCK, "unused": "3rdparty/conda/unused.lock"}
    set_coex_options(rule_runner, tiny_channel.url, resolves=resolves)
    requests = rule_runner.request(UserGenerateLockfiles, [RequestedCoexResolveNames(resolves)])
    assert [r.resolve_name for r in requests] == ["tiny"]
    set_coex_options(rule_runner, tiny_channel.url, "--generate-lockfiles-resolve=unused",
                     resolves=resolves)
    expect_error(
        lambda: rule_runner.request(UserGenerateLockfiles, [RequestedCoexResolveNames(["unused"])]),
        "resolve 'unused' has no conda specs",
        "conda_dependencies",
    )


def test_unsolvable_spec_names_the_target(rule_runner):
    rule_runner.write_files({"app/BUILD": BUILD.replace('"tinypy"', '"unsolvable"')})
    expect_error(lambda: generate_lockfile(rule_runner), "Locking the resolve 'tiny' failed", "app:app", "does-not-exist")


