"""The first bytes of every archive: the POSIX sh preamble, and the Python bootstrap (``BOOT``)
that checks the runtime before running it. Standard library only; the writer renders them
(``render``), the runtime's ``verify`` checks them (``digest``).

The preamble has two parts:

* **warm** (the first lines): find this archive's launcher in the cache (the root as
  ``cache.configured_root`` computes it, then the private fallback roots) and source it; the
  launcher execs the program. No Python, no subprocess.
* **cold** (everything after): a quoted here-document that the shell reads into a variable and
  runs (``eval``) only when its POSIX ``cksum`` (CRC and length) is the one written after it, so
  a damaged archive says so instead of giving a shell syntax error (where ``cksum`` is missing
  it runs unchecked). It waits, when another process is installing this archive, on that
  install's lock (``launch/<id16>.lock``, with ``flock`` when there is one), then takes the
  warm path; else it starts a Python >= 3.6 (the first of python3 and python whose ``-V`` says
  so: starting a Python to run a check costs ~10 ms more; the lock's descriptor is handed to
  it: runs that arrive meanwhile wait on it) with a short ``-c`` that runs ``BOOT``, read from
  the preamble's own bytes after the cold part (the shell never reads them: the here-document
  stays small, and the shell reads it a byte at a time) and checked against its sha256 first.

``BOOT`` (also the archive's ``__main__.py``, for ``python app.coex`` and ``python unzipped-dir/``)
checks, before any runtime module runs: COEX-INFO against the archive id the preamble carries
(16 hex digits of its sha256) and the whole preamble against the record's ``runtime.preamble``
digest (``digest``). Then it runs the runtime from one of two checked sources:

* the code cache: ``<root>/code/<key>-<cache tag>`` (the root as the preamble finds it), the
  runtime's modules compiled by this Python, keyed by the record's ``runtime.files`` sha256s,
  the Python's bytecode magic number and optimization level, and checked against the sha256 it
  carries (damaged or absent: not used, and written again);
* else every runtime module (and ``__main__.py``) checked against the record's
  ``runtime.files`` sha256s and compiled from those checked bytes (never read from the zip
  again); the cold path writes that code to the cache once its root is there (``store_code``:
  best effort, atomically; never the tools, which may not touch the cache).

So only a first run of a new coex runtime with a new Python compiles the runtime (~50 ms);
the zip is read with a few lines of ``struct`` and ``zlib`` (the zipfile module takes ~25 ms
to import). Then it runs ``coex_runtime.main.main``. Anything wrong there is reported as a
damaged archive, an early Ctrl-C ends it by SIGINT without a traceback. BOOT must stay valid
Python 2 (so that ``python2 app.coex`` can say which Python it needs) and hold no single quote.
"""

import hashlib

ID_FIELD = b"\nCOEX_ARCHIVE_ID="
COLD_END = "_COEX_COLD_"

BOOT = r'''# coex archive bootstrap (coex_runtime/preamble.py): check the runtime, then run it
import sys


def _coex_boot():
    import os
    if sys.version_info < (3, 6):
        sys.stderr.write("coex: installing this archive needs Python >= 3.6; %s is %s\n"
                         % (sys.executable, sys.version.split()[0]))
        sys.exit(127)
    if sys.argv[0] == "-c":  # the sh preamble runs: python -c <read BOOT> ARCHIVE ARGS...
        del sys.argv[0]
    path = os.path.abspath(sys.argv[0])
    if sys.path and (sys.path[0] == "" or os.path.abspath(sys.path[0]) == path):
        del sys.path[0]  # the working directory (-c) or the archive: never imported from
    try:
        runtime = _coex_runtime(path)
    except KeyboardInterrupt:
        _coex_interrupted()
    except EnvironmentError as e:
        sys.stderr.write("coex: cannot read the archive %s: %s\n" % (path, e))
        sys.exit(1)
    except Exception as e:
        sys.stderr.write("coex: %s is damaged (%s): download or copy it again\n"
                         % (path, str(e) or type(e).__name__))
        sys.exit(1)
    sys.meta_path.insert(0, runtime)
    try:
        from coex_runtime import variables
        variables.fault("boot")
        from coex_runtime.main import main
        code = main()
    except KeyboardInterrupt:
        _coex_interrupted()
    sys.exit(code)


def _coex_runtime(path):
    """The runtime (a finder), checked: COEX-INFO against the archive id in the preamble, the
    preamble against the record; then the code of exactly the runtime files the record lists
    from the code cache (checked against its own digest), else those files, each checked
    against the record, compiled (and cached for the next first run)."""
    import hashlib
    import json
    read, head = _coex_reader(path)
    try:
        info_bytes = read("COEX-INFO")
        runtime = json.loads(info_bytes.decode("utf-8")).get("runtime") or {}
        if head is not None:
            at = head.find(b"\nCOEX_ARCHIVE_ID=")
            id16 = head[at + 17:at + 33] if at >= 0 else b"?"
            if hashlib.sha256(info_bytes).hexdigest()[:16].encode("ascii") != id16:
                raise ValueError("its record COEX-INFO does not match the archive id in its preamble")
            plain = head.replace(b"\nCOEX_ARCHIVE_ID=" + id16, b"\nCOEX_ARCHIVE_ID=" + b"0" * 16, 1)
            if hashlib.sha256(plain).hexdigest() != runtime.get("preamble"):
                raise ValueError("its sh preamble does not match its record")
        files = runtime.get("files") or {}
        if "coex_runtime/main.py" not in files:
            raise ValueError("its record lists no runtime")
        code = _coex_cached(_coex_code_file(files, _coex_root()))
        cached = code is not None
        if not cached:
            code = {}
            for name, digest in sorted(files.items()):
                data = read(name)
                if hashlib.sha256(data).hexdigest() != digest:
                    raise ValueError("%s does not match its record" % name)
                if name.startswith("coex_runtime/"):
                    code[name] = compile(data, path + "/" + name, "exec", dont_inherit=True)
    finally:
        read(None)
    return _CoexRuntime(path, code, files, cached)


def _coex_reader(path):
    """(read, head): read(member) gives its bytes (read(None) closes the archive); head is the
    sh preamble (None for an unzipped directory). Members are read through the zip directory
    (stored or deflated, CRC checked), without the zipfile module (slow to import)."""
    import os
    if os.path.isdir(path):
        def read_dir(name):
            if name is not None:
                with open(os.path.join(path, *name.split("/")), "rb") as f:
                    return f.read()
        return read_dir, None
    f = open(path, "rb")
    try:
        head, entries = _coex_zip(f)
    except Exception:
        f.close()
        raise

    def read(name):
        if name is None:
            f.close()
            return None
        if name not in entries:
            raise ValueError("it has no member %s" % name)
        try:
            return _coex_member(f, entries[name])
        except EnvironmentError:
            raise
        except Exception as e:
            raise ValueError("member %s: %s" % (name, str(e) or type(e).__name__))
    return read, head


def _coex_zip(f):
    """(head, {member: (offset, method, compressed size, size, crc)}) of the zip in ``f``, whose
    offsets count from the start of the file (after the sh preamble, the head)."""
    import struct
    f.seek(0, 2)
    size = f.tell()
    f.seek(max(0, size - 65558))
    tail = f.read()
    at = tail.rfind(b"PK\x05\x06")
    if at < 0 or len(tail) - at < 22:
        raise ValueError("its zip part cannot be read (truncated or altered)")
    try:
        end = size - len(tail) + at
        n, cd_size, cd_at = struct.unpack("<10xHII", tail[at:at + 20])
        if n == 0xFFFF or 0xFFFFFFFF in (cd_size, cd_at):  # zip64: its end record before
            f.seek(end - 76)
            rec = f.read(56)
            if rec[:4] != b"PK\x06\x06":
                raise ValueError("no zip64 end record")
            end -= 76
            n, cd_size, cd_at = struct.unpack("<32xQQQ", rec)
        concat = end - cd_size - cd_at  # bytes before the zip (0: our offsets are absolute)
        f.seek(cd_at + concat)
        cd = f.read(cd_size)
        entries, first, i = {}, end, 0
        while i < len(cd):
            if cd[i:i + 4] != b"PK\x01\x02":
                raise ValueError("a bad directory entry")
            method, crc, csize, usize, nl, el, cl, off = struct.unpack("<10xH4xIIIHHH8xI", cd[i:i + 46])
            name = cd[i + 46:i + 46 + nl].decode("utf-8", "replace")
            if off != 0xFFFFFFFF:  # (a zip64 member is beyond 4 GiB: not a first, not ours)
                first = min(first, off + concat)
                entries[name] = (off + concat, method, csize, usize, crc)
            i += 46 + nl + el + cl
        f.seek(0)
        return f.read(first), entries
    except EnvironmentError:
        raise
    except Exception as e:
        raise ValueError("its zip directory cannot be read: %s" % (str(e) or type(e).__name__))


def _coex_member(f, entry):
    import struct
    import zlib
    at, method, csize, size, crc = entry
    f.seek(at)
    h = f.read(30)
    if len(h) != 30 or h[:4] != b"PK\x03\x04":
        raise ValueError("a bad local header")
    nl, el = struct.unpack("<HH", h[26:30])
    f.seek(at + 30 + nl + el)
    data = f.read(csize)
    if method == 8:
        data = zlib.decompress(data, -15)
    elif method != 0:
        raise ValueError("compression method %d" % method)
    if len(data) != size or zlib.crc32(data) & 0xFFFFFFFF != crc:
        raise ValueError("Bad CRC-32")
    return data


def _coex_root():
    """The cache root as the sh preamble finds it: COEX_ROOT, else XDG_CACHE_HOME/coex, else
    HOME/.cache/coex (those two only when absolute); None when there is none."""
    import os
    root = os.environ.get("COEX_ROOT")
    for var, sub in (("XDG_CACHE_HOME", "coex"), ("HOME", ".cache/coex")):
        value = os.environ.get(var) or ""
        if not root and value.startswith("/"):
            root = os.path.join(value, sub)
    return os.path.abspath(root) if root else None


def _coex_code_file(files, root):
    """Where the code of these runtime files compiled by this Python is cached under ``root``:
    ``code/<key>-<cache tag>``; None without a root or when this Python caches no bytecode."""
    import hashlib
    import os
    try:
        import _frozen_importlib_external
        tag = sys.implementation.cache_tag
        magic = _frozen_importlib_external.MAGIC_NUMBER
    except (ImportError, AttributeError):
        return None
    if not root or not tag:
        return None
    h = hashlib.sha256(("coex-code/1 %s %s %d\n" % (tag, magic.hex(), sys.flags.optimize)).encode("ascii"))
    for name, digest in sorted(files.items()):
        h.update(("%s %s\n" % (name, digest)).encode("utf-8"))
    return os.path.join(root, "code", "%s-%s" % (h.hexdigest()[:32], tag))


def _coex_cached(where):
    """The cached code at ``where`` when it is there and intact (its digest), else None."""
    import hashlib
    import marshal
    import os
    if where is None:
        return None
    try:
        with open(where, "rb") as f:
            data = f.read()
    except EnvironmentError:
        return None
    payload = data[77:]
    if data[:77] != b"coex-code/1 " + hashlib.sha256(payload).hexdigest().encode("ascii") + b"\n":
        return None
    try:
        code = marshal.loads(payload)
        os.utime(where, None)  # used now: gc keeps it
    except Exception:
        return None
    return code if isinstance(code, dict) else None


def _coex_store(where, code):
    """Cache the code at ``where`` (atomically; nothing when that cannot be done)."""
    import hashlib
    import marshal
    import os
    if where is None:
        return
    payload = marshal.dumps(code)
    tmp = "%s.tmp-%d" % (where, os.getpid())
    try:
        if not os.path.isdir(os.path.dirname(where)):
            os.makedirs(os.path.dirname(where))
        with open(tmp, "wb") as f:
            f.write(b"coex-code/1 " + hashlib.sha256(payload).hexdigest().encode("ascii") + b"\n")
            f.write(payload)
        os.rename(tmp, where)
    except EnvironmentError:
        try:
            os.unlink(tmp)
        except EnvironmentError:
            pass


class _CoexRuntime(object):
    """Imports coex_runtime from its checked code (a meta path finder and loader)."""

    def __init__(self, path, code, files, cached):
        self.path, self.code, self.files, self.cached = path, code, files, cached

    def store_code(self, root):
        """Called by the runtime once the cache ``root`` is there: keep the code it compiled
        (where the bootstrap looks: only the root as the preamble finds it)."""
        if not self.cached and root == _coex_root():
            _coex_store(_coex_code_file(self.files, root), self.code)
            self.cached = True

    def _member(self, name):
        if name == "coex_runtime":
            return "coex_runtime/__init__.py"
        if name.startswith("coex_runtime.") and name.count(".") == 1:
            return name.replace(".", "/") + ".py"
        return None

    def find_spec(self, name, path=None, target=None):
        member = self._member(name)
        if member not in self.code:
            return None
        from importlib.machinery import ModuleSpec
        spec = ModuleSpec(name, self, origin=self.path + "/" + member, is_package=name == "coex_runtime")
        spec.has_location = True
        return spec

    def create_module(self, spec):
        return None

    def exec_module(self, module):
        code = self.code[self._member(module.__name__)]
        try:  # cached code names the archive it was compiled from: name this one
            import _imp
            _imp._fix_co_filename(code, module.__spec__.origin)
        except (ImportError, AttributeError):
            pass
        exec(code, module.__dict__)

    def get_source(self, name):
        """For tracebacks: the module source, read again and checked (None if it cannot be)."""
        import hashlib
        member = self._member(name)
        try:
            read = _coex_reader(self.path)[0]
            try:
                data = read(member)
            finally:
                read(None)
        except Exception:
            return None
        if hashlib.sha256(data).hexdigest() != self.files.get(member):
            return None
        return data.decode("utf-8")


def _coex_interrupted():
    import os
    import signal
    sys.stderr.write("coex: interrupted; nothing was left half-installed\n")
    sys.stderr.flush()
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    os.kill(os.getpid(), signal.SIGINT)
    sys.exit(130)


_coex_boot()
'''

# The bytes BOOT starts at and its length, as fixed-width fields (the -c line holds them, so
# they are rendered in place without moving anything).
_AT, _LEN = "@BOOT_AT@", "@BOOT_LEN"

TEMPLATE = r'''#!/bin/sh
# This is a coex archive (format @FORMAT@): a POSIX sh preamble followed by a zip.
# Inspect it with `unzip -l` or `COEX_TOOLS=1 ./archive info`.
# Warm path: when the cache holds this archive's launcher, exec the entry point with no Python.
# The archive is a program: `sh -eu app.coex` (or -a -C -f) must not change how it runs.
set +aCefu
COEX_ARCHIVE_ID=@ID@
case "$0" in /*) COEX_ARCHIVE=$0 ;; *) COEX_ARCHIVE=$PWD/$0 ;; esac
COEX_ARGV0=$0
export COEX_ARCHIVE COEX_ARGV0
case "${COEX_TOOLS:-0}" in 0|false|no|off|FALSE|NO|OFF|False|No|Off) _coex_x=0 ;; *) _coex_x=1 ;; esac
# the root as coex_runtime/cache.py configured_root(): relative XDG_CACHE_HOME / HOME ignored
_coex_r=
case "${XDG_CACHE_HOME:-}" in /*) _coex_r=$XDG_CACHE_HOME/coex ;; *)
  case "${HOME:-}" in /*) _coex_r=$HOME/.cache/coex ;; esac ;; esac
_coex_r=${COEX_ROOT:-$_coex_r}
_coex_warm() {
  if [ -n "$_coex_r" ] && [ -f "$_coex_r/launch/$COEX_ARCHIVE_ID.sh" ]; then command . "$_coex_r/launch/$COEX_ARCHIVE_ID.sh"; fi
  # the runtime's fallback roots (no HOME, unwritable or noexec cache root): see cache.py
  # (the user id, a process, only once a launcher is there)
  case "${TMPDIR:-}" in /*) _coex_t=$TMPDIR ;; *) _coex_t=/tmp ;; esac
  for _coex_d in "$_coex_t" /var/tmp /dev/shm; do
    for _coex_l in "$_coex_d"/coex-*/launch/"$COEX_ARCHIVE_ID".sh; do
      [ -f "$_coex_l" ] || continue
      _coex_u=${_coex_u:-$(id -u 2>/dev/null)}
      if [ -n "$_coex_u" ] && [ "$_coex_l" = "$_coex_d/coex-$_coex_u/launch/$COEX_ARCHIVE_ID.sh" ] \
         && [ -O "$_coex_d/coex-$_coex_u" ]; then command . "$_coex_l"; fi
    done
  done
}
if [ "$_coex_x" = 0 ]; then _coex_warm "$@"; fi
# Cold path: the rest of the preamble, run only when its cksum is the one written after it.
_coex_c=
while IFS= read -r _coex_line; do _coex_c="$_coex_c$_coex_line
"; done <<'@COLD_END@'
# Python >= 3.6 runs BOOT (after this part, read from the archive and checked against its sha256
# here), which checks the runtime and runs it (-E -S: the stdlib-only runtime ignores PYTHON*
# variables and site-packages; the working directory, first on sys.path, is taken off first).
_coex_python() {
  if ! [ -f "$COEX_ARCHIVE" ] || ! [ -r "$COEX_ARCHIVE" ]; then
    echo "coex: cannot read the archive at $COEX_ARCHIVE (from \$0=$0): it must be a readable file run by its path (./app.coex or sh path/to/app.coex), not fed on stdin" >&2
    exit 1
  fi
  if [ -n "${COEX_PYTHON:-}" ]; then
    if _coex_try "$COEX_PYTHON"; then _coex_exec "$COEX_PYTHON" "$@"; fi
    echo "coex: COEX_PYTHON=$COEX_PYTHON is not a working Python >= 3.6" >&2
    exit 127
  fi
  for _coex_py in python3 python; do
    if command -v "$_coex_py" >/dev/null 2>&1 && _coex_try "$_coex_py"; then _coex_exec "$_coex_py" "$@"; fi
  done
  echo "coex: the first run of $0 installs its environment and needs Python >= 3.6 (python3 or python on PATH, or set COEX_PYTHON); none was found" >&2
  exit 127
}
_coex_exec() {
  _coex_py=$1
  shift
  exec "$_coex_py" -E -S -c 'import sys
if sys.path[:1]==[""]:del sys.path[0]
import hashlib;f=open(sys.argv[1],"rb");f.seek(@BOOT_AT@);s=f.read(@BOOT_LEN);f.close()
if hashlib.sha256(s).hexdigest()!="@BOOT_SHA@":sys.stderr.write("coex: %s is damaged (its bootstrap does not match its checksum): download or copy it again\n"%sys.argv[1]);sys.exit(1)
exec(s)' "$COEX_ARCHIVE" "$@"
}
# Which Python: >= 3.6, as its -V says (a Python started with a program takes ~10 ms more).
_coex_try() {
  case $("$1" -V 2>&1) in "Python 3."[6-9]*|"Python 3."[1-9][0-9]*|"Python "[4-9]*) return 0 ;; esac
  return 1
}
# Wait for a first run of this archive that is installing it (it holds launch/<id16>.lock),
# then take the warm path; or be that run: the lock's descriptor goes to Python (COEX_LOCK_FD),
# which closes it once the launcher is written (so whoever gets the lock after sees it). Only
# with flock(1), a root whose launch/ can be made, and fd 9 not in use (the program's).
case "$_coex_r" in *'"'*|*'$'*|*'`'*|*'\'*|*'
'*) _coex_r= ;; esac
if [ "$_coex_x" = 0 ] && [ -n "$_coex_r" ] && command -v flock >/dev/null 2>&1 && ! { true >&9; } 2>/dev/null \
   && { [ -d "$_coex_r/launch" ] || mkdir -p "$_coex_r/launch" 2>/dev/null; } && [ -w "$_coex_r/launch" ]; then
  {
    if ! flock -n 9; then
      flock -s 9
    elif ! [ -f "$_coex_r/launch/$COEX_ARCHIVE_ID.sh" ]; then  # (else one just finished)
      COEX_LOCK_FD=9
      export COEX_LOCK_FD
      _coex_python "$@"
    fi
  } 9>>"$_coex_r/launch/$COEX_ARCHIVE_ID.lock"
  _coex_warm "$@"
fi
_coex_python "$@"
@COLD_END@
case $(cksum 2>/dev/null <<_COEX_CKSUM_
$_coex_c
_COEX_CKSUM_
) in "@CKSUM@"|"") eval "$_coex_c" ;; esac
echo "coex: $COEX_ARCHIVE is damaged (its sh preamble does not match its checksum): download or copy it again" >&2
exit 1
# The bootstrap (Python; the shell never reads this far):
@BOOT@'''


def _crc_table():
    table = []
    for i in range(256):
        c = i << 24
        for _ in range(8):
            c = ((c << 1) ^ 0x04C11DB7) if c & 0x80000000 else (c << 1)
        table.append(c & 0xFFFFFFFF)
    return table


_CRC = _crc_table()


def cksum(data):  # type: (bytes) -> str
    """What POSIX ``cksum`` prints for ``data`` on its standard input: ``<CRC> <length>``."""
    crc = 0
    for b in bytearray(data):
        crc = ((crc << 8) & 0xFFFFFFFF) ^ _CRC[(crc >> 24) ^ b]
    n = len(data)
    while n:
        crc = ((crc << 8) & 0xFFFFFFFF) ^ _CRC[(crc >> 24) ^ (n & 0xFF)]
        n >>= 8
    return "%d %d" % (~crc & 0xFFFFFFFF, len(data))


def render(archive_hex, format_version):  # type: (str, str) -> bytes
    """The preamble of the archive whose id (sha256 of its COEX-INFO) is ``archive_hex``."""
    assert "'" not in BOOT and _LEN not in BOOT
    text = TEMPLATE.replace("@FORMAT@", format_version).replace("@ID@", archive_hex[:16])
    text = text.replace("@COLD_END@", COLD_END).replace("@BOOT@", BOOT)
    text = text.replace("@BOOT_SHA@", hashlib.sha256(BOOT.encode("ascii")).hexdigest(), 1)
    # the cksum field has a fixed width (blanks after it), so BOOT's offset holds once it is in
    text = text.replace('"@CKSUM@"', '"@CKSUM@"'.ljust(_CKSUM_WIDTH), 1)
    data = text.encode("ascii")
    at = data.index(BOOT.encode("ascii"))
    data = data.replace(_AT.encode(), b"%9d" % at, 1).replace(_LEN.encode(), b"%9d" % len(BOOT), 1)
    marker = b"<<'" + COLD_END.encode() + b"'\n"
    start = data.index(marker) + len(marker)
    end = data.index(b"\n" + COLD_END.encode() + b"\n") + 1
    # (what the here-document gives cksum: the cold part and a newline)
    field = ('"%s"' % cksum(data[start:end] + b"\n")).ljust(_CKSUM_WIDTH).encode("ascii")
    out = data.replace('"@CKSUM@"'.ljust(_CKSUM_WIDTH).encode("ascii"), field, 1)
    assert len(out) == len(data) and out.index(BOOT.encode("ascii")) == at
    return out


# "<CRC> <length>" as cksum prints them: 10 digits at most each
_CKSUM_WIDTH = 23


def digest(preamble):  # type: (bytes) -> str
    """The preamble's identity whatever the archive id it carries: sha256 with the id zeroed
    (COEX-INFO records it as ``runtime.preamble``; BOOT and ``verify`` compare)."""
    at = preamble.find(ID_FIELD)
    if at >= 0:
        cut = at + len(ID_FIELD)
        preamble = preamble[:cut] + b"0" * 16 + preamble[cut + 16:]
    return hashlib.sha256(preamble).hexdigest()
