import pytest
from rattler.explicit_environment import ExplicitEnvironmentSpec

from coex.lib.errors import CoexError
from coex.lib.explicit import explicit_text, write_explicit
from coex.lib.lockfile import lock_entries


@pytest.mark.parametrize("platform", ["linux-64", "linux-aarch64"])
def test_md5_format(tiny_lock, tmp_path, platform):
    out = tmp_path / "explicit.txt"
    text = write_explicit(tiny_lock, platform, out)
    assert out.read_text() == text
    lines = text.splitlines()
    assert "# platform: {}".format(platform) in lines
    body = lines[lines.index("@EXPLICIT") + 1:]
    pkgs = lock_entries(tiny_lock, platform).packages
    assert body == ["{}#{}".format(p.url, p.md5) for p in pkgs]
    parsed = ExplicitEnvironmentSpec.from_str(text)        # rattler reads it back
    assert str(parsed.platform) == platform
    assert [e.url for e in parsed.packages] == ["{}#{}".format(p.url, p.md5) for p in pkgs]


def test_sha256_format(tiny_lock):
    text = explicit_text(tiny_lock, "linux-64", hash="sha256")
    pkgs = lock_entries(tiny_lock, "linux-64").packages
    assert text.endswith("\n".join("{}#{}".format(p.url, p.sha256) for p in pkgs) + "\n")
    assert "conda >= 24.9" in text
    with pytest.raises(CoexError, match="hash must be md5 or sha256"):
        explicit_text(tiny_lock, "linux-64", hash="sha1")
