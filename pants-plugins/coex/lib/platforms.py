"""Conda platforms (subdirs) and the virtual packages assumed when solving for them.

Pure functions (no py-rattler), so the Pants rules can import them.

Virtual packages are written `name`, `name=version` or `name=version=build` (conda's
`CONDA_OVERRIDE_*` spirit); `__archspec=x86_64` is accepted as shorthand for `__archspec=1=x86_64`.
The canonical form is always `name=version=build`.

Which virtual packages a solve assumes for a platform (`effective_virtual_packages`):
  1. the platform's defaults (`DEFAULT_VIRTUAL_PACKAGES` below: linux-64 gets `__unix=0=0`,
     `__linux=3.10=0`, `__glibc=2.17=0`, `__archspec=1=x86_64`),
  2. overridden/extended by name with the requested ones that apply to that platform: `__glibc`
     and `__linux` only apply to linux-*, `__osx` to osx-*, `__win` to win-*, `__unix` to linux-*
     and osx-*; any other name (`__archspec`, `__cuda`, ...) applies to every platform.
So `["__glibc=2.28"]` raises the glibc floor on every linux platform and leaves the rest to the
defaults. The effective set is an input of the lock (hashed by `request.inputs_sha256`).
"""
from __future__ import annotations

import difflib
from typing import Iterable, Optional

from coex.lib.errors import CoexError

KNOWN_PLATFORMS = (
    "linux-32", "linux-64", "linux-aarch64", "linux-armv6l", "linux-armv7l", "linux-ppc64le",
    "linux-ppc64", "linux-s390x", "linux-riscv64", "osx-64", "osx-arm64", "win-32", "win-64",
    "win-arm64", "emscripten-wasm32", "wasi-wasm32",
)

_ARCHSPEC = {
    "linux-32": "x86", "linux-64": "x86_64", "linux-aarch64": "aarch64", "linux-armv6l": "armv6l",
    "linux-armv7l": "armv7l", "linux-ppc64le": "ppc64le", "linux-ppc64": "ppc64",
    "linux-s390x": "s390x", "linux-riscv64": "riscv64", "osx-64": "x86_64", "osx-arm64": "arm64",
    "win-32": "x86", "win-64": "x86_64", "win-arm64": "arm64",
}


def _family(platform):
    return platform.split("-", 1)[0]


def _defaults(platform):
    fam = _family(platform)
    out = []
    if fam in ("linux", "osx"):
        out.append("__unix=0=0")
    if fam == "linux":
        out += ["__linux=3.10=0", "__glibc=2.17=0"]
    elif fam == "osx":
        out.append("__osx=11.0=0" if platform == "osx-arm64" else "__osx=10.13=0")
    elif fam == "win":
        out.append("__win=0=0")
    if platform in _ARCHSPEC:
        out.append("__archspec=1=" + _ARCHSPEC[platform])
    return out


DEFAULT_VIRTUAL_PACKAGES = {p: tuple(_defaults(p)) for p in KNOWN_PLATFORMS}

_ONLY_ON = {"__glibc": ("linux",), "__linux": ("linux",), "__osx": ("osx",), "__win": ("win",),
            "__unix": ("linux", "osx")}


def check_platform(platform: str, origin: Optional[str] = None) -> str:
    """Return `platform` if it is a known conda subdir, else raise a CoexError with a suggestion."""
    if platform in KNOWN_PLATFORMS:
        return platform
    if platform == "noarch":
        raise CoexError(
            "Platform 'noarch'{} is not a target: noarch packages are always solved together with "
            "each target platform; list target platforms only (e.g. linux-64).".format(
                " (from {})".format(origin) if origin else ""))
    close = difflib.get_close_matches(str(platform), KNOWN_PLATFORMS, n=1)
    hint = " Did you mean {!r}?".format(close[0]) if close else ""
    where = " (from {})".format(origin) if origin else ""
    raise CoexError(
        "Unknown platform {!r}{}: platforms are conda subdirs.{} Known: {}.".format(
            platform, where, hint, ", ".join(KNOWN_PLATFORMS)))


def parse_virtual_package(text: str, origin: Optional[str] = None) -> tuple[str, str, str]:
    """`__glibc=2.17` -> ("__glibc", "2.17", "0"); raises CoexError on a malformed entry."""
    where = " (from {})".format(origin) if origin else ""
    s = str(text).strip().replace(" ", "=")
    parts = [p for p in s.split("=")]
    if not parts[0].startswith("__") or len(parts) > 3 or any(not p for p in parts):
        raise CoexError(
            "Bad virtual package {!r}{}: write `__name`, `__name=version` or "
            "`__name=version=build`, e.g. `__glibc=2.17` or `__archspec=x86_64`.".format(text, where))
    name = parts[0]
    if name == "__archspec" and len(parts) == 2 and not parts[1][:1].isdigit():
        return name, "1", parts[1]
    version = parts[1] if len(parts) > 1 else "0"
    build = parts[2] if len(parts) > 2 else "0"
    return name, version, build


def effective_virtual_packages(platform: str, requested: Optional[Iterable[str]] = None,
                               origin: Optional[str] = None) -> list[str]:
    """The sorted canonical virtual packages a solve for `platform` assumes (see module doc)."""
    fam = _family(platform)
    chosen = {}
    for vp in DEFAULT_VIRTUAL_PACKAGES.get(platform, ()):
        chosen[vp.split("=", 1)[0]] = vp
    for vp in requested or ():
        name, version, build = parse_virtual_package(vp, origin)
        if name in _ONLY_ON and fam not in _ONLY_ON[name]:
            continue
        chosen[name] = "=".join((name, version, build))
    return sorted(chosen.values())


def virtual_package_needs(depends: Iterable[Iterable[str]]) -> list[str]:
    """The union of the `__*` dependencies in the packages' `depends` lists, as written (sorted)."""
    return sorted(set(d for deps in depends for d in deps if d.startswith("__")))
