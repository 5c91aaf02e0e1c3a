"""RuleRunner tests of the coex backend (tiny channel): generate-lockfiles and reading lockfiles:
resolve inputs from targets, solving, staleness, and their bad input."""
from coex.util_rules.resolve import (
    CoexResolveInputs,
    CoexResolveName,
)
from tests.backend.helpers import (
    APP,
    APP_FILES,
    BUILD,
    LOCK,
    expect_error,
    generate_lockfile,
    make_rule_runner,
    package,
    set_coex_options,
)


def test_resolve_inputs_gathers_specs_from_targets(rule_runner, tiny_channel):
    inputs = rule_runner.request(CoexResolveInputs, [CoexResolveName("tiny")])
    req = inputs.request
    assert req["specs"] == ["prefixprog", "tinypy"]
    assert req["channels"] == [tiny_channel.url]
    assert req["platforms"] == ["linux-64"]
    assert "app:app" in req["origin"]
    assert inputs.lockfile_path == LOCK


def test_environment_file_channels_and_specs(rule_runner, tiny_channel):
    rule_runner.write_files(
        {
            "envapp/BUILD": 'coex_binary(name="envapp", environment_file="environment.yml", entry_point="prefixprog")\n',
            "envapp/environment.yml": f"channels: [{tiny_channel.url}]\ndependencies:\n  - oldstyle\n",
        }
    )
    set_coex_options(rule_runner, "file:///nonexistent/channel")
    req = rule_runner.request(CoexResolveInputs, [CoexResolveName("tiny")]).request
    # environment files' channels replace [coex].channels, as in conda
    assert req["channels"] == [tiny_channel.url]
    assert req["specs"] == ["oldstyle", "prefixprog", "tinypy"]


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


def test_missing_lockfile(rule_runner):
    expect_error(
        lambda: package(rule_runner, APP),
        "lockfile for resolve 'tiny' does not exist",
        LOCK,
        "generate-lockfiles --resolve=tiny",
    )


def test_stale_lockfile(rule_runner):
    generate_lockfile(rule_runner)
    rule_runner.write_files({"app/BUILD": BUILD.replace('"tinypy"', '"tinypy", "oldstyle"')})
    expect_error(
        lambda: package(rule_runner, APP),
        "lockfile for resolve 'tiny' is stale: run `pants generate-lockfiles --resolve=tiny`",
        "oldstyle",
    )


def test_unknown_resolve(rule_runner):
    rule_runner.write_files({"app/BUILD": BUILD.replace('name="app",', 'name="app", resolve="nope",')})
    expect_error(lambda: package(rule_runner, APP), "app:app", "'nope'", "[coex].resolves", "tiny")


def test_unknown_platform_in_options(rule_runner, tiny_channel):
    set_coex_options(rule_runner, tiny_channel.url, '--coex-platforms=["linux64"]')
    expect_error(
        lambda: rule_runner.request(CoexResolveInputs, [CoexResolveName("tiny")]),
        "linux64",
        "[coex].platforms",
        "linux-64",
    )


def test_environment_file_errors(rule_runner):
    rule_runner.write_files(
        {
            "envapp/BUILD": 'coex_binary(name="envapp", environment_file="environment.yml", entry_point="prefixprog")\n',
            "envapp/environment.yml": "dependencies:\n  - prefixprog\n  - pip:\n    - requests\n",
        }
    )
    expect_error(
        lambda: rule_runner.request(CoexResolveInputs, [CoexResolveName("tiny")]),
        "envapp/environment.yml",
        "envapp:envapp",
        "pip:",
        "not supported yet",
    )
    rule_runner.write_files({"envapp/environment.yml": "dependencies: [prefixprog\n"})
    expect_error(
        lambda: rule_runner.request(CoexResolveInputs, [CoexResolveName("tiny")]),
        "envapp/environment.yml",
        "not valid YAML",
    )
    rule_runner.write_files({"envapp/environment.yml": "name: empty\nchannels: [conda-forge]\n"})
    expect_error(
        lambda: rule_runner.request(CoexResolveInputs, [CoexResolveName("tiny")]),
        "envapp/environment.yml",
        "has no dependencies",
    )


def test_unsolvable_spec_names_the_target(rule_runner):
    rule_runner.write_files({"app/BUILD": BUILD.replace('"tinypy"', '"unsolvable"')})
    expect_error(lambda: generate_lockfile(rule_runner), "Locking the resolve 'tiny' failed", "app:app", "does-not-exist")


def test_ignored_lockfile_is_explained(tiny_channel):
    rule_runner = make_rule_runner([f'--pants-ignore=["/{LOCK}"]'])
    set_coex_options(rule_runner, tiny_channel.url)
    rule_runner.write_files({**APP_FILES, LOCK: "# coex-lockfile: {}\n"})
    expect_error(
        lambda: package(rule_runner, APP),
        f"({LOCK}) exists, but Pants ignores it",
        f'pants_ignore.add = ["!/{LOCK}"]',
    )
