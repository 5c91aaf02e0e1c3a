"""Entry of every archive (``__main__.py`` calls ``main()``): the cold path.

The sh preamble runs ``python <archive> args...`` when the cache has no ready launcher for this
archive (first run, other cache root, deleted env), or when the archive is run as
``python app.coex`` / ``python unzipped-dir/``. Then, in order (``COEX_VERBOSE=1`` prints the time
of each phase on stderr):

1. ``open``: read and validate COEX-INFO (unknown major format -> clear error).
   A ``COEX_ENTRYPOINT`` the archive does not declare stops here (exit 2), before any install.
2. ``root``: the configured root when this archive's launcher there is ready (even if the root
   is read-only now), else pick one (``cache.select_root``; a fallback is announced on stderr).
3. If this archive's launcher exists and its environment is ready, exec it (no install).
4. ``check``: the archive's platform must be the host's conda subdir and its virtual-package
   needs must hold (``vpkgs.check``; ``CONDA_OVERRIDE_*`` honoured): else stop before touching
   the cache.
5. ``app``: the app layer into ``apps/<app16>``, checked against the record's digest
   (``runtime.Runtime.ensure_app``; before the environment: it is small and fully checked first).
6. ``env``: the environment into ``envs/<env16>`` (``Runtime.ensure_env``: extract+link into a
   work dir with prefixes made for ``envs/<env16>``, rename, ``finalize``, readiness marker;
   nothing half-done is ever left ready, see runtime.py and atomic.py).
7. ``launch``: write ``launch/<id16>.json`` then ``launch/<id16>.sh`` (atomically, last), close
   the first-run lock the preamble handed over (``COEX_LOCK_FD``: runs waiting on it go on),
   and exec ``/bin/sh`` sourcing the launcher exactly as a warm run does.

``COEX_TOOLS=1`` runs ``tools.run`` instead (info, verify, extract, gc). Closed standard streams
(``2>&-``) are fine: messages to them vanish, and the program inherits them closed.
Exit statuses of coex itself: 1 bad archive / host mismatch / install failure (message on stderr),
2 usage errors of the tools and unknown entry points; Ctrl-C ends it by SIGINT, SIGTERM and SIGHUP
by that signal (after its message, its workers stopped and its work removed), as the program would be; after the exec every status is the program's own.
"""

import errno
import json
import os
import sys
import time

from coex_runtime import cache as C
from coex_runtime import format as F
from coex_runtime import launch as L
from coex_runtime.errors import CoexFailure, Terminated, UsageError, os_errno, raise_terminated
from coex_runtime.runtime import Phases, Progress, Runtime, check_host
from coex_runtime.variables import LC_REEXEC, Variables


def archive_identity(argv, v):  # type: (List[str], Variables) -> Tuple[str, str]
    """(archive path, argv0): keep the preamble's COEX_ARCHIVE and COEX_ARGV0 when they are about
    this archive (the preamble's ``$PWD/./app.coex`` is this file too), so the program sees the
    same values on its first run as on every warm one."""
    path = os.path.abspath(argv[0]) if argv and argv[0] else os.path.abspath(".")
    if v.archive and v.argv0 and os.path.abspath(v.archive) == path:
        return path, v.argv0
    argv0 = argv[0] if argv else path
    v.set_identity(path, argv0)
    return path, argv0


def die_of(signum):  # type: (int) -> None
    """End the process by the signal itself rather than exit(128 + n): a calling shell then
    knows the user pressed Ctrl-C (or the process was terminated) and stops its script too (a
    loop over ``./app.coex`` does not go on)."""
    import signal
    try:
        signal.signal(signum, signal.SIG_DFL)
        os.kill(os.getpid(), signum)
        time.sleep(1)  # the signal is delivered at once; not reached
    except (OSError, ValueError):
        pass


def catch_termination():  # type: () -> None
    """SIGTERM and SIGHUP raise Terminated in the cold path (unless they were ignored, as under
    ``nohup``), so that an install stops its workers and removes its work before the process
    ends by that signal; the program the launcher execs gets them back at their default."""
    import signal
    for name in ("SIGTERM", "SIGHUP"):
        sig = getattr(signal, name)
        if signal.getsignal(sig) == signal.SIG_DFL:
            signal.signal(sig, raise_terminated)


_LOCALE_VARS = ("LC_ALL", "LC_CTYPE", "LANG")


def utf8_reexec(argv, environ):  # type: (List[str], Mapping[str, str]) -> None
    """Python 3.6 in the C/POSIX locale encodes file names as ASCII (3.7+ coerces the locale to
    UTF-8): a non-ASCII archive path, cache root, argument, app-layer file or package file then
    cannot be created or written into launchers. Such a run (cold path only) is done again by
    this same Python in a UTF-8 locale; the caller's locale variables are kept in COEX_LC_REEXEC
    and given back to the program (``restore_locale``)."""
    if sys.version_info >= (3, 7) or Variables(environ).lc_reexec is not None or not sys.executable:
        return
    if sys.getfilesystemencoding().lower().replace("-", "").replace("_", "") not in ("ascii", "ansix3.41968"):
        return
    import locale
    saved = locale.setlocale(locale.LC_CTYPE)
    for loc in ("C.UTF-8", "C.utf8", "en_US.UTF-8", "UTF-8"):
        try:
            locale.setlocale(locale.LC_CTYPE, loc)
        except locale.Error:
            continue
        locale.setlocale(locale.LC_CTYPE, saved)
        env = dict(environ)
        env[LC_REEXEC] = json.dumps(dict((k, environ.get(k)) for k in _LOCALE_VARS))
        env["LC_ALL"] = loc
        sys.stdout.flush() if sys.stdout is not None else None
        os.execve(sys.executable, [sys.executable, "-E", "-S"] + list(argv), env)
    return


def restore_locale(environ):  # type: (MutableMapping[str, str]) -> None
    """Give the program the locale variables its caller set (see ``utf8_reexec``)."""
    saved = Variables(environ).pop_lc_reexec()
    if saved is None:
        return
    try:
        values = json.loads(saved)
    except ValueError:
        return
    for k in _LOCALE_VARS:
        if values.get(k) is None:
            environ.pop(k, None)
        else:
            environ[k] = values[k]


def main(argv=None, environ=None):  # type: (Optional[List[str]], Optional[MutableMapping[str, str]]) -> int
    is_process = argv is None  # run by the archive's __main__, not called by a test
    argv = list(sys.argv if argv is None else argv)
    environ = os.environ if environ is None else environ
    if is_process:
        catch_termination()
        utf8_reexec(argv, environ)
        restore_locale(environ)
    phases = Phases(Variables(environ).verbose)
    try:
        return _main(argv, environ, phases)
    except CoexFailure as e:
        sys.stderr.write("%s%s\n" % (e.intro, e))
        return e.code
    except (KeyboardInterrupt, Terminated) as e:
        import signal
        signum = getattr(e, "signum", signal.SIGINT)
        try:  # (after a SIGHUP the terminal may be gone)
            sys.stderr.write("coex: %s; nothing was left half-installed\n"
                             % ("interrupted" if signum == signal.SIGINT else "terminated"))
            sys.stderr.flush()
        except (OSError, ValueError):
            pass
        if is_process:
            die_of(signum)
        return 128 + signum
    except EnvironmentError as e:  # one clear line, not a traceback
        msg = str(e)
        if e.filename and e.filename not in msg:
            msg += " (%s)" % e.filename
        sys.stderr.write("coex: error: %s\n" % msg)
        return 1


class _Closed(object):
    """Stands for a standard stream the process was started without (``2>&-``): writes vanish.
    Nothing is opened, so no file lands on fd 0-2 and the program gets the same closed fds."""

    def write(self, text):
        return len(text)

    def flush(self):
        pass

    def isatty(self):
        return False


def out_of_space(exc):  # type: (BaseException) -> Optional[str]
    """The strerror when ``exc`` is (or was caused by) a full disk or quota, else None (the
    installer chains the OS errors it wraps; its workers send their errno back)."""
    code = os_errno(exc, (errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC)))
    return os.strerror(code) if code is not None else None


def check_entry_point(info, v):  # type: (dict, Variables) -> None
    """A COEX_ENTRYPOINT the archive does not declare stops before anything is installed (the
    launcher gives the same message on warm runs)."""
    want = v.entrypoint
    eps = info["entry_points"]
    if want and want not in eps:
        raise UsageError("this archive has no entry point named '%s' (COEX_ENTRYPOINT); choose "
                         "one of: %s" % (want, ", ".join(sorted(eps))))


def _main(argv, environ, phases):
    v = Variables(environ)
    closed_stdout = sys.stdout is None
    if closed_stdout:
        sys.stdout = _Closed()
    if sys.stderr is None:
        sys.stderr = _Closed()
    path, argv0 = archive_identity(argv, v)
    args = argv[1:]
    archive = F.open_archive(path)
    phases.done("open")
    if v.tools:
        if closed_stdout:
            raise CoexFailure("standard output is closed; the tools write their results there")
        from coex_runtime import tools
        return tools.run(archive, args, environ)
    check_entry_point(archive.info, v)
    progress = Progress(sys.stderr.isatty(), archive.info["packages"])
    # decide: a ready launcher under the configured root is used as the preamble uses it, even
    # when that root is read-only now (a cache baked into an image): `python app.coex` ==
    # `./app.coex`; else the root a first run installs into
    want = C.configured_root(environ)
    rt = Runtime(archive, C.Cache(os.path.abspath(want)), phases, progress) if want else None
    if rt is None or not rt.ready():
        rt = Runtime(archive, C.Cache(C.select_root(environ)[0]), phases, progress)
    phases.done("root")
    if not rt.ready():  # act
        check_host(archive.info, environ)
        phases.done("check")
        try:
            rt.install()
        except Exception as e:
            if out_of_space(e):
                raise _no_space(rt, out_of_space(e)) from e
            raise
    archive.close()
    store_runtime_code(rt.cache.root)
    release_first_run_lock(v)
    phases.total()
    L.exec_launcher(rt.launcher, argv0, args, environ)
    return 127  # not reached


def store_runtime_code(root):  # type: (str) -> None
    """Have the bootstrap keep the runtime's code it compiled under the cache ``root`` (see
    preamble.py), so that the next first run does not compile it again."""
    import coex_runtime
    store = getattr(getattr(coex_runtime.__spec__, "loader", None), "store_code", None)
    if store is not None:
        store(root)


def release_first_run_lock(v):  # type: (Variables) -> None
    """Close the first-run lock the sh preamble handed over (COEX_LOCK_FD): the launcher is
    written, so the runs waiting on it in their preamble go on (warm), and the program does not
    inherit it."""
    fd = v.pop_lock_fd()
    if fd is not None:
        try:
            os.close(fd)
        except OSError:
            pass


def _no_space(rt, why):
    pkgs = rt.info["packages"]
    size = sum(F.Package(p).stored_size or 0 for p in pkgs)
    return CoexFailure("no space left to install this archive's environment into %s (%s; nothing was "
                       "left half-installed): free some space there or set COEX_ROOT to a file system "
                       "with room (its %d packages take %s compressed, several times that installed)"
                       % (rt.cache.root, why, len(pkgs),
                          "%.1f MB" % (size / 1e6) if size >= 1e5 else "%d kB" % (size // 1000)))
