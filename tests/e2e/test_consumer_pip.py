"""A user's repository (its own path, pants.toml, BUILD, environment.yml, sources and local
channel) with coex from the wheel installed next to a pip-installed Pants 2.17.1: no
`pythonpath`, nothing of this checkout on any path. What the README tells a new user to do
works, offline: generate-lockfiles, package, the archive runs, `pants run`, `pants help` on
everything coex adds, export. About ten Pants runs (~7 s each)."""
from __future__ import annotations

import subprocess

import pytest

from tests.e2e.consumer import ConsumerPants, write_consumer

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


@pytest.fixture
def consumer(pants_wheel_bin, tiny_channel, tmp_path):
    root = write_consumer(tmp_path / "monorepo", tiny_channel.path)
    return ConsumerPants(pants_wheel_bin, root, tmp_path / "state")


def test_pip_installed_pants_with_the_wheel(consumer):
    root = consumer.root
    consumer.run("generate-lockfiles")
    lock = (root / "3rdparty" / "conda" / "default.lock").read_text()
    assert lock.startswith("# coex-lockfile: ") and "tinypy-1.0" in lock

    consumer.run("package", "::")
    archive = root / "dist" / "src" / "app.coex"
    proc = subprocess.run([str(archive), "a", "b"], env=consumer.env, text=True,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == "hello from greet: a b\n"

    proc = consumer.run("run", "src:app", "--", "x")
    assert proc.stdout == "hello from greet: x\n"


@pytest.mark.parametrize("topic", ["coex_binary", "coex", "targets", "subsystems", "goals"])
def test_help_on_what_coex_adds(consumer, topic):
    proc = consumer.run("help", topic)
    assert "[ERROR]" not in proc.stderr and "Traceback" not in proc.stderr, proc.stderr
    expect = {"coex_binary": "entry_point", "coex": "--coex-resolves", "targets": "coex_binary",
              "subsystems": "coex", "goals": "generate-lockfiles"}[topic]
    assert expect in proc.stdout, proc.stdout


def test_help_all(consumer):
    import json

    proc = consumer.run("help-all")
    data = json.loads(proc.stdout)
    assert "coex_binary" in data["name_to_target_type_info"]
    assert "coex" in data["scope_to_help_info"]
