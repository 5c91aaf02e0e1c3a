"""The `coex` Pants backend: `coex_binary` and `coex_environment` targets, `[coex]` options,
generate-lockfiles, package, run, and export (conda @EXPLICIT files and an installed prefix per
resolve).

Enable it with `backend_packages = ["coex"]` once the `pants-backend-coex` distribution is where
Pants imports from (installed next to Pants, or `[GLOBAL].plugins`); in this checkout,
`pythonpath = ["%(buildroot)s/pants-plugins", "%(buildroot)s"]` does it (the second entry makes
`coex_runtime`, the code every archive carries, importable)."""
from coex import target_types as _target_types
from coex.goals import export, lockfile, package


def target_types():
    return [_target_types.CoexBinaryTarget, _target_types.CoexEnvironmentTarget]


def rules():
    # each goal's rules() brings the rules it needs (util_rules, the [coex] subsystem)
    return [*lockfile.rules(), *package.rules(), *export.rules()]
