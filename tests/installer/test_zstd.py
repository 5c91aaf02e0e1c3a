"""coex_runtime/zstd.py: streaming zstd decompression (ctypes over libzstd, or compression.zstd)."""
import io
import os
import threading

import pytest
import zstandard

from coex_runtime import zstd


def _frames(*parts, level=3):
    cctx = zstandard.ZstdCompressor(level=level, write_checksum=True)
    return b"".join(cctx.compress(p) for p in parts)


def test_zstd_stream_multi_frame_and_bounded_reads():
    a, b = os.urandom(300000) * 2, b"hello " * 200000
    r = zstd.open_reader(io.BytesIO(_frames(a, b)))
    got = []
    while True:
        block = r.read(65536)
        if not block:
            break
        assert len(block) <= 65536
        got.append(block)
    assert b"".join(got) == a + b


@pytest.mark.parametrize("damage,word", [
    (lambda c: c[:-50], "truncated"),
    (lambda c: c[:20] + bytes(x ^ 0x5A for x in c[20:]), "corrupt"),
    (lambda c: b"not zstd at all" * 10, "corrupt"),
    (lambda c: b"", "empty"),
])
def test_zstd_bad_streams_name_the_stream(damage, word):
    c = _frames(os.urandom(100000))
    with pytest.raises(zstd.ZstdError) as ei:
        zstd.open_reader(io.BytesIO(damage(c)), name="pkg-x.tar.zst").read()
    assert word in str(ei.value) and "pkg-x.tar.zst" in str(ei.value)


def test_zstd_libzstd_path_first_then_host(tmp_path, monkeypatch):
    host = zstd.load_libzstd()
    # a path that does not load falls back to the host's library
    assert zstd.load_libzstd(str(tmp_path / "missing.so")) is host
    # nothing at all: a clear error listing what was tried
    monkeypatch.setattr(zstd, "_load_one", lambda p: "%s: cannot open" % p)
    monkeypatch.setattr(zstd.ctypes.util, "find_library", lambda n: None)
    with pytest.raises(zstd.ZstdError) as ei:
        zstd.load_libzstd(str(tmp_path / "missing.so"))
    msg = str(ei.value)
    assert "missing.so" in msg and "libzstd.so.1" in msg and "compression.zstd" in msg


def test_zstd_explicit_library_is_used(tmp_path):
    import ctypes.util
    import shutil

    src = "/lib/x86_64-linux-gnu/libzstd.so.1"
    if not os.path.exists(src):
        src = ctypes.util.find_library("zstd")
    copy = tmp_path / "libzstd.so.1"
    shutil.copy(os.path.realpath(src), str(copy))
    lib = zstd.load_libzstd(str(copy))
    assert lib._name == str(copy)
    data = b"abc" * 100000
    assert zstd.open_reader(io.BytesIO(_frames(data)), libzstd=str(copy)).read() == data


def test_zstd_threads_decompress_in_parallel():
    blobs = [os.urandom(50000) * 20 for _ in range(4)]
    comp = [_frames(b) for b in blobs]
    out = [None] * 4

    def work(i):
        out[i] = zstd.open_reader(io.BytesIO(comp[i])).read()

    ts = [threading.Thread(target=work, args=(i,)) for i in range(4)]
    [t.start() for t in ts]
    [t.join() for t in ts]
    assert out == blobs


def test_stdlib_zstd_backend_is_preferred(monkeypatch):
    """On CPython 3.14+ `compression.zstd` is used (not in this image: a stand-in with the same
    ZstdFile/ZstdError surface, built on zstandard, checks the wrapper and error mapping)."""
    import types

    class ZstdError(Exception):
        pass

    class ZstdFile(io.RawIOBase):
        def __init__(self, f, mode="r"):
            assert mode in ("r", "rb")
            self._r = zstandard.ZstdDecompressor().stream_reader(f, read_across_frames=True)

        def readinto(self, b):
            try:
                return self._r.readinto(b)
            except zstandard.ZstdError as e:
                raise ZstdError(str(e))

    fake = types.SimpleNamespace(ZstdFile=ZstdFile, ZstdError=ZstdError)
    monkeypatch.setattr(zstd, "stdlib_zstd", lambda: fake)
    monkeypatch.setattr(zstd, "load_libzstd", lambda *a: pytest.fail("libzstd must not be loaded"))
    data = b"stdlib backend " * 50000
    assert zstd.backend() == "compression.zstd"
    assert zstd.open_reader(io.BytesIO(_frames(data, data))).read() == data + data
    bad = _frames(data)
    with pytest.raises(zstd.ZstdError) as ei:
        zstd.open_reader(io.BytesIO(bad[:20] + b"\xff" * 200 + bad[220:]), name="x.tar.zst").read()
    assert "x.tar.zst" in str(ei.value)


def test_zstd_host_library_found_without_a_subprocess(monkeypatch):
    """libzstd.so.1 loads by name: ctypes.util.find_library (which runs `ldconfig -p` in a
    subprocess, once per stream before) is not consulted."""
    zstd.load_libzstd()  # the host's library is there

    def boom(name):
        raise AssertionError("find_library called")
    monkeypatch.setattr(zstd.ctypes.util, "find_library", boom)
    data = b"abc" * 1000
    assert zstd.open_reader(io.BytesIO(_frames(data))).read() == data
