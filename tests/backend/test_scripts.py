"""RuleRunner tests: a `coex_binary` whose entry point is a script with an environment header
(`# /// conda` or `# conda execute`) takes its specs, channels and platforms from the header,
merged with its own; conflicts are errors naming both."""
import os
import subprocess
from textwrap import dedent

from pants.engine.addresses import Address

from coex.util_rules.resolve import CoexResolveInputs, CoexResolveName
from tests.backend.helpers import (
    archive_info,
    expect_error,
    generate_lockfile,
    package,
    set_coex_options,
    write_built,
)

TOOL = Address("tools", target_name="tool")


def tool_files(header, entry_point="tools/tool.py", own='conda_dependencies=["prefixprog"],', extra=""):
    build = dedent(
        f"""\
        coex_binary(
            name="tool",
            entry_point={entry_point!r},
            {own}
            dependencies=[":src"],
            {extra}
        )
        resources(name="src", sources=["tool.py"])
        """
    )
    body = "import os, sys, tinypy\nprint('tool', sys.argv[1:], os.environ['PREFIXPROG_MODE'])\n"
    return {"tools/BUILD": build, "tools/tool.py": header + body}


def pep723(channel, deps='"python", "tinypy"', extra=""):
    return f'# /// conda\n# dependencies = [{deps}]\n# channels = ["{channel}"]\n{extra}# ///\n'


def inputs(rule_runner):
    return rule_runner.request(CoexResolveInputs, [CoexResolveName("tiny")])


def test_header_specs_join_the_targets_own(rule_runner, tiny_channel):
    rule_runner.write_files(tool_files(pep723(tiny_channel.url)))
    got = inputs(rule_runner)
    assert dict(got.target_specs)[TOOL] == ("prefixprog", "python", "tinypy")
    origin = "the `# /// conda` block of tools/tool.py (line 1), a script tools:tool runs"
    assert dict(got.request.sources)[origin] == ("python", "tinypy")
    assert "python" in got.request.specs


def test_package_and_run_a_script_target(rule_runner, tiny_channel, tmp_path):
    """`python tools/tool.py` (an app-layer path in a command) is found as well as the path
    alone (the app layer keeps paths from the build root: `/` is a source root here)."""
    rule_runner.write_files(tool_files(
        "# conda execute\n# env:\n#  - python\n#  - tinypy\n# channels:\n#  - {}\n".format(
            tiny_channel.url), entry_point="python tools/tool.py"))
    generate_lockfile(rule_runner)
    (relpath,) = write_built(rule_runner, package(rule_runner, TOOL))
    path, archive = archive_info(rule_runner, relpath)
    assert {"python", "tinypy", "prefixprog"} <= {p["name"] for p in archive.info["packages"]}
    r = subprocess.run([path, "a"], env=dict(os.environ, COEX_ROOT=str(tmp_path / "root")),
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, universal_newlines=True)
    assert r.returncode == 0, r.stderr
    assert r.stdout == "tool ['a'] tiny\n"
    # a changed header makes the lock stale, naming what changed
    rule_runner.write_files(tool_files(pep723(tiny_channel.url, '"python", "tinypy", "oldstyle"')))
    expect_error(lambda: package(rule_runner, TOOL), "is stale", "specs added: oldstyle")


def test_conflicting_specs_name_both(rule_runner, tiny_channel):
    rule_runner.write_files(tool_files(pep723(tiny_channel.url, '"python", "libtiny 1.*"'),
                                       own='conda_dependencies=["libtiny >=2", "tinypy"],'))
    expect_error(
        lambda: inputs(rule_runner),
        "tools:tool asks for `libtiny >=2` in the `conda_dependencies` of tools:tool and for "
        "`libtiny 1.*` in tools/tool.py:2",
        "keep one of them",
    )
    # a bare name beside a constrained spec, or the same spec twice, is no conflict
    rule_runner.write_files(tool_files(pep723(tiny_channel.url, '"python", "libtiny"'),
                                       own='conda_dependencies=["libtiny >=1", "tinypy"],'))
    assert "libtiny" in dict(inputs(rule_runner).target_specs)[TOOL]


def test_header_without_the_targets_platform(rule_runner, tiny_channel):
    rule_runner.write_files(tool_files(
        pep723(tiny_channel.url, extra='# platforms = ["linux-aarch64"]\n')))
    expect_error(lambda: inputs(rule_runner), "tools:tool builds for linux-64",
                 "does not list in its `platforms` (linux-aarch64)")


def test_bad_header_names_the_line_and_target(rule_runner, tiny_channel):
    rule_runner.write_files(tool_files(pep723(
        tiny_channel.url, extra='# pypi-dependencies = ["req uests"]\n')))
    expect_error(lambda: inputs(rule_runner), "tools/tool.py:4: invalid PyPI requirement "
                 "'req uests'", "an entry point of tools:tool")


def test_relative_channel_in_a_header(rule_runner):
    rule_runner.write_files(tool_files(pep723("./channel")))
    expect_error(lambda: inputs(rule_runner), "'./channel', a relative path", "[coex].channels")


def test_a_script_without_header_changes_nothing(rule_runner, tiny_channel):
    set_coex_options(rule_runner, tiny_channel.url)
    rule_runner.write_files(tool_files("", own='conda_dependencies=["python", "tinypy"],'))
    assert dict(inputs(rule_runner).target_specs)[TOOL] == ("python", "tinypy")
