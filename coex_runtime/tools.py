"""``COEX_TOOLS=1 ./app.coex <tool> [args]``: look inside an archive and manage the cache.

* ``info``: the record (COEX-INFO) and the cache state for this archive, as JSON on stdout;
  it creates nothing (a never-run archive reports ``"exists": false`` for a cache not made yet).
* ``verify``: check everything that runs against the record: the sh preamble, the runtime
  modules and the bootstrap (``runtime.files``), every stored package and PyPI wheel (sha256,
  size), the libzstd and the app layer (the record itself against the archive id in the preamble); exit 0
  and "OK" when all match, else exit 1 naming the damaged part.
* ``extract DIR``: install the archive's environment into ``DIR`` (absent, its parents made as
  ``mkdir -p`` does, or empty) with every prefix placeholder replaced for ``DIR``, like
  ``conda-pack``'s unpack or ``pixi-unpack``: the packages are verified and extracted into the
  shared ``pkgs/`` cache, linked into a staging dir beside ``DIR``, renamed to ``DIR`` and
  finalized (pyc, link scripts, conda-meta); then the app layer (``DIR/coex/app``) and what runs
  it without the archive: ``DIR/coex/run`` (an entry point, as ``./app.coex``),
  ``DIR/coex/bin/<entry point>``, ``DIR/activate.sh`` (``launch.write_extracted``). On failure
  nothing is left at ``DIR``.
* ``gc [--older-than DURATION]`` (default ``14d``; ``s``/``m``/``h``/``d``/``w``): under the
  cache's exclusive ``gc.lock`` (installs hold it shared, so gc waits for them), remove launchers
  whose last use (``launch/<id>.used``, touched by every run) is older than DURATION, launchers
  first; then environments and app layers no remaining launcher uses (and not themselves newer
  than DURATION), packages in ``pkgs/`` no remaining environment lists (and older than
  DURATION), old libzstd copies, and what killed runs left (``Cache.sweep``: work
  directories, trash, environments without their readiness marker). Environments and app
  layers that running processes use are kept however old their last start is, from the moment
  a run starts (its sh preamble, its activation, the program and its children: see inuse.py).

Exit statuses: 0 ok, 1 failure (message on stderr), 2 usage error.
"""

import json
import os
import sys
import time

from coex_runtime import cache as C
from coex_runtime import inuse, preamble
from coex_runtime.archive import damaged
from coex_runtime.atomic import Lock, discard
from coex_runtime.errors import CacheError, FormatError, UsageError
from coex_runtime.fs import makedirs
from coex_runtime.runtime import Runtime, check_host, read_app_layer
from coex_runtime.variables import Variables

USAGE = """usage: COEX_TOOLS=1 %s <tool> [args]
tools:
  info                         the archive's record and cache state (JSON)
  verify                       check every payload of the archive against its record
  extract DIR                  install the environment into DIR (prefixes replaced for DIR)
  gc [--older-than DURATION]   remove cache entries unused for DURATION (default 14d)
"""


def run(archive, args, environ):  # type: (Archive, List[str], Mapping[str, str]) -> int
    name = os.path.basename(Variables(environ).argv0 or archive.path)
    if not args or args[0] in ("-h", "--help", "help"):
        sys.stdout.write(USAGE % name)
        return 0 if args else 2
    tool, rest = args[0], args[1:]
    fn = {"info": info, "verify": verify, "extract": extract, "gc": gc}.get(tool)
    if fn is None:
        sys.stderr.write("coex: unknown tool %r\n" % tool + USAGE % name)
        return 2
    try:
        return fn(archive, rest, environ)
    except UsageError as e:
        sys.stderr.write("coex %s: %s\n" % (tool, e) + USAGE % name)
        return 2


def _iso(t):
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t)) if t else None


def info(archive, args, environ):  # type: (Archive, List[str], Mapping[str, str]) -> int
    if args:
        raise UsageError("takes no arguments")
    rec = archive.info
    out = {"archive": archive.path, "archive_id": archive.id, "record": rec,
           "wheels": ["%s %s (%s)" % (w["name"], w["version"], w["filename"]) for w in rec.get("wheels", [])]}
    try:
        root, note, exists = C.existing_root(environ)  # creates nothing
        rt = Runtime(archive, C.Cache(root))
        cached = len(rec["packages"]) - len(rt.missing_packages())
        out["cache"] = {
            "root": root, "fallback": note, "exists": exists,
            "env_dir": rt.prefix, "env_ready": rt.cache.env_ready(rt.env16),
            "app_dir": rt.app_dir, "app_ready": bool(rt.app_dir and os.path.isdir(rt.app_dir)),
            "launcher": rt.launcher, "launcher_ready": rt.ready(),
            "last_use": _iso(C.mtime(rt.cache.used_file(rt.id16), None)),
            "packages_cached": cached, "packages_total": len(rec["packages"]),
        }
    except CacheError as e:
        out["cache"] = {"error": str(e)}
    sys.stdout.write(json.dumps(out, indent=1, sort_keys=True) + "\n")
    return 0


def verify_all(archive):  # type: (Archive) -> str
    """Raise FormatError on the first damaged part; return a summary. Every byte that runs is
    checked: the sh preamble (its digest; the record's id was checked when it was opened), the
    runtime modules and the bootstrap, the packages, the libzstd, the app layer."""
    rec = archive.info
    runtime = rec.get("runtime") or {}
    if not archive.is_dir and preamble.digest(archive.head) != runtime.get("preamble"):
        raise damaged(archive.path, "its sh preamble", "it does not match the record")
    files = runtime.get("files") or {}
    if not files:
        raise damaged(archive.path, "its record", "it lists no runtime files")
    for name, digest in sorted(files.items()):
        archive.verify(name, digest)
    for p in rec["packages"]:
        archive.verify_package(p)
    wheels = rec.get("wheels", [])
    for w in wheels:
        archive.verify(w["member"], w["sha256"], int(w["size"]))
    if rec.get("libzstd"):
        z = rec["libzstd"]
        archive.verify(z["member"], z["sha256"], int(z["size"]))
    n = read_app_layer(archive)
    return "%d packages, %s%s, %s, runtime (%d files), %s" % (
        len(rec["packages"]), "%d wheels, " % len(wheels) if wheels else "", "app layer (%d files)" % n if n else "no app layer",
        "libzstd" if rec.get("libzstd") else "no libzstd", len(files),
        "sh preamble" if not archive.is_dir else "no sh preamble (a directory)")


def verify(archive, args, environ):  # type: (Archive, List[str], Mapping[str, str]) -> int
    if args:
        raise UsageError("takes no arguments")
    try:
        summary = verify_all(archive)
    except FormatError as e:
        sys.stderr.write("coex verify: FAILED: %s\n" % e)
        return 1
    sys.stdout.write("coex verify: OK: %s match the record of %s\n" % (summary, archive.path))
    return 0


def extract(archive, args, environ):  # type: (Archive, List[str], Mapping[str, str]) -> int
    if len(args) != 1 or args[0].startswith("-"):
        raise UsageError("needs exactly one argument, the target directory")
    dest = os.path.abspath(args[0])
    if os.path.lexists(dest) and not (os.path.isdir(dest) and not os.path.islink(dest)
                                      and not os.listdir(dest)):
        sys.stderr.write("coex extract: %s already exists and is not an empty directory; choose a new "
                         "path or empty it first\n" % dest)
        return 1
    if C.unsafe_prefix(dest):
        sys.stderr.write("coex extract: %s; choose a path without them\n" % C.unsafe_prefix(dest))
        return 1
    check_host(archive.info, environ)
    rt = Runtime(archive, C.Cache(C.select_root(environ)[0]))
    try:
        makedirs(os.path.dirname(dest), 0o777)  # as mkdir -p (conda create -p, venv) do
    except OSError as e:
        sys.stderr.write("coex extract: cannot create %s: %s\n" % (os.path.dirname(dest), e.strerror or e))
        return 1
    rt.install_into(dest)
    n_wheels = len(archive.info.get("wheels", []))
    sys.stdout.write("coex extract: installed %d packages%s%s into %s: run it with %s/coex/run "
                     "(or %s/coex/bin/<entry point>), or activate it with . %s/activate.sh\n"
                     % (len(archive.info["packages"]), ", %d PyPI wheels" % n_wheels if n_wheels else "",
                        " and the app layer" if rt.app16 else "",
                        dest, dest, dest, dest))
    return 0


def _parse_gc_args(args):
    """(seconds, the text given)."""
    older = "14d"
    i = 0
    while i < len(args):
        a = args[i]
        if a == "--older-than" and i + 1 < len(args):
            older = args[i + 1]
            i += 2
        elif a.startswith("--older-than="):
            older = a.split("=", 1)[1]
            i += 1
        elif a == "--older-than":
            raise UsageError("--older-than needs a duration, e.g. --older-than 14d")
        else:
            raise UsageError("unknown argument %r" % a)
    return parse_duration(older), older


def parse_duration(text):  # type: (str) -> float
    """``14d``, ``12h``, ``30m``, ``45s``, ``2w`` or plain seconds -> seconds (float)."""
    t = (text or "").strip().lower()
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
    try:
        seconds = float(t[:-1]) * units[t[-1]] if t and t[-1] in units else float(t)
    except ValueError:
        seconds = None
    if seconds is None or not seconds >= 0:  # (nan is not)
        raise UsageError("cannot read the duration %r; use e.g. 14d, 12h, 30m, 45s, 2w (zero or "
                         "more)" % text)
    return seconds


def _size(path):
    total = 0
    for root, dirs, files in os.walk(path):
        for f in files:
            try:
                total += os.lstat(os.path.join(root, f)).st_size
            except OSError:
                pass
    return total


def gc(archive, args, environ):  # type: (Archive, List[str], Mapping[str, str]) -> int
    older, older_text = _parse_gc_args(args)
    root, _ = C.select_root(environ)
    cache = C.Cache(root)
    cache.ensure()
    cutoff = time.time() - older
    removed = {"launchers": 0, "environments": 0, "app layers": 0, "packages": 0}
    freed = [0]

    def drop(path, kind=None):
        if os.path.isdir(path) and not os.path.islink(path):
            freed[0] += _size(path)
        discard(path, cache.tmp)
        if kind:
            removed[kind] += 1

    with Lock(cache.gc_lock):
        cache.sweep(drop)  # what killed runs left
        launchers, kept = {}, 0
        for n in sorted(os.listdir(cache.launch)):
            if n.endswith(".json"):
                try:
                    with open(os.path.join(cache.launch, n)) as f:
                        launchers[n[:-5]] = json.load(f)
                except (IOError, OSError, ValueError):
                    pass
        live_envs, live_apps = set(), set()
        for n in sorted(os.listdir(cache.launch)):
            if not n.endswith(".sh"):
                continue
            id16 = n[:-3]
            sh = os.path.join(cache.launch, n)
            if max(C.mtime(cache.used_file(id16)), C.mtime(sh)) < cutoff:
                os.unlink(sh)  # the launcher first: from now on runs take the cold path
                for extra in (cache.used_file(id16), os.path.join(cache.launch, id16 + ".json")):
                    if os.path.lexists(extra):
                        os.unlink(extra)
                removed["launchers"] += 1
            else:
                kept += 1
                live_envs.add((launchers.get(id16) or {}).get("env"))
                live_apps.add((launchers.get(id16) or {}).get("app"))
        # only now (no run can start from a removed launcher): what running processes use
        running_envs, running_apps = inuse.scan(cache, launchers)
        live_envs.update(running_envs)
        live_apps.update(running_apps)
        for n in sorted(os.listdir(cache.launch)):  # orphans of removed launchers
            p = os.path.join(cache.launch, n)
            if n.endswith(".sh") or os.path.exists(os.path.join(cache.launch, n.rsplit(".", 1)[0] + ".sh")):
                continue
            if n.endswith(".lock"):  # a first run's lock (preamble.py): only when nobody holds it
                lock = Lock(p, wait=False)
                if lock.acquire():
                    os.unlink(p)
                    lock.release()
            else:
                os.unlink(p)

        referenced = set()
        for n in sorted(os.listdir(cache.envs)):
            p = os.path.join(cache.envs, n)
            if n.endswith(".lock") or not os.path.isdir(p):
                continue
            marker = os.path.join(p, C.READY)
            if os.path.isfile(marker) and (n in live_envs or C.mtime(marker) >= cutoff):
                referenced.update((cache.read_ready(n) or {}).get("packages", []))
            else:
                drop(p, "environments")
        for n in sorted(os.listdir(cache.apps)):
            p = os.path.join(cache.apps, n)
            if not (n.endswith(".lock") or not os.path.isdir(p) or n in live_apps or C.mtime(p) >= cutoff):
                drop(p, "app layers")
        for d in (cache.envs, cache.apps):  # lock files of removed dirs (no installer runs now)
            for n in os.listdir(d):
                if n.endswith(".lock") and not os.path.isdir(os.path.join(d, n[:-5])):
                    os.unlink(os.path.join(d, n))
        for n in sorted(os.listdir(cache.pkgs)):
            p = os.path.join(cache.pkgs, n)
            if n not in referenced and C.mtime(p) < cutoff:
                drop(p, "packages")
        for n in sorted(os.listdir(cache.lib)):
            p = os.path.join(cache.lib, n)
            if C.mtime(p) < cutoff:
                drop(p)
        for n in sorted(os.listdir(cache.code)) if os.path.isdir(cache.code) else ():
            p = os.path.join(cache.code, n)  # the runtime's bytecode: every first run touches its own
            if C.mtime(p) < cutoff:
                drop(p)
        cache.sweep(drop)  # the trash of what was dropped
    busy = len(running_envs & set(os.listdir(cache.envs)))
    sys.stdout.write("coex gc: %s; %.1f MB freed; %d launcher%s kept (used within %s)%s\n" % (
        ", ".join("removed %d %s" % (v, k) for k, v in sorted(removed.items())), freed[0] / 1e6,
        kept, "" if kept == 1 else "s", older_text,
        "; %d environment%s kept for running programs" % (busy, "" if busy == 1 else "s") if busy else ""))
    return 0
