"""`.tar.bz2` conda package -> `.tar.zst`, deterministically.

The members are re-tarred in their original order with normalised metadata (uid/gid 0, empty
user/group names, integer mtimes kept from the input, permission bits kept, PAX format), and the
tar stream is zstd-compressed single-threaded at the given level with a checksum. (Where the
result is kept, `<stem>.tar.zst`, is `records.LockedPackage.prepared_path`.) Same input and
level -> same bytes, on any machine. Contents (names, types, modes, data, link targets) are
exactly the input's.

Also a command, `python -m coex.lib.transcode --in PKG.tar.bz2 --out PKG.tar.zst --level N`: the
Pants rules run it as a process that needs only this module and `coex.lib.errors`/`fsutil`, so
editing the rest of the library keeps cached transcodes.
"""
from __future__ import annotations

import argparse
import os
import tarfile

from coex.lib.errors import CoexError, step_main
from coex.lib.fsutil import atomic_output

# The level, unless told otherwise (`./coex create --zstd-level`, `[coex].transcode_zstd_level`).
# Measured (benchmarks/zstd_levels.py, 47 MB of real .tar.bz2 packages): level 10 is the knee,
# 15% smaller than level 3 for 1.3x its time; 19 is 12% smaller again but 9.5x slower (minutes
# per cold build of a big .tar.bz2 environment); decoding costs the same at levels 1-19.
DEFAULT_ZSTD_LEVEL = 10


def _normalised(ti):
    out = tarfile.TarInfo(ti.name)
    out.type = ti.type
    out.mode = ti.mode & 0o7777
    out.mtime = int(ti.mtime)
    out.linkname = ti.linkname
    out.size = ti.size if ti.isreg() else 0
    out.uid = out.gid = 0
    out.uname = out.gname = ""
    out.devmajor, out.devminor = ti.devmajor, ti.devminor
    return out


def transcode(src: str, dst: str, level: int = DEFAULT_ZSTD_LEVEL) -> str:
    """Write the .tar.zst form of the .tar.bz2 at `src` to `dst` (atomically)."""
    import zstandard

    src, dst = os.fspath(src), os.path.abspath(os.fspath(dst))
    name = os.path.basename(src)
    if not 1 <= int(level) <= 22:
        raise CoexError("zstd level must be 1..22, got {}.".format(level))
    try:
        raw = open(src, "rb")
    except OSError as e:
        raise CoexError("Cannot transcode {}: {}.".format(src, e.strerror or e))
    with raw, atomic_output(dst) as tmp, open(tmp, "wb") as out:
        cctx = zstandard.ZstdCompressor(level=int(level), write_checksum=True, threads=0)
        with cctx.stream_writer(out, closefd=False) as zw:
            try:
                with tarfile.open(fileobj=raw, mode="r|bz2") as tin, \
                        tarfile.open(fileobj=zw, mode="w|", format=tarfile.PAX_FORMAT) as tout:
                    for ti in tin:
                        tout.addfile(_normalised(ti), tin.extractfile(ti) if ti.isreg() else None)
            except (tarfile.TarError, EOFError, OSError, ValueError) as e:
                if isinstance(e, OSError) and e.errno:
                    raise CoexError("Cannot transcode {}: {}.".format(src, e.strerror or e))
                raise CoexError(
                    "Cannot transcode package {}: it is not a valid .tar.bz2 ({}: {}). The file "
                    "is corrupt: re-fetch it or regenerate the lockfile.".format(
                        name, type(e).__name__, e))
    return dst


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--in", dest="input", required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--level", type=int, default=DEFAULT_ZSTD_LEVEL)
    parser.set_defaults(func=lambda a: transcode(a.input, a.out, a.level))


if __name__ == "__main__":
    step_main("python -m coex.lib.transcode", ".tar.bz2 -> deterministic .tar.zst", add_arguments)
