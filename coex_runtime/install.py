"""The runtime's conda installer: extract, link, finalize (stdlib only, CPython 3.6+).

    install_env(entries, open_payload, pkgs_dir, staging, final_prefix, ...)   # phases 1-2
    (caller renames staging -> final_prefix)
    finalize_env(final_prefix, entries, requested_specs)                      # phase 3

The prefix is what conda or rattler would create from the same lock (see the oracle in
tests/installer/): paths.json driven linking (or old info/files + info/has_prefix), text and
NUL-padded binary prefix replacement, long shebangs, noarch python (site-packages, scripts,
entry points, .pyc), pre-/post-link scripts, conda-meta records and history.

Speed: the missing packages are extracted by forked worker processes, biggest first, at most
`jobs` (default: min(4, usable CPUs)) at once, each with its own interpreter lock; a worker's
error comes back as an InstallError naming the package (threads of this process are used
instead when os.fork is missing or another thread runs, see can_fork). Linking runs in one
thread (measured faster than threads or workers); .pyc compile in several processes of the
environment's python when there is enough source (noarch.compile_pyc).

`progress`, when given, is called as progress(phase, done, total, name) with phase "extract",
"link" or "finalize", always in this process; it must be cheap and thread-safe (in the thread
fallback it is called from worker threads).

Every error is an InstallError (LinkScriptError for a failing link script) whose message
names the package and the file; the staging directory is removed if install_env created it.

Link scripts: conda runs pre-link scripts before a package's files are linked; here the
environment only exists at its final path after the caller's rename, so finalize_env runs all
pre-link scripts (install order), then compiles .pyc, then runs all post-link scripts (install
order, as conda and rattler do), each with PREFIX, PKG_NAME, PKG_VERSION, PKG_BUILDNUM.
"""

import errno
import json
import os
import stat
import subprocess
import sys
import threading

from coex_runtime import condameta, extract, noarch, prefix as prefixmod
from coex_runtime.errors import CoexFailure, InstallError, LinkScriptError, by_name, os_errno
from coex_runtime.format import Package
from coex_runtime.fs import copy_hashed, remove, safe_relpath, write_all

_PENDING = os.path.join("conda-meta", ".coex-pending")


def _cpus():
    """CPUs this process may run on (a container's CPU set), else the machine's count."""
    try:
        return len(os.sched_getaffinity(0)) or 1
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def _jobs(jobs, n):
    if jobs is None:
        jobs = min(4, _cpus())
    return max(1, min(int(jobs), max(1, n)))


def _pmap(fn, items, jobs):
    """[fn(x) for x in items] on `jobs` threads; the first exception (in item order) is
    raised after every started job finished."""
    items = list(items)
    if jobs <= 1 or len(items) <= 1:
        return [fn(x) for x in items]
    results = [None] * len(items)
    errors = [None] * len(items)
    lock = threading.Lock()
    nxt = [0]
    failed = [False]

    def worker():
        while True:
            with lock:
                if nxt[0] >= len(items) or failed[0]:
                    return
                i = nxt[0]
                nxt[0] += 1
            try:
                results[i] = fn(items[i])
            except BaseException as e:  # noqa: B902 - re-raised in the caller's thread
                errors[i] = e
                with lock:
                    failed[0] = True
    threads = [threading.Thread(target=worker, name="coex-install-%d" % k) for k in range(jobs)]
    for t in threads:
        t.daemon = True
        t.start()
    for t in threads:
        t.join()
    for e in errors:
        if e is not None:
            raise e
    return results


# ---------------------------------------------------------------------------------------------
# worker processes

# None: fork when it is safe (os.fork exists and this process runs no other thread);
# False: never (threads in this process instead); True: whenever os.fork exists (tests).
FORK = None


def can_fork():
    if not hasattr(os, "fork") or FORK is False:
        return False
    if FORK:
        return True
    # a child forked while another thread holds a lock (stdio, logging, ...) could deadlock
    return threading.active_count() == 1


class _Terminated(BaseException):
    """SIGTERM in a worker process: unwinds it so its temp dirs are removed."""


def _on_sigterm(signum, frame):
    raise _Terminated("terminated")


def _fork_map(fn, items, jobs, on_done=None, name=str):
    """[fn(x) for x in items] in forked worker processes, at most `jobs` at a time, items
    started in the given order. fn's return value travels back as JSON; an exception in a
    worker comes back as an InstallError with its message (the first in item order is raised
    after every worker finished). on_done(k, result) runs in this process as item k
    finishes; name(item) names it when its worker dies without a word. Each process has its
    own interpreter lock, so the Python code of different items runs at the same time too."""
    import select
    import signal
    items = list(items)
    results = [None] * len(items)
    errors = [None] * len(items)
    running = {}  # read fd -> [k, pid, chunks]
    nxt = 0
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()  # or a child might write the same buffered bytes again
        except Exception:  # noqa: B902 - a closed or odd stream is not our problem here
            pass
    try:
        while running or (nxt < len(items) and not any(errors)):
            while nxt < len(items) and len(running) < jobs and not any(errors):
                r, w = os.pipe()
                pid = os.fork()
                if pid == 0:  # the worker: never returns
                    code = 1
                    try:
                        os.close(r)
                        signal.signal(signal.SIGTERM, _on_sigterm)
                        try:
                            msg = {"ok": fn(items[nxt])}
                            code = 0
                        except CoexFailure as e:
                            msg = {"error": str(e), "type": type(e).__name__, "errno": os_errno(e)}
                        except BaseException as e:  # noqa: B902 - reported by the parent
                            import traceback
                            msg = {"error": "%s: %s\n%s" % (type(e).__name__, e,
                                                             traceback.format_exc()),
                                   "errno": os_errno(e)}
                        data = json.dumps(msg).encode("utf-8")
                        while data:
                            data = data[os.write(w, data):]
                    finally:
                        os._exit(code)
                os.close(w)
                running[r] = [nxt, pid, []]
                nxt += 1
            ready = select.select(list(running), [], [])[0]
            for r in ready:
                chunk = os.read(r, 65536)
                if chunk:
                    running[r][2].append(chunk)
                    continue
                k, pid, chunks = running.pop(r)
                os.close(r)
                status = _waitpid(pid)
                try:
                    msg = json.loads(b"".join(chunks).decode("utf-8"))
                except ValueError:
                    msg = {}
                if "ok" in msg and status in (0, None):
                    results[k] = msg["ok"]
                    if on_done is not None:
                        on_done(k, results[k])
                elif msg.get("error"):
                    errors[k] = by_name(msg.get("type", ""))(msg["error"])
                    errors[k].errno = msg.get("errno")
                else:
                    errors[k] = InstallError("%s: %s" % (name(items[k]), _died(status)))
    finally:
        for r, (k, pid, chunks) in list(running.items()):  # only when this process failed
            try:
                os.kill(pid, signal.SIGTERM)
            except OSError:
                pass
            _waitpid(pid)
            os.close(r)
    for e in errors:
        if e is not None:
            raise e
    return results


def _waitpid(pid):
    """The worker's exit status; None when it cannot be known (SIGCHLD ignored: the kernel
    reaped it, and its message alone tells how it went)."""
    while True:
        try:
            return os.waitpid(pid, 0)[1]
        except OSError as e:
            if e.errno == errno.ECHILD:
                return None
            if e.errno != errno.EINTR:  # 3.5+ retries EINTR itself
                raise


def _died(status):
    if status is None:
        return "the worker process ended without a result"
    if os.WIFSIGNALED(status):
        return "the worker process was killed by signal %d" % os.WTERMSIG(status)
    return "the worker process exited with status %d without a result" % (
        os.WEXITSTATUS(status) if os.WIFEXITED(status) else status)


# ---------------------------------------------------------------------------------------------
# phase 1


def extract_all(entries, open_payload, pkgs_dir, libzstd=None, progress=None, jobs=None):
    """pkgs_dir/<stored sha256>/ for each entry, extracting the missing ones in parallel:
    in forked worker processes when possible (see can_fork), else in threads."""
    if not os.path.isdir(pkgs_dir):
        os.makedirs(pkgs_dir, exist_ok=True)
    total = len(entries)
    done = [0]
    lock = threading.Lock()

    def report(entry):
        if progress is not None:
            with lock:
                done[0] += 1
                n = done[0]
            progress("extract", n, total, Package(entry).label)

    def one(entry):
        try:
            return extract.extract_to_cache(entry, open_payload, pkgs_dir, libzstd=libzstd)
        except EnvironmentError as e:
            raise InstallError("%s: cannot extract into %s: %s" % (Package(entry).label, pkgs_dir, e)) from e

    out = [None] * total
    todo = []
    for i, e in enumerate(entries):
        d = os.path.join(pkgs_dir, Package(e).stored_sha256)
        if os.path.isdir(d) and extract.cached_package_intact(d):
            out[i] = d
            report(e)
        else:
            todo.append(i)
    # biggest first: the longest job should not start last
    todo.sort(key=lambda i: -(Package(entries[i]).stored_size or 0))
    jobs = _jobs(jobs, len(todo))
    if jobs > 1 and can_fork():
        def done_one(k, d):
            report(entries[todo[k]])
        dirs = _fork_map(lambda i: one(entries[i]), todo, jobs, done_one,
                         name=lambda i: "%s (extracting into %s)" % (Package(entries[i]).label, pkgs_dir))
    else:
        def threaded(i):
            d = one(entries[i])
            report(entries[i])
            return d
        dirs = _pmap(threaded, todo, jobs)
    for i, d in zip(todo, dirs):
        out[i] = d
    return out


# ---------------------------------------------------------------------------------------------
# phase 2


class _Plan(object):
    """What one package puts into the prefix."""

    def __init__(self, entry, pkgdir, index, paths, targets, entry_points, noarch_python):
        self.entry = entry
        self.pkgdir = pkgdir
        self.index = index
        self.paths = paths              # paths.json-shaped dicts (source-relative _path)
        self.targets = targets          # prefix-relative target of each path
        self.entry_points = entry_points  # [(name, module, func)]
        self.noarch_python = noarch_python
        self.owned = None               # set of targets this package wins (clobbering)


def _read_index(pkg, pkgdir):
    p = os.path.join(pkgdir, "info", "index.json")
    try:
        with open(p, "rb") as f:
            return json.loads(f.read().decode("utf-8"))
    except (IOError, OSError, ValueError) as e:
        raise InstallError("%s: cannot read info/index.json (%s)" % (pkg, e)) from e


def plan_package(entry, pkgdir, pyver, sp=None):
    pkg = Package(entry).label
    index = _read_index(pkg, pkgdir)
    try:
        paths = extract.read_paths(pkg, pkgdir)
    except ValueError as e:
        raise InstallError("%s: %s" % (pkg, e)) from e
    is_np = noarch.is_noarch_python(entry, index)
    if is_np and not pyver:
        raise InstallError("%s is a noarch: python package, but the environment has no python "
                           "package to install it for; add python to the lock" % pkg)
    targets = []
    for p in paths:
        rel = safe_relpath(p["_path"])
        if rel is None:
            raise InstallError("%s: info/paths.json lists %r, which escapes the environment; "
                               "refusing to install it" % (pkg, p["_path"]))
        p["_path"] = rel
        targets.append(noarch.target_path(rel, sp) if is_np else rel)
    eps = []
    if is_np:
        eps = noarch.read_entry_points(pkg, pkgdir)
    return _Plan(entry, pkgdir, index, paths, targets, eps, is_np)


def _mkparent(staging, rel, made, lock):
    parent = os.path.dirname(rel)
    if not parent or parent in made:
        return
    full = os.path.join(staging, parent)
    try:
        os.makedirs(full)
    except OSError as e:
        if e.errno != errno.EEXIST:
            raise
        if not os.path.isdir(full):
            raise InstallError("cannot create directory %s: a file of that name is in the way"
                               % parent)
    with lock:
        made.add(parent)


def _copy_file(src, dst, mode, data=None, keep_mtime=True):
    """Copy src -> dst (or write `data`), mode `mode` (the umask applies)."""
    fd = os.open(dst, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        if data is not None:
            write_all(fd, data)
        else:
            with open(src, "rb") as f:
                sfd = f.fileno()
                size = os.fstat(sfd).st_size
                done = 0
                sendfile = getattr(os, "sendfile", None)
                if sendfile is not None:
                    try:
                        while done < size:
                            k = sendfile(fd, sfd, done, min(size - done, 1 << 30))
                            if k == 0:
                                break
                            done += k
                    except OSError:
                        done = -1
                if done != size:
                    f.seek(0)
                    os.lseek(fd, 0, 0)
                    os.ftruncate(fd, 0)
                    copy_hashed(f, lambda block: write_all(fd, block))
            if keep_mtime:
                st = os.stat(src)
                os.utime(fd if os.utime in os.supports_fd else dst, ns=(st.st_atime_ns, st.st_mtime_ns))
    finally:
        os.close(fd)


def _sha256(data):
    import hashlib
    return hashlib.sha256(data).hexdigest()


def link_package(plan, staging, final_prefix, pyver, made, lock, can_hardlink):
    """Put one package's files into `staging` (which becomes `final_prefix`).
    Returns (files, paths_data) for its conda-meta record."""
    entry, pkgdir = plan.entry, plan.pkgdir
    pkg = Package(entry).label
    new_prefix = final_prefix.encode("utf-8")
    files = []
    paths_data = []
    link_kinds = set()
    for p, target in zip(plan.paths, plan.targets):
        src = os.path.join(pkgdir, p["_path"])
        dst = os.path.join(staging, target)
        pt = p.get("path_type", "hardlink")
        rec = {"_path": target, "path_type": pt}
        if pt == "directory":
            if target in plan.owned:
                full = dst
                if not os.path.isdir(full):
                    os.makedirs(full, exist_ok=True)
            paths_data.append(rec)
            files.append(target)
            continue
        owned = target in plan.owned
        if owned:
            _mkparent(staging, target, made, lock)
        try:
            st = os.lstat(src)
        except OSError as e:
            raise InstallError("%s: info/paths.json lists %s, but the package does not contain "
                               "it" % (pkg, p["_path"])) from e
        if pt == "softlink" or stat.S_ISLNK(st.st_mode):
            if not stat.S_ISLNK(st.st_mode):
                raise InstallError("%s: info/paths.json lists %s as a softlink, but it is a "
                                   "regular file in the package" % (pkg, p["_path"]))
            link_target = os.readlink(src)
            extract.check_link_target(pkg, target, link_target)
            if owned:
                remove(dst)
                os.symlink(link_target, dst)
            rec["path_type"] = "softlink"
            # as rattler: the digest and size of the link's target path
            target_bytes = link_target.encode("utf-8", "surrogateescape")
            digest = _sha256(target_bytes)
            if p.get("sha256"):
                rec["sha256"] = p["sha256"]
            if p.get("sha256") != digest:
                rec["sha256_in_prefix"] = digest
            rec["size_in_bytes"] = len(target_bytes)
            paths_data.append(rec)
            files.append(target)
            link_kinds.add(condameta.LINK_TYPE_SOFTLINK)
            continue
        if not stat.S_ISREG(st.st_mode):
            raise InstallError("%s: %s is not a regular file" % (pkg, p["_path"]))
        placeholder = p.get("prefix_placeholder")
        mode = p.get("file_mode") or ("text" if placeholder else None)
        if mode not in (None, "text", "binary"):
            raise InstallError("%s: info/paths.json gives %s the unknown file_mode %r (known: "
                               "text, binary)" % (pkg, p["_path"], mode))
        if p.get("sha256"):
            rec["sha256"] = p["sha256"]
        rec["size_in_bytes"] = p.get("size_in_bytes", st.st_size)
        if placeholder:
            rec["file_mode"] = mode
            rec["prefix_placeholder"] = placeholder
        if p.get("no_link"):
            rec["no_link"] = True
        if not owned:
            paths_data.append(rec)
            files.append(target)
            continue
        fmode = stat.S_IMODE(st.st_mode) & 0o777 & ~0o002
        if placeholder:
            with open(src, "rb") as f:
                data = f.read()
            ph = placeholder.encode("utf-8")
            if mode == "binary":
                new = prefixmod.replace_binary(data, ph, new_prefix, "%s: %s" % (pkg, target))
            else:
                new = prefixmod.replace_text(data, ph, new_prefix)
            remove(dst)
            _copy_file(None, dst, fmode, data=new, keep_mtime=False)
            # as rattler: the digest and size of the file as written into the prefix
            rec["sha256_in_prefix"] = _sha256(new)
            rec["size_in_bytes"] = len(new)
            link_kinds.add(condameta.LINK_TYPE_COPY)
        elif p.get("no_link") or not can_hardlink[0]:
            remove(dst)
            _copy_file(src, dst, fmode)
            link_kinds.add(condameta.LINK_TYPE_COPY)
        else:
            try:
                os.link(src, dst)
            except OSError as e:
                if e.errno == errno.EEXIST:
                    remove(dst)
                    os.link(src, dst)
                elif e.errno in (errno.EXDEV, errno.EPERM, errno.EMLINK, errno.EACCES,
                                 errno.ENOTSUP if hasattr(errno, "ENOTSUP") else errno.EPERM):
                    if e.errno == errno.EXDEV:
                        can_hardlink[0] = False
                    _copy_file(src, dst, fmode)
                    link_kinds.add(condameta.LINK_TYPE_COPY)
                else:
                    raise
        paths_data.append(rec)
        files.append(target)

    for name, module, func in plan.entry_points:
        target = "bin/" + name
        data = noarch.entry_point_script(final_prefix, pyver, module, func)
        if target in plan.owned:
            dst = os.path.join(staging, target)
            _mkparent(staging, target, made, lock)
            remove(dst)
            _copy_file(None, dst, 0o755, data=data, keep_mtime=False)
        paths_data.append({"_path": target, "path_type": "unix_python_entry_point",
                           "sha256": _sha256(data), "size_in_bytes": len(data)})
        files.append(target)
    return files, paths_data


def install_env(entries, open_payload, pkgs_dir, staging, final_prefix, libzstd=None,
                progress=None, requested_specs=(), jobs=None):
    """Phases 1-2. `entries`: COEX-INFO package dicts in install (topological) order (see
    coex_runtime/format.py: filename, sha256, size, encoding, stored_sha256, stored_size and
    the lock's repodata fields). `open_payload(entry)` returns a binary file object of the
    stored bytes (it is called from worker threads, one call per package to extract).

    Phase 1: extract every package that is not already in `pkgs_dir/<stored_sha256>/`
    (content addressed, shared by every archive on the host), verifying the stored bytes'
    sha256 and size while streaming, into a temp dir inside pkgs_dir, atomic rename; a mismatch
    or corrupt stream raises InstallError naming the package, leaving nothing marked extracted.

    Phase 2: link every package into `staging` (created if missing) with prefix placeholders
    replaced by `final_prefix` (where the caller will rename `staging` to): hardlinks from
    pkgs_dir when possible, copies otherwise; noarch python; console scripts. What
    finalize_env needs is kept in `staging/conda-meta/.coex-pending/`.
    """
    entries = list(entries)
    final_prefix = os.path.abspath(final_prefix).rstrip("/") or "/"
    created = not os.path.exists(staging)
    try:
        return _install_env(entries, open_payload, pkgs_dir, staging, final_prefix, libzstd,
                            progress, requested_specs, jobs)
    except BaseException:
        if created:  # nothing half-done: the staging dir is ours, remove it
            import shutil
            shutil.rmtree(staging, ignore_errors=True)
        raise


def _install_env(entries, open_payload, pkgs_dir, staging, final_prefix, libzstd, progress,
                 requested_specs, jobs):
    pkgdirs = extract_all(entries, open_payload, pkgs_dir, libzstd=libzstd, progress=progress,
                          jobs=jobs)
    pyver = noarch.python_version(entries)
    sp = None
    if pyver:
        py = [d for e, d in zip(entries, pkgdirs) if e.get("name") == "python"][0]
        sp = noarch.site_packages(pyver, _read_index("python", py))
    plans = [plan_package(e, d, pyver, sp) for e, d in zip(entries, pkgdirs)]

    # clobbering: when two packages ship the same path, the later one (install order) wins
    owner = {}
    for i, plan in enumerate(plans):
        for t in plan.targets:
            owner[t] = i
        for name, _, _ in plan.entry_points:
            owner["bin/" + name] = i
    for i, plan in enumerate(plans):
        plan.owned = set(t for t, j in owner.items() if j == i)

    if not os.path.isdir(staging):
        os.makedirs(staging)
    made = set()
    lock = threading.Lock()
    can_hardlink = [True]
    total = len(plans)
    done = [0]

    def one(plan):
        try:
            result = link_package(plan, staging, final_prefix, pyver, made, lock, can_hardlink)
        except InstallError:
            raise
        except EnvironmentError as e:
            raise InstallError("%s: cannot link into %s: %s" % (Package(plan.entry).label, staging, e)) from e
        if progress is not None:
            with lock:
                done[0] += 1
                n = done[0]
            progress("link", n, total, Package(plan.entry).label)
        return result

    # one thread: linking is a few syscalls per file, and threads (or forked workers, with
    # their results sent back) were measured slower on the realistic environment
    results = [one(plan) for plan in plans]

    pending = os.path.join(staging, _PENDING)
    os.makedirs(pending, exist_ok=True)
    state = {"pyver": pyver, "site_packages": sp, "requested_specs": list(requested_specs),
             "packages": []}
    for plan, (files, paths_data) in zip(plans, results):
        rec = condameta.make_record(plan.entry, plan.index, files, paths_data, plan.pkgdir,
                                    list(requested_specs))
        py = []
        if plan.noarch_python and sp:
            py = [f for f in files if f.startswith(sp + "/") and f.endswith(".py")]
        name = plan.entry["name"]
        state["packages"].append({
            "record": rec,
            "compile": py,
            "pre_link": "bin/.%s-pre-link.sh" % name if "bin/.%s-pre-link.sh" % name in files else None,
            "post_link": "bin/.%s-post-link.sh" % name if "bin/.%s-post-link.sh" % name in files else None,
        })
    with open(os.path.join(pending, "state.json"), "wb") as f:
        f.write(json.dumps(state).encode("utf-8"))
    return state


# ---------------------------------------------------------------------------------------------
# phase 3


def _shell():
    for sh in ("/bin/bash", "/usr/bin/bash", "/bin/sh"):
        if os.path.exists(sh):
            return sh
    return "sh"


def run_link_script(prefix, record, script_rel, action):
    script = os.path.join(prefix, script_rel)
    env = dict(os.environ)
    env.update({
        "PREFIX": prefix,
        "PKG_NAME": record["name"],
        "PKG_VERSION": str(record["version"]),
        "PKG_BUILDNUM": str(record.get("build_number", 0)),
        "ROOT_PREFIX": prefix,
        "CONDA_PREFIX": prefix,
        "PATH": os.path.join(prefix, "bin") + os.pathsep + env.get("PATH", ""),
    })
    try:
        proc = subprocess.Popen([_shell(), "-x", script], cwd=prefix, env=env,
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    except OSError as e:
        raise LinkScriptError("cannot run the %s script of %s (%s): %s"
                              % (action, record["name"], script_rel, e)) from e
    out = proc.communicate()[0]
    if proc.returncode != 0:
        raise LinkScriptError(
            "the %s script of %s-%s-%s (%s) failed with exit status %s; the environment was "
            "not installed. Its output:\n%s" % (
                action, record["name"], record["version"], record["build"], script_rel,
                proc.returncode, out.decode("utf-8", "replace").rstrip()))
    return out


def finalize_env(prefix, entries, requested_specs=(), progress=None):
    """Phase 3, run by the caller after renaming staging -> prefix: run pre-link scripts, compile
    .pyc for noarch python packages with the environment's own python (noarch.compile_pyc: several
    processes when there is enough source), run post-link scripts (install order; a failing
    script raises LinkScriptError with its output), write conda-meta/<name>-<version>-<build>.json
    and conda-meta/history."""
    prefix = os.path.abspath(prefix)
    pending = os.path.join(prefix, _PENDING)
    try:
        with open(os.path.join(pending, "state.json"), "rb") as f:
            state = json.loads(f.read().decode("utf-8"))
    except (IOError, OSError, ValueError) as e:
        raise InstallError("%s was not prepared by install_env (%s)" % (prefix, e)) from e
    pyver = state["pyver"]
    if not requested_specs:
        requested_specs = state.get("requested_specs", ())
    pkgs = state["packages"]

    for p in pkgs:
        if p.get("pre_link"):
            run_link_script(prefix, p["record"], p["pre_link"], "pre-link")

    to_compile = []
    for p in pkgs:
        to_compile.extend(p["compile"])
    if to_compile:
        compiled = noarch.compile_pyc(prefix, pyver, to_compile, jobs=_cpus())
        for p in pkgs:
            rec = p["record"]
            for py in p["compile"]:
                pyc = compiled.get(py)
                if pyc:
                    rec["files"].append(pyc)
                    rec["paths_data"]["paths"].append({"_path": pyc, "path_type": "pyc_file"})
            rec["files"].sort(key=condameta.path_key)
            rec["paths_data"]["paths"].sort(key=lambda q: condameta.path_key(q["_path"]))

    for i, p in enumerate(pkgs):
        if p.get("post_link"):
            run_link_script(prefix, p["record"], p["post_link"], "post-link")
        if progress is not None:
            progress("finalize", i + 1, len(pkgs), p["record"].get("fn", ""))

    for p in pkgs:
        condameta.write_record(prefix, p["record"])
    condameta.write_history(prefix, [p["record"] for p in pkgs], list(requested_specs))
    import shutil
    shutil.rmtree(pending, ignore_errors=True)
