"""coex_runtime/format.py: the one archive format (writer and reader)."""
import hashlib
import json
import os
import shutil
import subprocess
import sys
import zipfile

import pytest

from coex_runtime import format as F
from tests.runtime import rt_helpers as H
from tests.runtime.format_helpers import _pkg, _write

PYENV = os.path.expanduser("~/.pyenv/versions")


def test_roundtrip_record_members_and_modes(tmp_path):
    info = _write(tmp_path)
    a = F.open_archive(str(tmp_path / "a.coex"))
    assert a.info == info
    assert a.info["env_id"] == F.env_id("linux-64", info["packages"])
    pkg = a.info["packages"][0]
    assert pkg["member"] == "pkgs/x-1.0-0.conda" and pkg["stored_sha256"] == pkg["sha256"]
    assert a.open(pkg["member"]).read() == b"abc"
    a.verify(pkg["member"], pkg["sha256"], 3)
    assert dict(a.app_members()) == {"src/main.py": "app/src/main.py", "src/run.sh": "app/src/run.sh"}
    assert a.mode("app/src/run.sh") == 0o755 and a.mode("app/src/main.py") == 0o644
    eps = a.info["entry_points"]
    assert eps["main"] == {"kind": "command", "argv": ["python", "src/main.py"], "app_args": [1]}
    assert eps["run"] == {"kind": "app", "path": "src/run.sh", "args": ["-v"]}
    assert eps["fn"] == {"kind": "function", "module": "pkg.cli", "function": "main"}
    # The sh preamble names this archive's id; zip tools see a normal zip with 1980 dates.
    head = (tmp_path / "a.coex").read_bytes()[:2048].decode("ascii", "replace")
    assert head.startswith("#!/bin/sh\n") and "COEX_ARCHIVE_ID=%s\n" % F.short_id(a.id) in head
    with zipfile.ZipFile(str(tmp_path / "a.coex")) as z:
        assert all(zi.date_time == F.ZIP_DATE for zi in z.infolist())
        assert z.getinfo(pkg["member"]).compress_type == zipfile.ZIP_STORED
    assert os.stat(str(tmp_path / "a.coex")).st_mode & 0o111


def test_same_inputs_same_bytes_on_every_python(tmp_path):
    """Byte-for-byte reproducible, whichever CPython writes it (3.6 .. 3.13)."""
    _write(tmp_path)
    want = hashlib.sha256((tmp_path / "a.coex").read_bytes()).hexdigest()
    script = (
        "import sys; sys.path.insert(0, %r); sys.path.insert(0, %r)\n"
        "from tests.runtime import format_helpers as t; import pathlib\n"
        "t._write(pathlib.Path(sys.argv[1]), out='b.coex')\n"
    ) % (os.path.dirname(os.path.dirname(F.__file__)), os.path.dirname(os.path.dirname(F.__file__)))
    pythons = [p for p in (os.path.join(PYENV, v, "bin", "python3") for v in ("3.6.15", "3.13.0"))
               if os.path.exists(p)] or [sys.executable]
    for py in pythons:
        subprocess.run([py, "-c", script, str(tmp_path)], check=True)
        assert hashlib.sha256((tmp_path / "b.coex").read_bytes()).hexdigest() == want, py


def test_python_runs_the_zip_and_the_unzipped_dir_is_an_archive_too(tmp_path):
    _write(tmp_path)
    d = tmp_path / "unzipped"
    with zipfile.ZipFile(str(tmp_path / "a.coex")) as z:
        z.extractall(str(d))
    a = F.open_archive(str(d))
    assert a.is_dir and a.open("pkgs/x-1.0-0.conda").read() == b"abc"
    assert a.id == F.open_archive(str(tmp_path / "a.coex")).id


def test_tampering_is_detected(tmp_path):
    _write(tmp_path)
    raw = bytearray((tmp_path / "a.coex").read_bytes())
    a = F.open_archive(str(tmp_path / "a.coex"))
    zi = zipfile.ZipFile(str(tmp_path / "a.coex")).getinfo("pkgs/x-1.0-0.conda")
    data_at = zi.header_offset + 30 + len(zi.filename) + len(zi.extra)
    raw[data_at] ^= 0xFF
    (tmp_path / "bad.coex").write_bytes(bytes(raw))
    bad = F.open_archive(str(tmp_path / "bad.coex"))
    with pytest.raises(F.FormatError, match="damaged"):
        bad.verify("pkgs/x-1.0-0.conda", a.info["packages"][0]["sha256"], 3)
    # Truncated: the zip directory is gone.
    (tmp_path / "trunc.coex").write_bytes(bytes(raw[: len(raw) // 2]))
    with pytest.raises(F.FormatError, match="truncated or damaged"):
        F.open_archive(str(tmp_path / "trunc.coex"))


def test_record_validation(tmp_path):
    info = _write(tmp_path)
    bad = json.loads(F.dump_json(info))
    bad["format_version"] = [2, 0]
    with pytest.raises(F.FormatError, match="format 2.0.*reads format 1.x"):
        F.validate_info(bad)
    bad = json.loads(F.dump_json(info))
    bad["packages"][0]["sha256"] = "0" * 64
    with pytest.raises(F.FormatError, match="env_id does not match"):
        F.validate_info(bad)
    bad = json.loads(F.dump_json(info))
    bad["default_entry_point"] = "nope"
    with pytest.raises(F.FormatError, match="default_entry_point 'nope'"):
        F.validate_info(bad)


def test_writer_refuses_a_package_that_is_not_the_locked_one(tmp_path):
    p = _pkg(tmp_path)
    p["entry"]["sha256"] = "0" * 64
    with pytest.raises(F.FormatError, match="is not the locked one"):
        _write(tmp_path, packages=[p])
    assert not os.path.exists(str(tmp_path / "a.coex"))
    assert not [n for n in os.listdir(str(tmp_path)) if ".tmp-" in n]


def test_entry_point_parsing():
    assert F.parse_entry_point("python -m app")["argv"] == ["python", "-m", "app"]
    assert F.parse_entry_point("app.cli:main")["kind"] == "function"
    assert F.parse_entry_point("./bin/x a", ["bin/x"]) == {"kind": "app", "path": "bin/x", "args": ["a"]}
    with pytest.raises(F.FormatError):
        F.parse_entry_point("  ")
    with pytest.raises(F.FormatError, match="not a valid shell-style"):
        F.parse_entry_point("python 'unterminated")


def test_damaged_compressed_member_is_a_format_error(tmp_path):
    """Deflated members (runtime, record, libzstd, app layer): a flipped byte is reported as a
    damaged archive, not as a zipfile traceback."""
    _write(tmp_path)
    raw = bytearray((tmp_path / "a.coex").read_bytes())
    zi = zipfile.ZipFile(str(tmp_path / "a.coex")).getinfo("app/src/main.py")
    data_at = zi.header_offset + 30 + len(zi.filename) + len(zi.extra)
    raw[data_at + zi.compress_size // 2] ^= 0xFF
    (tmp_path / "bad.coex").write_bytes(bytes(raw))
    bad = F.open_archive(str(tmp_path / "bad.coex"))
    with pytest.raises(F.FormatError, match="app/src/main.py is damaged"):
        bad.read("app/src/main.py")


def test_read_only_archive_and_archive_on_a_noexec_mount(std_archive, tmp_path):
    arc, info = std_archive
    root = tmp_path / "root"
    ro = tmp_path / "ro.coex"
    shutil.copy(str(arc), str(ro))
    os.chmod(str(ro), 0o444)
    for _ in ("cold", "warm"):
        r = subprocess.run(["sh", str(ro)], env=H.base_env(root), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        assert r.returncode == 0 and r.stdout.decode().strip() == H.prefix_of(root, info), H.text(r)
    mnt = H.tmpfs(tmp_path / "mnt", "noexec")
    try:
        shutil.copy(str(arc), str(mnt / "app.coex"))
        root2 = tmp_path / "root2"
        with pytest.raises(PermissionError):  # the kernel refuses; `sh app.coex` is the way
            subprocess.run([str(mnt / "app.coex")], env=H.base_env(root2))
        for _ in ("cold", "warm"):
            r = subprocess.run(["sh", str(mnt / "app.coex")], env=H.base_env(root2),
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE)
            assert r.returncode == 0 and r.stdout.decode().strip() == H.prefix_of(root2, info), H.text(r)
    finally:
        subprocess.run(["umount", str(mnt)])


def test_archive_fed_on_stdin_says_it_must_be_run_by_path(std_archive, tmp_path):
    arc, _ = std_archive
    with open(str(arc), "rb") as f:
        r = subprocess.run(["sh", "-s"], stdin=f, env=H.base_env(tmp_path / "root"), cwd=str(tmp_path),
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert r.returncode == 1, H.text(r)
    assert "cannot read the archive" in r.stderr.decode() and "run by its path" in r.stderr.decode()


def test_wheels_are_stored_as_is_and_recorded_in_order(tmp_path):
    from tests.runtime.format_helpers import _wheel
    plain = _write(tmp_path, out="plain.coex")
    assert "wheels" not in plain  # conda-only records (and env ids) are what they were
    lines = "coex-env/1 linux-64\nnoarch/x-1.0-0.conda %s" % plain["packages"][0]["sha256"]
    assert plain["env_id"] == hashlib.sha256(lines.encode()).hexdigest()
    w1 = _wheel(tmp_path, "zeta-2.0-py3-none-any.whl", b"z" * 10, requested=True, url="https://x/z.whl")
    w2 = _wheel(tmp_path, "Foo_Bar-1.0-1-cp311-cp311-manylinux_2_17_x86_64.whl", b"f" * 7)
    info = _write(tmp_path, wheels=[w1, w2])
    assert [w["member"] for w in info["wheels"]] == [
        "wheels/zeta-2.0-py3-none-any.whl", "wheels/Foo_Bar-1.0-1-cp311-cp311-manylinux_2_17_x86_64.whl"]
    assert info["wheels"][0]["requested"] is True and info["wheels"][0]["url"] == "https://x/z.whl"
    assert info["wheels"][1]["name"] == "foo-bar"
    assert info["env_id"] == F.env_id("linux-64", info["packages"], info["wheels"]) != plain["env_id"]
    # requested is part of the environment (REQUESTED files)
    assert F.env_id("linux-64", info["packages"], [dict(info["wheels"][0], requested=False)]) \
        != F.env_id("linux-64", info["packages"], info["wheels"][:1])
    a = F.open_archive(str(tmp_path / "a.coex"))
    assert a.info == info
    a.verify(info["wheels"][0]["member"], info["wheels"][0]["sha256"], 10)
    with zipfile.ZipFile(str(tmp_path / "a.coex")) as z:
        zi = z.getinfo("wheels/zeta-2.0-py3-none-any.whl")
        assert zi.compress_type == zipfile.ZIP_STORED and z.read(zi) == b"z" * 10


def test_wheel_records_are_validated(tmp_path):
    from tests.runtime.format_helpers import _wheel
    info = _write(tmp_path, wheels=[_wheel(tmp_path)])

    def bad(change, match):
        rec = json.loads(F.dump_json(info))
        change(rec["wheels"][0])
        rec["env_id"] = F.env_id("linux-64", rec["packages"], rec["wheels"])
        with pytest.raises(F.FormatError, match=match):
            F.validate_info(rec)
    bad(lambda w: w.pop("sha256"), r"wheel #0 \(Foo_Bar-1.0-py3-none-any.whl\) is missing sha256")
    bad(lambda w: w.update(member="wheels/../x.whl"), "bad member name 'wheels/../x.whl'")
    bad(lambda w: w.update(filename="foo_bar-1.0.tar.gz", member="wheels/foo_bar-1.0.tar.gz"),
        "'foo_bar-1.0.tar.gz' is not a wheel file name")
    bad(lambda w: w.update(name="Foo_Bar"), "name 'Foo_Bar' must be the PEP 503 normalized name")
    bad(lambda w: w.update(name="other"), "name 'other' must be the PEP 503 normalized name.*'foo-bar'")
    bad(lambda w: w.update(sha256="XYZ"), "sha256 must be 64 lowercase hex digits")
    bad(lambda w: w.update(requested="yes"), "requested must be true or false")
    rec = json.loads(F.dump_json(info))
    rec["wheels"][0]["sha256"] = "0" * 64
    with pytest.raises(F.FormatError, match="env_id does not match"):
        F.validate_info(rec)


def test_writer_refuses_a_wheel_that_is_not_the_locked_one(tmp_path):
    from tests.runtime.format_helpers import _wheel
    w = _wheel(tmp_path)
    w["entry"]["sha256"] = "0" * 64
    with pytest.raises(F.FormatError, match="wheel Foo_Bar-1.0-py3-none-any.whl: the file to store .* is not the locked"):
        _write(tmp_path, wheels=[w])
    w = _wheel(tmp_path)
    w["entry"]["size"] += 1
    with pytest.raises(F.FormatError, match="is not the locked one"):
        _write(tmp_path, wheels=[w])
    with pytest.raises(F.FormatError, match="appears twice"):
        _write(tmp_path, wheels=[_wheel(tmp_path), _wheel(tmp_path)])
    assert not os.path.exists(str(tmp_path / "a.coex"))
    assert not [n for n in os.listdir(str(tmp_path)) if ".tmp-" in n]
