"""RuleRunner tests of PyPI requirements in a Pants build (tiny channel + real PyPI wheels in a
--find-links directory of the build root): generate-lockfiles locks them, package fetches each
wheel as its own digest and stores it in the archive with its COEX-INFO record."""
import hashlib
import os
import zipfile
from textwrap import dedent

from pants.engine.addresses import Address

from tests.backend.helpers import (
    archive_info,
    expect_error,
    generate_lockfile,
    make_rule_runner,
    package,
    set_coex_options,
    write_built,
)
from tests.lib.wheels import WHEELS, wheel_dir

MARKDOWN = "markdown_it_py-3.0.0-py3-none-any.whl"
MDURL = "mdurl-0.1.2-py3-none-any.whl"
SIX = "six-1.16.0-py2.py3-none-any.whl"
WEB = Address("web", target_name="web")


def runner(tiny_channel, build, files=()):
    src = wheel_dir()
    rr = make_rule_runner()
    set_coex_options(rr, tiny_channel.url, "--coex-pypi-indexes=[]",
                     "--coex-pypi-find-links=['3rdparty/wheels']")
    written = {"web/BUILD": dedent(build), "web/main.py": "print('hi')\n"}
    for f in (MARKDOWN, MDURL, SIX):
        with open(os.path.join(src, f), "rb") as fh:
            written["3rdparty/wheels/" + f] = fh.read()
    written.update(dict(files))
    rr.write_files(written)
    return rr


def test_pypi_dependencies_are_locked_and_packaged(tiny_channel):
    rr = runner(tiny_channel, """\
        coex_binary(
            name="web",
            conda_dependencies=["python", "prefixprog"],
            pypi_dependencies=["markdown-it-py >=3"],
            entry_point="markdown-it",
        )
        """)
    text = generate_lockfile(rr)
    assert "- pypi: coex://buildroot/3rdparty/wheels/" + MDURL in text
    assert rr.build_root not in text  # portable
    built = package(rr, WEB)
    (relpath,) = write_built(rr, built)
    path, archive = archive_info(rr, relpath)
    wheels = archive.info["wheels"]
    assert [(w["name"], w["filename"], w["requested"]) for w in wheels] == [
        ("markdown-it-py", MARKDOWN, True), ("mdurl", MDURL, False)]
    with zipfile.ZipFile(path) as zf:
        for w in wheels:
            data = zf.read("wheels/" + w["filename"])
            assert zf.getinfo("wheels/" + w["filename"]).compress_type == zipfile.ZIP_STORED
            assert (hashlib.sha256(data).hexdigest(), len(data)) == WHEELS[w["filename"]][:2]
            assert (w["sha256"], w["size"]) == WHEELS[w["filename"]][:2]
    assert "2 of its 2 PyPI wheels" in built.artifacts[0].extra_log_lines[0]


def test_pip_section_of_the_environment_file_and_staleness(tiny_channel):
    rr = runner(tiny_channel, """\
        coex_binary(name="web", environment_file="environment.yml", entry_point="python")
        """, {"web/environment.yml": "dependencies:\n  - python\n  - pip:\n    - six\n"})
    generate_lockfile(rr)
    path, archive = archive_info(rr, write_built(rr, package(rr, WEB))[0])
    assert [w["filename"] for w in archive.info["wheels"]] == [SIX]
    rr.write_files({"web/environment.yml":
                    "dependencies:\n  - python\n  - pip:\n    - six\n    - mdurl\n"})
    expect_error(lambda: package(rr, WEB), "is stale", "PyPI requirements added: mdurl")


def test_a_pypi_requirement_the_conda_environment_has(tiny_channel):
    rr = runner(tiny_channel, """\
        coex_binary(name="web", conda_dependencies=["python", "tinypy"],
                    pypi_dependencies=["tinypy"], entry_point="python")
        """)
    expect_error(lambda: generate_lockfile(rr), "`tinypy`", "conda package tinypy 1.0",
                 "Keep one")


def test_a_changed_wheel_in_the_build_root(tiny_channel):
    rr = runner(tiny_channel, """\
        coex_binary(name="web", conda_dependencies=["python"], pypi_dependencies=["six"],
                    entry_point="python")
        """)
    generate_lockfile(rr)
    rr.write_files({"3rdparty/wheels/" + SIX: b"changed"})
    expect_error(lambda: package(rr, WEB), "PyPI wheel " + SIX,
                 "in the build root (3rdparty/wheels/" + SIX + ")", "regenerate the lockfile")


def test_pypi_dependencies_of_a_script_header(tiny_channel):
    rr = runner(tiny_channel, """\
        coex_binary(name="web", entry_point="web/tool.py", conda_dependencies=["python"],
                    dependencies=[":src"])
        resources(name="src", sources=["tool.py"])
        """, {"web/tool.py": '# /// conda\n# dependencies = ["python"]\n'
                             '# pypi-dependencies = ["six"]\n# ///\nimport six\n'})
    text = generate_lockfile(rr)
    assert "- pypi: coex://buildroot/3rdparty/wheels/" + SIX in text
    path, archive = archive_info(rr, write_built(rr, package(rr, WEB))[0])
    assert [w["filename"] for w in archive.info["wheels"]] == [SIX]
