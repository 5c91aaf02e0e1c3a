"""RuleRunner tests of the coex backend against the tiny channel: lockfile generation, reading
and staleness, per-package digests, transcoding, the app layer, assembly, run, and bad input."""
from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import zipfile
from textwrap import dedent

import pytest
from pants.engine.addresses import Address
from pants.engine.internals.scheduler import ExecutionError
from pants.core.goals.run import RunRequest

from coex.goals.package import CoexBinaryFieldSet
from coex.util_rules.packages import ArchivablePackage, ArchivablePackageRequest, FetchedCondaPackage
from coex.util_rules.resolve import (
    CoexLockedPlatform,
    CoexLockedPlatformRequest,
    CoexResolveInputs,
    CoexResolveName,
)
from coex_runtime import format as coex_format
from tests.backend.helpers import (
    LOCK,
    generate_lockfile,
    make_rule_runner,
    package,
    set_coex_options,
)

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


@pytest.fixture
def rule_runner(tiny_channel):
    rr = make_rule_runner()
    set_coex_options(rr, tiny_channel.url)
    rr.write_files(
        {
            "app/BUILD": BUILD,
            "app/src/myapp/__init__.py": "",
            "app/src/myapp/main.py": "print('hello')\n",
            "app/data/notes.txt": "notes\n",
        }
    )
    return rr


def archive_info(rule_runner, relpath):
    path = os.path.join(rule_runner.build_root, "dist-test", relpath)
    return path, coex_format.open_archive(path)


def write_built(rule_runner, built):
    rule_runner.write_digest(built.digest, path_prefix="dist-test")
    return [a.relpath for a in built.artifacts]


def expect_error(fn, *needles):
    with pytest.raises(ExecutionError) as exc:
        fn()
    text = str(exc.value)
    for needle in needles:
        assert needle in text, f"{needle!r} not in:\n{text}"
    return text


def test_resolve_inputs_gathers_specs_from_targets(rule_runner, tiny_channel):
    inputs = rule_runner.request(CoexResolveInputs, [CoexResolveName("tiny")])
    req = inputs.request
    assert req["specs"] == ["prefixprog", "tinypy"]
    assert req["channels"] == [tiny_channel.url]
    assert req["platforms"] == ["linux-64"]
    assert "app:app" in req["origin"]
    assert inputs.lockfile_path == LOCK


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
    assert info["env_id"][:16] in log[1] and "conda packages" in log[0]
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


def test_locked_platform_entries_and_per_package_digests(rule_runner, tiny_channel):
    generate_lockfile(rule_runner)
    locked = rule_runner.request(
        CoexLockedPlatform, [CoexLockedPlatformRequest("tiny", "linux-64")]
    )
    assert locked.zstd_filename.startswith("zstd-")
    libtiny = next(p for p in locked.packages if p.name == "libtiny")
    fetched = rule_runner.request(FetchedCondaPackage, [libtiny])
    assert fetched.path == f"pkgs/linux-64/{libtiny.filename}"
    prepared = rule_runner.request(ArchivablePackage, [ArchivablePackageRequest(libtiny, 3)])
    assert prepared.encoding == "tar.zst" and prepared.path.endswith(".tar.zst")
    again = rule_runner.request(ArchivablePackage, [ArchivablePackageRequest(libtiny, 3)])
    assert again.digest == prepared.digest
    conda_pkg = next(p for p in locked.packages if p.filename.endswith(".conda"))
    as_is = rule_runner.request(ArchivablePackage, [ArchivablePackageRequest(conda_pkg, 3)])
    assert as_is.encoding == "conda"
    assert as_is.digest == rule_runner.request(FetchedCondaPackage, [conda_pkg]).digest


def test_fetch_verifies_sha256_and_names_the_package(rule_runner, tiny_channel, tmp_path):
    generate_lockfile(rule_runner)
    locked = rule_runner.request(
        CoexLockedPlatform, [CoexLockedPlatformRequest("tiny", "linux-64")]
    )
    pkg = next(p for p in locked.packages if p.name == "prefixprog")
    fake = tmp_path / pkg.filename
    fake.write_bytes(b"x" * pkg.size)  # right size, wrong content
    bad = type(pkg)(**{**pkg.__dict__, "url": fake.as_uri()})
    expect_error(
        lambda: rule_runner.request(FetchedCondaPackage, [bad]),
        pkg.filename,
        pkg.sha256,
        "regenerate the lockfile",
    )


def test_fetch_over_http(rule_runner, tiny_channel, tmp_path):
    """The same fetch path as https channels: an HTTP server on localhost serving the channel."""
    import functools
    import http.server
    import threading
    import uuid

    generate_lockfile(rule_runner)
    locked = rule_runner.request(
        CoexLockedPlatform, [CoexLockedPlatformRequest("tiny", "linux-64")]
    )
    pkg = next(p for p in locked.packages if p.name == "prefixprog")
    served = []

    class Handler(http.server.SimpleHTTPRequestHandler):
        def log_message(self, fmt, *args):
            served.append(self.path)

    # Pants 2.17 remembers downloads by URL path: a fresh path per run forces a real fetch.
    token = uuid.uuid4().hex
    (tmp_path / token).symlink_to(tiny_channel.path)
    handler = functools.partial(Handler, directory=str(tmp_path))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{server.server_port}/{token}/linux-64/{pkg.filename}"
        remote = type(pkg)(**{**pkg.__dict__, "url": url})
        fetched = rule_runner.request(FetchedCondaPackage, [remote])
    finally:
        server.shutdown()
    assert served == [f"/{token}/linux-64/{pkg.filename}"]  # really fetched over the network
    assert fetched.digest == rule_runner.request(FetchedCondaPackage, [pkg]).digest


def test_run_request_runs_the_host_archive(rule_runner):
    generate_lockfile(rule_runner)
    tgt = rule_runner.get_target(APP)
    run = rule_runner.request(RunRequest, [CoexBinaryFieldSet.create(tgt)])
    assert run.args == ("{chroot}/app/app.coex",)


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


def test_export_explicit_files(rule_runner, tiny_channel):
    from pants.core.goals.export import ExportResults
    from pants.engine.fs import DigestContents

    from coex.goals.export import ExportCoexResolves

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


# ---------------------------------------------------------------------------------------------
# bad input: each a clear error naming the target/resolve and the fix


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


def test_unknown_platform(rule_runner):
    rule_runner.write_files(
        {"app/BUILD": BUILD.replace('name="app",', 'name="app", platforms=["linux-arm64"],')}
    )
    expect_error(lambda: package(rule_runner, APP), "linux-arm64", "app:app", "linux-aarch64")


def test_entry_point_naming_nothing(rule_runner):
    rule_runner.write_files({"app/BUILD": BUILD.replace('entry_point="prefixprog"', 'entry_point="nosuchprog"')})
    generate_lockfile(rule_runner)
    expect_error(lambda: package(rule_runner, APP), "nosuchprog", "app:app")


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


def test_unknown_platform_in_options(rule_runner, tiny_channel):
    set_coex_options(rule_runner, tiny_channel.url, '--coex-platforms=["linux64"]')
    expect_error(
        lambda: rule_runner.request(CoexResolveInputs, [CoexResolveName("tiny")]),
        "linux64",
        "[coex].platforms",
        "linux-64",
    )


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


def test_unsolvable_spec_names_the_target(rule_runner):
    rule_runner.write_files({"app/BUILD": BUILD.replace('"tinypy"', '"unsolvable"')})
    expect_error(lambda: generate_lockfile(rule_runner), "Locking the resolve 'tiny' failed", "app:app", "does-not-exist")


def test_no_entry_point_is_a_target_error(rule_runner):
    rule_runner.write_files({"app/BUILD": BUILD.replace('entry_point="prefixprog",', "")})
    expect_error(lambda: rule_runner.get_target(APP), "app:app", "no entry point", "entry_point")
