"""Tiny archives for format tests (no pytest import: also run under old CPythons)."""
import hashlib
import os

from coex_runtime import format as F


def _pkg(tmp_path, name="x", payload=b"abc", subdir="noarch"):
    fn = "%s-1.0-0.conda" % name
    path = tmp_path / fn
    path.write_bytes(payload)
    entry = {"name": name, "version": "1.0", "build": "0", "subdir": subdir, "filename": fn,
             "sha256": hashlib.sha256(payload).hexdigest(), "size": len(payload)}
    return {"path": str(path), "entry": entry, "encoding": "conda"}


def _write(tmp_path, out="a.coex", **kw):
    (tmp_path / "src").mkdir(exist_ok=True)
    (tmp_path / "src" / "main.py").write_text("print(1)\n")
    (tmp_path / "src" / "run.sh").write_text("#!/bin/sh\necho hi\n")
    os.chmod(str(tmp_path / "src" / "run.sh"), 0o755)
    kw.setdefault("packages", [_pkg(tmp_path)])
    kw.setdefault("entry_points", {"main": "python src/main.py", "run": "src/run.sh -v", "fn": "pkg.cli:main"})
    kw.setdefault("default_entry_point", "main")
    kw.setdefault("app_files", [("src/main.py", str(tmp_path / "src" / "main.py")),
                                ("src/run.sh", str(tmp_path / "src" / "run.sh"))])
    return F.write_archive(str(tmp_path / out), "linux-64", **kw)


def _wheel(tmp_path, filename="Foo_Bar-1.0-py3-none-any.whl", payload=b"PK-not-really", **extra):
    path = tmp_path / filename
    path.write_bytes(payload)
    entry = {"name": F.normalize_name(filename.split("-")[0]), "version": filename.split("-")[1],
             "filename": filename, "sha256": hashlib.sha256(payload).hexdigest(), "size": len(payload)}
    entry.update(extra)
    return {"path": str(path), "entry": entry}
