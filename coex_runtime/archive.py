"""Reading an archive (``format.open_archive``): a .coex file (sh preamble + zip) or an unzipped
directory. Whatever is wrong with its bytes (a zip directory that cannot be read, a member that
does not inflate or fails its CRC, a record that is not the one the preamble's archive id names)
is a FormatError saying the archive is damaged, never a zlib traceback.

The zip is read here with ``struct`` and ``zlib`` (``read_directory``, ``_Inflating``): the
zipfile module takes ~25 ms to import (pathlib, shutil, threading, bz2, lzma...), a good part of a
first run that links packages already unpacked; the archive needs stored and deflated members,
zip64 for big ones, and offsets counted from the start of the file (after the sh preamble)."""

import io
import os
import stat
import struct
import zlib

from coex_runtime.errors import FormatError
from coex_runtime.format import (APP_DIR, INFO_NAME, Package, archive_id, load_info, short_id)
from coex_runtime.fs import COPY_BUFSIZE, Bounded, copy_hashed
from coex_runtime.preamble import ID_FIELD

STORED, DEFLATED = 0, 8


def damaged(path, what, why):  # type: (str, str, object) -> FormatError
    """The error for a part of the archive at ``path`` that is not what the record says."""
    return FormatError("%s: %s is damaged (%s): the archive was truncated or altered; download or "
                       "copy it again" % (path, what, why))


class Member(object):
    """A zip member as the central directory gives it (``offset`` of its local header)."""

    __slots__ = ("name", "raw", "offset", "method", "compress_size", "file_size", "crc", "mode")

    def __init__(self, name, raw, offset, method, compress_size, file_size, crc, mode):
        self.name, self.raw, self.offset, self.method = name, raw, offset, method
        self.compress_size, self.file_size, self.crc, self.mode = compress_size, file_size, crc, mode


def read_directory(fd):  # type: (int) -> List[Member]
    """The members of the zip in the file ``fd`` (in directory order); ValueError when its end
    record or directory cannot be read."""
    size = os.fstat(fd).st_size
    tail_at = max(0, size - 65558)  # the end record (22 bytes) and at most a 64 KiB comment
    tail = os.pread(fd, size - tail_at, tail_at)
    at = tail.rfind(b"PK\x05\x06")
    if at < 0 or len(tail) - at < 22 or len(tail) - at != 22 + struct.unpack("<H", tail[at + 20:at + 22])[0]:
        raise ValueError("no zip end record at its end (truncated?)")
    end = tail_at + at
    count, cd_size, cd_at = struct.unpack("<10xHII", tail[at:at + 20])
    if count == 0xFFFF or 0xFFFFFFFF in (cd_size, cd_at):  # zip64: its end record comes first
        rec = os.pread(fd, 56, end - 76)
        if rec[:4] != b"PK\x06\x06":
            raise ValueError("no zip64 end record")
        end -= 76
        count, cd_size, cd_at = struct.unpack("<32xQQQ", rec)
    concat = end - cd_size - cd_at  # bytes before the zip when its offsets do not count them
    if concat < 0:
        raise ValueError("a zip directory beyond its end")
    cd = os.pread(fd, cd_size, cd_at + concat)
    if len(cd) != cd_size:
        raise ValueError("a short zip directory")
    out, i = [], 0
    while i < len(cd):
        if cd[i:i + 4] != b"PK\x01\x02":
            raise ValueError("a bad zip directory entry")
        flags, method, crc, csize, usize, nl, el, cl, attr, off = struct.unpack(
            "<8xHH4xIIIHHH4xII", cd[i:i + 46])
        raw = cd[i + 46:i + 46 + nl]
        name = raw.decode("utf-8" if flags & 0x800 else "cp437")
        extra = cd[i + 46 + nl:i + 46 + nl + el]
        if 0xFFFFFFFF in (usize, csize, off):
            usize, csize, off = _zip64(extra, usize, csize, off)
        out.append(Member(name, raw, off + concat, method, csize, usize, crc, (attr >> 16) & 0o7777))
        i += 46 + nl + el + cl
    if len(out) != count:
        raise ValueError("%d zip directory entries, its end record says %d" % (len(out), count))
    return out


def _zip64(extra, usize, csize, off):
    """The 64-bit sizes and offset of a directory entry (its zip64 extra field)."""
    j = 0
    while j + 4 <= len(extra):
        kind, n = struct.unpack("<HH", extra[j:j + 4])
        if kind == 1:
            values = list(struct.unpack("<%dQ" % (n // 8), extra[j + 4:j + 4 + n - n % 8]))
            if usize == 0xFFFFFFFF:
                usize = values.pop(0)
            if csize == 0xFFFFFFFF:
                csize = values.pop(0)
            if off == 0xFFFFFFFF:
                off = values.pop(0)
            return usize, csize, off
        j += 4 + n
    raise ValueError("a zip64 entry without its zip64 field")


class _Inflating(io.RawIOBase):
    """A deflated member's bytes, inflated from ``read(n)`` of its compressed bytes; the length
    and CRC are checked at its end."""

    def __init__(self, read, member, fail):
        io.RawIOBase.__init__(self)
        self._read, self._m, self._fail = read, member, fail
        self._z = zlib.decompressobj(-15)
        self._left = member.compress_size
        self._buf, self._n, self._crc, self._done = b"", 0, 0, False

    def readable(self):
        return True

    def readinto(self, b):
        while not self._buf and not self._done:
            if self._left > 0:
                chunk = self._read(min(self._left, COPY_BUFSIZE))
                if not chunk:
                    raise self._fail("it ends early")
                self._left -= len(chunk)
                try:
                    self._buf = self._z.decompress(chunk)
                except zlib.error as e:
                    raise self._fail(e)
            else:
                self._buf = self._z.flush()
                self._done = True
                if not self._z.eof or self._n + len(self._buf) != self._m.file_size:
                    raise self._fail("%d bytes inflated, the zip directory says %d"
                                     % (self._n + len(self._buf), self._m.file_size))
            if self._buf:
                self._n += len(self._buf)
                self._crc = zlib.crc32(self._buf, self._crc)
            if self._done and self._crc & 0xFFFFFFFF != self._m.crc:
                raise self._fail("Bad CRC-32")
        k = min(len(b), len(self._buf))
        b[:k] = self._buf[:k]
        self._buf = self._buf[k:]
        return k


class Archive(object):
    """A coex archive opened for reading. ``info`` is the validated COEX-INFO record, ``id`` the
    archive id (its sha256), ``head`` the sh preamble's bytes (b"" for a directory); for a file,
    the record is checked against the id its preamble carries."""

    def __init__(self, path):
        self.path = os.path.abspath(path)
        self.is_dir = os.path.isdir(self.path)
        self._zip = self._file = None
        self.head = b""
        if not self.is_dir:
            try:
                # One descriptor for the archive's whole life: members are read from the file that
                # was opened, whatever happens to the path. (Stored members, which forked install
                # workers read, use pread: the shared file offset is never moved for them.)
                self._file = open(self.path, "rb")
                members = read_directory(self._file.fileno())
                self._zip = dict((m.name, m) for m in members)
                self._names = [m.name for m in members]
                self.head = os.pread(self._file.fileno(), min(m.offset for m in members), 0) \
                    if members else b""
            except Exception as e:  # noqa: B902 - ValueError, OSError, and what a damaged directory raises
                self.close()
                raise FormatError("%s is not a readable coex archive (%s): it may be truncated or "
                                  "damaged; download or copy it again" % (self.path, e)) from e
        try:
            self.info_bytes = self.read(INFO_NAME)
        except KeyError:
            raise FormatError("%s has no %s record: it is not a coex archive" % (self.path, INFO_NAME)) from None
        self.info = load_info(self.info_bytes)
        self.id = archive_id(self.info_bytes)
        if not self.is_dir and self.preamble_id() != short_id(self.id):
            raise damaged(self.path, "its record " + INFO_NAME, "it does not match the archive id %s "
                          "in its sh preamble" % self.preamble_id())

    def preamble_id(self):  # type: () -> Optional[str]
        """The archive id (16 hex digits) the sh preamble carries."""
        at = self.head.find(ID_FIELD)
        return self.head[at + len(ID_FIELD):at + len(ID_FIELD) + 16].decode("ascii", "replace") \
            if at >= 0 else None

    def close(self):  # type: () -> None
        if self._file is not None:
            self._file.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def names(self):  # type: () -> List[str]
        if self.is_dir:
            out = []
            for root, _, files in os.walk(self.path):
                for f in files:
                    out.append(os.path.relpath(os.path.join(root, f), self.path).replace(os.sep, "/"))
            return sorted(out)
        return list(self._names)

    def read(self, name):  # type: (str) -> bytes
        if self.is_dir:
            p = os.path.join(self.path, *name.split("/"))
            if not os.path.isfile(p):
                raise KeyError(name)
            with open(p, "rb") as f:
                return f.read()
        with self.open(name) as f:
            return f.read()

    def mode(self, name):  # type: (str) -> int
        """Unix permission bits of a member."""
        if self.is_dir:
            return stat.S_IMODE(os.stat(os.path.join(self.path, *name.split("/"))).st_mode)
        return stat.S_IMODE(self._zip[name].mode) or 0o644

    def open(self, name):  # type: (str) -> IO[bytes]
        """A binary file object over a member's bytes (KeyError when there is none), inflated
        when deflated. Read with ``os.pread`` on the archive's one open descriptor: no shared
        file position (forked workers read different members at once), and the bytes come from
        the file that was opened even if a rebuild renames a new archive over the path."""
        if self.is_dir:
            return open(os.path.join(self.path, *name.split("/")), "rb")
        m = self._zip[name]
        fd = self._file.fileno()
        header = os.pread(fd, 30, m.offset)
        if len(header) != 30 or header[:4] != b"PK\x03\x04":
            raise damaged(self.path, "member " + name, "a bad local header")
        name_len, extra_len = struct.unpack("<HH", header[26:30])
        if os.pread(fd, name_len, m.offset + 30) != m.raw:
            raise damaged(self.path, "member " + name, "its local header names another file")
        pos = [m.offset + 30 + name_len + extra_len]

        def read(n):
            data = os.pread(fd, n, pos[0])
            pos[0] += len(data)
            return data
        if m.method == DEFLATED:
            return io.BufferedReader(_Inflating(read, m, lambda why: damaged(
                self.path, "member " + name, why)), COPY_BUFSIZE)
        if m.method != STORED:
            raise damaged(self.path, "member " + name, "compression method %d" % m.method)
        return io.BufferedReader(Bounded(read, m.file_size, lambda: FormatError(
            "the archive ends inside a stored member: it is truncated")), COPY_BUFSIZE)

    def verify(self, name, sha256, size=None):  # type: (str, str, Optional[int]) -> None
        """Stream a member and check its sha256 (and size); raise FormatError on mismatch."""
        try:
            with self.open(name) as f:
                got, n = copy_hashed(f)
        except KeyError:
            raise damaged(self.path, "member " + name, "it is missing") from None
        if got != sha256 or (size is not None and n != size):
            raise damaged(self.path, "member " + name, "sha256 %s, %d bytes; the record says %s%s"
                          % (got, n, sha256, "" if size is None else ", %d bytes" % size))

    def verify_package(self, entry):  # type: (dict) -> None
        """``verify`` a package's stored member against its record."""
        p = Package(entry)
        self.verify(p.raw["member"], p.stored_sha256, p.stored_size)

    def app_members(self):  # type: () -> List[Tuple[str, str]]
        """[(relpath, member name)] of the app layer."""
        return [(n[len(APP_DIR):], n) for n in self.names() if n.startswith(APP_DIR) and not n.endswith("/")]
