import pytest

from tests.backend.helpers import APP_FILES, make_rule_runner, set_coex_options


@pytest.fixture
def rule_runner(tiny_channel):
    """A RuleRunner with the coex backend, `[coex]` pointing at the tiny channel (resolve `tiny`)
    and the example target `app:app` written."""
    rr = make_rule_runner()
    set_coex_options(rr, tiny_channel.url)
    rr.write_files(APP_FILES)
    return rr
