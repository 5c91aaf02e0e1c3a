"""The runtime's failures: one hierarchy, told apart by type (never by message text).

Every failure coex explains to the user is a ``CoexFailure``: ``main`` writes ``intro`` and the
message on stderr and exits with ``code``. A failure caused by another exception chains it
(``raise ... from e``); ``errno``, when set, is the OS error behind it (also for errors that
crossed from a worker process, see ``workers.fork_map``), which is how a full disk is recognised.
(The build library's errors, ``coex.lib.errors.CoexError``, are another family.)

    CoexFailure                 exit 1
      UsageError                exit 2: a tool's usage, an entry point the archive lacks
      FormatError               the archive or its record is damaged or invalid
      CacheError                no usable cache directory, or a cache operation failed
      ZstdError                 a zstd stream cannot be decoded, or no decoder can be loaded
      InstallError              the environment cannot be installed (names package and file)
        PackageError            a package cannot be extracted or linked
          CorruptPackage        its stored bytes are damaged (the extractor adds where)
            TarError            its tar stream is malformed
        PrefixError             the new prefix cannot be written into a file
        NoarchError             a noarch: python package cannot be installed
        LinkScriptError         a pre-/post-link script failed (its output is the message)
        WheelError              a PyPI wheel cannot be installed (names the wheel and the file)

``Terminated`` (a BaseException, like KeyboardInterrupt) is what a SIGTERM or SIGHUP raises in
the cold path and in install workers: it unwinds them (workers stopped, work directories
removed) before the process ends by that signal.
"""


class CoexFailure(Exception):
    """A failure explained to the user: ``main`` prints ``intro`` + message, exits ``code``."""

    code = 1
    intro = "coex: "
    errno = None  # the OS error number behind it, if any


class UsageError(CoexFailure):
    code = 2


class FormatError(CoexFailure):
    pass


class CacheError(CoexFailure):
    pass


class ZstdError(CoexFailure):
    intro = "coex: error: "


class InstallError(CoexFailure):
    intro = "coex: error: "


class PackageError(InstallError):
    pass


class CorruptPackage(PackageError):
    pass


class TarError(CorruptPackage):
    pass


class PrefixError(InstallError):
    pass


class NoarchError(InstallError):
    pass


class LinkScriptError(InstallError):
    pass


class WheelError(InstallError):
    pass


class Terminated(BaseException):
    """SIGTERM or SIGHUP received (``signum``): unwind, then end by that signal."""

    def __init__(self, signum):  # type: (int) -> None
        BaseException.__init__(self, "terminated by signal %d" % signum)
        self.signum = signum


def raise_terminated(signum, frame):  # type: (int, object) -> None
    """A signal handler: raise Terminated."""
    raise Terminated(signum)


def by_name(name, default=InstallError):  # type: (str, type) -> type
    """The failure class called ``name`` (how a worker process's failure comes back)."""
    cls = globals().get(name)
    return cls if isinstance(cls, type) and issubclass(cls, CoexFailure) else default


def os_errno(exc, among=None):  # type: (BaseException, Optional[Tuple[int, ...]]) -> Optional[int]
    """The first OS error number (of those ``among``, if given) in ``exc`` and its causes."""
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        code = getattr(exc, "errno", None)
        if code is not None and (among is None or code in among):
            return code
        exc = exc.__cause__ or exc.__context__
    return None
