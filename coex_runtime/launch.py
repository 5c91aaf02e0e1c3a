"""Launch: the activation environment, the per-archive launcher script, and the final exec.

The launcher ``<root>/launch/<archive id16>.sh`` is plain POSIX sh, written (atomically, as the
very last step of a first run) from what the install found, so a warm run is: the archive's sh
preamble sources it, it exports the precomputed variables and ``exec``s the entry point. No
Python, no subprocess; ``exec`` keeps the pid, so argv, stdin/tty, exit status and signals are the
program's own. What it does, in order:

1. Checks that the environment's readiness marker and the app layer still exist; if not (someone
   deleted them) it returns to the preamble, which falls back to Python and reinstalls.
2. Records the last use: ``command : >launch/<id16>.used`` (truncating an empty file updates its
   mtime; ``command`` keeps a failed redirection from ending the shell).
3. Picks the entry point: ``$COEX_ENTRYPOINT``, else the basename of ``$COEX_ARGV0`` when it names
   an entry point (BusyBox style: symlink ``python -> app.coex``), else the record's default.
   ``COEX_ENTRYPOINT`` is then unset so it does not leak into nested coex archives.
4. Exports the activation environment, computed at install time like ``conda activate``:
   ``PATH=<prefix>/bin:$PATH``, ``CONDA_PREFIX``, ``CONDA_DEFAULT_ENV`` (the prefix),
   ``CONDA_SHLVL=1``, ``COEX_PREFIX``, ``COEX_APP`` (the app layer), ``PYTHONPATH=<app>:...``
   when the environment has a python and the archive an app layer, then the variables of
   ``etc/conda/env_vars.d/*.json`` (sorted) overridden by ``conda-meta/state``'s ``env_vars``,
   then the record's ``env``. An inherited ``PYTHONHOME`` is unset when the environment has a
   python (it belongs to some other Python and would stop the environment's from starting), and
   ``PYTHONNOUSERSITE=1`` is set unless the caller set it (even empty, to opt out): the user's
   ``~/.local`` site-packages would come before the locked ones.
   Started by another coex program, the outer app layer (first on the inherited
   ``PYTHONPATH``, named by ``COEX_APP``) is removed before. ``COEX_ARCHIVE`` / ``COEX_ARGV0``
   (set by the preamble) are kept.
5. Sources ``etc/conda/activate.d/*.sh`` (sorted) inside a shell function, so the scripts see no
   positional parameters and cannot clobber the program's arguments.
6. ``exec``s the entry point: ``command`` (argv[0] from the prefix's ``bin/`` when it is there,
   else looked up on ``PATH``; words that are app-layer paths made absolute), ``function``
   (``<prefix>/bin/python -c`` in console-script style, ``sys.argv[0]`` = the entry point name),
   ``app`` (the app-layer file itself, or ``<prefix>/bin/python <file>`` for ``.py``), followed by
   the user's arguments.

On the cold path ``main`` writes this launcher and then ``exec``s
``/bin/sh -c '. "$1"' <original $0> <launcher> args...`` (see ``exec_launcher``), so first and
later runs take exactly the same route into the program.
"""

import glob
import json
import os
import sys

FUNCTION_TEMPLATE = r"""import sys
if sys.path and sys.path[0] in ("", "."):
    del sys.path[0]
sys.argv[0] = %(name)r
import importlib
_obj = importlib.import_module(%(module)r)
for _a in %(attrs)r:
    _obj = getattr(_obj, _a)
sys.exit(_obj())
"""


def sh_quote(s):  # type: (str) -> str
    """Single-quote ``s`` for POSIX sh."""
    return "'" + s.replace("'", "'\"'\"'") + "'"


def env_has_python(prefix):  # type: (str) -> bool
    return os.path.exists(os.path.join(prefix, "bin", "python"))


def conda_env_vars(prefix):  # type: (str) -> List[Tuple[str, str]]
    """Variables from etc/conda/env_vars.d/*.json (sorted), then conda-meta/state (wins)."""
    out = []
    seen = {}

    def put(k, v):
        if not isinstance(k, str) or not isinstance(v, str):
            return
        if k in seen:
            out[seen[k]] = (k, v)
        else:
            seen[k] = len(out)
            out.append((k, v))

    for path in sorted(glob.glob(os.path.join(prefix, "etc", "conda", "env_vars.d", "*.json"))):
        try:
            with open(path) as f:
                data = json.load(f)
        except (IOError, OSError, ValueError):
            continue
        if isinstance(data, dict):
            for k in sorted(data):
                put(k, data[k])
    try:
        with open(os.path.join(prefix, "conda-meta", "state")) as f:
            state = json.load(f)
        for k, v in sorted((state.get("env_vars") or {}).items()):
            put(k, v)
    except (IOError, OSError, ValueError, AttributeError):
        pass
    return out


def activation(prefix, app_dir, info):  # type: (str, Optional[str], dict) -> List[Tuple[str, object]]
    """[(name, value or (prefix_value, name_of_var_to_append) or None to unset or
    {"default": value} when not set)] in export order."""
    out = [("PATH", (os.path.join(prefix, "bin"), "PATH")),
           ("CONDA_PREFIX", prefix),
           ("CONDA_DEFAULT_ENV", prefix),
           ("CONDA_SHLVL", "1"),
           ("COEX_PREFIX", prefix)]
    if app_dir:
        out.append(("COEX_APP", app_dir))
        if env_has_python(prefix):
            out.append(("PYTHONPATH", (app_dir, "PYTHONPATH")))
    if env_has_python(prefix):
        out.append(("PYTHONHOME", None))  # another Python's home: the env's python cannot start
        # ~/.local/lib/pythonX.Y/site-packages comes before the env's own site-packages: a
        # `pip install --user` must not shadow the locked packages (PYTHONNOUSERSITE= opts out)
        out.append(("PYTHONNOUSERSITE", {"default": "1"}))
    out.extend(conda_env_vars(prefix))
    for k in sorted(info.get("env") or {}):
        out.append((k, info["env"][k]))
    return out


def activate_scripts(prefix):  # type: (str) -> List[str]
    return sorted(glob.glob(os.path.join(prefix, "etc", "conda", "activate.d", "*.sh")))


def entry_argv(name, ep, prefix, app_dir):
    # type: (str, dict, str, Optional[str]) -> Tuple[Optional[List[str]], Optional[str]]
    """(argv words to exec before the user's arguments, or None) and an error message."""
    kind = ep["kind"]
    py = os.path.join(prefix, "bin", "python")
    if kind == "command":
        argv = list(ep["argv"])
        first = argv[0]
        if "/" not in first and os.path.lexists(os.path.join(prefix, "bin", first)):
            argv[0] = os.path.join(prefix, "bin", first)
        elif "/" in first and not first.startswith("/") and os.path.lexists(os.path.join(prefix, first)):
            argv[0] = os.path.join(prefix, first)
        for i in ep.get("app_args") or ():
            if not app_dir:
                return None, "entry point %r uses app-layer paths but the archive has no app layer" % name
            argv[i] = os.path.join(app_dir, argv[i])
        return argv, None
    if kind == "function":
        if not os.path.exists(py):
            return None, ("entry point %r is the function %s:%s, but the environment has no python; "
                          "add python to the locked environment" % (name, ep["module"], ep["function"]))
        attrs = ep["function"].split(".")
        code = FUNCTION_TEMPLATE % {"name": name, "module": ep["module"], "attrs": attrs}
        return [py, "-c", code], None
    if kind == "app":
        if not app_dir:
            return None, "entry point %r names an app-layer file but the archive has no app layer" % name
        path = os.path.join(app_dir, ep["path"])
        if ep["path"].endswith(".py"):
            if not os.path.exists(py):
                return None, ("entry point %r runs %s, but the environment has no python; add python "
                              "to the locked environment" % (name, ep["path"]))
            return [py, path] + list(ep.get("args") or []), None
        return [path] + list(ep.get("args") or []), None
    return None, "entry point %r has an unknown kind %r" % (name, kind)


def export_lines(variables):  # type: (List[Tuple[str, object]]) -> List[str]
    """sh lines setting ``variables`` (as ``activation`` gives them)."""
    q = sh_quote
    lines = []
    for k, v in variables:
        if v is None:
            lines.append("unset %s" % k)
        elif isinstance(v, dict):
            lines.append("%s=${%s-%s}; export %s" % (k, k, q(v["default"]), k))
        elif isinstance(v, tuple):
            lines.append('%s=%s${%s:+":$%s"}; export %s' % (k, q(v[0]), v[1], v[1], k))
        else:
            lines.append("%s=%s; export %s" % (k, q(v), k))
    return lines


def render_launcher(info, archive_id16, prefix, app_dir, used_file, ready_file):
    # type: (dict, str, str, Optional[str], str, str) -> str
    """The launcher script text (see the module docstring)."""
    q = sh_quote
    eps = info["entry_points"]
    names = sorted(eps)
    lines = [
        "# coex launcher for archive %s (env %s), written by coex_runtime/launch.py at install time."
        % (archive_id16, os.path.basename(prefix)),
        "# Sourced by the archive's sh preamble: it execs the entry point and never returns, unless",
        "# the environment is gone (then the preamble falls back to Python, which reinstalls it).",
    ]
    cond = "[ -f %s ]" % q(ready_file)
    if app_dir:
        cond += " && [ -d %s ]" % q(app_dir)
    lines.append("if %s; then" % cond)
    lines.append("command : 2>/dev/null >%s" % q(used_file))
    lines.append("_coex_ep=${COEX_ENTRYPOINT:-}")
    lines.append("unset COEX_ENTRYPOINT")
    lines.append('if [ -z "$_coex_ep" ]; then')
    lines.append('  case "${COEX_ARGV0##*/}" in')
    lines.append("    %s) _coex_ep=${COEX_ARGV0##*/} ;;" % "|".join(q(n) for n in names))
    lines.append("    *) _coex_ep=%s ;;" % q(info["default_entry_point"]))
    lines.append("  esac")
    lines.append("fi")
    # started by another coex program: drop the app layer its launcher put first on PYTHONPATH
    lines.append('if [ -n "${COEX_APP:-}" ]; then case "${PYTHONPATH:-}" in')
    lines.append('  "$COEX_APP") unset PYTHONPATH ;; "$COEX_APP":*) PYTHONPATH=${PYTHONPATH#"$COEX_APP":} ;;')
    lines.append("esac; fi")
    lines.append("unset COEX_APP")
    lines.extend(export_lines(activation(prefix, app_dir, info)))
    scripts = activate_scripts(prefix)
    if scripts:
        lines.append("_coex_activate() {")
        for s in scripts:
            lines.append("  . %s" % q(s))
        lines.append("}")
        lines.append("_coex_activate")
        lines.append("unset -f _coex_activate")
    lines.append('case "$_coex_ep" in')
    for n in names:
        argv, err = entry_argv(n, eps[n], prefix, app_dir)
        if argv is None:
            lines.append("  %s) echo %s >&2; exit 126 ;;" % (q(n), q("coex: " + err)))
        else:
            lines.append('  %s) exec %s "$@" ;;' % (q(n), " ".join(q(a) for a in argv)))
    lines.append('  *) echo "coex: this archive has no entry point named \'$_coex_ep\' (COEX_ENTRYPOINT);'
                 ' choose one of: %s" >&2; exit 2 ;;' % ", ".join(names).replace('"', ""))
    lines.append("esac")
    lines.append("fi")
    return "\n".join(lines) + "\n"


def write_extracted(info, prefix, app_dir):  # type: (dict, str, Optional[str]) -> List[str]
    """After ``extract DIR`` installed the environment (and the app layer at ``app_dir``) at
    ``prefix``: what makes it runnable like the archive, without the archive nor the cache.

    ``coex/launch.sh`` the launcher (as in the cache, for this prefix), ``coex/run`` runs an entry
    point (``$COEX_ENTRYPOINT``, else the default) with the program's activation, as
    ``./app.coex`` does, ``coex/bin/<name>`` runs that entry point, and ``activate.sh`` (``.
    DIR/activate.sh``, like conda-pack's ``bin/activate``) activates the environment in the
    calling shell: the same variables, ``coex/bin`` after ``bin`` on PATH, activate.d sourced.
    Returns the paths written (relative to ``prefix``)."""
    from coex_runtime.atomic import write_atomic
    from coex_runtime.fs import makedirs
    q = sh_quote
    coex = os.path.join(prefix, "coex")
    run = os.path.join(coex, "run")
    launcher = render_launcher(info, "extracted", prefix, app_dir, "/dev/null",
                               os.path.join(prefix, "conda-meta", "history"))
    run_script = [
        "#!/bin/sh",
        "# Runs an entry point of the app extracted here (coex extract): $COEX_ENTRYPOINT, else the default.",
        "set +aCefu",
        "COEX_ENTRYPOINT=${COEX_ENTRYPOINT:-%s}" % q(info["default_entry_point"]),
        "COEX_ARGV0=$0",
        "export COEX_ENTRYPOINT COEX_ARGV0",
        "unset COEX_ARCHIVE",
        "command . %s" % q(os.path.join(coex, "launch.sh")),
        "echo %s >&2" % q("coex: the environment at %s is incomplete; extract it again" % prefix),
        "exit 127"]
    files = {"coex/launch.sh": (launcher, 0o644), "coex/run": ("\n".join(run_script) + "\n", 0o755)}
    for name in sorted(info["entry_points"]):
        files["coex/bin/" + name] = ('#!/bin/sh\nCOEX_ENTRYPOINT=%s exec %s "$@"\n' % (q(name), q(run)), 0o755)
    lines = ["# Activate the environment extracted here (coex extract) in this shell: . %s"
             % os.path.join(prefix, "activate.sh")]
    path = ("PATH", (os.path.join(prefix, "bin") + ":" + os.path.join(coex, "bin"), "PATH"))
    lines.extend(export_lines([path] + [(k, v) for k, v in activation(prefix, app_dir, info) if k != "PATH"]))
    lines.extend(". %s" % q(s) for s in activate_scripts(prefix))
    files["activate.sh"] = ("\n".join(lines) + "\n", 0o644)
    for rel, (text, mode) in sorted(files.items()):
        path = os.path.join(prefix, *rel.split("/"))
        makedirs(os.path.dirname(path))
        write_atomic(path, text.encode("utf-8"), mode, fsync=False)
    return sorted(files)


EXEC_SCRIPT = ('_coex_l=$1; shift; . "$_coex_l"; '
               'echo "coex: the environment of $COEX_ARCHIVE vanished while starting; run it again" >&2; '
               'exit 127')


def restore_signals():  # type: () -> None
    """Python ignores SIGPIPE and SIGXFSZ at startup, and ignored signals stay ignored across
    exec: put them back to the default (as ``subprocess``'s ``restore_signals`` does), so that on
    the first run too ``prog | head`` ends ``prog`` quietly instead of making it see EPIPE."""
    import signal
    for name in ("SIGPIPE", "SIGXFSZ"):
        sig = getattr(signal, name, None)
        if sig is not None:
            try:
                signal.signal(sig, signal.SIG_DFL)
            except (OSError, ValueError):
                pass


def exec_launcher(launcher, argv0, args, environ):  # type: (str, str, List[str], Mapping[str, str]) -> None
    """Replace this process with ``/bin/sh`` sourcing the launcher, ``$0`` = ``argv0``."""
    sh = "/bin/sh" if os.path.exists("/bin/sh") else "sh"
    for stream in (sys.stdout, sys.stderr):
        if stream is not None:
            stream.flush()
    restore_signals()
    os.execve(sh, ["sh", "-c", EXEC_SCRIPT, argv0, launcher] + list(args), environ)
