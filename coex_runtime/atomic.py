"""Things that appear whole or not at all: directories (``AtomicDirectory``), files
(``write_atomic``), and the flock that serialises their makers (``Lock``).

Every staged directory of the runtime is an AtomicDirectory: extracted packages
(``pkgs/<sha256>``), app layers, environments, the archive's libzstd, and ``extract DIR``.
"""

import errno
import fcntl
import os

from coex_runtime.fs import makedirs, rmtree


class Lock(object):
    """An flock on ``path`` (a file, created if missing, or an existing directory). ``shared``
    for readers, ``wait=False`` to try."""

    def __init__(self, path, shared=False, wait=True):  # type: (str, bool, bool) -> None
        self.path, self.shared, self.wait = path, shared, wait
        self.fd = None

    def acquire(self):  # type: () -> bool
        cloexec = getattr(os, "O_CLOEXEC", 0)
        if os.path.isdir(self.path):
            fd = os.open(self.path, os.O_RDONLY | cloexec)
        else:
            makedirs(os.path.dirname(self.path))
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | cloexec, 0o644)
        try:
            got = self._flock(fd, self.shared, self.wait)
        except BaseException:
            os.close(fd)
            raise
        if not got:
            os.close(fd)
            return False
        self.fd = fd
        return True

    @staticmethod
    def _flock(fd, shared, wait):
        op = fcntl.LOCK_SH if shared else fcntl.LOCK_EX
        try:
            fcntl.flock(fd, op if wait else op | fcntl.LOCK_NB)
        except (IOError, OSError) as e:
            if e.errno in (errno.EWOULDBLOCK, errno.EAGAIN):
                return False
            raise
        return True

    def share(self):  # type: () -> None
        """Turn the exclusive lock held into a shared one (waiting like ``acquire``)."""
        self._flock(self.fd, True, True)
        self.shared = True

    def release(self):  # type: () -> None
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None

    def __enter__(self):
        self.acquire()
        return self

    def __exit__(self, *exc):
        self.release()


def write_atomic(path, data, mode=0o644, fsync=True):  # type: (str, bytes, int, bool) -> None
    """Write bytes to ``path`` through a temp file in the same directory, (fsync,) rename."""
    d = os.path.dirname(path)
    makedirs(d)
    fd, tmp = make_temp(d, ".tmp-")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            if fsync:
                f.flush()
                os.fsync(f.fileno())
        os.chmod(tmp, mode)
        os.rename(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def unique_name(parent, prefix):  # type: (str, str) -> str
    """A path in ``parent`` that is unlikely to exist: ``<prefix><pid>-<8 hex digits>``."""
    return os.path.join(parent, "%s%d-%s" % (prefix, os.getpid(), os.urandom(4).hex()))


def make_temp(parent, prefix, suffix=""):  # type: (str, str, str) -> Tuple[int, str]
    """(fd, path) of a new file (mode 0600) in ``parent``, as tempfile.mkstemp makes one (that
    module takes a few ms to import: random, shutil...)."""
    while True:
        path = unique_name(parent, prefix) + suffix
        try:
            return os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600), path
        except OSError as e:
            if e.errno != errno.EEXIST:
                raise


def discard(path, trash_dir, prefix="trash-"):  # type: (str, str, str) -> None
    """Make ``path`` invisible at once (rename it into ``trash_dir``), then delete it."""
    if not os.path.lexists(path):
        return
    makedirs(trash_dir)
    trash = unique_name(trash_dir, prefix)
    try:
        os.rename(path, trash)
    except OSError:
        trash = path
    rmtree(trash)


class AtomicDirectory(object):
    """A directory that appears complete or not at all.

    ``ensure(populate, finish)`` makes ``target`` unless ``ready(target)`` already holds:
    ``populate(work)`` fills a fresh work directory in ``work_parent`` (on the same file system,
    named ``<work_prefix><pid>-<random>``, mode ``mode`` minus the umask), which is then renamed
    to ``target``; ``finish(target)`` completes it in place (what must know its final path, such as
    an environment's link scripts) and is what makes ``ready`` true. Whatever fails (an exception,
    Ctrl-C) removes the work directory, or after the rename the target; ``ensure`` returns True
    when this call made the target, False when it was ready.

    The race, with ``lock`` (the path of an flock): ready is checked, then the lock is taken and
    ready is checked again, so of N processes starting at once one populates and the others wait
    and then find the target ready (double-checked locking). Holding the lock, a process knows that
    every work directory with its prefix and any target that is not ready are debris of a killed
    run (killed while populating, or between the rename and the end of ``finish``): it removes
    them before it starts. A reader that sees ``ready`` sees a complete target, since ready only
    becomes true at the end. Without ``lock`` (content-addressed directories whose contents do not
    depend on their maker: packages, libzstd) racing processes each populate their own work
    directory, then publish it holding an flock on ``work_parent`` (a short critical section):
    ready is checked again, a target present but not ready (a damaged cache entry) is moved
    aside, and the work directory renamed to the target; a maker that finds the target ready
    there drops its work and uses the winner's. So a ready target is never moved aside by a
    maker (another process may be linking from it). A work directory of a killed maker stays
    until no install runs (``cache.Cache.installing`` and ``gc`` remove such debris).

    ``keep_existing``: when ``target`` is an existing (empty) directory it is kept (it may be
    someone's working directory): the work directory's entries are moved into it, and emptied out
    of it again on failure.
    """

    def __init__(self, target, work_parent=None, work_prefix=None, lock=None, ready=os.path.isdir,
                 mode=0o700, keep_existing=False):
        # type: (str, Optional[str], Optional[str], Optional[str], Callable[[str], bool], int, bool) -> None
        self.target = target
        self.work_parent = work_parent or os.path.dirname(target)
        self.work_prefix = work_prefix or ".%s.work-" % os.path.basename(target)
        self.lock, self.ready, self.mode, self.keep_existing = lock, ready, mode, keep_existing

    def ensure(self, populate, finish=None):
        # type: (Callable[[str], object], Optional[Callable[[str], object]]) -> bool
        if self.ready(self.target):
            return False
        if self.lock is None:
            return self._make(populate, finish)
        with Lock(self.lock):
            if self.ready(self.target):
                return False
            try:
                names = os.listdir(self.work_parent)
            except OSError:
                names = []
            for n in names:
                if n.startswith(self.work_prefix):
                    rmtree(os.path.join(self.work_parent, n))
            return self._make(populate, finish)

    def _make(self, populate, finish):
        if not self.keep_existing and self.lock is not None:
            discard(self.target, self.work_parent, self.work_prefix + "trash-")
        makedirs(self.work_parent)
        work = unique_name(self.work_parent, self.work_prefix)
        os.mkdir(work, self.mode)
        into = self.keep_existing and os.path.isdir(self.target)
        moved = False
        try:
            populate(work)
            if into:
                moved = True
                for n in sorted(os.listdir(work)):
                    os.rename(os.path.join(work, n), os.path.join(self.target, n))
                os.rmdir(work)
            elif self.lock is None:
                if not self._publish(work):
                    rmtree(work)  # another maker won the race: theirs is as good
                    return False
                moved = True
            else:
                os.rename(work, self.target)
                moved = True
            if finish is not None:
                finish(self.target)
        except BaseException:
            if not moved:
                rmtree(work)
            elif into:
                rmtree(work)
                for n in os.listdir(self.target):
                    rmtree(os.path.join(self.target, n))
            else:
                discard(self.target, self.work_parent, self.work_prefix + "trash-")
            raise
        return True

    def _publish(self, work):  # type: (str) -> bool
        """Rename ``work`` to the target unless a ready one is there (False), under the parent's
        flock: a damaged target is moved aside first (and deleted after the lock)."""
        trash, parent = None, os.path.dirname(self.target)
        makedirs(parent)
        with Lock(parent):
            if self.ready(self.target):
                return False
            if os.path.lexists(self.target):
                trash = unique_name(self.work_parent, self.work_prefix + "trash-")
                os.rename(self.target, trash)
            os.rename(work, self.target)
        if trash is not None:
            rmtree(trash)
        return True
