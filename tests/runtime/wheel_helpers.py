"""Real PyPI wheels (pinned by version and sha256, downloaded once into
``${XDG_CACHE_HOME:-~/.cache}/coex-test-wheels``), hand-made wheels, archives of the realistic
channel's CPython 3.11 with wheels, and pip (a pinned wheel, run by the environment's own python)
as the oracle."""
import base64
import csv
import fcntl
import hashlib
import io
import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from coex_runtime import format as F
from tests.runtime import rt_helpers as H

#: filename -> sha256 (PyPI's), the wheels the tests install
PINS = {
    # pure, console_scripts
    "pyflakes-3.2.0-py2.py3-none-any.whl":
        "84b5be138a2dfbb40689ca07e2152deb896a65c3a3e24c251c5c62489568074a",
    # a manylinux C extension for CPython 3.11
    "MarkupSafe-3.0.2-cp311-cp311-manylinux_2_17_x86_64.manylinux2014_x86_64.whl":
        "a123e330ef0853c6e822384873bef7507557d8e4a082961e1defa947aa59ba84",
    # .data/scripts/jsonpointer (a #!python script)
    "jsonpointer-3.0.0-py2.py3-none-any.whl":
        "13e088adc14fca8b6aa8177c044e12701e6ad4b28ff10e65f2267a90109c9942",
    # the oracle
    "pip-25.0.1-py3-none-any.whl":
        "c46efd13b6aa8279f33f2864459c8ce587ea6a1a59ee20de055868d8f7688f7f",
}


def cache_dir():  # type: () -> Path
    base = os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache")
    return Path(base) / "coex-test-wheels"


def _requirement(filename):
    name, version = filename.split("-")[:2]
    return "%s==%s" % (name, version)


def fetch(filename):  # type: (str) -> Path
    """The pinned wheel, downloaded with pip the first time (skip when PyPI is unreachable)."""
    d = cache_dir()
    d.mkdir(parents=True, exist_ok=True)
    path = d / filename

    def good():
        return path.is_file() and hashlib.sha256(path.read_bytes()).hexdigest() == PINS[filename]
    if good():
        return path
    with open(str(d / ".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if good():
            return path
        tmp = d / (".dl-%d" % os.getpid())
        tmp.mkdir(exist_ok=True)
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
               "--python-version", "3.11", "--platform", "manylinux2014_x86_64",
               "--implementation", "cp", "--abi", "cp311", "--no-cache-dir",
               "-d", str(tmp), "--quiet", _requirement(filename)]
        try:
            r = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=300)
        except subprocess.TimeoutExpired:
            r = None
        got = tmp / filename
        if r is None or r.returncode != 0 or not got.is_file():
            pytest.skip("cannot download %s from PyPI (is it reachable?): %s"
                        % (filename, "timeout" if r is None else r.stderr.decode()[-500:]))
        os.rename(str(got), str(path))
        for leftover in tmp.iterdir():
            leftover.unlink()
        tmp.rmdir()
    assert good(), "%s from PyPI does not have the pinned sha256 %s" % (filename, PINS[filename])
    return path


def _b64(data):
    return "sha256=" + base64.urlsafe_b64encode(hashlib.sha256(data).digest()).decode().rstrip("=")


def make_wheel(out_dir, name, version, files, tag="py3-none-any", wheel_version="1.0",
               record_override=None, extra_members=()):
    """A wheel built by hand: ``files`` {path: bytes or (mode, bytes)} beside a dist-info with
    METADATA, WHEEL, RECORD (``record_override`` {path: row} replaces rows);
    ``extra_members`` [(path, bytes)] are stored but not put in RECORD."""
    di = "%s-%s.dist-info" % (name, version)
    members = [(p, v if isinstance(v, tuple) else (0o644, v)) for p, v in files.items()]
    members.append((di + "/METADATA", (0o644, ("Metadata-Version: 2.1\nName: %s\nVersion: %s\n"
                                               % (name, version)).encode())))
    members.append((di + "/WHEEL", (0o644, ("Wheel-Version: %s\nGenerator: hand\nRoot-Is-Purelib: "
                                            "true\nTag: %s\n" % (wheel_version, tag)).encode())))
    rows = []
    for p, (_, data) in members:
        rows.append([p, _b64(data), str(len(data))])
    rows.append([di + "/RECORD", "", ""])
    for p, row in (record_override or {}).items():
        rows = [row if r[0] == p else r for r in rows]
    buf = io.StringIO()
    csv.writer(buf, lineterminator="\n").writerows(rows)
    members.append((di + "/RECORD", (0o644, buf.getvalue().encode())))
    path = Path(out_dir) / ("%s-%s-%s.whl" % (name, version, tag))
    with zipfile.ZipFile(str(path), "w", zipfile.ZIP_DEFLATED) as z:
        for p, (mode, data) in list(members) + [(p, (0o644, d)) for p, d in extra_members]:
            zi = zipfile.ZipInfo(p, date_time=(2020, 1, 1, 0, 0, 0))
            zi.external_attr = (0o100000 | mode) << 16
            zi.compress_type = zipfile.ZIP_DEFLATED
            z.writestr(zi, data)
    return path


def wheel_item(path, requested=True):
    """A write_archive ``wheels`` item for the wheel file at ``path``."""
    path = Path(path)
    data = path.read_bytes()
    name, version = path.name.split("-")[:2]
    return {"path": str(path), "entry": {
        "name": F.normalize_name(name), "version": version, "filename": path.name,
        "sha256": hashlib.sha256(data).hexdigest(), "size": len(data), "requested": requested,
        "url": "https://files.pythonhosted.org/packages/" + path.name}}


def conda_items(chan, specs):
    """write_archive ``packages`` items for ``specs`` solved in the realistic channel."""
    from tests.factory.fixtures import rattler_solve
    chan = Path(chan)
    recs = rattler_solve(chan, specs)
    by_name = dict((r.name.normalized, r) for r in recs)
    order = ["python"] + sorted(n for n in by_name if n != "python")
    out = []
    for n in order:
        r = by_name[n]
        rd = json.loads((chan / r.subdir / "repodata.json").read_text())
        rec = rd.get("packages.conda", {}).get(r.file_name) or rd["packages"][r.file_name]
        out.append({"path": str(chan / r.subdir / r.file_name),
                    "entry": dict(rec, filename=r.file_name, subdir=r.subdir, channel=chan.as_uri()),
                    "encoding": "conda" if r.file_name.endswith(".conda") else "tar.bz2"})
    return out


def make_archive(chan, out, wheels=(), specs=("python 3.11.*",), entry_points=None):
    entry_points = entry_points or {"python": "python3.11", "sh": "sh -c"}
    return F.write_archive(str(out), "linux-64", conda_items(chan, list(specs)), entry_points, "python",
                           libzstd_path=H.LIBZSTD, requested_specs=list(specs),
                           wheels=[w if isinstance(w, dict) else wheel_item(w) for w in wheels])


def clean_env(**extra):
    env = dict((k, v) for k, v in os.environ.items() if not k.startswith(("PIP_", "PYTHON", "COEX_")))
    env.update(PIP_CONFIG_FILE=os.devnull, PIP_DISABLE_PIP_VERSION_CHECK="1", PIP_NO_INDEX="1",
               PYTHONDONTWRITEBYTECODE="1")
    env.update(extra)
    return env


def pip(prefix, *args):
    """pip 25.0.1 (run from its wheel) by the environment's python: ``prefix/bin/python3.11``."""
    cmd = [str(Path(prefix) / "bin" / "python3.11"), str(fetch("pip-25.0.1-py3-none-any.whl")) + "/pip"]
    return subprocess.run(cmd + list(args), env=clean_env(), stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, timeout=300)


def tree(root, skip=("conda-meta", "coex", "activate.sh")):
    """{relpath: (kind, mode, bytes or link target)} of everything under ``root``."""
    out = {}
    root = str(root)
    for d, dirs, files in os.walk(root):
        rel_d = os.path.relpath(d, root)
        if rel_d.split(os.sep)[0] in skip:
            dirs[:] = []
            continue
        for n in dirs + files:
            p = os.path.join(d, n)
            rel = os.path.normpath(os.path.join(rel_d, n))
            if rel.split(os.sep)[0] in skip:
                continue
            st = os.lstat(p)
            if os.path.islink(p):
                out[rel] = ("link", 0, os.readlink(p))
            elif os.path.isdir(p):
                out[rel] = ("dir", st.st_mode & 0o7777, None)
            else:
                with open(p, "rb") as f:
                    out[rel] = ("file", st.st_mode & 0o7777, f.read())
    return out


def without_installer_row(record):  # type: (bytes) -> bytes
    """A RECORD's bytes without its INSTALLER row (whose hash names the installer)."""
    return b"".join(l for l in record.splitlines(True) if b".dist-info/INSTALLER," not in l)
