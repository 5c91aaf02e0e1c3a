"""environment.yml -> EnvSpec(name, channels, specs, origin).

Accepted keys: `name`, `channels`, `dependencies` (conda match specs, and one `pip:` list of
PyPI requirements and pip index options: `coex.lib.pypi.parse_pip_section`), and `prefix`
(written by `conda env export`; ignored). Anything else -- `variables:`, an unknown key, a spec
py-rattler cannot parse, a requirement coex cannot lock -- is a CoexError naming the file and the
fix.

`parse_environment_text` and `clean_specs` are pure (the Pants rules call them in-process);
`check_specs` parses the specs with py-rattler (in the solve, and in `./coex`).
"""
from __future__ import annotations

import collections
import os
from typing import Iterable, Optional

from coex.lib.errors import CoexError

EnvSpec = collections.namedtuple("EnvSpec", "name channels specs origin pypi pip_options")
EnvSpec.__new__.__defaults__ = ((), None)  # (no `pip:` section)

_KNOWN_KEYS = ("name", "channels", "dependencies", "prefix")


def clean_specs(specs: Iterable[str], origin: str) -> list[str]:
    """The specs stripped (inner whitespace normalized), in order, deduplicated; anything that
    is not a non-empty string is a CoexError naming `origin`."""
    out = []
    for spec in specs:
        if not isinstance(spec, str) or not spec.strip():
            raise CoexError(
                "{}: dependency {!r} is not a conda match spec string (e.g. `numpy >=1.26` or "
                "`python=3.11`).".format(origin, spec))
        spec = " ".join(spec.split())
        if spec not in out:
            out.append(spec)
    return out


def check_specs(specs: Iterable[str], origin: str) -> list[str]:
    """`clean_specs`, each parsed with py-rattler's MatchSpec as the solver parses it. A bad spec
    raises CoexError quoting py-rattler's explanation and naming `origin`."""
    from rattler import MatchSpec
    from rattler.exceptions import InvalidMatchSpecError

    out = clean_specs(specs, origin)
    for spec in out:
        try:
            MatchSpec(spec, strict=True)
        except (InvalidMatchSpecError, ValueError) as e:
            raise CoexError(
                "{}: invalid conda match spec {!r}: {}\nFix the spec (conda syntax, e.g. "
                "`numpy >=1.26,<2` or `python 3.11.*`).".format(origin, spec, e))
    return out


def yaml_error_text(error: Exception) -> str:
    """PyYAML's message, indented, on its own lines: each `^` marker stays under the character it
    points at (the quoted source line above it is indented the same)."""
    text = str(error).replace('in "<unicode string>", ', "").replace('in "<file>", ', "")
    return "\n".join("  " + line if line.strip() else "" for line in text.splitlines())


def parse_environment_text(text: str, origin: str, base_dir: Optional[str] = None) -> EnvSpec:
    """Parse environment.yml content; `origin` names it in messages (usually its path);
    `base_dir` is the file's directory (what a relative `--find-links` is relative to)."""
    import yaml

    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise CoexError(
            "{} is not valid YAML:\n{}\nAn environment file looks like:\n"
            "  channels: [conda-forge]\n  dependencies: [python=3.11, numpy]".format(
                origin, yaml_error_text(e)))
    if not isinstance(data, dict):
        raise CoexError(
            "{} must be a YAML mapping with `channels:` and `dependencies:` keys, got {}.".format(
                origin, type(data).__name__ if data is not None else "an empty document"))
    if "variables" in data:
        raise CoexError(
            "{}: `variables:` is not supported yet; set program environment variables with the "
            "coex_binary `env` field instead.".format(origin))
    unknown = sorted(str(k) for k in data if k not in _KNOWN_KEYS)
    if unknown:
        raise CoexError(
            "{}: unknown key(s) {}; an environment file may only have {}.".format(
                origin, ", ".join(repr(k) for k in unknown), ", ".join(_KNOWN_KEYS[:3])))
    name = data.get("name")
    if name is not None and not isinstance(name, str):
        raise CoexError("{}: `name` must be a string.".format(origin))
    channels = data.get("channels") or []
    if not isinstance(channels, list) or not all(isinstance(c, str) and c.strip() for c in channels):
        raise CoexError(
            "{}: `channels` must be a list of channel names or URLs (e.g. conda-forge, "
            "file:///srv/channel).".format(origin))
    channels = [c.strip() for c in channels if c.strip() != "nodefaults"]
    deps = data.get("dependencies")
    if deps is None or deps == []:
        raise CoexError(
            "{} has no dependencies: add a `dependencies:` list of conda match specs, e.g.\n"
            "  dependencies:\n    - python=3.11".format(origin))
    if not isinstance(deps, list):
        raise CoexError("{}: `dependencies` must be a list of conda match specs.".format(origin))
    specs, pip = [], None
    for dep in deps:
        if isinstance(dep, dict):
            if set(dep) == {"pip"}:
                if pip is not None:
                    raise CoexError("{}: two `pip:` sections: merge them into one.".format(origin))
                pip = dep["pip"]
                continue
            raise CoexError(
                "{}: unexpected mapping {!r} in `dependencies`; list conda match specs only."
                .format(origin, dep))
        specs.append(dep)
    pypi, options = (), None
    if pip is not None:
        from coex.lib.pypi import clean_requirements, parse_pip_section

        reqs, options = parse_pip_section(pip, origin + " (`pip:`)", base_dir)
        pypi = tuple(clean_requirements(reqs, origin + " (`pip:`)"))
    return EnvSpec(name, channels, clean_specs(specs, origin), origin, pypi, options)


def load_environment_file(path: str) -> EnvSpec:
    """Read and parse an environment.yml file, its specs checked; a missing/unreadable file is a
    CoexError."""
    try:
        with open(path, "rb") as f:
            raw = f.read()
    except OSError as e:
        raise CoexError("Cannot read environment file {}: {}.".format(path, e.strerror or e))
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise CoexError("{} is not UTF-8 text (is it really an environment.yml?).".format(path))
    env = parse_environment_text(text, os.fspath(path), os.path.dirname(os.path.abspath(path)))
    check_specs(env.specs, env.origin)
    return env
