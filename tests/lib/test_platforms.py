import pytest

from coex.lib.errors import CoexError
from coex.lib.platforms import (check_platform, effective_virtual_packages, parse_virtual_package,
                                virtual_package_needs)


def canonical_virtual_package(text):
    return "=".join(parse_virtual_package(text))


def test_canonical_forms():
    assert canonical_virtual_package("__glibc=2.17") == "__glibc=2.17=0"
    assert canonical_virtual_package("__unix") == "__unix=0=0"
    assert canonical_virtual_package("__archspec=x86_64") == "__archspec=1=x86_64"
    assert canonical_virtual_package("__cuda=12.2=0") == "__cuda=12.2=0"
    for bad in ("glibc=2.17", "__glibc==2.17", "__a=1=2=3"):
        with pytest.raises(CoexError, match="Bad virtual package"):
            canonical_virtual_package(bad)


def test_defaults_per_platform():
    assert effective_virtual_packages("linux-64") == [
        "__archspec=1=x86_64", "__glibc=2.17=0", "__linux=3.10=0", "__unix=0=0"]
    assert "__archspec=1=aarch64" in effective_virtual_packages("linux-aarch64")
    osx = effective_virtual_packages("osx-arm64")
    assert "__osx=11.0=0" in osx and not any(v.startswith("__glibc") for v in osx)


def test_requested_override_by_name_and_platform_family():
    got = effective_virtual_packages("linux-aarch64", ["__glibc=2.28", "__cuda=12.0", "__osx=13"])
    assert "__glibc=2.28=0" in got and "__glibc=2.17=0" not in got
    assert "__cuda=12.0=0" in got
    assert not any(v.startswith("__osx") for v in got)      # __osx only applies to osx-*
    assert "__archspec=1=aarch64" in got


def test_unknown_platform_suggests():
    assert check_platform("linux-aarch64") == "linux-aarch64"
    with pytest.raises(CoexError) as e:
        check_platform("linux64", origin="//x:y")
    assert "Unknown platform 'linux64'" in str(e.value)
    assert "Did you mean 'linux-64'" in str(e.value)
    assert "//x:y" in str(e.value)


def test_virtual_package_needs():
    depends = [["__glibc >=2.17", "libx"], ["__glibc >=2.17", "__unix"]]
    assert virtual_package_needs(depends) == ["__glibc >=2.17", "__unix"]


def test_noarch_is_not_a_target():
    with pytest.raises(CoexError, match="noarch packages are always solved together"):
        check_platform("noarch")
