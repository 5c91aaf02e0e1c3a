"""coex.lib.channels: portable lockfiles. Channels inside the build root and named channels are
recorded by `coex://` placeholders, resolved only where a channel is opened; the same inputs give
the same lockfile bytes in two checkouts at different paths (py-rattler solving and writing)."""
import shutil
from dataclasses import replace

import pytest

from coex.lib.channels import (
    absolute_inside_root,
    check_locations,
    local_path,
    locate,
    parse_location_args,
    placeholder_url,
    portable_channel,
)
from coex.lib.errors import CoexError
from coex.lib.explicit import explicit_text
from coex.lib.lockfile import lock_entries, solve_to_lockfile
from coex.lib.records import ChannelLocations
from coex.lib.request import lock_header, read_header, stale_reason
from tests.lib.conftest import make_request

ROOT = "/work/repo"


def where(**named):
    return check_locations(ROOT, named.items())


def test_portable_channel_forms():
    loc = where(internal="https://mirror.example/conda/internal/")
    assert portable_channel("file:///work/repo/3rdparty/chan", loc) == \
        "coex://buildroot/3rdparty/chan"
    assert portable_channel("file:///work/repo", loc) == "coex://buildroot"
    assert portable_channel("file:///work/repo/my chan", loc) == "coex://buildroot/my%20chan"
    assert portable_channel("file:///work/repo2/chan", loc) == "file:///work/repo2/chan"
    assert portable_channel("internal", loc) == "coex://internal"
    assert portable_channel("conda-forge", loc) == "conda-forge"
    assert portable_channel("https://x.org/c", loc) == "https://x.org/c"
    assert portable_channel("file:///work/repo/chan", ChannelLocations()) == \
        "file:///work/repo/chan"


def test_locate_and_placeholder_urls():
    loc = where(internal="https://mirror.example/conda/internal/", disk="/mnt/conda")
    assert locate("coex://buildroot/my%20chan/noarch/a-1-0.conda", loc) == \
        "file:///work/repo/my%20chan/noarch/a-1-0.conda"
    assert locate("coex://internal/linux-64/b-1-0.conda", loc) == \
        "https://mirror.example/conda/internal/linux-64/b-1-0.conda"
    assert locate("coex://disk", loc) == "file:///mnt/conda"
    assert locate("https://x.org/c/noarch/a.conda", loc) == "https://x.org/c/noarch/a.conda"
    assert local_path("coex://buildroot/my%20chan/noarch/a-1-0.conda") == \
        "my chan/noarch/a-1-0.conda"
    assert local_path("coex://internal/noarch/a-1-0.conda") is None
    # what a solve returns, as the lockfile records it
    assert placeholder_url("file:///work/repo/my%20chan/noarch/a+b-1-0.conda",
                           ["conda-forge", "coex://buildroot/my%20chan"], loc) == \
        ("coex://buildroot/my%20chan", "coex://buildroot/my%20chan/noarch/a+b-1-0.conda")
    assert placeholder_url("https://mirror.example/conda/internal/noarch/a-1-0.conda",
                           ["coex://internal"], loc) == \
        ("coex://internal", "coex://internal/noarch/a-1-0.conda")
    assert placeholder_url("https://conda.anaconda.org/conda-forge/noarch/a-1-0.conda",
                           ["conda-forge", "coex://internal"], loc) is None


def test_unknown_locations_say_how_to_define_them():
    with pytest.raises(CoexError) as e:
        locate("coex://internal/linux-64/b-1-0.conda", where(other="/x"), "The lockfile x.lock")
    msg = str(e.value)
    assert "The lockfile x.lock names the channel location 'internal'" in msg
    assert "[coex].channel_locations" in msg and "--channel-location internal=URL" in msg
    with pytest.raises(CoexError, match="no build root is known here"):
        locate("coex://buildroot/c/noarch/a-1-0.conda", ChannelLocations())


def test_bad_locations():
    for named, needle in (({"In/ternal": "/x"}, "'In/ternal' is not valid"),
                          ({"buildroot": "/x"}, "'buildroot' is not valid"),
                          ({"x": "relative/dir"}, "not an absolute URL or path")):
        with pytest.raises(CoexError, match=needle):
            check_locations(ROOT, named.items())
    assert parse_location_args(["a=https://m/a", "b = /x"]) == [("a", "https://m/a"), ("b", "/x")]
    with pytest.raises(CoexError, match="give NAME=URL"):
        parse_location_args(["no-equals-sign"])


def test_the_same_lockfile_in_two_checkouts(tiny_channel, tmp_path):
    """Two checkouts (each with the channel inside) and a named channel at two places: one
    lockfile, byte for byte, fresh in both; packages and @EXPLICIT lines resolve per checkout."""
    locks = []
    for checkout in ("a", "b/deeper"):
        root = tmp_path / checkout / "repo"
        chan = root / "3rdparty" / "chan"
        shutil.copytree(tiny_channel.path, chan)
        mirror = shutil.copytree(tiny_channel.path, tmp_path / checkout / "mirror")
        loc = check_locations(str(root), [("mirror", str(mirror))])
        req = replace(make_request(tiny_channel, platforms=["linux-64"]),
                      channels=(str(chan), "mirror"), locations=loc)
        out = root / "coex.lock"
        solve_to_lockfile(req, out)
        locks.append(out.read_bytes())
        assert stale_reason(read_header(out), req) is None
        entries = lock_entries(out, "linux-64")
        assert all(p.url.startswith("coex://buildroot/3rdparty/chan/") for p in entries.packages)
        urls = [line.split("#")[0] for line in explicit_text(out, "linux-64", "md5", loc)
                .splitlines() if "://" in line]
        assert urls and all(u.startswith(chan.as_uri() + "/") for u in urls)
    assert locks[0] == locks[1]
    assert b"coex://buildroot/3rdparty/chan" in locks[0] and str(tmp_path).encode() not in locks[0]


def test_older_absolute_lockfiles_stay_fresh_where_they_are(tiny_channel, tmp_path):
    root = tmp_path / "repo"
    chan = shutil.copytree(tiny_channel.path, root / "chan")
    req = replace(make_request(tiny_channel), channels=(str(chan),))
    old = lock_header(req)  # what coex wrote before placeholders
    assert old.channels == ("file://" + str(chan),)
    here = replace(req, locations=check_locations(str(root), ()))
    assert lock_header(here).channels == ("coex://buildroot/chan",)
    assert stale_reason(old, here) is None
    assert absolute_inside_root(old.channels, here.locations) == list(old.channels)
    # moved checkout: stale, and regenerating fixes it
    moved = replace(req, channels=(str(tmp_path / "moved" / "chan"),),
                    locations=check_locations(str(tmp_path / "moved"), ()))
    assert "channels added: coex://buildroot/chan" in stale_reason(old, moved)
