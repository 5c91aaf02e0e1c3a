"""Virtual packages: detection, CONDA_OVERRIDE_*, version specs, the messages users see."""
import os

import pytest

from coex_runtime import vpkgs as V


@pytest.mark.parametrize("a,b,want", [
    ("2.36", "2.17", 1), ("2.17", "2.17.0", 0), ("3.0", "3.0.a0", 1), ("3.0.a0", "2.99", 1),
    ("1.0.dev1", "1.0", -1), ("1.0.post1", "1.0", 1), ("11.2", "11.10", -1), ("1!1.0", "2.0", 1),
])
def test_compare_follows_conda_version_order(a, b, want):
    assert V.compare(a, b) == want
    assert V.compare(b, a) == -want


@pytest.mark.parametrize("version,spec,ok", [
    ("2.36", ">=2.17,<3.0.a0", True), ("2.12", ">=2.17,<3.0.a0", False), ("3.0", ">=2.17,<3.0.a0", False),
    ("2.36", "2.*", True), ("3.1", "2.*|3.1", True), ("12.0", ">=11.2", True), ("11.0", ">=11.2", False),
    ("5.10", "*", True), ("2.17", "==2.17", True), ("2.17", "!=2.17", False), ("2.17.1", "2.17", False),
])
def test_version_specs(version, spec, ok):
    assert V.version_matches(version, spec) is ok


def test_parse_spec_forms():
    assert V.parse_spec("__glibc >=2.17,<3.0.a0") == ("__glibc", ">=2.17,<3.0.a0", None)
    assert V.parse_spec("__unix") == ("__unix", None, None)
    assert V.parse_spec("__archspec 1 x86_64_v3") == ("__archspec", "1", "x86_64_v3")
    assert V.parse_spec("__cuda[version='>=11.2']") == ("__cuda", ">=11.2", None)
    assert V.parse_spec("__glibc=2.17") == ("__glibc", "2.17.*", None)
    assert V.parse_spec("__archspec 1=*x86_64_v3") == ("__archspec", "1", "*x86_64_v3")


def test_detect_matches_the_host_and_overrides_win():
    host = V.detect({})
    assert host["__glibc"][0] == os.confstr("CS_GNU_LIBC_VERSION").split()[1]
    assert host["__linux"][0] == os.uname().release.split("-")[0].split("+")[0]
    assert "__unix" in host and host["__archspec"][0] == "1"
    o = V.detect({"CONDA_OVERRIDE_GLIBC": "2.5", "CONDA_OVERRIDE_CUDA": "12.1",
                  "CONDA_OVERRIDE_LINUX": "", "CONDA_OVERRIDE_ARCHSPEC": "x86_64_v2"})
    assert o["__glibc"][0] == "2.5" and o["__cuda"][0] == "12.1"
    assert "__linux" not in o  # empty override = absent, as in conda
    assert o["__archspec"] == ("1", "x86_64_v2")
    # only what an archive needs is asked (the CUDA driver can take long to answer)
    assert V.detect({"CONDA_OVERRIDE_CUDA": "12.1"}, only=["__glibc"]) == {"__glibc": host["__glibc"]}
    assert V.detect({}, only=[]) == {}


def test_check_messages():
    host = {"__glibc": ("2.28", "0"), "__linux": ("5.10", "0"), "__unix": ("0", "0"),
            "__archspec": ("1", "x86_64_v2")}
    assert V.check(["__glibc >=2.17", "__linux >=4.18", "__unix", "__archspec 1 x86_64_v1",
                    "__archspec 1=*x86_64_v2", "__glibc >=2.17,<3.0.a0",
                    "python >=3.9"], host) == []
    got = V.check(["__glibc >=2.34", "__cuda >=11.2", "__archspec 1 x86_64_v3", "__osx >=11"], host)
    assert got[0].startswith("needs glibc >= 2.34, this host has 2.28")
    assert "CONDA_OVERRIDE_GLIBC" in got[0]
    assert got[1].startswith("needs CUDA driver >= 11.2, this host has none")
    assert got[2].startswith("needs CPU micro-architecture x86_64_v3, this host has x86_64_v2")
    assert got[3].startswith("needs macOS >= 11, this host has none")


def test_host_subdir():
    assert V.host_subdir() == {"x86_64": "linux-64", "aarch64": "linux-aarch64"}[os.uname().machine]
