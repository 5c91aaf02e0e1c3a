"""Packages' pre-/post-link scripts (``bin/.<name>-pre-link.sh``, ``bin/.<name>-post-link.sh``),
run as conda runs them (``conda.core.link.run_script``): by bash (else sh), in ``<prefix>/bin``,
with PREFIX, PKG_NAME, PKG_VERSION, PKG_BUILDNUM, ROOT_PREFIX and ``<prefix>/bin`` first on PATH.

* a pre-link script runs as ``bash -x <script>``;
* a post-link script runs in the activated environment (conda's ``activate=True``): a shell
  exports what activating the environment exports (``launch.activation``: PATH, CONDA_PREFIX,
  CONDA_DEFAULT_ENV, CONDA_SHLVL, the variables of ``etc/conda/env_vars.d``, ...), sources
  ``etc/conda/activate.d/*.sh`` (sorted), then sources the script itself (traced, as ``-x``
  would), then ``etc/conda/deactivate.d/*.sh`` (reverse order), and exits with the script's
  status. Sourced, as conda sources it: a script may ``return``.

After each script, ``<prefix>/.messages.txt`` (what the script wrote for the user) is read and
removed, as conda's ``messages()`` does; the caller shows the messages (conda prints them).
A script that fails raises LinkScriptError with its messages and output.
"""

import glob
import os

from coex_runtime import launch
from coex_runtime.errors import LinkScriptError

MESSAGES = ".messages.txt"


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


def activated(prefix, environ):  # type: (str, Mapping[str, str]) -> Dict[str, str]
    """``environ`` with the environment at ``prefix`` activated (what the launcher exports)."""
    env = dict(environ)
    for k, v in launch.activation(prefix, None, {}):
        if v is None:
            env.pop(k, None)
        elif isinstance(v, dict):
            env.setdefault(k, v["default"])
        elif isinstance(v, tuple):
            env[k] = v[0] + (":" + env[v[1]] if env.get(v[1]) else "")
        else:
            env[k] = v
    return env


def _in_activated_env(prefix, script):  # type: (str, str) -> str
    """The shell text that sources ``script`` in the activated environment (see the module)."""
    q = launch.sh_quote
    d = os.path.join(prefix, "etc", "conda")
    lines = [". %s" % q(s) for s in launch.activate_scripts(prefix)]
    lines += ["set -x", ". %s" % q(script), "_coex_rc=$?", "{ set +x; } 2>/dev/null"]
    lines += [". %s" % q(s) for s in sorted(glob.glob(os.path.join(d, "deactivate.d", "*.sh")),
                                            reverse=True)]
    lines.append("exit $_coex_rc")
    return "\n".join(lines) + "\n"


def take_messages(prefix):  # type: (str) -> str
    """What a link script left in ``<prefix>/.messages.txt`` (removed), else ''."""
    path = os.path.join(prefix, MESSAGES)
    try:
        with open(path, "rb") as f:
            text = f.read().decode("utf-8", "replace")
    except (IOError, OSError):
        return ""
    try:
        os.unlink(path)
    except OSError:
        pass
    return text


def run_link_script(prefix, record, script_rel, action):  # type: (str, dict, str, str) -> str
    """Run one script of the package ``record`` (its conda-meta record); the messages it left
    (see take_messages). A failure raises LinkScriptError holding its messages and output."""
    script = os.path.join(prefix, script_rel)
    env = dict(os.environ)
    env.update({
        "PREFIX": prefix,
        "PKG_NAME": record["name"],
        "PKG_VERSION": str(record["version"]),
        "PKG_BUILDNUM": str(record.get("build_number", 0)),
        "ROOT_PREFIX": prefix,
        "PATH": os.path.join(prefix, "bin") + os.pathsep + env.get("PATH", ""),
    })
    if action == "post-link":
        argv = [_shell(), "-c", _in_activated_env(prefix, script), script]
        env = activated(prefix, env)
    else:
        argv = [_shell(), "-x", script]
        env["CONDA_PREFIX"] = prefix
    try:
        import subprocess  # (only when a package has a link script)
        proc = subprocess.Popen(argv, cwd=os.path.dirname(script), env=env,
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    except OSError as e:
        raise LinkScriptError("cannot run the %s script of %s (%s): %s"
                              % (action, record["name"], script_rel, e)) from e
    try:
        out = proc.communicate()[0]
    except BaseException:  # interrupted or terminated: the script stops too
        proc.kill()
        proc.wait()
        raise
    messages = take_messages(prefix)
    if proc.returncode != 0:
        msg = ("the %s script of %s-%s-%s (%s) failed with exit status %s; the environment was "
               "not installed." % (action, record["name"], record["version"], record["build"],
                                   script_rel, proc.returncode))
        if messages.strip():
            msg += "\nIts messages:\n" + messages.rstrip()
        raise LinkScriptError(msg + "\nIts output:\n" + out.decode("utf-8", "replace").rstrip())
    return messages
