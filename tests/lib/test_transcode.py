import bz2
import io
import tarfile

import pytest
import zstandard

from coex.lib.errors import CoexError
from coex.lib.transcode import transcode


def members(tf):
    out = []
    for ti in tf:
        data = tf.extractfile(ti).read() if ti.isreg() else None
        out.append((ti.name, ti.type, ti.mode, ti.linkname, int(ti.mtime), data))
    return out


def read_bz2(path):
    with tarfile.open(path, "r:bz2") as tf:
        return members(tf)


def read_zst(path):
    raw = zstandard.ZstdDecompressor().stream_reader(open(path, "rb"))
    with tarfile.open(fileobj=raw, mode="r|") as tf:
        return members(tf)


@pytest.mark.parametrize("name", ["libtiny", "oldstyle"])
def test_deterministic_and_identical_content(tiny_channel, tmp_path, name):
    src = tiny_channel.file(name, version="1.0" if name == "libtiny" else None)
    assert src.name.endswith(".tar.bz2")
    a, b = tmp_path / "a.tar.zst", tmp_path / "b.tar.zst"
    transcode(src, a, 3)
    transcode(src, b, 3)
    assert a.read_bytes() == b.read_bytes()
    assert read_zst(a) == read_bz2(src)            # same members, order, types, modes, data
    with tarfile.open(fileobj=zstandard.ZstdDecompressor().stream_reader(open(a, "rb")),
                      mode="r|") as tf:
        for ti in tf:
            assert (ti.uid, ti.gid, ti.uname, ti.gname) == (0, 0, "", "")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.tar.zst", "b.tar.zst"]


def test_metadata_normalised_and_links_kept(tmp_path):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.GNU_FORMAT) as tf:
        ti = tarfile.TarInfo("info/index.json")
        ti.size, ti.uid, ti.gid, ti.uname, ti.mtime = 2, 1000, 1000, "alice", 1234.5
        tf.addfile(ti, io.BytesIO(b"{}"))
        li = tarfile.TarInfo("bin/link")
        li.type, li.linkname, li.uid, li.mode = tarfile.SYMTYPE, "../lib/x", 7, 0o777
        tf.addfile(li)
        ex = tarfile.TarInfo("bin/tool")
        ex.size, ex.mode = 3, 0o755
        tf.addfile(ex, io.BytesIO(b"#!x"))
        hl = tarfile.TarInfo("bin/tool2")
        hl.type, hl.linkname, hl.mode = tarfile.LNKTYPE, "bin/tool", 0o755
        tf.addfile(hl)
    src = tmp_path / "x-1-0.tar.bz2"
    src.write_bytes(bz2.compress(buf.getvalue()))
    transcode(src, tmp_path / "out.tar.zst", 5)
    got = read_zst(tmp_path / "out.tar.zst")
    assert got == [("info/index.json", tarfile.REGTYPE, 0o644, "", 1234, b"{}"),
                   ("bin/link", tarfile.SYMTYPE, 0o777, "../lib/x", 0, None),
                   ("bin/tool", tarfile.REGTYPE, 0o755, "", 0, b"#!x"),
                   ("bin/tool2", tarfile.LNKTYPE, 0o755, "bin/tool", 0, None)]


def test_level_changes_bytes_not_content(tiny_channel, tmp_path):
    src = tiny_channel.file("oldstyle")
    transcode(src, tmp_path / "l1.tar.zst", 1)
    transcode(src, tmp_path / "l19.tar.zst", 19)
    assert read_zst(tmp_path / "l1.tar.zst") == read_zst(tmp_path / "l19.tar.zst")


def test_corrupt_input(tmp_path):
    src = tmp_path / "bad-1-0.tar.bz2"
    src.write_bytes(b"BZh91AY&SY" + b"\x00" * 100)
    with pytest.raises(CoexError) as e:
        transcode(src, tmp_path / "out.tar.zst")
    assert "bad-1-0.tar.bz2" in str(e.value) and "not a valid .tar.bz2" in str(e.value)
    assert not (tmp_path / "out.tar.zst").exists()
    assert [p.name for p in tmp_path.iterdir()] == ["bad-1-0.tar.bz2"]


def test_missing_input(tmp_path):
    with pytest.raises(CoexError, match="Cannot transcode"):
        transcode(tmp_path / "nope.tar.bz2", tmp_path / "o.tar.zst")
