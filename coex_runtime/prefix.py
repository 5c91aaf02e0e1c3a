"""Prefix placeholder replacement and long-shebang rewriting, as conda and rattler do them.

* text mode: every occurrence of the placeholder becomes the new prefix; then a shebang line
  longer than the kernel's limit (127 bytes: Linux BINPRM_BUF_SIZE 128 minus the newline), or
  one whose interpreter path would hold a blank, is rewritten: `#!/usr/bin/env <prog> <args>`
  as conda does, except for a python interpreter, which gets the `/bin/sh` re-exec form
  rattler writes (`#!/bin/sh` + `'''exec' "<prefix>/bin/python3.X" "$0" "$@" #'''`), so the
  script keeps using the environment's own python instead of whatever `python3.X` is on PATH.
* binary mode: each C string holding the placeholder is rewritten in place with the new prefix
  and padded with NULs to its old length, so offsets in the file do not move; a new prefix
  longer than the placeholder is an error naming the file.
"""

import re

from coex_runtime.errors import PrefixError

MAX_SHEBANG = 127


def replace_text(data, placeholder, new_prefix):  # type: (bytes, bytes, bytes) -> bytes
    """bytes -> bytes: every placeholder becomes `new_prefix`; a shebang line that ends up too
    long for the kernel (or holding a blank) is rewritten (see `_env_shebang`)."""
    if not placeholder or placeholder not in data:
        return data
    if data.startswith(b"#!") and b" " in new_prefix:
        # a blank in the interpreter path cannot work: rewrite before replacing
        line, nl, rest = data.partition(b"\n")
        if placeholder in line:
            line = _env_shebang(line)
        return (line + nl + rest).replace(placeholder, new_prefix)
    data = data.replace(placeholder, new_prefix)
    return fix_shebang(data)


_SHEBANG = re.compile(
    br"^#!"                     # the shebang
    br"[ \t]*"                  # optional blanks
    br"((?:[^\n\\ \t]|\\.)+)"   # the interpreter path (escaped blanks allowed)
    br"([^\n]*)$",              # its arguments, up to the end of the line
)
_PYTHON_EXE = re.compile(br"^python(?:\d+(?:\.\d+)*)?w?$")
_SH_EXEC = b"#!/bin/sh\n'''exec' \"%s\"%s \"$0\" \"$@\" #'''"


def _env_shebang(line):
    """`#!/long/path/prog args` -> `#!/usr/bin/env prog args`; for a python interpreter the
    `/bin/sh` re-exec form, which keeps using that exact python (what rattler writes)."""
    m = _SHEBANG.match(line)
    if not m:
        return line
    exe, args = m.group(1), m.group(2)
    prog = exe.rsplit(b"/", 1)[-1]
    if _PYTHON_EXE.match(prog):
        return _SH_EXEC.replace(b"%s", exe, 1).replace(b"%s", args, 1)
    return b"#!/usr/bin/env " + prog + args


def fix_shebang(data):  # type: (bytes) -> bytes
    """Rewrite the first line when it is a shebang longer than the kernel accepts."""
    if not data.startswith(b"#!"):
        return data
    line, nl, rest = data.partition(b"\n")
    if len(line) <= MAX_SHEBANG:
        return data
    return _env_shebang(line) + nl + rest


def replace_binary(data, placeholder, new_prefix, what):  # type: (bytes, bytes, bytes, str) -> bytes
    """Rewrite each NUL-terminated string containing `placeholder` in place, NUL-padded."""
    if not placeholder or placeholder not in data:
        return data
    if len(new_prefix) > len(placeholder):
        raise PrefixError(
            "%s: the install prefix %r is %d bytes long but the package's placeholder is only %d "
            "bytes; binary files cannot be relocated to a longer prefix. Use a shorter cache "
            "directory (set COEX_ROOT to a short path) or rebuild the package with a longer "
            "placeholder" % (what, new_prefix.decode("utf-8", "replace"), len(new_prefix),
                             len(placeholder)))
    pat = re.compile(re.escape(placeholder) + br"([^\0]*?)\0")

    def sub(m):
        old = m.group(0)
        rest = m.group(1).replace(placeholder, new_prefix)
        new = new_prefix + rest
        pad = len(old) - len(new) - 1
        if pad < 0:
            raise PrefixError("%s: a string holding the placeholder would grow past its "
                              "allocated length" % what)
        return new + b"\0" * (pad + 1)

    out = pat.sub(sub, data)
    if len(out) != len(data):
        raise PrefixError("%s: binary prefix replacement changed the file size" % what)
    return out
