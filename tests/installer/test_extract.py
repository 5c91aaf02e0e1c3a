"""coex_runtime/extract.py: the package cache: reused across environments, safe under concurrent
extractors, a damaged entry extracted again."""
import os
import threading

from coex_runtime import extract, install
from tests.installer import helpers


def test_cache_is_reused_and_shared(tmp_path, tiny_channel):
    e = helpers.entry_from_file(tiny_channel.file("prefixprog"))
    opened = []

    def counting(entry):
        opened.append(entry["filename"])
        return open(entry["path"], "rb")

    for n in range(2):
        staging, final = tmp_path / ("st%d" % n), tmp_path / ("env%d" % n)
        install.install_env([e], counting, str(tmp_path / "pkgs"), str(staging), str(final))
        os.rename(str(staging), str(final))
        install.finalize_env(str(final), [e])
    assert opened == ["prefixprog-1.0-h0_0.conda"]  # the second env came from the cache
    assert os.path.samefile(str(tmp_path / "env0/bin/.prefixprog-post-link.sh"),
                            str(tmp_path / "env1/bin/.prefixprog-post-link.sh"))


def test_concurrent_extraction_of_one_package(tmp_path, tiny_channel):
    e = helpers.entry_from_file(tiny_channel.file("python"))
    pkgs = tmp_path / "pkgs"
    results, errors = [], []

    def work():
        try:
            results.append(extract.extract_to_cache(e, helpers.open_payload, str(pkgs)))
        except Exception as ex:  # pragma: no cover - reported below
            errors.append(ex)

    ts = [threading.Thread(target=work) for _ in range(4)]
    [t.start() for t in ts]
    [t.join() for t in ts]
    assert not errors
    assert len(set(results)) == 1
    assert sorted(os.listdir(str(pkgs))) == [e["stored_sha256"]]


def test_damaged_cache_entry_is_extracted_again(tmp_path, tiny_channel):
    e = helpers.entry_from_file(tiny_channel.file("prefixprog"))
    pkgs = tmp_path / "pkgs"
    helpers.coex_install([e], pkgs, tmp_path / "env0")
    cached = pkgs / e["stored_sha256"]
    (cached / "share/prefixprog/plain.txt").unlink()          # e.g. a partial cache cleanup
    (cached / "etc/prefixprog.conf").write_text("trunc")       # or a truncated file
    env = helpers.coex_install([e], pkgs, tmp_path / "env1")
    assert (env / "share/prefixprog/plain.txt").exists()
    assert (env / "etc/prefixprog.conf").read_text() == "prefix=%s\n" % env
    assert sorted(os.listdir(str(pkgs))) == [e["stored_sha256"]]
