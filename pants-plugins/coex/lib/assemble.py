"""Assemble a .coex archive from fetched (and transcoded) packages, an app layer and entry points:
`assemble(spec, out)`, the spec a `records.AssembleSpec` (the `assemble` command's JSON input).

What happens here (and nowhere else): libzstd is taken out of the platform's locked `zstd`
package; every entry point is checked against the environment's file lists and the app layer
(a program must be some package's `bin/<name>`, a `module:function` or `python -m module` must
name a module of the app layer or of the environment); then coex_runtime.format.write_archive
writes the archive. Relative paths in the spec are relative to `base_dir` (the spec file's
directory).
"""
from __future__ import annotations

import os
import re
import shutil
import sys
import tempfile
from dataclasses import replace
from typing import Mapping, Optional, Sequence

from coex.lib.errors import CoexError
from coex.lib.pkgfiles import package_paths, read_member
from coex.lib.platforms import virtual_package_needs
from coex.lib.records import AssembleSpec, PreparedPackage

LIBZSTD_CANDIDATES = {
    "linux": ("lib/libzstd.so.1",),
    "osx": ("lib/libzstd.1.dylib", "lib/libzstd.dylib"),
    "win": ("Library/bin/libzstd.dll", "Library/bin/zstd.dll"),
}
_SO_RE = re.compile(r"^lib/libzstd\.so\.1(\.\d+)*$")
_SITE_RE = re.compile(r"^(?:lib/python\d+\.\d+/site-packages/|site-packages/|lib/python\d+\.\d+/"
                      r"(?:lib-dynload/)?)([A-Za-z_][A-Za-z0-9_]*)(?:/|\.py$|\..*\.so$|\.so$)")


def extract_libzstd(platform: str, packages: Sequence[PreparedPackage], dest_dir: str) -> str:
    """Write the target platform's libzstd from the locked `zstd` package into dest_dir;
    return its path."""
    zpkgs = [p for p in packages if p.package.name == "zstd"]
    if not zpkgs:
        raise CoexError(
            "The environment for {} has no `zstd` package: coex locks always pin one (the archive "
            "carries its libzstd for the runtime's decoder). Regenerate the lockfile with coex."
            .format(platform))
    p = zpkgs[0]
    family = platform.split("-", 1)[0]
    candidates = LIBZSTD_CANDIDATES.get(family, LIBZSTD_CANDIDATES["linux"])
    name, data = read_member(p.path, p.encoding, candidates)
    if data is None and family == "linux":
        paths, _ = package_paths(p.path, p.encoding)
        real = sorted(x for x in paths if _SO_RE.match(x))
        if real:
            name, data = read_member(p.path, p.encoding, real[-1:])
    if data is None:
        raise CoexError(
            "The locked zstd package {} has no {} to carry as the runtime's decoder. Use a zstd "
            "package that ships the shared library (conda-forge's `zstd` does).".format(
                p.package.filename, " or ".join(candidates)))
    out = os.path.join(dest_dir, "libzstd.so.1")
    with open(out, "wb") as f:
        f.write(data)
    return out


def _app_files(app_root):
    if not app_root:
        return []
    if not os.path.isdir(app_root):
        raise CoexError("The app layer directory {} does not exist.".format(app_root))
    out = []
    for root, dirs, files in os.walk(app_root, followlinks=True):
        dirs.sort()
        for f in sorted(files):
            full = os.path.join(root, f)
            if os.path.isfile(full):
                out.append((os.path.relpath(full, app_root).replace(os.sep, "/"), full))
    return out


def wheel_provides(path: str) -> tuple[list[str], list[str]]:
    """(programs, top-level modules) a wheel installs: its console and GUI scripts and
    `.data/scripts`, and the top-level names of its purelib/platlib files."""
    import configparser
    import zipfile

    programs, modules = [], []
    try:
        with zipfile.ZipFile(path) as zf:
            names = zf.namelist()
            eps = [n for n in names if n.count("/") == 1 and n.endswith(".dist-info/entry_points.txt")]
            text = zf.read(eps[0]).decode("utf-8", "replace") if eps else ""
    except (OSError, zipfile.BadZipFile) as e:
        raise CoexError("assemble: cannot read the wheel {}: {}.".format(path, e))
    for name in names:
        parts = name.split("/")
        if parts[0].endswith(".data") and len(parts) > 2:
            if parts[1] == "scripts" and len(parts) == 3:
                programs.append(parts[2])
            elif parts[1] in ("purelib", "platlib"):
                parts = parts[2:]
            else:
                continue
        elif parts[0].endswith(".dist-info"):
            continue
        m = _SITE_RE.match("site-packages/" + "/".join(parts))
        if m:
            modules.append(m.group(1))
    if text:
        cp = configparser.ConfigParser(delimiters=("=",), interpolation=None)
        cp.optionxform = str
        try:
            cp.read_string(text)
        except configparser.Error:
            pass
        for section in ("console_scripts", "gui_scripts"):
            if cp.has_section(section):
                programs.extend(k.strip() for k in cp.options(section))
    return programs, modules


class EnvIndex(object):
    """What the environment provides: programs (bin/ names) and top-level Python modules (of
    its conda packages, and of its PyPI wheels)."""

    def __init__(self, packages, wheels=()):
        self.programs = {}
        self.modules = {}
        for w in wheels:
            programs, modules = wheel_provides(w.path)
            for name in programs:
                self.programs.setdefault(name, w.wheel.filename)
            for name in modules:
                self.modules.setdefault(name, w.wheel.filename)
        for p in packages:
            fname = p.package.filename
            paths, link = package_paths(p.path, p.encoding)
            for path in paths:
                if path.startswith("bin/") and path.count("/") == 1:
                    self.programs.setdefault(path[4:], fname)
                elif path.startswith("python-scripts/") and path.count("/") == 1:
                    self.programs.setdefault(path[len("python-scripts/"):], fname)
                m = _SITE_RE.match(path)
                if m:
                    self.modules.setdefault(m.group(1), fname)
            noarch = link.get("noarch") if isinstance(link, dict) else None
            for ep in (noarch or {}).get("entry_points", []) if isinstance(noarch, dict) else []:
                self.programs.setdefault(ep.split("=", 1)[0].strip(), fname)


def _app_modules(app_rels):
    mods = set()
    for rel in app_rels:
        top = rel.split("/", 1)[0]
        if "/" in rel:
            mods.add(top)
        elif top.endswith(".py"):
            mods.add(top[:-3])
        elif ".so" in top:
            mods.add(top.split(".", 1)[0])
    return mods


def _close(name, names):
    import difflib

    c = difflib.get_close_matches(name, sorted(names), n=3)
    return " Did you mean: {}?".format(", ".join(c)) if c else ""


def _top_level_names(source: bytes) -> Optional[set]:
    """The names a module's source binds at its top level (defs, classes, assignments, imports,
    also inside top-level if/try/with/for/while blocks); None when that cannot be known: a
    `from x import *`, a module `__getattr__`, or source this interpreter cannot parse (it may be
    written for a newer Python)."""
    import ast

    try:
        tree = ast.parse(source)
    except (SyntaxError, ValueError):
        return None
    names = set()

    def bind(target):
        for node in ast.walk(target):
            if isinstance(node, ast.Name):
                names.add(node.id)

    def visit(body):
        for node in body:
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                names.add(node.name)
                continue  # what it binds inside is not the module's
            if isinstance(node, ast.Assign):
                for target in node.targets:
                    bind(target)
            elif isinstance(node, (ast.AnnAssign, ast.AugAssign)):
                bind(node.target)
            elif isinstance(node, (ast.Import, ast.ImportFrom)):
                for alias in node.names:
                    names.add(alias.asname or alias.name.split(".", 1)[0])
            for block in ("body", "orelse", "finalbody", "handlers"):  # if/try/with/for/while
                visit(getattr(node, block, None) or [])

    visit(tree.body)
    return None if "*" in names or "__getattr__" in names else names


class AppLayer(object):
    """Where the app layer's modules are: `files` is {relative path: file on disk}."""

    def __init__(self, files: Mapping[str, str]):
        self.files = dict(files)
        self.modules = _app_modules(self.files)

    def source_of(self, module: str) -> Optional[str]:
        """The app-layer path of `module`'s source (`a/b.py` or `a/b/__init__.py`), or None."""
        base = module.replace(".", "/")
        for rel in (base + ".py", base + "/__init__.py"):
            if rel in self.files:
                return rel
        return None

    def has(self, module: str) -> bool:
        """Whether the app layer provides `module` at all (a source, an extension, a namespace
        package directory)."""
        base = module.replace(".", "/")
        return self.source_of(module) is not None or any(
            rel.startswith(base + "/") or (rel.startswith(base + ".") and ".so" in rel)
            for rel in self.files)

    def deeper(self, module: str) -> Optional[str]:
        """The directory under which the app layer has `module`, when only deeper than its root
        (e.g. `src/` for `src/greet/__init__.py`)."""
        base = module.replace(".", "/")
        for rel in sorted(self.files):
            parts = rel.split("/")
            for i in range(1, len(parts)):
                rest = "/".join(parts[i:])
                if rest.startswith(base + "/") or rest == base + ".py":
                    return "/".join(parts[:i]) + "/"
        return None


def check_entry_points(entry_points: Mapping[str, str], env_index: EnvIndex,
                       app_files: Mapping[str, str], origin: str = "the target") -> None:
    """Raise CoexError when an entry point names nothing in the environment or the app layer
    (`app_files`: {relative path: file on disk}): a missing program or module, a function an
    app-layer module does not define, or `python -m` of an app-layer package without a
    `__main__.py`."""
    from coex_runtime.format import FormatError, parse_entry_point

    app = AppLayer(app_files)
    app_rels = sorted(app.files)
    have_python = any(n in env_index.programs for n in ("python", "python3"))

    def check_module(name, module, how, function=None):
        top = module.split(".", 1)[0]
        if top in app.modules:
            check_app_module(name, module, how, function)
            return
        if top in env_index.modules or top in sys.builtin_module_names:
            return
        deeper = app.deeper(module)
        if deeper:
            raise CoexError(
                "{}: entry point {!r} ({}) names module {!r}, which the app layer has only under "
                "{} (at {}{}): a `files` target keeps paths from the build root. Use a "
                "`resources` or `python_sources` target for it (their source roots are "
                "stripped), or name the module by its path in the app layer ({!r}).".format(
                    origin, name, how, module, deeper, deeper, module.replace(".", "/"),
                    deeper.replace("/", ".") + module))
        raise CoexError(
            "{}: entry point {!r} ({}) names module {!r}, but neither the app layer nor any "
            "package of the environment provides a top-level {!r}.{} Add the package that provides "
            "it to the environment, or the source files to the app layer.".format(
                origin, name, how, module, top, _close(top, app.modules | set(env_index.modules))))

    def check_app_module(name, module, how, function):
        if not app.has(module):
            parent = module.rsplit(".", 1)[0]
            siblings = {rel[len(parent) + 1:].split("/", 1)[0].split(".", 1)[0]
                        for rel in app_rels if rel.startswith(parent.replace(".", "/") + "/")}
            raise CoexError(
                "{}: entry point {!r} ({}) names module {!r}, which the app layer does not have "
                "(no {}.py or {}/__init__.py).{}".format(
                    origin, name, how, module, module.replace(".", "/"), module.replace(".", "/"),
                    _close(module.rsplit(".", 1)[-1], siblings)))
        source = app.source_of(module)
        if function is None:  # `python -m module`: a package needs its __main__.py
            package_dir = module.replace(".", "/")
            is_package = source is None or source.endswith("/__init__.py")
            if is_package and package_dir + "/__main__.py" not in app.files and any(
                    rel.startswith(package_dir + "/") for rel in app_rels):
                raise CoexError(
                    "{}: entry point {!r} ({}): {!r} is a package of the app layer without a "
                    "__main__.py, so `python -m {}` cannot run it. Add {}/__main__.py, or run "
                    "one of its modules.".format(origin, name, how, module, module, package_dir))
            return
        if source is None:  # an extension module or a namespace package: not readable here
            return
        with open(app.files[source], "rb") as f:
            names = _top_level_names(f.read())
        attr = function.split(".", 1)[0]
        if names is not None and attr not in names:
            public = {n for n in names if not n.startswith("_")}
            raise CoexError(
                "{}: entry point {!r} ({}): the module {!r} ({} in the app layer) defines no "
                "top-level {!r}.{} Fix the function name, or define it in {}.".format(
                    origin, name, how, module, source, attr,
                    _close(attr, public) or " It defines: {}.".format(
                        ", ".join(sorted(public)[:20]) or "nothing"), source))

    for name, text in sorted(entry_points.items()):
        try:
            ep = parse_entry_point(text, app_rels) if isinstance(text, str) else dict(text)
        except FormatError as e:
            raise CoexError("{}: entry point {!r}: {}.".format(origin, name, e))
        if ep["kind"] == "app":
            continue
        if ep["kind"] == "function":
            if not have_python:
                raise CoexError(
                    "{}: entry point {!r} ({}) is a Python function, but the environment has no "
                    "python: add `python` to the dependencies.".format(origin, name, text))
            check_module(name, ep["module"], text, ep["function"])
            continue
        argv = ep["argv"]
        prog = argv[0]
        if prog.startswith("/"):
            continue  # an explicit host path: the user's responsibility
        if "/" in prog:
            raise CoexError(
                "{}: entry point {!r}: {!r} is neither a file of the app layer ({}) nor a "
                "program of the environment.{}".format(
                    origin, name, prog, pluralize(len(app_rels), "file"), _close(prog, app_rels)))
        if prog not in env_index.programs:
            # hidden files of bin/ (link scripts such as `.x-post-link.sh`) are no programs to run
            shown = sorted(p for p in env_index.programs if not p.startswith("."))
            raise CoexError(
                "{}: entry point {!r} runs {!r}, but no package of the environment installs "
                "bin/{} (programs: {}).{} Add the package that provides it, fix the name, or "
                "use an absolute path for a host program.".format(
                    origin, name, prog, prog, ", ".join(shown[:20]) or "none",
                    _close(prog, shown)))
        if len(argv) >= 3 and argv[1] == "-m" and prog.startswith("python"):
            check_module(name, argv[2], text)


def pluralize(count: int, word: str) -> str:
    return "{} {}{}".format(count, word, "" if count == 1 else "s")


def assemble(spec: AssembleSpec, out: str, base_dir: str = ".",
             env_index: Optional[EnvIndex] = None) -> dict:
    """Write the archive `spec` describes to `out`; return its COEX-INFO record. `env_index`:
    the EnvIndex of the spec's packages, when the caller made it already."""
    from coex_runtime.format import FormatError, write_archive

    origin = spec.build.target or "the archive"
    packages = [replace(p, path=os.path.join(base_dir, p.path)) for p in spec.packages]
    for p in packages:
        if not os.path.isfile(p.path):
            raise CoexError("assemble: package file {} does not exist.".format(p.path))
    if not packages:
        raise CoexError("{}: the environment has no packages.".format(origin))
    wheels = [replace(w, path=os.path.join(base_dir, w.path)) for w in spec.wheels]
    for w in wheels:
        if not os.path.isfile(w.path):
            raise CoexError("assemble: wheel file {} does not exist.".format(w.path))
    app_files = _app_files(os.path.join(base_dir, spec.app_root) if spec.app_root else None)
    entry_points = dict(spec.entry_points.commands)
    check_entry_points(entry_points, env_index or EnvIndex(packages, wheels), dict(app_files),
                       origin)
    vpkgs = spec.virtual_packages
    if vpkgs is None:
        from coex.lib.pypi import wheel_virtual_packages

        vpkgs = virtual_package_needs([p.package.depends for p in packages]
                                      + [wheel_virtual_packages(w.wheel.filename) for w in wheels])
    tmp = tempfile.mkdtemp(prefix="coex-assemble-")
    try:
        libzstd = extract_libzstd(spec.platform, packages, tmp)
        out = os.path.abspath(out)
        if os.path.isdir(out):
            raise CoexError("{}: the output {} is a directory: give the archive's file name "
                            "(e.g. {}).".format(origin, out, os.path.join(out, "app.coex")))
        try:
            os.makedirs(os.path.dirname(out), exist_ok=True)
            return write_archive(
                out, spec.platform,
                [{"path": p.path, "entry": p.package.to_json(), "encoding": p.encoding}
                 for p in packages], entry_points,
                default_entry_point=spec.entry_points.default, app_files=app_files,
                libzstd_path=libzstd, env=dict(spec.env),
                requested_specs=list(spec.requested_specs), virtual_packages=vpkgs,
                build=spec.build.to_json(),
                wheels=[{"path": w.path, "entry": w.wheel.to_json()} for w in wheels])
        except FormatError as e:
            raise CoexError("{}: cannot write the archive: {}.".format(origin, e))
        except OSError as e:
            raise CoexError("{}: cannot write the archive {}: {}.".format(
                origin, out, e.strerror or e))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
