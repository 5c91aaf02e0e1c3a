"""Archives over the tiny channel for the runtime tests (cache, launch, tools).

``make_archive(channel, out, names=..., entry_points=..., app=..., ...)`` writes a .coex with
``coex_runtime.format.write_archive`` from the channel's repodata (packages in dependency order),
the host's libzstd as the archive's libzstd, and an app layer from ``app`` ({relpath: text or
(mode, text)}).  ``run(archive, *args, root=..., python=..., env=...)`` runs it like a user would
(``./app.coex``) with a private cache root.
"""
import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from coex_runtime import cache as C
from coex_runtime import format as F

PYENV = "/root/.pyenv/versions"
#: every host CPython the runtime must support
PYTHONS = {
    "3.6": PYENV + "/3.6.15/bin/python3.6",
    "3.7": PYENV + "/3.7.16/bin/python3.7",
    "3.8": PYENV + "/3.8.18/bin/python3.8",
    "3.9": PYENV + "/3.9.18/bin/python3.9",
    "3.10": PYENV + "/3.10.13/bin/python3.10",
    "3.11": PYENV + "/3.11.7/bin/python3.11",
    "3.12": PYENV + "/3.12.1/bin/python3.12",
    "3.13": PYENV + "/3.13.0/bin/python3.13",
}
HOST_PY = PYTHONS["3.11"]
LIBZSTD = os.path.realpath("/usr/lib/x86_64-linux-gnu/libzstd.so.1")

# install order (dependencies first) of the tiny channel's linux-64 packages
ORDER = ["libtiny", "python", "prefixprog", "oldstyle", "tinypy", "zstd"]
PINS = {"libtiny": "1.0"}


def channel_entries(channel_path, names, subdir="linux-64"):
    """[(path, lock entry)] for ``names`` (in ORDER), from the channel's repodata."""
    recs = {}
    for sd in (subdir, "noarch"):
        rd = json.loads((Path(channel_path) / sd / "repodata.json").read_text())
        for key in ("packages", "packages.conda"):
            for fn, rec in rd.get(key, {}).items():
                if rec["name"] in names and PINS.get(rec["name"], rec["version"]) == rec["version"]:
                    rec = dict(rec, filename=fn, subdir=sd)
                    rec.setdefault("channel", Path(channel_path).as_uri())
                    recs[rec["name"]] = (Path(channel_path) / sd / fn, rec)
    missing = [n for n in names if n not in recs]
    assert not missing, "not in the channel: %s" % missing
    order = [n for n in ORDER if n in names] + [n for n in names if n not in ORDER]
    return [recs[n] for n in order]


def custom_package(out_dir, name, files, version="1.0", depends=(), subdir="linux-64"):
    """(path, lock entry) of a small package built from {relpath: bytes/str/("exec", ...)}."""
    from tests.factory.condapkg import PackageMeta, build_from_files
    import hashlib
    meta = PackageMeta(name=name, version=version, build="h0_0", subdir=subdir, depends=list(depends))
    path = build_from_files(files, Path(out_dir) / subdir, meta, fmt="conda")
    data = path.read_bytes()
    entry = dict(meta.index_json(), filename=path.name, sha256=hashlib.sha256(data).hexdigest(),
                 size=len(data), channel="file://" + str(out_dir))
    return path, entry


def make_archive(channel_path, out, names=("libtiny", "python", "prefixprog", "tinypy"),
                 entry_points=None, default=None, app=None, env=None, virtual_packages=(),
                 subdir="linux-64", libzstd=True, platform=None, extra=()):
    """``extra``: [(path, entry)] of custom packages appended after the channel's."""
    out = Path(out)
    work = out.parent / (out.name + ".src")
    app = {"src/main.py": "import sys, os\nprint('main ok', sys.argv[1:])\n",
           "src/run.sh": (0o755, "#!/bin/sh\necho \"run.sh ok $*\"\n")} if app is None else app
    app_files = []
    for rel, spec in sorted(app.items()):
        mode, text = spec if isinstance(spec, tuple) else (0o644, spec)
        p = work / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(text)
        os.chmod(str(p), mode)
        app_files.append((rel, str(p)))
    if entry_points is None:
        entry_points = {"prefixprog": "prefixprog", "python": "python", "main": "python src/main.py",
                        "run": "src/run.sh -v", "tinypy": "tinypy.cli:main",
                        "fail": "tinypy.cli:fail", "sh": "sh -c"}
        default = default or "prefixprog"
    pkgs = []
    for path, rec in channel_entries(channel_path, list(names), subdir) + list(extra):
        enc = "conda" if rec["filename"].endswith(".conda") else "tar.bz2"
        pkgs.append({"path": str(path), "entry": rec, "encoding": enc})
    info = F.write_archive(str(out), platform or subdir, pkgs, entry_points, default,
                           app_files=app_files, libzstd_path=LIBZSTD if libzstd else None,
                           env=env, requested_specs=list(names) + [e["name"] for _, e in extra],
                           virtual_packages=virtual_packages)
    return info


def base_env(root, python=HOST_PY, **extra):
    env = {"PATH": os.path.dirname(python) + ":/usr/bin:/bin", "HOME": str(Path(root).parent),
           "COEX_ROOT": str(root), "COEX_PYTHON": python, "LANG": "C.UTF-8"}
    env.update({k: str(v) for k, v in extra.items() if v is not None})
    return env


def run(archive, *args, root, python=HOST_PY, env=None, argv0=None, timeout=60, **kw):
    e = base_env(root, python)
    e.update(env or {})
    e = {k: v for k, v in e.items() if v is not None}
    cmd = [str(argv0 or archive)] + [str(a) for a in args]
    return subprocess.run(cmd, env=e, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          timeout=timeout, **kw)


def text(r):
    return r.stdout.decode() + r.stderr.decode()


def member_offset(archive, member):
    """Absolute offset of a stored member's data inside the archive file."""
    import struct
    import zipfile
    with zipfile.ZipFile(str(archive)) as zf:
        zi = zf.getinfo(member)
    with open(str(archive), "rb") as f:
        f.seek(zi.header_offset)
        h = f.read(30)
    n, x = struct.unpack("<HH", h[26:30])
    return zi.header_offset + 30 + n + x, zi.compress_size


def flip_byte(archive, member, at=None):
    off, size = member_offset(archive, member)
    at = size // 2 if at is None else at
    with open(str(archive), "r+b") as f:
        f.seek(off + at)
        b = f.read(1)
        f.seek(off + at)
        f.write(bytes([b[0] ^ 0xFF]))


def ids(info):
    """(archive id16, env16, app16) of a record returned by make_archive."""
    app = F.short_id(info["app"]["digest"]) if info.get("app") else None
    return F.short_id(F.archive_id(F.dump_json(info))), C.env_dir_name(info["env_id"]), app


def prefix_of(root, info):
    """Where the environment of the archive ``info`` is installed under the cache ``root``."""
    return os.path.join(str(root), "envs", ids(info)[1])


def no_python_path(d):
    """A directory with sh and a few tools but no python, for a Python-free PATH."""
    d = str(d)
    os.makedirs(d, exist_ok=True)
    for tool in ("sh", "id", "env", "cat", "sleep", "echo", "true", "pwd"):
        src = shutil.which(tool)
        if src and not os.path.exists(os.path.join(d, tool)):
            os.symlink(src, os.path.join(d, tool))
    return d


def tmpfs(mnt, options):
    """Mount a tmpfs with ``options`` on the new directory ``mnt`` (skip where we may not);
    the caller unmounts it."""
    mnt.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(mnt)],
                      stderr=subprocess.DEVNULL).returncode != 0:
        pytest.skip("cannot mount a tmpfs (%s) here" % options)
    return mnt


def sh(cmd, env, cwd=None, timeout=60):
    """Run a shell command line (for redirections and `sh -u archive`)."""
    return subprocess.run(["/bin/sh", "-c", cmd], env=env, cwd=cwd, stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, timeout=timeout)


class Barrier(object):
    """A fault-injection point the test controls (COEX_FAULT=<point>:<fifo>): ``env`` is the
    variable's value, ``wait(proc)`` returns once a process reached the point (it blocks
    there, and so does any other arriving before the release), ``release()`` lets them go on.
    Waits for events, never for a guessed time."""

    def __init__(self, tmp_path, point):
        self.path = str(tmp_path / ("barrier-" + point))
        os.mkfifo(self.path)
        self.env = "%s:%s" % (point, self.path)
        self.fd = None

    def wait(self, proc, timeout=120):
        import errno
        import time
        deadline = time.time() + timeout
        while self.fd is None:
            try:
                self.fd = os.open(self.path, os.O_WRONLY | os.O_NONBLOCK)
            except OSError as e:
                if e.errno != errno.ENXIO:
                    raise
                if proc.poll() is not None:
                    raise AssertionError("the process ended before the point: %r" % (proc.communicate(),))
                assert time.time() < deadline, "the point was not reached"
                time.sleep(0.005)

    def release(self):
        """Let the process(es) at the point go on, and every later arrival pass (the FIFO
        becomes an empty file)."""
        if os.path.exists(self.path) and not os.path.isfile(self.path):
            os.unlink(self.path)
            open(self.path, "wb").close()
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None


def children(pid):
    """The pids of ``pid``'s live children."""
    out = []
    for n in os.listdir("/proc"):
        if n.isdigit():
            try:
                with open("/proc/%s/stat" % n) as f:
                    fields = f.read().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == pid and fields[0] != "Z":
                out.append(int(n))
    return out


def comm(pid):
    """The command name of ``pid`` ("" once it is gone)."""
    try:
        with open("/proc/%d/comm" % pid) as f:
            return f.read().strip()
    except OSError:
        return ""


def alive(pid):
    """True while ``pid`` runs (a zombie is not running)."""
    try:
        with open("/proc/%d/stat" % pid) as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def debris(root):
    """What killed runs may leave in a cache: work dirs and trash, environments without marker."""
    root = str(root)
    envs = os.path.join(root, "envs")
    return (sorted(os.listdir(os.path.join(root, "tmp"))) + sorted(
        n for n in os.listdir(os.path.join(root, "pkgs")) if n.startswith(".tmp-")) + sorted(
        n for n in (os.listdir(envs) if os.path.isdir(envs) else [])
        if not n.endswith(".lock") and not os.path.exists(os.path.join(envs, n, ".coex-ready"))))
