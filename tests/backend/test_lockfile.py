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




def test_a_target_of_an_unknown_resolve_fails_generate_lockfiles(rule_runner, tiny_channel):
    """Not silently left out of every lock (exit 0): the target and the known resolves named."""
    from pants.core.goals.generate_lockfiles import UserGenerateLockfiles

    from coex.goals.lockfile import RequestedCoexResolveNames

    rule_runner.write_files(
        {"other/BUILD": 'coex_binary(name="b", resolve="tinny", conda_dependencies=["tinypy"], entry_point="tinypy")\n'}
    )
    expect_error(
        lambda: rule_runner.request(UserGenerateLockfiles, [RequestedCoexResolveNames(["tiny"])]),
        "The target other:b uses the resolve 'tinny', which is not defined in `[coex].resolves`",
        "known resolves: tiny",
    )


def test_binaries_depend_on_their_resolves_lockfile(rule_runner):
    """As the Python backend's lockfiles: a synthetic `_lockfile` target per resolve, which its
    `coex_binary` targets depend on (so `--changed-since` marks them when the lock changes)."""
    from pants.engine.addresses import Address, Addresses
    from pants.engine.target import Dependencies, DependenciesRequest

    from tests.backend.helpers import APP

    def deps():
        tgt = rule_runner.get_target(APP)
        return rule_runner.request(Addresses, [DependenciesRequest(tgt[Dependencies])])

    lockfile = Address("3rdparty/conda", target_name="_coex_tiny_lockfile",
                       relative_file_path="tiny.lock")
    assert lockfile not in deps()  # nothing to depend on before the first generate-lockfiles
    generate_lockfile(rule_runner)
    assert lockfile in deps()
    target = rule_runner.get_target(lockfile)
    assert target.alias == "_lockfile"


def test_a_platform_is_solved_for_the_targets_that_build_for_it(rule_runner):
    """One target adding linux-aarch64 must not make the other targets' specs be solved for it
    (`postlink-fails` exists for linux-64 only): each platform gets the specs of the targets that
    build for it; a spec that platform cannot have fails naming the target and the platform."""
    import json

    from pants.engine.addresses import Address

    from tests.backend.helpers import package, write_built

    rule_runner.write_files(
        {
            "x86/BUILD": 'coex_binary(name="x86", conda_dependencies=["postlink-fails"], entry_point="prefixprog")\n',
            "arm/BUILD": 'coex_binary(name="arm", conda_dependencies=["prefixprog"], entry_point="prefixprog", platforms=["linux-64", "linux-aarch64"])\n',
        }
    )
    text = generate_lockfile(rule_runner)
    header = json.loads(text.split("\n", 1)[0].split(": ", 1)[1])
    assert header["platforms"] == ["linux-64", "linux-aarch64"]
    assert header["platform_specs"] == {"linux-aarch64": ["prefixprog"]}
    assert "postlink-fails" in text
    relpaths = write_built(rule_runner, package(rule_runner, Address("arm", target_name="arm")))
    assert sorted(relpaths) == ["arm/arm-linux-64.coex", "arm/arm-linux-aarch64.coex"]

    rule_runner.write_files(
        {"arm/BUILD": 'coex_binary(name="arm", conda_dependencies=["prefixprog", "postlink-fails"], entry_point="prefixprog", platforms=["linux-64", "linux-aarch64"])\n'}
    )
    expect_error(
        lambda: generate_lockfile(rule_runner),
        "Cannot solve resolve 'tiny' for platform linux-aarch64 (specs from the targets that "
        "build for linux-aarch64: arm:arm: postlink-fails, prefixprog)",
    )
