"""What running processes use in a cache, read from ``/proc`` (for ``gc``, which must never remove
an environment or app layer a process has started to use, at any step of its start).

A process of this user uses an archive's environment and app layer when, read in this order:

1. its command line names that archive, or that archive's launcher: the sh running the
   preamble (``sh ./app.coex``, or the kernel's ``/bin/sh /path/app.coex`` for ``./app.coex``;
   a file whose first bytes are a coex preamble, read for its archive id), the cold path's Python
   (``python3 ... -c ... /path/app.coex``), or the sh it execs (``sh -c ... <launch/<id16>.sh>``);
   only when the cache root that process would use is this one (its own ``COEX_ROOT`` /
   ``XDG_CACHE_HOME`` / ``HOME``, or this is a fallback root);
2. it holds an archive's launcher open (dash while sourcing it, activate.d scripts included);
3. its environment holds ``COEX_PREFIX`` / ``COEX_APP`` under this cache: the launcher exported
   them to the program it execs, and children inherit them.

A start moves from 1-2 to 3 at its ``exec`` (the command line changes and the environment is
the new one at the same instant), so reading each process in that order sees it in one of them.
``gc`` removes old launchers *before* it looks: a run that had not opened its launcher then finds
none and takes the cold path, which waits for gc's lock. Where there is no ``/proc``, nothing is
found (gc then keeps only what its age says).
"""

import os

from coex_runtime import cache as C
from coex_runtime.preamble import ID_FIELD

ARCHIVE_MAGIC = b"#!/bin/sh\n# This is a coex archive"


def archive_id16(path):  # type: (str) -> Optional[str]
    """The archive id a coex archive at ``path`` carries in its preamble (a regular file only:
    nothing else is opened), else None."""
    try:
        if not os.path.isfile(path):
            return None
        with open(path, "rb") as f:
            head = f.read(4096)
    except (IOError, OSError):
        return None
    at = head.find(ID_FIELD)
    if not head.startswith(ARCHIVE_MAGIC) or at < 0:
        return None
    return head[at + len(ID_FIELD):at + len(ID_FIELD) + 16].decode("ascii", "replace")


def _read(path):
    try:
        with open(path, "rb") as f:
            return f.read()
    except (IOError, OSError):
        return None


def _fds(pid):
    out = []
    try:
        names = os.listdir("/proc/%s/fd" % pid)
    except OSError:
        return out
    for n in names:
        try:
            out.append(os.readlink("/proc/%s/fd/%s" % (pid, n)))
        except OSError:
            pass
    return out


def _uses_root(cache, environ, cwd):
    """Whether a process with ``environ`` (working directory ``cwd``) would use ``cache``."""
    want = C.configured_root(environ)
    if want is not None and os.path.normpath(os.path.join(cwd or "/", want)) == cache.root:
        return True
    return cache.root in C.fallback_roots(environ)


def scan(cache, launchers):  # type: (C.Cache, Dict[str, dict]) -> Tuple[Set[str], Set[str]]
    """(env16s, app16s) of ``cache`` that running processes use; ``launchers`` maps archive ids
    (16 hex digits) to their launcher's record (``launch/<id16>.json``: env, app), read before
    gc removed any."""
    envs, apps = set(), set()
    try:
        pids = [n for n in os.listdir("/proc") if n.isdigit() and int(n) != os.getpid()]
    except OSError:
        return envs, apps
    launch = set((cache.launch, os.path.realpath(cache.launch)))
    where = {}
    for d, out in ((cache.envs, envs), (cache.apps, apps)):
        for p in set((d, os.path.realpath(d))):
            where[p] = out
    uid = os.getuid()
    for pid in pids:
        try:
            if os.stat("/proc/" + pid).st_uid != uid:
                continue
            cwd = os.readlink("/proc/%s/cwd" % pid)
        except OSError:
            continue
        cmdline = _read("/proc/%s/cmdline" % pid)  # 1., then 2., then 3.
        fds = _fds(pid)
        data = _read("/proc/%s/environ" % pid)
        if cmdline is None or data is None:
            continue
        environ = {}
        for item in data.split(b"\0"):
            k, sep, v = item.partition(b"=")
            if sep:
                environ[os.fsdecode(k)] = os.fsdecode(v)
        ids = set()
        args = [os.path.join(cwd, os.fsdecode(a)) for a in cmdline.split(b"\0") if a]
        for path in args + [f[:-len(" (deleted)")] if f.endswith(" (deleted)") else f for f in fds]:
            if os.path.dirname(path) in launch and path.endswith(".sh"):
                ids.add(os.path.basename(path)[:-3])
        for path in args:
            id16 = archive_id16(path)
            if id16 and _uses_root(cache, environ, cwd):
                ids.add(id16)
        for id16 in ids:
            meta = launchers.get(id16) or {}
            envs.add(meta.get("env"))
            apps.add(meta.get("app"))
        for key in ("COEX_PREFIX", "COEX_APP"):
            value = environ.get(key)
            if value:
                parent, name = os.path.split(value.rstrip("/"))
                out = where.get(parent)
                if out is None:
                    out = where.get(os.path.realpath(parent))
                if out is not None:
                    out.add(name)
    envs.discard(None)
    apps.discard(None)
    return envs, apps
