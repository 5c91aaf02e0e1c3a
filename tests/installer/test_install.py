"""coex_runtime/install.py, the installer's driver: progress is reported; bad input: every broken
package stops the install with a message naming the package and the file, and leaves nothing
marked extracted (pkgs_dir) or installed (no prefix, no staging). (Its result against rattler's:
test_oracle.py; on every CPython: test_pythons.py.)"""
import os
import shutil
import threading

import pytest

from coex_runtime import install
from coex_runtime import workers as W
from tests.factory import tiny
from tests.installer import helpers

# bad package -> what the message must name besides the package file name
EXPECTED = {
    "bad-escape": "../escaped.txt",
    "bad-absolute": "/tmp/coex-bad-absolute.txt",
    "bad-symlink-outside": "lib/evil",
    "bad-symlink-absolute": "lib/evil-abs",
    "bad-missing-file": "share/missing.txt",
    "bad-sha256": "share/data.txt",
    "bad-size": "share/data.txt",
    "bad-path-type": "share/data.txt",
    "bad-short-placeholder": "bin/shortprog",
    "bad-zstd": "pkg-bad-zstd-1.0-h0_0.tar.zst",
    "bad-bz2": "bzip2",
    "bad-device": "dev/null-copy",
}


def test_every_bad_package_is_covered():
    assert set(EXPECTED) == set(tiny.BAD_REASONS)


def _pkgs_marked(pkgs):
    """Entries of pkgs_dir that claim to be extracted packages (temp dirs start with '.')."""
    if not pkgs.exists():
        return []
    return [p.name for p in pkgs.iterdir() if not p.name.startswith(".")]


@pytest.mark.parametrize("workers", ["in-process", "forked"])
@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_bad_package(bad_channel, tiny_channel, tmp_path, monkeypatch, name, workers):
    """In this process (jobs=1), and in forked worker processes (the message travels back)."""
    good = helpers.entry_from_file(tiny_channel.file("libtiny", version="1.0"))
    bad = helpers.entry_from_file(bad_channel.file(name))
    pkgs = tmp_path / "pkgs"
    # long enough for the 255-char placeholders, too long for the 20-char one
    prefix = tmp_path / ("env-" + "x" * 60)
    monkeypatch.setattr(W, "FORK", workers == "forked")
    with pytest.raises(install.InstallError) as ei:
        helpers.coex_install([good, bad], pkgs, prefix, jobs=1 if workers == "in-process" else 2)
    msg = str(ei.value)
    assert bad["filename"] in msg, msg
    assert EXPECTED[name] in msg, msg
    assert not prefix.exists()
    assert not (prefix.parent / (".staging-" + prefix.name)).exists()
    marked = _pkgs_marked(pkgs)
    if name == "bad-short-placeholder":
        # the package itself is intact (verified, reusable): only linking it is impossible
        assert bad["stored_sha256"] in marked
    else:
        assert bad["stored_sha256"] not in marked
    # no temp dirs are left behind either
    assert [p for p in os.listdir(str(pkgs)) if p.startswith(".tmp-")] == []


def test_short_placeholder_fits_a_short_prefix(bad_channel, tmp_path):
    """The 20-char placeholder works when the prefix fits: the error is about length only."""
    bad = helpers.entry_from_file(bad_channel.file("bad-short-placeholder"))
    prefix = tmp_path / "e"
    if len(str(prefix)) > 20:
        prefix = type(tmp_path)("/tmp/coexD-sp")
        shutil.rmtree(str(prefix), ignore_errors=True)
    try:
        helpers.coex_install([bad], tmp_path / "pkgs", prefix)
        import subprocess
        out = subprocess.run([str(prefix / "bin" / "shortprog")], stdout=subprocess.PIPE, check=True)
        assert out.stdout.strip() == str(prefix).encode()
    finally:
        if str(prefix).startswith("/tmp/coexD-"):
            shutil.rmtree(str(prefix), ignore_errors=True)


@pytest.mark.parametrize("manifest", ["info/paths.json", "info/files"])
def test_a_stripped_package_names_the_missing_file_and_its_list(tmp_path, manifest):
    """A package whose payload was removed (conda-index's test fixtures are) lists files it does
    not hold: the message names the package, the file, and the list naming it (info/files for an
    old package without paths.json)."""
    from tests.factory.condapkg import Member, PackageMeta, info_files, write_archive
    members = [Member("share/kept.txt", data=b"k\n")]
    meta = PackageMeta("stripped", "1.0", "0")
    info = info_files(meta, members + [Member("bin/gone", data=b"x")])
    if manifest == "info/files":
        del info["info/paths.json"]
    path = write_archive(tmp_path / "chan" / "stripped-1.0-0.tar.bz2", info, members)
    e = helpers.entry_from_file(path, meta.index_json())
    with pytest.raises(install.InstallError) as ei:
        helpers.coex_install([e], tmp_path / "pkgs", tmp_path / "env")
    msg = str(ei.value)
    assert msg.startswith("stripped-1.0-0.tar.bz2: %s lists bin/gone, but the package does not "
                          "contain it" % manifest), msg
    assert not (tmp_path / "env").exists() and _pkgs_marked(tmp_path / "pkgs") == []


def test_stored_digest_mismatch(tiny_channel, tmp_path):
    e = helpers.entry_from_file(tiny_channel.file("prefixprog"))
    e["stored_sha256"] = "ab" * 32
    with pytest.raises(install.InstallError) as ei:
        helpers.coex_install([e], tmp_path / "pkgs", tmp_path / "env")
    msg = str(ei.value)
    assert "prefixprog-1.0-h0_0.conda" in msg and "ab" * 32 in msg and "damaged" in msg
    assert _pkgs_marked(tmp_path / "pkgs") == []
    assert not (tmp_path / "env").exists()


@pytest.mark.parametrize("fmt", ["as-locked", "tar.bz2", "tar.zst"])
def test_truncated_payload(tiny_channel, tmp_path, fmt):
    e = helpers.entry_from_file(tiny_channel.file("prefixprog"))
    if fmt != "as-locked":
        e = helpers.repacked_entry(e, tmp_path / "re", fmt)
    data = open(e["path"], "rb").read()
    cut = tmp_path / ("cut-" + os.path.basename(e["path"]))
    cut.write_bytes(data[: len(data) * 2 // 3])
    e["path"] = str(cut)
    with pytest.raises(install.InstallError) as ei:
        helpers.coex_install([e], tmp_path / "pkgs", tmp_path / "env")
    assert e["filename"] in str(ei.value)
    assert _pkgs_marked(tmp_path / "pkgs") == []


def test_noarch_python_without_python(tiny_channel, tmp_path):
    e = helpers.entry_from_file(tiny_channel.file("tinypy"), noarch="python")
    with pytest.raises(install.InstallError) as ei:
        helpers.coex_install([e], tmp_path / "pkgs", tmp_path / "env")
    assert "tinypy-1.0-pyh0_0.conda" in str(ei.value) and "python" in str(ei.value)
    assert not (tmp_path / "env").exists()


def test_failing_post_link(tiny_channel, tmp_path):
    """A failing post-link script raises with its output; no conda-meta record is written."""
    e = helpers.entry_from_file(tiny_channel.file("postlink-fails"))
    prefix = tmp_path / "env"
    with pytest.raises(install.LinkScriptError) as ei:
        helpers.coex_install([e], tmp_path / "pkgs", prefix)
    msg = str(ei.value)
    assert "post-link" in msg and "postlink-fails" in msg
    assert "exit status 1" in msg
    assert "post-link of postlink-fails fails on purpose" in msg  # its output, with PKG_NAME set
    assert not list((prefix / "conda-meta").glob("*.json"))


def test_progress_reports_every_package(tmp_path, tiny_channel):
    entries = [helpers.entry_from_file(tiny_channel.file(n)) for n in ("oldstyle", "prefixprog")]
    seen = []
    lock = threading.Lock()

    def progress(phase, done, total, name):
        with lock:
            seen.append((phase, done, total))

    helpers.coex_install(entries, tmp_path / "pkgs", tmp_path / "env", progress=progress)
    assert sorted(x for x in seen if x[0] == "extract") == [("extract", 1, 2), ("extract", 2, 2)]
    assert sorted(x for x in seen if x[0] == "link") == [("link", 1, 2), ("link", 2, 2)]
    # and the stored bytes read while extracting (every MiB or so, and at each package's end)
    got = [(d, t) for p, d, t in seen if p == "extract-bytes"]
    total = sum(e["size"] for e in entries)
    assert got and all(t == total for _, t in got) and max(d for d, _ in got) == total
