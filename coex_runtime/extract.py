"""Phase 1 of an install: the package cache. Each package is extracted once into
``pkgs_dir/<stored sha256>/`` (content addressed, shared by every archive on the host), complete
and verified or not at all (streams.extract_stream into an atomic.AtomicDirectory); the missing
ones in parallel, biggest first (workers.pool_map)."""

import os
import threading

from coex_runtime import workers
from coex_runtime.atomic import AtomicDirectory
from coex_runtime.errors import InstallError
from coex_runtime.format import Package
from coex_runtime.fs import umask
from coex_runtime.pkgmeta import cached_package_intact
from coex_runtime.variables import fault


def extract_to_cache(entry, open_payload, pkgs_dir, libzstd=None):
    # type: (dict, Callable[[dict], IO[bytes]], str, Optional[str]) -> str
    """pkgs_dir/<stored sha256>/ for ``entry``, extracting it first unless present and intact
    (a damaged one is extracted again); concurrent extractors of the same package are safe
    (the first one wins, see atomic.AtomicDirectory)."""
    key = Package(entry).stored_sha256
    final = os.path.join(pkgs_dir, key)

    def populate(work):
        from coex_runtime.streams import extract_stream  # (decoders: only when extracting)
        fault("extract")
        payload = open_payload(entry)
        try:
            extract_stream(entry, payload, work, libzstd=libzstd, on_bytes=workers.progress)
        finally:
            payload.close()
    # 0o777 minus the umask, like every directory in the package (not mkdtemp's 0o700)
    AtomicDirectory(final, work_prefix=".tmp-%s-" % key[:12], mode=0o777,
                    ready=lambda d: os.path.isdir(d) and cached_package_intact(d)).ensure(populate)
    return final


def extract_all(entries, open_payload, pkgs_dir, libzstd=None, progress=None, jobs=None, seen=None):
    # type: (...) -> List[str]
    """pkgs_dir/<stored sha256>/ for each entry, extracting the missing ones on ``jobs``
    workers (forked processes when possible, see workers.can_fork, else threads);
    ``progress("extract", done, total, name)`` as each is there, and
    ``progress("extract-bytes", done, total, "")`` as stored bytes are read (every MiB or so).
    ``libzstd``: a path, or a function giving it, called only when a package is to be
    extracted. ``seen``: see pkgmeta.cached_package_intact (for the packages found in the
    cache)."""
    total, done, lock = len(entries), [0], threading.Lock()
    umask(refresh=True)  # before any worker thread creates files (see fs.umask)

    def report(entry):
        if progress is not None:
            with lock:
                done[0] += 1
                n = done[0]
            progress("extract", n, total, Package(entry).label)

    def one(i):
        try:
            return extract_to_cache(entries[i], open_payload, pkgs_dir, libzstd=libzstd)
        except EnvironmentError as e:
            raise InstallError("%s: cannot extract into %s: %s" % (Package(entries[i]).label, pkgs_dir, e)) from e

    out, todo = [None] * total, []
    for i, e in enumerate(entries):
        d = os.path.join(pkgs_dir, Package(e).stored_sha256)
        if os.path.isdir(d) and cached_package_intact(d, seen):
            out[i] = d
            report(e)
        else:
            todo.append(i)
    if todo:
        from coex_runtime import streams  # noqa: F401 (imported once, before workers fork)
        if callable(libzstd):
            libzstd = libzstd()
    # biggest first: the longest job should not start last
    todo.sort(key=lambda i: -(Package(entries[i]).stored_size or 0))
    read, to_read = [0], sum(Package(entries[i]).stored_size or 0 for i in todo)

    def on_bytes(k, n):
        with lock:
            read[0] += n
            r = read[0]
        progress("extract-bytes", r, to_read, "")
    dirs = workers.pool_map(one, todo, workers.count_jobs(jobs, len(todo)),
                            on_done=lambda k, d: report(entries[todo[k]]),
                            name=lambda i: "%s (extracting into %s)" % (Package(entries[i]).label, pkgs_dir),
                            on_progress=on_bytes if progress is not None else None)
    for i, d in zip(todo, dirs):
        out[i] = d
    return out
