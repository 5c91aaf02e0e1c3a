"""coex_runtime/pkgmeta.py: a package's own metadata and its validation."""
import hashlib

import pytest

from coex_runtime import install
from tests.factory.condapkg import Member, PackageMeta, info_files, write_archive
from tests.installer import helpers


def test_paths_json_digests_are_checked(tmp_path):
    """A payload file whose bytes differ from paths.json stops extraction (the package's
    own checksums, beyond the stored-bytes digest)."""
    members = [Member("share/d.txt", data=b"right\n")]
    meta = PackageMeta("dig", "1.0", "h0_0")
    info = info_files(meta, members)
    members[0].data = b"wrong\n"
    path = write_archive(tmp_path / "dig-1.0-h0_0.conda", info, members)
    e = helpers.entry_from_file(path, meta.index_json())
    with pytest.raises(install.InstallError) as ei:
        helpers.coex_install([e], tmp_path / "pkgs", tmp_path / "env")
    assert "share/d.txt" in str(ei.value) and "sha256" in str(ei.value)
    assert hashlib.sha256(b"wrong\n").hexdigest() in str(ei.value)
