"""Phase 2a of an install: decide what each extracted package puts where in the prefix
(``plan_package``: paths.json, noarch python's site-packages and console scripts), and who wins a
path two packages ship (``clobber``: the later one in install order, as conda and rattler)."""

from coex_runtime import noarch
from coex_runtime.errors import InstallError
from coex_runtime.format import Package
from coex_runtime.fs import safe_relpath
from coex_runtime.pkgmeta import read_index, read_paths


class Plan(object):
    """What one package puts into the prefix."""

    def __init__(self, entry, pkgdir, index, paths, targets, entry_points, noarch_python, stats=None):
        self.entry = entry
        self.stats = stats or {}          # {source-relative path: lstat result} when known
        self.pkgdir = pkgdir
        self.index = index
        self.paths = paths                # paths.json-shaped dicts (source-relative _path)
        self.targets = targets            # prefix-relative target of each path
        self.entry_points = entry_points  # [(name, module, func)]
        self.noarch_python = noarch_python
        self.owned = set()                # the targets this package wins (see clobber)


def plan_package(entry, pkgdir, pyver, sp=None, seen=None):
    # type: (dict, str, Optional[str], Optional[str], Optional[tuple]) -> Plan
    """The plan of the package extracted at ``pkgdir``; ``pyver`` / ``sp``: the environment's
    python version and site-packages (None without a python); ``seen``: (paths, stats) of its
    check in the cache (pkgmeta.cached_package_intact), when there was one."""
    pkg = Package(entry).label
    index = read_index(pkg, pkgdir)
    stats = None
    if seen is not None:
        paths, stats = seen
    else:
        try:
            paths = read_paths(pkg, pkgdir)
        except ValueError as e:
            raise InstallError("%s: %s" % (pkg, e)) from e
    is_np = noarch.is_noarch_python(entry, index)
    if is_np and not pyver:
        raise InstallError("%s is a noarch: python package, but the environment has no python "
                           "package to install it for; add python to the lock" % pkg)
    targets = []
    for p in paths:
        rel = safe_relpath(p["_path"])
        if rel is None:
            raise InstallError("%s: info/paths.json lists %r, which escapes the environment; "
                               "refusing to install it" % (pkg, p["_path"]))
        p["_path"] = rel
        targets.append(noarch.target_path(rel, sp) if is_np else rel)
    eps = noarch.read_entry_points(pkg, pkgdir) if is_np else []
    return Plan(entry, pkgdir, index, paths, targets, eps, is_np, stats)


def clobber(plans):  # type: (List[Plan]) -> None
    """Set each plan's ``owned``: when packages ship the same path, the later one wins."""
    owner = {}
    for i, plan in enumerate(plans):
        for t in plan.targets:
            owner[t] = i
        for name, _, _ in plan.entry_points:
            owner["bin/" + name] = i
    for t, i in owner.items():
        plans[i].owned.add(t)
