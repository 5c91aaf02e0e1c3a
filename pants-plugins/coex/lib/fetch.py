"""Fetch one locked package by URL and verify its size and sha256.

URLs: `file:///abs`, `file:/abs`, `file://localhost/abs`, a plain absolute path, `https://`
(and `http://`). The bytes are streamed into a temporary file beside `out`, hashed on the way,
and renamed into place only when size and sha256 match the lock; otherwise nothing is left.
"""
from __future__ import annotations

import hashlib
import os
import time
import urllib.parse
import urllib.request
from typing import Optional

from coex.lib.errors import CoexError
from coex.lib.fsutil import atomic_output

CHUNK = 1 << 20


def url_to_path(url: str) -> Optional[str]:
    """The local path of a file URL (or plain absolute path), else None."""
    if url.startswith("/"):
        return url
    parsed = urllib.parse.urlsplit(url)
    if parsed.scheme != "file":
        return None
    if parsed.netloc not in ("", "localhost"):
        raise CoexError("Unsupported file URL {!r}: only local file:// URLs are supported.".format(url))
    return urllib.parse.unquote(parsed.path)


def package_name_of(url: str) -> str:
    return urllib.parse.unquote(url.rstrip("/").rsplit("/", 1)[-1])


def _open(url, name):
    path = url_to_path(url)
    if path is not None:
        try:
            return open(path, "rb")
        except FileNotFoundError:
            raise CoexError(
                "Cannot fetch package {}: {} does not exist. The channel has changed or moved "
                "since the lockfile was written: restore it, or regenerate the lockfile.".format(
                    name, path))
        except OSError as e:
            raise CoexError("Cannot fetch package {}: cannot read {}: {}.".format(
                name, path, e.strerror or e))
    scheme = urllib.parse.urlsplit(url).scheme
    if scheme not in ("http", "https"):
        raise CoexError("Cannot fetch package {}: unsupported URL scheme in {!r} (use file://, "
                        "https:// or an absolute path).".format(name, url))
    last = None
    for attempt in range(3):
        try:
            req = urllib.request.Request(url, headers={"User-Agent": "coex"})
            return urllib.request.urlopen(req, timeout=60)
        except urllib.error.HTTPError as e:
            if e.code < 500:
                raise CoexError("Cannot fetch package {} from {}: HTTP {} {}.".format(
                    name, url, e.code, e.reason))
            last = e
        except (urllib.error.URLError, OSError) as e:
            last = e
        time.sleep(0.5 * (attempt + 1))
    raise CoexError("Cannot fetch package {} from {}: {} (after 3 attempts). Check the network "
                    "or the channel URL.".format(name, url, getattr(last, "reason", last)))


def fetch(url: str, sha256: str, size: int, out: str, name: Optional[str] = None) -> str:
    """Copy/download `url` to `out`, verifying `size` (bytes) and `sha256` (hex)."""
    name = name or package_name_of(url)
    sha256 = (sha256 or "").lower()
    if len(sha256) != 64:
        raise CoexError("Cannot fetch package {}: the expected sha256 {!r} is not 64 hex digits."
                        .format(name, sha256))
    size = int(size)
    with atomic_output(out) as tmp:
        h = hashlib.sha256()
        n = 0
        with open(tmp, "wb") as dst, _open(url, name) as src:
            while True:
                chunk = src.read(CHUNK)
                if not chunk:
                    break
                n += len(chunk)
                if n > size:
                    raise CoexError(
                        "Package {} from {} is larger than the {} bytes the lockfile records: "
                        "the file changed since locking. Regenerate the lockfile, or restore the "
                        "original package.".format(name, url, size))
                h.update(chunk)
                dst.write(chunk)
        if n != size:
            raise CoexError(
                "Package {} from {} has {} bytes, the lockfile records {}: the file changed since "
                "locking. Regenerate the lockfile, or restore the original package.".format(
                    name, url, n, size))
        got = h.hexdigest()
        if got != sha256:
            raise CoexError(
                "Package {} from {} failed verification: sha256 {} but the lockfile records {}. "
                "The file changed since locking (or is corrupt): regenerate the lockfile, or "
                "restore the original package.".format(name, url, got, sha256))
    return os.path.abspath(os.fspath(out))
