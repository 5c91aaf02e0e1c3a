"""The oracle: coex's installer against py-rattler's `rattler.install`.

Both install the same records into two prefixes of the SAME length; the prefixes are compared
path by path (kind, mode, bytes with the prefix normalised, symlink targets) and conda-meta
record by record (tests/installer/oracle.py, which lists every difference allowed, with its
reason).
Runs over the tiny tier and the realistic tier, with the packages as locked (.conda and
.tar.bz2), all re-encoded as .tar.bz2, and all re-encoded as .tar.zst (the build's transcoding).
"""
import subprocess

import pytest

from tests.factory import tiny
from tests.factory.fixtures import rattler_install_records, rattler_solve
from tests.installer import helpers
from tests.installer.oracle import compare_conda_meta, compare_prefixes, prefix_pair

def _entries(records, tmp_path, fmt):
    entries = [helpers.entry_from_record(r) for r in records]
    if fmt == "as-locked":
        return entries
    return [helpers.repacked_entry(e, tmp_path / ("repack-" + fmt), fmt) for e in entries]


FORMATS = ["as-locked", "tar.bz2", "tar.zst"]


@pytest.fixture(scope="module")
def tiny_records(tiny_channel, tmp_path_factory):
    recs = rattler_solve(tiny_channel.url, tiny.ALL_SPECS,
                         cache_dir=tmp_path_factory.mktemp("solve-cache"))
    return helpers.install_order(recs)


@pytest.mark.parametrize("fmt", FORMATS)
def test_oracle_tiny(tiny_records, tmp_path, fmt):
    r_prefix, c_prefix = prefix_pair(tmp_path)
    rattler_install_records(tiny_records, r_prefix, cache_dir=tmp_path / "rcache",
                            specs=tiny.ALL_SPECS, execute_link_scripts=True)
    entries = _entries(tiny_records, tmp_path, fmt)
    assert {e["encoding"] for e in entries} == (
        {"conda", "tar.bz2"} if fmt == "as-locked" else {fmt})
    helpers.coex_install(entries, tmp_path / "pkgs", c_prefix, requested_specs=tiny.ALL_SPECS)
    rs, cs = compare_prefixes(r_prefix, c_prefix)
    compare_conda_meta(r_prefix, c_prefix)
    # the post-link script ran in both, with the real prefix
    assert cs["share/prefixprog/post-link-ran"][2] == b"<PREFIX> prefixprog\n"
    # pyc compiled for the noarch python package
    assert any(p.endswith("cli.cpython-39.pyc") for p in cs)
    # the installed programs work and print the real prefix
    out = subprocess.run([str(c_prefix / "bin" / "prefixprog")], stdout=subprocess.PIPE, check=True)
    assert out.stdout.strip() == str(c_prefix).encode()
    out = subprocess.run([str(c_prefix / "bin" / "tinypy")], stdout=subprocess.PIPE, check=True)
    assert out.stdout.startswith(b"tinypy ok " + str(c_prefix).encode())


@pytest.mark.slow
@pytest.mark.parametrize("fmt,long_prefix", [(f, False) for f in FORMATS] + [("as-locked", True)])
def test_oracle_realistic(realistic_channel, tmp_path, fmt, long_prefix):
    """long_prefix: longer than the shebang limit, so text files' shebangs (python3.11-config,
    numpy's f2py) become `#!/usr/bin/env ...` and console scripts the /bin/sh form."""
    from tests.factory import realistic

    recs = helpers.install_order(rattler_solve(realistic_channel.as_uri(), realistic.SPECS,
                                               cache_dir=tmp_path / "solve"))
    r_prefix, c_prefix = prefix_pair(tmp_path, "env-" + "l" * 140 if long_prefix else "env")
    rattler_install_records(recs, r_prefix, cache_dir=tmp_path / "rcache",
                            specs=realistic.SPECS, execute_link_scripts=True)
    entries = _entries(recs, tmp_path, fmt)
    helpers.coex_install(entries, tmp_path / "pkgs", c_prefix, requested_specs=realistic.SPECS)
    compare_prefixes(r_prefix, c_prefix)
    compare_conda_meta(r_prefix, c_prefix)
    py = str(c_prefix / "bin" / "python")
    out = subprocess.run(
        [py, "-c", "import sys, numpy; print(sys.prefix); print(numpy.arange(6).sum())"],
        stdout=subprocess.PIPE, check=True)
    assert out.stdout.split() == [str(c_prefix).encode(), b"15"]
    out = subprocess.run([str(c_prefix / "bin" / "pyflakes"), "--version"],
                         stdout=subprocess.PIPE, check=True)
    assert b"3.2.0" in out.stdout
    out = subprocess.run([str(c_prefix / "bin" / "cprefix")], stdout=subprocess.PIPE, check=True)
    assert out.stdout.strip() == str(c_prefix).encode()
    f2py = (c_prefix / "bin" / "f2py").read_bytes().split(b"\n")[:2]
    python = str(c_prefix).encode() + b"/bin/python3.11"
    if long_prefix:  # too long for the kernel: sh re-execs that exact python (rattler's form)
        assert f2py == [b"#!/bin/sh", b"'''exec' \"" + python + b"\" \"$0\" \"$@\" #'''"], f2py
    else:
        assert f2py[0] == b"#!" + python, f2py
    out = subprocess.run([str(c_prefix / "bin" / "f2py"), "-v"], stdout=subprocess.PIPE, check=True)
    assert out.stdout.strip() == b"1.26.4"


@pytest.mark.parametrize("name", ["env-" + "l" * 150, "env with blanks"])
def test_oracle_tiny_awkward_prefix(tiny_records, tmp_path, name):
    """A prefix longer than the kernel's shebang limit (but within the 255-char placeholders),
    or holding blanks: console scripts and text shebangs are rewritten exactly as rattler does."""
    r_prefix, c_prefix = prefix_pair(tmp_path, name)
    rattler_install_records(tiny_records, r_prefix, cache_dir=tmp_path / "rcache",
                            specs=tiny.ALL_SPECS, execute_link_scripts=True)
    entries = _entries(tiny_records, tmp_path, "as-locked")
    helpers.coex_install(entries, tmp_path / "pkgs", c_prefix, requested_specs=tiny.ALL_SPECS)
    rs, cs = compare_prefixes(r_prefix, c_prefix)
    compare_conda_meta(r_prefix, c_prefix)
    assert not cs["bin/tinypy"][2].startswith(b"#!<PREFIX>")
    out = subprocess.run([str(c_prefix / "bin" / "tinypy")], stdout=subprocess.PIPE, check=True)
    assert out.stdout.startswith(b"tinypy ok " + str(c_prefix).encode())
    out = subprocess.run([str(c_prefix / "bin" / "prefixprog")], stdout=subprocess.PIPE, check=True)
    assert out.stdout.strip() == str(c_prefix).encode()
