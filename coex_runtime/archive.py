"""Reading an archive (``format.open_archive``): a .coex file (sh preamble + zip) or an unzipped
directory. Whatever is wrong with its bytes (a zip directory that cannot be read, a member that
does not inflate or fails its CRC, a record that is not the one the preamble's archive id names)
is a FormatError saying the archive is damaged, never a zipfile or zlib traceback."""

import io
import os
import stat
import struct
import zipfile

from coex_runtime.errors import FormatError
from coex_runtime.format import (APP_DIR, INFO_NAME, Package, archive_id, load_info, short_id)
from coex_runtime.fs import COPY_BUFSIZE, Bounded, copy_hashed
from coex_runtime.preamble import ID_FIELD


def damaged(path, what, why):  # type: (str, str, object) -> FormatError
    """The error for a part of the archive at ``path`` that is not what the record says."""
    return FormatError("%s: %s is damaged (%s): the archive was truncated or altered; download or "
                       "copy it again" % (path, what, why))


class _CheckedZipReader(io.RawIOBase):
    """A compressed member: any error inflating it (zlib, CRC, a short stream) becomes a
    FormatError that says the archive is damaged."""

    def __init__(self, path, name, member):
        self._path, self._name, self._member = path, name, member

    def readable(self):
        return True

    def readinto(self, b):
        try:
            data = self._member.read(len(b))
        except Exception as e:  # noqa: B902 - zipfile.BadZipFile, zlib.error, EOFError, ...
            raise damaged(self._path, "member " + self._name, e) from e
        b[: len(data)] = data
        return len(data)

    def close(self):
        if not self.closed:
            self._member.close()
        super().close()


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
                self._zip = zipfile.ZipFile(self._file)
                infos = self._zip.infolist()
                self.head = os.pread(self._file.fileno(), min(zi.header_offset for zi in infos), 0) \
                    if infos else b""
            except Exception as e:  # noqa: B902 - BadZipFile, OSError, and what a damaged directory raises
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
        if self._zip is not None:
            self._zip.close()
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
        return self._zip.namelist()

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
        return stat.S_IMODE(self._zip.getinfo(name).external_attr >> 16) or 0o644

    def open(self, name):  # type: (str) -> IO[bytes]
        """A binary file object over a member's stored bytes (KeyError when there is none).
        Stored (uncompressed) members are read with ``os.pread`` on the archive's one open
        descriptor: no zipfile machinery, no shared file position (forked workers read different
        members at once), and the bytes come from the file that was opened even if a rebuild
        renames a new archive over the path."""
        if self.is_dir:
            return open(os.path.join(self.path, *name.split("/")), "rb")
        zi = self._zip.getinfo(name)
        if zi.compress_type != zipfile.ZIP_STORED:
            try:
                member = self._zip.open(zi)
            except Exception as e:  # noqa: B902 - BadZipFile, NotImplementedError (method), ...
                raise damaged(self.path, "member " + name, e) from e
            return io.BufferedReader(_CheckedZipReader(self.path, name, member), COPY_BUFSIZE)
        header = os.pread(self._file.fileno(), 30, zi.header_offset)
        if len(header) != 30 or header[:4] != b"PK\x03\x04":
            raise damaged(self.path, "member " + name, "a bad local header")
        name_len, extra_len = struct.unpack("<HH", header[26:30])
        fd, pos = self._file.fileno(), [zi.header_offset + 30 + name_len + extra_len]

        def read(n):
            data = os.pread(fd, n, pos[0])
            pos[0] += len(data)
            return data
        return io.BufferedReader(Bounded(read, zi.file_size, lambda: FormatError(
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
