"""The runtime's conda installer (stdlib only, CPython 3.6+): the driver of its phases.

    install_env(entries, open_payload, pkgs_dir, staging, final_prefix, ...)   # phases 1-2
    (caller renames staging -> final_prefix)
    finalize_env(final_prefix, entries, requested_specs)                      # phase 3

The prefix is what conda or rattler would create from the same lock (see the oracle in
tests/installer/). The pieces, along rattler's seams:

    extract.py     phase 1, the package cache: missing packages extracted in parallel
    workers.py       ... on forked worker processes (else threads)
    streams.py       ... each streamed from its stored bytes (.conda, .tar.zst, .tar.bz2)
    tar.py           ... through a minimal tar reader
    pkgmeta.py     what a package says of itself (index.json, paths.json) and its validation
    plan.py        phase 2a: where each file goes (noarch python), who wins a clobbered path
    link.py        phase 2b: each file linked or copied, prefix replaced (prefix.py), recorded
    linkscripts.py, noarch.py (.pyc), condameta.py: phase 3
    wheel.py       PyPI wheels: installed at the end of phase 2 (as pip would, after the conda
                   packages), their RECORD written in phase 3 with their .pyc files

``progress``, when given, is called as progress(phase, done, total, name) with phase "extract",
"extract-bytes" (done, total: stored bytes), "link", "compile" (0, the number of .py files)
or "finalize", always in this process; it must be cheap and thread-safe (in the thread
fallback it is called from worker threads).

Every error is an InstallError (LinkScriptError for a failing link script, PackageError for a
package that cannot be extracted) whose message names the package and the file; the staging
directory is removed if install_env created it.

Link scripts: conda runs pre-link scripts before a package's files are linked; here the
environment only exists at its final path after the caller's rename, so finalize_env runs all
pre-link scripts (install order), then compiles .pyc, then runs all post-link scripts (install
order, as conda and rattler do).
"""

import json
import os

from coex_runtime import condameta, noarch, workers
from coex_runtime.errors import InstallError, LinkScriptError
from coex_runtime.extract import extract_all
from coex_runtime.format import Package
from coex_runtime.fs import rmtree
from coex_runtime.link import Linker
from coex_runtime.linkscripts import run_link_script, scripts_of
from coex_runtime.pkgmeta import read_index
from coex_runtime.plan import clobber, plan_package

__all__ = ["install_env", "finalize_env", "InstallError", "LinkScriptError"]
_PENDING = os.path.join("conda-meta", ".coex-pending")


def install_env(entries, open_payload, pkgs_dir, staging, final_prefix, libzstd=None,
                progress=None, requested_specs=(), jobs=None, pending=True, wheels=(),
                open_wheel=None):
    # type: (...) -> dict
    """Phases 1-2. ``entries``: COEX-INFO package dicts in install (topological) order (see
    format.py: filename, sha256, size, encoding, stored_sha256, stored_size and the lock's
    repodata fields). ``open_payload(entry)`` returns a binary file object of the stored bytes
    (called in worker processes or threads, once per package to extract).

    Phase 1: extract every package that is not already in ``pkgs_dir/<stored_sha256>/``
    (content addressed, shared by every archive on the host), verifying the stored bytes'
    sha256 and size while streaming, into a work dir inside pkgs_dir, atomic rename; a mismatch
    or corrupt stream raises PackageError naming the package, leaving nothing marked extracted.

    Phase 2: link every package into ``staging`` (created if missing) with prefix placeholders
    replaced by ``final_prefix`` (where the caller will rename ``staging`` to): hardlinks from
    pkgs_dir when possible, copies otherwise; noarch python; console scripts. Then the PyPI
    ``wheels`` (COEX-INFO ``wheels`` entries, in order; ``open_wheel(entry)`` returns the stored
    wheel's bytes), see wheel.py. What finalize_env needs is returned, and kept in
    ``staging/conda-meta/.coex-pending/`` unless ``pending`` is false (a caller that hands it to
    finalize_env itself).
    """
    entries = list(entries)
    final_prefix = os.path.abspath(final_prefix).rstrip("/") or "/"
    created = not os.path.exists(staging)
    try:
        seen = {}
        pkgdirs = extract_all(entries, open_payload, pkgs_dir, libzstd=libzstd, progress=progress,
                              jobs=jobs, seen=seen)
        return _link_all(entries, pkgdirs, staging, final_prefix, progress, list(requested_specs),
                         seen, pending, list(wheels), open_wheel)
    except BaseException:
        if created:  # nothing half-done: the staging dir is ours, remove it
            rmtree(staging)
        raise


def _link_all(entries, pkgdirs, staging, final_prefix, progress, requested_specs, seen, pending,
              wheels=(), open_wheel=None):
    pyver = noarch.python_version(entries)
    sp = None
    if pyver:
        py = [d for e, d in zip(entries, pkgdirs) if e.get("name") == "python"][0]
        sp = noarch.site_packages(pyver, read_index("python", py))
    plans = [plan_package(e, d, pyver, sp, seen.get(d)) for e, d in zip(entries, pkgdirs)]
    clobber(plans)
    if not os.path.isdir(staging):
        os.makedirs(staging)
    linker = Linker(staging, final_prefix, pyver)
    state = {"pyver": pyver, "site_packages": sp, "requested_specs": requested_specs,
             "packages": []}
    python_key = [Package(e).stored_sha256 for e in entries if e.get("name") == "python"]
    for n, plan in enumerate(plans, 1):
        label = Package(plan.entry).label
        try:
            paths_data = linker.link_package(plan)
            files = [r["_path"] for r in paths_data]
            py, cached, keep, done = [], {}, None, set()
            if plan.noarch_python and sp:
                py = [f for f in files if f.startswith(sp + "/") and f.endswith(".py")]
            if py and python_key and python_key[0]:
                keep, cached, done = _link_cached_pyc(plan, py, python_key[0], linker)
                for pyc in sorted(cached.values()):
                    paths_data.append({"_path": pyc, "path_type": "pyc_file"})
                    files.append(pyc)
        except EnvironmentError as e:
            raise InstallError("%s: cannot link into %s: %s" % (label, staging, e)) from e
        if progress is not None:
            progress("link", n, len(plans), label)
        rec = condameta.make_record(plan.entry, plan.index, files, paths_data, plan.pkgdir,
                                    requested_specs, linker.link_type)
        pre, post = scripts_of(plan.entry["name"], files)
        state["packages"].append({"record": rec, "compile": [f for f in py if f not in done],
                                  "keep_pyc": keep, "pre_link": pre, "post_link": post,
                                  "prelink_messages": prelink_messages(plan.pkgdir)})
    if wheels:
        from coex_runtime import wheel  # (csv, zipfile: only for an environment with wheels)
        python = [e for e in entries if e.get("name") == "python"]
        state["wheels"] = wheel.install_wheels(wheels, open_wheel, staging, final_prefix, state,
                                               python[0] if python else None)
    if pending:
        d = os.path.join(staging, _PENDING)
        os.makedirs(d, exist_ok=True)
        with open(os.path.join(d, "state.json"), "wb") as f:
            f.write(json.dumps(state).encode("utf-8"))
    return state


def _link_cached_pyc(plan, py, python_key, linker):
    # type: (Plan, List[str], str, Linker) -> Tuple[Optional[str], Dict[str, str], Set[str]]
    """(where to keep this package's .pyc once compiled, or None; {py: pyc} of those linked
    from the package cache; the .py not to compile): see noarch.PYC_CACHE. Only for a package
    whose .py files are all its own, unchanged (no prefix placeholder, none another package
    wins)."""
    placeholders = set(t for p, t in zip(plan.paths, plan.targets) if p.get("prefix_placeholder"))
    if any(f in placeholders or f not in plan.owned for f in py):
        return None, {}, set()
    cache_dir = noarch.pyc_cache_dir(plan.pkgdir, python_key)
    cached, failed = noarch.cached_pyc(cache_dir)
    if set(cached) | set(failed) != set(py):  # none kept (or not for these files)
        return (None if cached or failed else cache_dir), {}, set()
    for pyc in sorted(cached.values()):
        linker.link_from(os.path.join(cache_dir, "files", pyc), pyc)
    return None, cached, set(py)


def prelink_messages(pkgdir):  # type: (str) -> str
    """The package's ``info/prelink_messages/*`` (conda shows them before linking), joined."""
    d = os.path.join(pkgdir, "info", "prelink_messages")
    if not os.path.isdir(d):
        return ""
    out = []
    for root, _, names in sorted(os.walk(d)):
        for n in sorted(names):
            with open(os.path.join(root, n), "rb") as f:
                out.append(f.read().decode("utf-8", "replace").rstrip())
    return "\n".join(m for m in out if m)


def finalize_env(prefix, entries, requested_specs=(), progress=None, state=None):
    # type: (str, List[dict], Sequence[str], Optional[Callable], Optional[dict]) -> List[Tuple[str, str]]
    """Phase 3, run by the caller after renaming staging -> prefix: run pre-link scripts, compile
    .pyc for noarch python packages with the environment's own python (noarch.Compiling: several
    processes when there is enough source; meanwhile the records of the other packages are
    made) unless install_env linked them from the package cache (and keep them there for the
    next environment), run post-link scripts (install order, in the activated environment; a
    failing script raises LinkScriptError with its output), write
    conda-meta/<name>-<version>-<build>.json and conda-meta/history.

    Returns the messages for the user, [(package label, text)] in install order: the packages'
    info/prelink_messages and what their link scripts left in ``.messages.txt`` (which is
    removed), for the caller to show as conda prints them. ``state``: what install_env returned
    (else it is read from the prefix)."""
    prefix = os.path.abspath(prefix)
    pending = os.path.join(prefix, _PENDING)
    if state is None:
        try:
            with open(os.path.join(pending, "state.json"), "rb") as f:
                state = json.loads(f.read().decode("utf-8"))
        except (IOError, OSError, ValueError) as e:
            raise InstallError("%s was not prepared by install_env (%s)" % (prefix, e)) from e
    if not requested_specs:
        requested_specs = state.get("requested_specs", ())
    pkgs = state["packages"]

    messages = []

    def tell(p, text):
        if text.strip():
            messages.append((Package(p["record"]).label, text))

    for p in pkgs:
        tell(p, p.get("prelink_messages") or "")
        if p.get("pre_link"):
            tell(p, run_link_script(prefix, p["record"], p["pre_link"], "pre-link"))

    # .pyc: compiled by the environment's python while the other records are made
    wheels = state.get("wheels") or []
    to_compile = [py for p in pkgs + wheels for py in p["compile"]]
    if to_compile and progress is not None:
        progress("compile", 0, len(to_compile), "")
    job = noarch.Compiling(prefix, state["pyver"], to_compile, jobs=workers.cpus()) if to_compile else None
    records = [None] * len(pkgs)  # their bytes, written once the post-link scripts ran
    try:
        for i, p in enumerate(pkgs):
            if not p["compile"]:
                records[i] = condameta.record_bytes(p["record"])
        compiled = job.wait() if job is not None else {}
    finally:
        if job is not None:
            job.kill()
    for i, p in enumerate(pkgs):
        if not p["compile"]:
            continue
        rec = p["record"]
        mine = dict((py, compiled[py]) for py in p["compile"] if py in compiled)
        for pyc in mine.values():
            rec["files"].append(pyc)
            rec["paths_data"]["paths"].append({"_path": pyc, "path_type": "pyc_file"})
        rec["files"].sort(key=condameta.path_key)
        rec["paths_data"]["paths"].sort(key=lambda q: condameta.path_key(q["_path"]))
        records[i] = condameta.record_bytes(rec)
        if p.get("keep_pyc"):
            noarch.keep_pyc(p["keep_pyc"], prefix, p["compile"], mine)

    for i, p in enumerate(pkgs):
        if p.get("post_link"):
            tell(p, run_link_script(prefix, p["record"], p["post_link"], "post-link"))
        if progress is not None:
            progress("finalize", i + 1, len(pkgs), p["record"].get("fn", ""))

    if wheels:
        from coex_runtime import wheel
        wheel.finish_wheels(prefix, wheels, compiled)
    for p, data in zip(pkgs, records):
        condameta.write_record(prefix, p["record"], data)
    condameta.write_history(prefix, [p["record"] for p in pkgs], list(requested_specs))
    if os.path.isdir(pending):
        rmtree(pending)
    return messages
