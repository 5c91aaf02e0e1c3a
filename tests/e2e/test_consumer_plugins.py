"""`[GLOBAL].plugins`: a user's repository whose Pants is a venv with only
`pantsbuild.pants==2.17.1` resolves coex itself, offline: the README's pants.toml, with the coex
wheel and its dependencies' wheels in a find-links directory, no index, and the pex tool built
from PyPI's pex (Pants would download it from GitHub). generate-lockfiles, package, the archive
runs, `pants run`, help; then, with pantsd running, an upgrade done as the README says (new
wheel in find-links, new pin in pants.toml): the next run uses the new code. Five Pants runs."""
from __future__ import annotations

import subprocess

import pytest

import coex
from tests.e2e.consumer import (
    README_PEX_SHA256,
    README_PEX_SIZE,
    ConsumerPants,
    plugins_pants_toml,
    write_consumer,
)
from tests.e2e.plugins import UPGRADE_MARKER, UPGRADE_VERSION, fill_find_links

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


def test_the_readme_pex_values_are_what_the_build_gives(pex_cli):
    """The pex tool built from PyPI is reproducible: the README's known_versions fit it."""
    assert (pex_cli.sha256, str(pex_cli.size)) == (README_PEX_SHA256, README_PEX_SIZE)


def test_plugins_resolved_by_pants_offline_then_upgraded(
    pants_bin, coex_wheel, upgraded_coex_wheel, pex_cli, tiny_channel, tmp_path
):
    find_links = fill_find_links(tmp_path / "wheels", pants_bin, coex_wheel)
    root = write_consumer(tmp_path / "monorepo", tiny_channel.path,
                          plugins_pants_toml(coex.__version__, find_links, pex_cli))
    pants = ConsumerPants(pants_bin, root, tmp_path / "state")
    assert not list(pants_bin.parent.glob("lib/python*/site-packages/coex"))  # not installed

    proc = pants.run("generate-lockfiles")
    assert "Resolving plugins: pants-backend-coex==" in proc.stderr
    assert "tinypy-1.0" in (root / "3rdparty" / "conda" / "default.lock").read_text()
    pants.run("package", "::")
    out = subprocess.run([str(root / "dist" / "src" / "app.coex"), "a"], env=pants.env,
                         text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=300)
    assert out.returncode == 0 and out.stdout == "hello from greet: a\n", out.stderr
    assert pants.run("run", "src:app", "--", "x").stdout == "hello from greet: x\n"

    try:
        help_text = pants.run("help", "coex_binary", pantsd=True).stdout
        assert "entry_point" in help_text and UPGRADE_MARKER not in help_text
        assert pants.pantsd_pid() is not None
        # the README's upgrade: the new wheel into find-links, the new pin into pants.toml
        fill_find_links(find_links, pants_bin, upgraded_coex_wheel)
        old_pantsd = pants.pantsd_pid()
        (root / "pants.toml").write_text(plugins_pants_toml(UPGRADE_VERSION, find_links, pex_cli))
        # pantsd watches pants.toml and stops itself when it changes, a moment later (a run
        # started before that reaches the old pantsd, which cannot load another version of a
        # plugin it has loaded: the README says so): wait for that, as a person typing would
        assert pants.wait_for_pantsd_exit(old_pantsd, timeout=60), "pantsd ignored pants.toml"
        proc = pants.run("help", "coex_binary", pantsd=True)
        assert UPGRADE_MARKER in proc.stdout, proc.stderr[-3000:]
    finally:
        pants.stop_pantsd()
