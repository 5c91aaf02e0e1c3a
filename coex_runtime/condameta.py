"""`conda-meta/`: one `<name>-<version>-<build>.json` per package and `history`, in the shape
conda (`conda list -p`, conda-pack) and rattler (`PrefixRecord.from_path`, pixi) read.

A record is what conda 23 writes (`PrefixRecord.dump()`), field by field:

* the package's repodata record: its `info/index.json` overlaid with the lock's fields (url,
  channel, md5, sha256, size, ...), restricted to the fields conda's `PackageRecord` declares
  (RECORD_FIELDS): conda keeps no others, so index.json's `app_entry`, `icon`, `type`, ... are
  not copied, nor `run_exports` (which rattler copies from its repodata);
* `fn`, `files`, `paths_data` (link.py: one entry per path, as conda's link actions record
  them), `extracted_package_dir`, `link` (`source`: the package cache entry; `type`: 1 where
  hardlinks from the cache work, else 3, as conda records the link type it asked for);
* `requested_spec` (conda, a string) and `requested_specs` (rattler and conda >= 24, a list);
* not `package_tarball_full_path`: no package file is kept (coex streams it from the archive).
"""

import json
import os
import re
import time

# the fields of conda's PackageRecord (conda/models/records.py, 23.x; python_site_packages_path
# from 24.x): a conda-meta record keeps these of index.json and the lock, and no others
RECORD_FIELDS = frozenset((
    "name", "version", "build", "build_number", "channel", "subdir", "fn", "md5",
    "legacy_bz2_md5", "legacy_bz2_size", "url", "sha256", "metadata_signature_status", "arch",
    "platform", "depends", "constrains", "track_features", "features", "noarch", "preferred_env",
    "python_site_packages_path", "license", "license_family", "package_type", "timestamp", "date",
    "size"))


def path_key(rel):  # type: (str) -> List[str]
    """Sort key of prefix paths: component-wise, as rattler orders `files` and `paths_data`."""
    return rel.split("/")


def spec_name(spec):  # type: (str) -> Optional[str]
    """The package name a match spec selects: `conda-forge::numpy >=1.2` -> `numpy`."""
    s = spec.strip()
    if "::" in s:
        s = s.split("::", 1)[1]
    m = re.match(r"^([A-Za-z0-9_][A-Za-z0-9_.\-]*)", s)
    return m.group(1).lower() if m else None


def requested_for(entry, requested_specs):  # type: (dict, Sequence[str]) -> List[str]
    name = entry.get("name", "").lower()
    return [s for s in requested_specs if spec_name(s) == name]


def repodata_record(entry, index):  # type: (dict, Optional[dict]) -> dict
    """The package's index.json overlaid with the lock's (non-null) record fields, as conda
    dumps them: `depends` and `constrains` always (lists), `features` and `track_features` only
    when not empty."""
    rec = dict((k, v) for k, v in (index or {}).items() if v is not None and k in RECORD_FIELDS)
    for k, v in entry.items():
        if k in RECORD_FIELDS and v is not None:
            rec[k] = v
    rec["fn"] = entry.get("filename") or entry.get("fn")
    for k in ("depends", "constrains"):
        rec[k] = list(rec.get(k) or [])
    for k in ("features", "track_features"):
        if not rec.get(k):
            rec.pop(k, None)
    return rec


def make_record(entry, index, files, paths, pkgdir, requested_specs, link_type):
    # type: (dict, dict, List[str], List[dict], str, Sequence[str], int) -> dict
    rec = repodata_record(entry, index)
    req = requested_for(entry, requested_specs)
    rec["requested_spec"] = req[0] if req else ""
    rec["requested_specs"] = req
    rec["extracted_package_dir"] = pkgdir
    rec["files"] = sorted(files, key=path_key)
    rec["paths_data"] = {"paths_version": 1, "paths": sorted(paths, key=lambda p: path_key(p["_path"]))}
    rec["link"] = {"source": pkgdir, "type": link_type}
    return rec


def record_bytes(rec):  # type: (dict) -> bytes
    """The bytes of a conda-meta record as conda writes them."""
    return json.dumps(rec, indent=2, sort_keys=True).encode("utf-8")


def write_record(prefix, rec, data=None):  # type: (str, dict, Optional[bytes]) -> None
    """Write ``rec`` (``data``: its record_bytes when already made)."""
    d = os.path.join(prefix, "conda-meta")
    if not os.path.isdir(d):
        os.makedirs(d, exist_ok=True)
    name = "%s-%s-%s.json" % (rec["name"], rec["version"], rec["build"])
    tmp = os.path.join(d, "." + name + ".tmp")
    with open(tmp, "wb") as f:
        f.write(record_bytes(rec) if data is None else data)
    os.rename(tmp, os.path.join(d, name))


def dist_str(entry):  # type: (dict) -> str
    ch = (entry.get("channel") or "").rstrip("/")
    sub = entry.get("subdir") or ""
    base = "%s-%s-%s" % (entry["name"], entry["version"], entry["build"])
    if ch:
        return "%s/%s::%s" % (ch, sub, base) if sub else "%s::%s" % (ch, base)
    return base


def write_history(prefix, entries, requested_specs, when=None):
    # type: (str, List[dict], Sequence[str], Optional[float]) -> None
    """Append one conda-style revision listing every package as added."""
    d = os.path.join(prefix, "conda-meta")
    if not os.path.isdir(d):
        os.makedirs(d, exist_ok=True)
    stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(when))
    lines = ["==> %s <==" % stamp, "# cmd: coex (first run of a .coex archive)",
             "# conda version: 4.14.0"]
    lines += ["+" + dist_str(e) for e in sorted(entries, key=lambda e: e["name"])]
    lines.append("# update specs: %r" % [str(s) for s in requested_specs])
    with open(os.path.join(d, "history"), "a") as f:
        f.write("\n".join(lines) + "\n")
