"""The TINY tier: a synthetic, indexed file:// conda channel covering every install feature.

    from tests.factory import tiny
    ch = tiny.build(tmp_path / "tiny")        # -> TinyChannel, well under a second (gcc cached)
    ch.path, ch.url                            # channel dir, file:// URL
    ch.file("prefixprog")                      # Path of linux-64/prefixprog-1.0-h0_0.conda
    ch.file("zstd", subdir="linux-aarch64")    # the aarch64 one
    ch.file("libtiny", version="2.0")
    ch.files                                   # {(subdir, name, version): Path} of every package
    tiny.ALL_SPECS                             # specs installing every normal package together

    bad = tiny.build_bad(tmp_path / "bad")     # -> BadChannel: a SEPARATE channel of broken packages
    bad.file("bad-escape"); bad.packages       # {name: Path}; bad.reasons: {name: what is wrong}

Packages (linux-64 unless said otherwise; placeholder = LONG_PLACEHOLDER, 255 chars):

* ``python 3.9.18 h0_fake`` (.conda): ``bin/python3.9`` is a C launcher holding the placeholder as a
  C string (binary mode); ``--print-prefix`` prints it, otherwise it execs the host CPython 3.9
  with ``PYTHONPATH=<prefix>/lib/python3.9/site-packages`` (+ ``COEX_FAKE_PYTHON_PREFIX``), so
  noarch python packages install into python3.9 site-packages and their console scripts run.
  Softlinks ``bin/python``, ``bin/python3``. Depends ``__glibc >=2.17``.
* ``prefixprog 1.0 h0_0`` (.conda), depends ``libtiny >=1,<2`` and ``__glibc >=2.17``:
  ``bin/prefixprog`` (C program printing its compiled-in prefix: binary placeholder);
  ``bin/prefixprog-sh`` (exec sh script echoing the prefix: text placeholder);
  ``etc/prefixprog.conf`` (``prefix=<placeholder>``, text); ``bin/pp`` -> ``prefixprog`` softlink;
  ``share/prefixprog/docs`` -> ``../prefixprog-docs`` (softlink to a directory holding
  ``readme.txt``); ``share/prefixprog/a.txt`` + ``b.txt`` hard links of each other in the tar;
  ``share/prefixprog/plain.txt`` read-only data (0o644);
  ``bin/.prefixprog-pre-link.sh``, ``bin/.prefixprog-post-link.sh`` (post-link writes
  ``$PREFIX/share/prefixprog/post-link-ran`` containing ``$PREFIX`` and ``$PKG_NAME``);
  ``etc/conda/activate.d/prefixprog.sh`` (exports ``PREFIXPROG_HOME=<placeholder>/share/prefixprog``)
  and ``etc/conda/env_vars.d/prefixprog.json`` (``{"PREFIXPROG_MODE": "tiny"}``).
* ``libtiny 1.0 h0_0`` (.tar.bz2; ``lib/libtiny.txt`` text with the DEFAULT placeholder
  /opt/anaconda1anaconda2anaconda3) and ``libtiny 2.0 h0_0`` (.conda), so ``prefixprog`` pins 1.0.
* ``oldstyle 1.0 h0_0`` (.tar.bz2) with NO paths.json: ``info/has_prefix`` has a bare line
  (``bin/oldstyle``: sh script with the default placeholder, text) and full lines
  (``<placeholder> text etc/oldstyle.conf``, ``<placeholder> binary bin/oldstyle-bin``: the C
  prefix printer).
* ``tinypy 1.0 pyh0_0`` (noarch: python, .conda), depends ``python >=3.9``:
  ``site-packages/tinypy/{__init__,cli}.py``, entry points ``tinypy = tinypy.cli:main`` (prints
  ``tinypy ok <module file>``) and ``tinypy-fail = tinypy.cli:fail`` (exits 3);
  ``python-scripts/tinypy-script`` (sh, prints ``tinypy-script ok``).
* ``zstd 1.5.4 h0_system`` (.conda): the image's ``/usr/bin/zstd`` as ``bin/zstd``,
  ``lib/libzstd.so.1.5.4`` + softlink ``lib/libzstd.so.1``.
* ``postlink-fails 1.0 h0_0`` (.conda): its post-link script exits 1 (nobody depends on it).
* ``unsolvable 1.0 h0_0`` (.conda): depends on ``does-not-exist >=1`` (never solvable).
* ``linux-aarch64``: ``zstd 1.5.4 h0_placeholder``, ``python 3.9.18 h0_fake``, ``prefixprog 1.0``,
  ``libtiny 1.0``, ``oldstyle 1.0`` (non-runnable payloads, same paths and placeholders), so ALL_SPECS also solves
  for linux-aarch64 (with ``__glibc``/``__unix``/``__linux`` virtual packages given explicitly).

The channel is indexed with ``rattler.index.index_fs`` (repodata.json per subdir, noarch too).
"""
import asyncio
import glob
import json
import os
import sys
from pathlib import Path
from typing import Dict, Optional, Tuple

from .cbuild import compile_c, fake_python_source, prefix_printer_source
from .condapkg import (
    DEFAULT_PLACEHOLDER,
    LONG_PLACEHOLDER,
    Member,
    PackageMeta,
    build_from_files,
    info_files,
    paths_json,
    write_archive,
)

PYVER = "3.9"
PYTHON_VERSION = "3.9.18"
ZSTD_VERSION = "1.5.4"
ALL_SPECS = ["python", "tinypy", "prefixprog", "oldstyle", "zstd"]
UNSOLVABLE_SPEC = "unsolvable"
FAILING_POSTLINK_SPEC = "postlink-fails"
SUBDIRS = ("linux-64", "linux-aarch64", "noarch")


class TinyChannel:
    """An indexed channel: .path (dir), .url (file:// URL), .files {(subdir, name, version): Path}."""

    def __init__(self, path: Path, files: Dict[Tuple[str, str, str], Path]):
        self.path = Path(path)
        self.url = self.path.as_uri()
        self.files = files

    def file(self, name: str, subdir: Optional[str] = None, version: Optional[str] = None) -> Path:
        """The package file called ``name`` (linux-64 or noarch unless ``subdir`` is given)."""
        hits = [p for (sd, n, v), p in self.files.items()
                if n == name and (sd == subdir if subdir else sd in ("linux-64", "noarch"))
                and version in (None, v)]
        if len(hits) != 1:
            raise KeyError("%d packages match name=%s subdir=%s version=%s in %s"
                           % (len(hits), name, subdir, version, self.path))
        return hits[0]

    def __repr__(self):
        return "TinyChannel(%s, %d packages)" % (self.path, len(self.files))


def host_python39() -> str:
    """Path of a real CPython 3.9 executable (the fake python execs it)."""
    if sys.version_info[:2] == (3, 9):
        cand = os.path.join(sys.base_prefix, "bin", "python3.9")
        if os.path.exists(cand):
            return cand
    for c in sorted(glob.glob(os.path.expanduser("~/.pyenv/versions/3.9*/bin/python3.9"))) + [
            "/usr/bin/python3.9", "/usr/local/bin/python3.9"]:
        if os.path.exists(c):
            return c
    raise RuntimeError("the tiny channel's fake python needs a real CPython 3.9 "
                       "(looked at sys.base_prefix and ~/.pyenv/versions/3.9*)")


def index_channel(path: Path) -> None:
    """Index a channel directory with py-rattler (creates noarch/ if missing)."""
    from rattler.index import index_fs

    Path(path, "noarch").mkdir(parents=True, exist_ok=True)
    asyncio.run(index_fs(Path(path), write_zst=False, write_shards=False, force=True))


def _key(pkg: Path) -> Tuple[str, str, str]:
    name, version, _ = pkg.name.rsplit("-", 2)
    return (pkg.parent.name, name, version)


def _sh(body: str) -> Tuple[str, str]:
    return ("exec", "#!/bin/sh\n" + body)


def _zstd_files() -> Dict[str, object]:
    lib = Path("/usr/lib/x86_64-linux-gnu/libzstd.so.%s" % ZSTD_VERSION)
    exe = Path("/usr/bin/zstd")
    for p in (lib, exe):
        if not p.exists():
            raise RuntimeError("%s is needed for the tiny zstd package (apt-get install zstd "
                               "libzstd1); found no such file" % p)
    return {
        "bin/zstd": ("exec", exe.read_bytes()),
        "lib/libzstd.so.%s" % ZSTD_VERSION: lib.read_bytes(),
        "lib/libzstd.so.1": ("symlink", "libzstd.so.%s" % ZSTD_VERSION),
    }


def _prefixprog_files(printer: bytes) -> Dict[str, object]:
    ph = LONG_PLACEHOLDER
    return {
        "bin/prefixprog": ("exec", printer),
        "bin/prefixprog-sh": _sh('echo "%s"\n' % ph),
        "bin/pp": ("symlink", "prefixprog"),
        "etc/prefixprog.conf": "prefix=%s\n" % ph,
        "share/prefixprog-docs/readme.txt": "prefixprog docs\n",
        "share/prefixprog/docs": ("symlink", "../prefixprog-docs"),
        "share/prefixprog/a.txt": "hardlinked content\n",
        "share/prefixprog/b.txt": ("hardlink", "share/prefixprog/a.txt"),
        "share/prefixprog/plain.txt": "plain data\n",
        "bin/.prefixprog-pre-link.sh": _sh("exit 0\n"),
        "bin/.prefixprog-post-link.sh": _sh(
            'mkdir -p "$PREFIX/share/prefixprog"\n'
            'printf "%s %s\\n" "$PREFIX" "$PKG_NAME" > "$PREFIX/share/prefixprog/post-link-ran"\n'),
        "etc/conda/activate.d/prefixprog.sh": 'export PREFIXPROG_HOME="%s/share/prefixprog"\n' % ph,
        "etc/conda/env_vars.d/prefixprog.json": json.dumps({"PREFIXPROG_MODE": "tiny"}) + "\n",
    }


PREFIXPROG_PREFIX_FILES = {
    "bin/prefixprog": (LONG_PLACEHOLDER, "binary"),
    "bin/prefixprog-sh": (LONG_PLACEHOLDER, "text"),
    "etc/prefixprog.conf": (LONG_PLACEHOLDER, "text"),
    "etc/conda/activate.d/prefixprog.sh": (LONG_PLACEHOLDER, "text"),
}


def build(dest: Path) -> TinyChannel:
    """Build and index the tiny channel into ``dest`` (created; existing packages overwritten)."""
    dest = Path(dest)
    for sd in SUBDIRS:
        (dest / sd).mkdir(parents=True, exist_ok=True)
    L64, A64, NA = dest / "linux-64", dest / "linux-aarch64", dest / "noarch"
    ph = LONG_PLACEHOLDER
    printer = compile_c(prefix_printer_source(ph), "prefixprog")
    fakepy = compile_c(fake_python_source(ph, host_python39(), PYVER), "fakepython")
    glibc = "__glibc >=2.17"
    # linux-aarch64 payload for "binaries": not runnable, but carries the placeholder + NUL
    NOT_RUNNABLE = b"\x7fELF-not-runnable-aarch64 " + ph.encode() + b"\0"
    out = []

    # python (fake launcher) for both platforms
    py_prefix = {"bin/python%s" % PYVER: (ph, "binary")}
    for outdir, exe in ((L64, fakepy), (A64, NOT_RUNNABLE)):
        out.append(build_from_files({
            "bin/python%s" % PYVER: ("exec", exe),
            "bin/python": ("symlink", "python%s" % PYVER),
            "bin/python3": ("symlink", "python%s" % PYVER),
            "lib/python%s/site-packages/coex_fake_python.txt" % PYVER: "site-packages marker\n",
        }, outdir, PackageMeta("python", PYTHON_VERSION, "h0_fake", subdir=outdir.name,
                               depends=[glibc], prefix_files=py_prefix)))

    # prefixprog + libtiny
    for outdir, exe in ((L64, printer), (A64, NOT_RUNNABLE)):
        out.append(build_from_files(
            _prefixprog_files(exe), outdir,
            PackageMeta("prefixprog", "1.0", "h0_0", subdir=outdir.name,
                        depends=["libtiny >=1,<2", glibc], prefix_files=PREFIXPROG_PREFIX_FILES)))
        out.append(build_from_files(
            {"lib/libtiny.txt": "libtiny 1.0 at %s\n" % DEFAULT_PLACEHOLDER}, outdir,
            PackageMeta("libtiny", "1.0", "h0_0", subdir=outdir.name,
                        prefix_files={"lib/libtiny.txt": (DEFAULT_PLACEHOLDER, "text")}),
            fmt="tar.bz2"))
    out.append(build_from_files({"lib/libtiny.txt": "libtiny 2.0\n"}, L64,
                                PackageMeta("libtiny", "2.0", "h0_0")))

    # old-style (no paths.json)
    for outdir, exe in ((L64, printer), (A64, NOT_RUNNABLE)):
        out.append(build_from_files({
            "bin/oldstyle": _sh('echo "%s"\n' % DEFAULT_PLACEHOLDER),
            "bin/oldstyle-bin": ("exec", exe),
            "etc/oldstyle.conf": "prefix=%s\n" % ph,
        }, outdir, PackageMeta("oldstyle", "1.0", "h0_0", subdir=outdir.name, old_style=True,
                            has_prefix_bare=["bin/oldstyle"],
                            prefix_files={"bin/oldstyle": (DEFAULT_PLACEHOLDER, "text"),
                                          "etc/oldstyle.conf": (ph, "text"),
                                          "bin/oldstyle-bin": (ph, "binary")}), fmt="tar.bz2"))

    # noarch: python
    out.append(build_from_files({
        "site-packages/tinypy/__init__.py": '__version__ = "1.0"\n',
        "site-packages/tinypy/cli.py": (
            "import sys\n\n\ndef main():\n    print('tinypy ok', __file__)\n    return 0\n\n\n"
            "def fail():\n    print('tinypy failing', file=sys.stderr)\n    return 3\n"),
        "python-scripts/tinypy-script": _sh("echo tinypy-script ok\n"),
    }, NA, PackageMeta("tinypy", "1.0", "pyh0_0", noarch="python", depends=["python >=3.9"],
                       entry_points=["tinypy = tinypy.cli:main", "tinypy-fail = tinypy.cli:fail"])))

    # zstd, both platforms
    out.append(build_from_files(_zstd_files(), L64, PackageMeta("zstd", ZSTD_VERSION, "h0_system")))
    out.append(build_from_files({
        "bin/zstd": _sh("echo 'placeholder zstd for linux-aarch64' >&2; exit 1\n"),
        "lib/libzstd.so.%s" % ZSTD_VERSION: "placeholder libzstd for linux-aarch64\n",
        "lib/libzstd.so.1": ("symlink", "libzstd.so.%s" % ZSTD_VERSION),
    }, A64, PackageMeta("zstd", ZSTD_VERSION, "h0_placeholder", subdir="linux-aarch64")))

    # failing post-link, unsolvable
    out.append(build_from_files({
        "share/postlink-fails/data.txt": "data\n",
        "bin/.postlink-fails-post-link.sh": _sh('echo "post-link of $PKG_NAME fails on purpose" >&2\nexit 1\n'),
    }, L64, PackageMeta("postlink-fails", "1.0", "h0_0")))
    out.append(build_from_files({"share/unsolvable/data.txt": "never installed\n"}, L64,
                                PackageMeta("unsolvable", "1.0", "h0_0",
                                            depends=["does-not-exist >=1"])))

    index_channel(dest)
    return TinyChannel(dest, {_key(p): p for p in out})


# ------------------------------------------------------------------------------------------------
# Bad packages


class BadChannel:
    """Broken packages: .path, .url, .packages {name: Path}, .reasons {name: what is wrong}.

    Its repodata.json is written by hand (index_fs cannot read some of these), with correct
    sha256/md5/size of each package file, so a solver can pick any of them by name.

    The py-rattler 0.25 oracle on these: InstallerError for bad-escape, bad-missing-file,
    bad-path-type, bad-zstd, bad-bz2; it ABORTS THE WHOLE PROCESS (Rust panic) on bad-absolute,
    so never hand that one to rattler.install in-process; it installs the rest without complaint
    (bad-sha256, bad-size, both bad-symlink-*, bad-device; bad-short-placeholder
    only fails for prefixes longer than 20 chars). Its post-link failures are only logged.
    """

    def __init__(self, path: Path, packages: Dict[str, Path], reasons: Dict[str, str]):
        self.path = Path(path)
        self.url = self.path.as_uri()
        self.packages = packages
        self.reasons = reasons

    def file(self, name: str) -> Path:
        return self.packages[name]


BAD_REASONS = {
    "bad-escape": "payload member and paths.json entry '../escaped.txt' escape the prefix",
    "bad-absolute": "payload member and paths.json entry '/tmp/coex-bad-absolute.txt' are absolute",
    "bad-symlink-outside": "softlink lib/evil -> ../../../../etc/passwd points outside the prefix",
    "bad-symlink-absolute": "softlink lib/evil-abs -> /etc/passwd is absolute",
    "bad-missing-file": "paths.json lists share/missing.txt, which is not in the payload",
    "bad-sha256": "paths.json sha256 of share/data.txt is wrong",
    "bad-size": "paths.json size_in_bytes of share/data.txt is wrong",
    "bad-path-type": "paths.json path_type of share/data.txt is 'weirdlink'",
    "bad-short-placeholder": "bin/shortprog has a 20-char binary placeholder (too short for a long prefix)",
    "bad-zstd": "the pkg-*.tar.zst stream inside the .conda is corrupt (info is fine)",
    "bad-bz2": "the .tar.bz2 stream is corrupt after the first block boundary",
    "bad-device": "payload holds a character device dev/null-copy",
}
_BAD_INDEX = {}  # type: Dict[Path, dict]
SHORT_PLACEHOLDER = "/opt/short_placehold"  # 20 chars
assert len(SHORT_PLACEHOLDER) == 20


def _write_bad(dest: Path, members, meta: PackageMeta, fmt="conda", mutate=None,
               hook=None) -> Path:
    info = info_files(meta, members)
    if mutate:
        pj = paths_json(meta, members)
        mutate(pj["paths"])
        info["info/paths.json"] = (json.dumps(pj, indent=2, sort_keys=True) + "\n").encode()
    path = write_archive(dest / meta.subdir / ("%s.%s" % (meta.stem, fmt)), info, members, hook)
    _BAD_INDEX[path] = meta.index_json()
    return path


def build_bad(dest: Path) -> BadChannel:
    """Build the separate channel of broken packages into ``dest`` (see BAD_REASONS)."""
    import hashlib

    dest = Path(dest)
    for sd in ("linux-64", "noarch"):
        (dest / sd).mkdir(parents=True, exist_ok=True)
    data = Member("share/data.txt", data=b"some data\n")

    def meta(name, **kw):
        return PackageMeta(name, "1.0", "h0_0", **kw)

    def set_field(path, **kw):
        def m(paths):
            for e in paths:
                if e["_path"] == path:
                    e.update(kw)
        return m

    pk = {}
    pk["bad-escape"] = _write_bad(dest, [data, Member("../escaped.txt", data=b"x\n")],
                                  meta("bad-escape"))
    pk["bad-absolute"] = _write_bad(dest,
                                    [data, Member("/tmp/coex-bad-absolute.txt", data=b"x\n")],
                                    meta("bad-absolute"))
    pk["bad-symlink-outside"] = _write_bad(
        dest, [data, Member("lib/evil", "symlink", target="../../../../etc/passwd")],
        meta("bad-symlink-outside"))
    pk["bad-symlink-absolute"] = _write_bad(
        dest, [data, Member("lib/evil-abs", "symlink", target="/etc/passwd")],
        meta("bad-symlink-absolute"))

    def add_missing(paths):
        paths.append({"_path": "share/missing.txt", "path_type": "hardlink",
                      "sha256": hashlib.sha256(b"gone\n").hexdigest(), "size_in_bytes": 5})
        paths.sort(key=lambda e: e["_path"])

    pk["bad-missing-file"] = _write_bad(dest, [data], meta("bad-missing-file"), mutate=add_missing)
    pk["bad-sha256"] = _write_bad(dest, [data], meta("bad-sha256"),
                                  mutate=set_field("share/data.txt", sha256="0" * 64))
    pk["bad-size"] = _write_bad(dest, [data], meta("bad-size"),
                                mutate=set_field("share/data.txt", size_in_bytes=12345))
    pk["bad-path-type"] = _write_bad(dest, [data], meta("bad-path-type"),
                                     mutate=set_field("share/data.txt", path_type="weirdlink"))
    short = compile_c(prefix_printer_source(SHORT_PLACEHOLDER), "shortprog")
    pk["bad-short-placeholder"] = _write_bad(
        dest, [Member("bin/shortprog", data=short, mode=0o755)],
        meta("bad-short-placeholder", prefix_files={"bin/shortprog": (SHORT_PLACEHOLDER, "binary")}))

    def corrupt_zstd(kind, b):
        if kind != "pkg":
            return b
        # keep the frame header, garble the blocks and drop the end: the frame is incomplete
        return b[:12] + bytes(x ^ 0xA5 for x in b[12:len(b) // 2])

    big = Member("share/big.txt", data=b"".join(b"line %d of zstd test data\n" % i for i in range(4000)))
    pk["bad-zstd"] = _write_bad(dest, [data, big], meta("bad-zstd"), hook=corrupt_zstd)

    def corrupt_bz2(kind, b):
        # keep the header + a little, garble the rest (bz2 has no resync: the stream is invalid)
        cut = min(len(b) // 2, 200)
        return b[:cut] + bytes(x ^ 0x5A for x in b[cut:])

    pk["bad-bz2"] = _write_bad(dest, [data, big], meta("bad-bz2"), fmt="tar.bz2",
                               hook=corrupt_bz2)
    pk["bad-device"] = _write_bad(dest, [data, Member("dev/null-copy", "chr", mode=0o666)],
                                  meta("bad-device"))
    _write_repodata(dest, list(pk.values()))
    return BadChannel(dest, pk, dict(BAD_REASONS))


def _write_repodata(dest: Path, pkgs) -> None:
    """Hand-written repodata.json for packages whose index.json we know (same names -> bytes)."""
    import hashlib

    by_subdir = {}
    for p in pkgs:
        meta_json = _BAD_INDEX[p]
        b = p.read_bytes()
        rec = dict(meta_json)
        rec.update(md5=hashlib.md5(b).hexdigest(), sha256=hashlib.sha256(b).hexdigest(), size=len(b))
        key = "packages.conda" if p.name.endswith(".conda") else "packages"
        by_subdir.setdefault(p.parent.name, {"packages": {}, "packages.conda": {}})[key][p.name] = rec
    for sd in ("linux-64", "noarch"):
        doc = by_subdir.get(sd, {"packages": {}, "packages.conda": {}})
        doc.update(info={"subdir": sd}, repodata_version=1)
        (dest / sd / "repodata.json").write_text(json.dumps(doc, indent=1, sort_keys=True) + "\n")
