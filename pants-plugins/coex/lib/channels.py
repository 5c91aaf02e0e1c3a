"""How a lockfile names channels so that it is the same file in every checkout and on every
machine, and where those channels are on this one (pure: no py-rattler).

A lockfile records each channel and each package's location. Two kinds of location depend on the
machine, so the lockfile records them by a placeholder URL (rattler's lock format keeps any
hierarchical URL as it is, for channels and package locations alike):

    coex://buildroot/REL[/SUBDIR/FILE]   a local channel inside the build root (Pants'; for
                                         `./coex`, `--root DIR`), REL relative to it
    coex://NAME[/SUBDIR/FILE]            a channel given by a name that `[coex].channel_locations`
                                         (`./coex --channel-location NAME=URL`) maps to a location

`ChannelLocations` (coex.lib.records) says where those are on this machine. It is never part of
a lockfile nor of its inputs hash, so a checkout at another path, or a name pointed at another
mirror, keeps the lockfile fresh. Everything else is recorded as it is: channel names such as
`conda-forge` (conda's https://conda.anaconda.org alias), `https://` URLs, and `file://` URLs
outside the build root (those tie the lockfile to the machine: name them in
`channel_locations` instead).

Only the steps that open a channel resolve placeholders (`locate`): the solve (channel URLs), the
fetch of a package (its URL) and the `@EXPLICIT` export. Everything keyed on a locked package
(transcode, assembly, the archive's COEX-INFO) sees the placeholder, so it does not depend on
the machine either.
"""
from __future__ import annotations

import posixpath
import re
import urllib.parse
from typing import Iterable, Optional

from coex.lib.errors import CoexError
from coex.lib.records import ChannelLocations

SCHEME = "coex://"
BUILDROOT = "buildroot"
_NAME_RE = re.compile(r"[a-z0-9][a-z0-9_-]*\Z")


def _quote(path: str) -> str:
    """A path as URL path characters: only what a URL path cannot hold is escaped (a space,
    `%`, `#`, `?`), so conda file names (`+`, `!`) stay readable."""
    return urllib.parse.quote(path, safe="/!$&'()*+,;=:@~")


def _file_path(url: str) -> Optional[str]:
    """The local path of a `file:` URL or an absolute path, else None."""
    if url.startswith("/"):
        return posixpath.normpath(url)
    parsed = urllib.parse.urlsplit(url)
    if parsed.scheme != "file" or parsed.netloc not in ("", "localhost"):
        return None
    return posixpath.normpath(urllib.parse.unquote(parsed.path))


def _inside(path: str, root: str) -> Optional[str]:
    """`path` relative to `root` ("." for the root itself), or None when it is outside."""
    root = posixpath.normpath(root)
    if path == root:
        return "."
    if path.startswith(root.rstrip("/") + "/"):
        return path[len(root.rstrip("/")) + 1:]
    return None


def check_locations(root: Optional[str], named: Iterable[tuple[str, str]],
                    origin: str = "`[coex].channel_locations`") -> ChannelLocations:
    """The validated ChannelLocations: names are lowercase letters, digits, `-` and `_` (not
    `buildroot`); each location is an absolute URL or path."""
    out = {}
    for name, location in named:
        if not isinstance(name, str) or not _NAME_RE.match(name) or name == BUILDROOT:
            raise CoexError(
                "{}: the channel location name {!r} is not valid: use lowercase letters, digits, "
                "`-` and `_` (and not `{}`, which means the build root).".format(
                    origin, name, BUILDROOT))
        loc = str(location).strip().rstrip("/")
        if loc.startswith("/"):
            loc = "file://" + _quote(posixpath.normpath(loc))
        if "://" not in loc and not loc.startswith("file:"):
            raise CoexError(
                "{}: the location {!r} of channel {!r} is not an absolute URL or path: give "
                "e.g. `https://mirror.example/conda/{}` or `file:///mnt/conda/{}`.".format(
                    origin, location, name, name, name))
        out[name] = loc
    if root is not None and not posixpath.isabs(root):
        raise CoexError("The build root {!r} is not an absolute path.".format(root))
    return ChannelLocations(None if root is None else posixpath.normpath(root),
                            tuple(sorted(out.items())))


def parse_location_args(args: Iterable[str], option: str = "--location") -> list[tuple[str, str]]:
    """`NAME=URL` command-line values as (name, URL) pairs (checked by `check_locations`)."""
    out = []
    for arg in args:
        name, sep, url = arg.partition("=")
        if not sep or not name or not url:
            raise CoexError("{} {!r}: give NAME=URL, e.g. {} internal=https://mirror.example/"
                            "conda/internal.".format(option, arg, option))
        out.append((name.strip(), url.strip()))
    return out


def placeholder(url: str) -> Optional[tuple[str, str]]:
    """(name, rest) of a `coex://NAME/rest` URL (rest is "" or starts with "/"), else None."""
    if not url.startswith(SCHEME):
        return None
    name, sep, tail = url[len(SCHEME):].partition("/")
    return name, sep + tail


def portable_channel(channel: str, locations: ChannelLocations) -> str:
    """A canonical channel (`coex.lib.request.canonical_channel`) as a lockfile records it: a name
    of `locations.named` -> `coex://NAME`; a local channel inside `locations.root` ->
    `coex://buildroot/REL`; anything else unchanged."""
    if channel.startswith(SCHEME):
        return channel
    if channel in dict(locations.named):
        return SCHEME + channel
    path = _file_path(channel) if locations.root else None
    rel = _inside(path, locations.root) if path is not None else None
    if rel is None:
        return channel
    return SCHEME + BUILDROOT + ("" if rel == "." else "/" + _quote(rel))


def locate(url: str, locations: ChannelLocations, what: str = "The lockfile") -> str:
    """Where a channel or package URL is on this machine: a placeholder resolved through
    `locations`, anything else unchanged. `what` names who holds the URL, for the error."""
    parsed = placeholder(url)
    if parsed is None:
        return url
    name, rest = parsed
    if name == BUILDROOT:
        if not locations.root:
            raise CoexError(
                "{} records {} relative to the build root, and no build root is known here: "
                "pass it (`./coex ... --root DIR`, the directory the lockfile was made in).".format(
                    what, url))
        return "file://" + _quote(locations.root) + rest
    named = dict(locations.named)
    if name not in named:
        raise CoexError(
            "{} names the channel location {!r} ({}), which is not defined here: map it to where "
            "that channel is on this machine, with `[coex].channel_locations = {{\"{}\" = "
            "\"https://...\"}}` in pants.toml (Pants) or `--channel-location {}=URL` (./coex).{}"
            .format(what, name, url, name, name,
                    " Defined: {}.".format(", ".join(sorted(named))) if named else ""))
    return named[name] + rest


def placeholder_url(url: str, channels: Iterable[str],
                    locations: ChannelLocations) -> Optional[tuple[str, str]]:
    """(channel, URL) as a lockfile records a package URL from a solve: when `url` is under the
    location of one of the placeholder `channels`, that channel and the placeholder URL of the
    package; else None (the URL is recorded as it is)."""
    path = _file_path(url)
    for channel in channels:
        if placeholder(channel) is None:
            continue
        base = locate(channel, locations)
        base_path = _file_path(base)
        if path is not None and base_path is not None:
            rel = _inside(path, base_path)
            if rel is not None and rel != ".":
                return channel, channel + "/" + _quote(rel)
        elif url.startswith(base.rstrip("/") + "/"):
            return channel, channel + url[len(base.rstrip("/")):]
    return None


def absolute_inside_root(channels: Iterable[str], locations: ChannelLocations) -> list[str]:
    """The `file:` channels of `channels` inside the build root: what a lockfile written before
    placeholders records (it works only in that checkout)."""
    if not locations.root:
        return []
    return [c for c in channels
            if _file_path(c) is not None and _inside(_file_path(c), locations.root) is not None]


def local_path(url: str) -> Optional[str]:
    """The path under the build root of a `coex://buildroot/...` URL, else None."""
    parsed = placeholder(url)
    if parsed is None or parsed[0] != BUILDROOT or not parsed[1]:
        return None
    return urllib.parse.unquote(parsed[1][1:])

