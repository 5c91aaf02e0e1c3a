"""The environment variables the runtime reads: all of them are read here.

    COEX_ROOT        the cache root; else ``$XDG_CACHE_HOME/coex``, else ``$HOME/.cache/coex``
                     (each only when absolute; see cache.configured_root). ``TMPDIR`` (when
                     absolute) is where the private fallback roots go.
    COEX_ENTRYPOINT  the entry point to run (one the archive declares, else exit 2)
    COEX_TOOLS       yes/no: run a tool (info, verify, extract, gc) instead of the program
    COEX_VERBOSE     yes/no: the time of each first-run phase on stderr
    COEX_ARCHIVE     set by the sh preamble: the archive's absolute path; and
    COEX_ARGV0       ``$0`` as invoked: the program gets both, on its first run as on warm ones
    COEX_LC_REEXEC   coex's own: the caller's locale variables across the UTF-8 re-exec of
                     Python 3.6 (see main.utf8_reexec)
    COEX_PYTHON      read by the sh preamble only: the Python for the first run
    COEX_LOCK_FD     set by the sh preamble for the Python it starts: the descriptor of the
                     archive's first-run lock (``launch/<id16>.lock``) it holds; closed before
                     the program starts, so runs waiting on it in their preamble go on
    COEX_FAULT       for the tests: ``<point>:<action>`` makes the process that reaches
                     ``fault(point)`` send itself a signal (action ``INT``, ``TERM``, ``KILL``...)
                     or block until the test is done with it (action: the path of a FIFO the
                     process opens and reads: the test's open of the other end returns when the
                     point is reached, and the process goes on when the test closes it)

Yes/no variables: unset, empty, ``0``, ``false``, ``no``, ``off`` (any case) mean no, as the sh
preamble reads COEX_TOOLS. The launcher sets ``COEX_PREFIX`` and ``COEX_APP`` for the program
(launch.py), which ``gc`` looks for in running processes.
"""

import os

LC_REEXEC = "COEX_LC_REEXEC"
LOCK_FD = "COEX_LOCK_FD"


def _text(name):
    return property(lambda self: self.environ.get(name) or None, doc="$%s, or None" % name)


def _absolute(name):
    return property(lambda self: (self.environ.get(name) or "").startswith("/") and self.environ[name]
                    or None, doc="$%s when it is an absolute path, else None" % name)


def _flag(name):
    return property(lambda self: (self.environ.get(name) or "0").strip().lower()
                    not in ("0", "false", "no", "off"), doc="$%s as yes/no" % name)


class Variables(object):
    """Typed access to ``environ`` (default ``os.environ``)."""

    root = _text("COEX_ROOT")
    xdg_cache_home = _absolute("XDG_CACHE_HOME")
    home = _absolute("HOME")
    tmpdir = _absolute("TMPDIR")
    entrypoint = _text("COEX_ENTRYPOINT")
    tools = _flag("COEX_TOOLS")
    verbose = _flag("COEX_VERBOSE")
    archive = _text("COEX_ARCHIVE")
    argv0 = _text("COEX_ARGV0")

    def __init__(self, environ=None):  # type: (Optional[MutableMapping[str, str]]) -> None
        self.environ = os.environ if environ is None else environ

    @property
    def lc_reexec(self):  # type: () -> Optional[str]
        return self.environ.get(LC_REEXEC)

    def pop_lc_reexec(self):  # type: () -> Optional[str]
        return self.environ.pop(LC_REEXEC, None)

    def set_identity(self, archive, argv0):  # type: (str, str) -> None
        self.environ["COEX_ARCHIVE"] = archive
        self.environ["COEX_ARGV0"] = argv0

    def pop_lock_fd(self):  # type: () -> Optional[int]
        """The first-run lock's descriptor the preamble handed over (and forget it)."""
        value = self.environ.pop(LOCK_FD, None)
        return int(value) if value and value.isdigit() else None


def fault(point, environ=None):  # type: (str, Optional[Mapping[str, str]]) -> None
    """A fault-injection point (see COEX_FAULT): nothing unless a test asked for this point."""
    want = (os.environ if environ is None else environ).get("COEX_FAULT")
    if not want or not want.startswith(point + ":"):
        return
    action = want[len(point) + 1:]
    if action.startswith("/"):
        with open(action, "rb") as f:
            f.read()
        return
    import signal
    os.kill(os.getpid(), getattr(signal, "SIG" + action))
