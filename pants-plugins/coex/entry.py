"""The `coex` command (the wheel's console script, and `python -m coex`).

`coex run SCRIPT [ARGS...]` of a script whose archive is built already execs that archive
before anything else is imported (no argparse, no build library, no py-rattler): it reads the
script's bytes (and those of `SCRIPT.lock` beside it, when there is one), computes the script's
key (`script_key`) and `execv`s `<build cache>/scripts/<key>.coex` with the arguments. The
archive's sh preamble then finds its launcher and execs the interpreter: no solve, no lock
parsed, no build. Anything else (another command, an option the warm path does not know, a
script not built yet) goes to `coex.cli`, which builds the archive and execs it the same way.

The key is what the archive is built from, as the warm path can see it without reading the
header: the coex version, the host (`uname -sm`), the script's name and the sha256 of its bytes,
the sha256 of the lock beside it (if any) and the `--channel`s given. The sh script `coex-run`
(for `#!/usr/bin/env coex-run` shebangs) computes the same key with one `sha256sum`; keep the
two in step (tests/lib/test_script_run.py checks it).

Standard library only, and as little of it as possible: this runs on every `coex run`.
"""
import os
import sys

try:  # CPython's own sha256: hashlib would load OpenSSL's libcrypto first (~2.5 ms)
    from _sha256 import sha256 as _sha256_of
except ImportError:
    try:
        from _sha2 import sha256 as _sha256_of  # (3.12+)
    except ImportError:
        from hashlib import sha256 as _sha256_of

KEY_SCHEMA = "coex-script/1"


def build_cache_root(cache_dir=None, environ=None):
    """Where `./coex` keeps fetched and transcoded packages and script archives:
    `--cache-dir`, else `$XDG_CACHE_HOME/coex-build`, else `~/.cache/coex-build`."""
    if cache_dir:
        return os.path.abspath(cache_dir)
    env = os.environ if environ is None else environ
    base = env.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "coex-build")


def host_tag():
    """This host as `uname -sm` prints it (e.g. `Linux x86_64`)."""
    u = os.uname()
    return "%s %s" % (u.sysname, u.machine)


def _sha256(data):
    return _sha256_of(data).hexdigest()


def script_key(name, script_bytes, lock_bytes=None, channels=(), host=None, version=None):
    """The name of a script's archive in `<build cache>/scripts/`: `<manifest16>-<script32>`
    plus `-<lock32>` when a lock is beside it, where manifest is the sha256 of the lines below
    and script / lock the sha256 of the files' bytes."""
    if version is None:
        from coex import __version__ as version
    manifest = "%s\nversion %s\nhost %s\nname %s\n%s" % (
        KEY_SCHEMA, version, host or host_tag(), name,
        "".join("channel %s\n" % c for c in channels))
    key = _sha256(manifest.encode("utf-8", "surrogateescape"))[:16] + "-" + _sha256(script_bytes)[:32]
    if lock_bytes is not None:
        key += "-" + _sha256(lock_bytes)[:32]
    return key


def key_channel(channel):
    """A `--channel` as the key holds it: an existing path made absolute."""
    return os.path.abspath(channel) if os.path.exists(channel) else channel


def lock_beside(script):
    """The lock kept next to a script (`coex run --lock`)."""
    return script + ".lock"


def read_optional(path):
    try:
        with open(path, "rb") as f:
            return f.read()
    except FileNotFoundError:
        return None


def archive_path(root, key):
    return os.path.join(root, "scripts", key + ".coex")


def touch_used(archive):
    """Record a use of a script's archive (`<key>.used`'s mtime), for `coex gc`."""
    try:
        open(archive[: -len(".coex")] + ".used", "wb").close()
    except OSError:
        pass


def exec_archive(archive, script, args):
    """Record the use and exec the script's archive: `$0` is the archive, `COEX_SCRIPT` the
    script's absolute path (the archive runs its own copy of the script). Raises OSError when
    the archive is not there."""
    os.stat(archive)
    touch_used(archive)
    os.environ["COEX_SCRIPT"] = os.path.abspath(script)
    os.environ["COEX_ARCHIVE"] = archive  # (the preamble sets the same; `gc` sees it sooner)
    import signal  # Python ignores SIGPIPE and SIGXFSZ, and exec keeps ignored signals ignored
    for name in ("SIGPIPE", "SIGXFSZ"):
        if hasattr(signal, name):
            signal.signal(getattr(signal, name), signal.SIG_DFL)
    for stream in (sys.stdout, sys.stderr):
        if stream is not None:
            stream.flush()
    # its sh preamble, as the kernel would run it (`#!/bin/sh`), also where the build cache is
    # on a noexec file system
    os.execv("/bin/sh", ["/bin/sh", archive] + list(args))


def _parse_run(args):
    """(lock, channels, cache_dir, script, script args) of `run`'s arguments in the forms the
    warm path knows; None for anything else (coex.cli parses it)."""
    lock, channels, cache_dir = False, [], None
    i = 0
    while i < len(args):
        a = args[i]
        if a == "--lock":
            lock = True
        elif a in ("-c", "--channel", "--cache-dir") and i + 1 < len(args):
            if a == "--cache-dir":
                cache_dir = args[i + 1]
            else:
                channels.append(args[i + 1])
            i += 1
        elif a.startswith("--channel="):
            channels.append(a.split("=", 1)[1])
        elif a.startswith("--cache-dir="):
            cache_dir = a.split("=", 1)[1]
        elif a in ("-q", "--quiet"):
            pass
        elif a.startswith("-"):
            return None
        else:
            return lock, channels, cache_dir, a, args[i + 1:]
        i += 1
    return None


def warm_run(argv):
    """Exec the archive of `coex run ...` when it is built; return when it is not."""
    if not argv or argv[0] != "run":
        return
    parsed = _parse_run(argv[1:])
    if parsed is None:
        return
    lock, channels, cache_dir, script, args = parsed
    try:
        with open(script, "rb") as f:
            data = f.read()
        lock_bytes = read_optional(lock_beside(script))
    except OSError:
        return
    if lock and lock_bytes is None:
        return  # `--lock` writes it first
    key = script_key(os.path.basename(script), data, lock_bytes,
                     [key_channel(c) for c in channels])
    try:
        exec_archive(archive_path(build_cache_root(cache_dir), key), script, args)
    except OSError:
        return


def main(argv=None):
    argv = sys.argv[1:] if argv is None else list(argv)
    warm_run(argv)
    from coex.cli import main as cli_main
    from coex.lib.errors import exit_process

    exit_process(cli_main(argv))
