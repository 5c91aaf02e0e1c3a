"""Prefixes conda itself installed, the best oracle of all: data derived (derive.py) from the
Miniconda snapshots MANIFEST.tsv names, one file per snapshot, and how to look at a file of
coex's prefix as git saw conda's (test_corpus.py installs the same package files into a prefix
of the same length as conda's and compares).

* ``QGB-miniconda3.json.gz``: QGB/miniconda3@e8ce2a6cb74a, Miniconda py39 4.9.2 as installed
  (Dec 2020, by constructor's conda 4.9.2) at /home/leanengine/miniconda3;
* ``fenrihen-Miniconda3-3.16.json.gz``: fenrihen/Miniconda3-3.16@bc31c11a6d9b, Miniconda3 3.16
  updated by conda 4.1.11 (Sep 2016) at /home/fenrihen/Uygulamalar/Miniconda3-3.16.

The differences allowed, each with its reason, are written down in test_corpus.py.
"""
import gzip
import hashlib
import json
import os
import stat
from pathlib import Path

HERE = Path(__file__).resolve().parent
SNAPSHOTS = {"2020": "QGB-miniconda3.json.gz", "2016": "fenrihen-Miniconda3-3.16.json.gz"}


def load(env):  # type: (str) -> dict
    with gzip.open(str(HERE / SNAPSHOTS[env]), "rt") as f:
        return json.load(f)


def git_entry(path, ours, theirs):  # type: (Path, bytes, bytes) -> str
    """``<git mode> <blob id>`` of the file at ``path`` with prefix ``ours`` written as
    ``theirs`` (as `git ls-tree` shows it; blob id cut as derive.py cuts it)."""
    from tests.installer.conda_prefixes.derive import DIGEST
    st = os.lstat(str(path))
    if stat.S_ISLNK(st.st_mode):
        mode, data = "120000", os.readlink(str(path)).encode()
    else:
        mode = "100755" if st.st_mode & stat.S_IXUSR else "100644"
        data = path.read_bytes()
    data = data.replace(ours, theirs)
    oid = hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()
    return "%s %s" % (mode, oid[:DIGEST])


def digest_in_prefix(path, ours, theirs):  # type: (Path, bytes, bytes) -> str
    """sha256 of the file at ``path`` with prefix ``ours`` written as ``theirs`` (cut)."""
    from tests.installer.conda_prefixes.derive import DIGEST
    return hashlib.sha256(path.read_bytes().replace(ours, theirs)).hexdigest()[:DIGEST]
