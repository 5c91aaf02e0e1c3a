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
  warm path; else it starts a Python >= 3.6 (the lock's descriptor is handed to it: runs that
  arrive meanwhile wait on it) with a one-line ``-c`` that runs ``BOOT``, read from the
  preamble's own checked bytes.

``BOOT`` (also the archive's ``__main__.py``, for ``python app.coex`` and ``python unzipped-dir/``)
checks, before any runtime module runs: COEX-INFO against the archive id the preamble carries
(16 hex digits of its sha256), the whole preamble against the record's ``runtime.preamble``
digest (``digest``), and every runtime module (and ``__main__.py``) against the record's
``runtime.files`` sha256s; then it imports the runtime from those checked bytes (never from the
zip again) and runs ``coex_runtime.main.main``. Anything wrong there is reported as a damaged
archive, an early Ctrl-C ends it by SIGINT without a traceback. BOOT must stay valid Python 2
(so that ``python2 app.coex`` can say which Python it needs) and hold no single quote.
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
        sources = _coex_checked(path)
    except KeyboardInterrupt:
        _coex_interrupted()
    except EnvironmentError as e:
        sys.stderr.write("coex: cannot read the archive %s: %s\n" % (path, e))
        sys.exit(1)
    except Exception as e:
        sys.stderr.write("coex: %s is damaged (%s): download or copy it again\n"
                         % (path, str(e) or type(e).__name__))
        sys.exit(1)
    sys.meta_path.insert(0, _CoexRuntime(path, sources))
    try:
        from coex_runtime import variables
        variables.fault("boot")
        from coex_runtime.main import main
        code = main()
    except KeyboardInterrupt:
        _coex_interrupted()
    sys.exit(code)


def _coex_checked(path):
    """{member: bytes} of the runtime, each checked against the record."""
    import hashlib
    import json
    import os
    if os.path.isdir(path):
        head = None

        def read(name):
            with open(os.path.join(path, *name.split("/")), "rb") as f:
                return f.read()
    else:
        import zipfile
        with open(path, "rb") as f:
            try:
                zf = zipfile.ZipFile(f)
                f.seek(0)
                head = f.read(min(zi.header_offset for zi in zf.infolist()))
            except Exception as e:
                raise ValueError("its zip directory cannot be read: %s" % (str(e) or type(e).__name__))
            members = {}
            for n in zf.namelist():
                if n == "COEX-INFO" or n == "__main__.py" or n.startswith("coex_runtime/"):
                    try:
                        members[n] = zf.read(n)
                    except Exception as e:
                        raise ValueError("member %s: %s" % (n, str(e) or type(e).__name__))

        def read(name):
            if name not in members:
                raise ValueError("it has no member %s" % name)
            return members[name]
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
    out = {}
    for name, digest in sorted((runtime.get("files") or {}).items()):
        data = read(name)
        if hashlib.sha256(data).hexdigest() != digest:
            raise ValueError("%s does not match its record" % name)
        out[name] = data
    if "coex_runtime/main.py" not in out:
        raise ValueError("its record lists no runtime")
    return out


class _CoexRuntime(object):
    """Imports coex_runtime from the checked bytes (a meta path finder and loader)."""

    def __init__(self, path, sources):
        self.path, self.sources = path, sources

    def _member(self, name):
        if name == "coex_runtime":
            return "coex_runtime/__init__.py"
        if name.startswith("coex_runtime.") and name.count(".") == 1:
            return name.replace(".", "/") + ".py"
        return None

    def find_spec(self, name, path=None, target=None):
        member = self._member(name)
        if member not in self.sources:
            return None
        from importlib.machinery import ModuleSpec
        spec = ModuleSpec(name, self, origin=self.path + "/" + member, is_package=name == "coex_runtime")
        spec.has_location = True
        return spec

    def create_module(self, spec):
        return None

    def exec_module(self, module):
        source = self.sources[self._member(module.__name__)]
        exec(compile(source, module.__spec__.origin, "exec"), module.__dict__)

    def get_source(self, name):
        return self.sources[self._member(name)].decode("utf-8")


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
  _coex_u=$(id -u 2>/dev/null)
  case "${TMPDIR:-}" in /*) _coex_t=$TMPDIR ;; *) _coex_t=/tmp ;; esac
  for _coex_d in "$_coex_t" /var/tmp /dev/shm; do
    _coex_l=$_coex_d/coex-$_coex_u/launch/$COEX_ARCHIVE_ID.sh
    if [ -n "$_coex_u" ] && [ -f "$_coex_l" ] && [ -O "$_coex_d/coex-$_coex_u" ]; then command . "$_coex_l"; fi
  done
}
if [ "$_coex_x" = 0 ]; then _coex_warm "$@"; fi
# Cold path: the rest of the preamble, run only when its cksum is the one written after it.
_coex_c=
while IFS= read -r _coex_line; do _coex_c="$_coex_c$_coex_line
"; done <<'@COLD_END@'
# Python >= 3.6 runs BOOT (below, read from these checked bytes), which checks the runtime and
# runs it (-E -S: the stdlib-only runtime ignores PYTHON* variables and site-packages).
_coex_python() {
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
  exec "$_coex_py" -E -S -c 'import sys;f=open(sys.argv[1],"rb");f.seek(@BOOT_AT@);s=f.read(@BOOT_LEN);f.close();exec(s)' "$COEX_ARCHIVE" "$@"
}
# Which Python: >= 3.6, and the archive readable with its zip end record (truncated: said here).
_coex_try() {
  "$1" -E -S -c 'import sys
if sys.version_info < (3, 6): sys.exit(1)
try: f = open(sys.argv[1], "rb")
except OSError: sys.exit(4)
f.seek(0, 2); f.seek(max(0, f.tell() - 65558)); d = f.read(); i = d.rfind(b"PK\x05\x06")
sys.exit(0 if i >= 0 and len(d) - i >= 22 and len(d) - i == 22 + d[i + 20] + 256 * d[i + 21] else 3)' "$COEX_ARCHIVE" 2>/dev/null
  _coex_s=$?
  if [ "$_coex_s" = 3 ]; then
    echo "coex: $COEX_ARCHIVE is damaged: its zip part cannot be read (truncated or altered); download or copy it again" >&2
    exit 1
  fi
  if [ "$_coex_s" = 4 ]; then
    echo "coex: cannot read the archive at $COEX_ARCHIVE (from \$0=$0): it must be a readable file run by its path (./app.coex or sh path/to/app.coex), not fed on stdin" >&2
    exit 1
  fi
  return "$_coex_s"
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
: '
@BOOT@'
@COLD_END@
case $(printf %s "$_coex_c" | cksum 2>/dev/null) in "@CKSUM@"|"") eval "$_coex_c" ;; esac
echo "coex: $COEX_ARCHIVE is damaged (its sh preamble does not match its checksum): download or copy it again" >&2
exit 1
'''


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
    data = text.encode("ascii")
    at = data.index(BOOT.encode("ascii"))
    data = data.replace(_AT.encode(), b"%9d" % at, 1).replace(_LEN.encode(), b"%9d" % len(BOOT), 1)
    marker = b"<<'" + COLD_END.encode() + b"'\n"
    start = data.index(marker) + len(marker)
    end = data.index(b"\n" + COLD_END.encode() + b"\n") + 1
    return data.replace(b"@CKSUM@", cksum(data[start:end]).encode("ascii"), 1)


def digest(preamble):  # type: (bytes) -> str
    """The preamble's identity whatever the archive id it carries: sha256 with the id zeroed
    (COEX-INFO records it as ``runtime.preamble``; BOOT and ``verify`` compare)."""
    at = preamble.find(ID_FIELD)
    if at >= 0:
        cut = at + len(ID_FIELD)
        preamble = preamble[:cut] + b"0" * 16 + preamble[cut + 16:]
    return hashlib.sha256(preamble).hexdigest()
