"""`noarch: python` packages: where their files go, their console scripts, their .pyc files.

* `site-packages/<x>` -> `lib/pythonX.Y/site-packages/<x>` (X.Y of the python being installed)
* `python-scripts/<x>` -> `bin/<x>`
* `info/link.json` `noarch.entry_points` ("name = module:func") -> `bin/<name>` console scripts
  (the same bytes rattler writes; a shebang longer than 127 bytes, or a prefix with a blank,
  becomes the `/bin/sh` re-exec form conda and pip use).
* .pyc: compiled after the environment is in place, with its own python, in one process.
"""

import json
import os
import re


class NoarchError(Exception):
    """A noarch: python package cannot be installed (names the package)."""


def python_version(entries):
    """"X.Y" of the `python` package among `entries`, or None."""
    for e in entries:
        if e.get("name") == "python":
            parts = str(e.get("version", "")).split(".")
            if len(parts) >= 2 and parts[0].isdigit() and parts[1].isdigit():
                return "%s.%s" % (parts[0], parts[1])
    return None


def is_noarch_python(entry, index):
    na = entry.get("noarch") or (index or {}).get("noarch")
    if isinstance(na, dict):  # very old: {"type": "python"}
        na = na.get("type")
    return na == "python"


def site_packages(pyver):
    return "lib/python%s/site-packages" % pyver


def target_path(rel, pyver):
    """Where a noarch python package's file `rel` goes in the prefix."""
    if rel.startswith("site-packages/"):
        return site_packages(pyver) + rel[len("site-packages"):]
    if rel.startswith("python-scripts/"):
        return "bin" + rel[len("python-scripts"):]
    return rel


def read_entry_points(pkg, pkgdir):
    """[(name, module, func)] from info/link.json."""
    lj = os.path.join(pkgdir, "info", "link.json")
    if not os.path.isfile(lj):
        return []
    try:
        with open(lj, "rb") as f:
            data = json.loads(f.read().decode("utf-8"))
    except ValueError as e:
        raise NoarchError("%s: info/link.json is not valid JSON (%s)" % (pkg, e))
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


def python_shebang(prefix, pyver):
    """The interpreter line(s) for console scripts of the environment at `prefix`."""
    exe = "%s/bin/python%s" % (prefix.rstrip("/"), pyver)
    line = "#!%s" % exe
    if len(line) + 1 > MAX_SHEBANG or " " in exe:
        # too long for the kernel: run through sh, which re-execs the right python
        return "#!/bin/sh\n'''exec' \"%s\" \"$0\" \"$@\" #'''" % exe
    return line


def entry_point_script(prefix, pyver, module, func):
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


def pyc_path(py_rel, pyver, impl="cpython"):
    """`a/b.py` -> `a/__pycache__/b.cpython-XY.pyc` (PEP 3147)."""
    d, base = os.path.split(py_rel)
    stem = base[:-3]
    tag = "%s-%s" % (impl, pyver.replace(".", ""))
    return "/".join(p for p in (d, "__pycache__", "%s.%s.pyc" % (stem, tag)) if p)


def compile_pyc(prefix, pyver, py_rels):
    """Compile `py_rels` (paths relative to prefix) with the environment's python in ONE
    process. Returns the list of .pyc paths (relative) that exist afterwards."""
    if not py_rels:
        return []
    import subprocess
    import tempfile
    python = os.path.join(prefix, "bin", "python%s" % pyver)
    if not os.path.exists(python):
        python = os.path.join(prefix, "bin", "python")
    if not os.path.exists(python):
        raise NoarchError("cannot compile .pyc files: the environment has no bin/python%s" % pyver)
    fd, listing = tempfile.mkstemp(prefix=".coex-pyc-", suffix=".txt", dir=prefix)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(("\n".join(os.path.join(prefix, r) for r in py_rels) + "\n").encode("utf-8"))
        try:
            proc = subprocess.Popen([python, "-Wi", "-m", "compileall", "-q", "-l", "-i", listing],
                                    cwd=prefix, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        except OSError as e:
            raise NoarchError("cannot run the environment's python (%s) to compile .pyc files: %s; "
                              "is the archive built for this platform?" % (python, e))
        out = proc.communicate()[0]
    finally:
        os.unlink(listing)
    # compileall reports syntax errors (e.g. py2-only files some packages ship) but goes on;
    # conda ignores these too: the .pyc simply does not exist.
    done = []
    for r in py_rels:
        pr = pyc_path(r, pyver)
        if os.path.exists(os.path.join(prefix, pr)):
            done.append(pr)
    if proc.returncode not in (0, 1):
        raise NoarchError("compiling .pyc files with %s failed (exit %s):\n%s"
                          % (python, proc.returncode, out.decode("utf-8", "replace")))
    return done
