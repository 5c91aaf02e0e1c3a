"""The coex cache: one directory per user, shared by every archive on the host.

Layout under the root ``${COEX_ROOT:-${XDG_CACHE_HOME:-$HOME/.cache}/coex}``::

    pkgs/<sha256>/              extracted packages, content addressed (the installer's pkgs_dir)
    pkgs/<sha256>/.coex-pyc/<python16>/   the .pyc of a noarch: python package compiled by one
                                python package, for the next environment (see noarch.PYC_CACHE)
    envs/<env16>/               installed environments (env16 = ``env_dir_name``: the env id and
                                the installer's layout version)
    envs/<env16>/.coex-ready    readiness marker (JSON: env id, package sha256s), written last
    envs/<env16>.lock           flock held while that environment is installed
    apps/<app16>/               app layers, one per app digest (complete when the dir exists)
    apps/<app16>.lock
    lib/<sha256>/libzstd.so.1   the archive's libzstd, sha-checked, when a zstd decoder is needed
    launch/<id16>.sh            per-archive launcher sourced by the sh preamble (written last)
    launch/<id16>.json          what the launcher uses (env, app), for ``gc``
    launch/<id16>.used          touched by every run (warm ones too): its mtime is the last use
    launch/<id16>.lock          flock held by the first run installing the archive (its sh
                                preamble takes it, its Python releases it): other first runs wait
                                on it in their preamble (see preamble.py)
    code/<key>-<tag>            the runtime's bytecode compiled by one host Python (written and
                                read by the bootstrap, see preamble.py; key: the runtime files'
                                digests, the Python's magic number and optimization level); its
                                mtime is its last use
    tmp/                        work dirs (``<kind>-<key>-*``) and trash
    gc.lock                     installs hold it shared, ``gc`` exclusive; an install that finds
                                it free first removes what killed runs left (``Cache.sweep``)

Root selection (``select_root``): the configured root (``configured_root``: no root at all when
HOME is unset or relative and COEX_ROOT unset; a relative XDG_CACHE_HOME is ignored) if it can be
created, written (a real file is created and removed) and is not on a ``noexec`` mount (``statvfs``
``ST_NOEXEC``); otherwise the first usable of ``${TMPDIR:-/tmp}/coex-<uid>`` (TMPDIR only when
absolute), ``/var/tmp/coex-<uid>``, ``/dev/shm/coex-<uid>``. A fallback root must be a directory
owned by the user and not writable by others (mode 0700), or it is skipped. Using a fallback is
reported once per process on stderr; the sh preamble looks for launchers in the same fallback
place, so warm runs stay Python-free.

Atomicity: every directory is an ``atomic.AtomicDirectory``, built in a work dir under ``tmp/``
(packages: ``pkgs/.tmp-*``) and renamed into place; an environment is ready only once its marker
exists (written with write-temp + fsync + rename after ``finalize``). A run killed at any instant
leaves either nothing visible, a work dir, or an ``envs/<id>/`` without marker; the next install
of that environment (holding its lock) removes such debris, and so does any install or ``gc``
that finds no other install running (``Cache.installing``, ``Cache.sweep``).
"""

import contextlib
import errno
import hashlib
import json
import os
import stat
import sys

from coex_runtime.atomic import Lock, make_temp
from coex_runtime.errors import CacheError
from coex_runtime.fs import makedirs, rmtree
from coex_runtime.variables import Variables


# Bump when the installer lays out the same packages differently (a fix in prefix replacement,
# noarch python, conda-meta...): environments installed by an older runtime are then not reused by
# archives of a newer one (they age out through ``gc``).
INSTALL_LAYOUT = 1


def env_dir_name(env_id):  # type: (str) -> str
    """The directory name of an environment under ``envs/``: 16 hex digits (shebangs stay short)
    of the archive's env id (its locked packages) and INSTALL_LAYOUT."""
    return hashlib.sha256(("%s install-layout/%d" % (env_id, INSTALL_LAYOUT)).encode("ascii")).hexdigest()[:16]


READY = ".coex-ready"


def configured_root(environ=None):  # type: (Optional[Mapping[str, str]]) -> Optional[str]
    """The root the user configured: ``$COEX_ROOT``, else ``$XDG_CACHE_HOME/coex``, else
    ``$HOME/.cache/coex``; None when there is none (no COEX_ROOT and no usable HOME). A relative
    ``XDG_CACHE_HOME`` is ignored, as the XDG spec says; a relative or unset ``HOME`` gives no
    root (never a cache per working directory, nor a made-up ``/nonexistent`` created as root).
    A relative ``COEX_ROOT`` is taken as given (relative to the working directory). The sh
    preamble computes the same (see format.PREAMBLE_TEMPLATE)."""
    v = Variables(environ)
    if v.root:
        return v.root
    if v.xdg_cache_home:
        return os.path.join(v.xdg_cache_home, "coex")
    if v.home:
        return os.path.join(v.home, ".cache", "coex")
    return None


def fallback_roots(environ=None):  # type: (Optional[Mapping[str, str]]) -> List[str]
    uid = os.getuid()
    out = []
    for base in (Variables(environ).tmpdir or "/tmp", "/var/tmp", "/dev/shm"):
        p = os.path.join(base, "coex-%d" % uid)
        if p not in out:
            out.append(p)
    return out


def _noexec(path):
    try:
        return bool(os.statvfs(path).f_flag & getattr(os, "ST_NOEXEC", 8))
    except OSError:
        return False


# Characters a prefix cannot hold: packages' scripts get the prefix by text replacement, inside
# double quotes (activate.d: export X="<prefix>/share"): these would expand or end the quoting.
UNSAFE_PREFIX_CHARS = '"$`\\\n'


def unsafe_prefix(path):  # type: (str) -> Optional[str]
    """Why ``path`` cannot hold prefixes (see UNSAFE_PREFIX_CHARS), or None."""
    bad = sorted(set(UNSAFE_PREFIX_CHARS) & set(path))
    if bad:
        return ("%s contains %s, which packages' shell scripts cannot take in a prefix"
                % (path, " ".join(repr(c) for c in bad)))
    return None


def check_root(path, private=False):  # type: (str, bool) -> Optional[str]
    """None when ``path`` is usable as a cache root (created if needed), else why not."""
    if unsafe_prefix(path):
        return unsafe_prefix(path)
    try:
        if private:
            try:
                os.mkdir(path, 0o700)
            except OSError as e:
                if e.errno != errno.EEXIST:
                    raise
            st = os.lstat(path)
            if not stat.S_ISDIR(st.st_mode) or st.st_uid != os.getuid() or st.st_mode & 0o022:
                return "%s is not a private directory owned by uid %d" % (path, os.getuid())
        else:
            if os.path.lexists(path) and not os.path.isdir(path):
                return "%s is not a directory" % path
            makedirs(path)
        fd, probe = make_temp(path, ".coex-probe-")
        try:
            os.write(fd, b"x")
        finally:
            os.close(fd)
            os.unlink(probe)
    except OSError as e:
        return "%s is not writable (%s)" % (path, e.strerror or e)
    if _noexec(path):
        return "%s is on a noexec file system" % path
    # a root shared with another user who made its parts unwritable to us (umask 077)
    for name in ("gc.lock", "pkgs", "envs", "apps", "lib", "launch", "tmp"):
        p = os.path.join(path, name)
        if os.path.lexists(p) and not os.access(p, os.W_OK | (os.X_OK if os.path.isdir(p) else 0)):
            return "%s is not writable by uid %d (%s belongs to uid %d)" % (
                path, os.getuid(), name, os.lstat(p).st_uid)
    return None


_NOTED = []


def select_root(environ=None, stderr=None):
    # type: (Optional[Mapping[str, str]], Optional[IO[str]]) -> Tuple[str, Optional[str]]
    """(root, note): the root to use and, when it is a fallback, why (already printed)."""
    want = configured_root(environ)
    if want is None:
        why = "location unknown (HOME is not set or not an absolute path, nor is COEX_ROOT)"
    else:
        want = os.path.abspath(want)
        why = check_root(want)
        if why is None:
            return want, None
    reasons = [why]
    for cand in fallback_roots(environ):
        w = check_root(cand, private=True)
        if w is None:
            note = ("coex: cache %s; using %s instead (set COEX_ROOT to a writable directory on a "
                    "file system that allows executing programs to choose)" % (why, cand))
            if not _NOTED:
                _NOTED.append(note)
                (stderr or sys.stderr).write(note + "\n")
            return cand, note
        reasons.append(w)
    raise CacheError("no usable cache directory: %s. Set COEX_ROOT to a writable directory "
                     "on a file system that allows executing programs." % "; ".join(reasons))


def existing_root(environ=None):  # type: (Optional[Mapping[str, str]]) -> Tuple[str, Optional[str], bool]
    """(root, note, exists) of the cache a run would use, creating nothing (for ``info``): the
    configured root when it exists and is usable, else an existing usable fallback root, else
    the root a first run would try (``exists`` False)."""
    want = configured_root(environ)
    want = os.path.abspath(want) if want else None
    if want and os.path.isdir(want):
        why = check_root(want)
        if why is None:
            return want, None, True
    else:
        why = "%s does not exist" % want if want else "location unknown (HOME is not set)"
    for cand in fallback_roots(environ):
        if os.path.isdir(cand) and check_root(cand, private=True) is None:
            return cand, "coex: cache %s; using %s instead" % (why, cand), True
    return want or fallback_roots(environ)[0], None, False


class Cache(object):
    def __init__(self, root):
        self.root = root
        self.pkgs = os.path.join(root, "pkgs")
        self.envs = os.path.join(root, "envs")
        self.apps = os.path.join(root, "apps")
        self.lib = os.path.join(root, "lib")
        self.launch = os.path.join(root, "launch")
        self.tmp = os.path.join(root, "tmp")
        self.code = os.path.join(root, "code")
        self.gc_lock = os.path.join(root, "gc.lock")

    def ensure(self):  # type: () -> None
        for d in (self.pkgs, self.envs, self.apps, self.lib, self.launch, self.tmp):
            makedirs(d)

    @contextlib.contextmanager
    def installing(self):  # type: () -> Iterator[None]
        """Hold ``gc.lock`` shared while installing (``gc`` waits). When nobody else holds it (no
        other install, no gc), first remove what killed runs left (``sweep``)."""
        self.ensure()
        lock = Lock(self.gc_lock, wait=False)
        if lock.acquire():
            try:
                self.sweep()
                lock.share()
            except BaseException:
                lock.release()
                raise
        else:
            lock = Lock(self.gc_lock, shared=True)
            lock.acquire()
        try:
            yield
        finally:
            lock.release()

    def sweep(self, remove=rmtree):  # type: (Callable[[str], object]) -> None
        """Remove the debris of killed runs: work directories and trash (``tmp/*``,
        ``pkgs/.tmp-*``), temp files of launchers (``launch/.tmp-*``) and of the runtime's code
        (``code/*.tmp-*``, which the bootstrap writes without the lock: it then only loses that
        write) and environments without
        their readiness marker. Only call it holding ``gc.lock`` exclusively: every process that
        makes such things holds it shared while it does (its forked workers too), so none of
        them is anyone's work in progress."""
        for d, debris in ((self.tmp, lambda n: True), (self.pkgs, lambda n: n.startswith(".tmp-")),
                          (self.launch, lambda n: n.startswith(".tmp-")),
                          (self.code, lambda n: ".tmp-" in n),
                          (self.envs, lambda n: not n.endswith(".lock") and not self.env_ready(n))):
            try:
                names = sorted(os.listdir(d))
            except OSError:
                continue
            for n in names:
                if debris(n):
                    remove(os.path.join(d, n))

    # paths ------------------------------------------------------------------------------------
    def env_dir(self, env16):  # type: (str) -> str
        return os.path.join(self.envs, env16)

    def app_dir(self, app16):  # type: (str) -> str
        return os.path.join(self.apps, app16)

    def launcher(self, id16):  # type: (str) -> str
        return os.path.join(self.launch, id16 + ".sh")

    def used_file(self, id16):  # type: (str) -> str
        return os.path.join(self.launch, id16 + ".used")

    def env_ready(self, env16):  # type: (str) -> bool
        return os.path.isfile(os.path.join(self.env_dir(env16), READY))

    def read_ready(self, env16):  # type: (str) -> Optional[dict]
        try:
            with open(os.path.join(self.env_dir(env16), READY)) as f:
                return json.load(f)
        except (IOError, OSError, ValueError):
            return None


def mtime(path, default=0.0):  # type: (str, Optional[float]) -> Optional[float]
    try:
        return os.stat(path).st_mtime
    except OSError:
        return default
