"""Phase 1 of an install: stream one stored conda package into an extracted package directory.

Stored encodings (see coex_runtime/format.py): "conda" (a zip holding `info-*.tar.zst` and
`pkg-*.tar.zst`, read sequentially from its local headers, so the payload needs no seeking),
"tar.zst" and "tar.bz2".  The stored bytes' sha256 and size are checked while streaming; the
files are checked against `info/paths.json` (size and sha256) once the stream ends.  Nothing is
left in the destination unless every check passed: the caller extracts into a temporary
directory and renames it into place (`extract_to_cache`).

Safety: members escaping the package (absolute, `..`), symlinks or hardlinks pointing outside
it, device files and FIFOs, and setuid/setgid/sticky bits are refused, naming the package and
the member.  World-writable bits are dropped; the umask applies to everything created.
"""

import bz2
import errno
import hashlib
import io
import json
import os
import posixpath
import stat
import struct
import zlib

from coex_runtime import zstd
from coex_runtime.atomic import AtomicDirectory
from coex_runtime.format import Package
from coex_runtime.errors import CorruptPackage, PackageError, TarError, ZstdError
from coex_runtime.fs import COPY_BUFSIZE, Bounded, copy_hashed, remove, safe_relpath, write_all


class _HashingReader(object):
    """Counts every byte read from `f` (the stored payload) and hands it to `update(bytes)`,
    which hashes it."""

    def __init__(self, f, update):
        self._f = f
        self.size = 0
        self._update = update

    def read(self, n=-1):
        data = self._f.read(n) if n is not None and n >= 0 else self._f.read()
        if data:
            self._update(data)
            self.size += len(data)
        return data

    def drain(self):
        while True:
            data = self._f.read(COPY_BUFSIZE)
            if not data:
                return
            self._update(data)
            self.size += len(data)


class _Inflating(io.RawIOBase):
    """Raw-deflate decoder for deflated zip members (metadata.json in some writers)."""

    def __init__(self, f):
        io.RawIOBase.__init__(self)
        self._f = f
        self._d = zlib.decompressobj(-15)
        self._pending = b""

    def readable(self):
        return True

    def readinto(self, b):
        while not self._pending:
            data = self._f.read(COPY_BUFSIZE)
            if not data:
                self._pending = self._d.flush()
                if not self._pending:
                    return 0
                break
            self._pending = self._d.decompress(data)
        n = min(len(b), len(self._pending))
        b[:n] = self._pending[:n]
        self._pending = self._pending[n:]
        return n


def _read_exact(f, n, what):
    data = f.read(n)
    if len(data) != n:
        raise CorruptPackage("%s ends early (truncated package)" % what)
    return data


# ---------------------------------------------------------------------------------------------
# member safety


def _member_path(pkg, name):
    """Normalised relative member path, or PackageError if it escapes the package."""
    rel = safe_relpath(name)
    if rel is None:
        raise PackageError("%s: member %r escapes the package directory (an absolute or empty path, "
                           "or '..'); refusing to install it" % (pkg, name))
    return rel


def check_link_target(pkg, rel, target):
    """A symlink at `rel` (relative path) pointing at `target` must stay inside the tree."""
    if target.startswith("/"):
        raise PackageError("%s: symlink %s points to the absolute path %r, outside the "
                           "environment; refusing to install it" % (pkg, rel, target))
    resolved = posixpath.normpath(posixpath.join(posixpath.dirname(rel), target))
    if resolved == ".." or resolved.startswith("../"):
        raise PackageError("%s: symlink %s points to %r, outside the environment; refusing to "
                           "install it" % (pkg, rel, target))
    return resolved


_FORBIDDEN_BITS = 0o7000  # setuid, setgid, sticky


# ---------------------------------------------------------------------------------------------
# tar streams


class _Files(object):
    """Creates and writes the extracted files of one package in the reading thread; files over
    64 kB, and the stored bytes (`stored_update`, digest in `stored_sha` after close()), are
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
        if parent not in self.made:
            _makedirs(self.dest, parent)
            self.made.add(parent)

    def write(self, rel, data, mode, mtime):
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
            write_all(fd, data)
            if mtime:
                os.utime(fd if _UTIME_FD else path, (mtime, mtime))
        finally:
            os.close(fd)
        if len(data) > 65536:
            self._q.put((rel, data))  # hashed in parallel (hashlib releases the GIL)
        else:
            self.digests[rel] = (hashlib.sha256(data).hexdigest(), len(data))


_UTIME_FD = os.utime in os.supports_fd


# ---------------------------------------------------------------------------------------------
# a minimal streaming tar reader (tarfile's stream mode costs ~70 us of Python per member)


class _Member(object):
    """One tar member. `kind`: file, dir, symlink, hardlink, or what is refused (devices,
    FIFOs, special types). For files, `read(n)` returns the next bytes of its data."""

    __slots__ = ("name", "kind", "mode", "size", "mtime", "linkname", "_f", "_left")

    def __init__(self, f, name, kind, mode, size, mtime, linkname):
        self._f, self.name, self.kind, self.mode = f, name, kind, mode
        self.size, self.mtime, self.linkname = size, mtime, linkname
        self._left = size

    def read(self, n=-1):
        if n is None or n < 0 or n > self._left:
            n = self._left
        if n == 0:
            return b""
        data = self._f.read(n)
        self._left -= len(data)
        if len(data) < n:
            raise TarError("member %s ends early (truncated package)" % self.name)
        return data


_DATA_KINDS = {b"0": "file", b"\0": "file", b"7": "file"}
_KINDS = {b"1": "hardlink", b"2": "symlink", b"3": "character device", b"4": "block device",
          b"5": "dir", b"6": "FIFO"}
_ZERO_BLOCK = b"\0" * 512


def _tar_number(field):
    if field and field[0] & 0x80:  # GNU base-256 (big files)
        if field[0] & 0x40:
            raise TarError("negative number in a tar header")
        return int.from_bytes(bytes([field[0] & 0x3F]) + field[1:], "big")
    field = field.split(b"\0", 1)[0].strip()
    if not field:
        return 0
    try:
        return int(field, 8)
    except ValueError:
        raise TarError("bad number %r in a tar header" % field) from None


def _tar_str(b):
    return b.split(b"\0", 1)[0].decode("utf-8", "surrogateescape")


def _pax_records(data):
    out = {}
    pos, n = 0, len(data)
    while pos < n:
        sp = data.find(b" ", pos)
        try:
            length = int(data[pos:sp]) if sp > pos else 0
        except ValueError:
            length = 0
        if length <= 0 or pos + length > n:
            raise TarError("bad pax extended header record")
        key, _, value = data[sp + 1:pos + length - 1].partition(b"=")
        out[key.decode("utf-8", "surrogateescape")] = value
        pos += length
    return out


def _tar_read(f, n):
    data = f.read(n)
    if len(data) != n:
        raise TarError("the tar stream ends early (truncated package)")
    return data


def _tar_skip(f, n):
    while n > 0:
        k = len(f.read(min(n, COPY_BUFSIZE)))
        if k == 0:
            raise TarError("the tar stream ends early (truncated package)")
        n -= k


def iter_tar(f):
    """Members of the uncompressed tar stream `f`, read sequentially. Understands ustar, POSIX
    pax ('x' and 'g' headers: path, linkpath, size, mtime) and GNU long names ('L', 'K').
    Data a caller leaves unread is skipped. Malformed input raises TarError."""
    glob, pending = {}, {}
    longname = longlink = None
    while True:
        hdr = f.read(512)
        if len(hdr) < 512:
            raise TarError("the tar stream ends without its end-of-archive block (truncated "
                           "package)")
        if hdr == _ZERO_BLOCK:
            return
        chk = _tar_number(hdr[148:156])
        if chk != sum(hdr[:148]) + 256 + sum(hdr[156:]):
            if chk != sum((b - 256 if b > 127 else b) for b in hdr[:148] + hdr[156:]) + 256:
                raise TarError("bad tar header checksum")
        typeflag = hdr[156:157]
        size = _tar_number(hdr[124:136])
        if typeflag in (b"x", b"g", b"L", b"K"):
            data = _tar_read(f, size)
            _tar_skip(f, -size % 512)
            if typeflag == b"x":
                pending = _pax_records(data)
            elif typeflag == b"g":
                glob.update(_pax_records(data))
            elif typeflag == b"L":
                longname = _tar_str(data)
            else:
                longlink = _tar_str(data)
            continue
        name = _tar_str(hdr[0:100])
        if hdr[257:263] == b"ustar\0":  # POSIX ustar: the prefix field continues the name
            prefix = _tar_str(hdr[345:500])
            if prefix:
                name = prefix + "/" + name
        linkname = _tar_str(hdr[157:257])
        mtime = _tar_number(hdr[136:148])
        if longname is not None:
            name = longname
        if longlink is not None:
            linkname = longlink
        pax = pending
        if glob:
            pax = dict(glob)
            pax.update(pending)
        if pax:
            if "path" in pax:
                name = pax["path"].decode("utf-8", "surrogateescape")
            if "linkpath" in pax:
                linkname = pax["linkpath"].decode("utf-8", "surrogateescape")
            try:
                if "size" in pax:
                    size = int(pax["size"])
                if "mtime" in pax:
                    mtime = int(float(pax["mtime"]))
            except ValueError as e:
                raise TarError("bad pax size or mtime for member %s" % name) from e
            if any(k.startswith("GNU.sparse") for k in pax):
                typeflag = b"S"
        pending, longname, longlink = {}, None, None
        kind = _DATA_KINDS.get(typeflag) or _KINDS.get(typeflag) or (
            "special file (tar type %r)" % typeflag.decode("latin-1"))
        m = _Member(f, name, kind, _tar_number(hdr[100:108]), size if kind == "file" else 0,
                    mtime, linkname)
        yield m
        if kind == "file":
            _tar_skip(f, m._left + (-size % 512))


def _extract_tar(pkg, fileobj, dest, digests, what, files):
    """Extract one uncompressed tar stream into `dest` (regular files through `files`, which
    record {relpath: (sha256, size)} in `digests`)."""
    state = {"member": None, "done": False}
    try:
        for ti in iter_tar(fileobj):
            state["member"], state["done"] = ti.name, False
            rel = _member_path(pkg, ti.name)
            kind = ti.kind
            if ti.mode & _FORBIDDEN_BITS and kind != "dir":
                raise PackageError("%s: member %s has setuid/setgid/sticky bits (mode %o); "
                                   "refusing to install it" % (pkg, rel, ti.mode))
            if kind == "file":
                mode = (ti.mode & 0o777 & ~0o002) | 0o400
                if ti.size <= files.whole:
                    files.write(rel, ti.read(), mode, ti.mtime)
                else:
                    _write_streaming(pkg, files, rel, ti, mode)
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
    except (CorruptPackage, ZstdError, EOFError, OSError, zlib.error) as e:
        if isinstance(e, OSError) and e.errno is not None:
            raise
        where = ""
        if state["member"] is not None:
            where = (" (after member %s)" if state["done"] else " (in member %s)") % state["member"]
        msg = str(e)
        if not msg.startswith(pkg):
            msg = "%s: %s is corrupt: %s" % (pkg, what, msg)
        raise CorruptPackage(msg + where) from e


def _write_streaming(pkg, files, rel, ti, mode):
    """A file too big to read whole: copied block by block."""
    files.mkparent(rel)
    path = os.path.join(files.dest, rel)
    remove(path)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    try:
        digest, size = copy_hashed(ti, lambda block: write_all(fd, block))
        if ti.mtime:
            os.utime(fd if _UTIME_FD else path, (ti.mtime, ti.mtime))
    finally:
        os.close(fd)
    if size != ti.size:
        raise CorruptPackage("%s: member %s ends early (truncated package)" % (pkg, rel))
    files.digests[rel] = (digest, size)


def _makedirs(dest, rel):
    if not rel:
        return
    path = os.path.join(dest, rel)
    try:
        os.makedirs(path)
    except OSError as e:
        if e.errno != errno.EEXIST or not os.path.isdir(path) or os.path.islink(path):
            raise PackageError("cannot create directory %s: %s" % (path, e)) from e


# ---------------------------------------------------------------------------------------------
# outer formats


def _extract_conda_zip(pkg, src, dest, digests, libzstd, files):
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
            raw = io.BufferedReader(body if method == 0 else _Inflating(body), COPY_BUFSIZE)
            dec = zstd.open_reader(raw, libzstd=libzstd, name=what)
            _extract_tar(pkg, dec, dest, digests, what, files)
            # the zstd frame may end before the member: read the rest (epilogue/padding)
            while dec.read(COPY_BUFSIZE):
                pass
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
            fields = []
            for j in range(0, len(vals) - 7, 8):
                fields.append(struct.unpack("<Q", vals[j:j + 8])[0])
            k = 0
            if usize == 0xFFFFFFFF:
                k += 1
            if csize == 0xFFFFFFFF and len(fields) > k:
                return fields[k]
            return csize
        i += 4 + ln
    raise PackageError("%s: zip member %s has a bad zip64 header" % (pkg, name))


class _Bz2Reader(io.RawIOBase):
    def __init__(self, f, what):
        io.RawIOBase.__init__(self)
        self._f = f
        self._d = bz2.BZ2Decompressor()
        self._pending = b""
        self._what = what
        self._got_any = False

    def readable(self):
        return True

    def readinto(self, b):
        while not self._pending:
            if self._d.eof:
                rest = self._d.unused_data
                if not rest:
                    rest = self._f.read(COPY_BUFSIZE)
                if not rest:
                    return 0
                self._d = bz2.BZ2Decompressor()  # multi-stream bz2
                data = rest
            else:
                data = self._f.read(COPY_BUFSIZE)
                if not data:
                    if self._got_any and self._d.eof:
                        return 0
                    raise CorruptPackage("%s: truncated bzip2 stream" % self._what)
            self._got_any = True
            try:
                self._pending = self._d.decompress(data)
            except (OSError, ValueError, EOFError) as e:
                raise CorruptPackage("%s: corrupt bzip2 stream (%s)" % (self._what, e)) from e
        n = min(len(b), len(self._pending))
        b[:n] = self._pending[:n]
        self._pending = self._pending[n:]
        return n


def extract_stream(entry, payload, dest, libzstd=None):
    """Extract `payload` (the stored bytes of `entry`) into the existing empty directory
    `dest`, checking the stored sha256/size and info/paths.json. Raises PackageError."""
    want = Package(entry)
    pkg = want.label
    digests = {}
    files = _Files(pkg, dest, digests)
    src = _HashingReader(payload, files.stored_update)
    try:
        _extract_any(pkg, want.encoding, src, dest, digests, libzstd, files)
        src.drain()
    finally:
        files.close()
    got_sha, want_sha, want_size = files.stored_sha.hexdigest(), want.stored_sha256, want.stored_size
    if (want_sha and got_sha != want_sha) or (want_size is not None and src.size != want_size):
        raise CorruptPackage(
            "%s: the stored package is damaged: sha256 %s, %d bytes, but the lock says sha256 %s, "
            "%s bytes; the archive was altered or truncated, rebuild or copy it again"
            % (pkg, got_sha, src.size, want_sha, want_size))
    verify_paths(pkg, dest, digests)
    return digests


def _extract_any(pkg, encoding, src, dest, digests, libzstd, files):
    try:
        if encoding == "conda":
            _extract_conda_zip(pkg, src, dest, digests, libzstd, files)
        elif encoding == "tar.zst":
            dec = zstd.open_reader(io.BufferedReader(_RawAdapter(src), COPY_BUFSIZE),
                                   libzstd=libzstd, name=pkg)
            _extract_tar(pkg, dec, dest, digests, pkg, files)
            while dec.read(COPY_BUFSIZE):
                pass
        elif encoding == "tar.bz2":
            dec = io.BufferedReader(_Bz2Reader(src, pkg), COPY_BUFSIZE)
            _extract_tar(pkg, dec, dest, digests, pkg, files)
            while dec.read(COPY_BUFSIZE):
                pass
        else:
            raise PackageError("%s: unknown package encoding %r" % (pkg, encoding))
    except ZstdError as e:
        raise PackageError("%s: %s" % (pkg, e)) from e


class _RawAdapter(io.RawIOBase):
    def __init__(self, f):
        io.RawIOBase.__init__(self)
        self._f = f

    def readable(self):
        return True

    def readinto(self, b):
        data = self._f.read(len(b))
        n = len(data)
        b[:n] = data
        return n


def read_paths(pkg, pkgdir):
    """The package's paths as a list of dicts in the paths.json (version 1) shape, from
    `info/paths.json`, or from the old `info/files` + `info/has_prefix`."""
    pj = os.path.join(pkgdir, "info", "paths.json")
    if os.path.isfile(pj):
        try:
            with open(pj, "rb") as f:
                data = json.loads(f.read().decode("utf-8"))
            paths = data["paths"]
        except (ValueError, KeyError, TypeError) as e:
            raise PackageError("%s: info/paths.json is not valid (%s)" % (pkg, e)) from e
        for p in paths:
            if not isinstance(p, dict) or "_path" not in p:
                raise PackageError("%s: info/paths.json has an entry without _path: %r" % (pkg, p))
            pt = p.get("path_type", "hardlink")
            if pt not in ("hardlink", "softlink", "directory"):
                raise PackageError("%s: info/paths.json: %s has unknown path_type %r (known: "
                                   "hardlink, softlink, directory)" % (pkg, p["_path"], pt))
        return paths
    files_path = os.path.join(pkgdir, "info", "files")
    if not os.path.isfile(files_path):
        raise PackageError("%s: has neither info/paths.json nor info/files: not a conda package"
                           % pkg)
    has_prefix = {}
    hp = os.path.join(pkgdir, "info", "has_prefix")
    if os.path.isfile(hp):
        with open(hp, "rb") as f:
            for line in f.read().decode("utf-8").splitlines():
                placeholder, mode, path = parse_has_prefix_line(line)
                if path:
                    has_prefix[path] = (placeholder, mode)
    no_link = set()
    nl = os.path.join(pkgdir, "info", "no_link")
    if os.path.isfile(nl):
        with open(nl, "rb") as f:
            no_link = set(l.strip() for l in f.read().decode("utf-8").splitlines() if l.strip())
    out = []
    with open(files_path, "rb") as f:
        for line in f.read().decode("utf-8").splitlines():
            rel = line.strip()
            if not rel:
                continue
            full = os.path.join(pkgdir, rel)
            p = {"_path": rel,
                 "path_type": "softlink" if os.path.islink(full) else "hardlink"}
            if rel in has_prefix:
                p["prefix_placeholder"], p["file_mode"] = has_prefix[rel]
            if rel in no_link:
                p["no_link"] = True
            out.append(p)
    return out


# conda-build's historical default placeholder (info/has_prefix lines with just a path)
DEFAULT_PLACEHOLDER = "/opt/anaconda1anaconda2anaconda3"


def parse_has_prefix_line(line):
    """`placeholder mode path`, `path` alone (default placeholder, text), quotes allowed."""
    line = line.strip()
    if not line:
        return None, None, None
    import shlex
    try:
        parts = shlex.split(line, posix=True)
    except ValueError:
        parts = line.split()
    if len(parts) == 1:
        return DEFAULT_PLACEHOLDER, "text", parts[0]
    if len(parts) == 3:
        return parts[0], parts[1], parts[2]
    raise ValueError("bad info/has_prefix line %r" % line)


def verify_paths(pkg, pkgdir, digests):
    """Every paths.json entry must exist with the declared type, size and sha256."""
    for p in read_paths(pkg, pkgdir):
        rel = p["_path"]
        full = os.path.join(pkgdir, rel)
        pt = p.get("path_type", "hardlink")
        if pt == "directory":
            continue
        try:
            is_link = stat.S_ISLNK(os.lstat(full).st_mode)
        except OSError:
            is_link = None
        if pt == "softlink":
            if not is_link:
                raise PackageError("%s: info/paths.json lists %s as a softlink, but the package "
                                   "has no such symlink" % (pkg, rel))
            continue
        if is_link is None:
            raise PackageError("%s: info/paths.json lists %s, but the package does not contain "
                               "it" % (pkg, rel))
        if is_link:
            continue  # some builders record symlinks as hardlink entries
        got = digests.get(rel)
        if got is None:
            continue
        size = p.get("size_in_bytes")
        if size is not None and int(size) != got[1]:
            raise CorruptPackage("%s: %s is %d bytes, but info/paths.json says %d: the package is "
                               "corrupt" % (pkg, rel, got[1], int(size)))
        sha = p.get("sha256")
        if sha and sha != got[0]:
            raise CorruptPackage("%s: %s has sha256 %s, but info/paths.json says %s: the package is "
                               "corrupt" % (pkg, rel, got[0], sha))


def extract_to_cache(entry, open_payload, pkgs_dir, libzstd=None):
    """pkgs_dir/<stored sha256>/ for `entry`, extracting it first unless present and intact (a
    damaged one is extracted again). It appears atomically, complete and verified; concurrent
    extractors of the same package are safe (see atomic.AtomicDirectory: the first one wins)."""
    key = Package(entry).stored_sha256
    final = os.path.join(pkgs_dir, key)

    def populate(work):
        payload = open_payload(entry)
        try:
            extract_stream(entry, payload, work, libzstd=libzstd)
        finally:
            payload.close()
    # 0o777 minus the umask, like every directory in the package (not mkdtemp's 0o700)
    AtomicDirectory(final, work_prefix=".tmp-%s-" % key[:12], mode=0o777,
                    ready=lambda d: os.path.isdir(d) and cached_package_intact(d)).ensure(populate)
    return final


def cached_package_intact(pkgdir):
    """Cheap check of an extracted package found in the cache: every path of its
    info/paths.json (or info/files) exists, with the recorded size for regular files."""
    try:
        paths = read_paths(os.path.basename(pkgdir), pkgdir)
    except (PackageError, EnvironmentError, ValueError):
        return False
    for p in paths:
        pt = p.get("path_type", "hardlink")
        if pt == "directory":
            continue
        full = os.path.join(pkgdir, p["_path"])
        try:
            st = os.lstat(full)
        except OSError:
            return False
        size = p.get("size_in_bytes")
        if pt == "hardlink" and size is not None and stat.S_ISREG(st.st_mode) \
                and st.st_size != int(size):
            return False
    return True
