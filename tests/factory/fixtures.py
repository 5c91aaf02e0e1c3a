"""pytest fixtures over the channel factory, and the py-rattler oracle (registered as a plugin by
tests/conftest.py, so every test can use them).

Fixtures (session scope):

* ``tiny_channel`` -> :class:`tests.factory.tiny.TinyChannel` built into a session tmp dir.
* ``bad_channel`` -> :class:`tests.factory.tiny.BadChannel` (broken packages, separate channel).
* ``realistic_channel`` -> Path of the cached realistic channel (:func:`tests.factory.realistic.ensure`).
* ``rattler_cache`` -> a session-wide rattler package-cache dir.

Oracle helpers (plain functions, import them: ``from tests.factory.fixtures import rattler_install``):

* ``rattler_solve(channel_url, specs, platform="linux-64", **solve_kw) -> [RepoDataRecord]``
  (raises ``rattler.exceptions.SolverError`` when unsolvable).
* ``rattler_install(channel_url, specs, prefix, platform="linux-64", cache_dir=None,
  execute_link_scripts=False) -> [RepoDataRecord]``: solve + install into ``prefix``.
* ``rattler_install_records(records, prefix, ...)``: install given records (e.g. from a lock).
* ``virtual_packages(platform)``: detected ones for the host platform, else
  ``__unix``/``__linux``/``__glibc 2.17`` (and ``__archspec``) for linux-* platforms.

``channel_url`` may be one URL/path or a list. The package cache defaults to one temp dir per
process; rattler keys it by name-version-build, so pass your own ``cache_dir`` if you install
different packages that share a file name. Works around the rattler 0.25 bugs noted in
/work/shared/notes/conda-tooling.md (``requested_specs`` takes ``MatchSpec(..)._match_spec``).
"""
import asyncio
import tempfile
from pathlib import Path
from typing import List, Optional, Sequence, Union

import pytest

_CACHE = {}


def _default_cache() -> Path:
    if "dir" not in _CACHE:
        _CACHE["dir"] = Path(tempfile.mkdtemp(prefix="coex-rattler-cache-"))
    return _CACHE["dir"]


def virtual_packages(platform: str = "linux-64"):
    import rattler
    from rattler import GenericVirtualPackage, PackageName, Version

    if platform == str(rattler.Platform.current()):
        return rattler.VirtualPackage.detect()
    out = []
    if platform.startswith(("linux-", "osx-")):
        out.append(GenericVirtualPackage(PackageName("__unix"), Version("0"), "0"))
    if platform.startswith("linux-"):
        out.append(GenericVirtualPackage(PackageName("__linux"), Version("5.10"), "0"))
        out.append(GenericVirtualPackage(PackageName("__glibc"), Version("2.17"), "0"))
    arch = platform.partition("-")[2]
    arch = {"64": "x86_64", "aarch64": "aarch64"}.get(arch, arch)
    out.append(GenericVirtualPackage(PackageName("__archspec"), Version("1"), arch))
    return out


def _channels(channel_url) -> List:
    from rattler import Channel

    urls = [channel_url] if isinstance(channel_url, (str, Path)) else list(channel_url)
    out = []
    for u in urls:
        u = str(u)
        if "://" not in u:
            u = Path(u).resolve().as_uri()
        out.append(Channel(u))
    return out


def rattler_solve(channel_url: Union[str, Path, Sequence], specs: Sequence[str],
                  platform: str = "linux-64", cache_dir: Optional[Path] = None, **kw):
    """``kw``: more arguments of ``rattler.solve`` (constraints, channel_priority, ...)."""
    import rattler

    cache = Path(cache_dir) if cache_dir else _default_cache()

    async def go():
        return await rattler.solve(
            sources=_channels(channel_url), specs=list(specs),
            gateway=rattler.Gateway(cache_dir=cache / "gateway"),
            platforms=[rattler.Platform(platform), rattler.Platform("noarch")],
            virtual_packages=virtual_packages(platform), **kw)

    return asyncio.run(go())


def rattler_install_records(records, prefix: Union[str, Path], platform: str = "linux-64",
                            cache_dir: Optional[Path] = None, specs: Sequence[str] = (),
                            execute_link_scripts: bool = False):
    import rattler
    from rattler import MatchSpec

    cache = Path(cache_dir) if cache_dir else _default_cache()
    kw = {}
    if specs:
        kw["requested_specs"] = [MatchSpec(s)._match_spec for s in specs]  # rattler 0.25 bug

    async def go():
        await rattler.install(records, target_prefix=str(prefix), cache_dir=cache / "pkgs",
                              show_progress=False, platform=rattler.Platform(platform),
                              execute_link_scripts=execute_link_scripts, **kw)

    asyncio.run(go())
    return records


def rattler_install(channel_url: Union[str, Path, Sequence], specs: Sequence[str],
                    prefix: Union[str, Path], platform: str = "linux-64",
                    cache_dir: Optional[Path] = None, execute_link_scripts: bool = False):
    """Solve ``specs`` against the channel(s) and install them into ``prefix``; return records."""
    records = rattler_solve(channel_url, specs, platform=platform, cache_dir=cache_dir)
    return rattler_install_records(records, prefix, platform=platform, cache_dir=cache_dir,
                                   specs=specs, execute_link_scripts=execute_link_scripts)


@pytest.fixture(scope="session")
def rattler_cache(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("rattler-cache")


@pytest.fixture(scope="session")
def tiny_channel(tmp_path_factory):
    from tests.factory import tiny

    return tiny.build(tmp_path_factory.mktemp("tiny-channel"))


@pytest.fixture(scope="session")
def bad_channel(tmp_path_factory):
    from tests.factory import tiny

    return tiny.build_bad(tmp_path_factory.mktemp("bad-channel"))


@pytest.fixture(scope="session")
def realistic_channel() -> Path:
    from tests.factory import realistic

    return realistic.ensure()


__all__ = ["rattler_install", "rattler_install_records", "rattler_solve", "virtual_packages",
           "tiny_channel", "bad_channel", "realistic_channel", "rattler_cache"]
