"""One content-addressed digest per locked conda package and PyPI wheel, ready to store in an
archive.

Every per-package step is keyed by content only, so Pants' remote cache (REAPI) can carry it
between checkouts and machines: a machine whose remote cache already has a build does no package
work at all (no fetch, no transcode).

* Fetch. A package of a local channel inside the build root (`coex://buildroot/...` in the
  lockfile) is read through the engine: it is content-addressed already (its digest is checked
  against the lock's sha256 and size), so no process and nothing to share. Every other package
  is fetched by a `coex.lib.fetch` process (streams to disk, checks size and sha256, retries,
  names the package and URL when it fails), keyed by the URL, sha256 and size, and by the fetch
  module alone (not the whole library). It is a process rather than Pants' `DownloadFile`
  because Pants 2.17 shares only process results through the remote cache, never downloads (so
  every machine would fetch every package from the channel again), and because `DownloadFile`
  holds the whole file in memory while verifying it (think multi-GB CUDA packages) while the
  process streams it. A package inside the build root that Pants does not see (a gitignored
  channel) is fetched by the process too, from its absolute path.
  A PyPI wheel is fetched by the same rule and process (`FetchByDigest`: url, sha256, size),
  and stored as it is.
* Transcode. A `.tar.bz2` package becomes `<stem>.tar.zst` in one `coex.lib.transcode` process
  per package, keyed by the package's bytes, the zstd level and the transcode module alone. It is
  a process because it needs zstandard from the build Python, and because it is the expensive
  step (bzip2 decode plus zstd at level 19) that most deserves sharing. `.conda` packages are
  stored untouched.

Where each file goes (`fetch_path`, `prepared_path`) and how it is stored (`encoding`) are the
locked package's own (`coex.lib.records.LockedPackage`), the same as for `./coex create`.
"""
from __future__ import annotations

from dataclasses import dataclass

from pants.engine.fs import (
    CreateDigest,
    Digest,
    DigestEntries,
    FileDigest,
    FileEntry,
    PathGlobs,
    Snapshot,
)
from pants.engine.rules import Get, collect_rules, rule
from pants.util.logging import LogLevel

from coex.lib.channels import local_path, locate
from coex.lib.errors import CoexError
from coex.lib.records import (
    ChannelLocations,
    LockedPackage,
    LockedWheel,
    PreparedPackage,
    PreparedWheel,
)
from coex.util_rules import resolve
from coex.util_rules.tool import (
    CoexBuildError,
    CoexLibProcess,
    CoexLibResult,
    MovedFile,
    MoveFile,
)

# The modules each step's process runs (and is keyed by): see `coex.util_rules.tool`.
FETCH_MODULES = ("fetch.py", "errors.py", "fsutil.py")
TRANSCODE_MODULES = ("transcode.py", "errors.py", "fsutil.py")


@dataclass(frozen=True)
class FetchByDigest:
    """One locked file (a conda package or a PyPI wheel), fetched by its URL and checked
    against its sha256 and size: the one fetch step of both."""

    url: str  # as the lockfile records it (a `coex://` placeholder for a local one)
    sha256: str
    size: int
    path: str  # where the digest holds it (`fetch_path`, content-addressed)
    what: str  # e.g. "conda package numpy-1.26.4-py311_0.conda (linux-64)", for messages

    @classmethod
    def of(cls, locked: LockedPackage | LockedWheel, what: str) -> FetchByDigest:
        return cls(locked.url, locked.sha256, locked.size, locked.fetch_path, what)


@dataclass(frozen=True)
class FetchedFile:
    digest: Digest  # holds exactly `path`
    path: str


@rule(desc="Fetch a locked file", level=LogLevel.DEBUG)
async def fetch_by_digest(request: FetchByDigest, locations: ChannelLocations) -> FetchedFile:
    file_digest = FileDigest(request.sha256, request.size)
    path = request.path
    rel = local_path(request.url)
    if rel is not None:
        snapshot = await Get(Snapshot, PathGlobs([rel]))
        if rel in snapshot.files:
            (entry,) = await Get(DigestEntries, Digest, snapshot.digest)
            assert isinstance(entry, FileEntry)
            if entry.file_digest != file_digest:
                raise CoexBuildError(
                    f"The {request.what} in the build root ({rel}) is not the one the lockfile "
                    f"records: it has sha256 {entry.file_digest.fingerprint} and "
                    f"{entry.file_digest.serialized_bytes_length} bytes, the lockfile expects "
                    f"{request.sha256} and {request.size}. It changed since locking: regenerate "
                    f"the lockfile, or restore the file."
                )
            digest = await Get(Digest, CreateDigest([FileEntry(path, file_digest)]))
            return FetchedFile(digest, path)
    filename = path.rsplit("/", 1)[-1]
    try:
        url = locate(request.url, locations, f"The lockfile's {request.what}")
    except CoexError as e:
        raise CoexBuildError(str(e))
    result = await Get(
        CoexLibResult,
        CoexLibProcess(
            ("--url", url, "--sha256", request.sha256, "--size", str(request.size), "--out", path),
            description=f"Fetch {filename}",
            failure=f"Fetching the {request.what} failed.",
            output_files=(path,),
            module="coex.lib.fetch",
            only=FETCH_MODULES,
        ),
    )
    moved = await Get(MovedFile, MoveFile(result.output_digest, path, path))
    if moved.file_digest != file_digest:  # the process verified it; this guards the wiring
        raise CoexBuildError(f"{filename}: fetched bytes differ from the lockfile.")
    return FetchedFile(moved.digest, path)


@dataclass(frozen=True)
class FetchedCondaPackage:
    package: LockedPackage
    digest: Digest  # holds exactly `path`
    path: str  # `package.fetch_path`


@rule(desc="Fetch a conda package", level=LogLevel.DEBUG)
async def fetch_conda_package(package: LockedPackage) -> FetchedCondaPackage:
    what = f"conda package {package.filename} ({package.subdir})"
    fetched = await Get(FetchedFile, FetchByDigest, FetchByDigest.of(package, what))
    return FetchedCondaPackage(package, fetched.digest, fetched.path)


@dataclass(frozen=True)
class ArchivableWheel:
    """A PyPI wheel as the archive stores it: the locked file itself."""

    wheel: LockedWheel
    digest: Digest  # holds exactly `path`
    path: str  # `wheel.fetch_path`

    def prepared(self, under: str) -> PreparedWheel:
        """The assemble spec's record of it, for `digest` mounted at `under`."""
        return PreparedWheel(f"{under}/{self.path}", self.wheel)


@rule(desc="Fetch a PyPI wheel", level=LogLevel.DEBUG)
async def fetch_wheel(wheel: LockedWheel) -> ArchivableWheel:
    what = f"PyPI wheel {wheel.filename}"
    fetched = await Get(FetchedFile, FetchByDigest, FetchByDigest.of(wheel, what))
    return ArchivableWheel(wheel, fetched.digest, fetched.path)


@dataclass(frozen=True)
class ArchivablePackageRequest:
    package: LockedPackage
    zstd_level: int


@dataclass(frozen=True)
class ArchivablePackage:
    """A package as the archive stores it (`package.encoding`: "conda" or "tar.zst")."""

    package: LockedPackage
    digest: Digest  # holds exactly `path`
    path: str  # `package.prepared_path(level)`

    def prepared(self, under: str) -> PreparedPackage:
        """The assemble spec's record of it, for `digest` mounted at `under`."""
        return PreparedPackage(f"{under}/{self.path}", self.package, self.package.encoding)


@rule(desc="Prepare a conda package for an archive", level=LogLevel.DEBUG)
async def archivable_package(request: ArchivablePackageRequest) -> ArchivablePackage:
    package = request.package
    fetched = await Get(FetchedCondaPackage, LockedPackage, package)
    out = package.prepared_path(request.zstd_level)
    if package.encoding == "conda":
        return ArchivablePackage(package, fetched.digest, out)
    result = await Get(
        CoexLibResult,
        CoexLibProcess(
            ("--in", fetched.path, "--out", out, "--level", str(request.zstd_level)),
            description=f"Transcode {package.filename} to .tar.zst",
            failure=f"Transcoding the conda package {package.filename} to .tar.zst failed.",
            input_digest=fetched.digest,
            output_files=(out,),
            module="coex.lib.transcode",
            only=TRANSCODE_MODULES,
        ),
    )
    return ArchivablePackage(package, result.output_digest, out)


def rules():
    return [*collect_rules(), *resolve.rules()]  # resolve: ChannelLocations
