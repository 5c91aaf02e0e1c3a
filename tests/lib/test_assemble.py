import os
from dataclasses import replace

import pytest

from coex.lib.assemble import assemble
from coex.lib.errors import CoexError
from coex.lib.lockfile import lock_entries
from coex.lib.pkgfiles import read_member
from coex.lib.records import AssembleSpec
from coex_runtime.format import LIBZSTD_NAME, open_archive
from tests.factory import tiny

ENTRY_POINTS = {"main": "python main.py", "tp": "tinypy", "pp": "prefixprog --x",
                "fn": "pkg.cli:run", "mod": "python -m tinypy.cli", "script": "tinypy-script"}


@pytest.fixture(scope="module")
def app_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("app")
    (root / "main.py").write_text("print('main')\n")
    (root / "pkg").mkdir()
    (root / "pkg" / "__init__.py").write_text("")
    (root / "pkg" / "cli.py").write_text("def run():\n    print('run')\n")
    os.chmod(root / "main.py", 0o755)
    return root


def spec_for(items, app_root, entry_points=ENTRY_POINTS, default_entry_point="main", **kw):
    """The AssembleSpec of these PreparedPackages (through its JSON, as `assemble --spec`)."""
    spec = {"platform": "linux-64", "packages": [i.to_json() for i in items],
            "app_root": str(app_root) if app_root else None,
            "entry_points": {"commands": entry_points, "default": default_entry_point},
            "env": {"GREETING": "hi"}, "requested_specs": ["python", "tinypy"],
            "build": {"resolve": "tiny", "lockfile_sha256": "ab" * 32, "target": "tests:app"}}
    spec.update(kw)
    return AssembleSpec.from_json(spec)


def test_archive_reads_back_with_the_right_record(tiny_lock, tiny_items, app_root, tmp_path):
    out = tmp_path / "app.coex"
    info = assemble(spec_for(tiny_items, app_root), out)
    entries = lock_entries(tiny_lock, "linux-64")
    with open_archive(str(out)) as ar:
        assert ar.info == info
        rec = ar.info
        assert rec["platform"] == "linux-64"
        assert [p["filename"] for p in rec["packages"]] == \
            [p.filename for p in entries.packages]                   # install order kept
        for p in rec["packages"]:
            want = "tar.zst" if p["filename"].endswith(".tar.bz2") else "conda"
            assert p["encoding"] == want
            if want == "conda":
                assert p["stored_sha256"] == p["sha256"] and p["stored_size"] == p["size"]
            ar.verify(p["member"], p["stored_sha256"], p["stored_size"])
        assert rec["virtual_packages"] == list(entries.virtual_packages)
        assert rec["env"] == {"GREETING": "hi"}
        assert rec["requested_specs"] == ["python", "tinypy"]
        assert rec["build"]["target"] == "tests:app"
        assert rec["default_entry_point"] == "main"
        eps = rec["entry_points"]
        assert eps["main"]["kind"] == "command" and eps["main"]["argv"] == ["python", "main.py"]
        assert eps["fn"] == {"kind": "function", "module": "pkg.cli", "function": "run"}
        assert eps["pp"]["argv"] == ["prefixprog", "--x"]
        # libzstd is the one of the locked zstd package (the image's real libzstd)
        real = "/usr/lib/x86_64-linux-gnu/libzstd.so.%s" % tiny.ZSTD_VERSION
        with open(real, "rb") as f:
            assert ar.read(LIBZSTD_NAME) == f.read()
        assert rec["libzstd"]["member"] == LIBZSTD_NAME
        apps = dict(ar.app_members())
        assert sorted(apps) == ["main.py", "pkg/__init__.py", "pkg/cli.py"]
        assert ar.mode("app/main.py") == 0o755


def test_assembly_is_byte_reproducible(tiny_items, app_root, tmp_path):
    a, b = tmp_path / "a.coex", tmp_path / "b.coex"
    assemble(spec_for(tiny_items, app_root), a)
    assemble(spec_for(tiny_items, app_root), b)
    assert a.read_bytes() == b.read_bytes()


def test_cross_platform_aarch64(tiny_items_aarch64, app_root, tmp_path):
    out = tmp_path / "arm.coex"
    info = assemble(spec_for(tiny_items_aarch64, app_root, platform="linux-aarch64"), out)
    assert info["platform"] == "linux-aarch64"
    assert {p["subdir"] for p in info["packages"]} == {"linux-aarch64", "noarch"}
    zstd = [i for i in tiny_items_aarch64 if i.package.name == "zstd"][0]
    _, lib = read_member(zstd.path, zstd.encoding, ["lib/libzstd.so.1"])
    with open_archive(str(out)) as ar:
        assert ar.read(LIBZSTD_NAME) == lib
    with open("/usr/lib/x86_64-linux-gnu/libzstd.so.%s" % tiny.ZSTD_VERSION, "rb") as f:
        assert lib != f.read()                           # the aarch64 package's, not the host's


@pytest.mark.parametrize("ep, needle", [
    ("nosuchprog", "no package of the environment installs bin/nosuchprog"),
    ("prefixprg", "Did you mean: prefixprog"),
    ("nomod.cli:main", "names module 'nomod.cli'"),
    ("python -m nomod", "names module 'nomod'"),
    ("scripts/run.sh", "'scripts/run.sh' is neither a file of the app layer"),
    ("bad entry 'quote", "not a valid shell-style command"),
])
def test_entry_point_naming_nothing_fails(tiny_items, app_root, tmp_path, ep, needle):
    out = tmp_path / "x.coex"
    with pytest.raises(CoexError) as e:
        assemble(spec_for(tiny_items, app_root, entry_points={"x": ep}, default_entry_point="x"),
                 out)
    assert needle in str(e.value)
    assert "tests:app" in str(e.value)                    # names the target
    assert not out.exists()


def test_entry_points_from_env_and_host_paths_are_accepted(tiny_items, tmp_path):
    eps = {"tp": "tinypy", "sh": "/bin/sh -c true", "fn": "tinypy.cli:main", "builtin": "sys:exit",
           "old": "oldstyle", "py": "python3 -c pass"}
    info = assemble(spec_for(tiny_items, None, entry_points=eps, default_entry_point="tp"),
                    tmp_path / "ok.coex")
    assert sorted(info["entry_points"]) == sorted(eps)
    assert info["app"] is None


def test_function_entry_point_needs_python(tiny_items, tmp_path):
    no_python = [i for i in tiny_items if i.package.name in ("zstd", "libtiny", "prefixprog")]
    with pytest.raises(CoexError, match="the environment has no python"):
        assemble(spec_for(no_python, None, entry_points={"f": "m:f"}, default_entry_point="f"),
                 tmp_path / "x.coex")


def test_missing_zstd_and_bad_specs(tiny_items, tmp_path):
    no_zstd = [i for i in tiny_items if i.package.name != "zstd"]
    with pytest.raises(CoexError, match="has no `zstd` package"):
        assemble(spec_for(no_zstd, None, entry_points={"p": "prefixprog"},
                          default_entry_point="p"), tmp_path / "x.coex")
    with pytest.raises(CoexError, match="default entry point 'nope' is not one of"):
        assemble(spec_for(tiny_items, None, default_entry_point="nope"), tmp_path / "x.coex")
    with pytest.raises(CoexError, match="no entry point"):
        assemble(spec_for(tiny_items, None, entry_points={}), tmp_path / "x.coex")
    assert list(tmp_path.iterdir()) == []


def test_corrupt_package_is_reported_not_crashed(tiny_items, tmp_path):
    broken = tmp_path / "broken.conda"
    good = [i for i in tiny_items if i.package.name == "prefixprog"][0]
    data = open(good.path, "rb").read()
    broken.write_bytes(data[: len(data) // 2])                 # truncated: no zip directory
    items = [replace(i, path=str(broken)) if i is good else i for i in tiny_items]
    with pytest.raises(CoexError, match="Cannot read conda package .*broken.conda"):
        assemble(spec_for(items, None, entry_points={"p": "prefixprog"}, default_entry_point="p"),
                 tmp_path / "x.coex")
    # damage inside the payload (file lists still readable): the locked sha256 catches it
    damaged = bytearray(data)
    damaged[len(data) // 2: len(data) // 2 + 64] = b"\xff" * 64
    broken.write_bytes(bytes(damaged))
    with pytest.raises(CoexError, match="is not the locked one"):
        assemble(spec_for(items, None, entry_points={"p": "prefixprog"}, default_entry_point="p"),
                 tmp_path / "x.coex")
    assert not (tmp_path / "x.coex").exists()


def test_output_problems_are_clear(tiny_items, tmp_path):
    with pytest.raises(CoexError, match="is a directory"):
        assemble(spec_for(tiny_items, None, entry_points={"p": "prefixprog"},
                          default_entry_point="p"), tmp_path)
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    with pytest.raises(CoexError, match="cannot write the archive .*file/x.coex"):
        assemble(spec_for(tiny_items, None, entry_points={"p": "prefixprog"},
                          default_entry_point="p"), blocker / "x.coex")


APP_MODULES = {
    "greet/__init__.py": ("import os\nfrom .impl import helper as assist\n"
                          "if os.name:\n    def main():\n        pass\nelse:\n    main = None\n"
                          "try:\n    import json\nexcept ImportError:\n    json = None\n"
                          "VERSION, RELEASE = 1, 2\nclass Cli:\n    inner = 1\n"),
    "greet/__main__.py": "from greet import main\nmain()\n",
    "greet/impl.py": "def helper():\n    local = 1\n",
    "nomain/__init__.py": "",
    "star.py": "from os.path import *\n",
    "newer.py": "match 1:\n    case 1:\n        pass\n",   # not parseable by Python 3.9
    "src/deep/__init__.py": "def main():\n    pass\n",
}


@pytest.fixture(scope="module")
def modules_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("modules")
    for rel, text in APP_MODULES.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)
    return root


@pytest.mark.parametrize("ep, needle", [
    ("greet:mian", "the module 'greet' (greet/__init__.py in the app layer) defines no top-level "
                   "'mian'. Did you mean: main?"),
    ("greet.impl:local", "defines no top-level 'local'. It defines: helper."),
    ("greet.cli:main", "names module 'greet.cli', which the app layer does not have (no "
                       "greet/cli.py or greet/cli/__init__.py)."),
    ("python -m nomain", "'nomain' is a package of the app layer without a __main__.py"),
    ("deep:main", "names module 'deep', which the app layer has only under src/ (at src/deep): "
                  "a `files` target keeps paths from the build root. Use a `resources` or "
                  "`python_sources` target for it"),
    ("python -m deep", "or name the module by its path in the app layer ('src.deep')"),
])
def test_entry_point_functions_and_modules_of_the_app_layer(tiny_items, modules_root, tmp_path,
                                                            ep, needle):
    """Caught when the archive is built (they used to fail when it ran)."""
    out = tmp_path / "x.coex"
    with pytest.raises(CoexError) as e:
        assemble(spec_for(tiny_items, modules_root, entry_points={"x": ep},
                          default_entry_point="x"), out)
    assert needle in str(e.value)
    assert not out.exists()


def test_entry_points_the_app_layer_defines(tiny_items, modules_root, tmp_path):
    eps = {"a": "greet:main", "b": "greet:assist", "c": "greet:Cli.inner", "d": "greet:json",
           "e": "greet:RELEASE", "f": "python -m greet", "g": "greet.impl:helper",
           "h": "star:anything", "i": "newer:anything", "j": "python -m greet.impl",
           "k": "src.deep:main"}
    info = assemble(spec_for(tiny_items, modules_root, entry_points=eps, default_entry_point="a"),
                    tmp_path / "ok.coex")
    assert sorted(info["entry_points"]) == sorted(eps)
