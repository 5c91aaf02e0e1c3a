"""Derive the expectation data of test_conda_prefixes.py from a git snapshot of a prefix conda
installed (a mirror of one of the Miniconda repositories MANIFEST.tsv names): run by hand, it
reads only git objects (the repositories are not fetched by CI):

    python -m tests.installer.conda_prefixes.derive <git dir> <commit> <conda's prefix> <corpus> OUT

For every package of the corpus (MANIFEST.tsv rows whose `source` is that repository) that the
snapshot's conda-meta lists: conda's record (the fields compared) and its `files`, and for each
of those files present in the snapshot (git keeps no .pyc nor, there, .so: .gitignore) its git
mode (100644, 100755, 120000) and blob id: the bytes conda installed (a symlink's: its target);
and of its `paths_data` (conda 4.9 records only the files it did not link as they are) each
path's type, placeholder, file mode, no_link and `sha256_in_prefix` (the digest of the file
conda wrote, .so files included). Digests are cut to DIGEST hex digits (equality checks only).
"""
import gzip
import json
import subprocess
import sys

# the record fields compared (the rest name conda's own cache, URLs and install time)
FIELDS = ("name", "version", "build", "build_number", "depends", "constrains", "license",
          "license_family", "md5", "sha256", "size", "subdir", "noarch", "timestamp", "arch",
          "platform", "track_features", "features", "requested_spec", "fn")


DIGEST = 12
PATH_FIELDS = ("path_type", "prefix_placeholder", "file_mode", "no_link", "sha256_in_prefix")


def _path_data(p):
    out = dict((k, p[k]) for k in PATH_FIELDS if k in p)
    if "sha256_in_prefix" in out:
        out["sha256_in_prefix"] = out["sha256_in_prefix"][:DIGEST]
    return out


def git(gitdir, *args):
    return subprocess.check_output(["git", "--git-dir", gitdir] + list(args))


def main(gitdir, commit, prefix, corpus, out):
    tree = {}
    for line in git(gitdir, "ls-tree", "-r", "--full-tree", commit).decode().splitlines():
        meta, path = line.split("\t", 1)
        mode, _, oid = meta.split()
        tree[path] = (mode, oid)
    repo = None
    files = set()
    with open(corpus + "/MANIFEST.tsv") as f:
        head = f.readline().rstrip("\n").split("\t")
        for line in f:
            row = dict(zip(head, line.rstrip("\n").split("\t")))
            src = row["source"]
            if row["status"] == "channel" and src.split("@")[1].split(":")[0] in commit:
                repo = src.split(":")[0]
                files.add(row["file"].rsplit("/", 1)[1])
    packages = {}
    for path in sorted(tree):
        if not (path.startswith("conda-meta/") and path.endswith(".json")):
            continue
        rec = json.loads(git(gitdir, "show", "%s:%s" % (commit, path)))
        fn = rec.get("fn") or "%s-%s-%s.tar.bz2" % (rec["name"], rec["version"], rec["build"])
        if fn not in files:
            continue
        packages[path[len("conda-meta/"):-len(".json")]] = {
            "record": dict((k, rec[k]) for k in FIELDS if k in rec),
            "link": rec.get("link"),
            # conda's `files`: {path: "<git mode> <blob id>", or "" when git does not have it}
            "files": dict((p, "%s %s" % (tree[p][0], tree[p][1][:DIGEST]) if p in tree else "")
                          for p in rec["files"]),
            "paths_data": dict((p["_path"], _path_data(p))
                               for p in (rec.get("paths_data") or {}).get("paths", ())),
        }
    data = {"source": repo, "commit": commit, "prefix": prefix, "packages": packages}
    with gzip.open(out, "wt") as f:
        json.dump(data, f, indent=0, sort_keys=True)


if __name__ == "__main__":
    main(*sys.argv[1:])
