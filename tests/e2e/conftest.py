import pytest


@pytest.fixture(scope="session")
def buildgrid(tmp_path_factory):
    """A BuildGrid REAPI cache (CAS + ActionCache) on a free loopback port for the session,
    installed under ~/.cache on first use (tests/e2e/buildgrid.py); stopped at the end."""
    from tests.e2e.buildgrid import BuildGrid

    with BuildGrid(tmp_path_factory.mktemp("buildgrid")) as server:
        yield server
