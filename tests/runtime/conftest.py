"""Fixtures of the runtime tests: one standard archive over the tiny channel per session."""
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
