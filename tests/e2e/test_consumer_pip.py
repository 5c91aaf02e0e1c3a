"""A user's repository (its own path, pants.toml, BUILD, environment.yml, sources and local
channel) with coex from the wheel installed next to a pip-installed Pants 2.17.1: no
`pythonpath`, nothing of this checkout on any path; pants.toml and pants-requirements.txt are the
README's. What the README tells a new user to do works, offline: generate-lockfiles, package,
the archive runs, `pants run`, `--changed-since` after a lockfile change, `pants export`,
`pants help` on everything coex adds, and an upgrade of coex while pantsd runs. Nine Pants runs
(~7-15 s each)."""
from __future__ import annotations

import subprocess

import pytest

import coex
from tests.e2e.consumer import ConsumerPants, pip_pants_toml, readme_block, write_consumer
from tests.e2e.plugins import UPGRADE_MARKER, UPGRADE_VERSION
from tests.packaging.wheel import pip

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

REQUIREMENTS = "pants-requirements.txt"


@pytest.fixture
def consumer(pants_wheel_bin, tiny_channel, tmp_path):
    root = write_consumer(tmp_path / "monorepo", tiny_channel.path, pip_pants_toml(),
                          **{REQUIREMENTS: readme_block(REQUIREMENTS)})
    return ConsumerPants(pants_wheel_bin, root, tmp_path / "state")


def git(root, *args: str) -> str:
    return subprocess.run(
        ["git", "-c", "user.name=t", "-c", "user.email=t@example.com", *args], cwd=root,
        check=True, text=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT).stdout


def test_pip_installed_pants_with_the_wheel(consumer):
    root = consumer.root
    consumer.run("generate-lockfiles")
    lock = root / "3rdparty" / "conda" / "default.lock"
    assert lock.read_text().startswith("# coex-lockfile: ") and "tinypy-1.0" in lock.read_text()

    consumer.run("package", "::")
    archive = root / "dist" / "src" / "app.coex"
    proc = subprocess.run([str(archive), "a", "b"], env=consumer.env, text=True,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == "hello from greet: a b\n"

    proc = consumer.run("run", "src:app", "--", "x")
    assert proc.stdout == "hello from greet: x\n"

    # CI's question: what changed since the main branch? A regenerated lock changes its binaries
    git(root, "init", "-q")
    git(root, "add", "-A")
    git(root, "commit", "-qm", "initial")
    lock.write_text(lock.read_text() + "# regenerated\n")
    changed = consumer.run("--changed-since=HEAD", "--changed-dependents=transitive", "list")
    assert changed.stdout.split() == ["3rdparty/conda/default.lock:_coex_default_lockfile",
                                      "src:app"], changed.stdout

    # `pants export` (no --resolve): the resolve's @EXPLICIT file and its installed prefix
    proc = consumer.run("export")
    assert "dist/export/coex/default" in proc.stdout, proc.stdout + proc.stderr
    exported = root / "dist" / "export" / "coex" / "default"
    assert sorted(p.name for p in exported.iterdir()) == ["linux-64", "linux-64.explicit.txt"]
    tinypy = subprocess.run([str(exported / "linux-64" / "bin" / "tinypy")], text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=60)
    assert tinypy.stdout.startswith("tinypy ok " + str(exported / "linux-64")), tinypy.stderr


def test_upgrade_with_pantsd_running(consumer, pants_wheel_bin, coex_wheel, upgraded_coex_wheel):
    """The README's upgrade: a new version in pants-requirements.txt, `pip install -r` again; the
    next run (pantsd on) uses the new code, because the file is one of pantsd's invalidation
    globs (pantsd would otherwise keep serving the code it imported)."""
    try:
        before = consumer.run("help", "coex_binary", pantsd=True).stdout
        assert "entry_point" in before and UPGRADE_MARKER not in before
        assert consumer.pantsd_pid() is not None
        requirements = consumer.root / REQUIREMENTS
        requirements.write_text(requirements.read_text().replace(
            f"pants-backend-coex=={coex.__version__}", f"pants-backend-coex=={UPGRADE_VERSION}"))
        pip(pants_wheel_bin, "install", "-r", str(requirements),
            "--find-links", str(upgraded_coex_wheel.parent))
        after = consumer.run("help", "coex_binary", pantsd=True)
        assert UPGRADE_MARKER in after.stdout, after.stderr[-3000:]
    finally:
        consumer.stop_pantsd()
        # the venv is the session's: put the checkout's wheel back
        pip(pants_wheel_bin, "install", "--no-deps", "--force-reinstall", str(coex_wheel))


def test_help_on_what_coex_adds(consumer):
    """`pants help` on every coex target type and subsystem, and the lists that name them (one
    Pants run for all six topics)."""
    proc = consumer.run("help", "coex_binary", "coex_environment", "coex", "targets",
                        "subsystems", "goals")
    assert "[ERROR]" not in proc.stderr and "Traceback" not in proc.stderr, proc.stderr
    out = proc.stdout
    for section, needle in [("`coex_binary` target", "entry_point"),
                            ("`coex_environment` target", "source"),
                            ("`coex` subsystem options", "--coex-resolves"),
                            ("Target types", "coex_environment"), ("Subsystems", "coex"),
                            ("Goals", "generate-lockfiles")]:
        assert section in out, (section, out)
        assert needle in out[out.index(section):], (section, needle)


def test_help_all(consumer):
    import json

    proc = consumer.run("help-all")
    data = json.loads(proc.stdout)
    assert "coex_binary" in data["name_to_target_type_info"]
    assert "coex" in data["scope_to_help_info"]
