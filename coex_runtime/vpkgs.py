"""Virtual packages: what the host provides, and whether it satisfies an archive's lock.

The record's ``virtual_packages`` lists match specs such as ``__glibc >=2.17,<3.0.a0``,
``__linux``, ``__unix``, ``__cuda >=11.2``, ``__archspec 1 x86_64_v2`` (name, optional version
spec, optional build glob). ``detect()`` returns ``{name: (version, build)}`` for this host:

* ``__glibc``: ``os.confstr("CS_GNU_LIBC_VERSION")`` (``CONDA_OVERRIDE_GLIBC``)
* ``__linux``: the numeric part of the kernel release (``CONDA_OVERRIDE_LINUX``)
* ``__osx``: ``platform.mac_ver()`` (``CONDA_OVERRIDE_OSX``)
* ``__unix``: on any POSIX host
* ``__archspec``: version ``1``, build = the x86-64 micro-architecture level (``x86_64_v1`` ..
  ``x86_64_v4``, from /proc/cpuinfo flags) or the machine ``uname`` names (``CONDA_OVERRIDE_ARCHSPEC``)
* ``__cuda``: the driver's CUDA version through ``libcuda.so.1`` (``CONDA_OVERRIDE_CUDA``)

As in conda, ``CONDA_OVERRIDE_<NAME>`` replaces the detected version; an empty value means
"absent". ``check(specs)`` returns the unmet needs as human sentences ("needs glibc >= 2.40, this
host has 2.36"). Version comparison follows conda's VersionOrder closely enough for virtual
packages (numeric components, alpha/dev/post tags, ``.*`` wildcards, ``|`` and ``,``).
"""

import fnmatch
import operator
import os
import re
import sys


# ---------------------------------------------------------------------------------------------
# versions (a compact conda VersionOrder)


def _parse_version(v):
    v = v.strip().lower().replace("-", "_")
    if "!" in v:
        epoch, v = v.split("!", 1)
        epoch = int(epoch) if epoch.isdigit() else 0
    else:
        epoch = 0
    v = v.split("+", 1)[0]
    comps = []
    for part in re.split(r"[._]", v):
        if part == "":
            continue
        for tok in re.findall(r"\d+|[a-z]+", part):
            comps.append(tok)
    return epoch, comps


def _key(tok):
    # conda: "dev" < strings < "_" ... < numbers < "post"
    if tok.isdigit():
        return (3, int(tok), "")
    if tok == "dev":
        return (0, 0, "")
    if tok == "post":
        return (4, 0, "")
    return (1, 0, tok)


def compare(a, b):  # type: (str, str) -> int
    """-1, 0, 1 like conda's VersionOrder for the common cases."""
    ea, ca = _parse_version(a)
    eb, cb = _parse_version(b)
    if ea != eb:
        return -1 if ea < eb else 1
    n = max(len(ca), len(cb))
    for i in range(n):
        # conda pads the shorter version with zeros: 1.1 == 1.1.0 and 3.0.a0 < 3.0
        ka = _key(ca[i]) if i < len(ca) else (3, 0, "")
        kb = _key(cb[i]) if i < len(cb) else (3, 0, "")
        if ka != kb:
            return -1 if ka < kb else 1
    return 0


_CMP = {"==": operator.eq, "!=": operator.ne, ">=": operator.ge, "<=": operator.le, ">": operator.gt,
        "<": operator.lt}


def _match_one(version, constraint):
    c = constraint.strip()
    if not c or c == "*":
        return True
    m = re.match(r"^(>=|<=|==|!=|~=|>|<|=)?\s*(.+)$", c)
    op, rhs = m.group(1) or "", m.group(2).strip()
    if rhs.endswith(".*") or rhs.endswith("*"):
        prefix = rhs.rstrip("*").rstrip(".")
        starts = _starts_with(version, prefix)
        if op in ("", "=", "=="):
            return starts
        if op == "!=":
            return not starts
        rhs = prefix
    if op in ("", "=") and not rhs.endswith("*"):
        if op == "=":
            return _starts_with(version, rhs)
        return compare(version, rhs) == 0
    cmp = compare(version, rhs)
    if op in _CMP:
        return _CMP[op](cmp, 0)
    if op == "~=":
        parts = rhs.split(".")
        return cmp >= 0 and _starts_with(version, ".".join(parts[:-1]) if len(parts) > 1 else rhs)
    return False


def _starts_with(version, prefix):
    _, cv = _parse_version(version)
    _, cp = _parse_version(prefix)
    return cv[: len(cp)] == cp or all(
        i < len(cv) and _key(cv[i]) == _key(cp[i]) for i in range(len(cp)))


def version_matches(version, spec):  # type: (str, Optional[str]) -> bool
    """``spec`` is a conda version spec: ``|`` (or) of ``,`` (and) of constraints."""
    spec = (spec or "").strip()
    if not spec or spec == "*":
        return True
    return any(all(_match_one(version, c) for c in alt.split(",")) for alt in spec.split("|"))


# ---------------------------------------------------------------------------------------------
# specs


def parse_spec(text):  # type: (str) -> Tuple[str, Optional[str], Optional[str]]
    """``"__glibc >=2.17,<3.0.a0"`` -> ("__glibc", ">=2.17,<3.0.a0", None);
    ``"__archspec 1 x86_64_v2"`` -> ("__archspec", "1", "x86_64_v2"). Also accepts the
    ``name=version=build`` and ``name[version='>=1']`` forms."""
    t = text.strip()
    m = re.match(r"^([^\s\[=<>!~]+)\s*\[(.*)\]\s*$", t)
    if m:
        name, ver, build = m.group(1), None, None
        for k, v in re.findall(r"(\w+)\s*=\s*['\"]?([^'\",\]]*)['\"]?", m.group(2)):
            if k == "version":
                ver = v
            elif k == "build":
                build = v
        return name, ver, build
    m = re.match(r"^([^\s=<>!~]+)\s*(.*)$", t)
    name, rest = m.group(1), m.group(2).strip()
    if not rest:
        return name, None, None
    if rest.startswith("=") and not rest.startswith("=="):
        # name=1.2=build / name=1.2
        bits = rest[1:].split("=")
        ver = bits[0] + ("*" if not bits[0].endswith("*") and len(bits) == 1 else "")
        if len(bits) == 1:
            ver = bits[0] if bits[0].endswith("*") else bits[0] + ".*"
        return name, ver, bits[1] if len(bits) > 1 else None
    parts = rest.split()
    ver = parts[0]
    build = parts[1] if len(parts) > 1 else None
    m = re.match(r"^([^=<>!~]+)=([^=].*)$", ver)
    if m and build is None:  # "1=*x86_64_v3": version=build
        ver, build = m.group(1), m.group(2)
    return name, ver, build


# ---------------------------------------------------------------------------------------------
# detection


def _override(name, environ):
    key = "CONDA_OVERRIDE_" + name[2:].upper()
    if key in environ:
        return True, environ[key].strip()
    return False, None


def _glibc():
    try:
        s = os.confstr("CS_GNU_LIBC_VERSION")
    except (AttributeError, ValueError, OSError):
        s = None
    if s and s.startswith("glibc "):
        return s.split()[1]
    return None


def _linux():
    rel = os.uname().release
    m = re.match(r"^(\d+(?:\.\d+)*)", rel)
    return m.group(1) if m else None


def _x86_level():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags"):
                    flags = set(line.split(":", 1)[1].split())
                    break
            else:
                return "x86_64_v1"
    except (IOError, OSError):
        return "x86_64_v1"
    v2 = {"cx16", "lahf_lm", "popcnt", "sse4_1", "sse4_2", "ssse3"}
    v3 = {"avx", "avx2", "bmi1", "bmi2", "f16c", "fma", "abm", "movbe", "xsave"}
    v4 = {"avx512f", "avx512bw", "avx512cd", "avx512dq", "avx512vl"}
    level = 1
    for n, s in ((2, v2), (3, v3), (4, v4)):
        if s <= flags:
            level = n
        else:
            break
    return "x86_64_v%d" % level


def _osx():
    import platform
    return platform.mac_ver()[0] or None


def _cuda():
    try:
        import ctypes
        lib = ctypes.CDLL("libcuda.so.1")
        ver = ctypes.c_int(0)
        if lib.cuInit(0) != 0 or lib.cuDriverGetVersion(ctypes.byref(ver)) != 0:
            return None
        return "%d.%d" % (ver.value // 1000, (ver.value % 1000) // 10)
    except Exception:
        return None


def detect(environ=None, only=None):
    # type: (Optional[Mapping[str, str]], Optional[Iterable[str]]) -> Dict[str, Tuple[str, str]]
    """{name: (version, build)} of this host's virtual packages, CONDA_OVERRIDE_* applied; with
    ``only``, of those names alone (asking the CUDA driver can take a while)."""
    environ = os.environ if environ is None else environ
    out = {}
    is_linux = sys.platform.startswith("linux")
    is_mac = sys.platform == "darwin"
    machine = os.uname().machine
    only = None if only is None else set(only)

    def put(name, detector, build="0"):
        if only is not None and name not in only:
            return
        given, value = _override(name, environ)
        if given:
            if value:
                out[name] = (value, build)
            return
        v = detector()
        if v:
            out[name] = (v, build)

    if is_linux:
        put("__glibc", _glibc, "0")
        put("__linux", _linux, "0")
    if is_mac:
        put("__osx", _osx, "0")
    if os.name == "posix" and (only is None or "__unix" in only):
        out["__unix"] = ("0", "0")
    given, value = _override("__archspec", environ)
    if given:
        if value:
            out["__archspec"] = ("1", value)
    elif only is None or "__archspec" in only:
        out["__archspec"] = ("1", _x86_level() if machine in ("x86_64", "AMD64") and is_linux else machine)
    put("__cuda", _cuda, "0")
    return out


_PRETTY = {"__glibc": "glibc", "__linux": "Linux kernel", "__osx": "macOS", "__cuda": "CUDA driver",
           "__archspec": "CPU micro-architecture", "__unix": "a Unix host", "__win": "Windows"}


def _build_ok(host_build, want):
    if want is None or want == "*":
        return True
    if fnmatch.fnmatchcase(host_build, want):
        return True
    m1, m2 = re.match(r"^x86_64_v(\d)$", host_build), re.match(r"^\*?x86_64_v(\d)\*?$", want)
    return bool(m1 and m2 and int(m1.group(1)) >= int(m2.group(1)))


def check(specs, host=None):  # type: (Iterable[str], Optional[Dict[str, Tuple[str, str]]]) -> List[str]
    """The list of unmet virtual-package needs, each a sentence; empty when all are met."""
    host = detect() if host is None else host
    problems = []
    for text in specs or ():
        try:
            name, ver, build = parse_spec(text)
        except Exception:
            problems.append("cannot read the virtual package need %r in the archive" % text)
            continue
        if not name.startswith("__"):
            continue
        pretty = _PRETTY.get(name, name)
        override = "CONDA_OVERRIDE_" + name[2:].upper()
        if name not in host:
            problems.append("needs %s%s, this host has none (set %s=<version> to override)"
                            % (pretty, " " + _pretty_ver(ver) if ver and ver != "*" else "", override))
            continue
        hv, hb = host[name]
        if name == "__archspec":
            if not _build_ok(hb, build if build is not None else (ver if ver not in (None, "1", "*") else None)):
                problems.append("needs %s %s, this host has %s (set %s to override)"
                                % (pretty, build or ver, hb, override))
            continue
        if ver and not version_matches(hv, ver):
            problems.append("needs %s %s, this host has %s (set %s=<version> to override)"
                            % (pretty, _pretty_ver(ver), hv, override))
        elif build and not _build_ok(hb, build):
            problems.append("needs %s build %s, this host has %s" % (pretty, build, hb))
    return problems


def _pretty_ver(ver):
    return re.sub(r"(>=|<=|==|!=|~=|>|<)", r"\1 ", ver).replace(",", ", ")


def host_subdir():  # type: () -> str
    """The conda subdir of this host (linux-64, linux-aarch64, osx-arm64, ...)."""
    m = os.uname().machine
    if sys.platform.startswith("linux"):
        table = {"x86_64": "64", "AMD64": "64", "i686": "32", "i386": "32", "aarch64": "aarch64",
                 "arm64": "aarch64", "ppc64le": "ppc64le", "s390x": "s390x", "armv7l": "armv7l",
                 "riscv64": "riscv64", "ppc64": "ppc64"}
        return "linux-" + table.get(m, m)
    if sys.platform == "darwin":
        return "osx-arm64" if m == "arm64" else "osx-64"
    return "%s-%s" % (sys.platform, m)
