"""coex_runtime/linkscripts.py: packages' link scripts run as conda runs them (a post-link script
in the activated environment, sourced), and what they leave in .messages.txt. (On real
packages, conda's own fixtures: test_corpus.py.)"""
import os

import pytest

from coex_runtime import install
from tests.installer import helpers

POST_LINK = r"""[ "$ACT_VAR" = from-activate ] || return 3
printf '%s\n' "$ACT_VAR" "$ENV_D_VAR" "$CONDA_PREFIX" "$PWD" "$PKG_NAME" > "$PREFIX/share/act/seen"
echo "hello from $PKG_NAME" > "$PREFIX/.messages.txt"
return 0
echo not reached > "$PREFIX/share/act/after"
"""


def _package(tmp_path, post_link, name="act"):
    return helpers.small_package(tmp_path, name, {
        "share/act/data.txt": "d\n",
        "etc/conda/activate.d/act.sh": "export ACT_VAR=from-activate\n",
        "etc/conda/deactivate.d/act.sh": 'echo "deactivated $ACT_VAR" >> "$PREFIX/share/act/log"\n',
        "etc/conda/env_vars.d/act.json": '{"ENV_D_VAR": "from-env-vars"}\n',
        "bin/.%s-post-link.sh" % name: post_link,
    })


def _install(tmp_path, entries):
    prefix = helpers.coex_install(entries, tmp_path / "pkgs", tmp_path / "env", finalize=False)
    return prefix, install.finalize_env(str(prefix), entries)


def test_post_link_runs_sourced_in_the_activated_environment(tmp_path, monkeypatch):
    monkeypatch.delenv("ACT_VAR", raising=False)
    prefix, messages = _install(tmp_path, [_package(tmp_path, POST_LINK)])
    seen = (prefix / "share/act/seen").read_text().splitlines()
    assert seen == ["from-activate", "from-env-vars", str(prefix), str(prefix / "bin"), "act"]
    assert not (prefix / "share/act/after").exists()  # `return` ended the sourced script
    assert (prefix / "share/act/log").read_text() == "deactivated from-activate\n"
    assert "ACT_VAR" not in os.environ
    # .messages.txt: handed back, removed
    assert messages == [("act-1.0-h0_0", "hello from act\n")]
    assert not (prefix / ".messages.txt").exists()


def test_a_failing_post_link_shows_its_messages_and_output(tmp_path):
    script = 'echo "see the log" > "$PREFIX/.messages.txt"\necho oops\nexit 4\n'
    with pytest.raises(install.LinkScriptError) as ei:
        _install(tmp_path, [_package(tmp_path, script, "bad")])
    msg = str(ei.value)
    assert msg.startswith("the post-link script of bad-1.0-h0_0 (bin/.bad-post-link.sh) failed "
                          "with exit status 4; the environment was not installed."), msg
    messages, output = msg.split("\nIts messages:\n")[1].split("\nIts output:\n")
    assert messages == "see the log"
    assert "+ echo oops" in output and "oops" in output.split("\n")
    assert not list((tmp_path / "env" / "conda-meta").glob("*.json"))


def test_without_messages_nothing_is_returned(tmp_path, tiny_channel):
    entries = [helpers.entry_from_file(tiny_channel.file("prefixprog"))]
    prefix, messages = _install(tmp_path, entries)
    assert (prefix / "share/prefixprog/post-link-ran").exists() and messages == []
