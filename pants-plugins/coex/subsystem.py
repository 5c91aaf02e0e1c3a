"""The `[coex]` options scope: resolves, channels, platforms, solver assumptions, transcoding."""
from __future__ import annotations

from pants.option.option_types import DictOption, IntOption, StrListOption, StrOption
from pants.option.subsystem import Subsystem
from pants.util.docutil import bin_name
from pants.util.strutil import softwrap

from coex.lib.platforms import DEFAULT_VIRTUAL_PACKAGES, KNOWN_PLATFORMS
from coex.lib.records import DEFAULT_PYPI_INDEX
from coex.lib.transcode import DEFAULT_ZSTD_LEVEL

class CoexSubsystem(Subsystem):
    options_scope = "coex"
    name = "coex"
    help = softwrap(
        f"""
        Options for `coex_binary` targets: self-extracting executables made of a locked conda
        environment plus in-repo sources.

        Each `coex_binary` belongs to a resolve (a named conda environment with one lockfile).
        `{bin_name()} generate-lockfiles --resolve=NAME` solves the conda specs of every target
        in that resolve with py-rattler and writes the lockfile; `{bin_name()} package` only ever
        reads the lockfile and fails if it is stale. Every lockfile also pins a `zstd` package per
        platform: the archive carries its `libzstd` so the runtime can decode packages.
        """
    )

    resolves = DictOption[str](
        default={"coex-default": "3rdparty/conda/coex-default.lock"},
        help=softwrap(
            f"""
            A mapping of resolve names to the lockfile path of each resolve (relative to the
            build root).

            A resolve is one conda environment: the union of the conda specs
            (`environment_file` + `conda_dependencies`) of all `coex_binary` targets that name it.
            Generate or refresh a lockfile with `{bin_name()} generate-lockfiles --resolve=NAME`.
            """
        ),
    )
    default_resolve = StrOption(
        default="coex-default",
        help="The resolve used by `coex_binary` targets that do not set the `resolve` field.",
    )
    channels = StrListOption(
        default=["conda-forge"],
        help=softwrap(
            """
            Conda channels to solve against, in priority order: channel names (e.g.
            `conda-forge`, meaning https://conda.anaconda.org/conda-forge), `https://` URLs, or
            local channels: `file:///abs/path`, or a directory relative to the build root
            (`./3rdparty/channel`, or `3rdparty/channel` when that directory exists), or a name
            of `[coex].channel_locations`. A local channel inside the build root is locked
            relative to it (`coex://buildroot/...`), so the lockfile fits every checkout; one
            outside it is locked by its absolute path (give it a name in
            `[coex].channel_locations` to keep the lockfile portable).

            Used for a resolve unless the `environment_file`s of its targets list `channels:`,
            in which case those (in order of first appearance) are used instead, as conda does.
            """
        ),
    )
    channel_locations = DictOption[str](
        default={},
        help=softwrap(
            """
            Channels known by a name, mapped to where they are on this machine: e.g.
            `{"internal": "https://mirror.example/conda/internal"}` or
            `{"internal": "file:///mnt/conda/internal"}`. Use the name in `[coex].channels` or
            an environment file's `channels:`; lockfiles record `coex://internal/...` for the
            channel and its packages, so one lockfile serves machines that reach the channel at
            different places (another mirror, another mount point), and fetches are keyed by
            the resolved URL. Names: lowercase letters, digits, `-` and `_`.
            """
        ),
    )
    build_python = StrOption(
        default="",
        help=softwrap(
            """
            The Python that runs coex's build steps (solve, fetch, transcode, assembly): an
            absolute path to a CPython >= 3.9 with py-rattler and zstandard. Default: the
            interpreter Pants runs on. Its path is part of every step's cache key, so with a
            remote cache, give every machine the same path (e.g. a venv at a fixed location);
            with remote execution, the path of that Python on the workers.
            """
        ),
    )
    platforms = StrListOption(
        default=["linux-64"],
        help=softwrap(
            f"""
            The conda platforms (subdirs) to lock and build for when a `coex_binary` does not set
            `platforms`. Known values: {', '.join(KNOWN_PLATFORMS)}. A resolve's lockfile covers
            every platform used by any of its targets.
            """
        ),
    )
    virtual_packages = StrListOption(
        default=["__glibc=2.17"],
        help=softwrap(
            f"""
            Virtual packages assumed present on the machines that run the archives, used when
            solving (`__name=version` or `__name=version=build`). They override, by name, the
            per-platform defaults (for linux-64:
            {', '.join(DEFAULT_VIRTUAL_PACKAGES['linux-64'])}); `__glibc`/`__linux` apply to
            linux platforms only, `__osx` to osx ones. They are inputs of the lockfile, like
            specs, channels and platforms: change them and the lockfile becomes stale. The
            default assumes glibc 2.17 (manylinux2014), what most conda-forge packages need.
            """
        ),
    )
    pypi_indexes = StrListOption(
        default=[DEFAULT_PYPI_INDEX],
        help=softwrap(
            """
            Where pip looks for the wheels of PyPI requirements (a `coex_binary`'s
            `pypi_dependencies`, an environment file's `pip:` section): the first is pip's
            `--index-url`, the others `--extra-index-url`s; empty: `--no-index`. An environment
            file's own `--index-url`, `--extra-index-url` and `--no-index` apply too. Inputs of
            the lockfile, like channels.
            """
        ),
    )
    pypi_find_links = StrListOption(
        default=[],
        help=softwrap(
            """
            pip `--find-links` for PyPI requirements: directories of wheels (relative to the
            build root, recorded in the lockfile as `coex://buildroot/...`) or URLs of pages
            listing them. Inputs of the lockfile, like channels.
            """
        ),
    )
    transcode_zstd_level = IntOption(
        default=DEFAULT_ZSTD_LEVEL,
        help=softwrap(
            f"""
            The zstd level used when a locked `.tar.bz2` package is transcoded to `.tar.zst` for
            the archive (`.conda` packages are stored untouched); 1-22. The default,
            {DEFAULT_ZSTD_LEVEL} (also `./coex create`'s), is where size stops paying for time:
            measured on 47 MB of real `.tar.bz2` packages, it gives 15% smaller packages than
            level 3 for 1.3x the transcode time, while level 19 is 12% smaller again for 9.5x
            the time. First runs decode every level at the same speed. Set 19 when archives go
            to many hosts and cold builds are rare (a transcode runs once per package and
            level, and is cached).
            """
        ),
    )

