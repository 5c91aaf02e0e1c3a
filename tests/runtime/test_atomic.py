"""coex_runtime/atomic.py: staged directories and locks (the end-to-end races are in
test_cache.py)."""
import os

from coex_runtime.atomic import AtomicDirectory, Lock


def _ready(d):
    return os.path.isfile(os.path.join(d, "ok"))


def _populate(tag):
    def populate(work):
        with open(os.path.join(work, "ok"), "w") as f:
            f.write(tag)
    return populate


def test_a_maker_never_moves_aside_a_ready_content_addressed_directory(tmp_path):
    """Two makers of one package find its cached copy damaged. A replaces it and links from
    it; B, which saw the damage a moment before A was done, must not move A's good copy aside
    (A is linking from it): B drops its own work and uses A's."""
    target = tmp_path / "pkgs" / "abc"
    target.mkdir(parents=True)
    (target / "half").write_text("damaged: no ok file")
    a = AtomicDirectory(str(target), ready=_ready)
    seen = []

    def ready_b(d):
        if not seen:  # B looks: damaged; meanwhile A replaces it and starts linking
            seen.append(1)
            assert a.ensure(_populate("A"))
            seen.append(os.stat(str(target)).st_ino)
            return False
        return _ready(d)
    b = AtomicDirectory(str(target), ready=ready_b)
    assert b.ensure(_populate("B")) is False
    assert (target / "ok").read_text() == "A" and os.stat(str(target)).st_ino == seen[1]
    assert sorted(os.listdir(str(tmp_path / "pkgs"))) == ["abc"]  # B's work and the trash gone


def test_a_damaged_content_addressed_directory_is_replaced(tmp_path):
    target = tmp_path / "pkgs" / "abc"
    target.mkdir(parents=True)
    (target / "half").write_text("x")
    assert AtomicDirectory(str(target), ready=_ready).ensure(_populate("new"))
    assert sorted(os.listdir(str(target))) == ["ok"]
    assert sorted(os.listdir(str(tmp_path / "pkgs"))) == ["abc"]


def test_lock_on_a_directory_and_turning_exclusive_into_shared(tmp_path):
    d = tmp_path / "d"
    d.mkdir()
    ex = Lock(str(d))
    assert ex.acquire()
    assert not Lock(str(d), shared=True, wait=False).acquire()
    ex.share()
    other = Lock(str(d), shared=True, wait=False)
    assert other.acquire()  # shared with shared
    assert not Lock(str(d), wait=False).acquire()
    other.release()
    ex.release()
    assert Lock(str(d), wait=False).acquire()
    assert os.path.isdir(str(d))
