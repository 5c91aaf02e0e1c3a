"""Fixtures of the runtime tests: archives over the tiny channel, built once per session."""
import pytest

from tests.runtime import rt_helpers as H


@pytest.fixture(scope="session")
def std_archive(tiny_channel, tmp_path_factory):
    """(path, record) of app.coex: libtiny, python (fake 3.9), prefixprog, tinypy + app layer;
    entry points prefixprog (default), python, main (python src/main.py), run (src/run.sh -v),
    tinypy / fail (functions), sh (sh -c); env COEX_TEST_VAR=from-record."""
    d = tmp_path_factory.mktemp("std-archive")
    info = H.make_archive(tiny_channel.path, d / "app.coex", env={"COEX_TEST_VAR": "from-record"},
                          virtual_packages=["__glibc >=2.17", "__unix"])
    return d / "app.coex", info


@pytest.fixture
def root(tmp_path):
    return tmp_path / "home" / "coex-root"


@pytest.fixture(scope="session")
def strict_archive(tiny_channel, tmp_path_factory):
    """An archive whose activate.d script reads an unset variable and has a failing command, as
    many real ones do: fine under conda's interactive shells, fatal under `set -eu`."""
    d = tmp_path_factory.mktemp("strict")
    pkg = H.custom_package(d / "chan", "strictact", {
        "etc/conda/activate.d/strictact.sh":
            'if [ -n "$STRICTACT_UNSET_VAR" ]; then echo never; fi\n'
            'false\n'
            'set -- "$CONDA_PREFIX"/etc/conda/activate.d/*.sh\n'
            'if [ -e "$1" ]; then STRICTACT=on; else STRICTACT=noglob; fi; export STRICTACT\n'})
    H.make_archive(tiny_channel.path, d / "strict.coex", names=("libtiny", "prefixprog"), extra=[pkg],
                   entry_points={"sh": "sh -c", "my-tool.v2": "sh -c 'echo tool \"$STRICTACT\" \"$@\"' tool"},
                   default="my-tool.v2", app={})
    return d / "strict.coex"
