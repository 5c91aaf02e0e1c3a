"""`python -m coex.lib <command> ...`: the build steps the Pants rules run as processes.

    solve     --request REQ.json --out LOCKFILE [--cache-dir DIR]   prints the header (JSON)
    entries   --lock LOCKFILE --platform SUBDIR [--root SPEC]... [--pypi-root REQ]...
              --out ENTRIES.json
    fetch     --url URL --sha256 HEX --size N --out PATH [--name NAME]
    transcode --in PKG.tar.bz2 --out PKG.tar.zst [--level N]
    assemble  --spec SPEC.json --out OUT.coex                        prints {"archive_id",...}
    explicit  --lock LOCKFILE --platform SUBDIR --out FILE [--hash md5|sha256]
              [--root DIR] [--location NAME=URL]...   where the lock's `coex://` channels are

JSON inputs and outputs are the records of `coex.lib.records` (SolveRequest, LockHeader,
LockedPlatform, AssembleSpec). Every bad input exits 1 with one clear paragraph on stderr;
stdout carries results only.
"""
from __future__ import annotations

import argparse
import json
import os
from typing import Optional, Sequence

from coex.lib.errors import CoexError, exit_process, run_cli
from coex.lib.fsutil import atomic_output


def _load_json(path, what):
    try:
        with open(path, "r", encoding="utf-8") as f:
            return json.load(f)
    except OSError as e:
        raise CoexError("Cannot read {} {}: {}.".format(what, path, e.strerror or e))
    except ValueError as e:
        raise CoexError("{} {} is not valid JSON: {}.".format(what, path, e))


def _write_json(path, obj):
    with atomic_output(path) as tmp, open(tmp, "w", encoding="utf-8") as f:
        json.dump(obj, f, indent=1, sort_keys=True)
        f.write("\n")


def cmd_solve(a):
    from coex.lib.lockfile import solve_to_lockfile
    from coex.lib.records import SolveRequest

    request = SolveRequest.from_json(_load_json(a.request, "solve request"))
    header = solve_to_lockfile(request, a.out, a.cache_dir)
    print(json.dumps(header.to_json(), sort_keys=True))


def cmd_entries(a):
    from coex.lib.lockfile import lock_entries

    _write_json(a.out, lock_entries(a.lock, a.platform, a.root, a.pypi_root).to_json())


def cmd_assemble(a):
    from coex.lib.assemble import assemble
    from coex.lib.records import AssembleSpec
    from coex_runtime.format import dump_json, archive_id

    spec = AssembleSpec.from_json(_load_json(a.spec, "assemble spec"))
    info = assemble(spec, a.out, base_dir=os.path.dirname(os.path.abspath(a.spec)))
    print(json.dumps({"archive_id": archive_id(dump_json(info)), "env_id": info["env_id"],
                      "out": a.out}, sort_keys=True))


def cmd_explicit(a):
    from coex.lib.channels import check_locations, parse_location_args
    from coex.lib.explicit import write_explicit

    locations = check_locations(a.root, parse_location_args(a.location), "--location")
    write_explicit(a.lock, a.platform, a.out, a.hash, locations)


def build_parser() -> argparse.ArgumentParser:
    from coex.lib import fetch, transcode

    p = argparse.ArgumentParser(prog="python -m coex.lib", description=__doc__.split("\n")[0])
    sub = p.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

    s = sub.add_parser("solve", help="solve a request and write a coex lockfile")
    s.add_argument("--request", required=True)
    s.add_argument("--out", required=True)
    s.add_argument("--cache-dir", default=None, help="repodata cache (default: a temp dir)")
    s.set_defaults(func=cmd_solve)

    s = sub.add_parser("entries", help="one platform's packages of a lockfile, in install order")
    s.add_argument("--lock", required=True)
    s.add_argument("--platform", required=True)
    s.add_argument("--root", action="append", default=[],
                   help="only the packages this spec needs (repeatable; default: all)")
    s.add_argument("--pypi-root", action="append", default=None,
                   help="only the wheels this PyPI requirement needs (repeatable; default: all "
                        "without --root, none with it)")
    s.add_argument("--out", required=True)
    s.set_defaults(func=cmd_entries)

    # also `python -m coex.lib.fetch` / `.transcode`: what the Pants rules run (fewer inputs)
    fetch.add_arguments(sub.add_parser("fetch", help="fetch one package and verify size + sha256"))
    transcode.add_arguments(sub.add_parser("transcode", help=".tar.bz2 -> deterministic .tar.zst"))

    s = sub.add_parser("assemble", help="write a .coex archive from an assemble spec")
    s.add_argument("--spec", required=True)
    s.add_argument("--out", required=True)
    s.set_defaults(func=cmd_assemble)

    s = sub.add_parser("explicit", help="conda @EXPLICIT export of one platform")
    s.add_argument("--lock", required=True)
    s.add_argument("--platform", required=True)
    s.add_argument("--out", required=True)
    s.add_argument("--hash", choices=("md5", "sha256"), default="md5")
    s.add_argument("--root", default=None, help="the build root (`coex://buildroot/...`)")
    s.add_argument("--location", action="append", default=[], metavar="NAME=URL",
                   help="where the channel named NAME is (`coex://NAME/...`; repeatable)")
    s.set_defaults(func=cmd_explicit)

    return p


def main(argv: Optional[Sequence[str]] = None) -> int:
    return run_cli(build_parser(), argv)


if __name__ == "__main__":
    exit_process(main())
