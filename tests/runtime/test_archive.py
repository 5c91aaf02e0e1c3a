"""coex_runtime/archive.py's zip reader (struct + zlib, no zipfile) against zipfile's writer:
stored and deflated members, a prefix before the zip (absolute or relative offsets), a comment,
zip64 (a member beyond 4 GiB in a sparse file), and damage reported as such."""
import io
import os
import zipfile
import zlib

import pytest

from coex_runtime import archive as A
from coex_runtime.errors import FormatError


def _read_all(path):
    with open(str(path), "rb") as f:
        members = A.read_directory(f.fileno())
    return {m.name: m for m in members}


def _member_bytes(path, m):
    fd = os.open(str(path), os.O_RDONLY)
    try:
        import struct
        h = os.pread(fd, 30, m.offset)
        n, x = struct.unpack("<HH", h[26:30])
        pos = [m.offset + 30 + n + x]

        def read(k):
            d = os.pread(fd, k, pos[0])
            pos[0] += len(d)
            return d
        if m.method == A.DEFLATED:
            return io.BufferedReader(A._Inflating(read, m, lambda why: FormatError(str(why)))).read()
        return read(m.file_size)
    finally:
        os.close(fd)


@pytest.mark.parametrize("prefix,relative,comment", [(b"", False, b""), (b"#!/bin/sh\n" * 50, False, b""),
                                                     (b"#!/bin/sh\n" * 50, True, b"a comment")])
def test_members_as_zipfile_wrote_them(tmp_path, prefix, relative, comment):
    data = {"a.txt": b"hello\n" * 1000, "dir/b.bin": os.urandom(5000), "empty": b"", "\u00e9t\u00e9.txt": b"x"}
    zpath = tmp_path / "z.zip"
    with open(str(zpath), "wb") as f:
        if not relative:
            f.write(prefix)
        with zipfile.ZipFile(f, "w") as zf:
            for i, (name, body) in enumerate(sorted(data.items())):
                zi = zipfile.ZipInfo(name)
                zi.compress_type = zipfile.ZIP_DEFLATED if i % 2 else zipfile.ZIP_STORED
                zi.external_attr = 0o100755 << 16 if name == "a.txt" else 0o100644 << 16
                zf.writestr(zi, body)
            zf.comment = comment
    if relative:  # a prefix the zip's offsets do not count (cat prefix zip)
        zpath.write_bytes(prefix + zpath.read_bytes())
    members = _read_all(zpath)
    assert sorted(members) == sorted(data)
    for name, body in data.items():
        assert _member_bytes(zpath, members[name]) == body
    assert members["a.txt"].mode == 0o755 and members["empty"].mode == 0o644
    assert min(m.offset for m in members.values()) == len(prefix)


def test_zip64_beyond_4_gib(tmp_path):
    """A zip after 4.5 GiB of holes (a sparse file): its members have zip64 offsets, and its
    end needs the zip64 end record."""
    zpath = tmp_path / "big.zip"
    try:
        with open(str(zpath), "wb") as f:
            f.seek(int(4.5 * (1 << 30)))
            with zipfile.ZipFile(f, "w", allowZip64=True) as zf:
                zf.writestr("first", b"1" * 100)
                zf.writestr("far", b"far away")
    except OSError as e:
        pytest.skip("no sparse 4.5 GiB file here: %s" % e)
    members = _read_all(zpath)
    assert members["far"].offset > 1 << 32
    assert _member_bytes(zpath, members["far"]) == b"far away"
    assert _member_bytes(zpath, members["first"]) == b"1" * 100
    with open(str(zpath), "rb") as f:
        f.seek(-200, 2)
        raw = f.read()
    assert b"PK\x06\x06" in raw  # (zipfile did write a zip64 end record)


def test_damage_is_a_value_error_or_reported_by_the_reader(tmp_path):
    zpath = tmp_path / "z.zip"
    with zipfile.ZipFile(str(zpath), "w") as zf:
        zi = zipfile.ZipInfo("d")
        zi.compress_type = zipfile.ZIP_DEFLATED
        zf.writestr(zi, b"some text " * 500)
    raw = zpath.read_bytes()
    for cut in (1, 22, len(raw) // 2):
        (tmp_path / "cut.zip").write_bytes(raw[:-cut])
        with pytest.raises(ValueError):
            _read_all(tmp_path / "cut.zip")
    m = _read_all(zpath)["d"]
    bad = bytearray(raw)
    bad[m.offset + 30 + 1 + m.compress_size // 2] ^= 0x55
    (tmp_path / "bad.zip").write_bytes(bytes(bad))
    with pytest.raises(FormatError):
        _member_bytes(tmp_path / "bad.zip", m)
    assert zlib.crc32(b"some text " * 500) & 0xFFFFFFFF == m.crc
