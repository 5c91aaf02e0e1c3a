"""The typed records the build steps hand each other, in one place.

Each is a frozen dataclass with `to_json()` / `from_json()`: between processes and on disk they
are JSON; in memory they are hashable values (tuples, never lists or dicts; a mapping is a tuple of
pairs), so the Pants rules use them as rule inputs and outputs as they are.

    SolveRequest     what a lockfile is solved from (`coex.lib solve --request`)
    LockHeader       a lockfile's `# coex-lockfile:` line: what it was solved from
    LockedPackage    one locked package, as the lock records it; what fetching is keyed on
    LockedPlatform   one platform's packages of a lockfile, in install order (`coex.lib entries`)
    EntryPoints      the named commands an archive runs, and its default one
    BuildRecord      where an archive came from (its COEX-INFO `build`)
    PreparedPackage  a package file as the archive stores it
    AssembleSpec     everything `coex.lib assemble` writes into an archive (`--spec`)
"""
from __future__ import annotations

import re
from dataclasses import dataclass, fields
from typing import Any, Iterable, Mapping, Optional

from coex.lib.errors import CoexError

LOCK_VERSION = 1


def _pairs(mapping: Mapping[str, Any] | Iterable[tuple[str, Any]] | None) -> tuple:
    items = mapping.items() if isinstance(mapping, Mapping) else (mapping or ())
    return tuple((k, v) for k, v in items)


@dataclass(frozen=True)
class SolveRequest:
    resolve: str
    specs: tuple[str, ...]
    channels: tuple[str, ...]
    platforms: tuple[str, ...] = ("linux-64",)
    virtual_packages: Optional[tuple[str, ...]] = None  # None: each platform's defaults
    origin: str = "the solve request"  # where the specs come from, for messages
    # (where, the specs it gives) for each source of specs: a bad spec is reported with its own
    sources: tuple[tuple[str, tuple[str, ...]], ...] = ()

    @classmethod
    def from_json(cls, data: Any) -> SolveRequest:
        if not isinstance(data, dict):
            raise CoexError(
                "A solve request must be a JSON object, got {}.".format(type(data).__name__))
        origin = data.get("origin") or "the solve request"
        vpkgs = data.get("virtual_packages")
        if vpkgs is not None and not isinstance(vpkgs, (list, tuple)):
            raise CoexError(
                "{}: `virtual_packages` must be a list like ['__glibc=2.17'].".format(origin))
        platforms = data.get("platforms") or ["linux-64"]
        return cls(
            resolve=data.get("resolve") or "default",
            specs=tuple(data.get("specs") or ()),
            channels=tuple(data.get("channels") or ()),
            platforms=(platforms,) if isinstance(platforms, str) else tuple(platforms),
            virtual_packages=None if vpkgs is None else tuple(vpkgs),
            origin=origin,
            sources=tuple((where, tuple(specs)) for where, specs in data.get("sources") or ()),
        )

    def to_json(self) -> dict:
        return {"resolve": self.resolve, "specs": list(self.specs),
                "channels": list(self.channels), "platforms": list(self.platforms),
                "virtual_packages": None if self.virtual_packages is None
                else list(self.virtual_packages),
                "origin": self.origin, "sources": [[w, list(s)] for w, s in self.sources]}


@dataclass(frozen=True)
class LockHeader:
    resolve: str
    inputs_sha256: str
    platforms: tuple[str, ...]
    channels: tuple[str, ...]
    specs: tuple[str, ...]
    # (platform, the virtual packages the solve assumed for it)
    virtual_packages: tuple[tuple[str, tuple[str, ...]], ...]
    version: int = LOCK_VERSION

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> LockHeader:
        return cls(
            resolve=data.get("resolve") or "default",
            inputs_sha256=data.get("inputs_sha256") or "",
            platforms=tuple(data.get("platforms") or ()),
            channels=tuple(data.get("channels") or ()),
            specs=tuple(data.get("specs") or ()),
            virtual_packages=tuple(
                (p, tuple(v)) for p, v in (data.get("virtual_packages") or {}).items()),
            version=data.get("version"),
        )

    def to_json(self) -> dict:
        return {"version": self.version, "resolve": self.resolve,
                "inputs_sha256": self.inputs_sha256, "platforms": list(self.platforms),
                "channels": list(self.channels), "specs": list(self.specs),
                "virtual_packages": {p: list(v) for p, v in self.virtual_packages}}


@dataclass(frozen=True)
class LockedPackage:
    """One package of a lockfile's platform, with everything COEX-INFO records about it. Its
    url + sha256 + size are what fetching it is keyed on."""

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

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> LockedPackage:
        """From a lock record dict (extra keys, e.g. a COEX-INFO record's `member`, are ignored)."""
        values = {f.name: data.get(f.name) for f in fields(cls) if f.name in data}
        values["depends"] = tuple(data.get("depends") or ())
        values["constrains"] = tuple(data.get("constrains") or ())
        return cls(**values)

    def to_json(self) -> dict:
        out = {f.name: getattr(self, f.name) for f in fields(self)}
        out.update(depends=list(self.depends), constrains=list(self.constrains))
        return out

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
        return "transcoded/{}-zstd{}/{}".format(
            self.sha256, zstd_level, transcoded_filename(self.filename))


def transcoded_filename(filename: str) -> str:
    """`x-1.0-h0.tar.bz2` -> `x-1.0-h0.tar.zst`."""
    if not filename.endswith(".tar.bz2"):
        raise CoexError("Only .tar.bz2 packages are transcoded, not {}.".format(filename))
    return filename[: -len(".tar.bz2")] + ".tar.zst"


@dataclass(frozen=True)
class LockedPlatform:
    header: LockHeader
    platform: str
    packages: tuple[LockedPackage, ...]  # install (topological) order
    locked: int  # how many packages the lock has for the platform (`packages` may be a subset)
    virtual_packages: tuple[str, ...]  # the packages' `__*` dependencies
    zstd_filename: str

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> LockedPlatform:
        return cls(LockHeader.from_json(data["header"]), data["platform"],
                   tuple(LockedPackage.from_json(p) for p in data["packages"]), data["locked"],
                   tuple(data["virtual_packages"]), data["zstd_filename"])

    def to_json(self) -> dict:
        return {"header": self.header.to_json(), "platform": self.platform,
                "packages": [p.to_json() for p in self.packages], "locked": self.locked,
                "virtual_packages": list(self.virtual_packages),
                "zstd_filename": self.zstd_filename}


def _name_re() -> re.Pattern:
    from coex_runtime.format import _NAME_RE  # the archive format's rule for entry point names

    return _NAME_RE


def entry_point_name(word: str) -> str:
    """An entry point name made of a target, program or module name: characters an entry point
    name may not hold become `_`; "main" when nothing usable is left."""
    name = re.sub(r"[^A-Za-z0-9_.+-]", "_", word)
    return name if _name_re().match(name) else "main"


@dataclass(frozen=True)
class EntryPoints:
    commands: tuple[tuple[str, str], ...]  # (name, command as the user wrote it)
    default: str

    @classmethod
    def of(cls, commands: Mapping[str, str] | Iterable[tuple[str, str]], default: Optional[str],
           origin: str, default_setting: str = "default entry point") -> EntryPoints:
        """Validated: at least one command, valid unique names, and a default among them
        (needed when there are several). `default_setting` names where the default is set."""
        pairs = _pairs(commands)
        names = [name for name, _ in pairs]
        if not pairs:
            raise CoexError(
                "{}: no entry point: say what the archive runs (e.g. `python -m app`, "
                "`app.main:run`, or a program of the environment).".format(origin))
        for i, name in enumerate(names):
            if not isinstance(name, str) or not _name_re().match(name):
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
class BuildRecord:
    """Where an archive came from: COEX-INFO's `build` (shown by the archive's `info` tool)."""

    resolve: str
    lockfile_sha256: str
    target: str  # the Pants address, or the `./coex create` command
    builder: str  # "pants coex_binary" or "./coex create"
    lockfile: Optional[str] = None  # its path, when it is kept

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> BuildRecord:
        return cls(**{f.name: data.get(f.name) for f in fields(cls)})

    def to_json(self) -> dict:
        return {f.name: getattr(self, f.name) for f in fields(self)
                if getattr(self, f.name) is not None}


@dataclass(frozen=True)
class PreparedPackage:
    path: str  # the file to store: absolute, or relative to the spec's directory
    package: LockedPackage
    encoding: str  # "conda", "tar.zst" or "tar.bz2": the file's format

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> PreparedPackage:
        return cls(data["path"], LockedPackage.from_json(data["entry"]), data["encoding"])

    def to_json(self) -> dict:
        return {"path": self.path, "entry": self.package.to_json(), "encoding": self.encoding}


@dataclass(frozen=True)
class AssembleSpec:
    """An archive: `coex.lib.assemble.assemble` writes it. Its JSON (`assemble --spec`):

        {"platform": "linux-64", "packages": [PreparedPackage JSON, ...] (install order),
         "app_root": dir or null, "entry_points": {name: command}, "default_entry_point": name,
         "env": {...}, "requested_specs": [...], "build": BuildRecord JSON,
         "virtual_packages": [...] or null (default: the union of the packages' `__*` depends)}
    """

    platform: str
    packages: tuple[PreparedPackage, ...]
    entry_points: EntryPoints
    build: BuildRecord
    app_root: Optional[str] = None
    env: tuple[tuple[str, str], ...] = ()
    requested_specs: tuple[str, ...] = ()
    virtual_packages: Optional[tuple[str, ...]] = None

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> AssembleSpec:
        if not isinstance(data, dict) or not data.get("platform"):
            raise CoexError("assemble: the spec has no platform.")
        build = BuildRecord.from_json(data.get("build") or {})
        vpkgs = data.get("virtual_packages")
        return cls(
            platform=data["platform"],
            packages=tuple(PreparedPackage.from_json(p) for p in data.get("packages") or ()),
            entry_points=EntryPoints.of(data.get("entry_points") or {},
                                        data.get("default_entry_point"),
                                        build.target or "the archive"),
            build=build,
            app_root=data.get("app_root"),
            env=_pairs(data.get("env")),
            requested_specs=tuple(data.get("requested_specs") or ()),
            virtual_packages=None if vpkgs is None else tuple(vpkgs),
        )

    def to_json(self) -> dict:
        return {"platform": self.platform, "packages": [p.to_json() for p in self.packages],
                "app_root": self.app_root, "entry_points": dict(self.entry_points.commands),
                "default_entry_point": self.entry_points.default, "env": dict(self.env),
                "requested_specs": list(self.requested_specs), "build": self.build.to_json(),
                "virtual_packages": None if self.virtual_packages is None
                else list(self.virtual_packages)}
