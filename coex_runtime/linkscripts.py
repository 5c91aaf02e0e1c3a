"""Packages' pre-/post-link scripts (``bin/.<name>-pre-link.sh``, ``bin/.<name>-post-link.sh``),
run as conda runs them: bash (else sh) ``-x``, in the prefix, with PREFIX, PKG_NAME,
PKG_VERSION, PKG_BUILDNUM, ROOT_PREFIX, CONDA_PREFIX and the prefix's bin/ first on PATH."""

import os
import subprocess

from coex_runtime.errors import LinkScriptError


def scripts_of(name, files):  # type: (str, Iterable[str]) -> Tuple[Optional[str], Optional[str]]
    """(pre-link, post-link) script of package ``name`` among its ``files`` (None when absent)."""
    files = set(files)
    return tuple(s if s in files else None
                 for s in ("bin/.%s-pre-link.sh" % name, "bin/.%s-post-link.sh" % name))


def _shell():
    for sh in ("/bin/bash", "/usr/bin/bash", "/bin/sh"):
        if os.path.exists(sh):
            return sh
    return "sh"


def run_link_script(prefix, record, script_rel, action):  # type: (str, dict, str, str) -> bytes
    """Run one script of the package ``record`` (its conda-meta record); its output. A failure
    raises LinkScriptError holding the output."""
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
