"""File helpers the whole runtime shares (and the archive writer): one block size, one
hash-while-copy, one bounded reader, one path-safety check, and creating, writing and removing
files and trees."""

import errno
import hashlib
import io
import os
import re
import sys

COPY_BUFSIZE = 1 << 20


def copy_hashed(src, write=None):  # type: (IO[bytes], Optional[Callable[[bytes], object]]) -> Tuple[str, int]
    """Read ``src`` to its end in COPY_BUFSIZE blocks, hashing each (sha256) and handing it to
    ``write`` when given: (hex digest, size)."""
    h, size = hashlib.sha256(), 0
    while True:
        block = src.read(COPY_BUFSIZE)
        if not block:
            return h.hexdigest(), size
        h.update(block)
        size += len(block)
        if write is not None:
            write(block)


def sha256_file(path):  # type: (str) -> str
    with open(path, "rb") as f:
        return copy_hashed(f)[0]


def write_all(fd, data):  # type: (int, bytes) -> None
    """``os.write`` until every byte of ``data`` is written."""
    mv = memoryview(data)
    while mv:
        mv = mv[os.write(fd, mv):]


class Bounded(io.RawIOBase):
    """Exactly ``size`` bytes from ``read(n)``; ``short()`` is the exception raised when they end
    early (a truncated archive or package)."""

    def __init__(self, read, size, short):
        io.RawIOBase.__init__(self)
        self._read, self._left, self._short = read, size, short

    def readable(self):
        return True

    def readinto(self, b):
        n = min(len(b), self._left)
        if n <= 0:
            return 0
        data = self._read(n)
        if not data:
            raise self._short()
        k = len(data)
        b[:k] = data
        self._left -= k
        return k

    def drain(self):  # type: () -> None
        """Skip what is left."""
        while self._left > 0:
            data = self._read(min(self._left, COPY_BUFSIZE))
            if not data:
                raise self._short()
            self._left -= len(data)


def safe_relpath(rel, strict=False):  # type: (str, bool) -> Optional[str]
    """``rel`` as a relative path inside its tree (``a/b``), or None when it would leave the tree
    (absolute, ``..``) or names none (empty). Leading ``./`` and empty or ``.`` parts are dropped;
    with ``strict`` (app-layer names, written by coex itself) a path that needs that, or holds a
    backslash or a NUL, is refused too."""
    if strict and (not rel or "\\" in rel or "\0" in rel):
        return None
    parts = [p for p in rel.split("/") if p not in ("", ".")]
    if rel.startswith("/") or not parts or ".." in parts:
        return None
    out = "/".join(parts)
    return None if strict and out != rel else out


_UMASK = []


def umask(refresh=False):  # type: (bool) -> int
    """The process's umask, as last read (``refresh``: read it now, from /proc/self/status where
    it is shown, else by setting and restoring it: do that before other threads create files)."""
    if refresh or not _UMASK:
        del _UMASK[:]
        try:
            with open("/proc/self/status", "rb") as f:
                m = re.search(br"^Umask:\s*([0-7]+)", f.read(), re.M)
            value = int(m.group(1), 8)
        except (IOError, OSError, AttributeError):
            value = os.umask(0o022)
            os.umask(value)
        _UMASK.append(value)
    return _UMASK[0]


def set_mode(fd, mode):  # type: (int, int) -> None
    """Give the file just created with ``os.open(..., mode)`` exactly ``mode``, umask or not (as
    conda and rattler keep a package's modes): one fchmod, only when the umask took bits."""
    if mode & umask():
        os.fchmod(fd, mode)


def write_file(path, data, mode, exclusive=False):  # type: (str, bytes, int, bool) -> None
    """A file at ``path`` (new with ``exclusive``, else created or truncated) holding ``data``,
    mode exactly ``mode``."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | (os.O_EXCL if exclusive else os.O_TRUNC), mode)
    try:
        set_mode(fd, mode)
        write_all(fd, data)
    finally:
        os.close(fd)


def makedirs(path, mode=0o755):  # type: (str, int) -> None
    """``os.makedirs``; an existing directory is fine."""
    try:
        os.makedirs(path, mode)
    except OSError as e:
        if e.errno != errno.EEXIST or not os.path.isdir(path):
            raise


def remove(path):  # type: (str) -> None
    """Remove the file, link or tree at ``path``; nothing there is fine."""
    try:
        os.unlink(path)
    except OSError as e:
        if e.errno == errno.ENOENT:
            return
        if e.errno in (errno.EISDIR, errno.EPERM) and os.path.isdir(path) and not os.path.islink(path):
            import shutil  # (a few ms to import: only to remove a tree)
            shutil.rmtree(path)
            return
        raise


def rmtree(path):  # type: (str) -> None
    """Remove ``path`` whatever it is, as far as possible (read-only directories inside
    packages are made writable first); errors are ignored."""
    def retry(func, p, exc):
        try:
            os.chmod(os.path.dirname(p), 0o700)
            if os.path.isdir(p) and not os.path.islink(p):
                os.chmod(p, 0o700)
            func(p)
        except OSError:
            pass

    if os.path.islink(path) or os.path.isfile(path):
        try:
            os.unlink(path)
        except OSError:
            pass
        return
    import shutil
    if sys.version_info >= (3, 12):  # onerror is deprecated there
        shutil.rmtree(path, onexc=retry)
    else:
        shutil.rmtree(path, onerror=retry)
