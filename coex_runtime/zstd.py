"""Streaming zstd decompression with the standard library only (CPython 3.6+).

Backends, in order:
  1. `compression.zstd` (CPython 3.14+);
  2. ctypes over a libzstd: the path the caller passes (the archive carries the target
     platform's `libzstd.so.1`), then the host's `libzstd.so.1`.

`open_reader(fileobj, libzstd=None)` returns a readable, non-seekable binary file object that
`tarfile.open(fileobj=..., mode="r|")` can stream.  Memory stays bounded (one input and one
output buffer of libzstd's recommended sizes).  ctypes releases the GIL during each
ZSTD_decompressStream call, so several threads decompress in parallel.
"""

import ctypes
import ctypes.util
import io
import threading

from coex_runtime.errors import ZstdError


class _InBuffer(ctypes.Structure):
    _fields_ = [("src", ctypes.c_void_p), ("size", ctypes.c_size_t), ("pos", ctypes.c_size_t)]


class _OutBuffer(ctypes.Structure):
    _fields_ = [("dst", ctypes.c_void_p), ("size", ctypes.c_size_t), ("pos", ctypes.c_size_t)]


_LIB_LOCK = threading.Lock()
_LIBS = {}  # path or "" (host) -> loaded CDLL or the error message why not


_SIGNATURES = {  # function: (restype, argtypes)
    "ZSTD_createDStream": (ctypes.c_void_p, []),
    "ZSTD_freeDStream": (ctypes.c_size_t, [ctypes.c_void_p]),
    "ZSTD_initDStream": (ctypes.c_size_t, [ctypes.c_void_p]),
    "ZSTD_decompressStream": (ctypes.c_size_t, [ctypes.c_void_p, ctypes.POINTER(_OutBuffer),
                                                ctypes.POINTER(_InBuffer)]),
    "ZSTD_isError": (ctypes.c_uint, [ctypes.c_size_t]),
    "ZSTD_getErrorName": (ctypes.c_char_p, [ctypes.c_size_t]),
    "ZSTD_DStreamInSize": (ctypes.c_size_t, []),
    "ZSTD_DStreamOutSize": (ctypes.c_size_t, []),
}


def _bind(lib):
    for name, (restype, argtypes) in _SIGNATURES.items():
        fn = getattr(lib, name)
        fn.restype, fn.argtypes = restype, argtypes
    return lib


def _load_one(path):
    with _LIB_LOCK:
        if path in _LIBS:
            return _LIBS[path]
        try:
            lib = _bind(ctypes.CDLL(path))
        except (OSError, AttributeError) as e:
            lib = "%s: %s" % (path, e)
        _LIBS[path] = lib
        return lib


def load_libzstd(libzstd=None):  # type: (Optional[str]) -> ctypes.CDLL
    """The ctypes libzstd handle: `libzstd` (a path) first, then the host's libzstd.so.1.
    Raises ZstdError listing every place tried and why it failed."""
    tried = []
    candidates = []
    if libzstd:
        candidates.append(str(libzstd))
    candidates.append("libzstd.so.1")
    for cand in candidates:
        lib = _load_one(cand)
        if not isinstance(lib, str):
            return lib
        tried.append(lib)
    # only now: find_library runs `ldconfig -p` (a subprocess) on every call
    found = ctypes.util.find_library("zstd")
    if found and found not in candidates:
        lib = _load_one(found)
        if not isinstance(lib, str):
            return lib
        tried.append(lib)
    raise ZstdError(
        "no zstd decoder available: this Python has no `compression.zstd` module (3.14+) and "
        "no usable libzstd was found (tried: %s). The .coex archive normally carries its own "
        "libzstd.so.1 for the target platform; install libzstd (e.g. `apt-get install "
        "libzstd1`) or run with a Python >= 3.14." % "; ".join(tried))


def stdlib_zstd():  # type: () -> Optional[ModuleType]
    try:
        from compression import zstd as czstd  # type: ignore  # CPython 3.14+
        return czstd
    except ImportError:
        return None


class _CtypesZstdReader(io.RawIOBase):
    """Raw reader decompressing `fileobj` with libzstd's streaming API."""

    def __init__(self, fileobj, lib, name=None):
        io.RawIOBase.__init__(self)
        self._src = fileobj
        self._lib = lib
        self._name = name or getattr(fileobj, "name", "zstd stream")
        self._ds = lib.ZSTD_createDStream()
        if not self._ds:
            raise ZstdError("ZSTD_createDStream failed (out of memory?)")
        self._check(lib.ZSTD_initDStream(self._ds))
        self._insize = max(int(lib.ZSTD_DStreamInSize()), 128 * 1024)
        self._inbuf = ctypes.create_string_buffer(self._insize)
        self._in = _InBuffer(ctypes.cast(self._inbuf, ctypes.c_void_p), 0, 0)
        self._out = _OutBuffer(None, 0, 0)
        self._eof_in = False
        self._frame_done = True   # no frame started yet
        self._seen_data = False
        self._ret = 0

    def _check(self, ret):
        if self._lib.ZSTD_isError(ret):
            raise ZstdError("corrupt zstd stream in %s: %s" % (
                self._name, self._lib.ZSTD_getErrorName(ret).decode("ascii", "replace")))
        return ret

    def readable(self):
        return True

    def _fill(self):
        data = self._src.read(self._insize)
        if not data:
            self._eof_in = True
            return
        n = len(data)
        ctypes.memmove(self._inbuf, data, n)
        self._in.size = n
        self._in.pos = 0
        self._seen_data = True

    def readinto(self, b):
        want = len(b)
        if want == 0:
            return 0
        if self._ds is None:
            raise ValueError("I/O operation on closed zstd reader")
        mv = memoryview(b).cast("B")
        arr = (ctypes.c_char * want).from_buffer(mv)
        out = self._out
        out.dst = ctypes.addressof(arr)
        out.size = want
        out.pos = 0
        lib = self._lib
        try:
            while out.pos == 0:
                if self._in.pos >= self._in.size:
                    if self._eof_in:
                        break
                    self._fill()
                    if self._eof_in:
                        break
                ret = lib.ZSTD_decompressStream(self._ds, ctypes.byref(out), ctypes.byref(self._in))
                self._check(ret)
                self._ret = ret
            if out.pos == 0 and self._eof_in:
                # End of input: the last frame must be complete (ret == 0).
                if not self._seen_data:
                    raise ZstdError("empty zstd stream in %s" % self._name)
                if self._ret != 0:
                    raise ZstdError("truncated zstd stream in %s" % self._name)
            return out.pos
        finally:
            out.dst = None
            del arr
            mv.release()

    def close(self):
        if self._ds is not None:
            self._lib.ZSTD_freeDStream(self._ds)
            self._ds = None
        io.RawIOBase.close(self)

    def __del__(self):
        try:
            self.close()
        except Exception:
            pass


class _StdlibZstdReader(io.RawIOBase):
    """compression.zstd wrapper reporting errors as ZstdError."""

    def __init__(self, fileobj, czstd, name=None):
        io.RawIOBase.__init__(self)
        self._name = name or getattr(fileobj, "name", "zstd stream")
        self._f = czstd.ZstdFile(fileobj, mode="rb")
        self._err = czstd.ZstdError

    def readable(self):
        return True

    def readinto(self, b):
        try:
            return self._f.readinto(b)
        except (self._err, EOFError) as e:
            raise ZstdError("corrupt zstd stream in %s: %s" % (self._name, e)) from e

    def close(self):
        self._f.close()
        io.RawIOBase.close(self)


def backend(libzstd=None):  # type: (Optional[str]) -> str
    """Describe which backend `open_reader` would use (for diagnostics)."""
    if stdlib_zstd() is not None:
        return "compression.zstd"
    lib = load_libzstd(libzstd)
    return "ctypes:%s" % getattr(lib, "_name", "libzstd")


def open_reader(fileobj, libzstd=None, name=None, buffer_size=1 << 20):
    # type: (IO[bytes], Optional[str], Optional[str], int) -> IO[bytes]
    """A buffered, readable file object yielding the decompressed bytes of `fileobj`.
    Corrupt or truncated input raises ZstdError naming `name`."""
    czstd = stdlib_zstd()
    if czstd is not None:
        raw = _StdlibZstdReader(fileobj, czstd, name)
    else:
        raw = _CtypesZstdReader(fileobj, load_libzstd(libzstd), name)
    return io.BufferedReader(raw, buffer_size)
