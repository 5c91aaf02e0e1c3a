"""The coex archive format: the one definition, used by the writer (the Pants backend and
``./coex create``, through ``write_archive``) and by the runtime inside every archive (through
``open_archive``). Standard library only; runs on CPython 3.6 and newer.

A ``.coex`` file is a POSIX ``sh`` preamble followed by a zip archive (offsets in the zip are
absolute, so ``unzip -l app.coex`` and ``python app.coex`` both work, and so does
``python unzipped-dir/``):

    <sh preamble>                  see render_preamble(): exec the installed entry point directly
                                   when the cache already holds this archive, else run the zip
    __main__.py                    tiny bootstrap -> coex_runtime.main.main()
    coex_runtime/*.py              the runtime (deflated)
    COEX-INFO                      the record (JSON, see build_info / validate_info)
    .coex/libzstd.so.1             the target platform's libzstd, from the lock's own ``zstd``
                                   package, deflated so that the stdlib can read it
    pkgs/<filename>                one member per locked package, stored (no recompression):
                                   ``.conda`` as locked (its sha256 equals the lock's), ``.tar.bz2``
                                   transcoded at build time to ``<stem>.tar.zst``
    app/<relpath>                  the app layer (in-repo sources), deflated, modes kept

Every zip entry has the date 1980-01-01, a fixed mode and a fixed order, so the same inputs give
the same bytes on any machine.
"""

import hashlib
import io
import json
import os
import re
import shlex
import shutil
import stat
import struct
import zipfile
import zlib

from coex_runtime.errors import FormatError
from coex_runtime.fs import COPY_BUFSIZE, Bounded, copy_hashed, safe_relpath, sha256_file  # noqa: F401 (API)

FORMAT_VERSION = (1, 0)
INFO_NAME = "COEX-INFO"
MAIN_NAME = "__main__.py"
RUNTIME_DIR = "coex_runtime/"
PKGS_DIR = "pkgs/"
APP_DIR = "app/"
LIBZSTD_NAME = ".coex/libzstd.so.1"
ZIP_DATE = (1980, 1, 1, 0, 0, 0)
# Package encodings: how a package is stored in the archive.
ENCODINGS = ("conda", "tar.zst", "tar.bz2")
ENTRY_POINT_KINDS = ("command", "function", "app")
_FUNCTION_RE = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_][\w.]*$")
#: what an entry point name may be (also the build library's rule, coex/lib/records.py)
ENTRY_POINT_NAME_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.+-]*$")

MAIN_SOURCE = b'''# coex archive bootstrap (written by coex_runtime/format.py)
import sys
if sys.version_info < (3, 6):
    sys.stderr.write("coex: installing this archive needs Python >= 3.6; %s is %s\\n"
                     % (sys.executable, sys.version.split()[0]))
    sys.exit(127)
from coex_runtime.main import main
sys.exit(main())
'''


# ---------------------------------------------------------------------------------------------
# identities


def dump_json(obj):  # type: (object) -> bytes
    """Canonical JSON bytes: sorted keys, no insignificant whitespace variance."""
    return (json.dumps(obj, sort_keys=True, indent=1, ensure_ascii=True) + "\n").encode("ascii")


def env_id(platform, packages):  # type: (str, List[dict]) -> str
    """sha256 over the locked package list: the target platform plus every package's
    ``subdir/filename sha256`` (sorted). Two archives with the same lock share one environment."""
    lines = sorted("%s/%s %s" % (p["subdir"], p["filename"], p["sha256"]) for p in packages)
    return hashlib.sha256(("coex-env/1 %s\n" % platform + "\n".join(lines)).encode("utf-8")).hexdigest()


def app_digest(files):  # type: (Iterable[Tuple[str, int, str]]) -> str
    """sha256 over the app layer: ``files`` is an iterable of (relpath, mode, sha256 hex)."""
    h = hashlib.sha256(b"coex-app/1\n")
    for rel, mode, digest in sorted(files):
        h.update(("%s\0%o\0%s\n" % (rel, mode, digest)).encode("utf-8"))
    return h.hexdigest()


def archive_id(info_bytes):  # type: (bytes) -> str
    """The identity of one archive: sha256 of its COEX-INFO bytes (entry points, app layer,
    environment, env vars all live there)."""
    return hashlib.sha256(info_bytes).hexdigest()


def short_id(hex_digest, length=16):  # type: (str, int) -> str
    """Directory names in the cache use a prefix of the digest (shebangs stay short)."""
    return hex_digest[:length]


# ---------------------------------------------------------------------------------------------
# entry points


def parse_entry_point(text, app_files=()):  # type: (str, Iterable[str]) -> dict
    """Turn what a user wrote into an entry-point record.

    * ``module.sub:function`` -> {"kind": "function", "module", "function"} (console-script style,
      run by the environment's python)
    * a first word that is a path in the app layer -> {"kind": "app", "path", "args"}
    * anything else -> {"kind": "command", "argv", "app_args"}: a program of the environment
      (``python``, ``python -m app``), looked up in the prefix's bin/ and then on PATH;
      ``app_args`` lists the indexes of later words that are app-layer paths (``python
      src/main.py``), which the runtime makes absolute.
    """
    if not isinstance(text, str) or not text.strip():
        raise FormatError("an entry point must be a non-empty string, got %r" % (text,))
    text = text.strip()
    if _FUNCTION_RE.match(text):
        module, function = text.split(":", 1)
        return {"kind": "function", "module": module, "function": function}
    try:
        argv = shlex.split(text)
    except ValueError as e:
        raise FormatError("entry point %r is not a valid shell-style command: %s" % (text, e)) from e
    first = argv[0]
    app_files = set(app_files)

    def in_app(word):
        word = word[2:] if word.startswith("./") else word
        return word if word in app_files else None

    if in_app(first):
        return {"kind": "app", "path": in_app(first), "args": argv[1:]}
    app_args = [i for i, w in enumerate(argv) if i > 0 and in_app(w)]
    return {"kind": "command", "argv": [in_app(w) or w if i in app_args else w for i, w in enumerate(argv)],
            "app_args": app_args}


def _validate_entry_point(name, ep):
    where = "entry point %r" % name
    if not ENTRY_POINT_NAME_RE.match(name):
        raise FormatError("%s: names may use letters, digits and _ . + - only" % where)
    kind = ep.get("kind") if isinstance(ep, dict) else None
    if kind == "function":
        if not (ep.get("module") and ep.get("function")):
            raise FormatError("%s: a function entry point needs module and function" % where)
    elif kind == "app":
        p = ep.get("path")
        if not isinstance(p, str) or safe_relpath(p, strict=True) is None:
            raise FormatError("%s: app path must be relative inside the app layer, got %r" % (where, p))
        if not isinstance(ep.get("args", []), list):
            raise FormatError("%s: args must be a list" % where)
    elif kind == "command":
        argv = ep.get("argv")
        if not isinstance(argv, list) or not argv or not all(isinstance(a, str) for a in argv):
            raise FormatError("%s: argv must be a non-empty list of strings" % where)
    else:
        raise FormatError("%s: unknown kind %r (known: %s)" % (where, kind, ", ".join(ENTRY_POINT_KINDS)))


# ---------------------------------------------------------------------------------------------
# the record


_PKG_REQUIRED = ("name", "version", "build", "subdir", "filename", "sha256", "size", "member",
                 "encoding", "stored_sha256", "stored_size")


def encoding_for(filename):  # type: (str) -> str
    """How a package file is encoded, from its name (one of ENCODINGS)."""
    if filename.endswith(".conda"):
        return "conda"
    return "tar.bz2" if filename.endswith(".tar.bz2") else "tar.zst"


class Package(object):
    """One entry of COEX-INFO's ``packages`` (or any dict of that shape, such as a lock entry
    with ``path``): the fields the runtime reads, each fallback written once. ``raw`` is the dict.

    ``stored_sha256`` / ``stored_size`` describe the bytes in the archive (``pkgs/<filename>``,
    also the key of the extracted package in the cache); a package stored as locked has the
    lock's ``sha256`` / ``size``, which they fall back to."""

    __slots__ = ("raw",)

    def __init__(self, raw):  # type: (dict) -> None
        self.raw = raw

    @property
    def label(self):  # type: () -> str
        """How messages name it: its file name (else name-version-build)."""
        r = self.raw
        return r.get("filename") or "%s-%s-%s" % (r.get("name"), r.get("version"), r.get("build"))

    @property
    def stored_sha256(self):  # type: () -> Optional[str]
        return self.raw.get("stored_sha256") or self.raw.get("sha256")

    @property
    def stored_size(self):  # type: () -> Optional[int]
        size = self.raw.get("stored_size", self.raw.get("size"))
        return None if size is None else int(size)

    @property
    def encoding(self):  # type: () -> str
        return self.raw.get("encoding") or encoding_for(self.label)


def validate_info(info):  # type: (dict) -> dict
    """Check a decoded COEX-INFO record; raise FormatError naming the first problem."""
    if not isinstance(info, dict):
        raise FormatError("COEX-INFO is not a JSON object")
    version = info.get("format_version")
    if (not isinstance(version, list) or len(version) != 2
            or not all(isinstance(v, int) for v in version)):
        raise FormatError("COEX-INFO has no valid format_version; this is not a coex archive")
    if version[0] != FORMAT_VERSION[0]:
        raise FormatError(
            "this archive uses coex format %d.%d, but this runtime reads format %d.x: rebuild the "
            "archive with a coex of the same major format version" % (version[0], version[1], FORMAT_VERSION[0]))
    for key in ("platform", "env_id", "packages", "entry_points", "default_entry_point"):
        if key not in info:
            raise FormatError("COEX-INFO is missing %r" % key)
    for i, pkg in enumerate(info["packages"]):
        missing = [k for k in _PKG_REQUIRED if k not in pkg]
        if missing:
            raise FormatError("COEX-INFO package #%d (%s) is missing %s"
                              % (i, pkg.get("filename", "?"), ", ".join(missing)))
        if pkg["encoding"] not in ENCODINGS:
            raise FormatError("COEX-INFO package %s has unknown encoding %r"
                              % (pkg["filename"], pkg["encoding"]))
        if not pkg["member"].startswith(PKGS_DIR) or "/" in pkg["member"][len(PKGS_DIR):]:
            raise FormatError("COEX-INFO package %s has a bad member name %r" % (pkg["filename"], pkg["member"]))
    if env_id(info["platform"], info["packages"]) != info["env_id"]:
        raise FormatError("COEX-INFO env_id does not match its package list: the record was altered")
    eps = info["entry_points"]
    if not isinstance(eps, dict) or not eps:
        raise FormatError("COEX-INFO declares no entry point")
    for name, ep in eps.items():
        _validate_entry_point(name, ep)
    if info["default_entry_point"] not in eps:
        raise FormatError("COEX-INFO default_entry_point %r is not one of %s"
                          % (info["default_entry_point"], ", ".join(sorted(eps))))
    env = info.get("env", {})
    if not isinstance(env, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in env.items()):
        raise FormatError("COEX-INFO env must map strings to strings")
    return info


def load_info(data):  # type: (bytes) -> dict
    try:
        info = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as e:
        raise FormatError("COEX-INFO is not valid JSON (%s): the archive is damaged" % e) from e
    return validate_info(info)


# ---------------------------------------------------------------------------------------------
# the sh preamble


PREAMBLE_TEMPLATE = r'''#!/bin/sh
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
if [ "$_coex_x" = 0 ]; then
  # the root as coex_runtime/cache.py configured_root(): relative XDG_CACHE_HOME / HOME ignored
  _coex_l=
  case "${XDG_CACHE_HOME:-}" in /*) _coex_l=$XDG_CACHE_HOME/coex ;; *)
    case "${HOME:-}" in /*) _coex_l=$HOME/.cache/coex ;; esac ;; esac
  _coex_l=${COEX_ROOT:-$_coex_l}
  if [ -n "$_coex_l" ] && [ -f "$_coex_l/launch/$COEX_ARCHIVE_ID.sh" ]; then . "$_coex_l/launch/$COEX_ARCHIVE_ID.sh"; fi
  # the runtime's fallback roots (no HOME, unwritable or noexec cache root): see cache.py
  _coex_u=$(id -u 2>/dev/null)
  case "${TMPDIR:-}" in /*) _coex_t=$TMPDIR ;; *) _coex_t=/tmp ;; esac
  for _coex_d in "$_coex_t" /var/tmp /dev/shm; do
    _coex_l=$_coex_d/coex-$_coex_u/launch/$COEX_ARCHIVE_ID.sh
    if [ -n "$_coex_u" ] && [ -f "$_coex_l" ] && [ -O "$_coex_d/coex-$_coex_u" ]; then . "$_coex_l"; fi
  done
fi
# Cold path: a Python >= 3.6 runs the zip (-E -S: the stdlib-only runtime ignores PYTHON* variables
# and site-packages, and starts faster); a zip without its end record (truncated) is reported here.
_coex_try() {
  "$1" -E -S -c 'import sys
if sys.version_info < (3, 6): sys.exit(1)
try: f = open(sys.argv[1], "rb")
except OSError: sys.exit(4)
f.seek(0, 2); f.seek(max(0, f.tell() - 65558)); d = f.read(); i = d.rfind(b"PK\x05\x06")
sys.exit(0 if i >= 0 and len(d) - i >= 22 and len(d) - i == 22 + d[i + 20] + 256 * d[i + 21] else 3)' "$COEX_ARCHIVE" 2>/dev/null
  _coex_s=$?
  if [ "$_coex_s" = 3 ]; then
    echo "coex: $COEX_ARCHIVE is damaged: its zip part cannot be read (truncated or altered); copy or rebuild it" >&2
    exit 1
  fi
  if [ "$_coex_s" = 4 ]; then
    echo "coex: cannot read the archive at $COEX_ARCHIVE (from \$0=$0): it must be a readable file run by its path (./app.coex or sh path/to/app.coex), not fed on stdin" >&2
    exit 1
  fi
  return "$_coex_s"
}
if [ -n "${COEX_PYTHON:-}" ]; then
  if _coex_try "$COEX_PYTHON"; then
    exec "$COEX_PYTHON" -E -S "$COEX_ARCHIVE" "$@"
  fi
  echo "coex: COEX_PYTHON=$COEX_PYTHON is not a working Python >= 3.6" >&2
  exit 127
fi
for _coex_py in python3 python; do
  if command -v "$_coex_py" >/dev/null 2>&1 && _coex_try "$_coex_py"; then
    exec "$_coex_py" -E -S "$COEX_ARCHIVE" "$@"
  fi
done
echo "coex: the first run of $0 installs its environment and needs Python >= 3.6 (python3 or python on PATH, or set COEX_PYTHON); none was found" >&2
exit 127
'''


def render_preamble(archive_hex):  # type: (str) -> bytes
    text = PREAMBLE_TEMPLATE.replace("@ID@", short_id(archive_hex)).replace(
        "@FORMAT@", "%d.%d" % FORMAT_VERSION)
    return text.encode("ascii")


# ---------------------------------------------------------------------------------------------
# writing


def runtime_sources():  # type: () -> Dict[str, bytes]
    """The runtime's own modules, as {archive member name: bytes}, sorted."""
    here = os.path.dirname(os.path.abspath(__file__))
    out = {}
    for name in sorted(os.listdir(here)):
        if name.endswith(".py"):
            with open(os.path.join(here, name), "rb") as f:
                out[RUNTIME_DIR + name] = f.read()
    return out


def runtime_digest(sources):  # type: (Dict[str, bytes]) -> str
    h = hashlib.sha256(b"coex-runtime/1\n")
    for name in sorted(sources):
        h.update(("%s %s\n" % (name, hashlib.sha256(sources[name]).hexdigest())).encode("utf-8"))
    return h.hexdigest()


def _zinfo(name, mode, compress):
    zi = zipfile.ZipInfo(name, date_time=ZIP_DATE)
    zi.create_system = 3  # unix, so external_attr carries the mode
    zi.external_attr = ((stat.S_IFREG | mode) & 0xFFFF) << 16
    zi.compress_type = zipfile.ZIP_DEFLATED if compress else zipfile.ZIP_STORED
    return zi


def stored_member_name(filename, encoding):  # type: (str, str) -> str
    """Where a package goes in the archive: ``.tar.bz2`` packages are stored transcoded."""
    if encoding == "tar.zst" and filename.endswith(".tar.bz2"):
        filename = filename[: -len(".tar.bz2")] + ".tar.zst"
    return PKGS_DIR + filename


def build_info(platform, packages, entry_points, default_entry_point, app=None, libzstd=None,
               env=None, requested_specs=(), virtual_packages=(), runtime=None, build=None):
    # type: (...) -> dict
    """Assemble and validate a COEX-INFO record.

    ``packages``: package dicts in install (topological) order, each the lock's record fields
    (name, version, build, build_number, subdir, filename, url, channel, md5, sha256, size,
    depends, constrains, noarch, timestamp, license, ...) plus member, encoding, stored_sha256,
    stored_size. ``entry_points``: {name: record from parse_entry_point}."""
    info = {
        "format_version": list(FORMAT_VERSION),
        "platform": platform,
        "env_id": env_id(platform, packages),
        "packages": list(packages),
        "virtual_packages": sorted(set(virtual_packages)),
        "requested_specs": list(requested_specs),
        "entry_points": dict(entry_points),
        "default_entry_point": default_entry_point,
        "env": dict(env or {}),
        "app": app,
        "libzstd": libzstd,
        "runtime": runtime,
        "build": dict(build or {}),
    }
    return validate_info(info)


def write_archive(out_path, platform, packages, entry_points, default_entry_point=None,
                  app_files=(), libzstd_path=None, env=None, requested_specs=(),
                  virtual_packages=(), build=None, runtime_files=None):
    # type: (...) -> dict
    """Write a .coex archive deterministically; return its COEX-INFO record.

    ``packages``: [{"path": file to store, "entry": lock record dict, "encoding": one of
    ENCODINGS}] in install order. ``entry_points``: {name: user text or parsed record}; the
    default is ``default_entry_point`` or the only/first name. ``app_files``: [(relpath, path on
    disk)] for the app layer. ``libzstd_path``: the target platform's libzstd.so.1 (a real file).
    ``runtime_files``: {member: bytes}; default: this package's own modules."""
    runtime_files = runtime_sources() if runtime_files is None else dict(runtime_files)
    app = sorted((rel.replace(os.sep, "/"), path) for rel, path in app_files)
    for rel, _ in app:
        if safe_relpath(rel, strict=True) is None:
            raise FormatError("app layer path %r must be relative and inside the layer" % rel)
    rels = [rel for rel, _ in app]
    if len(set(rels)) != len(rels):
        raise FormatError("the app layer has the same path twice")

    pkg_records, pkg_sources, seen = [], [], set()
    for p in packages:
        entry = dict(p["entry"])
        encoding = p["encoding"]
        if encoding not in ENCODINGS:
            raise FormatError("package %s: unknown encoding %r" % (entry.get("filename"), encoding))
        member = stored_member_name(entry["filename"], encoding)
        if member in seen:
            raise FormatError("package %s appears twice" % entry["filename"])
        seen.add(member)
        digest, size = sha256_file(p["path"]), os.path.getsize(p["path"])
        if encoding != "tar.zst" and (digest != entry["sha256"] or size != int(entry["size"])):
            raise FormatError(
                "package %s: the file to store (%s, sha256 %s, %d bytes) is not the locked one "
                "(sha256 %s, %d bytes)" % (entry["filename"], p["path"], digest, size,
                                           entry["sha256"], int(entry["size"])))
        entry.update(member=member, encoding=encoding, stored_sha256=digest, stored_size=size)
        pkg_records.append(entry)
        pkg_sources.append((member, p["path"]))

    app_entries = []
    for rel, path in app:
        mode = 0o755 if os.stat(path).st_mode & 0o111 else 0o644
        app_entries.append((rel, mode, sha256_file(path), path))
    app_record = None
    if app_entries:
        app_record = {"digest": app_digest([(r, m, d) for r, m, d, _ in app_entries]),
                      "files": len(app_entries),
                      "size": sum(os.path.getsize(p) for _, _, _, p in app_entries)}
    zstd_record = None
    if libzstd_path:
        zstd_record = {"member": LIBZSTD_NAME, "sha256": sha256_file(libzstd_path),
                       "size": os.path.getsize(libzstd_path)}

    eps = {}
    for name, ep in dict(entry_points).items():
        eps[name] = parse_entry_point(ep, rels) if isinstance(ep, str) else dict(ep)
    if default_entry_point is None and eps:
        default_entry_point = sorted(eps)[0] if len(eps) > 1 else next(iter(eps))
    info = build_info(platform, pkg_records, eps, default_entry_point, app=app_record,
                      libzstd=zstd_record, env=env, requested_specs=requested_specs,
                      virtual_packages=virtual_packages,
                      runtime={"digest": runtime_digest(runtime_files),
                               "format": "%d.%d" % FORMAT_VERSION},
                      build=build)
    info_bytes = dump_json(info)

    tmp = "%s.tmp-%d" % (out_path, os.getpid())
    try:
        with open(tmp, "wb") as f:
            f.write(render_preamble(archive_id(info_bytes)))
            with zipfile.ZipFile(f, "w", allowZip64=True) as zf:
                zf.writestr(_zinfo(MAIN_NAME, 0o644, True), MAIN_SOURCE)
                for name in sorted(runtime_files):
                    zf.writestr(_zinfo(name, 0o644, True), runtime_files[name])
                zf.writestr(_zinfo(INFO_NAME, 0o644, True), info_bytes)
                if libzstd_path:
                    _copy_into(zf, _zinfo(LIBZSTD_NAME, 0o755, True), libzstd_path)
                for member, path in pkg_sources:
                    _copy_into(zf, _zinfo(member, 0o644, False), path)
                for rel, mode, _, path in app_entries:
                    _copy_into(zf, _zinfo(APP_DIR + rel, mode, True), path)
        os.chmod(tmp, 0o755)
        os.rename(tmp, out_path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return info


def _copy_into(zf, zinfo, path):
    size = os.path.getsize(path)
    zinfo.file_size = size
    with open(path, "rb") as src, zf.open(zinfo, "w", force_zip64=size > 0x7FFFFFFF) as dst:
        shutil.copyfileobj(src, dst, COPY_BUFSIZE)


# ---------------------------------------------------------------------------------------------
# reading


class _CheckedZipReader(io.RawIOBase):
    """A compressed member: zipfile's CRC and inflate errors become a FormatError that says the
    archive is damaged."""

    def __init__(self, path, name, member):
        self._path, self._name, self._member = path, name, member

    def readable(self):
        return True

    def readinto(self, b):
        try:
            data = self._member.read(len(b))
        except (zipfile.BadZipFile, zlib.error, EOFError) as e:
            raise FormatError("%s: member %s is damaged (%s): the archive was truncated or altered; "
                              "copy or rebuild it" % (self._path, self._name, e)) from e
        b[: len(data)] = data
        return len(data)

    def close(self):
        if not self.closed:
            self._member.close()
        super().close()


class Archive(object):
    """A coex archive opened for reading: a .coex file (sh preamble + zip) or an unzipped
    directory. ``info`` is the validated COEX-INFO record."""

    def __init__(self, path):
        self.path = os.path.abspath(path)
        self.is_dir = os.path.isdir(self.path)
        self._zip = self._file = None
        if not self.is_dir:
            try:
                # One descriptor for the archive's whole life: members are read from the file that
                # was opened, whatever happens to the path. (Stored members, which forked install
                # workers read, use pread: the shared file offset is never moved for them.)
                self._file = open(self.path, "rb")
                self._zip = zipfile.ZipFile(self._file)
            except (zipfile.BadZipFile, OSError) as e:
                self.close()
                raise FormatError("%s is not a readable coex archive (%s): it may be truncated or "
                                  "damaged; copy it again" % (self.path, e)) from e
        try:
            self.info_bytes = self.read(INFO_NAME)
        except KeyError:
            raise FormatError("%s has no %s record: it is not a coex archive" % (self.path, INFO_NAME)) from None
        self.info = load_info(self.info_bytes)
        self.id = archive_id(self.info_bytes)

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
        """A binary file object over a member's stored bytes. Stored (uncompressed) members are
        read with ``os.pread`` on the archive's one open descriptor: no zipfile machinery, no
        shared file position (forked workers read different members at once), and the bytes come
        from the file that was opened even if a rebuild renames a new archive over the path."""
        if self.is_dir:
            return open(os.path.join(self.path, *name.split("/")), "rb")
        zi = self._zip.getinfo(name)
        if zi.compress_type != zipfile.ZIP_STORED:
            return io.BufferedReader(_CheckedZipReader(self.path, name, self._zip.open(zi)), COPY_BUFSIZE)
        header = os.pread(self._file.fileno(), 30, zi.header_offset)
        if len(header) != 30 or header[:4] != b"PK\x03\x04":
            raise FormatError("%s: member %s has a bad local header: the archive is damaged"
                              % (self.path, name))
        name_len, extra_len = struct.unpack("<HH", header[26:30])
        fd, pos = self._file.fileno(), [zi.header_offset + 30 + name_len + extra_len]

        def read(n):
            data = os.pread(fd, n, pos[0])
            pos[0] += len(data)
            return data
        return io.BufferedReader(Bounded(read, zi.file_size, lambda: FormatError(
            "the archive ends inside a stored member: it is truncated")), COPY_BUFSIZE)

    def verify(self, name, sha256, size):  # type: (str, str, int) -> None
        """Stream a member and check its sha256 and size; raise FormatError on mismatch."""
        with self.open(name) as f:
            got, n = copy_hashed(f)
        if n != size or got != sha256:
            raise FormatError(
                "%s: member %s is damaged (sha256 %s, %d bytes; the record says %s, %d bytes): the "
                "archive was truncated or altered; copy or rebuild it" % (self.path, name, got, n, sha256, size))

    def verify_package(self, entry):  # type: (dict) -> None
        """``verify`` a package's stored member against its record."""
        p = Package(entry)
        self.verify(p.raw["member"], p.stored_sha256, p.stored_size)

    def app_members(self):  # type: () -> List[Tuple[str, str]]
        """[(relpath, member name)] of the app layer."""
        return [(n[len(APP_DIR):], n) for n in self.names() if n.startswith(APP_DIR) and not n.endswith("/")]


def open_archive(path):  # type: (str) -> Archive
    return Archive(path)
