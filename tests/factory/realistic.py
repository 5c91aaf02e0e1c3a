"""The REALISTIC tier: real binaries and real PyPI wheels as conda packages, cached.

    from tests.factory import realistic
    chan = realistic.ensure()        # Path of an indexed channel dir (built once, then reused)
    url = chan.as_uri()
    realistic.SPECS                  # specs that install everything together
    python -m tests.factory realistic [--out DIR]

``ensure()`` returns ``${XDG_CACHE_HOME:-~/.cache}/coex-test-channels/realistic-<key>`` where
``<key>`` hashes the factory's sources and the inputs (pyenv CPython identity, wheel pins, the
image's zstd). It is built once under an exclusive file lock into a temp dir and renamed into
place, so concurrent pytest-xdist workers (or processes) get the same finished channel.
``ensure(out=DIR)`` builds into DIR instead (no cache). ``build(dest)`` builds unconditionally.

Contents (index with py-rattler):

* ``linux-64/python-3.11.7-h0_pyenv.conda`` and ``python-3.12.1-h0_pyenv.conda`` (see
  ``PYTHONS``; ``SPECS_312`` installs the latter with pyflakes): the image's pyenv CPythons, relocatable:
  no ``test/``, ``__pycache__``, site-packages contents, idlelib/tkinter/turtledemo, static
  libpython; RUNPATHs rewritten with patchelf (``bin`` -> ``$ORIGIN/../lib``, ``lib-dynload`` ->
  ``$ORIGIN/../..``); every text file that mentioned the pyenv prefix has it replaced by the
  255-char placeholder and is recorded as a text placeholder (sysconfigdata, python3.11-config,
  Makefile, pkgconfig, shebangs); ``bin/python``, ``bin/python3`` softlinks; depends
  ``__glibc >=2.17``.
* ``linux-64/zstd-1.5.4-h0_system.conda``: ``/usr/bin/zstd`` + ``lib/libzstd.so.1.5.4`` +
  ``lib/libzstd.so.1`` softlink.
* ``noarch/pyflakes-3.2.0-pyh_whl_0.tar.bz2``: from the PyPI wheel, ``noarch: python``,
  entry point ``pyflakes = pyflakes.api:main``.
* ``linux-64/numpy-1.26.4-py311_whl_0.conda``: from the cp311 manylinux wheel, files under
  ``lib/python3.11/site-packages``, depends ``python 3.11.*``; console scripts become
  ``bin/<name>`` with a placeholder shebang (text).
* ``linux-64/cprefix-1.0-h0_0.tar.bz2``: ``bin/cprefix`` (C, prints its compiled-in prefix:
  255-char binary placeholder) and ``etc/cprefix.conf`` (``prefix=<placeholder>``, text).

Wheels are fetched with ``pip download`` into ``<cache>/wheels`` (PyPI must be reachable the
first time).
"""
import email.parser
import fcntl
import hashlib
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path
from typing import Dict, List, Optional

from . import tiny
from .cbuild import cache_root, compile_c, prefix_printer_source
from .condapkg import LONG_PLACEHOLDER, PackageMeta, build_from_files, build_package

PYENV_VERSION = "3.11.7"
PYVER = "3.11"
#: every pyenv CPython repackaged (the first is the main one: numpy is built for it)
PYTHONS = ["3.11.7", "3.12.1"]
WHEELS = ["pyflakes==3.2.0", "numpy==1.26.4"]
SPECS = ["python 3.11.*", "numpy", "pyflakes", "zstd", "cprefix"]
#: the second python: noarch packages install into lib/python3.12/site-packages
SPECS_312 = ["python 3.12.*", "pyflakes", "zstd"]
FACTORY_DIR = Path(__file__).resolve().parent


def _short(version: str) -> str:
    return ".".join(version.split(".")[:2])


def pyenv_root(version: str = PYENV_VERSION) -> Path:
    root = Path(os.path.expanduser("~/.pyenv/versions")) / version
    exe = root / "bin" / ("python" + _short(version))
    if not exe.exists():
        raise RuntimeError("the realistic channel repackages pyenv's CPython %s, but %s does not "
                           "exist; install it with 'pyenv install %s'" % (version, exe, version))
    return root


def _patchelf() -> str:
    cands = [os.path.join(os.path.dirname(sys.executable), "patchelf"), shutil.which("patchelf")]
    venv = os.environ.get("COEX_VENV")
    if venv:
        cands.insert(0, os.path.join(venv, "bin", "patchelf"))
    for c in cands:
        if c and os.path.exists(c):
            return c
    raise RuntimeError("patchelf is needed to make the realistic python relocatable; run with "
                       "the project venv ($COEX_VENV_PY) or install patchelf")


def cache_key() -> str:
    h = hashlib.sha256()
    for p in sorted(FACTORY_DIR.glob("*.py")):
        if not p.name.startswith("test_"):
            h.update(p.name.encode() + b"\0" + p.read_bytes())
    for version in PYTHONS:
        py = pyenv_root(version)
        st = (py / "lib" / ("libpython%s.so.1.0" % _short(version))).stat()
        h.update(("%s %s %d %d" % (py, version, st.st_size, int(st.st_mtime))).encode())
    h.update(" ".join(WHEELS).encode())
    for z in ("/usr/bin/zstd", "/usr/lib/x86_64-linux-gnu/libzstd.so.%s" % tiny.ZSTD_VERSION):
        h.update(("%s %d" % (z, os.path.getsize(z))).encode())
    return h.hexdigest()[:16]


def ensure(out: Optional[str] = None) -> Path:
    """Path of the finished, indexed realistic channel (see module docstring)."""
    if out:
        return build(Path(out))
    root = cache_root()
    root.mkdir(parents=True, exist_ok=True)
    key = cache_key()
    final = root / ("realistic-" + key)
    if (final / ".coex-complete").exists():
        return final
    with open(str(root / (".realistic-%s.lock" % key)), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if (final / ".coex-complete").exists():
            return final
        tmp = root / (".realistic-%s.tmp-%d" % (key, os.getpid()))
        if tmp.exists():
            shutil.rmtree(str(tmp))
        try:
            build(tmp)
            (tmp / ".coex-complete").write_text("ok\n")
            if final.exists():  # an incomplete leftover from an old layout
                shutil.rmtree(str(final))
            os.rename(str(tmp), str(final))
        finally:
            if tmp.exists():
                shutil.rmtree(str(tmp), ignore_errors=True)
        _prune(root, keep=final)
    return final


def _prune(root: Path, keep: Path, max_age_s: float = 86400.0) -> None:
    """Drop realistic channels of other factory versions unused for a day (other checkouts may
    still be using younger ones); the key changes whenever a factory source changes."""
    import time

    for d in root.glob("realistic-*"):
        if d == keep:
            continue
        try:
            age = time.time() - (d / ".coex-complete").stat().st_mtime
        except OSError:
            continue
        if age > max_age_s:
            shutil.rmtree(str(d), ignore_errors=True)
            lock = root / (".%s.lock" % d.name)
            if lock.exists():
                lock.unlink()


# ------------------------------------------------------------------------------------------------


def _ignore_python(src: Path, pyver: str):
    return lambda src_dir, names: _ignored(os.path.relpath(src_dir, str(src)), names, pyver)


def _ignored(rel: str, names: List[str], pyver: str) -> List[str]:
    drop = {"__pycache__"}
    if rel == ".":
        drop |= {n for n in names if n not in ("bin", "lib", "include")}
    elif rel == "bin":
        keep = {"python" + pyver, "python", "python3", "python%s-config" % pyver, "python-config",
                "python3-config", "pydoc" + pyver, "pydoc", "pydoc3"}
        drop |= {n for n in names if n not in keep}
    elif rel == "lib/python" + pyver:
        drop |= {"test", "idlelib", "tkinter", "turtledemo", "turtle.py", "lib2to3"}
    elif rel == "lib/python%s/site-packages" % pyver:
        drop |= {n for n in names if n != "README.txt"}
    elif rel.startswith("lib/python%s/config-" % pyver):
        drop |= {n for n in names if n.endswith((".a", ".o"))}
    return [n for n in names if n in drop]


def _stage_python(stage: Path, version: str) -> Dict[str, tuple]:
    src = pyenv_root(version)
    shutil.copytree(str(src), str(stage), symlinks=True, ignore=_ignore_python(src, _short(version)))
    old = str(src).encode()
    patchelf = _patchelf()
    prefix_files = {}
    for p in sorted(stage.rglob("*")):
        if p.is_symlink() or not p.is_file():
            continue
        data = p.read_bytes()
        rel = p.relative_to(stage).as_posix()
        if data[:4] == b"\x7fELF":
            rp = subprocess.run([patchelf, "--print-rpath", str(p)], capture_output=True, text=True)
            if rp.returncode == 0 and str(src) in rp.stdout:
                new = "$ORIGIN/../lib" if rel.startswith("bin/") or rel.count("/") == 1 else \
                    "$ORIGIN/" + "/".join([".."] * (rel.count("/") - 1))
                subprocess.run([patchelf, "--set-rpath", new, str(p)], check=True)
            continue
        if old in data and b"\0" not in data:
            p.write_bytes(data.replace(old, LONG_PLACEHOLDER.encode()))
            prefix_files[rel] = (LONG_PLACEHOLDER, "text")
    return prefix_files


def _python_package(chan: Path, work: Path, version: str) -> Path:
    stage = work / ("python-" + version)
    prefix_files = _stage_python(stage, version)
    return build_package(stage, chan / "linux-64", PackageMeta(
        "python", version, "h0_pyenv", depends=["__glibc >=2.17"],
        prefix_files=prefix_files, license="PSF-2.0"))


def fetch_wheels() -> List[Path]:
    """The pinned wheels, downloaded once into <cache>/wheels."""
    wdir = cache_root() / "wheels"
    wdir.mkdir(parents=True, exist_ok=True)

    def find():
        out = []
        for pin in WHEELS:
            name, ver = pin.split("==")
            hits = sorted(wdir.glob("%s-%s-*.whl" % (name, ver)))
            out.append(hits[0] if hits else None)
        return out

    found = find()
    if None in found:
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
               "--python-version", PYVER, "--platform", "manylinux2014_x86_64",
               "--implementation", "cp", "--abi", "cp" + PYVER.replace(".", ""),
               "-d", str(wdir), "--quiet"] + WHEELS
        r = subprocess.run(cmd, capture_output=True, text=True)
        found = find()
        if r.returncode != 0 or None in found:
            raise RuntimeError("could not download the wheels %s from PyPI into %s (is PyPI "
                               "reachable?):\n%s" % (WHEELS, wdir, r.stderr[-2000:]))
    return found


def _dep_from_requirement(req: str) -> Optional[str]:
    req, _, marker = req.partition(";")
    if "extra" in marker:
        return None
    req = req.strip().replace("(", " ").replace(")", "")
    name = ""
    for i, ch in enumerate(req):
        if not (ch.isalnum() or ch in "-_."):
            name, rest = req[:i], req[i:].strip()
            break
    else:
        name, rest = req, ""
    name = name.lower().replace("_", "-")
    return (name + " " + rest.replace(" ", "")).strip()


def wheel_to_conda(whl: Path, out_channel: Path, fmt: str = "conda", pyver: str = PYVER) -> Path:
    """Convert a wheel: pure -> noarch python (link.json entry points); binary -> linux-64 under
    lib/python<pyver>/site-packages with depends ``python <pyver>.*``."""
    zf = zipfile.ZipFile(str(whl))
    names = zf.namelist()
    distinfo = [n for n in names if n.endswith(".dist-info/METADATA")][0].rsplit("/", 1)[0]
    md = email.parser.Parser().parsestr(zf.read(distinfo + "/METADATA").decode())
    wheel = email.parser.Parser().parsestr(zf.read(distinfo + "/WHEEL").decode())
    pure = wheel["Root-Is-Purelib"].strip().lower() == "true"
    name = md["Name"].lower().replace("_", "-")
    version = md["Version"]
    deps = [d for d in (_dep_from_requirement(r) for r in md.get_all("Requires-Dist") or []) if d]
    entry_points = []
    if distinfo + "/entry_points.txt" in names:
        section = None
        for line in zf.read(distinfo + "/entry_points.txt").decode().splitlines():
            line = line.strip()
            if line.startswith("["):
                section = line.strip("[]")
            elif line and section == "console_scripts":
                k, _, v = line.partition("=")
                entry_points.append("%s = %s" % (k.strip(), v.strip()))
    sp = "site-packages" if pure else "lib/python%s/site-packages" % pyver
    files = {}
    for info in zf.infolist():
        n = info.filename
        if n.endswith("/"):
            continue
        data = zf.read(n)
        parts = n.split("/", 2)
        if parts[0].endswith(".data") and len(parts) == 3:
            kind, rest = parts[1], parts[2]
            if kind == "scripts":
                dest = ("python-scripts/" if pure else "bin/") + rest
            elif kind in ("purelib", "platlib"):
                dest = sp + "/" + rest
            else:
                continue
        else:
            dest = sp + "/" + n
        exe = (info.external_attr >> 16) & 0o111
        files[dest] = ("exec", data) if exe else data
    files[sp + "/" + distinfo + "/INSTALLER"] = "conda\n"
    prefix_files = {}
    if pure:
        py_dep = "python " + (md.get("Requires-Python") or ">=3").replace(" ", "")
        meta = PackageMeta(name, version, "pyh_whl_0", noarch="python", depends=[py_dep] + deps,
                           entry_points=entry_points)
    else:
        for ep in entry_points:
            script, _, target = ep.partition(" = ")
            mod, _, func = target.partition(":")
            files["bin/" + script] = ("exec", "#!%s/bin/python%s\nimport sys\nfrom %s import %s\n"
                                      "sys.exit(%s())\n" % (LONG_PLACEHOLDER, pyver, mod, func, func))
            prefix_files["bin/" + script] = (LONG_PLACEHOLDER, "text")
        meta = PackageMeta(name, version, "py%s_whl_0" % pyver.replace(".", ""), subdir="linux-64",
                           depends=["python %s.*" % pyver] + deps, prefix_files=prefix_files)
    return build_from_files(files, out_channel / meta.subdir, meta, fmt=fmt)


def build(dest: Path) -> Path:
    """Build and index the realistic channel into ``dest``; returns ``dest``."""
    dest = Path(dest)
    for sd in ("linux-64", "noarch"):
        (dest / sd).mkdir(parents=True, exist_ok=True)
    work = dest / ".work"
    if work.exists():
        shutil.rmtree(str(work))
    work.mkdir()
    try:
        for version in PYTHONS:
            _python_package(dest, work, version)
    finally:
        shutil.rmtree(str(work), ignore_errors=True)
    build_from_files(tiny._zstd_files(), dest / "linux-64",
                     PackageMeta("zstd", tiny.ZSTD_VERSION, "h0_system"))
    printer = compile_c(prefix_printer_source(LONG_PLACEHOLDER), "cprefix")
    build_from_files({
        "bin/cprefix": ("exec", printer),
        "etc/cprefix.conf": "prefix=%s\n" % LONG_PLACEHOLDER,
    }, dest / "linux-64", PackageMeta("cprefix", "1.0", "h0_0", depends=["__glibc >=2.17"],
                                      prefix_files={"bin/cprefix": (LONG_PLACEHOLDER, "binary"),
                                                    "etc/cprefix.conf": (LONG_PLACEHOLDER, "text")}),
                     fmt="tar.bz2")
    for whl in fetch_wheels():
        wheel_to_conda(whl, dest, fmt="tar.bz2" if whl.name.startswith("pyflakes") else "conda")
    tiny.index_channel(dest)
    return dest
