"""One archive against one cache: what it needs there, and how it gets installed.

``Runtime(archive, cache)`` owns everything an archive puts into the cache (see cache.py for
the layout); the cold path (``main``) and every tool (``tools``) go through it:

* ``ready()``: the archive's launcher, environment and app layer are all there (what the warm
  path needs); ``missing_packages()``: the packages not yet extracted into ``pkgs/``.
* ``install()``: under the shared ``gc.lock`` (``cache.Cache.installing``), ``ensure_app()`` (small and fully checked, so
  first), ``ensure_env()``, then the launcher, written last.
* ``ensure_app()``: the app layer as ``apps/<app16>``, every file checked against the record's
  digest (``read_app_layer``, which ``verify`` uses too).
* ``ensure_env()``: the environment as ``envs/<env16>``, ready once its marker is written.
* ``install_into(dest)``: the same environment at a directory of the user's (``extract DIR``),
  with the app layer and scripts that run it there (``launch.write_extracted``).

Each of them decides first (is it there?) and only then acts, through one
``atomic.AtomicDirectory`` (double-checked lock, work dir, rename, cleanup on failure).
Installing an environment = ``install.install_env`` (verify and extract missing packages into
``pkgs/``, link into the work dir with prefixes made for the final path, then install the PyPI
wheels, each checked against the record, see wheel.py), rename,
``install.finalize_env`` (link scripts, .pyc, conda-meta). When extraction fails, the stored
packages are checked against the record, so a damaged archive is reported as such.
"""

import os
import sys
import time

from coex_runtime import cache as C
from coex_runtime import format as F
from coex_runtime import launch as L
from coex_runtime import vpkgs
from coex_runtime.archive import damaged
from coex_runtime.atomic import AtomicDirectory, write_atomic
from coex_runtime.errors import CoexFailure, FormatError
from coex_runtime.fs import copy_hashed, makedirs, safe_relpath
from coex_runtime.variables import fault


def check_host(info, environ):  # type: (dict, Mapping[str, str]) -> None
    """Stop (CoexFailure) unless this host is the archive's platform and meets its virtual
    package needs (``CONDA_OVERRIDE_*`` honoured)."""
    plat = info.get("platform")
    host = vpkgs.host_subdir()
    if plat and plat != "noarch" and plat != host:
        raise CoexFailure("this archive was built for %s, but this host is %s: build it for %s "
                          "(e.g. the coex_binary's platform)" % (plat, host, host))
    needs = info.get("virtual_packages") or []
    if not needs:
        return
    names = []
    for text in needs:
        try:
            names.append(vpkgs.parse_spec(text)[0])
        except Exception:  # (check says so)
            pass
    problems = vpkgs.check(needs, vpkgs.detect(environ, only=names))
    if problems:
        raise CoexFailure("this host cannot run this archive's environment: %s" % "; ".join(problems))


def read_app_layer(archive, dest=None):  # type: (F.Archive, Optional[str]) -> int
    """Read every app-layer file (written under ``dest`` when given, modes kept, setuid dropped)
    and check the layer against the record's digest; the number of files. A path escaping the
    layer, a damaged member or a mismatch raise FormatError."""
    files = []
    for rel, member in archive.app_members():
        if safe_relpath(rel, strict=True) is None:
            raise FormatError("%s: the app layer member %r escapes the layer (absolute path or "
                              "'..'); refusing to install this archive" % (archive.path, member))
        mode = 0o755 if archive.mode(member) & 0o111 else 0o644
        with archive.open(member) as src:  # (a damaged member raises FormatError)
            if dest is None:
                digest = copy_hashed(src)[0]
            else:
                out = os.path.join(dest, *rel.split("/"))
                makedirs(os.path.dirname(out))
                with open(out, "wb") as dst:
                    digest = copy_hashed(src, dst.write)[0]
                os.chmod(out, mode)
        files.append((rel, mode, digest))
    rec, digest = archive.info.get("app") or {}, F.app_digest(files)
    if (rec or files) and (digest != rec.get("digest") or len(files) != rec.get("files", len(files))):
        raise damaged(archive.path, "the app layer", "digest %s, the record says %s"
                      % (digest, rec.get("digest")))
    return len(files)


class Phases(object):
    """Times phases; prints them when COEX_VERBOSE is set."""

    def __init__(self, verbose):
        self.verbose = verbose
        self.t0 = self.last = time.time()

    def done(self, name):  # type: (str) -> None
        t = time.time()
        if self.verbose:
            sys.stderr.write("coex: %-8s %8.1f ms\n" % (name, (t - self.last) * 1000.0))
        self.last = t

    def total(self):  # type: () -> None
        if self.verbose:
            sys.stderr.write("coex: %-8s %8.1f ms\n" % ("total", (time.time() - self.t0) * 1000.0))


class Progress(object):
    """First-run progress on stderr, only when stderr is a terminal: one line, redrawn, per
    installer phase (package k of n and MB; while packages are extracted, the stored MB read so
    far, every MiB or so, so that a big package shows progress too). Called as
    progress(phase, done, total, name) from worker threads (see install.py)."""

    def __init__(self, enabled, entries=()):
        import threading
        self.enabled = enabled
        self.shown = False
        self.lock = threading.Lock()
        self.sizes = {}
        for e in entries:
            self.sizes[e.get("filename")] = F.Package(e).stored_size or 0
        self.total_bytes = sum(self.sizes.values())
        self.bytes = {}
        self.packages = None  # (phase, done, total) of the last package event
        self.drawn = 0.0

    def __call__(self, phase, done, total, name=""):
        if not self.enabled:
            return
        with self.lock:
            if phase == "extract-bytes":  # stored bytes read by the extracting workers
                msg = "coex: extracting, %.1f of %.1f MB" % (done / 1e6, total / 1e6)
                if self.packages and self.packages[0] == "extract":
                    msg += " (%d of %d packages ready)" % self.packages[1:]
                now = time.time()
                if now - self.drawn < 0.05 and done < total:
                    return
                self.drawn = now
            elif phase == "compile":
                msg = "coex: compiling the .pyc of %d files" % total
            else:
                self.packages = (phase, done, total)
                self.bytes[phase] = self.bytes.get(phase, 0) + self.sizes.get(name, 0)
                msg = "coex: %s package %d of %d" % (phase, done, total)
                if self.total_bytes:
                    msg += ", %.1f of %.1f MB" % (self.bytes[phase] / 1e6, self.total_bytes / 1e6)
                if name:
                    msg += " (%s)" % name
            sys.stderr.write("\r\033[K" + msg[:160])
            sys.stderr.flush()
            self.shown = True

    def finish(self):  # type: () -> None
        if self.shown:
            sys.stderr.write("\r\033[K")
            sys.stderr.flush()
            self.shown = False


class Runtime(object):
    """One archive against one cache. ``phases.done(name)`` is told as each phase ends;
    ``progress(phase, done, total, name)`` as packages go (and ``progress.finish()``)."""

    def __init__(self, archive, cache, phases=None, progress=None):
        # type: (F.Archive, C.Cache, object, object) -> None
        self.archive = archive
        self.info = archive.info
        self.cache = cache
        self.id16 = F.short_id(archive.id)
        self.env16 = C.env_dir_name(self.info["env_id"])
        app = self.info.get("app")
        self.app16 = F.short_id(app["digest"]) if app else None
        self.phases = phases or Phases(False)
        self.progress = progress or Progress(False)

    # what is there -----------------------------------------------------------------------------
    @property
    def prefix(self):  # type: () -> str
        return self.cache.env_dir(self.env16)

    @property
    def app_dir(self):  # type: () -> Optional[str]
        return self.cache.app_dir(self.app16) if self.app16 else None

    @property
    def launcher(self):  # type: () -> str
        return self.cache.launcher(self.id16)

    def ready(self):  # type: () -> bool
        return (os.path.isfile(self.launcher) and self.cache.env_ready(self.env16)
                and (self.app_dir is None or os.path.isdir(self.app_dir)))

    def missing_packages(self):  # type: () -> List[dict]
        return [p for p in self.info["packages"]
                if not os.path.isdir(os.path.join(self.cache.pkgs, F.Package(p).stored_sha256))]

    # installing --------------------------------------------------------------------------------
    def install(self):  # type: () -> bool
        """Everything up to a ready launcher; True when something was installed."""
        with self.cache.installing():
            did_app = self.ensure_app()  # small, and checked against its digest: first
            if did_app:
                self.phases.done("app")
            did_env = self.ensure_env()
            if did_env or did_app or not self.ready():
                self.write_launcher()
                self.phases.done("launcher")
        return did_env or did_app

    def ensure_app(self):  # type: () -> bool
        if self.app16 is None:
            return False

        def populate(work):
            read_app_layer(self.archive, work)
            os.chmod(work, 0o755)
        return AtomicDirectory(self.app_dir, self.cache.tmp, "app-%s-" % self.app16,
                               lock=self.app_dir + ".lock").ensure(populate)

    def ensure_env(self):  # type: () -> bool
        def mark_ready(prefix):
            entries = self.info["packages"]
            marker = {"env_id": self.info["env_id"], "platform": self.info["platform"],
                      "packages": sorted(set(F.Package(p).stored_sha256 for p in entries)),
                      "names": ["%s-%s-%s" % (p["name"], p["version"], p["build"]) for p in entries],
                      "wheels": [w["filename"] for w in self.info.get("wheels", [])],
                      "installed": time.time(), "by_archive": self.archive.id}
            write_atomic(os.path.join(prefix, C.READY), F.dump_json(marker))
        return self._install_env(AtomicDirectory(
            self.prefix, self.cache.tmp, "env-%s-" % self.env16,
            lock=os.path.join(self.cache.envs, self.env16 + ".lock"),
            ready=lambda d: self.cache.env_ready(self.env16)), mark_ready)

    def install_into(self, dest):  # type: (str) -> None
        """The environment at ``dest`` (absent or an empty directory, which is kept), prefixes
        replaced for ``dest``, with the app layer (``coex/app``) and what runs it like the
        archive (``launch.write_extracted``); on failure nothing is left there. A new ``dest`` is
        made 0777 minus the umask, as conda makes a prefix."""
        def finish(prefix):
            made = [n for n in ("coex", "activate.sh") if os.path.lexists(os.path.join(prefix, n))]
            if made:
                raise CoexFailure("a package of this environment installs %s, where extract puts its "
                                  "own files: extract cannot make %s runnable" % (" and ".join(made), prefix))
            app_dir = None
            if self.app16:
                app_dir = os.path.join(prefix, "coex", "app")
                os.makedirs(app_dir)
                read_app_layer(self.archive, app_dir)
            L.write_extracted(self.info, prefix, app_dir)
        with self.cache.installing():
            self._install_env(AtomicDirectory(
                dest, os.path.dirname(dest), ".%s.coex-" % os.path.basename(dest),
                ready=lambda d: False, mode=0o777, keep_existing=True), finish)

    def _install_env(self, target, finish=None):
        from coex_runtime import install
        entries = self.info["packages"]
        specs = self.info.get("requested_specs") or []

        state = []

        def populate(work):
            try:  # (the decoder only when a package is extracted: missing, or found damaged)
                state.append(install.install_env(
                    entries, self.open_payload, self.cache.pkgs, work, target.target, libzstd=self.libzstd,
                    progress=self.progress, requested_specs=specs, pending=False,
                    wheels=self.info.get("wheels", []), open_wheel=self.open_payload))
                fault("linked")
            except Exception:
                self.diagnose_payloads()
                raise
            finally:
                self.progress.finish()
            self.phases.done("extract+link")

        def done(prefix):
            fault("renamed")
            try:
                messages = install.finalize_env(prefix, entries, requested_specs=specs,
                                                progress=self.progress, state=state[0])
            finally:
                self.progress.finish()
            self.phases.done("finalize")
            for label, text in messages:  # shown once, as conda prints them
                sys.stderr.write("coex: a message from %s:\n%s\n" % (label, text.rstrip("\n")))
            if finish is not None:
                finish(prefix)
        return target.ensure(populate, done)

    def open_payload(self, entry):  # type: (dict) -> IO[bytes]
        return self.archive.open(entry["member"])

    def diagnose_payloads(self):  # type: () -> None
        """After a failed extraction: if a stored package does not match the record, say that
        the archive is damaged (FormatError) rather than what the decoder tripped over."""
        for p in self.missing_packages():
            self.archive.verify_package(p)

    def libzstd(self):  # type: () -> Optional[str]
        """Path of the archive's libzstd in the cache (extracted, sha-checked), or None."""
        from coex_runtime import zstd
        rec = self.info.get("libzstd")
        if not rec or zstd.stdlib_zstd() is not None:
            return None
        path = os.path.join(self.cache.lib, rec["sha256"], "libzstd.so.1")

        def populate(work):
            dst = os.path.join(work, "libzstd.so.1")
            with self.archive.open(rec["member"]) as src, open(dst, "wb") as out:
                digest = copy_hashed(src, out.write)[0]
            if digest != rec["sha256"]:
                raise damaged(self.archive.path, "its libzstd", "sha256 %s, the record says %s"
                              % (digest, rec["sha256"]))
            os.chmod(dst, 0o755)
        AtomicDirectory(os.path.dirname(path), self.cache.tmp, "lib-%s-" % rec["sha256"][:16],
                        ready=lambda d: os.path.isfile(path)).ensure(populate)
        return path

    def write_launcher(self):  # type: () -> None
        meta = {"archive_id": self.archive.id, "archive": self.archive.path, "env": self.env16,
                "app": self.app16, "written": time.time()}
        write_atomic(os.path.join(self.cache.launch, self.id16 + ".json"), F.dump_json(meta), fsync=False)
        text = L.render_launcher(self.info, self.id16, self.prefix, self.app_dir,
                                 self.cache.used_file(self.id16), os.path.join(self.prefix, C.READY))
        write_atomic(self.launcher, text.encode("utf-8"), 0o644, fsync=False)
