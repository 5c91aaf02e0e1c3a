"""Shared helpers of the installer tests: COEX-INFO-shaped entries from rattler records or
package files, a coex install driver (install_env -> rename -> finalize_env), and the prefix
comparison used by the rattler oracle."""
import hashlib
import json
import os
import shutil
import stat
from pathlib import Path
from urllib.parse import unquote, urlparse

from coex_runtime import format as F
from coex_runtime import install


def _sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for b in iter(lambda: f.read(1 << 20), b""):
            h.update(b)
    return h.hexdigest()


def url_path(url):
    return Path(unquote(urlparse(url).path))


encoding_of = F.encoding_for


def entry_from_record(r):
    """A COEX-INFO package dict from a rattler RepoDataRecord (what the lock holds)."""
    path = url_path(r.url)
    sha = r.sha256.hex() if isinstance(r.sha256, bytes) else str(r.sha256)
    md5 = r.md5.hex() if isinstance(r.md5, bytes) else (str(r.md5) if r.md5 else None)
    e = {
        "name": r.name.normalized if hasattr(r.name, "normalized") else str(r.name),
        "version": str(r.version),
        "build": r.build,
        "build_number": r.build_number,
        "subdir": r.subdir,
        "filename": r.file_name,
        "url": r.url,
        "channel": r.channel,
        "sha256": sha,
        "md5": md5,
        "size": r.size,
        "depends": list(r.depends),
        "constrains": list(r.constrains),
        "noarch": (None if r.noarch is None or r.noarch.none else
                   "python" if r.noarch.python else "generic"),
        "license": r.license,
        "timestamp": int(r.timestamp.timestamp() * 1000) if r.timestamp else None,
        "encoding": encoding_of(r.file_name),
        "member": "pkgs/" + r.file_name,
        "stored_sha256": _sha256(path),
        "stored_size": path.stat().st_size,
        "path": str(path),
    }
    return e


def entry_from_file(path, index=None, **over):
    """A COEX-INFO package dict for a package file (fields from its own info/index.json)."""
    path = Path(path)
    e = dict(index or {})
    e.update({
        "filename": path.name, "url": path.resolve().as_uri(), "channel": "file://test",
        "sha256": _sha256(path), "size": path.stat().st_size,
        "encoding": encoding_of(path.name), "member": "pkgs/" + path.name,
        "stored_sha256": _sha256(path), "stored_size": path.stat().st_size, "path": str(path),
    })
    if "name" not in e:
        stem = path.name[: -len(".tar.bz2")] if path.name.endswith(".tar.bz2") else path.stem
        n, v, b = stem.rsplit("-", 2)
        e.update(name=n, version=v, build=b, build_number=0, subdir="linux-64", depends=[])
    e.update(over)
    return e


def open_payload(entry):
    return open(entry["path"], "rb")


def coex_install(entries, pkgs_dir, prefix, requested_specs=(), jobs=None, progress=None,
                 finalize=True):
    """What the runtime does: install into a staging dir next to prefix, rename, finalize."""
    prefix = Path(prefix)
    staging = prefix.parent / (".staging-" + prefix.name)
    if staging.exists():
        shutil.rmtree(staging)
    install.install_env(entries, open_payload, str(pkgs_dir), str(staging), str(prefix),
                        requested_specs=requested_specs, jobs=jobs, progress=progress)
    os.rename(str(staging), str(prefix))
    if finalize:
        install.finalize_env(str(prefix), entries, requested_specs=requested_specs)
    return prefix


def snapshot(prefix, skip=()):
    """{relpath: (kind, mode, content)}: content is bytes with the prefix normalised to
    <PREFIX> (files), the link target (symlinks), None (dirs)."""
    prefix = Path(prefix)
    pb = str(prefix).encode()
    out = {}
    for root, dirs, files in os.walk(str(prefix)):
        for name in dirs + files:
            full = Path(root) / name
            rel = full.relative_to(prefix).as_posix()
            if any(rel == s or rel.startswith(s + "/") for s in skip):
                continue
            st = full.lstat()
            if stat.S_ISLNK(st.st_mode):
                out[rel] = ("link", None, os.readlink(str(full)))
            elif stat.S_ISDIR(st.st_mode):
                out[rel] = ("dir", None, None)
            else:
                data = full.read_bytes().replace(pb, b"<PREFIX>")
                out[rel] = ("file", stat.S_IMODE(st.st_mode), data)
        dirs[:] = [d for d in dirs if not (Path(root) / d).is_symlink()]
    return out


def conda_meta(prefix):
    d = Path(prefix) / "conda-meta"
    return {p.name: json.loads(p.read_text()) for p in sorted(d.glob("*.json"))}


def install_order(records):
    """Topological order (dependencies first; ties by name), like the lock's entries."""
    by_name = {str(r.name.normalized if hasattr(r.name, "normalized") else r.name): r
               for r in records}
    out, seen = [], set()

    def visit(name, stack=()):
        if name in seen or name not in by_name:
            return
        if name in stack:
            return
        for dep in by_name[name].depends:
            visit(dep.split()[0], stack + (name,))
        seen.add(name)
        out.append(by_name[name])

    for name in sorted(by_name):
        visit(name)
    return out


def repack(src, out_dir, fmt):
    """Re-encode a package (.conda or .tar.bz2) as one tar stream, ``fmt`` "tar.bz2" or
    "tar.zst" (what the build's transcoder produces), keeping member order and metadata."""
    import tarfile
    import zipfile

    import zstandard

    src = Path(src)
    stem = src.name[: -len(".tar.bz2")] if src.name.endswith(".tar.bz2") else src.name[: -len(".conda")]
    out = Path(out_dir) / ("%s.%s" % (stem, fmt))
    out.parent.mkdir(parents=True, exist_ok=True)
    raw = open(str(out), "wb")
    if fmt == "tar.bz2":
        ot = tarfile.open(fileobj=raw, mode="w:bz2")
        sink = None
    else:
        sink = zstandard.ZstdCompressor(level=3).stream_writer(raw)
        ot = tarfile.open(fileobj=sink, mode="w|", format=tarfile.PAX_FORMAT)

    def copy(it):
        for ti in it:
            ot.addfile(ti, it.extractfile(ti) if ti.isreg() else None)

    if src.name.endswith(".conda"):
        with zipfile.ZipFile(str(src)) as zf:
            names = [n for n in zf.namelist() if n.endswith(".tar.zst")]
            for n in sorted(names, key=lambda n: not n.startswith("info-")):
                with zf.open(n) as m:
                    dec = zstandard.ZstdDecompressor().stream_reader(m)
                    with tarfile.open(fileobj=dec, mode="r|") as it:
                        copy(it)
    else:
        with tarfile.open(str(src), "r:bz2") as it:
            copy(it)
    ot.close()
    if sink is not None:
        sink.close()
    raw.close()
    return out


def repacked_entry(entry, out_dir, fmt):
    """The same locked package stored as ``fmt`` (lock fields unchanged, stored_* updated)."""
    path = repack(entry["path"], out_dir, fmt)
    e = dict(entry)
    e.update(encoding=fmt, path=str(path), member="pkgs/" + path.name,
             stored_sha256=_sha256(path), stored_size=path.stat().st_size)
    return e


def small_package(tmp_path, name, files, **kw):
    """A COEX-INFO entry of a package built from {relpath: text or ("exec", text)} (PackageMeta
    keywords in ``kw``), in ``tmp_path/chan/linux-64``."""
    from tests.factory.condapkg import PackageMeta, build_from_files
    meta = PackageMeta(name, "1.0", "h0_0", **kw)
    path = build_from_files(files, tmp_path / "chan" / "linux-64", meta)
    return entry_from_file(path, meta.index_json())
