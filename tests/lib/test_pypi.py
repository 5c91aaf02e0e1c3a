"""coex.lib.pypi: requirements, pip: options, wheel tags and markers of a conda platform, the
conda environment's own distributions (pure: no pip run)."""
import collections

import pytest

from coex.lib import pypi
from coex.lib.errors import CoexError

Pkg = collections.namedtuple("Pkg", "name version build depends noarch")
PY311 = [Pkg("python", "3.11.7", "hab00c5b_1_cpython", (), None),
         Pkg("python_abi", "3.11", "4_cp311", (), None)]


@pytest.mark.parametrize("text, want", [
    ("Rich", "rich"),
    ("  requests[socks,Brotli]  >=2.31 ,<3 ", "requests[brotli,socks]<3,>=2.31"),
    ("Foo_Bar.baz==1.0; python_version < '3.13'", 'foo-bar-baz==1.0; python_version < "3.13"'),
    ("x @ https://h/x-1.0-py3-none-any.whl", "x @ https://h/x-1.0-py3-none-any.whl"),
])
def test_canonical_requirement(text, want):
    assert pypi.canonical_requirement(text, "here") == want


@pytest.mark.parametrize("text, needle", [
    ("-e .", "an editable install"),
    ("git+https://h/r.git", "a version-control URL"),
    ("./proj", "a local project or file"),
    ("x @ https://h/x-1.0.tar.gz", "which is not a wheel"),
    ("--pre", "is a pip option"),
    ("requests[", "invalid PyPI requirement"),
])
def test_bad_requirements(text, needle):
    with pytest.raises(CoexError) as e:
        pypi.canonical_requirement(text, "env.yml")
    assert needle in str(e.value) and "env.yml" in str(e.value)


def test_merge_options():
    a = pypi.PipOptions("https://mirror/simple/", (), ("/w",), False)
    b = pypi.PipOptions(None, ("https://extra/simple",), (), False)
    assert pypi.merge_options([("a", a), ("b", b)], ["https://pypi.org/simple"]) == (
        ("https://mirror/simple", "https://extra/simple"), ("/w",))
    no = pypi.PipOptions(None, (), ("/x",), True)
    assert pypi.merge_options([("a", a), ("n", no)], ["https://pypi.org/simple"]) == (
        (), ("/w", "/x"))
    other = pypi.PipOptions("https://other/simple", (), (), False)
    with pytest.raises(CoexError, match="different `--index-url`s"):
        pypi.merge_options([("a", a), ("o", other)], [])


def test_platform_tags():
    tags = pypi.platform_tags("linux-64", ["__glibc=2.28=0"])
    assert tags[0] == "manylinux_2_28_x86_64" and tags[-1] == "manylinux1_x86_64"
    assert "manylinux2014_x86_64" in tags and "manylinux_2_29_x86_64" not in tags
    aarch = pypi.platform_tags("linux-aarch64", [])
    assert aarch[0] == "manylinux_2_17_aarch64" and "manylinux1_aarch64" not in aarch
    assert pypi.platform_tags("osx-arm64", ["__osx=13.1=0"]) == ["macosx_13_0_arm64"]
    assert pypi.platform_tags("win-64") == ["win_amd64"]
    with pytest.raises(CoexError, match="cannot be locked for the platform"):
        pypi.platform_tags("emscripten-wasm32")


def test_target_and_markers():
    t = pypi.target_of(PY311)
    assert t == pypi.PythonTarget("3.11.7", "cp", "cp311")
    env = pypi.marker_environment("linux-aarch64", t)
    assert (env["python_version"], env["platform_machine"], env["sys_platform"]) == (
        "3.11", "aarch64", "linux")
    assert pypi.marker_environment("osx-arm64", t)["platform_system"] == "Darwin"
    with pytest.raises(CoexError, match="no `python` package"):
        pypi.target_of([Pkg("zstd", "1.5", "h0", (), None)])


def test_wheel_virtual_packages():
    assert pypi.wheel_virtual_packages(
        "numpy-2.0.0-cp311-cp311-manylinux_2_17_x86_64.manylinux2014_x86_64.whl") == [
        "__glibc >=2.17"]
    assert pypi.wheel_virtual_packages("x-1-cp311-cp311-manylinux_2_28_aarch64.whl") == [
        "__glibc >=2.28"]
    assert pypi.wheel_virtual_packages("rich-13.7.1-py3-none-any.whl") == []
    with pytest.raises(CoexError, match="not a valid wheel file name"):
        pypi.parse_wheel_filename("x-1.whl")


def test_conda_provides_and_conflicts():
    pkgs = PY311 + [Pkg("pytorch", "2.1", "py311_0", ("python >=3.11,<3.12",), None),
                    Pkg("rich", "13.7.1", "pyhd_0", (), "python"),
                    Pkg("libzstd", "1.5", "h0", (), None)]
    provided = pypi.conda_provides(pkgs)
    assert provided == {"torch": ("pytorch", "2.1"), "rich": ("rich", "13.7.1")}
    pypi.check_not_provided(["httpx>=0.27"], provided, "linux-64", "env.yml")
    with pytest.raises(CoexError) as e:
        pypi.check_not_provided(["torch==2.1"], provided, "linux-64", "env.yml")
    assert "conda package pytorch 2.1" in str(e.value) and "Keep one" in str(e.value)


def test_requirement_closure_evaluates_markers_and_extras():
    W = collections.namedtuple("W", "name requires_dist")
    wheels = [W("a", ("b", "c; extra == 'x'", "d; python_version < '3.8'", "rich")),
              W("b", ()), W("c", ()), W("d", ())]
    env = pypi.marker_environment("linux-64", pypi.target_of(PY311))
    keep, need = pypi.requirement_closure(wheels, ["a"], env, provided={"rich"})
    assert [w.name for w in keep] == ["a", "b"] and need == {"rich"}
    keep, _ = pypi.requirement_closure(wheels, ["a[x]"], env, provided={"rich"})
    assert [w.name for w in keep] == ["a", "b", "c"]
