"""RuleRunner tests of util_rules/packages (tiny channel): one digest per locked package: fetch
(a `coex.lib.fetch` process: file:, http, a path with a space), verification, transcode."""
import shutil
from dataclasses import replace

from coex.lib.records import LockedPlatform
from coex.util_rules.packages import ArchivablePackage, ArchivablePackageRequest, FetchedCondaPackage
from coex.util_rules.resolve import CoexLockedPlatformRequest
from tests.backend.helpers import APP, expect_error, generate_lockfile, package, set_coex_options
from tests.e2e.channel_server import ChannelServer


def lock_tiny(rule_runner):
    """Lock the tiny resolve and return its linux-64 packages."""
    generate_lockfile(rule_runner)
    return rule_runner.request(LockedPlatform, [CoexLockedPlatformRequest("tiny", "linux-64")])


def test_locked_platform_entries_and_per_package_digests(rule_runner, tiny_channel):
    locked = lock_tiny(rule_runner)
    assert [p.filename for p in locked.packages if p.name == "zstd"][0].startswith("zstd-")
    libtiny = next(p for p in locked.packages if p.name == "libtiny")
    fetched = rule_runner.request(FetchedCondaPackage, [libtiny])
    assert fetched.path == libtiny.fetch_path and fetched.path.endswith(f"/{libtiny.filename}")
    prepared = rule_runner.request(ArchivablePackage, [ArchivablePackageRequest(libtiny, 3)])
    assert prepared.package.encoding == "tar.zst" and prepared.path.endswith(".tar.zst")
    assert prepared.path == libtiny.prepared_path(3)
    again = rule_runner.request(ArchivablePackage, [ArchivablePackageRequest(libtiny, 3)])
    assert again.digest == prepared.digest
    conda_pkg = next(p for p in locked.packages if p.filename.endswith(".conda"))
    as_is = rule_runner.request(ArchivablePackage, [ArchivablePackageRequest(conda_pkg, 3)])
    assert as_is.package.encoding == "conda"
    assert as_is.digest == rule_runner.request(FetchedCondaPackage, [conda_pkg]).digest


def test_fetch_verifies_sha256_and_names_the_package(rule_runner, tiny_channel, tmp_path):
    locked = lock_tiny(rule_runner)
    pkg = next(p for p in locked.packages if p.name == "prefixprog")
    fake = tmp_path / pkg.filename
    fake.write_bytes(b"x" * pkg.size)  # right size, wrong content
    bad = replace(pkg, url=fake.as_uri())
    expect_error(
        lambda: rule_runner.request(FetchedCondaPackage, [bad]),
        pkg.filename,
        pkg.sha256,
        "regenerate the lockfile",
    )


def test_fetch_over_http(rule_runner, tiny_channel):
    """The same fetch path as https channels: an HTTP server on localhost serving the channel."""
    locked = lock_tiny(rule_runner)
    pkg = next(p for p in locked.packages if p.name == "prefixprog")
    with ChannelServer(tiny_channel.path) as server:
        remote = replace(pkg, url=f"{server.url}/linux-64/{pkg.filename}")
        fetched = rule_runner.request(FetchedCondaPackage, [remote])
    assert server.served == [f"/linux-64/{pkg.filename}"]  # really fetched over the network
    assert fetched.digest == rule_runner.request(FetchedCondaPackage, [pkg]).digest


def test_fetch_from_a_channel_path_with_a_space(rule_runner, tiny_channel, tmp_path):
    locked = lock_tiny(rule_runner)
    pkg = next(p for p in locked.packages if p.name == "libtiny")
    spaced = tmp_path / "my channel"
    shutil.copytree(tiny_channel.path, spaced)
    url = (spaced / "linux-64" / pkg.filename).as_uri()
    assert "%20" in url
    fetched = rule_runner.request(FetchedCondaPackage, [replace(pkg, url=url)])
    assert fetched.digest == rule_runner.request(FetchedCondaPackage, [pkg]).digest
    # and a wrong sha256 still names the package
    bad = replace(pkg, url=url, sha256="0" * 64)
    expect_error(lambda: rule_runner.request(FetchedCondaPackage, [bad]), pkg.filename)


def copy_channel(tiny_channel, dest):
    shutil.copytree(tiny_channel.path, dest)
    return dest


def test_package_deleted_from_channel_after_locking(rule_runner, tiny_channel, tmp_path):
    chan = copy_channel(tiny_channel, tmp_path / "chan")
    set_coex_options(rule_runner, chan.as_uri())
    generate_lockfile(rule_runner)
    (victim,) = (chan / "linux-64").glob("prefixprog-1.0-*.conda")
    victim.unlink()
    expect_error(lambda: package(rule_runner, APP), victim.name)
