"""One content-addressed digest per locked conda package, ready to store in an archive.

Fetch: Pants' own `DownloadFile` with the lock's sha256 + size as the `FileDigest`. The engine
streams the file (https, or `file:` for local channels), rejects anything whose size or sha256
differs, stores it in the local content store, and remembers the URL, so a package is fetched
once per machine no matter how many binaries, platforms or builds use it. We chose it over one
`coex.lib fetch` process per package because (a) it costs no process spawn per package, (b) its
cache key is the package's own content address, while a process's key would also include the
library's sources (any edit to the library would refetch every package), and (c) an https conda
channel already is a content-addressed remote store, so a remote process cache would add little
for this step. What is worth sharing through a remote cache -- the transcoded packages and the
assembled archive -- are processes. Caveats of 2.17's DownloadFile: the whole file is buffered in
memory while it is verified (mind multi-GB packages), and a download is remembered by URL path
and digest (the host is not part of the key; the content is verified either way), and it
opens `file:` URLs by their percent-encoded path: packages of a local channel whose path needs
escaping (e.g. has a space) are fetched by a `coex.lib fetch` process instead.

Transcode: a `.tar.bz2` package becomes `<stem>.tar.zst` in one `coex.lib transcode` process per
package (keyed by the package digest and the zstd level). `.conda` packages are used untouched.
Where each file goes (`fetch_path`, `prepared_path`) and how it is stored (`encoding`) are the
locked package's own (`coex.lib.records.LockedPackage`), the same as for `./coex create`.
"""
from __future__ import annotations

from dataclasses import dataclass

from pants.engine.fs import CreateDigest, Digest, DownloadFile, FileDigest, FileEntry
from pants.engine.rules import Get, collect_rules, rule
from pants.util.logging import LogLevel

from coex.lib.fetch import url_to_path
from coex.lib.records import LockedPackage, PreparedPackage
from coex.util_rules import tool
from coex.util_rules.tool import (
    CoexBuildError,
    CoexLibProcess,
    CoexLibResult,
    MovedFile,
    MoveFile,
)


def download_url(url: str) -> str:
    """What `DownloadFile` accepts: `file:/abs/path` (no host part) for local files."""
    path = url_to_path(url)
    return url if path is None else "file:" + path


@dataclass(frozen=True)
class FetchedCondaPackage:
    package: LockedPackage
    digest: Digest  # holds exactly `path`
    path: str  # `package.fetch_path`


def needs_fetch_process(url: str) -> bool:
    """Pants 2.17 opens `file:` URLs by their still-percent-encoded path, so a local channel whose
    path has a space (or anything escaped) cannot go through DownloadFile."""
    return url.startswith("file:") and "%" in url


@rule(desc="Fetch a conda package", level=LogLevel.DEBUG)
async def fetch_conda_package(package: LockedPackage) -> FetchedCondaPackage:
    file_digest = FileDigest(package.sha256, package.size)
    path = package.fetch_path
    if needs_fetch_process(package.url):
        result = await Get(
            CoexLibResult,
            CoexLibProcess(
                ("fetch", "--url", package.url, "--sha256", package.sha256,
                 "--size", str(package.size), "--out", path),
                description=f"Fetch {package.filename}",
                failure=f"Fetching the conda package {package.filename} from {package.url} failed.",
                output_files=(path,),
            ),
        )
        moved = await Get(MovedFile, MoveFile(result.output_digest, path, path))
        if moved.file_digest != file_digest:  # the library verified it; this guards the wiring
            raise CoexBuildError(f"{package.filename}: fetched bytes differ from the lockfile.")
        return FetchedCondaPackage(package, moved.digest, path)
    try:
        await Get(Digest, DownloadFile(download_url(package.url), file_digest))
    except Exception as e:  # the engine's message says "Wrong digest ..." without the package
        raise CoexBuildError(
            f"Fetching the conda package {package.filename} ({package.subdir}) from {package.url} "
            f"failed: the lockfile expects sha256 {package.sha256} and {package.size} bytes.\n"
            f"{e}\nIf the channel changed the file, regenerate the lockfile; otherwise check "
            f"that the URL is reachable."
        ) from None
    digest = await Get(Digest, CreateDigest([FileEntry(path, file_digest)]))
    return FetchedCondaPackage(package, digest, path)


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
            ("transcode", "--in", fetched.path, "--out", out, "--level", str(request.zstd_level)),
            description=f"Transcode {package.filename} to .tar.zst",
            failure=f"Transcoding the conda package {package.filename} to .tar.zst failed.",
            input_digest=fetched.digest,
            output_files=(out,),
        ),
    )
    return ArchivablePackage(package, result.output_digest, out)


def rules():
    return [*collect_rules(), *tool.rules()]
