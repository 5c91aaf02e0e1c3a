"""coex_runtime/preamble.py: the sh preamble and the bootstrap. Damaged archives by kind (the
runtime's own code, the bootstrap, the record and its zip headers, the sh preamble): each is
reported as a damaged archive (exit 1, no traceback, no shell syntax error), nothing of it runs,
and ``verify`` names it."""
import os
import random
import shutil
import struct
import subprocess
import zipfile

import pytest

from coex_runtime import format as F
from coex_runtime import preamble as P
from tests.runtime import rt_helpers as H

TOOLS = {"COEX_TOOLS": "1"}


def _copy(arc, tmp_path, name="bad.coex"):
    out = tmp_path / name
    shutil.copy(str(arc), str(out))
    return out


def _rewrite(arc, out, name, data):
    """A well-formed archive (its zip valid, CRCs right) whose member ``name`` holds ``data``."""
    with zipfile.ZipFile(str(arc)) as zin:
        infos = zin.infolist()
        head = open(str(arc), "rb").read(min(zi.header_offset for zi in infos))
        with open(str(out), "wb") as f:
            f.write(head)
            with zipfile.ZipFile(f, "w") as zout:
                for zi in infos:
                    zout.writestr(zi, data if zi.filename == name else zin.read(zi))
    os.chmod(str(out), 0o755)
    return out


def _patch(path, offset, data):
    with open(str(path), "r+b") as f:
        f.seek(offset)
        f.write(data)


def _central_entry(arc, name):
    """Offset of the central directory entry of member ``name``."""
    raw = open(str(arc), "rb").read()
    at = raw.rfind(b"PK\x01\x02", 0, raw.rfind(name.encode()))
    assert raw[at + 46:at + 46 + len(name)] == name.encode()
    return at


def _assert_refused(arc, root, *, what, argv=None, env=None):
    """Run it cold: a coex message naming the damage, exit 1, no traceback, nothing ran."""
    if argv is None:
        r = H.run(arc, "echo ran", root=root, env=dict(env or {}, COEX_ENTRYPOINT="sh"))
    else:
        r = subprocess.run(argv, env=dict(H.base_env(root), **(env or {})), stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE)
    err = r.stderr.decode()
    assert r.returncode == 1 and b"ran" not in r.stdout, H.text(r)
    assert "Traceback" not in err and "Syntax error" not in err and "Error:" not in err, err
    assert "damaged" in err and what in err and "download or copy it again" in err, err
    assert not os.path.isdir(os.path.join(str(root), "envs")) or not [
        n for n in os.listdir(os.path.join(str(root), "envs")) if not n.endswith(".lock")]
    return err


def _verify_fails(arc, root, what):
    r = H.run(arc, "verify", root=root, env=TOOLS)
    assert r.returncode == 1 and "coex verify: FAILED" in r.stderr.decode() or "damaged" in r.stderr.decode(), H.text(r)
    assert what in r.stderr.decode() and "Traceback" not in r.stderr.decode(), H.text(r)


def test_a_flipped_byte_in_a_runtime_module_never_runs(std_archive, tmp_path, root):
    """The runtime's own code is checked before it is used (the zip CRC would catch this one
    too, but as a traceback from zipimport or a SyntaxError)."""
    arc, _ = std_archive
    bad = _copy(arc, tmp_path)
    H.flip_byte(bad, "coex_runtime/extract.py")
    _assert_refused(bad, root, what="coex_runtime/extract.py")
    _assert_refused(bad, root, what="coex_runtime/extract.py", argv=[H.HOST_PY, str(bad)])
    _verify_fails(bad, root, "coex_runtime/extract.py")


@pytest.mark.parametrize("member", ["coex_runtime/main.py", "coex_runtime/preamble.py", "__main__.py"])
def test_an_altered_runtime_module_in_a_valid_zip_never_runs(std_archive, tmp_path, root, member):
    """Altered with the zip kept valid (CRCs right): only the record's sha256 tells, and the
    altered code must not run, nor ``verify`` say OK."""
    arc, _ = std_archive
    with zipfile.ZipFile(str(arc)) as z:
        source = z.read(member)
    evil = b"import sys; sys.stdout.write('EVIL\\n')\n" + source
    bad = _rewrite(arc, tmp_path / "bad.coex", member, evil)
    err = _assert_refused(bad, root, what=member)
    assert "does not match its record" in err
    _verify_fails(bad, root, member)


@pytest.mark.parametrize("kind", ["data", "local-name", "central-method", "altered-record"])
def test_a_damaged_record_is_reported_as_such(std_archive, tmp_path, root, kind):
    """COEX-INFO damaged in its deflated data (zlib / CRC), in its local header's name
    (zipfile's BadZipFile), in its central header's compression method (NotImplementedError), or
    rewritten (a valid zip, but not the record the preamble's archive id names)."""
    arc, info = std_archive
    bad = _copy(arc, tmp_path)
    with zipfile.ZipFile(str(arc)) as z:
        zi = z.getinfo(F.INFO_NAME)
    if kind == "data":
        H.flip_byte(bad, F.INFO_NAME)
    elif kind == "local-name":
        _patch(bad, zi.header_offset + 30, b"X")
    elif kind == "central-method":
        _patch(bad, _central_entry(arc, F.INFO_NAME) + 10, struct.pack("<H", 99))
    else:
        rec = dict(info, env={"COEX_TEST_VAR": "altered"})
        _rewrite(arc, bad, F.INFO_NAME, F.dump_json(rec))
    _assert_refused(bad, root, what=F.INFO_NAME)
    _assert_refused(bad, root, what=F.INFO_NAME, argv=[H.HOST_PY, str(bad)])
    for tool in ("verify", "info"):
        r = H.run(bad, tool, root=root, env=TOOLS)
        assert r.returncode == 1 and "damaged" in r.stderr.decode(), H.text(r)
        assert "Traceback" not in r.stderr.decode(), H.text(r)


def _cold_part(arc):
    """(start, end) of the checked cold part (the here-document's body) in the archive."""
    head = open(str(arc), "rb").read(16384)
    marker = b"<<'" + P.COLD_END.encode() + b"'\n"
    return head.index(marker) + len(marker), head.index(b"\n" + P.COLD_END.encode() + b"\n") + 1


def test_a_flipped_byte_in_the_cold_part_of_the_sh_preamble_is_reported(std_archive, tmp_path, root):
    """Flips spread over the cold part (its sh code and the bootstrap in it): the preamble's
    own cksum check stops it with a coex message, before the shell parses a damaged line."""
    arc, _ = std_archive
    start, end = _cold_part(arc)
    for k in range(12):
        at = start + (end - start) * k // 12 + 7
        bad = _copy(arc, tmp_path, "bad-%d.coex" % k)
        b = open(str(bad), "rb").read()[at]
        _patch(bad, at, bytes([b ^ 0x20]))
        err = _assert_refused(bad, root, what="its sh preamble")
        assert "does not match its checksum" in err, (at, err)


def test_without_cksum_the_bootstrap_still_checks_the_preamble(std_archive, tmp_path, root):
    """No cksum on PATH: the cold part runs unchecked, and the bootstrap compares the whole
    preamble with the record (here a flip in a comment of the warm part, harmless to sh)."""
    arc, _ = std_archive
    bad = _copy(arc, tmp_path)
    head = open(str(bad), "rb").read(4096)
    at = head.index(b"# Inspect it with") + 3
    _patch(bad, at, b"X")
    tools = H.no_python_path(tmp_path / "bin")
    err = _assert_refused(bad, root, what="its sh preamble",
                          env={"PATH": tools + ":" + os.path.dirname(H.HOST_PY)})
    assert "does not match its record" in err
    _verify_fails(bad, root, "its sh preamble")


def test_flips_anywhere_but_the_payloads_never_give_a_traceback(std_archive, tmp_path, root):
    """Seeded flips over the cold preamble, the runtime, the record and the zip directories
    (the payloads have their own tests): each run either works (a byte nothing reads) or says
    the archive is damaged; never a traceback or a shell syntax error."""
    arc, info = std_archive
    start, _ = _cold_part(arc)
    with zipfile.ZipFile(str(arc)) as z:
        regions = [(start, min(zi.header_offset for zi in z.infolist()))]
        for zi in z.infolist():
            if not zi.filename.startswith((F.PKGS_DIR, F.APP_DIR, ".coex/")):
                regions.append((zi.header_offset, zi.header_offset + 30 + len(zi.filename) + zi.compress_size))
        size = os.path.getsize(str(arc))
        regions.append((size - 22 - len(z.infolist()) * 60, size))  # around the central directory
    rng = random.Random(9)
    outcomes = []
    for k in range(30):
        lo, hi = regions[rng.randrange(len(regions))]
        at = rng.randrange(lo, hi)
        bad = _copy(arc, tmp_path, "flip-%d.coex" % k)
        b = open(str(bad), "rb").read()[at]
        _patch(bad, at, bytes([b ^ (1 << rng.randrange(8))]))
        shutil.rmtree(str(root), ignore_errors=True)
        r = H.run(bad, root=root)
        err = r.stderr.decode()
        assert "Traceback" not in err and "Syntax error" not in err, (at, err)
        if r.returncode == 0:
            assert r.stdout.decode().strip() == H.prefix_of(root, info), (at, H.text(r))
        else:
            assert r.returncode == 1 and ("damaged" in err or "truncated" in err), (at, H.text(r))
        outcomes.append(r.returncode)
        os.unlink(str(bad))
    assert outcomes.count(1) >= 20, outcomes  # most bytes there matter


def test_early_ctrl_c_ends_by_sigint_without_a_traceback(std_archive, tmp_path, root):
    """Ctrl-C while the first run's Python is still starting (importing the runtime): a line,
    no traceback, and the process ends by SIGINT (as a later Ctrl-C does). Simulated by a trace
    function that raises KeyboardInterrupt as the first runtime module starts executing."""
    import signal
    arc, _ = std_archive
    code = ("import sys, runpy\n"
            "def tracer(frame, event, arg):\n"
            "    if event == 'call' and 'coex_runtime' in frame.f_code.co_filename:\n"
            "        sys.settrace(None)\n"
            "        raise KeyboardInterrupt\n"
            "sys.settrace(tracer)\n"
            "sys.argv = [sys.argv[1]]\n"
            "runpy.run_path(sys.argv[0], run_name='__main__')\n")
    r = subprocess.run([H.HOST_PY, "-E", "-S", "-c", code, str(arc)], env=H.base_env(root),
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    err = r.stderr.decode()
    assert r.returncode == -signal.SIGINT and "Traceback" not in err, (r.returncode, err)
    assert "coex: interrupted" in err
    # and through the preamble, with the fault hook at the same point
    r = H.run(arc, root=root, env={"COEX_FAULT": "boot:INT"})
    assert r.returncode == -signal.SIGINT and "Traceback" not in r.stderr.decode(), H.text(r)


def test_python2_is_told_which_python_it_needs(std_archive, root):
    py2 = os.path.expanduser("~/.pyenv/versions/2.7.18/bin/python2.7")
    if not os.path.exists(py2):
        pytest.skip("no Python 2.7 here")
    arc, _ = std_archive
    r = subprocess.run([py2, str(arc)], env=H.base_env(root), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert r.returncode == 127 and "needs Python >= 3.6" in r.stderr.decode(), H.text(r)


def test_cksum_is_posix_cksum(tmp_path):
    data = b"".join(bytes([i % 251]) for i in range(5000)) + b"coex\n"
    (tmp_path / "d").write_bytes(data)
    r = subprocess.run(["cksum"], stdin=open(str(tmp_path / "d"), "rb"), stdout=subprocess.PIPE)
    assert r.stdout.decode().strip() == P.cksum(data)
    assert P.cksum(b"") == "4294967295 0"


def test_the_preamble_digest_ignores_only_the_archive_id():
    a, b = F.render_preamble("a" * 64), F.render_preamble("b" * 64)
    assert a != b and P.digest(a) == P.digest(b)
    assert P.digest(a.replace(b"Inspect", b"inspect")) != P.digest(a)


def test_nothing_is_imported_from_the_working_directory(std_archive, tmp_path, root):
    """`python -c` puts the working directory first on sys.path: the bootstrap takes it off
    before importing anything, so a json.py or coex_runtime/ there is never run."""
    arc, info = std_archive
    cwd = tmp_path / "cwd"
    (cwd / "coex_runtime").mkdir(parents=True)
    for rel in ("json.py", "zipfile.py", "hashlib.py", "coex_runtime/__init__.py", "coex_runtime/main.py"):
        (cwd / rel).write_text("import sys; sys.stdout.write('EVIL\\n'); sys.exit(9)\n")
    for argv in ([str(arc)], [H.HOST_PY, str(arc)]):
        shutil.rmtree(str(root), ignore_errors=True)
        r = subprocess.run(argv, env=H.base_env(root), cwd=str(cwd), stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE)
        assert r.returncode == 0 and r.stdout.decode().strip() == H.prefix_of(root, info), H.text(r)


def _code_files(root):
    d = os.path.join(str(root), "code")
    return sorted(os.listdir(d)) if os.path.isdir(d) else []


def _fresh(root):
    """Everything of the cache but the runtime's code: the next run is a first run again."""
    for n in os.listdir(str(root)):
        p = os.path.join(str(root), n)
        if n != "code":
            shutil.rmtree(p) if os.path.isdir(p) else os.unlink(p)


def test_the_runtime_code_is_cached_per_python_and_used_only_when_intact(std_archive, tmp_path, root):
    """A first run keeps the runtime's bytecode in code/ (one file per runtime and Python); the
    next first run takes the runtime from there (here: a valid entry whose code says so), but
    never from a damaged one, which is written again."""
    arc, info = std_archive
    r = H.run(arc, root=root)
    assert r.returncode == 0, H.text(r)
    names = _code_files(root)
    assert len(names) == 1 and names[0].endswith("-cpython-311"), names
    where = os.path.join(str(root), "code", names[0])
    data = open(where, "rb").read()
    # (marshal is per Python: the entry is read and rewritten by the Python that wrote it)
    script = ("import hashlib, marshal, sys\n"
              "data = open(sys.argv[1], 'rb').read()\n"
              "code = marshal.loads(data[77:])\n"
              "print(' '.join(sorted(code)))\n"
              "code['coex_runtime/main.py'] = compile("
              "'def main():\\n    print(\\'from the code cache\\')\\n    return 0\\n', 'x', 'exec')\n"
              "payload = marshal.dumps(code)\n"
              "open(sys.argv[1], 'wb').write(b'coex-code/1 ' + hashlib.sha256(payload).hexdigest()"
              ".encode() + b'\\n' + payload)\n")
    r = subprocess.run([H.HOST_PY, "-c", script, where], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert r.returncode == 0, H.text(r)
    assert r.stdout.decode().split() == sorted(n for n in info["runtime"]["files"] if n.startswith("coex_runtime/"))
    # a valid entry is used as it is: its main says so
    _fresh(root)
    r = H.run(arc, root=root)
    assert r.returncode == 0 and r.stdout.decode() == "from the code cache\n", H.text(r)
    # one flipped byte: not used, compiled again from the checked archive, the entry rewritten
    raw = bytearray(open(where, "rb").read())
    raw[len(raw) // 2] ^= 0x01
    open(where, "wb").write(bytes(raw))
    _fresh(root)
    r = H.run(arc, root=root)
    assert r.returncode == 0 and r.stdout.decode().strip() == H.prefix_of(root, info), H.text(r)
    assert open(where, "rb").read() == data
    # another Python: its own entry
    _fresh(root)
    r = H.run(arc, root=root, python=H.PYTHONS["3.6"])
    assert r.returncode == 0, H.text(r)
    assert sorted(n.split("-", 1)[1] for n in _code_files(root)) == ["cpython-311", "cpython-36"]


def test_cached_runtime_code_names_the_archive_that_runs_it(std_archive, tmp_path, root):
    """The code cache is shared by every archive of the same runtime: its code objects name the
    archive that runs them (in tracebacks), not the one that compiled them."""
    arc, _ = std_archive
    assert H.run(arc, root=root).returncode == 0
    other = _copy(arc, tmp_path, "other.coex")
    code = ("import sys, os, runpy\n"
            "def tracer(frame, event, arg):\n"
            "    if event == 'call' and 'coex_runtime' in frame.f_code.co_filename:\n"
            "        sys.stdout.write(frame.f_code.co_filename + '\\n')\n"
            "        sys.stdout.flush()\n"
            "        os._exit(0)\n"
            "sys.settrace(tracer)\n"
            "sys.argv = [sys.argv[1]]\n"
            "runpy.run_path(sys.argv[0], run_name='__main__')\n")
    _fresh(root)
    r = subprocess.run([H.HOST_PY, "-E", "-S", "-c", code, str(other)], env=H.base_env(root),
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert r.stdout.decode().startswith(str(other) + "/coex_runtime/"), H.text(r)


def test_a_flipped_byte_in_the_bootstrap_is_reported(std_archive, tmp_path, root):
    """The bootstrap follows the cold part (the shell never reads it): the line that runs it
    checks its sha256 first."""
    arc, _ = std_archive
    head = open(str(arc), "rb").read(65536)
    at = head.index(P.BOOT.encode()) + len(P.BOOT) // 2
    bad = _copy(arc, tmp_path)
    _patch(bad, at, bytes([head[at] ^ 0x20]))
    err = _assert_refused(bad, root, what="its bootstrap")
    assert "does not match its checksum" in err


def test_the_first_python_that_says_it_is_3_6_or_newer_runs_it(std_archive, tmp_path, root):
    """python3 too old (here a Python 2): the preamble takes python; COEX_PYTHON too old: said."""
    py2 = os.path.expanduser("~/.pyenv/versions/2.7.18/bin/python2.7")
    if not os.path.exists(py2):
        pytest.skip("no Python 2.7 here")
    arc, info = std_archive
    bin_dir = tmp_path / "bin"
    H.no_python_path(bin_dir)
    for tool in ("cksum", "flock", "mkdir", "bash"):
        if shutil.which(tool):
            os.symlink(shutil.which(tool), str(bin_dir / tool))
    os.symlink(py2, str(bin_dir / "python3"))
    os.symlink(H.HOST_PY, str(bin_dir / "python"))
    r = H.run(arc, root=root, env={"PATH": str(bin_dir), "COEX_PYTHON": None})
    assert r.returncode == 0 and r.stdout.decode().strip() == H.prefix_of(root, info), H.text(r)
    shutil.rmtree(str(root))
    r = H.run(arc, root=root, env={"PATH": str(bin_dir), "COEX_PYTHON": py2})
    assert r.returncode == 127 and "is not a working Python >= 3.6" in r.stderr.decode(), H.text(r)
