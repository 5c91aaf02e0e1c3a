"""The oracle: coex's installer against py-rattler's `rattler.install`.

Both install the same records into two prefixes of the SAME length; the prefixes are compared
path by path (kind, mode, bytes with the prefix normalised, symlink targets) and conda-meta
record by record. Every difference that remains is listed below with its reason.
Runs over the tiny tier and the realistic tier, with the packages as locked (.conda and
.tar.bz2), all re-encoded as .tar.bz2, and all re-encoded as .tar.zst (the build's transcoding).
"""
import os
import subprocess

import pytest

from tests.factory import tiny
from tests.factory.fixtures import rattler_install_records, rattler_solve
from tests.installer import helpers

# --- differences between the two prefixes, each with its reason -------------------------------
# only rattler: it tags the prefix as a cache directory (https://bford.info/cachedir/)
ONLY_RATTLER = {"CACHEDIR.TAG"}
# only coex: .pyc files of noarch python packages (conda compiles them; rattler compiles none),
# recorded as `pyc_file` paths in conda-meta, and their __pycache__ directories
# console scripts: rattler chmods them 0o775 whatever the umask; coex creates them 0o755 minus
# the umask (conda: 0o644 minus umask, plus exec bits): the umask is respected, as asked
ENTRY_POINT_MODE_RATTLER = 0o775
# conda-meta/history: rattler writes an empty file; coex writes a conda-style revision
HISTORY = "conda-meta/history"
# conda-meta fields that legitimately differ: both point into their own package caches
META_DIFFERENT = {"extracted_package_dir", "link"}
# fields coex writes that rattler 0.25 does not: conda's `requested_spec` (a string); coex also
# records its compiled .pyc files as `pyc_file` paths (as conda does).
META_ONLY_COEX = {"requested_spec"}


def _prefix_pair(tmp_path, name="env"):
    a = tmp_path / "rattler" / name
    b = tmp_path / "coexxxx" / name
    assert len(str(a)) == len(str(b))
    return a, b


def compare_prefixes(r_prefix, c_prefix, entry_points=()):
    rs = helpers.snapshot(r_prefix, skip=("conda-meta",))
    cs = helpers.snapshot(c_prefix, skip=("conda-meta",))
    only_r = set(rs) - set(cs) - ONLY_RATTLER
    pycs = set()
    for rec in helpers.conda_meta(c_prefix).values():
        pycs.update(p["_path"] for p in rec["paths_data"]["paths"] if p["path_type"] == "pyc_file")
    pycs.update(os.path.dirname(p) for p in list(pycs))
    only_c = set(cs) - set(rs) - pycs
    assert not only_r, "only rattler installed: %s" % sorted(only_r)
    assert not only_c, "only coex installed: %s" % sorted(only_c)
    diffs = []
    umask = os.umask(0o022)
    os.umask(umask)
    for p in sorted(set(rs) & set(cs)):
        if p in entry_points and rs[p][1] == ENTRY_POINT_MODE_RATTLER:
            assert cs[p][1] == 0o755 & ~umask, p
            rs[p] = (rs[p][0], cs[p][1], rs[p][2])
        if rs[p] != cs[p]:
            kr, mr, dr = rs[p]
            kc, mc, dc = cs[p]
            diffs.append("%s: rattler %s %s %r vs coex %s %s %r" % (
                p, kr, oct(mr) if mr else mr, (dr or b"")[:120], kc, oct(mc) if mc else mc,
                (dc or b"")[:120]))
    assert not diffs, "\n".join(diffs)
    return rs, cs


def _entry_points(prefix):
    eps = set()
    for rec in helpers.conda_meta(prefix).values():
        eps.update(p["_path"] for p in rec["paths_data"]["paths"]
                   if p["path_type"] == "unix_python_entry_point")
    return eps


def _norm_paths(paths, prefix):
    """sha256_in_prefix depends on the prefix's own path: check it against the file, drop it."""
    import hashlib

    out = {}
    for p in paths:
        p = dict(p)
        if p.get("path_type") == "pyc_file":
            continue
        if "sha256_in_prefix" in p:
            full = prefix / p["_path"]
            data = os.readlink(str(full)).encode() if full.is_symlink() else full.read_bytes()
            assert hashlib.sha256(data).hexdigest() == p.pop("sha256_in_prefix"), p["_path"]
            assert len(data) == p["size_in_bytes"], p["_path"]
        if p.get("path_type") == "unix_python_entry_point":  # its shebang holds the prefix
            data = (prefix / p["_path"]).read_bytes()
            assert hashlib.sha256(data).hexdigest() == p.pop("sha256"), p["_path"]
            assert len(data) == p["size_in_bytes"], p["_path"]
        out[p["_path"]] = p
    return out


def compare_conda_meta(r_prefix, c_prefix):
    rm, cm = helpers.conda_meta(r_prefix), helpers.conda_meta(c_prefix)
    assert sorted(rm) == sorted(cm)
    for name in rm:
        r, c = rm[name], cm[name]
        for key in set(r) | set(c):
            if key in META_DIFFERENT:
                continue
            if key in META_ONLY_COEX:
                assert key in c, (name, key)
                continue
            assert key in r and key in c, "%s: field %r only in %s" % (
                name, key, "rattler" if key in r else "coex")
            if key == "paths_data":
                rp = _norm_paths(r[key]["paths"], r_prefix)
                cp = _norm_paths(c[key]["paths"], c_prefix)
                bad = ["%s: rattler %r vs coex %r" % (k, rp.get(k), cp.get(k))
                       for k in sorted(set(rp) | set(cp)) if rp.get(k) != cp.get(k)]
                assert not bad, "%s paths_data:\n%s" % (name, "\n".join(bad))
                assert r[key]["paths_version"] == c[key]["paths_version"]
            elif key == "files":
                pycs = set(p["_path"] for p in c["paths_data"]["paths"]
                           if p["path_type"] == "pyc_file")
                assert r[key] == [f for f in c[key] if f not in pycs], name
            else:
                assert r[key] == c[key], "%s: %s: rattler %r vs coex %r" % (name, key, r[key], c[key])
        assert c["link"]["type"] in (1, 3)
        # rattler reads coex's records back
        import rattler
        rec = rattler.PrefixRecord.from_path(os.path.join(str(c_prefix), "conda-meta", name))
        assert str(rec.name.normalized) == c["name"]
        assert len(rec.files) == len(c["files"])
    assert (r_prefix / HISTORY).exists() and (c_prefix / HISTORY).exists()


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
    r_prefix, c_prefix = _prefix_pair(tmp_path)
    rattler_install_records(tiny_records, r_prefix, cache_dir=tmp_path / "rcache",
                            specs=tiny.ALL_SPECS, execute_link_scripts=True)
    entries = _entries(tiny_records, tmp_path, fmt)
    assert {e["encoding"] for e in entries} == (
        {"conda", "tar.bz2"} if fmt == "as-locked" else {fmt})
    helpers.coex_install(entries, tmp_path / "pkgs", c_prefix, requested_specs=tiny.ALL_SPECS)
    rs, cs = compare_prefixes(r_prefix, c_prefix, _entry_points(c_prefix))
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
    r_prefix, c_prefix = _prefix_pair(tmp_path, "env-" + "l" * 140 if long_prefix else "env")
    rattler_install_records(recs, r_prefix, cache_dir=tmp_path / "rcache",
                            specs=realistic.SPECS, execute_link_scripts=True)
    entries = _entries(recs, tmp_path, fmt)
    helpers.coex_install(entries, tmp_path / "pkgs", c_prefix, requested_specs=realistic.SPECS)
    compare_prefixes(r_prefix, c_prefix, _entry_points(c_prefix))
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
    r_prefix, c_prefix = _prefix_pair(tmp_path, name)
    rattler_install_records(tiny_records, r_prefix, cache_dir=tmp_path / "rcache",
                            specs=tiny.ALL_SPECS, execute_link_scripts=True)
    entries = _entries(tiny_records, tmp_path, "as-locked")
    helpers.coex_install(entries, tmp_path / "pkgs", c_prefix, requested_specs=tiny.ALL_SPECS)
    rs, cs = compare_prefixes(r_prefix, c_prefix, _entry_points(c_prefix))
    compare_conda_meta(r_prefix, c_prefix)
    assert not cs["bin/tinypy"][2].startswith(b"#!<PREFIX>")
    out = subprocess.run([str(c_prefix / "bin" / "tinypy")], stdout=subprocess.PIPE, check=True)
    assert out.stdout.startswith(b"tinypy ok " + str(c_prefix).encode())
    out = subprocess.run([str(c_prefix / "bin" / "prefixprog")], stdout=subprocess.PIPE, check=True)
    assert out.stdout.strip() == str(c_prefix).encode()
