"""The `coex` Pants backend: `coex_binary` targets, `[coex]` options, generate-lockfiles,
package, run, and `export --resolve=NAME` (conda @EXPLICIT files).

Enable it with `backend_packages = ["coex"]` and
`pythonpath = ["%(buildroot)s/pants-plugins", "%(buildroot)s"]` (the second entry makes
`coex_runtime`, the code every archive carries, importable)."""
from coex import target_types as _target_types
from coex.goals import export, lockfile, package


def target_types():
    return [_target_types.CoexBinaryTarget, _target_types.CoexEnvironmentTarget]


def rules():
    # each goal's rules() brings the rules it needs (util_rules, the [coex] subsystem)
    return [*lockfile.rules(), *package.rules(), *export.rules()]
