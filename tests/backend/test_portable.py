"""RuleRunner tests (tiny channel) of portable lockfiles: a local channel inside the build root is
locked relative to it and read through the engine; a channel named in
`[coex].channel_locations` is locked by its name and fetched from wherever the name points;
lockfiles of an older coex (absolute paths) still work where they are; `[coex].build_python`."""
import json
import logging
import os
import shutil
import stat
import sys
from dataclasses import replace

from pants.core.goals.export import ExportResults
from pants.engine.fs import DigestContents

from coex.goals.export import ExportCoexResolves
from coex.lib.lockfile import solve_to_lockfile
from coex.lib.records import ChannelLocations
from coex.util_rules.resolve import CoexResolveInputs, CoexResolveName
from tests.backend.helpers import (
    APP,
    APP_FILES,
    LOCK,
    expect_error,
    generate_lockfile,
    make_rule_runner,
    package,
    set_coex_options,
)


def header_of(lock: str) -> dict:
    return json.loads(lock.split("\n", 1)[0].split(": ", 1)[1])


def export_lines(rule_runner, *options):
    set_coex_options(rule_runner, *options, "--export-resolve=tiny")
    (result,) = rule_runner.request(ExportResults, [ExportCoexResolves(())])
    # the @EXPLICIT file (the digest also holds the environment's archive, for the installed
    # prefix export makes)
    (content,) = [c for c in rule_runner.request(DigestContents, [result.digest])
                  if c.path.endswith(".explicit.txt")]
    return [line for line in content.content.decode().splitlines() if "://" in line]


def test_channel_in_the_build_root_is_locked_relative_and_read_through_the_engine(
    rule_runner, tiny_channel
):
    root = rule_runner.build_root
    shutil.copytree(tiny_channel.path, os.path.join(root, "3rdparty", "channel"))
    set_coex_options(rule_runner, "3rdparty/channel")
    lock = generate_lockfile(rule_runner)
    assert "conda: coex://buildroot/3rdparty/channel/linux-64/prefixprog-1.0-h0_0.conda" in lock
    assert root not in lock
    package(rule_runner, APP)
    # @EXPLICIT lines say where the packages are on this machine
    urls = export_lines(rule_runner, "3rdparty/channel")
    assert f"file://{root}/3rdparty/channel/linux-64/prefixprog-1.0-h0_0.conda" in [
        u.split("#")[0] for u in urls]
    # the engine reads the file and checks it against the lock: a changed file is named
    rule_runner.write_files({"3rdparty/channel/linux-64/prefixprog-1.0-h0_0.conda": "changed"})
    expect_error(lambda: package(rule_runner, APP), "prefixprog-1.0-h0_0.conda",
                 "in the build root (3rdparty/channel/linux-64/prefixprog-1.0-h0_0.conda)",
                 "regenerate the lockfile")


def test_an_ignored_channel_in_the_build_root_is_fetched_by_path(tiny_channel):
    """Pants does not see a gitignored/pants_ignored channel: a fetch process reads it."""
    rule_runner = make_rule_runner(["--pants-ignore=['/3rdparty/channel']"])
    rule_runner.write_files(APP_FILES)
    shutil.copytree(tiny_channel.path, os.path.join(rule_runner.build_root, "3rdparty", "channel"))
    set_coex_options(rule_runner, os.path.join(rule_runner.build_root, "3rdparty", "channel"))
    assert "coex://buildroot/3rdparty/channel/" in generate_lockfile(rule_runner)
    assert package(rule_runner, APP).artifacts[0].relpath == "app/app.coex"


def test_named_channel_location(rule_runner, tiny_channel, tmp_path):
    first = shutil.copytree(tiny_channel.path, tmp_path / "first")

    def use(location):
        set_coex_options(rule_runner, "tiny",
                         f"--coex-channel-locations={json.dumps({'tiny': location})}")

    use(first.as_uri())
    lock = generate_lockfile(rule_runner)
    assert header_of(lock)["channels"] == ["coex://tiny"]
    assert "conda: coex://tiny/linux-64/prefixprog-1.0-h0_0.conda" in lock
    assert str(tmp_path) not in lock
    # the name now points elsewhere (another mirror): the lockfile is still fresh, and packages
    # come from the new place
    second = shutil.copytree(first, tmp_path / "second")
    shutil.rmtree(first)
    use(str(second))
    package(rule_runner, APP)
    urls = export_lines(rule_runner, "tiny",
                        f"--coex-channel-locations={json.dumps({'tiny': str(second)})}")
    assert all(u.startswith(second.as_uri() + "/") for u in urls), urls
    # without the name, the lockfile says which location it needs
    set_coex_options(rule_runner, tiny_channel.url)
    expect_error(lambda: package(rule_runner, APP), "is stale",
                 "names the channel location(s) tiny", "[coex].channel_locations")


def test_bad_channel_locations(rule_runner, tiny_channel):
    for bad, needle in (({"Tiny": "/x"}, "'Tiny' is not valid"),
                        ({"buildroot": "/x"}, "'buildroot' is not valid"),
                        ({"tiny": "rel/dir"}, "is not an absolute URL or path")):
        set_coex_options(rule_runner, tiny_channel.url,
                         f"--coex-channel-locations={json.dumps(bad)}")
        expect_error(lambda: generate_lockfile(rule_runner), "[coex].channel_locations", needle)


def test_a_lockfile_of_an_older_coex_works_where_it_is(rule_runner, tiny_channel, caplog):
    """Written before channels were portable: the in-root channel by its absolute path."""
    root = rule_runner.build_root
    shutil.copytree(tiny_channel.path, os.path.join(root, "3rdparty", "channel"))
    set_coex_options(rule_runner, "3rdparty/channel")
    request = rule_runner.request(CoexResolveInputs, [CoexResolveName("tiny")]).request
    out = os.path.join(root, LOCK)
    solve_to_lockfile(replace(request, locations=ChannelLocations()), out)
    with open(out) as f:
        old = f.read()
    rule_runner.write_files({LOCK: old})
    assert header_of(old)["channels"] == [f"file://{root}/3rdparty/channel"]
    with caplog.at_level(logging.WARNING):
        package(rule_runner, APP)
    assert "by absolute path" in caplog.text and "generate-lockfiles --resolve=tiny" in caplog.text


def test_build_python(rule_runner, tiny_channel, tmp_path):
    """The interpreter of every library process (e.g. the same path on every CI machine)."""
    log = tmp_path / "ran.log"
    wrapper = tmp_path / "python"
    wrapper.write_text(f'#!/bin/sh\necho "$2:$3" >> {log}\nexec {sys.executable} "$@"\n')
    wrapper.chmod(wrapper.stat().st_mode | stat.S_IXUSR)
    set_coex_options(rule_runner, tiny_channel.url, f"--coex-build-python={wrapper}")
    generate_lockfile(rule_runner)
    package(rule_runner, APP)
    ran = log.read_text().split()
    assert {"coex.lib:solve", "coex.lib:entries", "coex.lib.fetch:--url",
            "coex.lib.transcode:--in", "coex.lib:assemble"} <= set(ran), ran
    set_coex_options(rule_runner, tiny_channel.url, "--coex-build-python=bin/python")
    expect_error(lambda: package(rule_runner, APP), "`[coex].build_python` must be an absolute")
