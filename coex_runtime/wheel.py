"""PyPI wheels in the environment: installed after the conda packages, as pip installs a wheel
(pip 25's ``install_wheel`` with the ``posix_prefix`` scheme of the environment's python),
with every file checked against the wheel's RECORD first (as PyPA ``installer`` does).

    install_wheels(entries, open_wheel, staging, final_prefix, state)   # in install_env (phase 2)
    finish_wheels(prefix, pending, compiled)                            # in finalize_env (phase 3)

Where files go (the scheme; prefix-relative, ``sp`` the python's site-packages as noarch.py
finds it, ``X.Y`` its version):

    <root of the wheel>, .data/purelib, .data/platlib    sp/
    .data/scripts                                        bin/ (a ``#!python`` first line becomes
                                                         the environment's python; executable)
    .data/headers                                        include/pythonX.Y/<project>/
    .data/data                                           the prefix

Then, as pip: ``console_scripts`` and ``gui_scripts`` of ``entry_points.txt`` as ``bin/<name>``
(distlib's script text, the shebang the environment's ``bin/pythonX.Y``), ``INSTALLER``
(``coex``), ``REQUESTED`` when the lock says the project was asked for, and ``RECORD`` rewritten
with the installed paths (relative to sp; the scripts, INSTALLER, REQUESTED hashed; each
``.pyc`` as ``path,,``), written in phase 3 once the ``.pyc`` files are compiled (every
installed ``.py``, by the environment's python, with the conda packages' ones).

Refused, each with a message naming the wheel (WheelError), nothing installed: a stored wheel
that is not the locked one, a wheel whose Wheel-Version is not 1.x, a member path escaping its
directory, a file missing from RECORD or not matching its hash or size, a file a conda package
(or an earlier wheel) already installed. Where pip differs: pip keeps a ``.data/scripts`` file's
mode (coex makes scripts executable) and writes a ``#!python`` script's new shebang even when it
is too long for the kernel or holds a blank (coex uses distlib's ``/bin/sh`` form there, as
pip does for entry-point scripts). As pip (without ``ENSUREPIP_OPTIONS``), a ``pip`` console
script becomes ``pip``, ``pipX`` and ``pipX.Y`` of the environment's python (``easy_install``:
``easy_install`` and ``easy_install-X.Y``), the wheel's own versioned ones dropped.
"""

import base64
import csv
import hashlib
import io
import os
import re
import sys
import zipfile

from coex_runtime.errors import WheelError
from coex_runtime.fs import COPY_BUFSIZE, copy_hashed, rmtree, safe_relpath, umask, write_all, write_file

INSTALLER = b"coex\n"
SCHEME_KEYS = ("purelib", "platlib", "headers", "scripts", "data")
_PENDING_DIR = os.path.join("conda-meta", ".coex-pending", "wheels")
# distlib's (pip 25's vendored distlib 0.3.9) script text for console and GUI scripts
SCRIPT_TEMPLATE = r'''# -*- coding: utf-8 -*-
import re
import sys
from %(module)s import %(import_name)s
if __name__ == '__main__':
    sys.argv[0] = re.sub(r'(-script\.pyw|\.exe)?$', '', sys.argv[0])
    sys.exit(%(func)s())
'''
# distlib's get_export_entry: "name = module.sub:attr.attr [extras]"
_ENTRY_RE = re.compile(r"^(?P<name>[^\[]\S*)\s*=\s*(?P<callable>(\w+)([:.]\w+)*)\s*"
                       r"(\[\s*(?P<flags>[\w-]+(=\w+)?(,\s*\w+(=\w+)?)*)\s*\])?\s*$")
_HASHES = frozenset(("sha224", "sha256", "sha384", "sha512", "sha3_224", "sha3_256", "sha3_384",
                     "sha3_512", "blake2b", "blake2s"))


def normalize(name):  # type: (str) -> str
    return re.sub(r"[-_.]+", "-", name).lower()


def record_digest(h):  # type: (hashlib._Hash) -> str
    """A RECORD hash field: ``sha256=<urlsafe base64, no padding>``."""
    return "%s=%s" % (h.name, base64.urlsafe_b64encode(h.digest()).decode("ascii").rstrip("="))


def _record_path(dest, sp):  # type: (str, str) -> str
    """A prefix-relative path as RECORD names it: relative to site-packages."""
    return os.path.relpath("/" + dest, "/" + sp).replace(os.sep, "/")


def shebang(python):  # type: (str) -> bytes
    """distlib's ``_build_shebang`` for ``python`` (what pip writes for entry-point scripts)."""
    exe = '"%s"' % python if " " in python else python
    limit = 512 if sys.platform == "darwin" else 127
    if " " not in exe and len(exe) + 3 <= limit:
        return ("#!%s\n" % exe).encode("utf-8")
    return ("#!/bin/sh\n'''exec' %s \"$0\" \"$@\"\n' '''\n" % exe).encode("utf-8")


def entry_point_script(python, value):  # type: (str, str) -> bytes
    """The bytes pip writes for the console script ``name = value``."""
    m = _ENTRY_RE.match("x = " + value)
    if not m or ":" not in m.group("callable"):
        raise ValueError(value)
    module, func = m.group("callable").split(":", 1)
    return shebang(python) + (SCRIPT_TEMPLATE % {
        "module": module, "import_name": func.split(".")[0], "func": func}).encode("utf-8")


def read_entry_points(text):  # type: (str) -> Dict[str, List[Tuple[str, str]]]
    """{group: [(name, value)]} of an entry_points.txt (an ini file; ``=`` the delimiter)."""
    out, group = {}, None
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line[0] in "#;":
            continue
        if line.startswith("[") and line.endswith("]"):
            group = line[1:-1].strip()
            out.setdefault(group, [])
        elif "=" in line and group is not None:
            name, value = line.split("=", 1)
            out[group].append((name.strip(), value.strip()))
        else:
            raise ValueError(line)
    return out


def console_scripts(items, pyver):  # type: (List[Tuple[str, str]], str) -> List[Tuple[str, str]]
    """pip's ``get_console_script_specs``: the versioned pip and easy_install scripts made for
    the python ``pyver`` ("X.Y"), the wheel's own versioned ones dropped."""
    items = list(items)
    out = []
    for base, made, drop in (("pip", ("pip", "pip" + pyver.split(".")[0], "pip" + pyver),
                              r"pip(\d+(\.\d+)?)?$"),
                             ("easy_install", ("easy_install", "easy_install-" + pyver),
                              r"easy_install(-\d+\.\d+)?$")):
        value = dict(items).get(base)
        if value is not None:
            out.extend((name, value) for name in made)
            items = [(n, v) for n, v in items if not re.match(drop, n)]
    return out + items


def _header_fields(text):  # type: (str) -> Dict[str, str]
    """The ``Key: value`` lines of WHEEL (an RFC 822 header block)."""
    out = {}
    for line in text.splitlines():
        if not line.strip():
            break
        if ":" in line and not line[0].isspace():
            k, v = line.split(":", 1)
            out.setdefault(k.strip().lower(), v.strip())
    return out


class Scheme(object):
    """Prefix-relative install directories of one project (pip's posix_prefix scheme)."""

    def __init__(self, site_packages, pyver, project):  # type: (str, str, str) -> None
        m = re.match(r"^lib/python(\d+\.\d+\w*)/site-packages$", site_packages)
        include = "include/python%s" % (m.group(1) if m else pyver)
        self.paths = {"purelib": site_packages, "platlib": site_packages, "scripts": "bin",
                      "headers": "%s/%s" % (include, project), "data": ""}

    def dest(self, key, sub):  # type: (str, str) -> str
        base = self.paths[key]
        return "%s/%s" % (base, sub) if base else sub


# conda subdir -> what a wheel's platform tag must say for it (None: not checked)
_PLATFORM_TAGS = {
    "linux-64": (("linux_", "manylinux"), ("_x86_64",)),
    "linux-aarch64": (("linux_", "manylinux"), ("_aarch64",)),
    "linux-ppc64le": (("linux_", "manylinux"), ("_ppc64le",)),
    "linux-s390x": (("linux_", "manylinux"), ("_s390x",)),
    "osx-64": (("macosx_",), ("_x86_64", "_universal2", "_intel", "_universal")),
    "osx-arm64": (("macosx_",), ("_arm64", "_universal2")),
}


def tag_fits(tag, pyver, subdir, pypy=False):  # type: (str, str, Optional[str], bool) -> bool
    """Whether one ``python-abi-platform`` tag can run on the environment's python ``pyver``
    (CPython, or PyPy) on conda ``subdir``: what pip would install there, leniently (the lock
    chose the wheel; this catches a wheel for another python or platform)."""
    try:
        interp, abi, plat = tag.split("-")
    except ValueError:
        return False
    major, minor = (int(x) for x in pyver.split(".")[:2])
    m = re.match(r"^(py|cp|pp)(\d)(\d*)$", interp)
    if not m or int(m.group(2)) != major:
        return False
    kind, sub = m.group(1), int(m.group(3)) if m.group(3) else None
    if kind == "pp" and not pypy or kind == "cp" and pypy:
        return False
    if kind == "cp" and sub is not None and (sub > minor or (sub != minor and abi != "abi3")):
        return False
    if kind == "py" and sub is not None and sub > minor:
        return False
    if abi not in ("none", "abi3") and not (kind == "cp" and abi.startswith("cp%d%d" % (major, minor))) \
            and not (kind == "pp" and abi.startswith("pypy")):
        return False
    if abi == "abi3" and kind != "cp":
        return False
    rule = _PLATFORM_TAGS.get(subdir or "")
    if plat == "any" or rule is None:
        return True
    return plat.startswith(rule[0]) and plat.endswith(rule[1])


def check_tags(entry, python):  # type: (dict, dict) -> None
    """Refuse a wheel none of whose tags fits the environment's python (its conda entry)."""
    parts = entry["filename"][: -len(".whl")].split("-")
    pyver = "%s.%s" % tuple(str(python.get("version", "0.0")).split(".")[:2])
    pypy = "pypy" in str(python.get("build", ""))
    tags = ["%s-%s-%s" % (i, a, p) for i in parts[-3].split(".") for a in parts[-2].split(".")
            for p in parts[-1].split(".")]
    if not any(tag_fits(t, pyver, python.get("subdir"), pypy) for t in tags):
        _fail(entry, "its tags (%s) do not fit the environment's %s %s on %s: lock a wheel built "
                     "for it" % ("-".join(parts[-3:]), "PyPy" if pypy else "CPython", pyver,
                                 python.get("subdir")))


def _fail(entry, what):
    raise WheelError("wheel %s: %s" % (entry.get("filename"), what))


def _copy_verified(entry, open_wheel, path):
    """The stored wheel to ``path``, its sha256 and size checked against the record."""
    src = open_wheel(entry)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            digest, size = copy_hashed(src, lambda b: write_all(fd, b))
        finally:
            os.close(fd)
    finally:
        src.close()
    if digest != entry["sha256"] or size != int(entry["size"]):
        _fail(entry, "the stored file (sha256 %s, %d bytes) is not the locked one (sha256 %s, %d "
                     "bytes): the archive is damaged; download or copy it again"
              % (digest, size, entry["sha256"], int(entry["size"])))


class _Installer(object):
    """One wheel into ``staging`` (see the module)."""

    def __init__(self, entry, zf, staging, final_prefix, pyver, sp, owners):
        self.entry, self.zf, self.staging = entry, zf, staging
        self.python = "%s/bin/python%s" % (final_prefix.rstrip("/"), pyver)
        self.pyver, self.sp, self.owners = pyver, sp, owners
        self.file_mode = 0o666 & ~umask()
        self.exec_mode = (0o777 & ~umask()) | 0o111

    def fail(self, what):
        _fail(self.entry, what)

    # reading --------------------------------------------------------------------------------
    def members(self):  # type: () -> List[zipfile.ZipInfo]
        seen, files = set(), []
        for zi in self.zf.infolist():
            name = zi.filename
            if name.endswith("/"):
                continue
            if safe_relpath(name, strict=True) is None:
                self.fail("the member %r escapes the wheel (an absolute path, '..', or a "
                          "backslash); refusing to install it" % name)
            if name in seen:
                self.fail("the member %r appears twice" % name)
            seen.add(name)
            files.append(zi)
        return files

    def read(self, name):  # type: (str) -> bytes
        try:
            return self.zf.read(name)
        except KeyError:
            self.fail("it has no %s" % name)
        except Exception as e:  # noqa: B902 - BadZipFile, zlib.error, CRC errors
            self.fail("%s cannot be read (%s): the wheel is damaged" % (name, e))

    def dist_info(self, files):  # type: (List[zipfile.ZipInfo]) -> str
        tops = sorted(set(zi.filename.split("/", 1)[0] for zi in files
                          if "/" in zi.filename and zi.filename.split("/", 1)[0].endswith(".dist-info")))
        if len(tops) != 1:
            self.fail("it has %s .dist-info directory (%s): a wheel has exactly one"
                      % ("no" if not tops else "more than one", ", ".join(tops) or "none"))
        name = normalize(tops[0][: -len(".dist-info")].split("-", 1)[0])
        if name != self.entry["name"]:
            self.fail("its .dist-info directory %s is not that of %s" % (tops[0], self.entry["name"]))
        return tops[0]

    def record(self, info_dir):  # type: (str) -> List[List[str]]
        text = self.read(info_dir + "/RECORD").decode("utf-8", "replace")
        rows = list(csv.reader(text.splitlines()))
        return [r for r in rows if r]

    # planning -------------------------------------------------------------------------------
    def plan(self, files, info_dir, scheme, entry_points):
        """[(zipinfo, prefix-relative dest, is_script)] in the wheel's order."""
        data_dir = info_dir[: -len(".dist-info")] + ".data"
        wrappers = set(n for g in ("console_scripts", "gui_scripts") for n, _ in entry_points.get(g, []))
        out = []
        for zi in files:
            name = zi.filename
            top = name.split("/", 1)[0]
            if top.endswith(".data"):
                if top != data_dir:
                    self.fail("its %s/ is not the data directory of %s (%s/)" % (top, info_dir, data_dir))
                parts = name.split("/", 2)
                if len(parts) < 3:
                    self.fail("%s: .data directory contents must be named <scheme>/<path>" % name)
                if parts[1] not in SCHEME_KEYS:
                    self.fail("%s: unknown scheme %r (known: %s)" % (name, parts[1], ", ".join(sorted(SCHEME_KEYS))))
                if parts[1] == "scripts" and _wrapper_name(parts[2]) in wrappers:
                    continue  # setuptools' wrapper of an entry point: the entry point is made instead
                out.append((zi, scheme.dest(parts[1], parts[2]), parts[1] == "scripts"))
            else:
                out.append((zi, scheme.dest("purelib", name), False))
        return out

    def check_free(self, dest, planned):
        if dest in planned:
            self.fail("it installs %s twice" % dest)
        owner = self.owners.get(dest)
        if owner is None:
            parts = dest.split("/")
            for i in range(1, len(parts)):  # a file where this one needs a directory
                owner = self.owners.get("/".join(parts[:i]))
                if owner is not None:
                    break
        if owner is None and os.path.lexists(os.path.join(self.staging, dest)):
            owner = "a file already in the environment"
        if owner is not None:
            self.fail("it would overwrite %s, which %s installed; %s: drop one of them from the "
                      "environment" % (dest, owner, "two wheels cannot install the same file"
                                       if owner.startswith("the wheel ") else
                                       "a project cannot be both a conda package and a PyPI wheel"))

    # writing --------------------------------------------------------------------------------
    def write(self, dest, data, mode):
        full = os.path.join(self.staging, dest)
        parent = os.path.dirname(full)
        if not os.path.isdir(parent):
            try:
                os.makedirs(parent)
            except OSError as e:
                self.fail("cannot create %s for %s: %s" % (os.path.dirname(dest), dest, e.strerror or e))
        write_file(full, data, mode, exclusive=True)

    def extract(self, zi, dest, is_script, expected):
        """Write member ``zi`` at ``dest``, checking it against its RECORD row as it streams;
        True when its bytes were changed (a ``#!python`` script)."""
        algo, _, want = (expected[1] if len(expected) > 1 else "").partition("=")
        if algo not in _HASHES or not want:
            self.fail("RECORD gives %s no usable hash (%r)" % (zi.filename, expected[1:2]))
        h = hashlib.new(algo)
        full = os.path.join(self.staging, dest)
        executable = is_script or bool((zi.external_attr >> 16) & 0o111)
        mode = self.exec_mode if executable else self.file_mode
        self.write(dest, b"", mode)
        changed, size = False, 0
        try:
            with self.zf.open(zi) as src, open(full, "wb") as out:
                first = True
                for block in iter(lambda: src.read(COPY_BUFSIZE), b""):
                    h.update(block)
                    size += len(block)
                    if first and is_script and block.startswith(b"#!python"):
                        while b"\n" not in block:  # the whole first line
                            more = src.read(COPY_BUFSIZE)
                            if not more:
                                break
                            h.update(more)
                            size += len(more)
                            block += more
                        line, nl, rest = block.partition(b"\n")
                        block = shebang(self.python) + rest
                        changed = True
                    first = False
                    out.write(block)
        except WheelError:
            raise
        except Exception as e:  # noqa: B902 - BadZipFile, zlib.error, CRC errors
            self.fail("%s cannot be read (%s): the wheel is damaged" % (zi.filename, e))
        got = base64.urlsafe_b64encode(h.digest()).decode("ascii").rstrip("=")
        if got != want or (len(expected) > 2 and expected[2] and expected[2] != str(size)):
            self.fail("%s does not match its RECORD (%s=%s, %d bytes; RECORD says %s, %s bytes): "
                      "the wheel was altered" % (zi.filename, algo, got, size, expected[1],
                                                 expected[2] if len(expected) > 2 else "?"))
        return changed

    def install(self):  # type: () -> dict
        files = self.members()
        info_dir = self.dist_info(files)
        fields = _header_fields(self.read(info_dir + "/WHEEL").decode("utf-8", "replace"))
        version = fields.get("wheel-version", "")
        if not re.match(r"^1(\.\d+)*$", version):
            self.fail("its Wheel-Version is %r; coex installs wheels of version 1.x only"
                      % (version or "missing"))
        ep_name = info_dir + "/entry_points.txt"
        try:
            eps = read_entry_points(self.read(ep_name).decode("utf-8")) \
                if ep_name in self.zf.NameToInfo else {}
        except (ValueError, UnicodeDecodeError) as e:
            self.fail("%s cannot be read: %s" % (ep_name, e))
        record_name = info_dir + "/RECORD"
        rows = self.record(info_dir)
        by_path = dict((r[0], r) for r in rows)
        unlisted = [zi.filename for zi in files if zi.filename not in by_path
                    and zi.filename not in (info_dir + "/RECORD.jws", info_dir + "/RECORD.p7s")]
        if unlisted:
            self.fail("%s is not in its RECORD: the wheel was altered" % unlisted[0])
        project = info_dir[: -len(".dist-info")].split("-", 1)[0]
        scheme = Scheme(self.sp, self.pyver, self.entry["filename"].split("-", 1)[0] or project)
        plan = self.plan(files, info_dir, scheme, eps)
        scripts = []
        for group in ("console_scripts", "gui_scripts"):
            items = eps.get(group, [])
            for name, value in console_scripts(items, self.pyver) if group == "console_scripts" else items:
                if not name or "/" in name or name in (".", ".."):
                    self.fail("%s: %s name %r is not a plain file name" % (ep_name, group, name))
                try:
                    scripts.append(("bin/" + name, entry_point_script(self.python, value)))
                except ValueError:
                    self.fail("%s: invalid %s entry point %s = %s (it needs module:function)"
                              % (ep_name, group, name, value))
        planned = set()
        for _, dest, _ in plan:
            if dest != scheme.dest("purelib", record_name):
                self.check_free(dest, planned)
                planned.add(dest)
        for dest, _ in scripts:
            self.check_free(dest, planned)
            planned.add(dest)

        installed, changed = {}, set()
        for zi, dest, is_script in plan:
            rel = _record_path(dest, self.sp)
            installed[zi.filename] = rel
            if zi.filename == record_name:
                continue  # rewritten in phase 3
            if self.extract(zi, dest, is_script, by_path[zi.filename]):
                changed.add(rel)
        generated = []
        for dest, data in scripts:
            self.write(dest, data, self.file_mode | 0o555)
            generated.append((dest, data))
        meta = self.sp + "/" + info_dir
        generated.append((meta + "/INSTALLER", INSTALLER))
        if self.entry.get("requested"):
            generated.append((meta + "/REQUESTED", b""))
        for dest, data in generated[len(scripts):]:
            self.write(dest, data, self.file_mode)

        out_rows = []
        for row in rows:
            path = installed.pop(row[0], row[0])
            if path in changed:
                with open(os.path.join(self.staging, self.sp, path), "rb") as f:
                    data = f.read()
                out_rows.append([path, record_digest(hashlib.sha256(data)), str(len(data))])
            else:
                out_rows.append([path, row[1] if len(row) > 1 else "", row[2] if len(row) > 2 else ""])
        for dest, data in generated:
            out_rows.append([_record_path(dest, self.sp), record_digest(hashlib.sha256(data)), str(len(data))])
        compile_ = sorted(dest for _, dest, _ in plan if dest.endswith(".py")
                          and dest != scheme.dest("purelib", record_name))
        return {"label": self.entry["filename"], "record": meta + "/RECORD", "rows": out_rows,
                "compile": compile_, "site_packages": self.sp}


def _wrapper_name(name):  # type: (str) -> str
    """The entry point a setuptools-made script wraps (EP, EP.exe, EP-script.py, EP.pya)."""
    low = name.lower()
    for suffix in (".exe", "-script.py", ".pya"):
        if low.endswith(suffix):
            return name[: -len(suffix)]
    return name


def install_wheels(entries, open_wheel, staging, final_prefix, state, python=None):
    # type: (List[dict], Callable[[dict], IO[bytes]], str, str, dict, Optional[dict]) -> List[dict]
    """Install COEX-INFO ``wheels`` entries, in order, into ``staging`` (whose conda packages
    ``state``, install_env's, lists; ``python`` the entry of its python package, whose version,
    build and subdir the wheels' tags must fit); ``open_wheel(entry)`` gives the stored wheel's
    bytes. The pending records for ``finish_wheels``."""
    entries = list(entries)
    if not entries:
        return []
    pyver, sp = state.get("pyver"), state.get("site_packages")
    if not pyver or not sp:
        _fail(entries[0], "PyPI wheels need a python in the environment, and it has none: add "
                          "python to the environment's conda dependencies")
    for entry in entries:
        check_tags(entry, python or {"version": pyver})
    owners = {}
    for p in state.get("packages", []):
        rec = p["record"]
        label = rec.get("fn") or "%s-%s-%s" % (rec.get("name"), rec.get("version"), rec.get("build"))
        for f in rec.get("files", []):
            owners.setdefault(f, "the conda package %s" % label)
    tmp = os.path.join(staging, _PENDING_DIR)
    os.makedirs(tmp, exist_ok=True)
    pending = []
    try:
        for entry in entries:
            path = os.path.join(tmp, entry["filename"])
            _copy_verified(entry, open_wheel, path)
            try:
                zf = zipfile.ZipFile(path)
            except (zipfile.BadZipFile, OSError) as e:
                _fail(entry, "it is not a readable zip file (%s)" % e)
            with zf:
                rec = _Installer(entry, zf, staging, final_prefix, pyver, sp, owners).install()
            os.unlink(path)
            for row in rec["rows"]:
                owners.setdefault(os.path.normpath(os.path.join(sp, row[0])), "the wheel %s" % entry["filename"])
            pending.append(rec)
    finally:
        rmtree(tmp)
    return pending


def finish_wheels(prefix, pending, compiled):  # type: (str, List[dict], Dict[str, str]) -> None
    """Phase 3: each wheel's RECORD, with its compiled ``.pyc`` files (``compiled``: {py: pyc},
    prefix-relative) as pip records them (``path,,``), rows sorted, csv's excel dialect."""
    for rec in pending:
        rows = [list(r) for r in rec["rows"]]
        for py in rec["compile"]:
            if compiled.get(py):
                rows.append([_record_path(compiled[py], rec["site_packages"]), "", ""])
        buf = io.StringIO()
        csv.writer(buf).writerows(sorted(tuple(str(x) for x in r) for r in rows))
        write_file(os.path.join(prefix, rec["record"]), buf.getvalue().encode("utf-8"), 0o666 & ~umask())
