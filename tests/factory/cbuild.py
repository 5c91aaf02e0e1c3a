"""Compile small C programs for test packages, cached by source hash.

``compile_c(source, name) -> bytes`` returns the ELF produced by ``gcc -O2``; the result is kept
under ``${XDG_CACHE_HOME:-~/.cache}/coex-test-channels/cc/<sha256 of source+flags>/<name>`` so
repeated tiny-channel builds do not run gcc. Writes are atomic (temp file + rename), so parallel
pytest-xdist workers are safe.

``prefix_printer_source(placeholder)``: prints its compiled-in prefix (a C string that starts with
the placeholder, so binary prefix replacement can be checked by running it).
``fake_python_source(placeholder, real_python, pyver)``: the tiny tier's fake ``python``: prints
the prefix for ``--print-prefix``, else execs ``real_python`` with
``PYTHONPATH=<prefix>/lib/python<pyver>/site-packages`` (prepended to any existing PYTHONPATH)
and ``COEX_FAKE_PYTHON_PREFIX=<prefix>``.
"""
import hashlib
import os
import shutil
import subprocess
import tempfile
from pathlib import Path


def cache_root() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "coex-test-channels"


def _c_string(s: str) -> str:
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'


def compile_c(source: str, name: str, flags=("-O2",)) -> bytes:
    gcc = shutil.which("gcc") or shutil.which("cc")
    if not gcc:
        raise RuntimeError("gcc (or cc) is needed to build the test conda packages; "
                           "install it, e.g. 'apt-get install gcc'")
    key = hashlib.sha256(("\0".join(flags) + "\0" + source).encode()).hexdigest()[:24]
    out = cache_root() / "cc" / key / name
    if out.is_file():
        return out.read_bytes()
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=str(out.parent)) as td:
        src = Path(td) / (name + ".c")
        src.write_text(source)
        exe = Path(td) / name
        r = subprocess.run([gcc, *flags, "-o", str(exe), str(src)], capture_output=True, text=True)
        if r.returncode != 0:
            raise RuntimeError("compiling %s failed:\n%s" % (name, r.stderr))
        os.replace(str(exe), str(out))
    return out.read_bytes()


def prefix_printer_source(placeholder: str, label: str = "prefix") -> str:
    return r"""#include <stdio.h>
#include <string.h>
static char prefix[] = %s;
int main(int argc, char **argv) {
    if (argc > 1 && strcmp(argv[1], "--label") == 0) { puts(%s); return 0; }
    puts(prefix);
    return 0;
}
""" % (_c_string(placeholder), _c_string(label))


def fake_python_source(placeholder: str, real_python: str, pyver: str) -> str:
    return r"""#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
static char prefix[] = %s;
static const char real[] = %s;
int main(int argc, char **argv) {
    char sp[8192];
    const char *old;
    if (argc > 1 && strcmp(argv[1], "--print-prefix") == 0) { puts(prefix); return 0; }
    old = getenv("PYTHONPATH");
    if (old && *old) snprintf(sp, sizeof sp, "%%s/lib/python%s/site-packages:%%s", prefix, old);
    else snprintf(sp, sizeof sp, "%%s/lib/python%s/site-packages", prefix);
    setenv("PYTHONPATH", sp, 1);
    setenv("COEX_FAKE_PYTHON_PREFIX", prefix, 1);
    argv[0] = (char *)real;
    execv(real, argv);
    perror(real);
    return 127;
}
""" % (_c_string(placeholder), _c_string(real_python), pyver, pyver)
