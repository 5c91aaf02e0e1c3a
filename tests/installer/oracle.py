"""coex's installed prefix side by side with py-rattler 0.25's (`rattler.install` of the same
records into a prefix of the same length): the trees path by path (kind, mode, bytes with the
prefix normalised, symlink targets) and conda-meta record by record. Used by test_oracle.py
(the factory's channels) and test_corpus.py (real packages).

coex writes what conda 23 writes where conda and rattler differ. Every difference allowed is
written down here, with its reason; nothing else may differ.
"""
import hashlib
import os

from tests.installer import helpers

# --- the trees ----------------------------------------------------------------------------------
# only rattler: it tags the prefix as a cache directory (https://bford.info/cachedir/)
ONLY_RATTLER = {"CACHEDIR.TAG"}
# only coex: .pyc files of noarch python packages (conda compiles them; rattler compiles none),
# recorded as `pyc_file` paths in conda-meta, and their __pycache__ directories
# console scripts: rattler chmods them 0o775 whatever the umask; coex creates them 0o755 minus
# the umask, as conda does (0o644 minus the umask, plus the exec bits)
ENTRY_POINT_MODE_RATTLER = 0o775
# world-writable files: rattler (and conda) keep the o+w bit; coex drops it (streams.py says why)
WORLD_WRITE = 0o002
# files of .tar.bz2 packages: rattler 0.25 creates them with the umask applied (0o664 -> 0o644
# under umask 022), those of .conda packages with the archive's modes; coex keeps the archive's
# modes for both, as conda does
# conda-meta/history: rattler writes an empty file; coex writes a conda-style revision
HISTORY = "conda-meta/history"

# --- conda-meta records -------------------------------------------------------------------------
# both point into their own package caches; `link.type`: rattler 0.25 always writes 1, coex
# writes what conda does (1 where the cache can be hardlinked into the prefix, else 3)
META_DIFFERENT = {"extracted_package_dir", "link"}
# conda's `requested_spec` (a string): rattler 0.25 writes only `requested_specs`
META_ONLY_COEX = {"requested_spec"}
# rattler copies `run_exports` from the channel's repodata; conda's PackageRecord has no such
# field (so neither has coex's record, see condameta.RECORD_FIELDS)
META_ONLY_RATTLER = {"run_exports"}
# `constrains`: conda writes it always (an empty list too), rattler only when not empty
META_EMPTY_ONLY_COEX = {"constrains": []}
# paths_data, path by path (link.py's Linker says what coex records, as conda 23 does):
# * `sha256_in_prefix`: coex writes conda's (the package's sha256 for a file linked unchanged,
#   the digest of the bytes written for a prefix-replaced one, none for symlinks and console
#   scripts), checked here against the files themselves as `conda doctor` checks it; rattler
#   writes none for unchanged files and, for symlinks, the digest of the link's target path
# * `size_in_bytes` of a prefix-replaced file: the package's (conda) vs the file written
#   (rattler); where the package gives none (old packages without paths.json, symlinks some
#   builders list without one): none (conda) vs computed (rattler)
# * console scripts: `_path` and `path_type` alone (conda); rattler adds `sha256` and
#   `size_in_bytes` of the script
PATH_FIELDS_SAME = ("path_type", "sha256", "file_mode", "prefix_placeholder", "no_link")


def prefix_pair(tmp_path, name="env"):
    """Two prefixes of the same length: rattler's and coex's."""
    a = tmp_path / "rattler" / name
    b = tmp_path / "coexxxx" / name
    assert len(str(a)) == len(str(b))
    return a, b


def entry_points(prefix):
    eps = set()
    for rec in helpers.conda_meta(prefix).values():
        eps.update(p["_path"] for p in rec["paths_data"]["paths"]
                   if p["path_type"] == "unix_python_entry_point")
    return eps


def pyc_files(prefix):
    """coex's compiled .pyc files (conda-meta `pyc_file` paths) and their directories."""
    pycs = set()
    for rec in helpers.conda_meta(prefix).values():
        pycs.update(p["_path"] for p in rec["paths_data"]["paths"] if p["path_type"] == "pyc_file")
    return pycs | set(os.path.dirname(p) for p in pycs)


def compare_prefixes(r_prefix, c_prefix, allowed=None):
    """The trees must be equal but for the differences written down above; ``allowed``:
    {relpath: reason} of further ones a caller wrote down. Returns both snapshots."""
    allowed = allowed or {}
    rs = helpers.snapshot(r_prefix, skip=("conda-meta",))
    cs = helpers.snapshot(c_prefix, skip=("conda-meta",))
    only_r = set(rs) - set(cs) - ONLY_RATTLER - set(allowed)
    only_c = set(cs) - set(rs) - pyc_files(c_prefix) - set(allowed)
    assert not only_r, "only rattler installed: %s" % sorted(only_r)
    assert not only_c, "only coex installed: %s" % sorted(only_c)
    eps = entry_points(c_prefix)
    bz2 = set(f for rec in helpers.conda_meta(c_prefix).values() if rec["fn"].endswith(".tar.bz2")
              for f in rec["files"])
    diffs = []
    umask = os.umask(0o022)
    os.umask(umask)
    for p in sorted(set(rs) & set(cs) - set(allowed)):
        (kr, mr, dr), (kc, mc, dc) = rs[p], cs[p]
        if p in eps and mr == ENTRY_POINT_MODE_RATTLER:
            assert mc == 0o755 & ~umask, p
            mr = mc
        if mr is not None and mr & WORLD_WRITE:
            mr &= ~WORLD_WRITE
        if p in bz2 and mc is not None and mr == mc & ~umask:
            mr = mc
        if (kr, mr, dr) != (kc, mc, dc):
            diffs.append("%s: rattler %s %s %r vs coex %s %s %r" % (
                p, kr, oct(mr) if mr else mr, (dr or b"")[:120], kc, oct(mc) if mc else mc,
                (dc or b"")[:120]))
    assert not diffs, "\n".join(diffs[:40])
    return rs, cs


def check_recorded_digests(prefix, rec):
    """What `conda doctor` checks: each `sha256_in_prefix` is the digest of the file at its path
    (followed if a symlink), and coex records one where conda 23 does."""
    for p in rec["paths_data"]["paths"]:
        full = os.path.join(str(prefix), p["_path"])
        placeholder = p.get("prefix_placeholder")
        if p["path_type"] == "hardlink" and not os.path.islink(full) and (p.get("sha256") or placeholder):
            assert "sha256_in_prefix" in p, (rec["fn"], p)
        if "sha256_in_prefix" in p:
            assert p["path_type"] == "hardlink", (rec["fn"], p)
            with open(full, "rb") as f:
                assert hashlib.sha256(f.read()).hexdigest() == p["sha256_in_prefix"], (rec["fn"], p)
            if not placeholder:
                assert p["sha256_in_prefix"] == p["sha256"], (rec["fn"], p)


def _path_diffs(name, r, c, r_prefix):
    """How coex's paths_data differs from rattler's, beyond what is written down above."""
    old = not os.path.isfile(os.path.join(c["extracted_package_dir"], "info", "paths.json"))
    rp = dict((p["_path"], p) for p in r["paths_data"]["paths"])
    cp = dict((p["_path"], p) for p in c["paths_data"]["paths"] if p["path_type"] != "pyc_file")
    bad = []
    if sorted(rp) != sorted(cp):
        bad.append("paths only rattler %s, only coex %s" % (sorted(set(rp) - set(cp))[:10],
                                                            sorted(set(cp) - set(rp))[:10]))
    for path in sorted(set(rp) & set(cp)):
        a, b = rp[path], cp[path]
        ep = b["path_type"] == "unix_python_entry_point"
        if ep:
            assert set(b) == {"_path", "path_type"}, (name, b)
        same = [k for k in PATH_FIELDS_SAME if not (ep and k == "sha256")]
        if [a.get(k) for k in same] != [b.get(k) for k in same]:
            bad.append("%s: rattler %r vs coex %r" % (path, a, b))
            continue
        # size_in_bytes: equal, but where written down above
        if "prefix_placeholder" in b:  # rattler: the file written; coex: the package's file
            assert a.get("size_in_bytes") == (r_prefix / path).stat().st_size, (name, a)
            src = os.path.join(c["extracted_package_dir"], path)
            if "size_in_bytes" in b and c.get("noarch") != "python":
                assert b["size_in_bytes"] == os.path.getsize(src), (name, b)
        elif old or "size_in_bytes" not in b:  # the package gives none (coex copies its value)
            assert not (old and "size_in_bytes" in b), (name, b)
        elif a.get("size_in_bytes") != b["size_in_bytes"]:
            bad.append("%s: size_in_bytes rattler %r vs coex %r" % (path, a, b))
    return bad


def compare_conda_meta(r_prefix, c_prefix):
    import rattler

    rm, cm = helpers.conda_meta(r_prefix), helpers.conda_meta(c_prefix)
    assert sorted(rm) == sorted(cm)
    for name in rm:
        r, c = rm[name], cm[name]
        for key in set(r) | set(c):
            if key in META_DIFFERENT:
                continue
            if key in META_ONLY_COEX:
                assert key in c, (name, key)
                continue
            if key in META_ONLY_RATTLER and key not in c:
                continue
            if key in META_EMPTY_ONLY_COEX and key not in r and c[key] == META_EMPTY_ONLY_COEX[key]:
                continue
            assert key in r and key in c, "%s: field %r only in %s" % (
                name, key, "rattler" if key in r else "coex")
            if key == "paths_data":
                bad = _path_diffs(name, r, c, r_prefix)
                assert not bad, "%s paths_data:\n%s" % (name, "\n".join(bad[:40]))
                assert r[key]["paths_version"] == c[key]["paths_version"]
            elif key == "files":
                pycs = set(p["_path"] for p in c["paths_data"]["paths"]
                           if p["path_type"] == "pyc_file")
                assert r[key] == [f for f in c[key] if f not in pycs], name
            else:
                assert r[key] == c[key], "%s: %s: rattler %r vs coex %r" % (name, key, r[key], c[key])
        assert c["link"]["type"] in (1, 3)
        assert c["link"]["source"] == c["extracted_package_dir"]
        check_recorded_digests(c_prefix, c)
        # rattler reads coex's records back
        rec = rattler.PrefixRecord.from_path(os.path.join(str(c_prefix), "conda-meta", name))
        assert str(rec.name.normalized) == c["name"]
        assert len(rec.files) == len(c["files"])
    assert (r_prefix / HISTORY).exists() and (c_prefix / HISTORY).exists()

