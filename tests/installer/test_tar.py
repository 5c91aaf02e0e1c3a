"""coex_runtime/tar.py: the streaming tar reader."""
import io
import os

import pytest

from coex_runtime import tar


def _tar(fmt, members):
    import tarfile

    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=fmt) as tf:
        for name, kind, data, extra in members:
            ti = tarfile.TarInfo(name)
            ti.mtime = 1600000000
            if kind == "file":
                ti.size, ti.mode = len(data), extra or 0o644
                tf.addfile(ti, io.BytesIO(data))
            elif kind == "symlink":
                ti.type, ti.linkname = tarfile.SYMTYPE, data
                tf.addfile(ti)
            elif kind == "dir":
                ti.type, ti.mode = tarfile.DIRTYPE, 0o755
                tf.addfile(ti)
    return buf.getvalue()


@pytest.mark.parametrize("fmt", ["GNU_FORMAT", "PAX_FORMAT", "USTAR_FORMAT"])
def test_tar_reader_formats(fmt):
    import tarfile

    deep = "/".join(["d%02d" % i for i in range(20)])           # 79 chars of directories
    long_name = deep + "/" + "f" * 90                           # > 100: prefix, pax or GNU 'L'
    members = [("lib/", "dir", None, None),
               (long_name, "file", b"long\n", 0o755),
               ("lib/data.bin", "file", os.urandom(70000), None),
               ("lib/link", "symlink", "data.bin", None)]
    if fmt != "USTAR_FORMAT":
        members.append(("lib/long-link", "symlink", "../" + "t" * 120, None))  # GNU 'K' / pax
        members.append(("lib/caf\u00e9.txt", "file", b"utf8\n", None))
    raw = _tar(getattr(tarfile, fmt), members)
    got = []
    for m in tar.iter_tar(io.BufferedReader(io.BytesIO(raw))):
        got.append((m.name.rstrip("/"), m.kind, m.read() if m.kind == "file" else m.linkname or None,
                    m.mtime))
    want = [(n.rstrip("/"), k, d, 1600000000) for n, k, d, _ in members]
    assert got == want


def test_tar_reader_skips_unread_data_and_rejects_damage():
    import tarfile

    raw = _tar(tarfile.PAX_FORMAT, [("a", "file", b"x" * 5000, None), ("b", "file", b"yy", None)])
    names = [m.name for m in tar.iter_tar(io.BytesIO(raw))]  # data never read
    assert names == ["a", "b"]
    bad = bytearray(raw)
    bad[0] ^= 0x41  # the first header's checksum no longer matches
    with pytest.raises(tar.TarError, match="checksum"):
        list(tar.iter_tar(io.BytesIO(bytes(bad))))
    with pytest.raises(tar.TarError, match="truncated"):
        for m in tar.iter_tar(io.BytesIO(raw[:1500])):
            m.read()
    no_end = raw[: raw.index(b"yy") + 512]
    with pytest.raises(tar.TarError, match="end-of-archive"):
        list(tar.iter_tar(io.BytesIO(no_end)))


def test_tar_numbers():
    assert tar._tar_number(b"0000644\0") == 0o644
    assert tar._tar_number(b"\x80" + (8 << 30).to_bytes(11, "big")) == 8 << 30  # base-256
    with pytest.raises(tar.TarError):
        tar._tar_number(b"12x4\0")
