"""What an extracted package says about itself (``info/``), as conda and rattler read it:
``read_index`` (index.json), ``read_paths`` (paths.json, or the old info/files +
info/has_prefix + info/no_link), ``check_link_target``; and its validation: ``verify_paths``
(every file against paths.json while it is extracted) and ``cached_package_intact`` (the cheap
check of a package found in the cache, like rattler_cache's validation)."""

import json
import os
import posixpath
import stat

from coex_runtime.errors import CorruptPackage, PackageError


def read_index(pkg, pkgdir):  # type: (str, str) -> dict
    try:
        with open(os.path.join(pkgdir, "info", "index.json"), "rb") as f:
            return json.loads(f.read().decode("utf-8"))
    except (IOError, OSError, ValueError) as e:
        raise PackageError("%s: cannot read info/index.json (%s)" % (pkg, e)) from e


def check_link_target(pkg, rel, target):  # type: (str, str, str) -> str
    """A symlink at `rel` (relative path) pointing at `target` must stay inside the tree."""
    if target.startswith("/"):
        raise PackageError("%s: symlink %s points to the absolute path %r, outside the "
                           "environment; refusing to install it" % (pkg, rel, target))
    resolved = posixpath.normpath(posixpath.join(posixpath.dirname(rel), target))
    if resolved == ".." or resolved.startswith("../"):
        raise PackageError("%s: symlink %s points to %r, outside the environment; refusing to "
                           "install it" % (pkg, rel, target))
    return resolved


def manifest_name(pkgdir):  # type: (str) -> str
    """Which file lists the package's paths: info/paths.json, else (old packages) info/files."""
    return "info/paths.json" if os.path.isfile(os.path.join(pkgdir, "info", "paths.json")) \
        else "info/files"


def read_paths(pkg, pkgdir):  # type: (str, str) -> List[dict]
    """The package's paths as a list of dicts in the paths.json (version 1) shape, from
    `info/paths.json`, or from the old `info/files` + `info/has_prefix`."""
    pj = os.path.join(pkgdir, "info", "paths.json")
    if os.path.isfile(pj):
        try:
            with open(pj, "rb") as f:
                data = json.loads(f.read().decode("utf-8"))
            paths = data["paths"]
        except (ValueError, KeyError, TypeError) as e:
            raise PackageError("%s: info/paths.json is not valid (%s)" % (pkg, e)) from e
        for p in paths:
            if not isinstance(p, dict) or "_path" not in p:
                raise PackageError("%s: info/paths.json has an entry without _path: %r" % (pkg, p))
            pt = p.get("path_type", "hardlink")
            if pt not in ("hardlink", "softlink", "directory"):
                raise PackageError("%s: info/paths.json: %s has unknown path_type %r (known: "
                                   "hardlink, softlink, directory)" % (pkg, p["_path"], pt))
        return paths
    files_path = os.path.join(pkgdir, "info", "files")
    if not os.path.isfile(files_path):
        raise PackageError("%s: has neither info/paths.json nor info/files: not a conda package"
                           % pkg)
    has_prefix = {}
    hp = os.path.join(pkgdir, "info", "has_prefix")
    if os.path.isfile(hp):
        with open(hp, "rb") as f:
            for line in f.read().decode("utf-8").splitlines():
                placeholder, mode, path = parse_has_prefix_line(line)
                if path:
                    has_prefix[path] = (placeholder, mode)
    no_link = set()
    nl = os.path.join(pkgdir, "info", "no_link")
    if os.path.isfile(nl):
        with open(nl, "rb") as f:
            no_link = set(l.strip() for l in f.read().decode("utf-8").splitlines() if l.strip())
    out = []
    with open(files_path, "rb") as f:
        for line in f.read().decode("utf-8").splitlines():
            rel = line.strip()
            if not rel:
                continue
            full = os.path.join(pkgdir, rel)
            p = {"_path": rel,
                 "path_type": "softlink" if os.path.islink(full) else "hardlink"}
            if rel in has_prefix:
                p["prefix_placeholder"], p["file_mode"] = has_prefix[rel]
            if rel in no_link:
                p["no_link"] = True
            out.append(p)
    return out


# conda-build's historical default placeholder (info/has_prefix lines with just a path)
DEFAULT_PLACEHOLDER = "/opt/anaconda1anaconda2anaconda3"


def parse_has_prefix_line(line):  # type: (str) -> Tuple[Optional[str], Optional[str], Optional[str]]
    """`placeholder mode path`, `path` alone (default placeholder, text), quotes allowed."""
    line = line.strip()
    if not line:
        return None, None, None
    import shlex
    try:
        parts = shlex.split(line, posix=True)
    except ValueError:
        parts = line.split()
    if len(parts) == 1:
        return DEFAULT_PLACEHOLDER, "text", parts[0]
    if len(parts) == 3:
        return parts[0], parts[1], parts[2]
    raise ValueError("bad info/has_prefix line %r" % line)


def verify_paths(pkg, pkgdir, digests=None, stats=None):
    # type: (str, str, Optional[Dict[str, Tuple[str, int]]], Optional[dict]) -> List[dict]
    """Check the package extracted at ``pkgdir`` against its paths.json: every entry exists with
    its declared type, and each regular file has the declared size and, when ``digests``
    ({relpath: (sha256, size)} measured while extracting) is given, sha256. Raises PackageError
    (CorruptPackage for a size or sha256 mismatch). Returns the paths read (``read_paths``);
    ``stats``, a dict, gets {relpath: lstat result} of what was looked at."""
    paths = read_paths(pkg, pkgdir)
    for p in paths:
        rel, pt = p["_path"], p.get("path_type", "hardlink")
        if pt == "directory":
            continue
        try:
            st = os.lstat(os.path.join(pkgdir, rel))
        except OSError:
            st = None
        if stats is not None and st is not None:
            stats[rel] = st
        if pt == "softlink" and not (st and stat.S_ISLNK(st.st_mode)):
            raise PackageError("%s: info/paths.json lists %s as a softlink, but the package "
                               "has no such symlink" % (pkg, rel))
        if st is None:
            raise PackageError("%s: %s lists %s, but the package does not contain it: the "
                               "package file is incomplete (stripped of its payload?); use a "
                               "complete copy of it" % (pkg, manifest_name(pkgdir), rel))
        if not stat.S_ISREG(st.st_mode):
            continue  # (some builders record symlinks as hardlink entries)
        got = (None, st.st_size) if digests is None else digests.get(rel)
        size, sha = p.get("size_in_bytes"), p.get("sha256")
        if got is not None and size is not None and int(size) != got[1]:
            raise CorruptPackage("%s: %s is %d bytes, but info/paths.json says %d: the package is "
                                 "corrupt" % (pkg, rel, got[1], int(size)))
        if got is not None and got[0] and sha and sha != got[0]:
            raise CorruptPackage("%s: %s has sha256 %s, but info/paths.json says %s: the package is "
                                 "corrupt" % (pkg, rel, got[0], sha))
    return paths


def cached_package_intact(pkgdir, seen=None):  # type: (str, Optional[dict]) -> bool
    """The cheap check of a package found in the cache (no digests): ``verify_paths`` passes.
    ``seen``, a dict, gets ``{pkgdir: (paths, {relpath: lstat result})}`` when it does, for the
    linker (one read of paths.json, one lstat per file)."""
    stats = {}
    try:
        paths = verify_paths(os.path.basename(pkgdir), pkgdir, stats=stats)
    except (PackageError, EnvironmentError, ValueError):
        return False
    if seen is not None:
        seen[pkgdir] = (paths, stats)
    return True
