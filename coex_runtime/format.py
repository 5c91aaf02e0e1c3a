"""The coex archive format: the one definition, used by the writer (the Pants backend and
``./coex create``, through ``write_archive``) and by the runtime inside every archive (through
``open_archive``). Standard library only; runs on CPython 3.6 and newer.

A ``.coex`` file is a POSIX ``sh`` preamble followed by a zip archive (offsets in the zip are
absolute, so ``unzip -l app.coex`` and ``python app.coex`` both work, and so does
``python unzipped-dir/``):

    <sh preamble>                  see preamble.py: exec the installed entry point directly when
                                   the cache already holds this archive, else run the bootstrap
    __main__.py                    the bootstrap (preamble.BOOT): checks the runtime against the
                                   record, then coex_runtime.main.main()
    coex_runtime/*.py              the runtime (deflated)
    COEX-INFO                      the record (JSON, see build_info / validate_info)
    .coex/libzstd.so.1             the target platform's libzstd, from the lock's own ``zstd``
                                   package, deflated so that the stdlib can read it
    pkgs/<filename>                one member per locked package, stored (no recompression):
                                   ``.conda`` as locked (its sha256 equals the lock's), ``.tar.bz2``
                                   transcoded at build time to ``<stem>.tar.zst``
    wheels/<filename>              one member per locked PyPI wheel, stored as locked (its sha256
                                   equals the lock's); installed after the conda packages
    app/<relpath>                  the app layer (in-repo sources), deflated, modes kept

Every zip entry has the date 1980-01-01, a fixed mode and a fixed order, so the same inputs give
the same bytes on any machine.
"""

import hashlib
import json
import os
import re
import stat

from coex_runtime import preamble
from coex_runtime.errors import FormatError
from coex_runtime.fs import COPY_BUFSIZE, copy_hashed, safe_relpath, sha256_file  # noqa: F401 (sha256_file: API)

FORMAT_VERSION = (1, 0)
INFO_NAME = "COEX-INFO"
MAIN_NAME = "__main__.py"
RUNTIME_DIR = "coex_runtime/"
PKGS_DIR = "pkgs/"
WHEELS_DIR = "wheels/"
APP_DIR = "app/"
LIBZSTD_NAME = ".coex/libzstd.so.1"
ZIP_DATE = (1980, 1, 1, 0, 0, 0)
# Package encodings: how a package is stored in the archive.
ENCODINGS = ("conda", "tar.zst", "tar.bz2")
ENTRY_POINT_KINDS = ("command", "function", "app")
_FUNCTION_RE = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_][\w.]*$")
#: what an entry point name may be (also the build library's rule, coex/lib/records.py)
ENTRY_POINT_NAME_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.+-]*$")

# ---------------------------------------------------------------------------------------------
# identities


def dump_json(obj):  # type: (object) -> bytes
    """Canonical JSON bytes: sorted keys, no insignificant whitespace variance."""
    return (json.dumps(obj, sort_keys=True, indent=1, ensure_ascii=True) + "\n").encode("ascii")


def env_id(platform, packages, wheels=()):  # type: (str, List[dict], List[dict]) -> str
    """sha256 over the locked package list: the target platform plus every package's
    ``subdir/filename sha256`` (sorted), then, when there are wheels, every wheel's ``filename
    sha256`` (sorted; `` requested`` when it carries REQUESTED). Two archives with the same lock
    share one environment; an archive without wheels has the id it had before wheels existed."""
    lines = sorted("%s/%s %s" % (p["subdir"], p["filename"], p["sha256"]) for p in packages)
    text = "coex-env/1 %s\n" % platform + "\n".join(lines)
    if wheels:
        text += "\nwheels\n" + "\n".join(sorted(
            "%s %s%s" % (w.get("filename"), w.get("sha256"), " requested" if w.get("requested") else "")
            for w in wheels))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


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
    import shlex
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


_WHEEL_REQUIRED = ("name", "version", "filename", "sha256", "size", "member")
_SHA256_RE = re.compile(r"^[0-9a-f]{64}$")


def normalize_name(name):  # type: (str) -> str
    """A project name as PEP 503 normalizes it (``Foo_Bar.baz`` -> ``foo-bar-baz``)."""
    return re.sub(r"[-_.]+", "-", name).lower()


def wheel_member_name(filename):  # type: (str) -> str
    """Where a wheel goes in the archive."""
    return WHEELS_DIR + filename


def _validate_wheels(wheels):
    if not isinstance(wheels, list):
        raise FormatError("COEX-INFO wheels must be a list")
    seen = set()
    for i, w in enumerate(wheels):
        if not isinstance(w, dict):
            raise FormatError("COEX-INFO wheel #%d is not an object" % i)
        missing = [k for k in _WHEEL_REQUIRED if k not in w]
        if missing:
            raise FormatError("COEX-INFO wheel #%d (%s) is missing %s"
                              % (i, w.get("filename", "?"), ", ".join(missing)))
        fn = w["filename"]
        parts = fn[:-4].split("-") if isinstance(fn, str) and fn.endswith(".whl") else []
        if "/" in fn or "\\" in fn or len(parts) not in (5, 6) or not all(parts):
            raise FormatError("COEX-INFO wheel #%d: %r is not a wheel file name "
                              "(name-version[-build]-python-abi-platform.whl)" % (i, fn))
        if not isinstance(w["name"], str) or w["name"] != normalize_name(w["name"]) \
                or normalize_name(parts[0]) != w["name"]:
            raise FormatError("COEX-INFO wheel %s: name %r must be the PEP 503 normalized name of "
                              "its file's project (%r)" % (fn, w["name"], normalize_name(parts[0])))
        if w["name"] in seen:
            raise FormatError("COEX-INFO wheel %s: project %r appears twice" % (fn, w["name"]))
        seen.add(w["name"])
        if w["member"] != wheel_member_name(fn):
            raise FormatError("COEX-INFO wheel %s has a bad member name %r (want %r)"
                              % (fn, w["member"], wheel_member_name(fn)))
        if not isinstance(w["sha256"], str) or not _SHA256_RE.match(w["sha256"]):
            raise FormatError("COEX-INFO wheel %s: sha256 must be 64 lowercase hex digits, got %r"
                              % (fn, w["sha256"]))
        if not isinstance(w["size"], int) or isinstance(w["size"], bool) or w["size"] < 0:
            raise FormatError("COEX-INFO wheel %s: size must be a byte count, got %r" % (fn, w["size"]))
        if not isinstance(w.get("requested", False), bool):
            raise FormatError("COEX-INFO wheel %s: requested must be true or false" % fn)


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
    if "wheels" in info:
        _validate_wheels(info["wheels"])
    if env_id(info["platform"], info["packages"], info.get("wheels", ())) != info["env_id"]:
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
# the sh preamble and the bootstrap (preamble.py)


MAIN_SOURCE = preamble.BOOT.encode("ascii")


def render_preamble(archive_hex):  # type: (str) -> bytes
    return preamble.render(archive_hex, "%d.%d" % FORMAT_VERSION)


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


def runtime_record(sources):  # type: (Dict[str, bytes]) -> dict
    """COEX-INFO's ``runtime``: what runs before any payload, each checked by the bootstrap
    before use (see preamble.py): ``files`` {member: sha256} of the runtime modules and
    ``__main__.py``, ``preamble`` the sh preamble's digest (``preamble.digest``)."""
    files = dict((name, hashlib.sha256(data).hexdigest()) for name, data in sources.items())
    files[MAIN_NAME] = hashlib.sha256(MAIN_SOURCE).hexdigest()
    return {"digest": runtime_digest(sources), "format": "%d.%d" % FORMAT_VERSION, "files": files,
            "preamble": preamble.digest(render_preamble("0" * 64))}


def _zinfo(name, mode, compress):
    import zipfile  # (the writer's only: the runtime reads zips without it, see archive.py)
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
               env=None, requested_specs=(), virtual_packages=(), runtime=None, build=None,
               wheels=()):
    # type: (...) -> dict
    """Assemble and validate a COEX-INFO record.

    ``packages``: package dicts in install (topological) order, each the lock's record fields
    (name, version, build, build_number, subdir, filename, url, channel, md5, sha256, size,
    depends, constrains, noarch, timestamp, license, ...) plus member, encoding, stored_sha256,
    stored_size. ``entry_points``: {name: record from parse_entry_point}. ``wheels``: PyPI wheel
    dicts in install order, each with name (PEP 503 normalized), version, filename, sha256, size,
    member (``wheel_member_name``) and optionally requested (bool: the installed project gets a
    REQUESTED file) and any other lock fields (url, requires, ...); the record has a ``wheels``
    key only when there are some."""
    info = {
        "format_version": list(FORMAT_VERSION),
        "platform": platform,
        "env_id": env_id(platform, packages, wheels),
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
    if wheels:
        info["wheels"] = [dict(w) for w in wheels]
    return validate_info(info)


def write_archive(out_path, platform, packages, entry_points, default_entry_point=None,
                  app_files=(), libzstd_path=None, env=None, requested_specs=(),
                  virtual_packages=(), build=None, runtime_files=None, wheels=()):
    # type: (...) -> dict
    """Write a .coex archive deterministically; return its COEX-INFO record.

    ``packages``: [{"path": file to store, "entry": lock record dict, "encoding": one of
    ENCODINGS}] in install order. ``wheels``: [{"path": the .whl file, "entry": its record (see
    build_info; ``member`` is filled in)}] in install order, stored as-is under WHEELS_DIR. ``entry_points``: {name: user text or parsed record}; the
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
    wheel_records = []
    for w in wheels:
        entry = dict(w["entry"])
        member = wheel_member_name(entry.get("filename", ""))
        if member in seen:
            raise FormatError("wheel %s appears twice" % entry.get("filename"))
        seen.add(member)
        entry["member"] = member
        wheel_records.append(entry)
        pkg_sources.append((member, w["path"]))

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
                      runtime=runtime_record(runtime_files),
                      build=build, wheels=wheel_records)
    checked = dict((e["member"], e) for e in wheel_records)
    info_bytes = dump_json(info)

    import zipfile
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
                    _copy_into(zf, _zinfo(member, 0o644, False), path, checked.get(member))
                for rel, mode, _, path in app_entries:
                    _copy_into(zf, _zinfo(APP_DIR + rel, mode, True), path)
        os.chmod(tmp, 0o755)
        os.rename(tmp, out_path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return info


def _copy_into(zf, zinfo, path, locked=None):
    """Copy a file into the zip; with ``locked`` (a wheel record), check its size and sha256
    against the record while copying."""
    import shutil
    size = os.path.getsize(path)
    zinfo.file_size = size
    with open(path, "rb") as src, zf.open(zinfo, "w", force_zip64=size > 0x7FFFFFFF) as dst:
        if locked is None:
            shutil.copyfileobj(src, dst, COPY_BUFSIZE)
            return
        digest, n = copy_hashed(src, dst.write)
    if digest != locked["sha256"] or n != size or n != locked["size"]:
        raise FormatError("wheel %s: the file to store (%s, sha256 %s, %d bytes) is not the locked "
                          "one (sha256 %s, %d bytes)" % (locked["filename"], path, digest, n,
                                                         locked["sha256"], locked["size"]))


# ---------------------------------------------------------------------------------------------
# reading (archive.py)


def open_archive(path):  # type: (str) -> Archive
    """The archive at ``path`` (a .coex file or an unzipped directory), opened and checked:
    see ``archive.Archive``."""
    from coex_runtime.archive import Archive
    return Archive(path)
