"""Read conda package files at build time, in any of the archive encodings.

`.conda` (zip: info-*.tar.zst + pkg-*.tar.zst), `.tar.bz2`, `.tar.zst` (coex's transcoded
form). Used to take libzstd out of the locked `zstd` package and to learn which programs and
Python modules a package installs (for build-time entry point checks).
"""
from __future__ import annotations

import json
import posixpath
import tarfile
import zipfile
from typing import Optional, Sequence

from coex.lib.errors import CoexError


def _tar_streams(path, encoding, want_info=True, want_pkg=True):
    """Yield open streaming TarFiles over the package's tar(s)."""
    import zstandard

    if encoding == "conda":
        with zipfile.ZipFile(path) as zf:
            names = zf.namelist()
            parts = []
            if want_info:
                parts += [n for n in names if n.startswith("info-") and n.endswith(".tar.zst")]
            if want_pkg:
                parts += [n for n in names if n.startswith("pkg-") and n.endswith(".tar.zst")]
            for n in parts:
                with zf.open(n) as raw:
                    reader = zstandard.ZstdDecompressor().stream_reader(raw)
                    with tarfile.open(fileobj=reader, mode="r|") as tf:
                        yield tf
    elif encoding == "tar.zst":
        with open(path, "rb") as raw:
            reader = zstandard.ZstdDecompressor().stream_reader(raw)
            with tarfile.open(fileobj=reader, mode="r|") as tf:
                yield tf
    elif encoding == "tar.bz2":
        with open(path, "rb") as raw, tarfile.open(fileobj=raw, mode="r|bz2") as tf:
            yield tf
    else:
        raise CoexError("{}: unknown package encoding {!r}.".format(path, encoding))


def _zstd_error():
    import zstandard

    return zstandard.ZstdError


def _walk(path, encoding, want_info=True, want_pkg=True):
    """Yield (TarInfo, TarFile) for every member, wrapping read errors in a CoexError."""
    try:
        for tf in _tar_streams(path, encoding, want_info, want_pkg):
            for ti in tf:
                yield ti, tf
    except CoexError:
        raise
    except (tarfile.TarError, zipfile.BadZipFile, EOFError, OSError, ValueError,
            _zstd_error()) as e:
        raise CoexError("Cannot read conda package {} ({}): {}: {}. The file is corrupt: re-fetch "
                        "it.".format(path, encoding, type(e).__name__, e))


def read_info(path: str, encoding: str,
              names: Sequence[str] = ("info/paths.json", "info/files", "info/link.json",
                                      "info/index.json")) -> dict[str, bytes]:
    """{member name: bytes} of the wanted `info/` files that the package has."""
    out = {}
    for ti, tf in _walk(path, encoding, want_info=True, want_pkg=(encoding != "conda")):
        if ti.name in names and ti.isreg():
            out[ti.name] = tf.extractfile(ti).read()
    return out


def package_paths(path: str, encoding: str) -> tuple[list[str], dict]:
    """(paths installed by the package [from info/paths.json, else info/files], link.json dict)."""
    info = read_info(path, encoding)
    paths = []
    if "info/paths.json" in info:
        try:
            paths = [p["_path"] for p in json.loads(info["info/paths.json"].decode("utf-8"))["paths"]]
        except (ValueError, KeyError, TypeError) as e:
            raise CoexError("{}: unreadable info/paths.json ({}).".format(path, e))
    elif "info/files" in info:
        paths = [ln.strip() for ln in info["info/files"].decode("utf-8", "replace").splitlines()
                 if ln.strip()]
    link = {}
    if "info/link.json" in info:
        try:
            link = json.loads(info["info/link.json"].decode("utf-8"))
        except ValueError:
            link = {}
    return paths, link


def read_member(path: str, encoding: str,
                candidates: Sequence[str]) -> tuple[Optional[str], Optional[bytes]]:
    """Bytes of the first of `candidates` (package-relative paths) present in the package,
    following symlinks inside the package. Returns (name, bytes) or (None, None)."""
    members = {}
    links = {}
    dirs = set(posixpath.dirname(c) for c in candidates)
    for ti, tf in _walk(path, encoding, want_info=False, want_pkg=True):
        if ti.issym():
            links[ti.name] = ti.linkname
        elif ti.islnk():
            links[ti.name] = "/" + ti.linkname  # hardlink: archive-relative target
        elif ti.isreg() and posixpath.dirname(ti.name) in dirs:
            members[ti.name] = tf.extractfile(ti).read()
    for name in candidates:
        seen = set()
        cur = name
        while cur in links and cur not in seen:
            seen.add(cur)
            target = links[cur]
            cur = target[1:] if target.startswith("/") else posixpath.normpath(
                posixpath.join(posixpath.dirname(cur), target))
        if cur in members:
            return name, members[cur]
    return None, None
