"""The wheel: what it holds, what it declares, and that a `coex` installed from it builds the
same archive, byte for byte, as the checkout's `./coex`."""
from __future__ import annotations

import email.parser
import hashlib
import os
import re
import subprocess
import zipfile
from pathlib import Path

import coex
from tests.packaging.wheel import REPO, clean_env


def _sources() -> dict[str, bytes]:
    """Every module of the two packages, as the wheel must hold them."""
    out = {}
    for top, pkg in ((REPO / "pants-plugins" / "coex", "coex"), (REPO / "coex_runtime", "coex_runtime")):
        for path in top.rglob("*.py"):
            if "__pycache__" not in path.parts:
                out[f"{pkg}/{path.relative_to(top).as_posix()}"] = path.read_bytes()
    return out


def test_wheel_holds_backend_and_runtime(coex_wheel):
    wheel = coex_wheel
    assert wheel.name == f"pants_backend_coex-{coex.__version__}-py3-none-any.whl"
    with zipfile.ZipFile(wheel) as zf:
        names = set(zf.namelist())
        py = {n for n in names if n.endswith(".py")}
        expected = _sources()
        assert py == set(expected)
        for name, data in expected.items():
            assert zf.read(name) == data, name
        meta_name = f"pants_backend_coex-{coex.__version__}.dist-info/METADATA"
        meta = email.parser.Parser().parsestr(zf.read(meta_name).decode())
        entry_points = zf.read(meta_name.replace("METADATA", "entry_points.txt")).decode()
    assert meta["Name"] == "pants-backend-coex"
    assert meta["Version"] == coex.__version__
    assert meta["Requires-Python"] == ">=3.9"
    # the dependencies are the versions the tests run with
    pins = dict(
        line.split("==") for line in (REPO / "pants-plugins" / "requirements.txt").read_text().split("\n")
        if "==" in line and not line.startswith("#")
    )
    requires = set(meta.get_all("Requires-Dist"))
    assert f"py-rattler=={pins['py-rattler']}" in requires
    assert f"zstandard=={pins['zstandard']}" in requires
    assert any(re.match(r"PyYAML<7,>=6|PyYAML>=6,<7", r) for r in requires), requires
    assert any(re.match(r"tomli>=1\.1; python_version < \"3\.11\"", r) for r in requires), requires
    assert re.search(r"^coex = coex\.entry:main$", entry_points, re.M)


def test_version_lives_in_one_place():
    import toml  # a dependency of Pants, in the test venv

    project = toml.loads((REPO / "pyproject.toml").read_text())
    assert "version" not in project["project"] and project["project"]["dynamic"] == ["version"]
    assert project["tool"]["setuptools"]["dynamic"]["version"] == {"attr": "coex.__version__"}


def test_installed_coex_builds_the_same_archive(wheel_bin, tiny_channel, tmp_path):
    """`pip install <wheel>` gives a `coex` command (no Pants, no checkout on any path) whose
    archives are byte-identical to the checkout's: the runtime comes from the installed package,
    and the installed package is the checkout's code."""
    project = tmp_path / "proj"
    (project / "src").mkdir(parents=True)
    (project / "src" / "main.py").write_text("print('hi')\n")
    (project / "environment.yml").write_text(
        f"channels: [{tiny_channel.url}]\ndependencies: [python, tinypy]\n")
    args = ["create", "-f", "environment.yml", "-e", "python src/main.py", "--cache-dir",
            str(tmp_path / "cache"), "src", "-o"]
    env = clean_env()
    version = subprocess.run([str(wheel_bin / "coex"), "--version"], env=env, text=True,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert version.returncode == 0 and version.stdout.strip() == f"coex {coex.__version__}"
    installed = subprocess.run([str(wheel_bin / "coex"), *args, "installed.coex"], cwd=project,
                               env=env, text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert installed.returncode == 0, installed.stderr
    checkout = subprocess.run([str(REPO / "coex"), *args, "checkout.coex"], cwd=project, text=True,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert checkout.returncode == 0, checkout.stderr
    a, b = (project / "installed.coex").read_bytes(), (project / "checkout.coex").read_bytes()
    assert hashlib.sha256(a).hexdigest() == hashlib.sha256(b).hexdigest()


def test_installed_coex_runs_scripts(wheel_bin, tiny_channel, tmp_path):
    """The wheel's `coex run` (its tomli dependency for `# /// conda` before Python 3.11), and
    its `coex-run` for `#!/usr/bin/env coex-run` scripts, which hands a first run to the `coex`
    beside it."""
    script = tmp_path / "hello.py"
    script.write_text("#!/usr/bin/env coex-run\n# /// conda\n"
                      f"# dependencies = [\"python\"]\n# channels = [\"{tiny_channel.url}\"]\n"
                      "# ///\nimport sys\nprint('hello', sys.argv[1:])\n")
    script.chmod(0o755)
    env = clean_env(XDG_CACHE_HOME=str(tmp_path / "xdg"), COEX_ROOT=str(tmp_path / "root"),
                    PATH=f"{wheel_bin}{os.pathsep}{os.environ['PATH']}")
    for argv in ([str(wheel_bin / "coex"), "run", "hello.py", "a"], ["./hello.py", "b"]):
        r = subprocess.run(argv, cwd=tmp_path, env=env, text=True, stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE)
        assert r.returncode == 0, r.stderr
        assert r.stdout == f"hello {argv[-1:]}\n"


def test_readme_pins_this_version():
    """The README's files (which the consumer tests use) name the version this checkout builds."""
    from tests.e2e.consumer import readme_block

    pin = f"pants-backend-coex=={coex.__version__}"
    assert pin in readme_block("pants-requirements.txt").split()
    assert f'plugins = ["{pin}"]' in readme_block("pants.toml, [GLOBAL].plugins")
    assert f"pants_backend_coex-{coex.__version__}-py3-none-any.whl" in (REPO / "README.md").read_text()
