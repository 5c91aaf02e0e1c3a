"""Package streaming: one stored conda package, read once from start to end, into a directory.

Stored encodings (see format.py): "conda" (a zip holding ``info-*.tar.zst`` and
``pkg-*.tar.zst``, read sequentially from its local headers, so the payload needs no seeking),
"tar.zst" and "tar.bz2". ``extract_stream`` checks the stored bytes' sha256 and size while it
reads them and every file against ``info/paths.json`` once the stream ends; nothing in the
destination may be used unless it returns (the caller extracts into a work directory).

Safety: members escaping the package (absolute, ``..``), symlinks or hardlinks pointing outside
it, device files and FIFOs are refused, naming the package and the member.

Modes: a file gets the archive's permission bits exactly, the umask notwithstanding (``0o664``
stays ``0o664``), as conda (tarfile + chmod) and rattler (tar-rs ``set_perms``) keep them; the
environment's hardlinks share them. Three changes, each on purpose (``file_mode``):

* setuid, setgid and sticky bits are dropped, as rattler drops them (tar-rs without
  ``preserve_permissions``; conda would keep them): a setuid program in an environment other
  users can read would run with its owner's rights for them, and no package needs it;
* the world-write bit is dropped (conda and rattler keep it, coex alone does not): a file any
  local user may rewrite is a program or module any of them can change under the user who runs
  it (only a conda-index test fixture, built with umask 000, has such files);
* the owner-read bit is added: the cache reads every file back to verify it.

Directories are created with the umask applied, as conda and rattler create them.
"""

import bz2
import errno
import hashlib
import io
import os
import posixpath
import struct
import zlib

from coex_runtime import zstd
from coex_runtime.errors import CorruptPackage, PackageError, TarError, ZstdError
from coex_runtime.format import Package
from coex_runtime.fs import COPY_BUFSIZE, Bounded, copy_hashed, remove, safe_relpath, set_mode, write_all
from coex_runtime.pkgmeta import check_link_target, verify_paths
from coex_runtime.tar import iter_tar


def extract_stream(entry, payload, dest, libzstd=None, on_bytes=None):
    # type: (dict, IO[bytes], str, Optional[str], Optional[Callable[[int], None]]) -> Dict[str, Tuple[str, int]]
    """Extract ``payload`` (the stored bytes of ``entry``) into the existing empty directory
    ``dest``, checking the stored sha256/size and info/paths.json; {relpath: (sha256, size)} of
    the files. Raises PackageError (CorruptPackage for damaged bytes). ``on_bytes(n)``: n more
    stored bytes read (called every MiB or so, for progress)."""
    want = Package(entry)
    pkg = want.label
    digests = {}
    files = _Files(pkg, dest, digests)
    update = files.stored_update
    if on_bytes is not None:
        update = _Counting(update, on_bytes)
    src = _HashingReader(payload, update)
    try:
        try:
            if want.encoding == "conda":
                _extract_conda_zip(pkg, src, files, libzstd)
            elif want.encoding == "tar.zst":
                dec = zstd.open_reader(io.BufferedReader(src, COPY_BUFSIZE), libzstd=libzstd, name=pkg)
                _extract_tar(pkg, dec, files, pkg)
            elif want.encoding == "tar.bz2":
                _extract_tar(pkg, io.BufferedReader(_Decompressing(src, bz2.BZ2Decompressor, pkg, "bzip2"),
                                                    COPY_BUFSIZE), files, pkg)
            else:
                raise PackageError("%s: unknown package encoding %r" % (pkg, want.encoding))
        except ZstdError as e:
            raise PackageError("%s: %s" % (pkg, e)) from e
        src.drain()
        if on_bytes is not None:
            update.flush()
    finally:
        files.close()
    got_sha, want_sha, want_size = files.stored_sha.hexdigest(), want.stored_sha256, want.stored_size
    if (want_sha and got_sha != want_sha) or (want_size is not None and src.size != want_size):
        raise CorruptPackage(
            "%s: the stored package is damaged: sha256 %s, %d bytes, but the lock says sha256 %s, "
            "%s bytes; the archive was altered or truncated: download or copy it again"
            % (pkg, got_sha, src.size, want_sha, want_size))
    verify_paths(pkg, dest, digests)
    return digests


# ---------------------------------------------------------------------------------------------
# byte streams


class _Counting(object):
    """``update(data)`` that also tells ``on_bytes`` how many bytes went by, a MiB at a time."""

    def __init__(self, update, on_bytes):
        self._update, self._on_bytes, self._n = update, on_bytes, 0

    def __call__(self, data):
        self._update(data)
        self._n += len(data)
        if self._n >= 1 << 20:
            self.flush()

    def flush(self):
        if self._n:
            n, self._n = self._n, 0
            self._on_bytes(n)


class _HashingReader(io.RawIOBase):
    """The stored payload: counts every byte read from ``f`` and hands it to ``update(bytes)``,
    which hashes it."""

    def __init__(self, f, update):
        io.RawIOBase.__init__(self)
        self._f, self._update, self.size = f, update, 0

    def readable(self):
        return True

    def read(self, n=-1):
        data = self._f.read(n) if n is not None and n >= 0 else self._f.read()
        if data:
            self._update(data)
            self.size += len(data)
        return data

    def readinto(self, b):
        data = self.read(len(b))
        b[:len(data)] = data
        return len(data)

    def drain(self):
        while self.read(COPY_BUFSIZE):
            pass


class _Decompressing(io.RawIOBase):
    """What ``new()`` decompressor objects make of ``f``: raw deflate (a zip member), or bzip2
    (streams one after another). A stream that ends early or does not decode raises
    CorruptPackage naming ``what``."""

    def __init__(self, f, new, what, kind):
        io.RawIOBase.__init__(self)
        self._f, self._new, self._what, self._kind = f, new, what, kind
        self._d = new()
        self._pending = b""

    def readable(self):
        return True

    def readinto(self, b):
        while not self._pending:
            if self._d.eof:  # the stream ended: another may follow
                data = self._d.unused_data or self._f.read(COPY_BUFSIZE)
                if not data:
                    return 0
                self._d = self._new()
            else:
                data = self._f.read(COPY_BUFSIZE)
                if not data:
                    raise CorruptPackage("%s: truncated %s stream" % (self._what, self._kind))
            try:
                self._pending = self._d.decompress(data)
            except (OSError, ValueError, EOFError, zlib.error) as e:
                raise CorruptPackage("%s: corrupt %s stream (%s)" % (self._what, self._kind, e)) from e
        n = min(len(b), len(self._pending))
        b[:n] = self._pending[:n]
        self._pending = self._pending[n:]
        return n


# ---------------------------------------------------------------------------------------------
# the .conda zip


def _read_exact(f, n, what):
    data = f.read(n)
    if len(data) != n:
        raise CorruptPackage("%s ends early (truncated package)" % what)
    return data


def _extract_conda_zip(pkg, src, files, libzstd):
    """Sequentially read a .conda zip's local headers; extract its inner tar.zst members."""
    found = []
    while True:
        sig = src.read(4)
        if len(sig) < 4:
            raise CorruptPackage("%s: the .conda zip ends before its central directory (truncated "
                                 "package)" % pkg)
        if sig != b"PK\x03\x04":
            if sig in (b"PK\x01\x02", b"PK\x05\x06", b"PK\x06\x06", b"PK\x06\x07"):
                break
            if not found:
                raise PackageError("%s: not a .conda file (no zip header)" % pkg)
            raise CorruptPackage("%s: corrupt .conda zip (unexpected bytes %r)" % (pkg, sig))
        hdr = _read_exact(src, 26, pkg)
        (_ver, flags, method, _t, _d, _crc, csize, usize, nlen, elen) = struct.unpack(
            "<HHHHHIIIHH", hdr)
        name = _read_exact(src, nlen, pkg).decode("utf-8", "replace")
        extra = _read_exact(src, elen, pkg)
        if csize == 0xFFFFFFFF or usize == 0xFFFFFFFF:
            csize = _zip64_size(extra, usize, csize, pkg, name)
        if flags & 0x08:
            raise PackageError("%s: zip member %s uses a data descriptor, which cannot be read "
                               "as a stream; rebuild the package with conda-package-handling or "
                               "rattler" % (pkg, name))
        if flags & 0x01:
            raise PackageError("%s: zip member %s is encrypted" % (pkg, name))
        what = "%s (member %s)" % (pkg, name)
        body = Bounded(src.read, csize, lambda w=what: CorruptPackage("%s ends early (truncated package)" % w))
        if method not in (0, 8):
            raise PackageError("%s: zip member %s uses compression method %d (stored or deflate "
                               "expected)" % (pkg, name, method))
        if name.endswith(".tar.zst") and (name.startswith("info-") or name.startswith("pkg-")):
            raw = body if method == 0 else _Decompressing(body, lambda: zlib.decompressobj(-15), what,
                                                          "deflate")
            dec = zstd.open_reader(io.BufferedReader(raw, COPY_BUFSIZE), libzstd=libzstd, name=what)
            _extract_tar(pkg, dec, files, what)
            found.append(name)
        body.drain()
    if not any(n.startswith("pkg-") for n in found) or not any(n.startswith("info-") for n in found):
        raise PackageError("%s: the .conda file lacks its info-*.tar.zst or pkg-*.tar.zst member "
                           "(found %s)" % (pkg, ", ".join(found) or "none"))


def _zip64_size(extra, usize, csize, pkg, name):
    i = 0
    while i + 4 <= len(extra):
        tag, ln = struct.unpack("<HH", extra[i:i + 4])
        if tag == 1:
            vals = extra[i + 4:i + 4 + ln]
            fields = [struct.unpack("<Q", vals[j:j + 8])[0] for j in range(0, len(vals) - 7, 8)]
            k = 1 if usize == 0xFFFFFFFF else 0
            return fields[k] if csize == 0xFFFFFFFF and len(fields) > k else csize
        i += 4 + ln
    raise PackageError("%s: zip member %s has a bad zip64 header" % (pkg, name))


# ---------------------------------------------------------------------------------------------
# a tar stream into the directory


def _member_path(pkg, name):
    """Normalised relative member path, or PackageError if it escapes the package."""
    rel = safe_relpath(name)
    if rel is None:
        raise PackageError("%s: member %r escapes the package directory (an absolute or empty path, "
                           "or '..'); refusing to install it" % (pkg, name))
    return rel


def file_mode(mode):  # type: (int) -> int
    """The mode a package file of archive mode ``mode`` gets (see the module's docstring)."""
    return (mode & 0o775) | 0o400


def _extract_tar(pkg, fileobj, files, what):
    """Extract one uncompressed tar stream (read to its end) into ``files.dest``."""
    state = {"member": None, "done": False}
    dest, digests = files.dest, files.digests
    try:
        for ti in iter_tar(fileobj):
            state["member"], state["done"] = ti.name, False
            rel = _member_path(pkg, ti.name)
            kind = ti.kind
            if kind == "file":
                mode = file_mode(ti.mode)
                if ti.size <= files.whole:
                    files.write(rel, ti.read(), mode, ti.mtime)
                else:
                    files.write_streaming(rel, ti, mode)
                state["done"] = True
                continue
            path = os.path.join(dest, rel)
            if kind == "dir":
                files.mkparent(rel + "/x")
            elif kind == "symlink":
                check_link_target(pkg, rel, ti.linkname)
                files.mkparent(rel)
                remove(path)
                os.symlink(ti.linkname, path)
            elif kind == "hardlink":
                target = _member_path(pkg, ti.linkname)
                tpath = os.path.join(dest, target)
                if not os.path.isfile(tpath) or os.path.islink(tpath):
                    raise PackageError("%s: hardlink %s points to %r, which is not a regular file "
                                       "of the package; refusing to install it"
                                       % (pkg, rel, ti.linkname))
                files.mkparent(rel)
                remove(path)
                os.link(tpath, path)
                if target in digests:
                    digests[rel] = digests[target]
            else:
                raise PackageError("%s: member %s is a %s; refusing to install it"
                                   % (pkg, rel, kind))
            state["done"] = True
        while fileobj.read(COPY_BUFSIZE):  # what follows the end blocks (zstd frame padding)
            pass
    except (CorruptPackage, ZstdError, EOFError, OSError, zlib.error) as e:
        if isinstance(e, OSError) and e.errno is not None:
            raise
        where = ""
        if state["member"] is not None:
            where = (" (after member %s)" if state["done"] else " (in member %s)") % state["member"]
        msg = str(e)
        if not isinstance(e, CorruptPackage) or isinstance(e, TarError):  # does not name the package
            msg = "%s: %s is corrupt: %s" % (pkg, what, msg)
        raise CorruptPackage(msg + where) from e


_UTIME_FD = os.utime in os.supports_fd


class _Files(object):
    """Creates and writes the extracted files of one package in the reading thread; files over
    64 kB, and the stored bytes (``stored_update``, digest in ``stored_sha`` after close()), are
    hashed by one helper thread (hashlib releases the GIL), smaller files inline.

    (Writer threads were measured: with the GIL handed back and forth around each syscall they
    made extraction slower, not faster; packages are extracted in parallel instead. The hash
    thread measured ~10% faster on the realistic environment.)"""

    # files up to this size are read whole, larger ones are copied block by block
    whole = 8 << 20

    def __init__(self, pkg, dest, digests):
        import queue
        import threading
        self.pkg, self.dest, self.digests = pkg, dest, digests
        self.made = set([""])
        self.stored_sha = hashlib.sha256()
        self._q = queue.Queue(4)  # bounded: at most 4 files (<= 8 MB each) waiting
        self._t = threading.Thread(target=self._hasher, name="coex-hash")
        self._t.daemon = True
        self._t.start()

    def _hasher(self):
        while True:
            item = self._q.get()
            if item is None:
                return
            rel, data = item
            if rel is None:
                self.stored_sha.update(data)
            else:
                self.digests[rel] = (hashlib.sha256(data).hexdigest(), len(data))

    def stored_update(self, data):
        """Hash the next bytes of the stored payload (in order)."""
        self._q.put((None, data))

    def close(self):
        if self._q is not None:
            self._q.put(None)
            self._t.join()
            self._q = None

    def mkparent(self, rel):
        parent = posixpath.dirname(rel)
        if parent in self.made:
            return
        path = os.path.join(self.dest, parent)
        try:
            os.makedirs(path)
        except OSError as e:
            if e.errno != errno.EEXIST or not os.path.isdir(path) or os.path.islink(path):
                raise PackageError("cannot create directory %s: %s" % (path, e)) from e
        self.made.add(parent)

    def _open(self, rel, mode):
        self.mkparent(rel)
        path = os.path.join(self.dest, rel)
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL
        try:
            fd = os.open(path, flags, mode)
        except OSError as e:
            if e.errno != errno.EEXIST:
                raise
            remove(path)  # the same path twice in one package: the last one wins
            fd = os.open(path, flags, mode)
        try:
            set_mode(fd, mode)
        except BaseException:
            os.close(fd)
            raise
        return path, fd

    def write(self, rel, data, mode, mtime):
        path, fd = self._open(rel, mode)
        try:
            write_all(fd, data)
            if mtime:
                os.utime(fd if _UTIME_FD else path, (mtime, mtime))
        finally:
            os.close(fd)
        if len(data) > 65536:
            self._q.put((rel, data))  # hashed in parallel (hashlib releases the GIL)
        else:
            self.digests[rel] = (hashlib.sha256(data).hexdigest(), len(data))

    def write_streaming(self, rel, ti, mode):
        """A file too big to read whole (tar member ``ti``): copied block by block."""
        path, fd = self._open(rel, mode)
        try:
            digest, size = copy_hashed(ti, lambda block: write_all(fd, block))
            if ti.mtime:
                os.utime(fd if _UTIME_FD else path, (ti.mtime, ti.mtime))
        finally:
            os.close(fd)
        if size != ti.size:
            raise CorruptPackage("%s: member %s ends early (truncated package)" % (self.pkg, rel))
        self.digests[rel] = (digest, size)
