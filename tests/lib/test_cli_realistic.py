"""./coex create over the realistic channel (real CPython 3.11, numpy, pyflakes, a C program)."""
import os
import subprocess

import pytest

from coex.cli import main
from coex.lib.errors import CoexError
from coex_runtime.format import open_archive
from tests.lib.test_cli import HAVE_RUNTIME

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def built(realistic_channel, tmp_path_factory):
    proj = tmp_path_factory.mktemp("realistic-proj")
    (proj / "app").mkdir()
    (proj / "app" / "calc.py").write_text(
        "import sys, numpy\n"
        "def main():\n"
        "    print('sum', int(numpy.arange(int(sys.argv[1]) + 1).sum()))\n"
        "if __name__ == '__main__':\n"
        "    main()\n")
    (proj / "environment.yml").write_text(
        "channels: [{}]\ndependencies:\n  - python 3.11.*\n  - numpy\n  - pyflakes\n"
        "  - cprefix\n".format(realistic_channel.as_uri()))
    out = proj / "calc.coex"
    cwd = os.getcwd()
    os.chdir(str(proj))
    try:
        rc = main(["create", "-f", "environment.yml", "-e", "calc=python app/calc.py",
                   "-e", "fn=app.calc:main", "-e", "pyflakes", "-e", "cprefix",
                   "-e", "jsontool=python -m json.tool", "-o", str(out),
                   "--cache-dir", str(tmp_path_factory.mktemp("cache")), "app"])
    finally:
        os.chdir(cwd)
    assert rc == 0
    return proj, out


def test_archive_record_and_size(built, realistic_channel):
    _, out = built
    with open_archive(str(out)) as ar:
        info = ar.info
        names = [p["name"] for p in info["packages"]]
        assert names.index("python") < names.index("numpy")
        assert {"python", "numpy", "pyflakes", "cprefix", "zstd"} == set(names)
        enc = {p["name"]: p["encoding"] for p in info["packages"]}
        assert enc["cprefix"] == "tar.zst" and enc["pyflakes"] == "tar.zst"
        assert enc["numpy"] == "conda" and enc["python"] == "conda"
        assert sorted(info["entry_points"]) == ["calc", "cprefix", "fn", "jsontool", "pyflakes"]
        stored = sum(p["stored_size"] for p in info["packages"])
        locked = sum(p["size"] for p in info["packages"])
    total = out.stat().st_size
    # the archive is the packages plus a small runtime: within 2% + 1 MiB (libzstd) of the lock
    assert stored <= locked * 1.02
    assert total <= locked * 1.02 + (1 << 20)


def test_stdlib_and_site_packages_modules_are_known(built, realistic_channel, tmp_path):
    proj, _ = built
    with pytest.raises(CoexError, match="names module 'numpyy'.*Did you mean: numpy"):
        main_raise(["create", "-f", str(proj / "environment.yml"), "-e", "numpyy:main",
                    "-o", str(tmp_path / "x.coex"), "--cache-dir", str(tmp_path / "c")])


def main_raise(argv):
    from coex.cli import build_parser

    args = build_parser().parse_args(argv)
    args.func(args)


@pytest.mark.skipif(not HAVE_RUNTIME, reason="coex_runtime/main.py (the launcher) has not landed")
def test_realistic_archive_runs(built, tmp_path):
    proj, out = built
    env = dict(os.environ, COEX_ROOT=str(tmp_path / "root"))

    def run(*args, **extra):
        return subprocess.run([str(out)] + list(args), env=dict(env, **extra),
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              universal_newlines=True, timeout=600)

    r = run("100")
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "sum 5050"
    r = run("10", COEX_ENTRYPOINT="fn")
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "sum 55"
    r = run("--version", COEX_ENTRYPOINT="pyflakes")
    assert r.returncode == 0, r.stderr
    assert "3.2.0" in r.stdout
    r = run(COEX_ENTRYPOINT="cprefix")
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip().startswith(str(tmp_path / "root" / "envs"))   # binary prefix replaced
