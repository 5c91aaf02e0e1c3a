"""`pants help` for the coex backend, as a user runs it (a real Pants 2.17.1 subprocess, no
pantsd): `help-all` renders the help of every coex target type, each of its fields and the
`[coex]` options. (A field whose `compute_value` had no type hints crashed all of
`help coex_binary`, `help targets` and `help-all` with `[ERROR] 'raw_value'`.) One Pants run."""
from __future__ import annotations

import json

import pytest

from coex import register
from coex.subsystem import CoexSubsystem
from tests.e2e.buildroot import Pants, make_buildroot

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


def test_help_all_renders_every_coex_target_and_option(tmp_path):
    root = make_buildroot(tmp_path / "repo")
    pants = Pants(root, tmp_path / "state", "file:///nonexistent")
    info = json.loads(pants("help-all").stdout)
    targets = info["name_to_target_type_info"]
    for target_type in register.target_types():
        help_info = targets[target_type.alias]
        assert help_info["description"], target_type.alias
        aliases = {f["alias"]: f for f in help_info["fields"]}
        for field in target_type.core_fields:
            assert field.alias in aliases, (target_type.alias, field.alias)
            assert aliases[field.alias]["type_hint"], (target_type.alias, field.alias)
            assert aliases[field.alias]["description"], (target_type.alias, field.alias)
    scope = info["scope_to_help_info"][CoexSubsystem.options_scope]
    options = {o["config_key"]: o for o in scope["basic"] + scope["advanced"]}
    assert {"resolves", "default_resolve", "channels", "platforms", "virtual_packages",
            "transcode_zstd_level"} <= set(options)
    assert all(o["help"] for o in options.values()), options
