"""`./coex`: build .coex archives without Pants (and without a BUILD file).

    ./coex create -f environment.yml --entrypoint CMD -o OUT.coex [--channel URL]...
                  [--platform SUBDIR] [--lockfile PATH] [--env K=V]... [-D DIR]... [SRC...]
    ./coex lock -f environment.yml -o LOCK [--channel URL]... [--platform SUBDIR]...
    ./coex export-explicit --lockfile LOCK -o FILE [--platform SUBDIR] [--hash md5|sha256]
    ./coex run [--lock] [--channel URL]... SCRIPT [ARGS...]
    ./coex build [--lock] [--channel URL]... [--platform SUBDIR] SCRIPT -o OUT.coex
    ./coex gc [--older-than 14d]

Each also takes `--root DIR` (local channels under DIR are locked relative to it, as Pants does
with its build root) and `--channel-location NAME=URL` (a channel known by NAME), so lockfiles
stay the same on every machine (`coex.lib.channels`).

It runs exactly the library functions the Pants rules run in processes (coex.lib: solve ->
entries -> fetch -> transcode -> assemble), in-process, on the same records (coex.lib.records):
the solve request, the freshness check, where fetched and transcoded packages are kept, entry
points and the assemble spec all come from coex.lib. `run`, `build` and `gc` are about scripts
that carry their environment in a header (coex.lib.script) and the build cache
(coex.buildcache); a warm `coex run` never gets here (coex.entry execs the archive first).
"""
from __future__ import annotations

import argparse
import os
import shlex
import shutil
import sys
import tempfile
from typing import Optional, Sequence

from coex.lib.errors import CoexError, run_cli
from coex.lib.records import ChannelLocations, EntryPoints, SolveRequest


def locations_of(a) -> ChannelLocations:
    """`--root` and `--channel-location`s, checked."""
    from coex.lib.channels import check_locations, parse_location_args

    root = os.path.abspath(a.root) if a.root else None
    named = parse_location_args(a.channel_location, "--channel-location")
    return check_locations(root, named, "--channel-location")


def build_request(env_file: str, channels: Sequence[str] = (), platforms: Sequence[str] = (),
                  virtual_packages: Optional[Sequence[str]] = None,
                  locations: ChannelLocations = ChannelLocations()) -> SolveRequest:
    """The SolveRequest of an environment file plus command-line channels/platforms.
    `--channel`s come first (higher priority), then the file's channels."""
    from coex.lib.envspec import load_environment_file
    from coex.lib.platforms import check_platform
    from coex.lib.request import local_channel, solve_request

    for p in platforms:
        check_platform(p, origin="--platform")
    spec = load_environment_file(env_file)
    env_dir = os.path.dirname(os.path.abspath(env_file))
    named = dict(locations.named)
    # command-line channel paths are relative to the current directory, the file's to the file;
    # a name of --channel-location is never a path
    chans = [c if c in named else local_channel(c, os.getcwd(), origin="--channel")
             for c in channels] + [
        c if c in named else local_channel(c, env_dir, origin=env_file) for c in spec.channels]
    if not chans:
        raise CoexError(
            "{} lists no channels and none was given: add `channels:` to the file or pass "
            "--channel URL (e.g. --channel conda-forge or --channel file:///srv/channel)."
            .format(env_file))
    pypi = {}
    if spec.pypi or spec.pip_options is not None:
        from coex.lib.pypi import NO_PIP_OPTIONS, merge_options
        from coex.lib.records import DEFAULT_PYPI_INDEX, PypiSettings

        indexes, find_links = merge_options([(env_file, spec.pip_options or NO_PIP_OPTIONS)],
                                            [DEFAULT_PYPI_INDEX])
        pypi = dict(pypi_sources=[(env_file + " (`pip:`)", spec.pypi)],
                    pypi_settings=PypiSettings(indexes, find_links))
    return solve_request(spec.name or "default", [(env_file, spec.specs)], chans,
                         platforms or ["linux-64"], virtual_packages, locations=locations,
                         **pypi)


def lock_command(env_file: str, lockfile: str, req: SolveRequest,
                 cli_channels: Sequence[str] = ()) -> str:
    """The `./coex lock` command line that writes `lockfile` for `req` (its platforms, and the
    --channel/--virtual-package options it was built from)."""
    args = ["./coex", "lock", "-f", env_file, "-o", os.path.relpath(lockfile)]
    for c in cli_channels:
        args += ["--channel", c]
    for p in req.platforms:
        args += ["--platform", p]
    for v in req.virtual_packages or ():
        args += ["--virtual-package", v]
    if req.locations.root:
        args += ["--root", os.path.relpath(req.locations.root)]
    for name, url in req.locations.named:
        args += ["--channel-location", "{}={}".format(name, url)]
    return " ".join(shlex.quote(a) for a in args)


def _ensure_lock(req, lockfile, env_file, cli_channels=()):
    """Use `lockfile` if it exists and is fresh; solve into it if it does not exist."""
    from dataclasses import replace

    from coex.lib.lockfile import solve_to_lockfile
    from coex.lib.request import read_header, stale_reason

    if os.path.exists(lockfile):
        header = read_header(lockfile)
        # building one platform of a multi-platform lock: compare against all of them
        req = replace(req, platforms=tuple(sorted(set(req.platforms) | set(header.platforms))))
        reason = stale_reason(header, req)
        if reason:
            raise CoexError("Lockfile {} is stale ({}): regenerate it with `{}`, or delete it."
                            .format(lockfile, reason,
                                    lock_command(env_file, lockfile, req, cli_channels)))
        return lockfile
    solve_to_lockfile(req, lockfile)
    return lockfile


_SKIP_SOURCES = ("__pycache__", ".git")


def _copy_source_tree(src_dir, dest, shown, ancestors, exclude=(), merge=False):
    """Copy the directory `src_dir` to `dest`, following symlinks (the archive stores files only).
    `shown` names `src_dir` in messages; `ancestors` holds the real paths of the directories
    being copied, so a symlink back into one of them is reported instead of copied forever.
    With `merge`, a file `dest` already has (from another source) is an error, not replaced."""
    os.makedirs(dest, exist_ok=True)
    for name in sorted(os.listdir(src_dir)):
        if name in _SKIP_SOURCES or name.endswith(".pyc"):
            continue
        path = os.path.join(src_dir, name)
        where = os.path.join(shown, name)
        if os.path.islink(path) and not os.path.exists(path):
            raise CoexError(
                "Source {} is a dangling symlink (to {}): remove it, point it at an existing "
                "file, or leave it out of the SRC arguments.".format(where, os.readlink(path)))
        if os.path.isdir(path):
            real = os.path.realpath(path)
            if real in ancestors:
                raise CoexError(
                    "Source {} is a symlink loop: it leads back to {}, which contains it. "
                    "Remove the link, or leave it out of the SRC arguments.".format(where, real))
            _copy_source_tree(
                path, os.path.join(dest, name), where, ancestors + (real,), exclude, merge)
        elif os.path.realpath(path) in exclude:
            continue
        elif os.path.isfile(path):
            if merge and os.path.lexists(os.path.join(dest, name)):
                raise CoexError(
                    "Source {} would replace a file of the same app-layer path that another "
                    "source gives: keep one of them.".format(where))
            shutil.copy2(path, os.path.join(dest, name))
        else:
            raise CoexError("Source {} is not a regular file or directory (a fifo, socket or "
                            "device?): leave it out of the SRC arguments.".format(where))


def stage_sources(sources: Sequence[str], dest: str, exclude: Sequence[str] = ()) -> None:
    """Copy SRC files/dirs into `dest` (the app layer root). Paths under the current directory
    keep their relative path (so `python src/main.py` works; `.` is the root itself); others go
    in by basename. Symlinks are followed (their targets' contents are stored); dangling ones and
    loops are errors. Files in `exclude` (e.g. the archive being written) are left out."""
    exclude = tuple(os.path.realpath(p) for p in exclude)
    cwd = os.getcwd()
    for src in sources:
        if os.path.islink(src) and not os.path.exists(src):
            raise CoexError("Source {} is a dangling symlink (to {}).".format(
                src, os.readlink(src)))
        if not os.path.exists(src):
            raise CoexError("Source {} does not exist.".format(src))
        full = os.path.abspath(src)
        rel = os.path.relpath(full, cwd)
        if rel == os.pardir or rel.startswith(os.pardir + os.sep):
            rel = os.path.basename(full.rstrip(os.sep))
        target = os.path.normpath(os.path.join(dest, rel))
        if os.path.isdir(full):
            _copy_source_tree(full, target, src.rstrip(os.sep) or src,
                              (os.path.realpath(full),), exclude)
        else:
            os.makedirs(os.path.dirname(target), exist_ok=True)
            shutil.copy2(full, target)


def stage_sources_directories(dirs: Sequence[str], dest: str,
                              exclude: Sequence[str] = ()) -> None:
    """Copy the contents of each directory in `dirs` to `dest` (the app layer root), as pex's
    `-D/--sources-directory` does: `-D src` puts `src/app/` at `app/`. A file two sources give is
    an error."""
    exclude = tuple(os.path.realpath(p) for p in exclude)
    for d in dirs:
        if not os.path.isdir(d):
            raise CoexError(
                "--sources-directory {}: {}: give a directory whose contents form the app layer's "
                "root (files go as SRC arguments).".format(
                    d, "not a directory" if os.path.exists(d) else "no such directory"))
        _copy_source_tree(d, dest, d.rstrip(os.sep) or d, (os.path.realpath(d),), exclude,
                          merge=True)


def parse_entry_points(values: Sequence[str], origin: str) -> EntryPoints:
    """[--entrypoint values] -> EntryPoints, the first the default. `NAME=CMD` names one; a plain
    CMD is named after its program (or module)."""
    from coex.lib.records import entry_point_name

    pairs = []
    for v in values:
        name, sep, cmd = v.partition("=")
        if not (sep and entry_point_name(name) == name and cmd.strip()):  # (a valid name)
            cmd = v
            try:
                first = shlex.split(v)[0] if v.strip() else ""
            except ValueError:
                first = v
            name = entry_point_name(os.path.basename(first.split(":", 1)[0].split(".", 1)[0]))
        pairs.append((name, cmd))
    return EntryPoints.of(pairs, pairs[0][0] if pairs else None, origin)


def parse_env(values: Sequence[str]) -> dict[str, str]:
    env = {}
    for v in values:
        k, sep, val = v.partition("=")
        if not sep or not k:
            raise CoexError("--env {!r}: write KEY=VALUE.".format(v))
        env[k] = val
    return env


def cmd_create(a):
    from coex.buildcache import BuildCache, prepare_packages, prepare_wheels
    from coex.lib.assemble import assemble
    from coex.lib.lockfile import lock_entries
    from coex.lib.records import AssembleSpec, BuildRecord
    from coex_runtime.format import sha256_file

    platform = a.platform
    target = "./coex create -f {}".format(a.file)
    locations = locations_of(a)
    req = build_request(a.file, a.channel, [platform], a.virtual_package or None, locations)
    eps = parse_entry_points(a.entrypoint, target)
    env = parse_env(a.env)
    cache = BuildCache.of(a.cache_dir)
    tmp = tempfile.mkdtemp(prefix="coex-create-")
    try:
        lockfile = (_ensure_lock(req, os.path.abspath(a.lockfile), a.file, a.channel)
                    if a.lockfile else None)
        if lockfile is None:
            from coex.lib.lockfile import solve_to_lockfile

            lockfile = os.path.join(tmp, "coex.lock")
            solve_to_lockfile(req, lockfile)
        app_root = None
        if a.sources or a.sources_directory:
            app_root = os.path.join(tmp, "app")
            os.makedirs(app_root)
            stage_sources(a.sources, app_root, exclude=[a.output])
            stage_sources_directories(a.sources_directory, app_root, exclude=[a.output])
        build = BuildRecord(req.resolve, sha256_file(lockfile), target, "./coex create",
                            os.path.abspath(a.lockfile) if a.lockfile else None)
        with cache.building():  # (`coex gc` waits until the archive is written)
            entries = lock_entries(lockfile, platform)
            items = prepare_packages(entries.packages, cache.root, a.zstd_level, locations)
            wheels = prepare_wheels(entries.wheels, cache.root, locations)
            assemble(AssembleSpec(platform, tuple(items), eps, build, app_root,
                                  tuple(env.items()), req.specs, wheels=tuple(wheels)),
                     a.output)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    names = sorted(name for name, _ in eps.commands)
    sys.stderr.write("coex: wrote {} ({} packages{}, entry point{} {})\n".format(
        a.output, len(items), ", {} PyPI wheels".format(len(wheels)) if wheels else "",
        "s" if len(names) > 1 else "", ", ".join(names)))


def cmd_lock(a):
    from coex.lib.lockfile import solve_to_lockfile

    req = build_request(a.file, a.channel, a.platform or ["linux-64"], a.virtual_package or None,
                        locations_of(a))
    header = solve_to_lockfile(req, a.output)
    sys.stderr.write("coex: wrote {} (resolve {}, platforms {})\n".format(
        a.output, header.resolve, ", ".join(header.platforms)))


def cmd_export_explicit(a):
    from coex.lib.explicit import write_explicit
    from coex.lib.request import read_header

    platform = a.platform
    if platform is None:
        plats = read_header(a.lockfile).platforms
        if len(plats) != 1:
            raise CoexError("Lockfile {} has platforms {}: choose one with --platform.".format(
                a.lockfile, ", ".join(plats)))
        platform = plats[0]
    write_explicit(a.lockfile, platform, a.output, a.hash, locations_of(a))


def cmd_run(a):
    from coex.buildcache import ensure_script_archive
    from coex.entry import exec_archive

    for _ in range(2):  # (again when a concurrent `coex gc` removed the archive just found)
        archive = ensure_script_archive(a.script, a.channel, a.lock, a.cache_dir, quiet=a.quiet)
        try:
            exec_archive(archive, a.script, a.args)
        except FileNotFoundError:
            continue
        except OSError as e:
            raise CoexError("Cannot run {} (the archive of {}): {}.".format(
                archive, a.script, e.strerror or e))
    raise CoexError("The archive of {} was removed twice while starting it (is `coex gc "
                    "--older-than 0` running in a loop?); run it again.".format(a.script))


def cmd_build(a):
    from coex.buildcache import ensure_script_archive
    from coex.lib.fsutil import atomic_output

    if os.path.isdir(a.output):
        raise CoexError("The output {} is a directory: give the archive's file name (e.g. {})."
                        .format(a.output, os.path.join(a.output, "app.coex")))
    archive = ensure_script_archive(a.script, a.channel, a.lock, a.cache_dir, a.platform,
                                    quiet=a.quiet, builder="coex build")
    with atomic_output(a.output, 0o755) as tmp:
        shutil.copyfile(archive, tmp)
    if not a.quiet:
        sys.stderr.write("coex: wrote {}\n".format(a.output))


def cmd_gc(a):
    from coex.buildcache import BuildCache, gc
    from coex_runtime import tools
    from coex_runtime.errors import UsageError

    try:
        seconds = tools.parse_duration(a.older_than)
    except UsageError as e:
        raise CoexError("--older-than: {}.".format(e))
    cache = BuildCache.of(a.cache_dir)
    r = gc(cache, seconds)
    sys.stdout.write(
        "coex gc: {}: removed {} script archive{}, {} script lock{}, {} package{}; {:.1f} MB "
        "freed; {} script archive{} kept (used within {})\n".format(
            cache.root, r["script archives"], "" if r["script archives"] == 1 else "s",
            r["script locks"], "" if r["script locks"] == 1 else "s",
            r["packages"], "" if r["packages"] == 1 else "s", r["freed"] / 1e6,
            r["kept"], "" if r["kept"] == 1 else "s", a.older_than))
    if not a.build_cache_only:  # the archives' own cache (~/.cache/coex), as their `gc` tool
        tools.gc(None, ["--older-than", a.older_than], os.environ)


def build_parser() -> argparse.ArgumentParser:
    from coex.lib.transcode import DEFAULT_ZSTD_LEVEL

    p = argparse.ArgumentParser(
        prog="coex",
        description="Build self-extracting executables (.coex) from a conda environment plus "
                    "your sources: one file that installs a locked environment once into a "
                    "cache and then execs the entry point.",
        epilog="Run `coex COMMAND --help` for a command's options.")
    from coex import __version__

    p.add_argument("--version", action="version", version="coex " + __version__)
    sub = p.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

    def where_opts(s):
        s.add_argument("--root", metavar="DIR",
                       help="the build root: local channels under it are locked relative to it "
                            "(coex://buildroot/...), so the lockfile fits any checkout; needed "
                            "to read such a lockfile")
        s.add_argument("--channel-location", action="append", default=[], metavar="NAME=URL",
                       help="a channel known by NAME (use NAME as a channel; locked as "
                            "coex://NAME/...) is at URL here; repeatable")

    def env_opts(s, many_platforms):
        s.add_argument("-f", "--file", required=True, metavar="ENVIRONMENT_YML",
                       help="conda environment file (channels, dependencies and a pip: "
                            "section of PyPI wheels)")
        s.add_argument("-c", "--channel", action="append", default=[], metavar="URL",
                       help="channel name or URL (file://, https://), before the file's channels; "
                            "repeatable")
        if many_platforms:
            s.add_argument("--platform", action="append", default=[], metavar="SUBDIR",
                           help="conda subdir to lock (repeatable; default linux-64)")
        else:
            s.add_argument("--platform", default="linux-64", metavar="SUBDIR",
                           help="target conda subdir (default linux-64; cross-building works)")
        s.add_argument("--virtual-package", action="append", default=[], metavar="SPEC",
                       help="virtual package assumed when solving, e.g. __glibc=2.28 "
                            "(repeatable; per-platform defaults otherwise)")
        where_opts(s)

    s = sub.add_parser("create", help="build a .coex archive",
                       description="Solve (or read --lockfile), fetch, verify and assemble an "
                                   "archive. SRC files/dirs form the app layer.")
    env_opts(s, False)
    s.add_argument("--entrypoint", "-e", action="append", required=True, metavar="[NAME=]CMD",
                   help="what the archive runs: a program of the environment (`python -m app`), "
                        "`module:function`, or a path in SRC; repeatable (the first is the "
                        "default, others are picked with COEX_ENTRYPOINT)")
    s.add_argument("-o", "--output", required=True, metavar="OUT.coex")
    s.add_argument("--lockfile", metavar="PATH",
                   help="use this lockfile (must match the inputs); written if missing")
    s.add_argument("--env", action="append", default=[], metavar="K=V",
                   help="environment variable for the program (repeatable)")
    s.add_argument("--zstd-level", type=int, default=DEFAULT_ZSTD_LEVEL,
                   help="zstd level for transcoding .tar.bz2 packages (default %(default)s)")
    s.add_argument("--cache-dir", metavar="DIR",
                   help="fetched/transcoded package cache (default ~/.cache/coex-build)")
    s.add_argument("-D", "--sources-directory", action="append", default=[], metavar="DIR",
                   help="a directory whose contents go at the app layer's root, as pex's -D: "
                        "`-D src` makes src/app/ the package `app` (repeatable)")
    s.add_argument("sources", nargs="*", metavar="SRC",
                   help="app layer files or directories, kept at their path relative to the "
                        "current directory (`src` stays `src/`)")
    s.set_defaults(func=cmd_create)

    s = sub.add_parser("lock", help="solve an environment file into a coex lockfile",
                       description="Solve with py-rattler for each platform and write a rattler "
                                   "lock file with a coex header. Every lock also pins a `zstd` "
                                   "package per platform (the runtime's decoder).")
    env_opts(s, True)
    s.add_argument("-o", "--output", required=True, metavar="LOCK")
    s.set_defaults(func=cmd_lock)

    s = sub.add_parser("export-explicit", help="write conda's @EXPLICIT file for one platform")
    s.add_argument("--lockfile", "-l", required=True, metavar="LOCK")
    s.add_argument("--platform", default=None, metavar="SUBDIR",
                   help="platform to export (needed when the lock has several)")
    s.add_argument("-o", "--output", required=True, metavar="FILE")
    s.add_argument("--hash", choices=("md5", "sha256"), default="md5",
                   help="md5 (any conda) or sha256 (conda >= 24.9); default md5")
    where_opts(s)
    s.set_defaults(func=cmd_export_explicit)

    def script_opts(s):
        s.add_argument("--lock", action="store_true",
                       help="keep the lock beside the script (SCRIPT.lock): written when "
                            "missing or stale, then used by every run (reproducible scripts). "
                            "A lock beside the script is always used; a stale one is an error "
                            "without --lock")
        s.add_argument("-c", "--channel", action="append", default=[], metavar="URL",
                       help="channel name or URL, before the header's channels; repeatable")
        s.add_argument("--cache-dir", metavar="DIR",
                       help="the build cache (default ~/.cache/coex-build)")
        s.add_argument("-q", "--quiet", action="store_true",
                       help="say nothing while solving and building")

    header_help = ("SCRIPT names its conda environment in a header: a `# /// conda` block "
                   "(TOML: dependencies, channels, platforms) or conda-execute's `# conda "
                   "execute` lines (YAML: env, channels, run_with). The shebang, or else the "
                   "extension, says which program runs it.")
    s = sub.add_parser("run", help="run a script that carries its environment",
                       allow_abbrev=False,
                       description="Run SCRIPT in its locked environment: " + header_help +
                                   " The first run locks (once per header) and builds an "
                                   "archive (once per script, lock and coex version) in the "
                                   "build cache; every later run execs that archive at once.")
    script_opts(s)
    s.add_argument("script", metavar="SCRIPT")
    s.add_argument("args", nargs=argparse.REMAINDER, metavar="ARGS",
                   help="the script's arguments (stdin, exit status and signals are its own)")
    s.set_defaults(func=cmd_run)

    s = sub.add_parser("build", help="build the archive of a script that carries its environment",
                       allow_abbrev=False,
                       description="Write the archive `coex run SCRIPT` runs to OUT, to copy "
                                   "to other hosts: " + header_help)
    script_opts(s)
    s.add_argument("--platform", default=None, metavar="SUBDIR",
                   help="conda subdir to build for (default: this host's); the header's "
                        "`platforms`, when it has some, must list it")
    s.add_argument("-o", "--output", required=True, metavar="OUT.coex")
    s.add_argument("script", metavar="SCRIPT")
    s.set_defaults(func=cmd_build)

    s = sub.add_parser("gc", help="remove cached builds and environments unused for a while",
                       description="Remove from the build cache (~/.cache/coex-build) script "
                                   "archives, script locks and packages unused for DURATION "
                                   "(never an archive a running process started from; builds "
                                   "in progress are waited for), then run the archives' own "
                                   "`gc` on their cache (~/.cache/coex or $COEX_ROOT).")
    s.add_argument("--older-than", default="14d", metavar="DURATION",
                   help="e.g. 14d (default), 12h, 30m, 45s, 2w")
    s.add_argument("--cache-dir", metavar="DIR",
                   help="the build cache (default ~/.cache/coex-build)")
    s.add_argument("--build-cache-only", action="store_true",
                   help="leave the archives' cache alone")
    s.set_defaults(func=cmd_gc)
    return p


def main(argv: Optional[Sequence[str]] = None) -> int:
    """The command line after coex.entry (the `coex` console script and `python -m coex`)
    found no warm archive to exec."""
    return run_cli(build_parser(), argv)
