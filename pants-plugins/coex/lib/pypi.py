"""PyPI packages inside a conda environment: requirements, wheel tags and names (pure: no pip,
no py-rattler; the Pants rules call it in-process). Resolving them is `coex.lib.pipsolve`.

* Requirements are pip's (PEP 508: `requests[socks] >=2.31; python_version < "3.13"`, or
  `name @ https://.../name-1.0-py3-none-any.whl`), written in an environment file's `pip:`
  section or a `coex_binary`'s `pypi_dependencies` (script headers have none yet).
  `canonical_requirement` parses one and gives its canonical text (name normalized, extras and
  specifiers sorted), which is what a lockfile records and hashes. Editable installs, local
  projects and VCS URLs are refused: coex installs wheels only.
* A `pip:` section may also hold pip's index options (`--index-url`, `--extra-index-url`,
  `--find-links`/`-f`, `--no-index`): `parse_pip_section`.
* Which wheels fit a conda platform: `target_of` (the locked `python`: version, implementation,
  ABI) and `platform_tags` (the platform's manylinux/macosx tags, up to the glibc/macOS the lock
  assumes), and the marker environment pip evaluates dependencies' markers against
  (`marker_environment`).
* Which PyPI distributions the conda environment provides (`conda_provides`): a conda package
  that depends on `python` provides the PyPI distribution of its name (PEP 503-normalized), or
  of the name in `CONDA_TO_PYPI` for the packages whose PyPI names differ. A requirement for one
  of them is an error; a dependency of a wheel on one is met by the conda package.
"""
from __future__ import annotations

import collections
import os
import re
import warnings
from typing import Iterable, Mapping, Optional, Sequence

from coex.lib.errors import CoexError

# conda package names whose PyPI distribution has another (normalized) name; the rest are the
# same (conda-forge's packaging rule). Only packages that depend on python are considered.
CONDA_TO_PYPI = {
    "pytorch": "torch", "pytorch-cpu": "torch", "pytorch-gpu": "torch",
    "py-opencv": "opencv-python", "opencv": "opencv-python", "matplotlib-base": "matplotlib",
    "msgpack-python": "msgpack", "pytables": "tables", "python-flatbuffers": "flatbuffers",
    "python-graphviz": "graphviz", "py-xgboost": "xgboost", "python-tzdata": "tzdata",
    "python-xxhash": "xxhash", "python-lmdb": "lmdb", "python-build": "build",
    "python-kaleido": "kaleido", "dask-core": "dask", "geopandas-base": "geopandas",
    "seaborn-base": "seaborn", "brotli-python": "brotli", "py-lief": "lief",
    "python-kubernetes": "kubernetes", "pyqt": "pyqt5", "tensorflow-base": "tensorflow",
    "py-cpuinfo": "py-cpuinfo", "ruamel_yaml": "ruamel-yaml",
}

WheelName = collections.namedtuple("WheelName", "name version build tags")
PythonTarget = collections.namedtuple("PythonTarget", "version implementation abi")
PipOptions = collections.namedtuple("PipOptions", "index_url extra_index_urls find_links no_index")
NO_PIP_OPTIONS = PipOptions(None, (), (), False)

_NAME_RE = re.compile(r"[-_.]+")


def canonical_name(name: str) -> str:
    """A distribution name normalized as PEP 503 says (`Foo_Bar.baz` -> `foo-bar-baz`)."""
    return _NAME_RE.sub("-", name).lower()


def _packaging():
    """`packaging.requirements` and `packaging.markers` (Pants' own dependency; else pip's)."""
    # Pants' packaging 21.3 calls pyparsing 3 by its deprecated names: each import and parse
    # would log a PyparsingDeprecationWarning in every Pants run that reads a `pip:` section.
    warnings.filterwarnings("ignore", message=".* deprecated - use ", module=r"packaging\.")
    try:
        from packaging import markers, requirements, specifiers, version
    except ImportError:  # pragma: no cover - a Python with pip but without packaging
        from pip._vendor.packaging import markers, requirements, specifiers, version
    return requirements, markers, specifiers, version


_NOT_A_REQUIREMENT = (
    (("-e", "--editable"), "an editable install"),
    (("git+", "hg+", "svn+", "bzr+"), "a version-control URL"),
    ((".", "/", "~", "file:"), "a local project or file"),
)


def canonical_requirement(text: str, origin: str) -> str:
    """The canonical form of one pip requirement (name normalized, extras and specifiers sorted,
    marker as packaging writes it); a CoexError naming `origin` when it is not one, or is not
    something coex can lock (an editable install, a local project, a VCS URL, a URL that is not a
    wheel)."""
    requirements, _, _, _ = _packaging()
    if not isinstance(text, str) or not text.strip():
        raise CoexError("{}: PyPI requirement {!r} is not a requirement string (e.g. `requests "
                        ">=2.31` or `rich==13.7.1`).".format(origin, text))
    s = " ".join(text.split())
    for starts, what in _NOT_A_REQUIREMENT:
        if s.startswith(starts):
            raise CoexError(
                "{}: the PyPI requirement {!r} is {}: coex installs wheels from an index (or "
                "--find-links) only. Build a wheel of it (`pip wheel --no-deps -w wheels .`) and "
                "add `--find-links wheels` and its name, or add the code to the app layer."
                .format(origin, s, what))
    if s.startswith("-"):
        raise CoexError("{}: {!r} is a pip option, not a requirement (the options a `pip:` "
                        "section may have: --index-url, --extra-index-url, --find-links, "
                        "--no-index).".format(origin, s))
    try:
        req = requirements.Requirement(s)
    except requirements.InvalidRequirement as e:
        raise CoexError("{}: invalid PyPI requirement {!r}: {}\nWrite it as pip does, e.g. "
                        "`requests >=2.31,<3` or `rich[jupyter]==13.7.1`.".format(origin, s, e))
    if req.url and not req.url.split("#", 1)[0].split("?", 1)[0].endswith(".whl"):
        raise CoexError(
            "{}: the PyPI requirement {!r} points at {}, which is not a wheel: coex installs "
            "wheels only (no source builds). Point it at a `.whl`, or use the package's conda "
            "package.".format(origin, s, req.url))
    out = canonical_name(req.name)
    if req.extras:
        out += "[{}]".format(",".join(sorted(canonical_name(e) for e in req.extras)))
    if req.url:
        out += " @ " + req.url
    elif req.specifier:
        out += ",".join(sorted(str(s) for s in req.specifier))
    if req.marker is not None:
        out += ("; " if not req.url else " ; ") + str(req.marker)
    return out


def requirement_name(requirement: str) -> str:
    """The normalized name a (canonical) requirement asks for."""
    m = re.match(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)", requirement)
    return canonical_name(m.group(1)) if m else requirement


def clean_requirements(requirements: Iterable[str], origin: str) -> list[str]:
    """Each requirement canonical, in order, deduplicated."""
    out = []
    for r in requirements:
        c = canonical_requirement(r, origin)
        if c not in out:
            out.append(c)
    return out


_OPTION_RE = re.compile(r"^(--index-url|-i|--extra-index-url|--find-links|-f|--no-index)"
                        r"(?:(?:=|\s+)(\S+))?$")


def parse_pip_section(entries: Sequence, origin: str, base_dir: Optional[str] = None
                      ) -> tuple[list[str], PipOptions]:
    """The requirements and the index options of an environment file's `pip:` list. Relative
    `--find-links` directories are relative to `base_dir` (the file's directory); `-r`, `-c`
    and other pip options are errors naming the fix."""
    if not isinstance(entries, list):
        raise CoexError("{}: `pip:` must be a list of PyPI requirements, e.g.\n  - pip:\n"
                        "    - rich==13.7.1".format(origin))
    reqs, index_url, extra, find_links, no_index = [], None, [], [], False
    for entry in entries:
        if not isinstance(entry, str):
            raise CoexError("{}: the `pip:` entry {!r} is not a requirement string.".format(
                origin, entry))
        s = " ".join(entry.split())
        if not s.startswith("-") or s.startswith(("-e ", "-e=", "--editable")):
            reqs.append(s)
            continue
        m = _OPTION_RE.match(s)
        if not m:
            word = s.split()[0].split("=", 1)[0]
            hint = {"-r": "list the requirements themselves in the `pip:` section",
                    "--requirement": "list the requirements themselves in the `pip:` section",
                    "-c": "pin versions in the requirements themselves",
                    "--constraint": "pin versions in the requirements themselves"}.get(
                        word, "coex locks from requirements and index options only")
            raise CoexError("{}: the pip option {!r} is not supported in a `pip:` section: {}. "
                            "(Supported: --index-url, --extra-index-url, --find-links, "
                            "--no-index.)".format(origin, s, hint))
        opt, value = m.group(1), m.group(2)
        if opt == "--no-index":
            if value:
                raise CoexError("{}: `--no-index` takes no value.".format(origin))
            no_index = True
            continue
        if not value:
            raise CoexError("{}: `{}` needs a value, e.g. `{} https://pypi.org/simple`.".format(
                origin, opt, opt))
        if opt in ("--index-url", "-i"):
            if index_url not in (None, value):
                raise CoexError("{}: two `--index-url`s ({} and {}): give one, and the others "
                                "as `--extra-index-url`.".format(origin, index_url, value))
            index_url = value.rstrip("/")
        elif opt == "--extra-index-url":
            extra.append(value.rstrip("/"))
        else:
            find_links.append(_local(value, base_dir))
    return reqs, PipOptions(index_url, tuple(extra), tuple(find_links), no_index)


def _local(value: str, base_dir: Optional[str]) -> str:
    if "://" in value or value.startswith("file:"):
        return value
    return os.path.normpath(os.path.join(base_dir or os.getcwd(), os.path.expanduser(value)))


def merge_options(options: Iterable[tuple[str, PipOptions]], indexes: Sequence[str],
                  find_links: Sequence[str] = ()) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(indexes, find_links) for pip from the defaults (`indexes`: the index URL and extra ones,
    `find_links`) and each source's `pip:` options ((where, PipOptions) pairs): a source's
    `--index-url` replaces the default index (two sources naming different ones is an error),
    `--extra-index-url`s and `--find-links` are added, `--no-index` drops every index."""
    index_url, where_index = None, None
    extra, links, no_index = [], list(find_links), False
    for where, o in options:
        if o.index_url is not None:
            if index_url not in (None, o.index_url):
                raise CoexError("{} and {} give different `--index-url`s ({} and {}): give one, "
                                "and the others as `--extra-index-url`.".format(
                                    where_index, where, index_url, o.index_url))
            index_url, where_index = o.index_url, where
        extra.extend(o.extra_index_urls)
        links.extend(o.find_links)
        no_index = no_index or o.no_index
    if no_index:
        return (), tuple(dict.fromkeys(links))
    base = [index_url] if index_url is not None else list(indexes[:1])
    out = base + list(indexes[1:]) + extra
    return tuple(dict.fromkeys(u.rstrip("/") for u in out)), tuple(dict.fromkeys(links))


# ------------------------------------------------------------------------------------------------
# wheels and platforms
# ------------------------------------------------------------------------------------------------

def parse_wheel_filename(filename: str) -> WheelName:
    """name-version(-build)?-python-abi-platform.whl -> WheelName (tags: a set of
    (python, abi, platform) triples, compressed tag sets expanded); a CoexError otherwise."""
    if not filename.endswith(".whl"):
        raise CoexError("{} is not a wheel (a `.whl` file).".format(filename))
    parts = filename[:-4].split("-")
    if len(parts) not in (5, 6):
        raise CoexError("{} is not a valid wheel file name (name-version-python-abi-platform"
                        ".whl).".format(filename))
    name, version = parts[0], parts[1]
    build = parts[2] if len(parts) == 6 else None
    pys, abis, plats = (p.split(".") for p in parts[-3:])
    tags = {(a, b, c) for a in pys for b in abis for c in plats}
    return WheelName(canonical_name(name), version, build, frozenset(tags))


_MANYLINUX_LEGACY = {"manylinux1": (2, 5), "manylinux2010": (2, 12), "manylinux2014": (2, 17)}
_LINUX_ARCH = {"linux-64": "x86_64", "linux-aarch64": "aarch64", "linux-ppc64le": "ppc64le",
               "linux-s390x": "s390x", "linux-armv7l": "armv7l", "linux-32": "i686",
               "linux-riscv64": "riscv64", "linux-ppc64": "ppc64"}
_OSX_ARCH = {"osx-64": "x86_64", "osx-arm64": "arm64"}
_WIN = {"win-64": "win_amd64", "win-32": "win32", "win-arm64": "win_arm64"}
_MACHINE = dict(_LINUX_ARCH, **{"osx-64": "x86_64", "osx-arm64": "arm64", "win-64": "AMD64",
                                "win-32": "x86", "win-arm64": "ARM64"})


def _vp_version(vpkgs: Iterable[str], name: str) -> Optional[tuple[int, ...]]:
    for vp in vpkgs:
        n, _, rest = vp.partition("=")
        if n == name:
            v = rest.split("=", 1)[0]
            try:
                return tuple(int(x) for x in v.split(".")[:2])
            except ValueError:
                return None
    return None


def platform_tags(platform: str, vpkgs: Iterable[str] = ()) -> list[str]:
    """The wheel platform tags a conda platform runs, most specific first: on linux the
    manylinux tags up to the `__glibc` the lock assumes (`manylinux_2_17_x86_64`, ...,
    `manylinux2014_x86_64`, `manylinux1_x86_64`), on osx the `macosx_<__osx>_<arch>` tag (pip
    adds the older ones and universal2), on windows `win_amd64`. `linux_*` wheels (built for one
    machine) are never chosen."""
    vpkgs = list(vpkgs)
    if platform in _LINUX_ARCH:
        arch = _LINUX_ARCH[platform]
        glibc = _vp_version(vpkgs, "__glibc") or (2, 17)
        out = ["manylinux_2_{}_{}".format(minor, arch) for minor in range(glibc[1], 4, -1)]
        # the PEP 513/571/599 names of manylinux_2_5/_12/_17 (1 and 2010 for x86 only)
        for legacy, (_, minor) in sorted(_MANYLINUX_LEGACY.items(), key=lambda kv: -kv[1][1]):
            if minor <= glibc[1] and (legacy == "manylinux2014" or arch in ("x86_64", "i686")):
                out.append("{}_{}".format(legacy, arch))
        return out
    if platform in _OSX_ARCH:
        osx = _vp_version(vpkgs, "__osx") or ((11, 0) if platform == "osx-arm64" else (10, 13))
        major, minor = osx[0], osx[1] if len(osx) > 1 else 0
        return ["macosx_{}_{}_{}".format(major, minor if major == 10 else 0, _OSX_ARCH[platform])]
    if platform in _WIN:
        return [_WIN[platform]]
    raise CoexError("PyPI wheels cannot be locked for the platform {}: coex knows the wheel tags "
                    "of linux-*, osx-* and win-* platforms only.".format(platform))


def target_of(packages: Iterable, origin: str = "the environment") -> PythonTarget:
    """The Python the conda environment has (its locked `python`, and `python_abi` when there is
    one): PythonTarget(version "3.11.7", implementation "cp" or "pp", abi "cp311"/"cp313t").
    `packages` have `name`, `version` and `build` (LockedPackage, or a record of the solve). No
    python is a CoexError."""
    by_name = {p.name: p for p in packages}
    py = by_name.get("python") or by_name.get("pypy")
    if py is None:
        raise CoexError(
            "{} has PyPI requirements but no `python` package: wheels install into a conda "
            "python's site-packages. Add `python` to the conda dependencies.".format(origin))
    name, version, build = py.name, str(py.version), py.build
    parts = str(version).split(".")
    if len(parts) < 2 or not parts[0].isdigit() or not parts[1].isdigit():
        raise CoexError("{}: cannot read the python version {!r}.".format(origin, version))
    xy = parts[0] + parts[1]
    impl = "pp" if name == "pypy" or "pypy" in (build or "") else "cp"
    abi = None
    abi_pkg = by_name.get("python_abi")
    if abi_pkg is not None:
        tail = abi_pkg.build.rsplit("_", 1)[-1]
        if re.match(r"^(cp|pypy)\d+", tail):
            abi = tail
    if abi is None:
        abi = "cp{}{}".format(xy, "t" if "_cp{}t".format(xy) in (build or "") else "")
    return PythonTarget(str(version), impl, abi)


def marker_environment(platform: str, target: PythonTarget) -> dict:
    """The PEP 508 marker environment of a conda platform's python (what pip evaluates the
    markers of requirements against: the target's, not the build machine's)."""
    family = platform.split("-", 1)[0]
    short = ".".join(target.version.split(".")[:2])
    return {
        "implementation_name": "pypy" if target.implementation == "pp" else "cpython",
        "implementation_version": target.version,
        "os_name": "nt" if family == "win" else "posix",
        "platform_machine": _MACHINE.get(platform, ""),
        "platform_release": "",
        "platform_system": {"linux": "Linux", "osx": "Darwin", "win": "Windows"}.get(family, ""),
        "platform_version": "",
        "python_full_version": target.version,
        "platform_python_implementation": "PyPy" if target.implementation == "pp" else "CPython",
        "python_version": short,
        "sys_platform": {"linux": "linux", "osx": "darwin", "win": "win32"}.get(family, family),
    }


def wheel_virtual_packages(filename: str) -> list[str]:
    """What a wheel's platform tag needs of the host, as conda virtual package specs: a
    `manylinux_2_28` wheel `__glibc >=2.28`, a `macosx_11_0` one `__osx >=11.0` (the least its
    tags need); nothing for pure wheels."""
    glibc, osx = [], []
    for _, _, plat in parse_wheel_filename(filename).tags:
        m = re.match(r"^manylinux_(\d+)_(\d+)_", plat)
        if m:
            glibc.append((int(m.group(1)), int(m.group(2))))
        elif plat.split("_", 1)[0] in _MANYLINUX_LEGACY:
            glibc.append(_MANYLINUX_LEGACY[plat.split("_", 1)[0]])
        m = re.match(r"^macosx_(\d+)_(\d+)_", plat)
        if m:
            osx.append((int(m.group(1)), int(m.group(2))))
    out = []
    if glibc:
        out.append("__glibc >=%d.%d" % min(glibc))
    if osx:
        out.append("__osx >=%d.%d" % min(osx))
    return out


# ------------------------------------------------------------------------------------------------
# the conda environment's own PyPI distributions
# ------------------------------------------------------------------------------------------------

def _depends_on_python(depends: Iterable[str]) -> bool:
    return any(re.split(r"[\s=<>!~]", d.strip(), 1)[0] == "python" for d in depends)


def conda_provides(packages: Iterable) -> dict[str, tuple[str, str]]:
    """{normalized PyPI name: (conda package name, its version)} of the conda packages that are
    Python distributions (those that depend on python, noarch: python ones included). `packages`
    have `name`, `version`, `depends` (and `noarch`)."""
    out = {}
    for p in packages:
        if p.name in ("python", "pypy", "python_abi"):
            continue
        if not (_depends_on_python(p.depends) or getattr(p, "noarch", None) == "python"):
            continue
        pypi = canonical_name(CONDA_TO_PYPI.get(p.name, p.name))
        out.setdefault(pypi, (p.name, str(p.version)))
    return out


def check_not_provided(requirements: Iterable[str], provided: Mapping[str, tuple[str, str]],
                       platform: str, origin: str) -> None:
    """A requirement for a distribution the conda environment already has is an error naming
    both (installing the wheel would silently clobber the conda package's files)."""
    for r in requirements:
        name = requirement_name(r)
        if name in provided:
            conda, version = provided[name]
            raise CoexError(
                "{}: the PyPI requirement `{}` asks for {}, which the conda environment already "
                "has for {} (the conda package {} {}): a wheel would overwrite its files. Keep "
                "one: remove `{}` from the PyPI requirements (the conda package provides it), "
                "or remove {} from the conda dependencies.".format(
                    origin, r, name, platform, conda, version, r, conda))


def requirement_closure(wheels: Sequence, roots: Iterable[str], environment: dict,
                        provided: Iterable[str] = ()) -> tuple[list, set]:
    """(the wheels `roots` need, in the given order; the names of `provided` (conda) packages
    they need): the closure of the requirements over the wheels' `requires_dist`, their markers
    evaluated in `environment` (with each requirement's extras)."""
    requirements, markers, _, _ = _packaging()
    by_name = {w.name: w for w in wheels}
    provided = set(provided)
    todo = [(r, ()) for r in roots]
    keep, need, seen = set(), set(), set()
    while todo:
        text, extras = todo.pop()
        try:
            req = requirements.Requirement(text)
        except requirements.InvalidRequirement:
            continue
        if req.marker is not None:
            envs = [dict(environment, extra=e) for e in (extras or ("",))]
            if not any(req.marker.evaluate(env) for env in envs):
                continue
        name = canonical_name(req.name)
        key = (name, tuple(sorted(req.extras)))
        if key in seen:
            continue
        seen.add(key)
        if name in provided and name not in by_name:
            need.add(name)
            continue
        wheel = by_name.get(name)
        if wheel is None:
            continue
        keep.add(name)
        todo.extend((d, tuple(sorted(canonical_name(e) for e in req.extras)))
                    for d in wheel.requires_dist)
    return [w for w in wheels if w.name in keep], need
