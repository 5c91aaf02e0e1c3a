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
"link" or "finalize", always in this process; it must be cheap and thread-safe (in the thread
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

from coex_runtime import condameta, noarch, wheel, workers
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
                progress=None, requested_specs=(), jobs=None, wheels=(), open_wheel=None):
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
    wheel's bytes), see wheel.py. What finalize_env needs is kept in
    ``staging/conda-meta/.coex-pending/``.
    """
    entries = list(entries)
    final_prefix = os.path.abspath(final_prefix).rstrip("/") or "/"
    created = not os.path.exists(staging)
    try:
        pkgdirs = extract_all(entries, open_payload, pkgs_dir, libzstd=libzstd, progress=progress,
                              jobs=jobs)
        return _link_all(entries, pkgdirs, staging, final_prefix, progress, list(requested_specs),
                         list(wheels), open_wheel)
    except BaseException:
        if created:  # nothing half-done: the staging dir is ours, remove it
            rmtree(staging)
        raise


def _link_all(entries, pkgdirs, staging, final_prefix, progress, requested_specs, wheels=(),
              open_wheel=None):
    pyver = noarch.python_version(entries)
    sp = None
    if pyver:
        py = [d for e, d in zip(entries, pkgdirs) if e.get("name") == "python"][0]
        sp = noarch.site_packages(pyver, read_index("python", py))
    plans = [plan_package(e, d, pyver, sp) for e, d in zip(entries, pkgdirs)]
    clobber(plans)
    if not os.path.isdir(staging):
        os.makedirs(staging)
    linker = Linker(staging, final_prefix, pyver)
    state = {"pyver": pyver, "site_packages": sp, "requested_specs": requested_specs,
             "packages": []}
    for n, plan in enumerate(plans, 1):
        label = Package(plan.entry).label
        try:
            paths_data = linker.link_package(plan)
        except EnvironmentError as e:
            raise InstallError("%s: cannot link into %s: %s" % (label, staging, e)) from e
        if progress is not None:
            progress("link", n, len(plans), label)
        files = [r["_path"] for r in paths_data]
        rec = condameta.make_record(plan.entry, plan.index, files, paths_data, plan.pkgdir,
                                    requested_specs, linker.link_type)
        py = []
        if plan.noarch_python and sp:
            py = [f for f in files if f.startswith(sp + "/") and f.endswith(".py")]
        pre, post = scripts_of(plan.entry["name"], files)
        state["packages"].append({"record": rec, "compile": py, "pre_link": pre, "post_link": post,
                                  "prelink_messages": prelink_messages(plan.pkgdir)})
    if wheels:
        python = [e for e in entries if e.get("name") == "python"]
        state["wheels"] = wheel.install_wheels(wheels, open_wheel, staging, final_prefix, state,
                                               python[0] if python else None)
    pending = os.path.join(staging, _PENDING)
    os.makedirs(pending, exist_ok=True)
    with open(os.path.join(pending, "state.json"), "wb") as f:
        f.write(json.dumps(state).encode("utf-8"))
    return state


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


def finalize_env(prefix, entries, requested_specs=(), progress=None):
    # type: (str, List[dict], Sequence[str], Optional[Callable]) -> List[Tuple[str, str]]
    """Phase 3, run by the caller after renaming staging -> prefix: run pre-link scripts, compile
    .pyc for noarch python packages with the environment's own python (noarch.compile_pyc: several
    processes when there is enough source), run post-link scripts (install order, in the
    activated environment; a failing script raises LinkScriptError with its output), write
    conda-meta/<name>-<version>-<build>.json and conda-meta/history.

    Returns the messages for the user, [(package label, text)] in install order: the packages'
    info/prelink_messages and what their link scripts left in ``.messages.txt`` (which is
    removed), for the caller to show as conda prints them."""
    prefix = os.path.abspath(prefix)
    pending = os.path.join(prefix, _PENDING)
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

    wheels = state.get("wheels") or []
    to_compile = [py for p in pkgs + wheels for py in p["compile"]]
    compiled = {}
    if to_compile:
        compiled = noarch.compile_pyc(prefix, state["pyver"], to_compile, jobs=workers.cpus())
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
            tell(p, run_link_script(prefix, p["record"], p["post_link"], "post-link"))
        if progress is not None:
            progress("finalize", i + 1, len(pkgs), p["record"].get("fn", ""))

    wheel.finish_wheels(prefix, wheels, compiled)
    for p in pkgs:
        condameta.write_record(prefix, p["record"])
    condameta.write_history(prefix, [p["record"] for p in pkgs], list(requested_specs))
    rmtree(pending)
    return messages
