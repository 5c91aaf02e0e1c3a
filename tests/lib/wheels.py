"""Real wheels from PyPI for the PyPI tests, downloaded once into ~/.cache/coex-test-wheels
($COEX_TEST_WHEELS) with pip and pinned by sha256; `wheel_dir` skips the test (with the reason)
when PyPI cannot be reached and the cache does not have them yet."""
import hashlib
import os
import shutil
import subprocess
import sys

import pytest

# filename: (sha256, size, what pip downloads it as)
WHEELS = {
    "six-1.16.0-py2.py3-none-any.whl": (
        "8abb2f1d86890a2dfb989f9a77cfcfd3e47c2a354b01111771326f8aa26e0254", 11053, "six==1.16.0"),
    "mdurl-0.1.2-py3-none-any.whl": (
        "84008a41e51615a49fc9966191ff91509e3c40b939176e643fd50a5c2196b8f8", 9979, "mdurl==0.1.2"),
    "markdown_it_py-3.0.0-py3-none-any.whl": (
        "355216845c60bd96232cd8d8c40e8f9765cc86f46880e43a8fd22dc1a1a8cab1", 87528,
        "markdown-it-py==3.0.0"),
    "MarkupSafe-2.1.5-cp39-cp39-manylinux_2_17_x86_64.manylinux2014_x86_64.whl": (
        "17b950fccb810b3293638215058e432159d2b71005c74371d784862b7e4683f3", 25685,
        "MarkupSafe==2.1.5"),
}


def _sha256(path):
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def cache_dir():
    return os.environ.get("COEX_TEST_WHEELS") or os.path.expanduser("~/.cache/coex-test-wheels")


def _download(dest):
    """pip download of the pinned wheels (for CPython 3.9 on manylinux2014 x86_64) into `dest`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PIP_")}
    env["PIP_CONFIG_FILE"] = os.devnull
    r = subprocess.run(
        [sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--only-binary", ":all:",
         "--python-version", "3.9", "--implementation", "cp", "--abi", "cp39",
         "--platform", "manylinux2014_x86_64", "--timeout", "30", "-d", dest]
        + [w[2] for w in WHEELS.values()],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, universal_newlines=True, env=env)
    return r.returncode == 0, r.stdout


def wheel_dir():
    """The cache directory holding every pinned wheel, checked."""
    d = cache_dir()
    have = all(os.path.isfile(os.path.join(d, f)) and _sha256(os.path.join(d, f)) == s
               for f, (s, _, _) in WHEELS.items())
    if not have:
        tmp = d + ".tmp-%d" % os.getpid()
        ok, out = _download(tmp)
        if not ok:
            shutil.rmtree(tmp, ignore_errors=True)
            pytest.skip("PyPI is unreachable and {} lacks the test wheels: {}".format(
                d, out.strip().splitlines()[-1:] or out))
        os.makedirs(d, exist_ok=True)
        for f, (sha, _, _) in WHEELS.items():
            got = _sha256(os.path.join(tmp, f))
            assert got == sha, "{} from PyPI has sha256 {}, pinned {}".format(f, got, sha)
            os.replace(os.path.join(tmp, f), os.path.join(d, f))
        shutil.rmtree(tmp, ignore_errors=True)
    return d


def find_links(dest, *names):
    """A `--find-links` directory `dest` holding copies of the named pinned wheels."""
    src = wheel_dir()
    os.makedirs(dest, exist_ok=True)
    for f in names:
        shutil.copy(os.path.join(src, f), os.path.join(dest, f))
    return str(dest)


def pypi_or_skip(what):
    """Skip the test (naming `what` it needs PyPI for) when https://pypi.org cannot be reached."""
    import urllib.request

    try:
        urllib.request.urlopen("https://pypi.org/simple/pip/", timeout=15).close()
    except OSError as e:
        pytest.skip("PyPI is unreachable ({}): {}".format(e, what))
