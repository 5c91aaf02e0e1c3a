"""The typed records the build steps hand each other, in one place.

Each is a frozen dataclass of hashable values (tuples, never lists or dicts), so the Pants rules
use them as rule inputs and outputs as they are. Between processes and on disk they are JSON
(`to_json()` / `from_json()`, from the fields' types: a record is an object, a tuple a list, and a
tuple of (name, value) pairs an object):

    ChannelLocations where the channels a lockfile names by placeholder are on this machine
    SolveRequest     what a lockfile is solved from (`coex.lib solve --request`), and the
    PlatformSpecs    of the platforms that are solved for a part of its specs
    PypiSettings     where pip looks for the wheels of a lock's PyPI requirements
    LockHeader       a lockfile's `# coex-lockfile:` line: what it was solved from
    LockedPackage    one locked package, as the lock records it; what fetching it is keyed on
    LockedWheel      one locked PyPI wheel, as the lock records it; what fetching it is keyed on
    LockedPlatform   one platform's packages of a lockfile, in install order (`coex.lib entries`)
    EntryPoints      the named commands an archive runs, and its default one
    BuildRecord      where an archive came from (its COEX-INFO `build`)
    PreparedPackage  a package file as the archive stores it
    PreparedWheel    a wheel file as the archive stores it (as locked)
    AssembleSpec     everything `coex.lib assemble` writes into an archive (`--spec`)
"""
from __future__ import annotations

import functools
import re
import typing
from dataclasses import MISSING, dataclass, fields
from typing import Any, Iterable, Mapping, Optional

from coex.lib.errors import CoexError

LOCK_VERSION = 1
# where pip looks for wheels unless told otherwise (`[coex].pypi_indexes`, `--pypi-index`)
DEFAULT_PYPI_INDEX = "https://pypi.org/simple"


def _json(tp: Any, value: Any, to_json: bool, where: str) -> Any:
    """`value` of the declared type `tp` to JSON (`to_json`) or back; `where` names it."""
    if value is None:
        return None
    args = typing.get_args(tp)
    if typing.get_origin(tp) is typing.Union:  # Optional[X]
        return _json(next(a for a in args if a is not type(None)), value, to_json, where)
    if isinstance(tp, type) and issubclass(tp, Record):
        return value.to_json() if to_json else tp.from_json(value)
    if typing.get_origin(tp) is not tuple:
        return value
    item, item_args = args[0], typing.get_args(args[0])
    pairs = typing.get_origin(item) is tuple and item_args[0] is str and item_args[1] is not ...
    if not to_json and not isinstance(value, dict if pairs else list):
        raise CoexError("{} must be {}, got {!r}.".format(
            where, "an object" if pairs else "a list", value))
    if args[1:] != (...,):  # a fixed-length tuple
        return (list if to_json else tuple)(
            _json(a, v, to_json, where) for a, v in zip(args, value))
    if pairs:  # (name, value) pairs: an object
        if to_json:
            return {k: _json(item_args[1], v, True, where) for k, v in value}
        return tuple((k, _json(item_args[1], v, False, where)) for k, v in value.items())
    return (list if to_json else tuple)(_json(item, v, to_json, where) for v in value)


@functools.lru_cache(maxsize=None)
def _types(cls: type) -> tuple:
    """(field, its declared type) of a record class."""
    hints = typing.get_type_hints(cls)
    return tuple((f, hints[f.name]) for f in fields(cls))


class Record:
    def to_json(self) -> dict:
        return {f.name: _json(tp, getattr(self, f.name), True, f.name)
                for f, tp in _types(type(self))}

    @classmethod
    def from_json(cls, data: Any):
        """From its JSON object; keys it does not have take their defaults, unknown keys (e.g. a
        COEX-INFO package's `member`) are ignored. Bad JSON is a CoexError."""
        where = data.get("origin") if isinstance(data, dict) else None
        where = "{} ({})".format(cls.__name__, where) if where else cls.__name__
        if not isinstance(data, dict):
            raise CoexError("{} must be a JSON object, got {}.".format(where, type(data).__name__))
        missing = [f.name for f in fields(cls) if f.name not in data and f.default is MISSING]
        if missing:
            raise CoexError("{} has no {}.".format(where, ", ".join(missing)))
        return cls(**{f.name: _json(tp, data[f.name], False, "{}: `{}`".format(where, f.name))
                      for f, tp in _types(cls) if f.name in data})


@dataclass(frozen=True)
class ChannelLocations(Record):
    """Where the channels that a lockfile names by placeholder (`coex.lib.channels`) are on this
    machine. Never part of a lockfile or of its inputs hash: the lockfile holds the names."""

    root: Optional[str] = None  # the build root (`coex://buildroot/...`): an absolute path
    named: tuple[tuple[str, str], ...] = ()  # (name, location URL): `coex://NAME/...`


@dataclass(frozen=True)
class PlatformSpecs(Record):
    """The specs one platform is solved for, when not every target of a resolve builds for
    every platform of it: only the specs (and PyPI requirements) of the targets that build for
    that platform."""

    platform: str
    specs: tuple[str, ...]
    origin: str = ""  # the targets that build for it, for messages
    pypi: tuple[str, ...] = ()


@dataclass(frozen=True)
class PypiSettings(Record):
    """Where pip looks for the wheels of the PyPI requirements (`coex.lib.pypi`): `indexes` is
    pip's `--index-url` and then its `--extra-index-url`s (none: `--no-index`), `find_links` its
    `--find-links` (directories or URLs; a directory inside the build root is recorded as a
    `coex://buildroot/...` placeholder, as channels are)."""

    indexes: tuple[str, ...] = (DEFAULT_PYPI_INDEX,)
    find_links: tuple[str, ...] = ()


@dataclass(frozen=True)
class SolveRequest(Record):
    resolve: str = "default"
    specs: tuple[str, ...] = ()
    channels: tuple[str, ...] = ()
    platforms: tuple[str, ...] = ("linux-64",)
    virtual_packages: Optional[tuple[str, ...]] = None  # None: each platform's defaults
    origin: str = "the solve request"  # where the specs come from, for messages
    # where each source of specs is, and the specs it gives: a bad spec is reported with its own
    sources: tuple[tuple[str, tuple[str, ...]], ...] = ()
    locations: ChannelLocations = ChannelLocations()  # not hashed: the lock holds the names
    # platforms solved for a part of `specs` only (the others are solved for all of them)
    per_platform: tuple[PlatformSpecs, ...] = ()
    # PyPI requirements (pip's syntax), resolved against the locked conda environment's python
    pypi: tuple[str, ...] = ()
    pypi_sources: tuple[tuple[str, tuple[str, ...]], ...] = ()  # as `sources`, for messages
    pypi_settings: PypiSettings = PypiSettings()


@dataclass(frozen=True)
class LockHeader(Record):
    resolve: str
    inputs_sha256: str
    platforms: tuple[str, ...]
    channels: tuple[str, ...]
    specs: tuple[str, ...]
    # (platform, the virtual packages the solve assumed for it)
    virtual_packages: tuple[tuple[str, tuple[str, ...]], ...]
    version: int = LOCK_VERSION
    # (platform, its specs) for the platforms solved for a part of `specs` only
    platform_specs: tuple[tuple[str, tuple[str, ...]], ...] = ()
    # PyPI requirements, where pip looked for them, and (platform, its requirements) for the
    # platforms resolved for a part of them only; all empty for a conda-only lock
    pypi: tuple[str, ...] = ()
    pypi_indexes: tuple[str, ...] = ()
    pypi_find_links: tuple[str, ...] = ()
    platform_pypi: tuple[tuple[str, tuple[str, ...]], ...] = ()

    def specs_of(self, platform: str) -> tuple[str, ...]:
        """The specs `platform` is solved for."""
        return dict(self.platform_specs).get(platform, self.specs)

    def pypi_of(self, platform: str) -> tuple[str, ...]:
        """The PyPI requirements `platform` is resolved for."""
        return dict(self.platform_pypi).get(platform, self.pypi)

    def to_json(self) -> dict:
        """Without the PyPI fields when it has no PyPI requirements (a conda-only lock's header
        is what it was before coex knew PyPI)."""
        data = super().to_json()
        if not self.pypi:
            for key in ("pypi", "pypi_indexes", "pypi_find_links", "platform_pypi"):
                del data[key]
        return data


@dataclass(frozen=True)
class LockedPackage(Record):
    """One package of a lockfile's platform, with everything COEX-INFO records about it. Its
    url + sha256 + size are what fetching it is keyed on. `url` is as the lockfile records it:
    for a local or named channel a `coex://` placeholder (`coex.lib.channels`), which only the
    fetch step resolves to where the file is on this machine."""

    name: str
    version: str
    build: str
    build_number: int
    subdir: str
    filename: str
    url: str
    sha256: str
    size: int
    md5: Optional[str] = None
    depends: tuple[str, ...] = ()
    constrains: tuple[str, ...] = ()
    channel: Optional[str] = None
    noarch: Optional[str] = None  # "python", "generic" or None
    timestamp: Optional[int] = None  # milliseconds
    license: Optional[str] = None

    @property
    def encoding(self) -> str:
        """How an archive stores it: `.conda` as it is ("conda"), `.tar.bz2` transcoded to
        `.tar.zst` ("tar.zst": zstd decodes far faster than bzip2)."""
        if self.filename.endswith(".conda"):
            return "conda"
        if self.filename.endswith(".tar.bz2"):
            return "tar.zst"
        raise CoexError(
            "The locked package {} is neither `.conda` nor `.tar.bz2`: coex cannot store it. Is "
            "the lockfile a conda lockfile?".format(self.filename))

    @property
    def fetch_path(self) -> str:
        """Where a build keeps the fetched file (relative; content-addressed)."""
        return "pkgs/{}/{}".format(self.sha256, self.filename)

    def prepared_path(self, zstd_level: int) -> str:
        """Where a build keeps the file an archive stores (relative; content-addressed)."""
        if self.encoding == "conda":
            return self.fetch_path
        return "transcoded/{}-zstd{}/{}.tar.zst".format(
            self.sha256, zstd_level, self.filename[: -len(".tar.bz2")])


@dataclass(frozen=True)
class LockedWheel(Record):
    """One PyPI wheel of a lockfile's platform (the rattler lock format's `pypi:` entry: url,
    name, version, sha256, requires_dist, requires_python; `size` is coex's). Its url + sha256
    + size are what fetching it is keyed on, as for a conda package; the archive stores it as
    it is."""

    name: str  # normalized (PEP 503)
    version: str
    filename: str
    url: str  # as the lockfile records it (a `coex://` placeholder for a local directory)
    sha256: str
    size: int
    requires_dist: tuple[str, ...] = ()
    requires_python: Optional[str] = None
    requested: bool = False  # asked for by name (pip writes REQUESTED for those)

    @property
    def fetch_path(self) -> str:
        """Where a build keeps the fetched file (relative; content-addressed)."""
        return "wheels/{}/{}".format(self.sha256, self.filename)


@dataclass(frozen=True)
class LockedPlatform(Record):
    header: LockHeader
    platform: str
    packages: tuple[LockedPackage, ...]  # install (topological) order
    locked: int  # how many packages the lock has for the platform (`packages` may be a subset)
    virtual_packages: tuple[str, ...]  # the packages' `__*` dependencies (and the wheels' needs)
    wheels: tuple[LockedWheel, ...] = ()  # by name; installed after the conda packages
    wheels_locked: int = 0  # how many wheels the lock has for the platform


def _name_re() -> re.Pattern:
    from coex_runtime.format import ENTRY_POINT_NAME_RE  # the archive format's rule

    return ENTRY_POINT_NAME_RE


def entry_point_name(word: str) -> str:
    """An entry point name made of a target, program or module name: characters an entry point
    name may not hold become `_`; "main" when nothing usable is left."""
    name = "".join(c if _name_re().fullmatch("_" + c) else "_" for c in word)
    return name if _name_re().fullmatch(name) else "main"


@dataclass(frozen=True)
class EntryPoints(Record):
    commands: tuple[tuple[str, str], ...]  # (name, command as the user wrote it)
    default: str

    @classmethod
    def of(cls, commands: Mapping[str, str] | Iterable[tuple[str, str]], default: Optional[str],
           origin: str, default_setting: str = "default entry point") -> EntryPoints:
        """Validated: at least one command, valid unique names, and a default among them
        (needed when there are several). `default_setting` names where the default is set."""
        pairs = tuple(commands.items() if isinstance(commands, Mapping) else commands)
        names = [name for name, _ in pairs]
        if not pairs:
            raise CoexError(
                "{}: no entry point: say what the archive runs (e.g. `python -m app`, "
                "`app.main:run`, or a program of the environment).".format(origin))
        for i, name in enumerate(names):
            if not isinstance(name, str) or not _name_re().fullmatch(name):
                raise CoexError(
                    "{}: the entry point name {!r} is not valid: use letters, digits and _ . + - "
                    "(not first . + -).".format(origin, name))
            if name in names[:i]:
                raise CoexError("{}: two entry points are named {!r}: give each its own name."
                                .format(origin, name))
        listed = ", ".join(sorted(names))
        if default is None and len(pairs) > 1:
            raise CoexError("{} has {} entry points but no {}: set it to one of {}.".format(
                origin, len(pairs), default_setting, listed))
        if default is not None and default not in names:
            raise CoexError("{}: the {} {!r} is not one of its entry points ({}): use one of "
                            "those names.".format(origin, default_setting, default, listed))
        return cls(pairs, names[0] if default is None else default)


@dataclass(frozen=True)
class BuildRecord(Record):
    """Where an archive came from: COEX-INFO's `build` (shown by the archive's `info` tool)."""

    resolve: str = ""
    lockfile_sha256: str = ""
    target: str = ""  # the Pants address, or the `./coex create` command
    builder: str = ""  # "pants coex_binary" or "./coex create"
    lockfile: Optional[str] = None  # its path, when it is kept


@dataclass(frozen=True)
class PreparedPackage(Record):
    path: str  # the file to store: absolute, or relative to the spec's directory
    package: LockedPackage
    encoding: str  # "conda", "tar.zst" or "tar.bz2": the file's format


@dataclass(frozen=True)
class PreparedWheel(Record):
    path: str  # the wheel file: absolute, or relative to the spec's directory
    wheel: LockedWheel


@dataclass(frozen=True)
class AssembleSpec(Record):
    """An archive, as `coex.lib.assemble.assemble` writes it."""

    platform: str
    packages: tuple[PreparedPackage, ...]  # install order
    entry_points: EntryPoints
    build: BuildRecord = BuildRecord()
    app_root: Optional[str] = None  # a directory
    env: tuple[tuple[str, str], ...] = ()
    requested_specs: tuple[str, ...] = ()
    # None: the union of the packages' `__*` dependencies (and what the wheels' tags need)
    virtual_packages: Optional[tuple[str, ...]] = None
    wheels: tuple[PreparedWheel, ...] = ()  # PyPI wheels, installed after the packages

    @classmethod
    def from_json(cls, data: Any) -> AssembleSpec:
        spec = super().from_json(data)
        eps = spec.entry_points  # checked as when it was made
        EntryPoints.of(eps.commands, eps.default, spec.build.target or "the archive")
        return spec
