"""Edge cases a monorepo/CI engineer hits (adversarial review): RuleRunner, tiny channel."""
import json
import os
import shutil
import stat
import zipfile
from textwrap import dedent

from pants.engine.addresses import Address

from coex.util_rules.resolve import CoexResolveInputs, CoexResolveName
from tests.backend.helpers import (
    APP,
    BUILD,
    LOCK,
    archive_info,
    expect_error,
    generate_lockfile,
    package,
    set_coex_options,
    write_built,
)


def copy_channel(tiny_channel, dest):
    shutil.copytree(tiny_channel.path, dest)
    return dest


def test_package_deleted_from_channel_after_locking(rule_runner, tiny_channel, tmp_path):
    chan = copy_channel(tiny_channel, tmp_path / "chan")
    set_coex_options(rule_runner, chan.as_uri())
    generate_lockfile(rule_runner)
    (victim,) = (chan / "linux-64").glob("prefixprog-1.0-*.conda")
    victim.unlink()
    expect_error(lambda: package(rule_runner, APP), victim.name)


def test_lockfile_with_a_hand_edited_sha256(rule_runner):
    text = generate_lockfile(rule_runner)
    import re

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


def test_app_layer_files_resources_odd_names_modes(rule_runner):
    rule_runner.write_files(
        {
            "app/BUILD": BUILD.replace('dependencies=[":srcs", ":data"]', 'dependencies=[":srcs", ":data", ":odd", ":scripts"]')
            + 'files(name="odd", sources=["odd/*"])\nfiles(name="scripts", sources=["bin/*"])\n',
            "app/odd/with space.txt": "s\n",
            "app/odd/ünïcödé ✓.txt": "u\n",
            "app/bin/run.sh": "#!/bin/sh\necho run\n",
        }
    )
    os.chmod(os.path.join(rule_runner.build_root, "app/bin/run.sh"), 0o755)
    generate_lockfile(rule_runner)
    (relpath,) = write_built(rule_runner, package(rule_runner, APP))
    path, _ = archive_info(rule_runner, relpath)
    with zipfile.ZipFile(path) as zf:
        infos = {i.filename: i for i in zf.infolist()}
    assert "app/app/odd/with space.txt" in infos
    assert "app/app/odd/ünïcödé ✓.txt" in infos
    assert "app/myapp/main.py" in infos
    mode = infos["app/app/bin/run.sh"].external_attr >> 16
    assert stat.S_IMODE(mode) == 0o755, oct(mode)
    assert stat.S_IMODE(infos["app/myapp/main.py"].external_attr >> 16) == 0o644


def test_empty_app_layer(rule_runner):
    rule_runner.write_files({"app/BUILD": BUILD.replace('dependencies=[":srcs", ":data"],', "")})
    generate_lockfile(rule_runner)
    (relpath,) = write_built(rule_runner, package(rule_runner, APP))
    path, archive = archive_info(rule_runner, relpath)
    with zipfile.ZipFile(path) as zf:
        assert not [n for n in zf.namelist() if n.startswith("app/")]


def test_output_path_collision_multi_platform(rule_runner):
    rule_runner.write_files(
        {
            "two/BUILD": dedent(
                """\
                coex_binary(name="x", resolve="tiny", entry_point="prefixprog",
                            platforms=["linux-64", "linux-aarch64"])
                coex_binary(name="y", resolve="tiny", entry_point="prefixprog",
                            output_path="two/x-linux-64.coex")
                """
            )
        }
    )
    expect_error(lambda: package(rule_runner, Address("two", target_name="x")),
                 "two:x", "two:y", "two/x-linux-64.coex")


def test_relative_channel_paths(rule_runner, tiny_channel):
    root = rule_runner.build_root
    shutil.copytree(tiny_channel.path, os.path.join(root, "3rdparty", "channel"))
    # [coex].channels: relative to the build root (was taken for a conda.anaconda.org name)
    set_coex_options(rule_runner, "3rdparty/channel")
    req = rule_runner.request(CoexResolveInputs, [CoexResolveName("tiny")]).request
    assert req["channels"] == [os.path.join(root, "3rdparty", "channel")]
    header = json.loads(generate_lockfile(rule_runner).split("\n", 1)[0].split(": ", 1)[1])
    assert header["channels"] == ["file://" + os.path.join(root, "3rdparty", "channel")]
    package(rule_runner, APP)
    # an environment file's `channels:` entry: relative to the file, as conda does
    rule_runner.write_files(
        {
            "envapp/BUILD": 'coex_binary(name="envapp", environment_file="environment.yml", entry_point="prefixprog")\n',
            "envapp/environment.yml": "channels: [../3rdparty/channel]\ndependencies: [oldstyle]\n",
        }
    )
    req = rule_runner.request(CoexResolveInputs, [CoexResolveName("tiny")]).request
    assert req["channels"] == [os.path.join(root, "3rdparty", "channel")]


def test_mode_change_alone_rebuilds_and_resources_keep_modes(rule_runner):
    rule_runner.write_files(
        {
            "app/BUILD": BUILD + 'resources(name="tool", sources=["src/tool.sh"])\n',
            "app/src/tool.sh": "#!/bin/sh\necho tool\n",
        }
    )
    rule_runner.write_files({"app/BUILD": rule_runner.read_file("app/BUILD").replace(
        'dependencies=[":srcs", ":data"]', 'dependencies=[":srcs", ":data", ":tool"]')})
    generate_lockfile(rule_runner)

    def tool_mode():
        (relpath,) = write_built(rule_runner, package(rule_runner, APP))
        path, _ = archive_info(rule_runner, relpath)
        with zipfile.ZipFile(path) as zf:
            return stat.S_IMODE(zf.getinfo("app/tool.sh").external_attr >> 16)

    assert tool_mode() == 0o644
    os.chmod(os.path.join(rule_runner.build_root, "app/src/tool.sh"), 0o755)
    rule_runner.write_files({"app/src/tool.sh": "#!/bin/sh\necho tool\n"})  # same bytes
    os.chmod(os.path.join(rule_runner.build_root, "app/src/tool.sh"), 0o755)
    assert tool_mode() == 0o755


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


def test_run_builds_only_the_host_archive(rule_runner):
    from pants.core.goals.run import RunRequest

    from coex.goals.package import CoexBinaryFieldSet

    rule_runner.write_files(
        {"app/BUILD": BUILD.replace('name="app",', 'name="app", platforms=["linux-aarch64", "linux-64"],')}
    )
    generate_lockfile(rule_runner)
    tgt = rule_runner.get_target(APP)
    run = rule_runner.request(RunRequest, [CoexBinaryFieldSet.create(tgt)])
    assert run.args == ("{chroot}/app/app-linux-64.coex",)
    rule_runner.write_digest(run.digest, path_prefix="run-out")
    assert os.listdir(os.path.join(rule_runner.build_root, "run-out", "app")) == ["app-linux-64.coex"]
    # no aarch64 package was fetched or transcoded for it
    metrics = rule_runner.scheduler.get_metrics()
    built = package(rule_runner, APP)  # package still builds both
    assert sorted(a.relpath for a in built.artifacts) == ["app/app-linux-64.coex", "app/app-linux-aarch64.coex"]
    assert rule_runner.scheduler.get_metrics()["local_execution_requests"] > metrics["local_execution_requests"]


def test_output_path_values(rule_runner):
    def built_with(out):
        rule_runner.write_files(
            {"app/BUILD": BUILD.replace('name="app",', f'name="app", output_path="{out}",')}
        )
        return [a.relpath for a in package(rule_runner, APP).artifacts]

    generate_lockfile(rule_runner)
    assert built_with("bins/") == ["bins/app.coex"]  # a directory (was a file named 'bins/')
    assert built_with("a//b/../c.coex") == ["a/c.coex"]
    # outside the dist dir: the engine panicked and retried forever on an absolute path
    for bad in ("/abs/x.coex", "../x.coex", "."):
        expect_error(lambda: built_with(bad), repr(bad), "app:app", "output_path", "inside the dist dir")


def test_empty_platforms_option(rule_runner, tiny_channel):
    generate_lockfile(rule_runner)
    set_coex_options(rule_runner, tiny_channel.url, "--coex-platforms=[]")
    # was: a package with no archives at all, silently
    expect_error(lambda: package(rule_runner, APP), "[coex].platforms` is empty", "app:app")


def test_env_field_names(rule_runner):
    for bad in ('{"": "x"}', '{"A=B": "y"}'):
        rule_runner.write_files(
            {"app/BUILD": BUILD.replace('env={"APP_MODE": "test"}', f"env={bad}")}
        )
        expect_error(lambda: rule_runner.get_target(APP), "`env` field of app:app", "without `=`")
