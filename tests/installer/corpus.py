"""The corpus of real conda packages (``../shared/corpus`` next to the repository, or
``$COEX_CORPUS``; see its README.md and MANIFEST.tsv): where it is, what it holds, and its
packages as rattler records and COEX-INFO entries. Never copied into the repository: tests skip
without it (``.ci/run`` fails without it).
"""
import os
import tempfile
from pathlib import Path
from typing import Dict, List, Optional

REPO = Path(__file__).resolve().parents[2]
ENV_VAR = "COEX_CORPUS"
MISSING = ("the real-package corpus is not at %s: set $%s to the corpus directory (the one "
           "holding MANIFEST.tsv)" % (REPO.parent / "shared" / "corpus", ENV_VAR))
SUBDIRS = ("linux-64", "noarch", "osx-64")
# where the two Miniconda package caches come from (MANIFEST.tsv's `source`)
CACHE_2020 = "QGB/miniconda3@"
CACHE_2016 = "fenrihen/Miniconda3-3.16@"


def location() -> Optional[Path]:
    """The corpus directory, or None when it is not there."""
    root = Path(os.environ.get(ENV_VAR) or REPO.parent / "shared" / "corpus")
    return root if (root / "MANIFEST.tsv").is_file() else None


def manifest(root: Path) -> List[Dict[str, str]]:
    """MANIFEST.tsv's rows of the real channel (not the stubs), `key` = "<subdir>/<file name>"."""
    lines = (root / "MANIFEST.tsv").read_text().splitlines()
    head = lines[0].split("\t")
    rows = []
    for line in lines[1:]:
        row = dict(zip(head, line.split("\t")))
        if row.get("status") == "channel":
            row["key"] = row["file"].split("/", 1)[1]
            rows.append(row)
    return rows


def records(root: Path, channel: str = "channel") -> Dict[str, object]:
    """{"<subdir>/<file name>": RepoDataRecord} of one of the corpus's channels. Records whose
    index.json lacks a subdir (indexed as `unknown`) get the URL of the file as it is stored."""
    from rattler import Channel, RepoData

    ch = Channel((root / channel).as_uri())
    out = {}
    for sub in SUBDIRS:
        rd = root / channel / sub / "repodata.json"
        if not rd.is_file():
            continue
        for r in RepoData.from_path(str(rd)).into_repo_data(ch):
            if not (root / channel / sub / r.file_name).is_file():
                continue
            if "/%s/" % sub not in r.url:
                r.url = (root / channel / sub / r.file_name).as_uri()
            out["%s/%s" % (sub, r.file_name)] = r
    return out


def platform_of(key: str) -> str:
    """The platform to install a package of subdir ``key.split('/')[0]`` for."""
    return "osx-64" if key.startswith("osx-64/") else "linux-64"


class ShortDir(object):
    """A fresh directory with a short path (``/tmp/cx<8>``, 15 characters): conda-build's
    historical placeholder is 32 characters, so a binary file holding it can only be relocated
    to a prefix that short (pytest's tmp_path is longer). ``pair(name, length)``: two prefixes
    (rattler's, coex's) of exactly ``length`` characters."""

    def __init__(self):
        self.path = Path(tempfile.mkdtemp(prefix="cx", dir="/tmp"))

    def pair(self, name: str, length: int):
        fixed = len(str(self.path)) + len("/r/")
        assert length > fixed + len(name), (name, length)
        name = name + "-" * (length - fixed - len(name))
        a, b = self.path / "r" / name, self.path / "c" / name
        assert len(str(a)) == len(str(b)) == length
        return a, b

    def remove(self):
        from coex_runtime.fs import rmtree
        rmtree(str(self.path))  # read-only directories of packages too
