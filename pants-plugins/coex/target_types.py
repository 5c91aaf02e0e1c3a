"""The `coex_binary` and `coex_environment` targets.

Design: a `coex_binary` names its conda environment itself (an `environment_file` and/or inline
`conda_dependencies`, and the `coex_environment` targets it depends on: environment files other
directories own) and the resolve (lockfile) it belongs to. A conda environment is not a library
that other targets depend on piecemeal (it is installed whole, as one prefix), so the resolve
*is* the shared unit, exactly like `[python].resolves`/`[jvm].resolves`. Binaries that should share an environment name the
same resolve; its lockfile is solved from the union of their specs, so their versions agree.
Each binary then carries only the part of the locked environment its own specs need (their
closure over the lock's dependencies, as a pex takes its requirements' subset of a Python lock);
a binary that gives no specs of its own carries the whole resolve.

The app layer is the transitive sources of `dependencies`, with source roots stripped (as pex
does), except `files`/`file` targets, which keep their build-root-relative paths (also as pex).
"""
from __future__ import annotations

from typing import Dict, Optional

from pants.core.goals.package import OutputPathField
from pants.core.goals.run import RestartableField
from pants.core.util_rules.environments import EnvironmentField
from pants.engine.addresses import Address
from pants.engine.target import (
    AsyncFieldMixin,
    COMMON_TARGET_FIELDS,
    Dependencies,
    DictStringToStringField,
    InvalidFieldException,
    OptionalSingleSourceField,
    SingleSourceField,
    StringField,
    StringSequenceField,
    Target,
)
from pants.util.docutil import bin_name
from pants.util.frozendict import FrozenDict
from pants.util.strutil import help_text

from coex.lib.errors import CoexError
from coex.lib.platforms import KNOWN_PLATFORMS, check_platform
from coex.lib.records import EntryPoints, entry_point_name


class CoexEntryPointField(StringField):
    alias = "entry_point"
    help = help_text(
        """
        What the executable runs, as one string (extra command-line arguments are appended).
        One of:

          * a command of the conda environment, looked up in the environment's `bin/`:
            `'python -m myapp'`, `'python'`, `'jupyter lab'`, or a console script such as
            `'flake8'`;
          * `'package.module:function'`, called with the environment's python, like a console
            script;
          * a path in the app layer (e.g. `'scripts/run.sh --verbose'`), run directly.

        Use `entry_points` instead to give the executable several named commands. When the
        environment is locked, `pants package` fails if a command names nothing in the
        environment or the app layer.

        A script of the app layer that an entry point runs (`'tools/report.py'`, `'python
        tools/report.py'`) may carry its environment in a header, as for `coex run`: a
        `# /// conda` block (`dependencies`, `channels`, `platforms`) or conda-execute's
        `# conda execute` lines. Its specs and channels join the target's own; a spec for a
        package that the target's own specs constrain differently, or a platform the header
        does not list, is an error naming both.
        """
    )


class CoexEntryPointsField(DictStringToStringField):
    alias = "entry_points"
    help = help_text(
        """
        Several named entry points, `{name: command}`, each written like `entry_point`.

        The archive runs `default_entry_point` unless told otherwise: `COEX_ENTRYPOINT=name`
        in the environment, or BusyBox style, a symlink named after an entry point
        (`ln -s app.coex pyflakes`). Mutually exclusive with `entry_point`.
        """
    )


class CoexDefaultEntryPointField(StringField):
    alias = "default_entry_point"
    help = help_text(
        """
        Which of `entry_points` runs by default. Needed when `entry_points` has more than one
        name; must be one of its keys.
        """
    )


class CoexEnvironmentFileField(OptionalSingleSourceField):
    alias = "environment_file"
    expected_file_extensions = (".yml", ".yaml")
    help = help_text(
        """
        A conda `environment.yml` in this BUILD file's directory (or below it) giving the
        environment's `dependencies:` (conda match specs) and optionally `channels:`. `pip:`
        dependencies are not supported yet. To use an environment file of another directory,
        give that directory a `coex_environment` target and list its address in `dependencies`.

        The specs join those of every other target of the same `resolve`; its channels, if
        any, replace `[coex].channels` for that resolve.
        """
    )


class CoexEnvironmentSourceField(SingleSourceField):
    default = "environment.yml"
    required = False
    expected_file_extensions = (".yml", ".yaml")
    expected_num_files = range(0, 2)  # a missing file gets coex's message, naming the target
    help = help_text(
        """
        The conda environment file (relative to this BUILD file): `dependencies:` (conda match
        specs) and optionally `channels:` (paths relative to the file), as for the
        `environment_file` of a `coex_binary`.
        """
    )


class CoexCondaDependenciesField(StringSequenceField):
    alias = "conda_dependencies"
    help = help_text(
        """
        Conda match specs for the environment, e.g. `['python 3.11.*', 'numpy >=1.26']`,
        added to those of `environment_file` (either or both may be given).
        """
    )


class CoexPypiDependenciesField(StringSequenceField):
    alias = "pypi_dependencies"
    help = help_text(
        """
        PyPI requirements installed into the environment after its conda packages, as pip reads
        them, e.g. `['rich ==13.7.1', 'httpx[http2] >=0.27']`, added to the `pip:` section of
        `environment_file` (either or both may be given). Wheels only: they are locked (by pip,
        for the locked python and each platform) into the resolve's lockfile, from
        `[coex].pypi_indexes` and `[coex].pypi_find_links`. A requirement for a package the
        conda environment already has is an error.
        """
    )


class CoexResolveField(StringField):
    alias = "resolve"
    help = help_text(
        f"""
        The resolve (named conda environment with one lockfile) this binary's environment comes
        from: a key of `[coex].resolves`. Defaults to `[coex].default_resolve`.

        The binary carries the locked packages its own specs need; without specs of its own
        (only `resolve` set) it carries the whole resolve.

        Run `{bin_name()} generate-lockfiles --resolve=NAME` after changing the specs of any
        target in the resolve.
        """
    )

    def normalized_value(self, coex) -> str:
        return self.value or coex.default_resolve


class CoexPlatformsField(StringSequenceField, AsyncFieldMixin):
    alias = "platforms"
    help = help_text(
        f"""
        The conda platforms (subdirs) to build for, e.g. `['linux-64', 'linux-aarch64']`.
        Defaults to `[coex].platforms`. Known values: {', '.join(KNOWN_PLATFORMS)}.

        With one platform the archive is written to `output_path`; with several, one archive per
        platform is written next to it, named `<name>-<platform>.coex`. Building for another
        platform than the host's works (nothing is run at build time).
        """
    )

    def validated(self) -> tuple[str, ...] | None:
        if self.value is None:
            return None
        for platform in self.value:
            try:
                check_platform(platform, origin=f"the `{self.alias}` field of {self.address}")
            except CoexError as e:
                raise InvalidFieldException(str(e))
        if not self.value:
            raise InvalidFieldException(
                f"The `{self.alias}` field of {self.address} is empty: list at least one "
                f"platform, or remove the field to use `[coex].platforms`."
            )
        return tuple(dict.fromkeys(self.value))


class CoexEnvField(DictStringToStringField):
    alias = "env"
    help = help_text(
        """
        Environment variables set for the program when the archive runs, e.g.
        `{'MPLBACKEND': 'Agg'}`. Applied after the environment's own activation variables.
        """
    )

    @classmethod
    def compute_value(
        cls, raw_value: Optional[Dict[str, str]], address: Address
    ) -> Optional[FrozenDict[str, str]]:
        # (`pants help` reads the type of `raw_value` from these hints: without them it crashed)
        value = super().compute_value(raw_value, address)
        for key, val in (value or {}).items():
            if not key or "=" in key or "\0" in key or "\0" in val:
                raise InvalidFieldException(
                    f"The `{cls.alias}` field of {address} has the variable {key!r}: names must "
                    f"be non-empty without `=` or NUL, and values without NUL (the program could "
                    f"not be started with it)."
                )
        return value


class CoexDependenciesField(Dependencies):
    help = help_text(
        """
        Targets whose sources (and their transitive dependencies' sources) form the archive's
        app layer: e.g. `python_sources`, `resources`, `files`. Source roots are stripped
        (as for a pex), except for `files` targets, which keep their paths from the build root.

        `coex_environment` targets among them (direct or transitive) add their conda specs to
        this binary's environment instead, e.g. `dependencies=["//3rdparty/conda:env"]`.
        """
    )


class CoexOutputPathField(OutputPathField):
    help = help_text(
        f"""
        Where the archive is written, relative to `--distdir` (e.g. `dist/`); a value ending in
        `/` names a directory, in which the archive is `<name>.coex`.

        Defaults to `<path.to.dir>/<name>.coex`: for `src/app:cli`, `src.app/cli.coex`. With
        several `platforms`, `-<platform>` is inserted before `.coex`. Two targets may not
        write the same path; `{bin_name()} package` fails naming both.
        """
    )


class CoexBinaryTarget(Target):
    alias = "coex_binary"
    core_fields = (
        *COMMON_TARGET_FIELDS,
        CoexEntryPointField,
        CoexEntryPointsField,
        CoexDefaultEntryPointField,
        CoexEnvironmentFileField,
        CoexCondaDependenciesField,
        CoexPypiDependenciesField,
        CoexResolveField,
        CoexPlatformsField,
        CoexEnvField,
        CoexDependenciesField,
        CoexOutputPathField,
        EnvironmentField,
        RestartableField,
    )
    help = help_text(
        f"""
        A self-extracting executable (`.coex`): a locked conda environment plus in-repo sources
        in one file, runnable on any machine of its platform that has a `/bin/sh` and any
        CPython >= 3.6.

        On first run the archive installs its conda packages once into a content-addressed
        cache (`~/.cache/coex`), then `exec`s the entry point; later runs start immediately.

        The environment comes from `environment_file` and/or `conda_dependencies`, locked per
        `resolve` by `{bin_name()} generate-lockfiles`. Build with `{bin_name()} package`, run
        with `{bin_name()} run path/to:target -- args`.
        """
    )

    def validate(self) -> None:
        one = self[CoexEntryPointField]
        many = self[CoexEntryPointsField]
        default = self[CoexDefaultEntryPointField]
        if one.value is not None and many.value:
            raise InvalidFieldException(
                f"The `coex_binary` {self.address} sets both `entry_point` and `entry_points`: "
                f"keep one (`entry_points={{'name': 'command', ...}}` for several)."
            )
        if one.value is None and not many.value:
            raise InvalidFieldException(
                f"The `coex_binary` {self.address} has no entry point: set `entry_point` (e.g. "
                f"`entry_point='python -m app'`) or `entry_points`."
            )
        if default.value is not None and not many.value:
            raise InvalidFieldException(
                f"The `coex_binary` {self.address} sets `default_entry_point` without "
                f"`entry_points`: remove it, or name entry points with `entry_points`."
            )
        try:
            coex_entry_points(self.address, one, many, default)
        except CoexError as e:
            raise InvalidFieldException(str(e))
        self[CoexPlatformsField].validated()


class CoexEnvironmentTarget(Target):
    alias = "coex_environment"
    core_fields = (*COMMON_TARGET_FIELDS, CoexEnvironmentSourceField)
    help = help_text(
        f"""
        A conda environment file that `coex_binary` targets of other directories use: they list
        this target's address in their `dependencies` (e.g. `"//3rdparty/conda:env"`), as
        Python targets depend on `python_requirements`. Its specs join each such binary's own
        (`environment_file`, `conda_dependencies`) and, through them, the binary's `resolve`.

        Run `{bin_name()} generate-lockfiles` after changing the file.
        """
    )


def coex_entry_points(
    address: Address,
    one: CoexEntryPointField,
    many: CoexEntryPointsField,
    default: CoexDefaultEntryPointField,
) -> EntryPoints:
    """The target's entry points: its `entry_points`, or its one `entry_point` named after the
    target."""
    commands = many.value or {entry_point_name(address.target_name): one.value or ""}
    return EntryPoints.of(
        commands, default.value, f"The `coex_binary` {address}", "`default_entry_point`"
    )
