"""Prefix placeholder replacement and long-shebang rewriting, as conda and rattler do them.

* text mode: every occurrence of the placeholder becomes the new prefix; then a shebang longer
  than the kernel's limit (127 bytes, Linux BINPRM_BUF_SIZE 128 minus the newline), or one whose
  interpreter path contains a space, becomes `#!/usr/bin/env <program> <args>`.
* binary mode: each C string holding the placeholder is rewritten in place with the new prefix
  and padded with NULs to its old length, so offsets in the file do not move; a new prefix
  longer than the placeholder is an error naming the file.
"""

import re

MAX_SHEBANG = 127


class PrefixError(Exception):
    """The new prefix cannot be written into a file (names the package and file)."""


def replace_text(data, placeholder, new_prefix):
    """bytes -> bytes: plain replacement, then the long-shebang fix."""
    if placeholder and placeholder in data:
        data = data.replace(placeholder, new_prefix)
    return fix_shebang(data)


_SHEBANG = re.compile(
    br"^(#!"          # the shebang
    br"[ \t]*"        # optional blanks
    br"((?:[^\n\\ \t]|\\.)+)"   # the interpreter path (escaped blanks allowed)
    br"([^\n]*))",    # options up to the end of the line
)


def fix_shebang(data):
    """Rewrite `#!/very/long/path/prog args` to `#!/usr/bin/env prog args` when the line is
    longer than the kernel accepts (or the path has an escaped blank)."""
    if not data.startswith(b"#!"):
        return data
    m = _SHEBANG.match(data)
    if not m:
        return data
    whole, exe, options = m.group(1), m.group(2), m.group(3)
    if len(whole) <= MAX_SHEBANG and b"\\ " not in exe:
        return data
    if b"/" not in exe:
        return data
    prog = exe.rsplit(b"/", 1)[1]
    if exe.endswith(b"/env") or exe == b"/usr/bin/env":
        return data
    new = b"#!/usr/bin/env " + prog + options
    return new + data[len(whole):]


def replace_binary(data, placeholder, new_prefix, what):
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
