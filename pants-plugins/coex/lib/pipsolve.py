"""Resolving PyPI requirements against a locked conda environment, with pip's own resolver.

For each platform of a lock, after the conda solve, `resolve_wheels` runs the build Python's pip
(22.2 or newer) as

    pip install --dry-run --report REPORT --only-binary=:all: --python-version X.Y.Z
        --implementation cp --abi cpXY --platform <each tag of the platform> ...
        [--index-url URL --extra-index-url URL... | --no-index] [--find-links DIR/URL]...
        -r requirements.txt

in a small wrapper (`_PIP`) that makes pip see the target instead of the build machine:

* markers are evaluated against the target's marker environment (`pypi.marker_environment`:
  its python version, `sys_platform`, `platform_machine`, ...), not the interpreter pip runs on;
* the "installed" distributions pip sees are the conda environment's own (stub `.dist-info`s of
  `pypi.conda_provides`): a dependency a conda package meets is not locked again; one it does not
  meet (another version is needed) is an error naming both.

pip runs isolated from the machine's pip configuration (`PIP_CONFIG_FILE=/dev/null`, no `PIP_*`
variables: the lock's inputs alone say where wheels come from), with `--cert` the CA bundle
Python's ssl uses (pip's own bundle would not know a TLS-inspecting proxy's CA; `PIP_CERT` or
`SSL_CERT_FILE` say which one to use). Each wheel pip chooses is recorded with its URL, sha256 (from
the index, else computed), size (a HEAD request, else the download), requires_dist and
requires_python. When pip finds no wheel for a requirement, `diagnose` lists the project's files
on the indexes and find-links to say why: it has only source distributions, or wheels for other
platforms or Pythons only, or does not exist.
"""
from __future__ import annotations

import collections
import hashlib
import html.parser
import json
import os
import re
import shutil
import ssl
import subprocess
import sys
import tempfile
import urllib.error
import urllib.parse
import urllib.request
from typing import Iterable, Optional, Sequence

from coex.lib import pypi
from coex.lib.channels import locate, placeholder_url
from coex.lib.errors import CoexError
from coex.lib.fetch import url_to_path
from coex.lib.records import ChannelLocations, LockedWheel, PypiSettings

MIN_PIP = (22, 2)  # `pip install --dry-run --report`

# Run by the build Python: pip, seeing the target's markers and the conda environment's
# distributions as installed. argv[1]: a JSON file {"markers", "site", "argv"}.
_PIP = r"""
import json, sys
spec = json.load(open(sys.argv[1]))
from pip._vendor.packaging import markers
target = spec["markers"]
markers.default_environment = lambda: dict(target)
try:
    from pip._internal.models import installation_report
    installation_report.default_environment = markers.default_environment
except (ImportError, AttributeError):
    pass
from pip._internal import metadata
def installed():
    return metadata.get_environment([spec["site"]])
metadata.get_default_environment = installed
import pip._internal.req.req_install as req_install
import pip._internal.resolution.resolvelib.factory as factory
req_install.get_default_environment = installed
factory.get_default_environment = installed
from pip._internal.cli.main import main
sys.exit(main(spec["argv"]))
"""


def cafile() -> Optional[str]:
    """The CA bundle for pip and the index queries: `PIP_CERT`, `SSL_CERT_FILE`,
    `REQUESTS_CA_BUNDLE`, else the one Python's ssl module uses by default; None: pip's own."""
    for var in ("PIP_CERT", "SSL_CERT_FILE", "REQUESTS_CA_BUNDLE"):
        path = os.environ.get(var)
        if path and os.path.isfile(path):
            return path
    paths = ssl.get_default_verify_paths()
    for path in (paths.cafile, paths.openssl_cafile):
        if path and os.path.isfile(path):
            return path
    return None


def check_pip(python: str = sys.executable) -> str:
    """The version of the build Python's pip; a CoexError when it has none, or one older than
    22.2."""
    r = subprocess.run([python, "-c", "import pip; print(pip.__version__)"],
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, universal_newlines=True,
                       env=_pip_env())
    version = r.stdout.strip()
    try:
        ok = r.returncode == 0 and tuple(int(x) for x in version.split(".")[:2]) >= MIN_PIP
    except ValueError:
        ok = False
    if not ok:
        raise CoexError(
            "Locking PyPI requirements needs pip {} or newer in {} (the Python coex's build "
            "library runs on), which {}. Install it: `{} -m pip install 'pip>={}'`.".format(
                ".".join(map(str, MIN_PIP)), python,
                "has pip {}".format(version) if r.returncode == 0 else "has no pip", python,
                ".".join(map(str, MIN_PIP))))
    return version


def _pip_env() -> dict:
    """The environment pip runs in: the machine's pip configuration (files and `PIP_*`
    variables) left out; proxies and PYTHONPATH kept."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PIP_")}
    env.update(PIP_CONFIG_FILE=os.devnull, PIP_DISABLE_PIP_VERSION_CHECK="1", PIP_NO_INPUT="1",
               PYTHONNOUSERSITE="1")
    return env


def _stub_site(site: str, provided: dict) -> None:
    """`.dist-info` stubs (METADATA with name and version only) of the conda environment's
    Python distributions: what pip sees as installed."""
    for name, (_, version) in sorted(provided.items()):
        d = os.path.join(site, "{}-{}.dist-info".format(name.replace("-", "_"), version))
        os.makedirs(d)
        with open(os.path.join(d, "METADATA"), "w", encoding="utf-8") as f:
            f.write("Metadata-Version: 2.1\nName: {}\nVersion: {}\n".format(name, version))
        with open(os.path.join(d, "INSTALLER"), "w", encoding="utf-8") as f:
            f.write("conda\n")


def pip_argv(requirements_file: str, report: str, platform: str, target: pypi.PythonTarget,
             tags: Sequence[str], settings: PypiSettings, locations: ChannelLocations) -> list:
    argv = ["install", "--dry-run", "--report", report, "--only-binary=:all:",
            "--python-version", target.version, "--implementation", target.implementation,
            "--abi", target.abi, "--no-cache-dir", "--progress-bar", "off",
            "--no-warn-script-location", "--disable-pip-version-check", "--quiet"]
    for tag in tags:
        argv += ["--platform", tag]
    if settings.indexes:
        argv += ["--index-url", settings.indexes[0]]
        for extra in settings.indexes[1:]:
            argv += ["--extra-index-url", extra]
    else:
        argv.append("--no-index")
    for link in settings.find_links:
        where = locate(link, locations, "The PyPI --find-links {}".format(link))
        argv += ["--find-links", url_to_path(where) or where]
    ca = cafile()
    if ca:
        argv += ["--cert", ca]
    return argv + ["-r", requirements_file]


def resolve_wheels(requirements: Sequence[str], settings: PypiSettings, platform: str,
                   packages: Sequence, vpkgs: Iterable[str],
                   locations: ChannelLocations = ChannelLocations(),
                   origin: str = "the PyPI requirements") -> list[LockedWheel]:
    """The wheels pip chooses for `requirements` on `platform`, next to the conda `packages`
    (records with name, version, build, depends, noarch) locked for it; `vpkgs` the virtual
    packages the lock assumes there (its `__glibc` bounds the manylinux tags)."""
    target = pypi.target_of(packages, "{} ({})".format(origin, platform))
    provided = pypi.conda_provides(packages)
    pypi.check_not_provided(requirements, provided, platform, origin)
    tags = pypi.platform_tags(platform, vpkgs)
    check_pip()
    tmp = tempfile.mkdtemp(prefix="coex-pip-")
    try:
        site = os.path.join(tmp, "site")
        os.makedirs(site)
        _stub_site(site, provided)
        reqs = os.path.join(tmp, "requirements.txt")
        with open(reqs, "w", encoding="utf-8") as f:
            f.write("".join(r + "\n" for r in requirements))
        report = os.path.join(tmp, "report.json")
        spec = {"markers": pypi.marker_environment(platform, target), "site": site,
                "argv": pip_argv(reqs, report, platform, target, tags, settings, locations)}
        with open(os.path.join(tmp, "spec.json"), "w", encoding="utf-8") as f:
            json.dump(spec, f)
        r = subprocess.run([sys.executable, "-c", _PIP, os.path.join(tmp, "spec.json")],
                           cwd=tmp, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                           universal_newlines=True, env=_pip_env())
        if r.returncode != 0 or not os.path.isfile(report):
            raise CoexError(_failure(r.stderr or r.stdout, requirements, settings, platform,
                                     target, tags, locations, origin))
        with open(report, "r", encoding="utf-8") as f:
            items = json.load(f).get("install", [])
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    wheels = [_wheel(item, platform, target, provided, items, origin) for item in items]
    links = [link for link in settings.find_links if link.startswith("coex://")]
    out = []
    for w in wheels:
        portable = placeholder_url(w.url, links, locations)
        out.append(w if portable is None else w._replace(url=portable[1]))
    return sorted((_complete(w, locations) for w in out), key=lambda w: w.name)


# a wheel pip chose, before its size is known
_Found = collections.namedtuple("_Found", "name version filename url sha256 requires_dist "
                                          "requires_python requested")


def _wheel(item: dict, platform: str, target, provided: dict, items: list, origin: str):
    meta = item.get("metadata") or {}
    name = pypi.canonical_name(meta.get("name", "?"))
    version = str(meta.get("version", "?"))
    info = item.get("download_info") or {}
    url = info.get("url", "")
    filename = urllib.parse.unquote(url.split("#", 1)[0].split("?", 1)[0].rsplit("/", 1)[-1])
    if not filename.endswith(".whl"):
        raise CoexError(
            "{}: pip resolved {} {} for {} to {}, which is not a wheel: coex installs wheels "
            "only. Use the conda package of {} instead (conda-forge has most PyPI packages), "
            "or pin a version that has a wheel.".format(origin, name, version, platform, url,
                                                         name))
    if name in provided:
        conda, conda_version = provided[name]
        needs = ["{} requires `{}`".format(pypi.canonical_name(m.get("name", "?")), d)
                 for m in (i.get("metadata") or {} for i in items)
                 for d in m.get("requires_dist") or () if pypi.requirement_name(d) == name]
        raise CoexError(
            "{}: on {}, {}, but the conda environment has {} {} (the conda package {}): pip "
            "would install {} {} from PyPI over it. Make the versions agree: constrain the conda "
            "package (e.g. `{} >=...`), or pin the requirement to a version that accepts the "
            "conda one.".format(origin, platform, "; ".join(needs) or "the requirements need "
                                + name, name, conda_version, conda, name, version, conda))
    hashes = (info.get("archive_info") or {}).get("hashes") or {}
    sha256 = hashes.get("sha256")
    if sha256 is None:
        h = (info.get("archive_info") or {}).get("hash") or ""
        sha256 = h.split("=", 1)[1] if h.startswith("sha256=") else None
    return _Found(name, version, filename, url.split("#", 1)[0], sha256,
                  tuple(meta.get("requires_dist") or ()), meta.get("requires_python"),
                  bool(item.get("requested")))


def _complete(w, locations: ChannelLocations) -> LockedWheel:
    """The LockedWheel of a wheel pip chose: its size (and sha256, when the index gave none)."""
    where = locate(w.url, locations, "The wheel {}".format(w.filename))
    path = url_to_path(where)
    sha256, size = w.sha256, None
    if path is not None:
        try:
            size = os.path.getsize(path)
            if sha256 is None:
                h = hashlib.sha256()
                with open(path, "rb") as f:
                    for block in iter(lambda: f.read(1 << 20), b""):
                        h.update(block)
                sha256 = h.hexdigest()
        except OSError as e:
            raise CoexError("Cannot read the wheel {}: {}.".format(path, e.strerror or e))
    else:
        if sha256 is not None:
            size = _head_size(where)
        if size is None:
            sha256, size = _download_digest(where, w.filename)
    return LockedWheel(w.name, w.version, w.filename, w.url, sha256.lower(), size,
                       w.requires_dist, w.requires_python, w.requested)


def _context():
    ca = cafile()
    return ssl.create_default_context(cafile=ca) if ca else None


def _head_size(url: str) -> Optional[int]:
    try:
        req = urllib.request.Request(url, method="HEAD", headers={"User-Agent": "coex"})
        with urllib.request.urlopen(req, timeout=60, context=_context()) as resp:
            length = resp.headers.get("Content-Length")
    except (urllib.error.URLError, OSError, ValueError):
        return None
    return int(length) if length and length.isdigit() else None


def _download_digest(url: str, filename: str) -> tuple[str, int]:
    h, n = hashlib.sha256(), 0
    try:
        req = urllib.request.Request(url, headers={"User-Agent": "coex"})
        with urllib.request.urlopen(req, timeout=60, context=_context()) as resp:
            for block in iter(lambda: resp.read(1 << 20), b""):
                h.update(block)
                n += len(block)
    except (urllib.error.URLError, OSError, ValueError) as e:
        raise CoexError("Cannot download the wheel {} from {} (to learn its size and sha256): "
                        "{}.".format(filename, url, getattr(e, "reason", e)))
    return h.hexdigest(), n


# ------------------------------------------------------------------------------------------------
# when pip finds nothing: why
# ------------------------------------------------------------------------------------------------

_NOT_FOUND = re.compile(r"(?:Could not find a version that satisfies the requirement|"
                        r"No matching distribution found for) ([A-Za-z0-9][A-Za-z0-9._-]*)"
                        r"(?:\[[^\]]*\])?(\S*)([^\n]*)")


def _failure(output: str, requirements, settings: PypiSettings, platform: str, target, tags,
             locations: ChannelLocations, origin: str) -> str:
    text = "\n".join(line for line in output.strip().splitlines()
                     if not line.startswith(("WARNING: Running pip as", "[notice]")))
    m = _NOT_FOUND.search(output)
    head = "{}: pip cannot resolve the PyPI requirements for {} ({} {}, {}):".format(
        origin, platform, "CPython" if target.implementation == "cp" else "PyPy",
        target.version, tags[0] if tags else platform)
    if m is None:
        return "{}\n{}".format(head, _indent(text or "pip failed without saying why"))
    name = pypi.canonical_name(m.group(1))
    found = re.search(r"\(from versions: ([^)]*)\)", m.group(3))
    versions = found.group(1).strip() if found else ""
    if versions and versions != "none":
        return ("{} no version of {} that has a wheel for it satisfies {}{} (versions with a "
                "wheel for it: {}).\n{}".format(head, name, name, m.group(2) or "", versions,
                                                _indent(text)))
    files = project_files(name, settings, locations)
    where = ", ".join(list(settings.indexes) + list(settings.find_links)) or "no index"
    if not files:
        why = ("there is no project named {} on {}: check the name (PyPI names: "
               "https://pypi.org/project/<name>/).".format(name, where))
    elif not any(f.endswith(".whl") for f in files):
        why = ("{} has only source distributions (e.g. {}) on {}, and coex installs wheels only "
               "(no builds at install time). Use the conda package of {} instead (most PyPI "
               "packages are on conda-forge), or build a wheel (`pip wheel --no-deps {}`) and "
               "add its directory with `--find-links`.".format(
                   name, sorted(files)[-1], where, name, name))
    else:
        have = sorted({"-".join(f[:-4].split("-")[-3:]) for f in files if f.endswith(".whl")})
        why = ("{} has wheels on {}, but none for this platform and Python: it needs one of the "
               "tags {}-{}/abi3/none-{} (or py3-none-any); its wheels are tagged {}. Pin a "
               "version that has such a wheel, or use the conda package of {}.".format(
                   name, where, target.implementation + target.abi[2:].rstrip("t"), target.abi,
                   "/".join(tags[:1] + tags[-1:]) if tags else platform,
                   ", ".join(have[-8:]), name))
    return "{} {}".format(head, why)


def _indent(text: str) -> str:
    return "\n".join("  " + line for line in text.splitlines())


class _Links(html.parser.HTMLParser):
    def __init__(self):
        super().__init__()
        self.hrefs = []

    def handle_starttag(self, tag, attrs):
        if tag == "a":
            href = dict(attrs).get("href")
            if href:
                self.hrefs.append(href)


def _filename(href: str) -> str:
    return urllib.parse.unquote(href.split("#", 1)[0].split("?", 1)[0].rstrip("/").rsplit("/", 1)[-1])


def _read_url(url: str, accept: str) -> Optional[tuple[str, str]]:
    try:
        req = urllib.request.Request(url, headers={"User-Agent": "coex", "Accept": accept})
        with urllib.request.urlopen(req, timeout=30, context=_context()) as resp:
            return resp.headers.get("Content-Type", ""), resp.read().decode("utf-8", "replace")
    except (urllib.error.URLError, OSError, ValueError):
        return None


def project_files(name: str, settings: PypiSettings,
                  locations: ChannelLocations = ChannelLocations()) -> list[str]:
    """The file names of project `name` on the indexes (PEP 691 JSON, else PEP 503 HTML) and in
    the find-links (directories or HTML pages); [] when none (or none can be read)."""
    name = pypi.canonical_name(name)
    out = set()

    def mine(filename):
        stem = filename[:-4] if filename.endswith(".whl") else re.sub(
            r"\.(tar\.gz|tar\.bz2|zip|tgz)$", "", filename)
        if stem == filename and not filename.endswith(".whl"):
            return False
        head = stem.split("-")[0] if filename.endswith(".whl") else stem.rsplit("-", 1)[0]
        return pypi.canonical_name(head) == name

    for index in settings.indexes:
        got = _read_url("{}/{}/".format(index.rstrip("/"), name),
                        "application/vnd.pypi.simple.v1+json, text/html;q=0.1")
        if got is None:
            continue
        ctype, body = got
        if "json" in ctype:
            try:
                out.update(f["filename"] for f in json.loads(body).get("files", []))
            except (ValueError, KeyError, TypeError, AttributeError):
                pass
        else:
            parser = _Links()
            parser.feed(body)
            out.update(_filename(h) for h in parser.hrefs)
    for link in settings.find_links:
        where = locate(link, locations, "The PyPI --find-links {}".format(link))
        path = url_to_path(where)
        if path is not None:
            if os.path.isdir(path):
                out.update(n for n in os.listdir(path) if mine(n))
            continue
        got = _read_url(where, "text/html")
        if got is not None:
            parser = _Links()
            parser.feed(got[1])
            out.update(_filename(h) for h in parser.hrefs)
    return sorted(f for f in out if mine(f))
