"""The `coex` Pants backend: `coex_binary` targets, `[coex]` options, generate-lockfiles,
package, run, and `export --resolve=NAME` (conda @EXPLICIT files).

Enable it with `backend_packages = ["coex"]` and
`pythonpath = ["%(buildroot)s/pants-plugins", "%(buildroot)s"]` (the second entry makes
`coex_runtime`, the code every archive carries, importable)."""
from coex import subsystem
from coex import target_types as _target_types
from coex.goals import export, lockfile, package
from coex.util_rules import app, assemble, packages, resolve, tool


def target_types():
    return [_target_types.CoexBinaryTarget]


def rules():
    return [
        *subsystem.rules(),
        *tool.rules(),
        *resolve.rules(),
        *packages.rules(),
        *app.rules(),
        *assemble.rules(),
        *lockfile.rules(),
        *package.rules(),
        *export.rules(),
    ]
