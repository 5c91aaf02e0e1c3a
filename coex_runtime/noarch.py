"""`noarch: python` packages: where their files go, their console scripts, their .pyc files.

* `site-packages/<x>` -> `lib/pythonX.Y/site-packages/<x>` (X.Y of the python being installed;
  its index.json's CEP 17 `python_site_packages_path` when it declares one)
* `python-scripts/<x>` -> `bin/<x>`
* `info/link.json` `noarch.entry_points` ("name = module:func") -> `bin/<name>` console scripts
  (the same bytes rattler writes; a shebang longer than 127 bytes, or a prefix with a blank,
  becomes the `/bin/sh` re-exec form conda and pip use).
* .pyc: compiled after the environment is in place, by its own python (``compile_pyc``: in
  several processes when there is enough source), and kept in the package cache for the next
  environment with the same python (``PYC_CACHE``).
"""

import json
import os
import re

from coex_runtime.errors import NoarchError
from coex_runtime.fs import safe_relpath


def python_version(entries):  # type: (List[dict]) -> Optional[str]
    """"X.Y" of the `python` package among `entries`, or None."""
    for e in entries:
        if e.get("name") == "python":
            parts = str(e.get("version", "")).split(".")
            if len(parts) >= 2 and parts[0].isdigit() and parts[1].isdigit():
                return "%s.%s" % (parts[0], parts[1])
    return None


def is_noarch_python(entry, index):  # type: (dict, Optional[dict]) -> bool
    na = entry.get("noarch") or (index or {}).get("noarch")
    if isinstance(na, dict):  # very old: {"type": "python"}
        na = na.get("type")
    return na == "python"


def site_packages(pyver, python_index=None):  # type: (str, Optional[dict]) -> str
    """The prefix-relative site-packages of the python being installed: its index.json's
    `python_site_packages_path` (CEP 17, e.g. free-threaded builds), else lib/pythonX.Y/..."""
    sp = (python_index or {}).get("python_site_packages_path")
    return (isinstance(sp, str) and safe_relpath(sp)) or "lib/python%s/site-packages" % pyver


def target_path(rel, sp):  # type: (str, str) -> str
    """Where a noarch python package's file `rel` goes in the prefix (`sp`: site_packages())."""
    if rel.startswith("site-packages/"):
        return sp + rel[len("site-packages"):]
    if rel.startswith("python-scripts/"):
        return "bin" + rel[len("python-scripts"):]
    return rel


def read_entry_points(pkg, pkgdir):  # type: (str, str) -> List[Tuple[str, str, str]]
    """[(name, module, func)] from info/link.json."""
    lj = os.path.join(pkgdir, "info", "link.json")
    if not os.path.isfile(lj):
        return []
    try:
        with open(lj, "rb") as f:
            data = json.loads(f.read().decode("utf-8"))
    except ValueError as e:
        raise NoarchError("%s: info/link.json is not valid JSON (%s)" % (pkg, e)) from e
    noarch = data.get("noarch") or {}
    out = []
    for spec in noarch.get("entry_points", []) or []:
        m = re.match(r"^\s*([^=\s]+)\s*=\s*([\w.]+)\s*:\s*([\w.]+)\s*(\[.*\])?\s*$", spec)
        if not m:
            raise NoarchError("%s: info/link.json entry point %r is not 'name = module:function'"
                              % (pkg, spec))
        name = m.group(1)
        if "/" in name or name in (".", ".."):
            raise NoarchError("%s: entry point name %r is not a plain file name" % (pkg, name))
        out.append((name, m.group(2), m.group(3)))
    return out


MAX_SHEBANG = 127


def python_shebang(prefix, pyver):  # type: (str, str) -> str
    """The interpreter line(s) for console scripts of the environment at `prefix`."""
    exe = "%s/bin/python%s" % (prefix.rstrip("/"), pyver)
    line = "#!%s" % exe
    if len(line) + 1 > MAX_SHEBANG or " " in exe:
        # too long for the kernel: run through sh, which re-execs the right python
        return "#!/bin/sh\n'''exec' \"%s\" \"$0\" \"$@\" #'''" % exe
    return line


def entry_point_script(prefix, pyver, module, func):  # type: (str, str, str, str) -> bytes
    import_name = func.split(".")[0]
    return ("%s\n"
            "# -*- coding: utf-8 -*-\n"
            "import re\n"
            "import sys\n"
            "\n"
            "from %s import %s\n"
            "\n"
            "if __name__ == '__main__':\n"
            "\tsys.argv[0] = re.sub(r'(-script\\.pyw?|\\.exe)?$', '', sys.argv[0])\n"
            "\tsys.exit(%s())\n" % (python_shebang(prefix, pyver), module, import_name, func)
            ).encode("utf-8")


# Run by the environment's own python (any version, 2.7 included) as `python -E -S -B`:
# compile each listed file, print its path and the path of the .pyc written (two lines); files
# that do not compile (e.g. py2-only modules some packages ship) are skipped, as conda does.
# Python 3.5+: importlib's own SourceFileLoader.get_code (what an import does: timestamp .pyc,
# the source's mode, written atomically), which costs ~4 ms of imports where py_compile's
# (enum, traceback, re, collections...) cost ~60 ms in an environment without stdlib .pyc.
# -B: modules this script imports leave no stray .pyc in the environment; the files listed do.
_COMPILE = r"""
import sys
try:
    from importlib.machinery import SourceFileLoader
    from importlib._bootstrap_external import cache_from_source
except ImportError:
    SourceFileLoader = None
    import py_compile
    try:
        from importlib.util import cache_from_source
    except ImportError:
        def cache_from_source(p):
            return p + "c"
sys.dont_write_bytecode = False
out = []
for line in open(sys.argv[1], "rb").read().decode("utf-8").splitlines():
    if not line:
        continue
    try:
        if SourceFileLoader is not None:
            SourceFileLoader("coex_pyc", line).get_code("coex_pyc")
        else:
            py_compile.compile(line, doraise=True)
    except Exception:
        continue
    out.append(line + "\n" + cache_from_source(line) + "\n")
sys.stdout.write("".join(out))
"""

# bytes of source per compiling process (~20-40 ms of compiling; a process starts in ~10 ms):
# less than this runs in one process
PYC_CHUNK_BYTES = 128 << 10


def env_python(prefix, pyver):  # type: (str, str) -> str
    for name in ("python%s" % pyver, "python3", "python"):
        p = os.path.join(prefix, "bin", name)
        if os.path.exists(p):
            return p
    raise NoarchError("cannot compile .pyc files: the environment has no bin/python%s" % pyver)


def compile_pyc(prefix, pyver, py_rels, jobs=None):
    # type: (str, str, List[str], Optional[int]) -> Dict[str, str]
    """Compile `py_rels` (paths relative to prefix) with the environment's python: up to `jobs`
    (default: the CPU count) processes at once, each with PYC_CHUNK_BYTES of source or more,
    balanced by size. Returns
    {py_rel: pyc_rel} of the files compiled, the .pyc named as that python names them (its own
    cache tag: cpython-311, pypy39, ...); a .pyc that did not appear is left out."""
    return Compiling(prefix, pyver, py_rels, jobs).wait()


class Compiling(object):
    """``compile_pyc`` started: the processes run while the caller does other work; ``wait()``
    gives what compile_pyc returns (and ``kill()`` stops them)."""

    def __init__(self, prefix, pyver, py_rels, jobs=None):
        # type: (str, str, List[str], Optional[int]) -> None
        self.prefix, self.procs, self.listings = prefix, [], []
        if not py_rels:
            return
        import subprocess
        from coex_runtime.atomic import make_temp
        self.python = python = env_python(prefix, pyver)
        py_rels = list(py_rels)
        if jobs is None:
            jobs = os.cpu_count() or 1
        sizes = {}
        for r in py_rels:
            try:
                sizes[r] = os.path.getsize(os.path.join(prefix, r))
            except OSError:
                sizes[r] = 0
        n = max(1, min(int(jobs), len(py_rels), sum(sizes.values()) // PYC_CHUNK_BYTES + 1))
        chunks = [[] for _ in range(n)]
        load = [0] * n
        for r in sorted(py_rels, key=lambda r: -sizes[r]):  # biggest first, to the lightest chunk
            k = load.index(min(load))
            chunks[k].append(r)
            load[k] += sizes[r]
        try:
            for chunk in chunks:
                fd, listing = make_temp(prefix, ".coex-pyc-", ".txt")
                self.listings.append(listing)
                with os.fdopen(fd, "wb") as f:
                    f.write(("\n".join(os.path.join(prefix, r) for r in chunk) + "\n").encode("utf-8"))
                try:
                    self.procs.append(subprocess.Popen([python, "-E", "-S", "-B", "-c", _COMPILE,
                                                        listing], cwd=prefix, stdout=subprocess.PIPE,
                                                       stderr=subprocess.PIPE))
                except OSError as e:
                    raise NoarchError("cannot run the environment's python (%s) to compile .pyc "
                                      "files: %s; is the archive built for this platform?"
                                      % (python, e)) from e
        except BaseException:
            self.kill()
            raise

    def kill(self):  # type: () -> None
        for proc in self.procs:
            if proc.returncode is None:
                proc.kill()
                proc.wait()
        for listing in self.listings:
            try:
                os.unlink(listing)
            except OSError:
                pass
        self.listings = []

    def wait(self):  # type: () -> Dict[str, str]
        try:
            outs = [proc.communicate() for proc in self.procs]
        finally:
            self.kill()
        prefix = self.prefix
        root = prefix.rstrip("/") + "/"
        done = {}
        for proc, (out, err) in zip(self.procs, outs):
            if proc.returncode != 0:
                raise NoarchError("compiling .pyc files with %s failed (exit %s):\n%s"
                                  % (self.python, proc.returncode, err.decode("utf-8", "replace").rstrip()))
            lines = out.decode("utf-8", "surrogateescape").splitlines()
            for src, pyc in zip(lines[0::2], lines[1::2]):
                if src.startswith(root) and pyc.startswith(root) \
                        and os.path.isfile(os.path.join(prefix, pyc)):
                    done[src[len(root):]] = pyc[len(root):]
        return done


# The .pyc of a noarch: python package compiled by one python package (its stored sha256: the
# same interpreter, so the same cache tag, magic number and site-packages), kept next to the
# package in the package cache: pkgs/<sha256>/.coex-pyc/<python key>/ holds ``map.json``
# (``pyc``: {py target: pyc target}, prefix-relative; ``uncompiled``: the .py that do not
# compile, py2-only modules and such) and ``files/<pyc target>``. The next environment with
# both packages links them as it links the package's files, instead of starting its python to
# compile them again (a new version of an app shares most packages with the last one). A .pyc
# records its source's mtime and size: the source is the package cache's file (a hardlink, or a
# copy with its times), so it holds in every environment; a source whose prefix is replaced is
# never taken from here (its size differs per environment), nor one another package wins.
PYC_CACHE = ".coex-pyc"


def pyc_cache_dir(pkgdir, python_key):  # type: (str, str) -> str
    return os.path.join(pkgdir, PYC_CACHE, python_key[:16])


def cached_pyc(cache_dir):  # type: (str) -> Tuple[Dict[str, str], List[str]]
    """({py target: pyc target}, [py targets that do not compile]) kept in ``cache_dir``
    (({}, []) when there is none)."""
    try:
        with open(os.path.join(cache_dir, "map.json"), "rb") as f:
            data = json.loads(f.read().decode("utf-8"))
        pyc, failed = dict(data["pyc"]), list(data["uncompiled"])
    except (IOError, OSError, ValueError, KeyError, TypeError):
        return {}, []
    return pyc, failed


def keep_pyc(cache_dir, prefix, py, compiled):  # type: (str, str, List[str], Dict[str, str]) -> None
    """Keep copies of the .pyc ``compiled`` ({py target: pyc target}) from ``py`` in ``prefix``
    in ``cache_dir`` (a complete directory or none: its work directory is a ``.tmp-`` one of the
    package cache, which the cache's sweep removes); nothing when that cannot be done (a
    read-only package cache)."""
    from coex_runtime.atomic import AtomicDirectory
    from coex_runtime.fs import makedirs

    def populate(work):
        for pyc in sorted(compiled.values()):
            dst = os.path.join(work, "files", pyc)
            makedirs(os.path.dirname(dst))
            with open(os.path.join(prefix, pyc), "rb") as src, open(dst, "wb") as out:
                out.write(src.read())
        data = {"pyc": compiled, "uncompiled": sorted(set(py) - set(compiled))}
        with open(os.path.join(work, "map.json"), "wb") as f:
            f.write(json.dumps(data, sort_keys=True).encode("utf-8"))
        os.chmod(work, 0o755)
    pkgs_dir = os.path.dirname(os.path.dirname(os.path.dirname(cache_dir)))
    try:
        AtomicDirectory(cache_dir, pkgs_dir, ".tmp-pyc-%s-" % os.path.basename(cache_dir),
                        ready=lambda d: os.path.isfile(os.path.join(d, "map.json"))).ensure(populate)
    except EnvironmentError:
        pass
