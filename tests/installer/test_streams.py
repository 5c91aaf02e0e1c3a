"""coex_runtime/streams.py: package streaming (the .conda zip read from its local headers)."""
import io

import pytest

from coex_runtime import install
from tests.installer import helpers


def _rezip(src, dst, compress, stream=False):
    import zipfile

    class Unseekable(io.RawIOBase):
        def __init__(self, f):
            self.f = f

        def writable(self):
            return True

        def write(self, b):
            return self.f.write(b)

    with zipfile.ZipFile(str(src)) as zin, open(str(dst), "wb") as raw:
        out = Unseekable(raw) if stream else raw
        with zipfile.ZipFile(out, "w", compression=compress) as zout:
            for zi in zin.infolist():
                zout.writestr(zi.filename, zin.read(zi), compress_type=compress)
    return dst


def test_conda_zip_variants(tiny_channel, tmp_path):
    """Deflated members are read; a zip written as a stream (data descriptors, sizes unknown
    up front) is refused with a clear message rather than misread."""
    import zipfile

    src = tiny_channel.file("prefixprog")
    deflated = _rezip(src, tmp_path / "prefixprog-1.0-h0_0.conda", zipfile.ZIP_DEFLATED)
    e = helpers.entry_from_file(deflated)
    env = helpers.coex_install([e], tmp_path / "pkgs", tmp_path / "env")
    assert (env / "etc/prefixprog.conf").read_text() == "prefix=%s\n" % env

    (tmp_path / "s").mkdir()
    streamed = _rezip(src, tmp_path / "s" / "prefixprog-1.0-h0_0.conda", zipfile.ZIP_STORED,
                      stream=True)
    e = helpers.entry_from_file(streamed)
    with pytest.raises(install.InstallError) as ei:
        helpers.coex_install([e], tmp_path / "pkgs2", tmp_path / "env2")
    assert "prefixprog-1.0-h0_0.conda" in str(ei.value) and "data descriptor" in str(ei.value)
