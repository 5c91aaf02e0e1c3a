"""conda's `@EXPLICIT` format from a coex lock file (one platform).

    # This file may be used to create an environment using:
    # $ conda create --name <env> --file <this file>
    # platform: linux-64
    # created-by: coex (resolve R, lockfile L)
    @EXPLICIT
    <url>#<md5>                   (default: every conda version reads it)
    <url>#<sha256>                (hash="sha256": conda >= 24.9 reads 64-hex sha256 fragments)

Packages are listed in install (topological) order, by where they are on this machine (a
lockfile's `coex://` placeholders resolved through `ChannelLocations`, `coex.lib.channels`).
The lock's PyPI wheels, which conda does not install, follow as comment lines
(`# <url>#sha256=<hex>`) with the `pip install --no-deps` command that installs them.
"""
from __future__ import annotations

from coex.lib.channels import locate
from coex.lib.errors import CoexError
from coex.lib.fsutil import atomic_output
from coex.lib.lockfile import lock_entries
from coex.lib.records import ChannelLocations


def explicit_text(lock_path: str, platform: str, hash: str = "md5",
                  locations: ChannelLocations = ChannelLocations()) -> str:
    if hash not in ("md5", "sha256"):
        raise CoexError("explicit: hash must be md5 or sha256, not {!r}.".format(hash))
    data = lock_entries(lock_path, platform)
    lines = [
        "# This file may be used to create an environment using:",
        "# $ conda create --name <env> --file <this file>",
        "# platform: {}".format(platform),
        "# created-by: coex (resolve {}, lockfile {})".format(data.header.resolve, lock_path),
    ]
    if hash == "sha256":
        lines.append("# sha256 fragments need conda >= 24.9 (older conda reads md5 only)")
    lines.append("@EXPLICIT")
    for p in data.packages:
        digest = getattr(p, hash)
        if not digest:
            raise CoexError("explicit: package {} has no {} in the lockfile; use --hash {}."
                            .format(p.filename, hash, "sha256" if hash == "md5" else "md5"))
        url = locate(p.url, locations, "The lockfile {}".format(lock_path))
        lines.append("{}#{}".format(url, digest))
    if data.wheels:
        lines += ["# PyPI wheels of this environment (conda does not install them): after "
                  "`conda create`, run", "# $ conda run -n <env> pip install --no-deps <each "
                  "URL below>"]
        lines += ["# {}#sha256={}".format(
            locate(w.url, locations, "The lockfile {}".format(lock_path)), w.sha256)
            for w in data.wheels]
    return "\n".join(lines) + "\n"


def write_explicit(lock_path: str, platform: str, out: str, hash: str = "md5",
                   locations: ChannelLocations = ChannelLocations()) -> str:
    text = explicit_text(lock_path, platform, hash, locations)
    with atomic_output(out) as tmp, open(tmp, "w", encoding="utf-8") as f:
        f.write(text)
    return text
