"""Fetch one locked package by URL and verify its size and sha256.

URLs: `file:///abs`, `file:/abs`, `file://localhost/abs`, a plain absolute path, `https://`
(and `http://`). The bytes are streamed into a temporary file beside `out` in 1 MiB chunks
(memory does not grow with the package), hashed on the way, and renamed into place only when
size and sha256 match the lock; otherwise nothing is left. A network failure (refused or reset
connection, timeout, HTTP 5xx, a transfer cut short) is retried from the start, 3 attempts in
all; a wrong size or sha256 is not (the channel changed: regenerate the lockfile).

Also a command, `python -m coex.lib.fetch --url URL --sha256 HEX --size N --out PATH`: the Pants
rules run it as a process that needs only this module and `coex.lib.errors`/`fsutil` (see
`coex.util_rules.packages`), so editing the rest of the library does not refetch packages.
"""
from __future__ import annotations

import argparse
import hashlib
import http.client
import os
import time
import urllib.error
import urllib.parse
import urllib.request
from typing import Optional

from coex.lib.errors import CoexError, step_main
from coex.lib.fsutil import atomic_output

CHUNK = 1 << 20
ATTEMPTS = 3


class _Retry(Exception):
    """A failure worth another attempt (network); str() says what happened."""


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


def _open(url, name, size):
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
    try:
        resp = urllib.request.urlopen(
            urllib.request.Request(url, headers={"User-Agent": "coex"}), timeout=60)
    except urllib.error.HTTPError as e:
        if e.code < 500:
            raise CoexError("Cannot fetch package {} from {}: HTTP {} {}.".format(
                name, url, e.code, e.reason))
        raise _Retry("HTTP {} {}".format(e.code, e.reason))
    except (urllib.error.URLError, OSError) as e:
        raise _Retry(str(getattr(e, "reason", e)))
    length = resp.headers.get("Content-Length")
    if length is not None and length.isdigit() and int(length) != size:
        resp.close()
        raise CoexError(
            "Package {} from {} has {} bytes (the server's Content-Length), the lockfile records "
            "{}: the file changed since locking. Regenerate the lockfile, or restore the original "
            "package.".format(name, url, length, size))
    return resp


def _fetch_once(url, sha256, size, out, name):
    with atomic_output(out) as tmp:
        h = hashlib.sha256()
        n = 0
        with open(tmp, "wb") as dst, _open(url, name, size) as src:
            while True:
                try:
                    chunk = src.read(CHUNK)
                except (OSError, http.client.HTTPException) as e:
                    raise _Retry("the transfer failed after {} bytes: {}".format(n, e))
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
            if url_to_path(url) is None:  # a transfer cut short
                raise _Retry("the transfer ended after {} of {} bytes".format(n, size))
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


def fetch(url: str, sha256: str, size: int, out: str, name: Optional[str] = None) -> str:
    """Copy/download `url` to `out`, verifying `size` (bytes) and `sha256` (hex)."""
    name = name or package_name_of(url)
    sha256 = (sha256 or "").lower()
    if len(sha256) != 64:
        raise CoexError("Cannot fetch package {}: the expected sha256 {!r} is not 64 hex digits."
                        .format(name, sha256))
    size = int(size)
    for attempt in range(1, ATTEMPTS + 1):
        try:
            _fetch_once(url, sha256, size, out, name)
            return os.path.abspath(os.fspath(out))
        except _Retry as e:
            if attempt == ATTEMPTS:
                raise CoexError(
                    "Cannot fetch package {} from {}: {} (after {} attempts). Check the network "
                    "and the channel's URL.".format(name, url, e, ATTEMPTS))
            time.sleep(0.5 * attempt)
    raise AssertionError("unreachable")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--url", required=True)
    parser.add_argument("--sha256", required=True)
    parser.add_argument("--size", required=True, type=int)
    parser.add_argument("--out", required=True)
    parser.add_argument("--name", default=None, help="package name for messages")
    parser.set_defaults(func=lambda a: fetch(a.url, a.sha256, a.size, a.out, name=a.name))


if __name__ == "__main__":
    step_main("python -m coex.lib.fetch", "Fetch one package, verify size + sha256.", add_arguments)
