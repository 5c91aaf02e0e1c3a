"""Scripts that carry their environment: the header, and the program that runs the script.

A script names its conda environment in comment lines, in either of two formats:

conda-execute's (a `# conda execute` line, then YAML in the comment lines that follow it, up to
the first line that is not a comment):

    # conda execute
    # env:
    #  - python >=3.11
    #  - numpy
    # channels:
    #  - conda-forge
    # run_with: python          (optional: the program that runs the script)

or a PEP 723-style block of type `conda` (TOML between `# /// conda` and `# ///`):

    # /// conda
    # dependencies = ["python >=3.11", "numpy"]
    # channels = ["conda-forge"]
    # platforms = ["linux-64", "osx-arm64"]    (optional: what a lock next to it covers)
    # pypi-dependencies = ["rich >=13"]        (optional: PyPI wheels, locked with the conda
    # ///                                        packages as an environment file's `pip:`)

A PEP 723 `# /// script` block with `dependencies` is refused: its requirements go into the
`# /// conda` block's `pypi-dependencies`, next to the conda packages (a Python among them).

`parse_script` is pure (no py-rattler: the Pants rules call it in-process); each spec keeps the
line it is written on, so a bad spec is reported as `script.py:7: ...`. `script_command` picks
the program that runs the script (see its docstring; documented in the README).
"""
from __future__ import annotations

import os
import re
import shlex
from dataclasses import dataclass
from typing import Collection, Optional

from coex.lib.errors import CoexError

CONDA_EXECUTE = "conda-execute"
PEP723 = "pep723"

# the program for a script without a shebang (or with `#!/usr/bin/env coex-run`), by extension
EXTENSIONS = {
    ".py": "python", ".sh": "sh", ".bash": "bash", ".R": "Rscript", ".r": "Rscript",
    ".pl": "perl", ".rb": "ruby", ".jl": "julia", ".js": "node", ".mjs": "node", ".lua": "lua",
    ".tcl": "tclsh",
}
# the host's own shells, when the environment has none
HOST_SHELLS = {"sh": "/bin/sh", "bash": "/usr/bin/env bash"}
# shebang programs that mean "coex runs this script": its interpreter comes from elsewhere
COEX_SHEBANGS = ("coex-run", "coex", "conda", "conda-execute")

_CONDA_KEYS = ("dependencies", "channels", "platforms", "pypi-dependencies")
_EXECUTE_KEYS = ("env", "channels", "run_with")
_BLOCK_RE = re.compile(r"^# /// ([a-zA-Z0-9-]+)$")


@dataclass(frozen=True)
class ScriptHeader:
    """A script's environment, as its header gives it."""

    origin: str  # the script's path, for messages
    format: str  # CONDA_EXECUTE or PEP723
    line: int  # where the header starts (1-based)
    specs: tuple[str, ...]
    spec_lines: tuple[int, ...]  # the line of each spec
    channels: tuple[str, ...] = ()
    platforms: Optional[tuple[str, ...]] = None
    run_with: Optional[tuple[str, ...]] = None  # conda-execute's `run_with`, split
    shebang: Optional[tuple[str, ...]] = None  # the first line's `#!` words
    pypi: tuple[str, ...] = ()  # `pypi-dependencies`, canonical (coex.lib.pypi)

    def where(self, line: int) -> str:
        return "{}:{}".format(self.origin, line)

    @property
    def name(self) -> str:
        """How messages name the header: `the `# /// conda` block of x.py (line 3)`."""
        kind = "`# /// conda` block" if self.format == PEP723 else "`# conda execute` header"
        return "the {} of {} (line {})".format(kind, self.origin, self.line)


def _comment_text(line: str) -> Optional[str]:
    """The text of a comment line (`#` and the blank after it removed), None for other lines."""
    s = line.lstrip()
    if not s.startswith("#"):
        return None
    return s[1:]


def _blocks(lines: list[str], origin: str) -> dict[str, list[tuple[int, list[tuple[int, str]]]]]:
    """The PEP 723 blocks: {type: [(start line, [(line, content)])]}; an unclosed `conda` or
    `script` block is an error."""
    out: dict[str, list] = {}
    i = 0
    while i < len(lines):
        m = _BLOCK_RE.match(lines[i].rstrip("\r\n"))
        i += 1
        if not m:
            continue
        start, content, closed = i, [], False
        while i < len(lines):
            line = lines[i].rstrip("\r\n")
            if line == "# ///":
                closed = True
                i += 1
                break
            if not (line == "#" or line.startswith("# ")):
                break
            content.append((i + 1, line[2:]))
            i += 1
        if closed:
            out.setdefault(m.group(1), []).append((start, content))
        elif m.group(1) in ("conda", "script"):
            raise CoexError(
                "{}:{}: the `# /// {}` block is not closed: end it with a line `# ///` (every "
                "line in between starts with `# `).".format(origin, start, m.group(1)))
    return out


def _toml_loads(text: str) -> dict:
    try:
        import tomllib  # Python >= 3.11
    except ImportError:
        import tomli as tomllib  # (a dependency of coex before 3.11)
    return tomllib.loads(text)


def _toml_error_line(error: Exception) -> Optional[int]:
    line = getattr(error, "lineno", None)
    if isinstance(line, int):
        return line
    m = re.search(r"line (\d+)", str(error))
    return int(m.group(1)) if m else None


def _key_line(content: list[tuple[int, str]], key: str, default: int) -> int:
    for number, text in content:
        if re.match(r"\s*[\"']?{}[\"']?\s*[=:]".format(re.escape(key)), text):
            return number
    return default


def _value_line(content: list[tuple[int, str]], value: str, default: int) -> int:
    for number, text in content:
        if value in text:
            return number
    return default


def _string_list(value, key: str, where: str, example: str) -> tuple[str, ...]:
    if isinstance(value, str) or not isinstance(value, list) or not all(
            isinstance(v, str) and v.strip() for v in value):
        raise CoexError("{}: `{}` must be a list of non-empty strings, e.g. {}.".format(
            where, key, example))
    return tuple(" ".join(v.split()) for v in value)


def _parse_pep723(origin: str, start: int, content: list[tuple[int, str]]):
    try:
        data = _toml_loads("\n".join(text for _, text in content))
    except Exception as e:  # each TOML library has its own error type
        rel = _toml_error_line(e)
        line = content[rel - 1][0] if rel and 0 < rel <= len(content) else start
        why = re.sub(r"\s*\(?at line \d+, column (\d+)\)?",  # (of the block: `# ` cut off)
                     lambda m: " (column {})".format(int(m.group(1)) + 2), str(e))
        raise CoexError("{}:{}: the `# /// conda` block is not valid TOML: {}\nIt looks like:\n"
                        "  # /// conda\n  # dependencies = [\"python 3.11.*\", \"numpy\"]\n"
                        "  # channels = [\"conda-forge\"]\n  # ///".format(origin, line, why))

    def where(key):
        return "{}:{}".format(origin, _key_line(content, key, start))

    unknown = [k for k in data if k not in _CONDA_KEYS]
    if unknown:
        raise CoexError("{}: unknown key `{}` in the `# /// conda` block; it may have {}.".format(
            where(unknown[0]), unknown[0], ", ".join("`{}`".format(k) for k in _CONDA_KEYS)))
    if not data.get("dependencies"):
        raise CoexError(
            "{}:{}: the `# /// conda` block has no dependencies: add e.g. "
            "`# dependencies = [\"python 3.11.*\"]`.".format(origin, start))
    specs = _string_list(data["dependencies"], "dependencies", where("dependencies"),
                         '["python 3.11.*", "numpy"]')
    channels = _string_list(data.get("channels", []), "channels", where("channels"),
                            '["conda-forge"]')
    platforms = data.get("platforms")
    if platforms is not None:
        platforms = _string_list(platforms, "platforms", where("platforms"),
                                 '["linux-64", "osx-arm64"]')
    pypi = ()
    if "pypi-dependencies" in data:
        from coex.lib.pypi import clean_requirements

        origin_pypi = where("pypi-dependencies")
        pypi = tuple(clean_requirements(
            _string_list(data["pypi-dependencies"], "pypi-dependencies", origin_pypi,
                         '["rich >=13"]'), origin_pypi))
    first = _key_line(content, "dependencies", start)
    lines = tuple(_value_line(content, s, first) for s in data["dependencies"])
    return specs, lines, channels, platforms, None, pypi


def _parse_conda_execute(origin: str, start: int, content: list[tuple[int, str]]):
    import textwrap

    import yaml

    from coex.lib.envspec import yaml_error_text

    text = textwrap.dedent("\n".join(text for _, text in content))
    try:
        data = yaml.safe_load(text) if text.strip() else None
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        line = content[mark.line][0] if mark is not None and mark.line < len(content) else start
        why = re.sub(r"\n *line \d+, column \d+:", "", yaml_error_text(e))  # (of the block)
        raise CoexError("{}:{}: the `# conda execute` header is not valid YAML:\n{}\nIt looks "
                        "like:\n  # conda execute\n  # env:\n  #  - python >=3.11\n  # channels:\n"
                        "  #  - conda-forge".format(origin, line, why))
    if not isinstance(data, dict):
        raise CoexError("{}:{}: the `# conda execute` header must be a mapping with `env:` (a "
                        "list of conda match specs) and `channels:`, e.g.\n  # env:\n"
                        "  #  - python >=3.11".format(origin, start))

    def where(key):
        return "{}:{}".format(origin, _key_line(content, key, start))

    unknown = [str(k) for k in data if k not in _EXECUTE_KEYS]
    if unknown:
        raise CoexError("{}: unknown key `{}` in the `# conda execute` header; it may have {}."
                        .format(where(unknown[0]), unknown[0],
                                ", ".join("`{}`".format(k) for k in _EXECUTE_KEYS)))
    if not data.get("env"):
        raise CoexError("{}:{}: the `# conda execute` header has no `env:` list of conda match "
                        "specs, e.g.\n  # env:\n  #  - python >=3.11".format(origin, start))
    specs = _string_list(data["env"], "env", where("env"), "`#  - numpy`")
    channels = _string_list(data.get("channels") or [], "channels", where("channels"),
                            "`#  - conda-forge`")
    run_with = data.get("run_with")
    if run_with is not None:
        if not isinstance(run_with, str) or not run_with.strip():
            raise CoexError("{}: `run_with` must be the command that runs the script, e.g. "
                            "`# run_with: python -u`.".format(where("run_with")))
        run_with = tuple(shlex.split(run_with))
    first = _key_line(content, "env", start)
    lines = tuple(_value_line(content, s, first) for s in data["env"])
    return specs, lines, channels, None, run_with, ()


def parse_script(text: str, origin: str) -> Optional[ScriptHeader]:
    """The header of a script's text (`origin` names it in messages), or None when it has
    none. A malformed header is a CoexError naming the line."""
    lines = text.splitlines()
    shebang = None
    if lines and lines[0].startswith("#!"):
        shebang = tuple(lines[0][2:].split()) or None
    blocks = _blocks(lines, origin)
    for kind, found in blocks.items():
        if len(found) > 1:
            raise CoexError("{}: two `# /// {}` blocks (lines {} and {}): keep one.".format(
                origin, kind, found[0][0], found[1][0]))
    script_block = blocks.get("script")
    if script_block:
        start, content = script_block[0]
        try:
            data = _toml_loads("\n".join(t for _, t in content))
        except Exception:
            data = {}
        if data.get("dependencies"):
            raise CoexError(
                "{}:{}: the `# /// script` block lists PyPI `dependencies`: coex runs a script "
                "in a conda environment, given by a `# /// conda` block, whose "
                "`pypi-dependencies` take PyPI requirements, e.g.\n  # /// conda\n  # "
                "dependencies = [\"python 3.11.*\", \"numpy\"]\n  # pypi-dependencies = "
                "[\"requests\"]\n  # channels = [\"conda-forge\"]\n  # ///"
                .format(origin, _key_line(content, "dependencies", start)))
    execute = [i for i, line in enumerate(lines) if line.strip() == "# conda execute"]
    if len(execute) > 1:
        raise CoexError("{}: two `# conda execute` headers (lines {} and {}): keep one.".format(
            origin, execute[0] + 1, execute[1] + 1))
    conda = blocks.get("conda")
    if execute and conda:
        raise CoexError(
            "{}: both a `# conda execute` header (line {}) and a `# /// conda` block (line {}): "
            "keep one.".format(origin, execute[0] + 1, conda[0][0]))
    if conda:
        start, content = conda[0]
        parsed = _parse_pep723(origin, start, content)
        fmt = PEP723
    elif execute:
        start = execute[0] + 1
        content = []
        for number in range(start, len(lines)):
            comment = _comment_text(lines[number])
            if comment is None:
                break
            content.append((number + 1, comment))
        parsed = _parse_conda_execute(origin, start, content)
        fmt = CONDA_EXECUTE
    else:
        return None
    specs, spec_lines, channels, platforms, run_with, pypi = parsed
    # the same spec twice is one (its first line)
    seen: dict[str, int] = {}
    for spec, line in zip(specs, spec_lines):
        seen.setdefault(spec, line)
    return ScriptHeader(origin, fmt, start, tuple(seen), tuple(seen.values()), channels,
                        platforms, run_with, shebang, pypi)


_SPEC_NAME = re.compile(r"\s*(?:[^\s:]+::)?([A-Za-z0-9_.-]+)")


def spec_package(spec: str) -> str:
    """The package a (clean) match spec names, as conda writes it first (`conda-forge::numpy
    >=1` -> numpy), lowercased: for comparing specs without py-rattler (in the Pants process)."""
    m = _SPEC_NAME.match(spec)
    return m.group(1).lower() if m else spec


def read_script(path: str) -> tuple[bytes, ScriptHeader]:
    """A script's bytes and its header; a missing file or header is a CoexError."""
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as e:
        raise CoexError("Cannot read the script {}: {}.".format(path, e.strerror or e))
    header = parse_script(data.decode("utf-8", "surrogateescape"), path)
    if header is None:
        raise CoexError(
            "{} has no environment header: add one, e.g.\n  # /// conda\n  # dependencies = "
            "[\"python 3.11.*\"]\n  # channels = [\"conda-forge\"]\n  # ///\n(or conda-execute's "
            "`# conda execute` / `# env:` / `# channels:` lines).".format(path))
    return data, header


def check_header_specs(header: ScriptHeader) -> None:
    """Each spec parsed by py-rattler; a bad one is reported with its line."""
    from coex.lib.envspec import check_specs

    for spec, line in zip(header.specs, header.spec_lines):
        check_specs([spec], header.where(line))


def _interpreter(words: tuple[str, ...]) -> tuple[bool, tuple[str, ...]]:
    """(looked up on PATH, words) of a shebang: `/usr/bin/env [-S] prog args` is prog looked up,
    `/path/prog args` the path itself."""
    if os.path.basename(words[0]) == "env":
        rest = words[1:]
        if rest and rest[0] == "-S":
            rest = rest[1:]
        return True, rest
    return False, words


def script_command(header: ScriptHeader, name: str, programs: Collection[str]) -> str:
    """The entry point that runs the script `name` (its path in the app layer), given the
    programs the environment has (`bin/` names). In order:

    * conda-execute's `run_with`, or else the shebang (unless it is coex's own, such as
      `#!/usr/bin/env coex-run`): a program the environment has runs from it (`#!/usr/bin/env
      python3` and `#!/usr/bin/python3` both mean the environment's python3); any other is the
      host's (`/bin/bash`, or `/usr/bin/env prog`: looked up on the activated PATH);
    * else the extension (EXTENSIONS): the environment's program (`.py` -> python, `.R` ->
      Rscript, ...), except that `.sh`/`.bash` fall back to the host's shell.
    """
    words = header.run_with
    if words is None and header.shebang:
        looked_up, rest = _interpreter(header.shebang)
        if rest and os.path.basename(rest[0]) not in COEX_SHEBANGS:
            words = rest if looked_up else header.shebang
            if not looked_up and os.path.basename(words[0]) in programs:
                words = (os.path.basename(words[0]),) + tuple(words[1:])
    if words:
        prog, args = words[0], list(words[1:])
        if "/" not in prog and prog not in programs:
            prog_words = ["/usr/bin/env", prog]
        else:
            prog_words = [prog]
        return shlex.join(prog_words + args + [name])
    ext = os.path.splitext(name)[1]
    prog = EXTENSIONS.get(ext) or EXTENSIONS.get(ext.lower())
    if prog is None:
        raise CoexError(
            "{}: cannot tell which program runs it: it has no shebang and its extension is not "
            "one of {}. Add a shebang (e.g. `#!/usr/bin/env python`) or a conda-execute "
            "`# run_with: PROGRAM` line.".format(header.origin, " ".join(sorted(EXTENSIONS))))
    if prog not in programs and prog in HOST_SHELLS:
        return shlex.join(shlex.split(HOST_SHELLS[prog]) + [name])
    return shlex.join([prog, name])
