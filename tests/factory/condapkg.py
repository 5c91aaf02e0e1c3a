"""A small, deterministic conda package writer (stdlib + zstandard).

Same inputs -> same bytes: tar members are sorted, mtime/uid/gid/uname/gname are fixed, file modes
are normalised to 0o755 (any exec bit) / 0o644, zip entries carry a fixed date, index.json carries
a fixed timestamp.

High level::

    from tests.factory.condapkg import PackageMeta, build_package, LONG_PLACEHOLDER
    meta = PackageMeta(name="hello", version="1.0", build="h0_0", subdir="linux-64",
                       depends=["libfoo >=1"],
                       prefix_files={"bin/hello": (LONG_PLACEHOLDER, "binary"),
                                     "etc/hello.conf": (LONG_PLACEHOLDER, "text")})
    path = build_package(stage_dir, out_dir / "linux-64", meta, fmt="conda")   # or "tar.bz2"

* The staged directory is read as is: regular files (exec bit kept), symlinks (``softlink``, also
  to directories; files under a symlinked directory are not listed), and files that are hard links
  of one another inside the stage (written as tar hard-link members; all are ``hardlink`` path type
  in paths.json, as conda means "may be hard-linked from the cache"). Softlink entries carry no
  sha256/size_in_bytes (both are optional in paths.json v1).
* ``prefix_files`` maps a relative path to ``(placeholder, "text"|"binary")``;
  ``detect_placeholder`` additionally scans every regular file for that string and records it
  (binary if the file contains a NUL byte, else text).
* ``noarch="python"`` writes ``info/link.json`` with ``entry_points`` ("name = module:func") and
  sets subdir ``noarch``; stage files under ``site-packages/`` and ``python-scripts/``.
* Link scripts are just staged files: ``bin/.<name>-post-link.sh``, ``bin/.<name>-pre-link.sh``.
* ``old_style=True`` writes no ``info/paths.json`` (only ``info/files`` + ``info/has_prefix``);
  ``has_prefix_bare`` lists paths whose has_prefix line is the bare path (meaning the default
  placeholder ``/opt/anaconda1anaconda2anaconda3``, text mode).

Low level, for deliberately broken packages: :func:`collect_members` (stage -> list of
:class:`Member`), :func:`info_files` (meta + members -> {"info/...": bytes}),
:func:`write_archive` (any members + info files -> ``.conda`` / ``.tar.bz2``). Mutate in between.
"""
import bz2
import hashlib
import io
import json
import os
import stat
import tarfile
import zipfile
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import zstandard

#: conda's default (old) placeholder; bare has_prefix lines mean this one, text mode.
DEFAULT_PLACEHOLDER = "/opt/anaconda1anaconda2anaconda3"
#: a 255-char placeholder like conda-build/rattler-build use (so any prefix up to 255 chars fits).
LONG_PLACEHOLDER = ("/coex_test_build/host_env" + "_placehold" * 30)[:255]
assert len(LONG_PLACEHOLDER) == 255

#: fixed mtime (seconds) of every tar member, and index.json timestamp (ms)
MTIME = 1700000000
TIMESTAMP_MS = MTIME * 1000
ZIP_DATE = (2020, 1, 1, 0, 0, 0)
ZSTD_LEVEL = 3


class Member:
    """One tar member of the payload.

    kind: "file" (data, mode), "symlink" (target), "hardlink" (target = path of an earlier file
    member), "dir", "chr" (a character device; only for bad packages).
    """

    def __init__(self, path, kind="file", data=b"", mode=0o644, target=None):
        self.path = path
        self.kind = kind
        self.data = data
        self.mode = mode
        self.target = target

    def __repr__(self):
        return "Member(%r, %r)" % (self.path, self.kind)


class PackageMeta:
    """Everything about a package except its payload."""

    def __init__(
        self,
        name: str,
        version: str,
        build: str = "0",
        build_number: int = 0,
        subdir: str = "linux-64",
        depends: Sequence[str] = (),
        constrains: Sequence[str] = (),
        noarch: Optional[str] = None,
        entry_points: Sequence[str] = (),
        prefix_files: Optional[Dict[str, Tuple[str, str]]] = None,
        detect_placeholder: Optional[str] = None,
        no_link: Sequence[str] = (),
        old_style: bool = False,
        has_prefix_bare: Sequence[str] = (),
        license: str = "BSD-3-Clause",
        summary: str = "",
        track_features: str = "",
    ):
        self.name = name
        self.version = version
        self.build = build
        self.build_number = build_number
        self.noarch = noarch
        self.subdir = "noarch" if noarch else subdir
        self.depends = list(depends)
        self.constrains = list(constrains)
        self.entry_points = list(entry_points)
        self.prefix_files = dict(prefix_files or {})
        self.detect_placeholder = detect_placeholder
        self.no_link = set(no_link)
        self.old_style = old_style
        self.has_prefix_bare = set(has_prefix_bare)
        self.license = license
        self.summary = summary or ("coex test package " + name)
        self.track_features = track_features

    @property
    def stem(self) -> str:
        return "%s-%s-%s" % (self.name, self.version, self.build)

    def index_json(self) -> dict:
        arch, platform = None, None
        if self.subdir != "noarch":
            platform, _, a = self.subdir.partition("-")
            arch = {"64": "x86_64", "32": "x86"}.get(a, a)
        d = {
            "arch": arch,
            "build": self.build,
            "build_number": self.build_number,
            "depends": self.depends,
            "license": self.license,
            "name": self.name,
            "platform": platform,
            "subdir": self.subdir,
            "timestamp": TIMESTAMP_MS,
            "version": self.version,
        }
        if self.constrains:
            d["constrains"] = self.constrains
        if self.noarch:
            d["noarch"] = self.noarch
        if self.track_features:
            d["track_features"] = self.track_features
        return d


def sha256_bytes(b: bytes) -> str:
    return hashlib.sha256(b).hexdigest()


def collect_members(stage: Path) -> List[Member]:
    """Read a staged directory into sorted members (see module docstring)."""
    stage = Path(stage)
    out = []
    seen_inodes = {}
    for root, dirs, files in os.walk(stage):
        rootp = Path(root)
        keep = []
        for d in sorted(dirs):
            p = rootp / d
            rel = p.relative_to(stage).as_posix()
            if p.is_symlink():
                out.append(Member(rel, "symlink", target=os.readlink(p)))
            else:
                keep.append(d)
        dirs[:] = keep
        for f in sorted(files):
            p = rootp / f
            rel = p.relative_to(stage).as_posix()
            st = p.lstat()
            if stat.S_ISLNK(st.st_mode):
                out.append(Member(rel, "symlink", target=os.readlink(p)))
                continue
            mode = 0o755 if st.st_mode & 0o111 else 0o644
            key = (st.st_dev, st.st_ino)
            if st.st_nlink > 1 and key in seen_inodes:
                out.append(Member(rel, "hardlink", data=p.read_bytes(), mode=mode,
                                  target=seen_inodes[key]))
                continue
            seen_inodes[key] = rel
            out.append(Member(rel, "file", data=p.read_bytes(), mode=mode))
    # hard-link members must come after their target: sort by path, then move each hardlink
    # right after the member it points to would break sorting; tar only needs target first.
    out.sort(key=lambda m: m.path)
    files = [m for m in out if m.kind != "hardlink"]
    links = [m for m in out if m.kind == "hardlink"]
    return files + links


def _prefix_entries(meta: PackageMeta, members: List[Member]) -> Dict[str, Tuple[str, str]]:
    found = {}
    if meta.detect_placeholder:
        needle = meta.detect_placeholder.encode()
        for m in members:
            if m.kind in ("file", "hardlink") and needle in m.data:
                found[m.path] = (meta.detect_placeholder, "binary" if b"\0" in m.data else "text")
    found.update(meta.prefix_files)
    return found


def paths_json(meta: PackageMeta, members: List[Member]) -> dict:
    """paths_version 1 document for these members."""
    prefixes = _prefix_entries(meta, members)
    paths = []
    for m in sorted(members, key=lambda m: m.path):
        if m.kind == "dir":
            continue
        e = {"_path": m.path}
        if m.kind == "symlink":  # no sha256/size: what a link "contains" is ambiguous
            e["path_type"] = "softlink"
        else:
            e["path_type"] = "hardlink"
            e["sha256"] = sha256_bytes(m.data)
            e["size_in_bytes"] = len(m.data)
        if m.path in prefixes:
            e["prefix_placeholder"], e["file_mode"] = prefixes[m.path]
        if m.path in meta.no_link:
            e["no_link"] = True
        paths.append(e)
    return {"paths": paths, "paths_version": 1}


def info_files(meta: PackageMeta, members: List[Member]) -> Dict[str, bytes]:
    """All info/ files of the package as {"info/<name>": bytes}."""

    def js(obj):
        return (json.dumps(obj, indent=2, sort_keys=True) + "\n").encode()

    listed = sorted(m.path for m in members if m.kind != "dir")
    prefixes = _prefix_entries(meta, members)
    info = {
        "info/index.json": js(meta.index_json()),
        "info/about.json": js({"license": meta.license, "summary": meta.summary,
                               "home": "https://example.invalid/coex-tests"}),
        "info/files": ("\n".join(listed) + "\n").encode() if listed else b"",
    }
    lines = []
    for p in sorted(prefixes):
        ph, mode = prefixes[p]
        if p in meta.has_prefix_bare:
            lines.append(p)
        else:
            lines.append("%s %s %s" % (ph, mode, p))
    for p in sorted(meta.has_prefix_bare - set(prefixes)):
        lines.append(p)
    if lines:
        info["info/has_prefix"] = ("\n".join(lines) + "\n").encode()
    if meta.no_link:
        info["info/no_link"] = ("\n".join(sorted(meta.no_link)) + "\n").encode()
    if not meta.old_style:
        info["info/paths.json"] = js(paths_json(meta, members))
    if meta.noarch == "python":
        info["info/link.json"] = js({
            "noarch": {"type": "python", "entry_points": meta.entry_points},
            "package_metadata_version": 1,
        })
    return info


def _tar_bytes(entries: List[Member]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.GNU_FORMAT) as tf:
        for m in entries:
            ti = tarfile.TarInfo(m.path)
            ti.mtime = MTIME
            ti.uid = ti.gid = 0
            ti.uname = ti.gname = ""
            ti.mode = m.mode
            if m.kind == "file":
                ti.size = len(m.data)
                tf.addfile(ti, io.BytesIO(m.data))
                continue
            if m.kind == "symlink":
                ti.type, ti.linkname, ti.mode = tarfile.SYMTYPE, m.target, 0o777
            elif m.kind == "hardlink":
                ti.type, ti.linkname = tarfile.LNKTYPE, m.target
            elif m.kind == "dir":
                ti.type, ti.mode = tarfile.DIRTYPE, m.mode or 0o755
            elif m.kind == "chr":
                ti.type, ti.devmajor, ti.devminor = tarfile.CHRTYPE, 1, 3
            else:
                raise ValueError("unknown member kind %r for %s" % (m.kind, m.path))
            tf.addfile(ti)
    return buf.getvalue()


def _info_members(info: Dict[str, bytes]) -> List[Member]:
    return [Member(k, "file", data=info[k], mode=0o644) for k in sorted(info)]


def write_archive(out_path: Path, info: Dict[str, bytes], members: List[Member],
                  pkg_tar_hook=None) -> Path:
    """Write a ``.conda`` or ``.tar.bz2`` (chosen by out_path's suffix).

    pkg_tar_hook(kind, compressed_bytes) -> bytes may corrupt a compressed stream (kind is
    "pkg"/"info" for .conda, "tar.bz2" for the whole legacy archive).
    """
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    hook = pkg_tar_hook or (lambda kind, b: b)
    name = out_path.name
    tmp = out_path.with_name(out_path.name + ".tmp%d" % os.getpid())
    if name.endswith(".tar.bz2"):
        raw = _tar_bytes(_info_members(info) + list(members))
        tmp.write_bytes(hook("tar.bz2", bz2.compress(raw, 9)))
    elif name.endswith(".conda"):
        stem = name[: -len(".conda")]
        cctx = zstandard.ZstdCompressor(level=ZSTD_LEVEL)
        pkg = hook("pkg", cctx.compress(_tar_bytes(list(members))))
        inf = hook("info", cctx.compress(_tar_bytes(_info_members(info))))
        with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_STORED) as zf:
            for arc, data in (("metadata.json", b'{"conda_pkg_format_version": 2}'),
                              ("pkg-%s.tar.zst" % stem, pkg),
                              ("info-%s.tar.zst" % stem, inf)):
                zi = zipfile.ZipInfo(arc, date_time=ZIP_DATE)
                zi.external_attr = 0o644 << 16
                zi.create_system = 3
                zf.writestr(zi, data)
    else:
        raise ValueError("package file name must end in .conda or .tar.bz2: %s" % out_path)
    os.replace(tmp, out_path)
    return out_path


def build_package(stage: Path, out_dir: Path, meta: PackageMeta, fmt: str = "conda") -> Path:
    """Package a staged directory into out_dir/<name>-<version>-<build>.<fmt>; returns its path.

    out_dir is normally ``<channel>/<meta.subdir>``.
    """
    if fmt not in ("conda", "tar.bz2"):
        raise ValueError("fmt must be 'conda' or 'tar.bz2', not %r" % (fmt,))
    members = collect_members(stage)
    missing = [p for p in meta.prefix_files if p not in {m.path for m in members}]
    if missing:
        raise ValueError("%s: prefix_files not in the stage: %s" % (meta.stem, missing))
    return write_archive(Path(out_dir) / ("%s.%s" % (meta.stem, fmt)),
                         info_files(meta, members), members)


def build_from_files(files: Dict[str, object], out_dir: Path, meta: PackageMeta,
                     fmt: str = "conda") -> Path:
    """Like build_package but from an in-memory mapping (no stage dir needed).

    Values: bytes/str (regular file, 0o644), ``("exec", bytes)`` (0o755),
    ``("symlink", target)``, ``("hardlink", other_path)``.
    """
    members = []
    by_path = {}
    for path in sorted(files):
        v = files[path]
        if isinstance(v, str):
            v = v.encode()
        if isinstance(v, bytes):
            m = Member(path, "file", data=v, mode=0o644)
        elif v[0] == "exec":
            data = v[1].encode() if isinstance(v[1], str) else v[1]
            m = Member(path, "file", data=data, mode=0o755)
        elif v[0] == "symlink":
            m = Member(path, "symlink", target=v[1])
        elif v[0] == "hardlink":
            m = Member(path, "hardlink", target=v[1])
        else:
            raise ValueError("bad file spec for %s: %r" % (path, v))
        members.append(m)
        by_path[path] = m
    for m in members:
        if m.kind == "hardlink":
            src = by_path[m.target]
            m.data, m.mode = src.data, src.mode
    members = [m for m in members if m.kind != "hardlink"] + [m for m in members if m.kind == "hardlink"]
    missing = [p for p in meta.prefix_files if p not in by_path]
    if missing:
        raise ValueError("%s: prefix_files not in files: %s" % (meta.stem, missing))
    return write_archive(Path(out_dir) / ("%s.%s" % (meta.stem, fmt)),
                         info_files(meta, members), members)
