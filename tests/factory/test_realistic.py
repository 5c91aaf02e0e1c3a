"""The realistic channel: real CPython 3.11 repackaged, real wheels converted, real zstd; installed
with py-rattler, everything runs from the new prefix."""
import json
import os
import subprocess
import threading
import zipfile

import pytest

from tests.factory import realistic
from tests.factory.fixtures import rattler_install, rattler_solve

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def env(realistic_channel, tmp_path_factory):
    prefix = tmp_path_factory.mktemp("real") / ("env_" + "y" * 80)
    recs = rattler_install(realistic_channel.as_uri(), realistic.SPECS, prefix)
    return prefix, {r.name.normalized: r for r in recs}


def run(*cmd):
    # a clean environment: nothing may leak in from the test runner's python
    return subprocess.run([str(c) for c in cmd], capture_output=True, text=True, timeout=120,
                          env={"PATH": "/usr/bin:/bin", "LC_ALL": "C.UTF-8"})


def _shebang(path):
    """First two lines (rattler rewrites shebangs over 127 chars into a /bin/sh exec trick)."""
    return "".join(path.read_text().splitlines(True)[:2])


def test_channel_contents(realistic_channel):
    names = sorted(p.name for p in realistic_channel.glob("*/*") if p.name != "repodata.json")
    assert names == ["cprefix-1.0-h0_0.tar.bz2", "numpy-1.26.4-py311_whl_0.conda",
                     "pyflakes-3.2.0-pyh_whl_0.tar.bz2", "python-3.11.7-h0_pyenv.conda",
                     "python-3.12.1-h0_pyenv.conda", "zstd-1.5.4-h0_system.conda"]
    repo = json.loads((realistic_channel / "linux-64" / "repodata.json").read_text())
    assert repo["packages.conda"]["numpy-1.26.4-py311_whl_0.conda"]["depends"] == ["python 3.11.*"]
    assert "__glibc >=2.17" in repo["packages.conda"]["python-3.11.7-h0_pyenv.conda"]["depends"]


def test_ensure_is_cached(realistic_channel):
    assert realistic_channel.name == "realistic-" + realistic.cache_key()
    assert realistic.ensure() == realistic_channel
    assert (realistic_channel / ".coex-complete").exists()


def test_python_runs_relocated(env):
    prefix, recs = env
    assert str(recs["python"].version) == "3.11.7"
    r = run(prefix / "bin/python", "-c",
            "import sys, sysconfig, ssl, sqlite3, ctypes, json; "
            "print(sys.prefix); print(sys.executable); print(sysconfig.get_config_var('prefix'))")
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines() == [str(prefix), str(prefix / "bin/python"), str(prefix)]
    assert run(prefix / "bin/python3.11-config", "--prefix").stdout.strip() == str(prefix)
    assert "%s/bin/python3.11" % prefix in _shebang(prefix / "bin/pydoc3.11")
    assert run(prefix / "bin/pydoc3.11", "json").stdout.startswith("Help on package json")
    assert not (prefix / "lib/python3.11/test").exists()
    sysconfigdata = next((prefix / "lib/python3.11").glob("_sysconfigdata_*.py")).read_text()
    assert ".pyenv" not in sysconfigdata and str(prefix) in sysconfigdata


def test_numpy_imports_and_computes(env):
    prefix, _ = env
    r = run(prefix / "bin/python", "-c",
            "import numpy as np; print(np.__file__); print(int(np.arange(10).sum())); "
            "print(np.linalg.inv(np.array([[2.0, 0], [0, 4.0]])).tolist())")
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines() == [
        str(prefix / "lib/python3.11/site-packages/numpy/__init__.py"), "45", "[[0.5, 0.0], [0.0, 0.25]]"]
    assert "%s/bin/python3.11" % prefix in _shebang(prefix / "bin/f2py")
    r = run(prefix / "bin/f2py", "-v")
    assert r.returncode == 0 and r.stdout.strip() == "1.26.4", r.stderr


def test_console_script_runs(env, tmp_path):
    prefix, _ = env
    assert run(prefix / "bin/pyflakes", "--version").stdout.startswith("3.2.0 Python 3.11.7")
    bad = tmp_path / "x.py"
    bad.write_text("import os\n")
    r = run(prefix / "bin/pyflakes", bad)
    assert r.returncode == 1 and "'os' imported but unused" in r.stdout
    assert (prefix / "lib/python3.11/site-packages/pyflakes/api.py").is_file()


def test_second_python_gets_noarch_packages(realistic_channel, tmp_path):
    prefix = tmp_path / "p312"
    recs = rattler_install(realistic_channel.as_uri(), realistic.SPECS_312, prefix)
    assert {r.name.normalized: str(r.version) for r in recs}["python"] == "3.12.1"
    assert (prefix / "lib/python3.12/site-packages/pyflakes/api.py").is_file()
    assert run(prefix / "bin/pyflakes", "--version").stdout.startswith("3.2.0 Python 3.12.1")
    r = run(prefix / "bin/python3", "-c", "import sys; print(sys.prefix)")
    assert r.stdout.strip() == str(prefix), r.stderr


def test_c_program_and_config(env):
    prefix, _ = env
    assert run(prefix / "bin/cprefix").stdout == "%s\n" % prefix
    assert (prefix / "etc/cprefix.conf").read_text() == "prefix=%s\n" % prefix


def test_zstd_decompresses(env, tmp_path):
    prefix, _ = env
    import zstandard

    data = b"realistic coex " * 5000
    (tmp_path / "d.zst").write_bytes(zstandard.ZstdCompressor(level=3).compress(data))
    r = subprocess.run([str(prefix / "bin/zstd"), "-dc", str(tmp_path / "d.zst")], capture_output=True)
    assert r.returncode == 0 and r.stdout == data
    assert os.readlink(str(prefix / "lib/libzstd.so.1")) == "libzstd.so.1.5.4"


def test_unsolvable_spec(realistic_channel):
    from rattler.exceptions import SolverError

    with pytest.raises(SolverError):
        rattler_solve(realistic_channel.as_uri(), ["numpy", "python 3.12.*"])


def test_wheel_conversion_is_deterministic(tmp_path):
    for whl in realistic.fetch_wheels():
        a = realistic.wheel_to_conda(whl, tmp_path / "a")
        b = realistic.wheel_to_conda(whl, tmp_path / "b")
        assert a.read_bytes() == b.read_bytes()
        with zipfile.ZipFile(a) as zf:
            assert zf.namelist()[0] == "metadata.json"


def test_ensure_builds_once_under_concurrency(tmp_path, monkeypatch):
    """Two concurrent ensure() calls: one build, both get the same finished dir."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    monkeypatch.setattr(realistic, "cache_key", lambda: "testkey")
    calls = []

    def fake_build(dest):
        calls.append(dest)
        dest.mkdir(parents=True)
        threading.Event().wait(0.3)
        (dest / "marker").write_text("x")
        return dest

    monkeypatch.setattr(realistic, "build", fake_build)
    results = []
    ts = [threading.Thread(target=lambda: results.append(realistic.ensure())) for _ in range(2)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    assert len(calls) == 1
    final = tmp_path / "coex-test-channels" / "realistic-testkey"
    assert results == [final, final] and (final / "marker").exists()
    assert not [p for p in final.parent.iterdir() if ".tmp-" in p.name]


def test_old_channels_are_pruned(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    monkeypatch.setattr(realistic, "cache_key", lambda: "newkey")
    monkeypatch.setattr(realistic, "build", lambda dest: dest.mkdir(parents=True) or dest)
    root = tmp_path / "coex-test-channels"
    for name, age in (("realistic-old", 3 * 86400), ("realistic-young", 60)):
        (root / name).mkdir(parents=True)
        (root / name / ".coex-complete").write_text("ok\n")
        t = os.path.getmtime(str(root / name / ".coex-complete")) - age
        os.utime(str(root / name / ".coex-complete"), (t, t))
    assert realistic.ensure() == root / "realistic-newkey"
    assert not (root / "realistic-old").exists() and (root / "realistic-young").exists()
