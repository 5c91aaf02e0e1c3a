"""coex_runtime/fs.py: the file helpers every module shares."""
import os
import subprocess

import pytest

from tests.runtime import rt_helpers as H

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@pytest.mark.parametrize("version", ["3.6", "3.12", "3.13"])
def test_rmtree_removes_read_only_trees_without_deprecated_apis(tmp_path, version):
    """Packages hold read-only directories; ``shutil.rmtree(onerror=)`` is deprecated from 3.12
    in favour of ``onexc`` (a documented deprecation, no warning yet): on every Python the tree
    goes, and from 3.12 without passing ``onerror``."""
    if not os.path.exists(H.PYTHONS[version]):
        pytest.skip("no Python %s here" % version)
    top = tmp_path / "t"
    (top / "ro" / "sub").mkdir(parents=True)
    (top / "ro" / "sub" / "f").write_text("x")
    os.chmod(str(top / "ro" / "sub"), 0o555)
    os.chmod(str(top / "ro"), 0o555)
    code = ("import sys, shutil; sys.path.insert(0, %r)\n"
            "real = shutil.rmtree\n"
            "def strict(path, ignore_errors=False, onerror=None, **kw):\n"
            "    assert onerror is None or sys.version_info < (3, 12), 'onerror is deprecated'\n"
            "    return real(path, ignore_errors, onerror, **kw)\n"
            "shutil.rmtree = strict\n"
            "from coex_runtime.fs import rmtree; rmtree(%r)" % (REPO, str(top)))
    r = subprocess.run([H.PYTHONS[version], "-W", "error::DeprecationWarning", "-c", code],
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert r.returncode == 0, H.text(r)
    assert not top.exists()
