"""RuleRunner tests of the coex backend (tiny channel): package and run: archives, app layer, entry
points, incremental and cross-platform builds, and their bad input."""
import hashlib
import json
import os
import subprocess
import sys
import zipfile
from textwrap import dedent

from pants.core.goals.run import RunRequest
from pants.engine.addresses import Address

from coex.goals.package import CoexBinaryFieldSet
from coex_runtime import format as coex_format
from coex_runtime.cache import env_dir_name
from tests.backend.helpers import (
    APP,
    BUILD,
    archive_info,
    expect_error,
    generate_lockfile,
    package,
    set_coex_options,
    write_built,
)


def test_generate_lockfile_then_package(rule_runner, tiny_channel):
    text = generate_lockfile(rule_runner)
    assert text.startswith("# coex-lockfile: ")
    assert "zstd" in text  # every lock pins zstd for the runtime's decoder

    built = package(rule_runner, APP)
    (relpath,) = write_built(rule_runner, built)
    assert relpath == "app/app.coex"
    path, archive = archive_info(rule_runner, relpath)
    assert os.access(path, os.X_OK)
    info = archive.info
    names = [p["name"] for p in info["packages"]]
    assert {"prefixprog", "libtiny", "tinypy", "python", "zstd"} <= set(names)
    # install order: a dependency comes before what needs it
    assert names.index("libtiny") < names.index("prefixprog")
    by_name = {p["name"]: p for p in info["packages"]}
    # .tar.bz2 packages are transcoded, .conda ones stored untouched (sha256 = the locked one)
    assert by_name["libtiny"]["encoding"] == "tar.zst"
    assert by_name["libtiny"]["member"].endswith(".tar.zst")
    assert by_name["prefixprog"]["encoding"] == "conda"
    assert by_name["prefixprog"]["stored_sha256"] == by_name["prefixprog"]["sha256"]
    assert info["platform"] == "linux-64"
    assert info["env"] == {"APP_MODE": "test"}
    assert info["default_entry_point"] == "app"
    assert info["build"]["resolve"] == "tiny"
    assert info["build"]["target"] == "app:app"
    assert info["build"]["lockfile_sha256"] == hashlib.sha256(text.encode()).hexdigest()
    log = built.artifacts[0].extra_log_lines
    assert "envs/" + env_dir_name(info["env_id"]) in log[1] and "conda packages" in log[0]
    with zipfile.ZipFile(path) as zf:
        members = set(zf.namelist())
    # resources are source-root stripped (src/ is a default root), files keep their path
    assert "app/myapp/main.py" in members
    assert "app/app/data/notes.txt" in members
    assert coex_format.LIBZSTD_NAME in members


def test_package_is_deterministic_and_incremental(rule_runner, tiny_channel):
    generate_lockfile(rule_runner)
    first = package(rule_runner, APP)
    again = package(rule_runner, APP)
    assert first.digest == again.digest

    set_coex_options(rule_runner, tiny_channel.url)  # a new session: fresh counters
    rule_runner.write_files({"app/src/myapp/main.py": "print('edited')\n"})
    edited = package(rule_runner, APP)
    metrics = rule_runner.scheduler.get_metrics()
    assert edited.digest != first.digest
    # only the assembly process is even asked for: no entries, fetch or transcode work
    assert metrics.get("local_execution_requests") == 1, metrics
    assert metrics.get("local_cache_requests") == 1, metrics


def test_named_entry_points(rule_runner):
    rule_runner.write_files(
        {
            "app/BUILD": BUILD.replace(
                'entry_point="prefixprog",',
                'entry_points={"pp": "prefixprog", "tp": "tinypy", "main": "python -m myapp.main"},'
                ' default_entry_point="tp",',
            )
        }
    )
    generate_lockfile(rule_runner)
    (relpath,) = write_built(rule_runner, package(rule_runner, APP))
    _, archive = archive_info(rule_runner, relpath)
    info = archive.info
    assert sorted(info["entry_points"]) == ["main", "pp", "tp"]
    assert info["default_entry_point"] == "tp"
    rule_runner.write_files(
        {"app/BUILD": BUILD.replace('entry_point="prefixprog",', 'entry_points={"a": "x", "b": "y"},')}
    )
    expect_error(lambda: rule_runner.get_target(APP), "app:app", "default_entry_point", "a, b")


def test_cross_platform_aarch64_archive(rule_runner, tmp_path):
    rule_runner.write_files(
        {
            "arm/BUILD": dedent(
                """\
                coex_binary(
                    name="arm",
                    conda_dependencies=["prefixprog"],
                    entry_point="prefixprog",
                    platforms=["linux-aarch64", "linux-64"],
                )
                """
            )
        }
    )
    generate_lockfile(rule_runner)
    built = package(rule_runner, Address("arm", target_name="arm"))
    relpaths = write_built(rule_runner, built)
    assert sorted(relpaths) == ["arm/arm-linux-64.coex", "arm/arm-linux-aarch64.coex"]
    path, _ = archive_info(rule_runner, "arm/arm-linux-aarch64.coex")
    # inspect it with the runtime's own tools, as a user would (the host is x86-64)
    env = {**os.environ, "COEX_TOOLS": "1", "COEX_ROOT": str(tmp_path / "coex-root")}
    info = json.loads(subprocess.run(
        [sys.executable, path, "info"], env=env, check=True, stdout=subprocess.PIPE).stdout)
    record = info.get("record", info)
    assert record["platform"] == "linux-aarch64"
    subdirs = {p["subdir"] for p in record["packages"]}
    assert "linux-aarch64" in subdirs and "linux-64" not in subdirs
    verify = subprocess.run([sys.executable, path, "verify"], env=env, stdout=subprocess.PIPE)
    assert verify.returncode == 0 and b"OK" in verify.stdout


def test_run_request_runs_the_host_archive(rule_runner):
    generate_lockfile(rule_runner)
    tgt = rule_runner.get_target(APP)
    run = rule_runner.request(RunRequest, [CoexBinaryFieldSet.create(tgt)])
    assert run.args == ("{chroot}/app/app.coex",)


def test_entry_point_naming_nothing(rule_runner):
    rule_runner.write_files({"app/BUILD": BUILD.replace('entry_point="prefixprog"', 'entry_point="nosuchprog"')})
    generate_lockfile(rule_runner)
    text = expect_error(lambda: package(rule_runner, APP), "nosuchprog", "app:app",
                        "programs: pp, prefixprog, prefixprog-sh, python,")
    # prefixprog's link scripts (bin/.prefixprog-post-link.sh) are no programs to offer
    assert "link.sh" not in text


def test_log_counts_app_files_in_words(rule_runner):
    rule_runner.write_files({"app/BUILD": BUILD.replace('":srcs", ":data"', '":data"')})
    generate_lockfile(rule_runner)
    (artifact,) = package(rule_runner, APP).artifacts
    assert ", 1 app file, " in artifact.extra_log_lines[0], artifact.extra_log_lines


def test_two_targets_same_output_path(rule_runner):
    rule_runner.write_files(
        {
            "other/BUILD": dedent(
                """\
                coex_binary(name="other", resolve="tiny", entry_point="prefixprog",
                            output_path="app/app.coex")
                """
            )
        }
    )
    expect_error(lambda: package(rule_runner, APP), "app:app", "other:other", "app/app.coex", "output_path")


def test_binaries_sharing_a_resolve_carry_only_what_they_need(rule_runner):
    rule_runner.write_files(
        {
            "old/BUILD": dedent(
                """\
                coex_binary(name="old", conda_dependencies=["oldstyle"], entry_point="oldstyle")
                coex_binary(name="all", resolve="tiny", entry_point="oldstyle")
                """
            )
        }
    )
    text = generate_lockfile(rule_runner)
    assert "oldstyle" in text and "prefixprog" in text  # one lock for the whole resolve

    def names(address):
        (relpath,) = write_built(rule_runner, package(rule_runner, address))
        _, archive = archive_info(rule_runner, relpath)
        return {p["name"] for p in archive.info["packages"]}, archive.info

    app, app_info = names(APP)
    assert "oldstyle" not in app and {"prefixprog", "libtiny", "tinypy", "python", "zstd"} <= app
    assert app_info["requested_specs"] == ["prefixprog", "tinypy"]
    old, _ = names(Address("old", target_name="old"))
    assert "oldstyle" in old and "zstd" in old and "prefixprog" not in old
    # a binary that only names the resolve gets the whole environment
    everything, _ = names(Address("old", target_name="all"))
    assert everything == app | old


def test_run_needs_an_archive_for_this_machine(rule_runner):
    rule_runner.write_files(
        {"app/BUILD": BUILD.replace('name="app",', 'name="app", platforms=["linux-aarch64"],')}
    )
    tgt = rule_runner.get_target(APP)
    expect_error(
        lambda: rule_runner.request(RunRequest, [CoexBinaryFieldSet.create(tgt)]),
        "Cannot run app:app here",
        "linux-aarch64",
        "'linux-64'",
    )


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
