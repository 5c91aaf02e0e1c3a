"""A minimal streaming tar reader (``tarfile``'s stream mode costs ~70 us of Python per member):
``iter_tar(f)`` yields the members of an uncompressed tar stream read sequentially, ustar, POSIX
pax (``x``/``g``: path, linkpath, size, mtime) and GNU long names (``L``/``K``); malformed input
raises TarError."""

from coex_runtime.errors import TarError
from coex_runtime.fs import COPY_BUFSIZE


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


def iter_tar(f):  # type: (IO[bytes]) -> Iterator[_Member]
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
