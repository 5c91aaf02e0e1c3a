"""RuleRunner tests of util_rules/resolve (tiny channel): a resolve's solve request gathered from
its targets, reading its lockfile (missing, ignored, stale, hand-edited, outside the build root),
channels written as paths, and the locked packages of a platform."""
import json
import os
import re
import shutil
import zipfile

from pants.engine.addresses import Address

from coex.lib.records import LockedPlatform
from coex.util_rules.resolve import CoexLockedPlatformRequest, CoexResolveInputs, CoexResolveName
from tests.backend.helpers import (
    APP,
    APP_FILES,
    BUILD,
    archive_info,
    LOCK,
    expect_error,
    generate_lockfile,
    make_rule_runner,
    package,
    set_coex_options,
    write_built,
)


def test_resolve_inputs_gathers_specs_from_targets(rule_runner, tiny_channel):
    inputs = rule_runner.request(CoexResolveInputs, [CoexResolveName("tiny")])
    req = inputs.request
    assert req.specs == ("prefixprog", "tinypy")
    assert req.channels == (tiny_channel.url,)
    assert req.platforms == ("linux-64",)
    assert "app:app" in req.origin
    assert inputs.lockfile_path == LOCK
    assert dict(inputs.target_specs) == {APP: ("prefixprog", "tinypy")}
    assert req.sources == (("the `conda_dependencies` of app:app", ("prefixprog", "tinypy")),)


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
    assert req.channels == (tiny_channel.url,)
    assert req.specs == ("oldstyle", "prefixprog", "tinypy")


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
            "envapp/environment.yml": "dependencies:\n  - prefixprog\n  - pip:\n    - -e .\n",
        }
    )
    expect_error(
        lambda: rule_runner.request(CoexResolveInputs, [CoexResolveName("tiny")]),
        "envapp/environment.yml",
        "envapp:envapp",
        "'-e .' is an editable install",
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


def test_ignored_lockfile_is_explained(tiny_channel):
    """Pants cannot see an ignored file (nor may a rule look at the disk behind its back): the
    message for a lockfile it cannot see names both causes and both fixes."""
    rule_runner = make_rule_runner([f'--pants-ignore=["/{LOCK}"]'])
    set_coex_options(rule_runner, tiny_channel.url)
    rule_runner.write_files({**APP_FILES, LOCK: "# coex-lockfile: {}\n"})
    expect_error(
        lambda: package(rule_runner, APP),
        f"does not exist: {LOCK}",
        "If it does exist, Pants ignores it",
        f'pants_ignore.add = ["!/{LOCK}"]',
    )


def test_lockfile_with_a_hand_edited_sha256(rule_runner):
    text = generate_lockfile(rule_runner)
    m = re.search(r"(conda: \S*prefixprog-1\.0-\S+\.conda\n(?:  .*\n)*?  sha256: )([0-9a-f]{64})", text)
    assert m, text
    wrong = "0" * 64
    rule_runner.write_files({LOCK: text.replace(m.group(2), wrong)})
    expect_error(lambda: package(rule_runner, APP), "prefixprog-1.0", wrong)
    rule_runner.write_files({LOCK: text.replace(m.group(2), "abc")})
    expect_error(lambda: package(rule_runner, APP), "prefixprog")


def test_environment_file_edit_is_stale_naming_the_change(rule_runner, tiny_channel):
    rule_runner.write_files(
        {
            "envapp/BUILD": 'coex_binary(name="envapp", environment_file="environment.yml", entry_point="prefixprog")\n',
            "envapp/environment.yml": "dependencies:\n  - prefixprog\n",
        }
    )
    generate_lockfile(rule_runner)
    rule_runner.write_files({"envapp/environment.yml": "dependencies:\n  - prefixprog\n  - oldstyle\n"})
    expect_error(lambda: package(rule_runner, Address("envapp", target_name="envapp")),
                 "is stale", "specs added: oldstyle")
    rule_runner.write_files({"envapp/environment.yml": f"channels: [{tiny_channel.url}/]\ndependencies:\n  - prefixprog\n"})
    package(rule_runner, Address("envapp", target_name="envapp"))


def test_relative_channel_paths(rule_runner, tiny_channel):
    root = rule_runner.build_root
    shutil.copytree(tiny_channel.path, os.path.join(root, "3rdparty", "channel"))
    # [coex].channels: relative to the build root (was taken for a conda.anaconda.org name)
    set_coex_options(rule_runner, "3rdparty/channel")
    req = rule_runner.request(CoexResolveInputs, [CoexResolveName("tiny")]).request
    assert req.channels == (os.path.join(root, "3rdparty", "channel"),)
    lock = generate_lockfile(rule_runner)
    header = json.loads(lock.split("\n", 1)[0].split(": ", 1)[1])
    # recorded relative to the build root: the same lockfile in every checkout
    assert header["channels"] == ["coex://buildroot/3rdparty/channel"]
    assert root not in lock
    package(rule_runner, APP)
    # an environment file's `channels:` entry: relative to the file, as conda does
    rule_runner.write_files(
        {
            "envapp/BUILD": 'coex_binary(name="envapp", environment_file="environment.yml", entry_point="prefixprog")\n',
            "envapp/environment.yml": "channels: [../3rdparty/channel]\ndependencies: [oldstyle]\n",
        }
    )
    req = rule_runner.request(CoexResolveInputs, [CoexResolveName("tiny")]).request
    assert req.channels == (os.path.join(root, "3rdparty", "channel"),)


def test_missing_channel_directory(rule_runner, tiny_channel):
    """`[coex].channels = ["3rdparty/channel"]` before the channel was copied in: the directory is
    named (it used to be looked up as an anaconda.org channel and fail with a DNS error)."""
    set_coex_options(rule_runner, "3rdparty/channel")
    expect_error(
        lambda: rule_runner.request(CoexResolveInputs, [CoexResolveName("tiny")]),
        "The channel '3rdparty/channel' (from `[coex].channels`) is the directory "
        f"{rule_runner.build_root}/3rdparty/channel, which does not exist",
    )
    set_coex_options(rule_runner, tiny_channel.url)
    rule_runner.write_files(
        {
            "envapp/BUILD": 'coex_binary(name="envapp", environment_file="environment.yml", entry_point="prefixprog")\n',
            "envapp/environment.yml": "channels: [vendor/channel]\ndependencies: [oldstyle]\n",
        }
    )
    expect_error(
        lambda: rule_runner.request(CoexResolveInputs, [CoexResolveName("tiny")]),
        "The channel 'vendor/channel' (from envapp/environment.yml (`environment_file` of "
        "envapp:envapp)) is the directory",
        "envapp/vendor/channel, which does not exist",
    )


def test_lockfile_path_outside_the_build_root(rule_runner, tiny_channel, tmp_path):
    # the engine panicked (and retried forever) on an absolute path; '..' escaped the build root
    for bad in (str(tmp_path / "x.lock"), "../x.lock"):
        set_coex_options(rule_runner, tiny_channel.url, resolves={"tiny": bad})
        expect_error(lambda: generate_lockfile(rule_runner), repr(bad), "inside the build root",
                     "3rdparty/conda/tiny.lock")
        expect_error(lambda: package(rule_runner, APP), repr(bad), "inside the build root")
    # an absolute path inside the build root (e.g. written with %(buildroot)s) just works
    inside = os.path.join(rule_runner.build_root, LOCK)
    set_coex_options(rule_runner, tiny_channel.url, resolves={"tiny": inside})
    generate_lockfile(rule_runner)
    assert package(rule_runner, APP).artifacts[0].relpath == "app/app.coex"


def test_empty_platforms_option(rule_runner, tiny_channel):
    generate_lockfile(rule_runner)
    set_coex_options(rule_runner, tiny_channel.url, "--coex-platforms=[]")
    # was: a package with no archives at all, silently
    expect_error(lambda: package(rule_runner, APP), "[coex].platforms` is empty", "app:app")


def test_locked_platform_of_root_specs(rule_runner):
    """`coex.lib entries` with the root specs: only what they need, in install order."""
    generate_lockfile(rule_runner)
    whole = rule_runner.request(LockedPlatform, [CoexLockedPlatformRequest("tiny", "linux-64")])
    part = rule_runner.request(
        LockedPlatform, [CoexLockedPlatformRequest("tiny", "linux-64", ("prefixprog",))]
    )
    names = [p.name for p in part.packages]
    assert {"prefixprog", "libtiny", "zstd"} <= set(names) and "tinypy" not in names
    assert names == [p.name for p in whole.packages if p.name in names]
    assert part.locked == whole.locked == len(whole.packages)


def test_rules_never_import_py_rattler(rule_runner, monkeypatch):
    """py-rattler runs in library processes only: a rule that imported it would make pantsd hold
    native threads and stale code. With `import rattler` failing in this process, locking,
    checking and packaging a resolve (environment file, inline specs, subsets) still work."""
    import sys

    rule_runner.write_files(
        {
            "envapp/BUILD": 'coex_binary(name="envapp", environment_file="environment.yml", entry_point="prefixprog")\n',
            "envapp/environment.yml": "dependencies:\n  - prefixprog >=1\n",
        }
    )
    monkeypatch.setitem(sys.modules, "rattler", None)
    generate_lockfile(rule_runner)
    package(rule_runner, APP)
    package(rule_runner, Address("envapp", target_name="envapp"))


def test_missing_environment_file_is_named(rule_runner):
    """A file that does not exist (was: IndexError: tuple index out of range)."""
    rule_runner.write_files(
        {"envapp/BUILD": 'coex_binary(name="envapp", environment_file="environment.yaml", entry_point="prefixprog")\n'}
    )
    expect_error(
        lambda: rule_runner.request(CoexResolveInputs, [CoexResolveName("tiny")]),
        "The `environment_file` of envapp:envapp is envapp/environment.yaml, which does not exist",
        "relative to the BUILD file's directory, envapp",
    )
    rule_runner.write_files(
        {
            "envapp/BUILD": 'coex_binary(name="envapp", dependencies=["//conda:env"], entry_point="prefixprog")\n',
            "conda/BUILD": 'coex_environment(name="env")\n',
        }
    )
    expect_error(
        lambda: rule_runner.request(CoexResolveInputs, [CoexResolveName("tiny")]),
        "The `coex_environment` conda:env is conda/environment.yml, which does not exist",
    )


SHARED_ENV = {
    "3rdparty/conda/BUILD": 'coex_environment(name="env", source="tools.yml")\n',
    "3rdparty/conda/tools.yml": "channels: [../channel]\ndependencies: [oldstyle]\n",
    "svc/BUILD": (
        'coex_binary(name="direct", dependencies=["//3rdparty/conda:env"], entry_point="oldstyle")\n'
        'coex_binary(name="via_lib", dependencies=[":lib"], conda_dependencies=["prefixprog"],'
        ' entry_point="oldstyle")\n'
        'resources(name="lib", sources=["lib/*.txt"], dependencies=["//3rdparty/conda:env"])\n'
    ),
    "svc/lib/data.txt": "data\n",
}


def test_coex_environment_shared_across_directories(rule_runner, tiny_channel):
    """A `coex_environment` in another directory, listed in `dependencies` (directly, or by a
    dependency): its specs join the binary's own; its relative channels are relative to it; the
    file itself is not app code."""
    channel = rule_runner.build_root + "/3rdparty/channel"
    shutil.copytree(tiny_channel.path, channel)
    rule_runner.write_files(SHARED_ENV)
    inputs = rule_runner.request(CoexResolveInputs, [CoexResolveName("tiny")])
    direct, via_lib = Address("svc", target_name="direct"), Address("svc", target_name="via_lib")
    assert inputs.target_specs[direct] == ("oldstyle",)
    assert inputs.target_specs[via_lib] == ("oldstyle", "prefixprog")
    assert inputs.request.channels == (channel,)
    origin = "3rdparty/conda/tools.yml (`coex_environment` 3rdparty/conda:env)"
    assert (origin, ("oldstyle",)) in inputs.request.sources
    generate_lockfile(rule_runner)
    (relpath,) = write_built(rule_runner, package(rule_runner, via_lib))
    path, archive = archive_info(rule_runner, relpath)
    assert sorted(archive.info["requested_specs"]) == ["oldstyle", "prefixprog"]
    with zipfile.ZipFile(path) as zf:
        app = [m for m in zf.namelist() if m.startswith("app/")]
    assert app == ["app/svc/lib/data.txt"], app  # neither tools.yml nor the lockfile


def test_a_binary_without_any_environment(rule_runner):
    rule_runner.write_files(
        {"bare/BUILD": 'coex_binary(name="bare", entry_point="prefixprog")\n'}
    )
    expect_error(
        lambda: rule_runner.request(CoexResolveInputs, [CoexResolveName("tiny")]),
        "The `coex_binary` bare:bare has no conda environment",
        "coex_environment",
    )
