"""coex_runtime/plan.py: where files go, and who wins a path two packages ship."""
from tests.installer import helpers


def test_clobbering_later_package_wins(tmp_path):
    a = helpers.small_package(tmp_path, "first", {"share/same.txt": "first\n", "share/first.txt": "1\n"})
    b = helpers.small_package(tmp_path, "second", {"share/same.txt": "second\n"}, depends=["first"])
    env = helpers.coex_install([a, b], tmp_path / "pkgs", tmp_path / "env", jobs=4)
    assert (env / "share/same.txt").read_text() == "second\n"
    assert (env / "share/first.txt").read_text() == "1\n"
