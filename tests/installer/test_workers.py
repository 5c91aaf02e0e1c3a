"""coex_runtime/workers.py: packages extracted in forked worker processes (each with its own
interpreter lock): where the work runs, how results and errors travel back, the thread
fallback, interrupts."""
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from coex_runtime import install, workers
from tests.installer import helpers

REPO = Path(__file__).resolve().parents[2]


def _three(tmp_path):
    return [helpers.small_package(tmp_path, "p%d" % k, dict(("share/p%d/f%d.txt" % (k, j), "%d %d\n" % (k, j))
                                           for j in range(20))) for k in range(3)]


def _pid_recorder(tmp_path):
    """open_payload that notes which process opened which package (one file per call)."""
    log = tmp_path / "opened"
    log.mkdir()

    def open_payload(entry):
        (log / ("%s-%d" % (entry["name"], os.getpid()))).write_text("")
        return helpers.open_payload(entry)
    return open_payload, log


def _install(entries, tmp_path, open_payload, jobs, progress=None):
    staging, prefix = tmp_path / "st", tmp_path / "env"
    install.install_env(entries, open_payload, str(tmp_path / "pkgs"), str(staging), str(prefix),
                        jobs=jobs, progress=progress)
    os.rename(str(staging), str(prefix))
    install.finalize_env(str(prefix), entries)
    return prefix


def test_packages_are_extracted_in_forked_workers(tmp_path, monkeypatch):
    monkeypatch.setattr(workers, "FORK", True)
    entries = _three(tmp_path)
    open_payload, log = _pid_recorder(tmp_path)
    seen = []
    env = _install(entries, tmp_path, open_payload, jobs=2,
                   progress=lambda *a: seen.append(a[:3]))
    opened = dict(n.rsplit("-", 1) for n in os.listdir(str(log)))
    assert sorted(opened) == ["p0", "p1", "p2"]
    pids = set(int(p) for p in opened.values())
    assert os.getpid() not in pids and len(pids) == 3       # one worker per package
    for k in range(3):
        assert (env / ("share/p%d/f7.txt" % k)).read_text() == "%d 7\n" % k
        assert os.path.isdir(str(tmp_path / "pkgs" / entries[k]["stored_sha256"]))
    # progress is reported by this process, once per package, as workers finish
    assert sorted(x for x in seen if x[0] == "extract") == [("extract", n, 3) for n in (1, 2, 3)]
    assert [p for p in os.listdir(str(tmp_path / "pkgs")) if p.startswith(".")] == []


def test_without_fork_threads_of_this_process_extract(tmp_path, monkeypatch):
    monkeypatch.setattr(workers, "FORK", False)
    open_payload, log = _pid_recorder(tmp_path)
    env = _install(_three(tmp_path), tmp_path, open_payload, jobs=2)
    assert set(n.rsplit("-", 1)[1] for n in os.listdir(str(log))) == {str(os.getpid())}
    assert (env / "share/p2/f3.txt").read_text() == "2 3\n"


def test_no_fork_while_another_thread_runs(monkeypatch):
    monkeypatch.setattr(workers, "FORK", None)
    alone = threading.active_count() == 1   # not so under pytest-xdist (execnet's thread)
    stop = threading.Event()
    t = threading.Thread(target=stop.wait)
    t.start()
    try:
        assert not workers.can_fork()
    finally:
        stop.set()
        t.join()
    assert workers.can_fork() == alone
    monkeypatch.setattr(workers, "FORK", False)
    assert not workers.can_fork()


def test_a_worker_killed_by_a_signal_is_named(tmp_path, monkeypatch):
    monkeypatch.setattr(workers, "FORK", True)
    entries = _three(tmp_path)

    def open_payload(entry):
        if entry["name"] == "p1":
            os.kill(os.getpid(), signal.SIGKILL)
        return helpers.open_payload(entry)

    with pytest.raises(install.InstallError) as ei:
        _install(entries, tmp_path, open_payload, jobs=2)
    msg = str(ei.value)
    assert entries[1]["filename"] in msg and "killed by signal %d" % signal.SIGKILL in msg, msg
    assert not (tmp_path / "st").exists() and not (tmp_path / "env").exists()
    assert entries[1]["stored_sha256"] not in os.listdir(str(tmp_path / "pkgs"))


def test_an_unexpected_worker_exception_comes_back_with_its_traceback(monkeypatch):
    def fn(x):
        if x == 2:
            raise ZeroDivisionError("boom in the worker")
        return [x, x * x]

    assert workers.fork_map(fn, [0, 1, 3], 2) == [[0, 0], [1, 1], [3, 9]]
    with pytest.raises(install.InstallError) as ei:
        workers.fork_map(fn, [0, 1, 2, 3], 2)
    assert "ZeroDivisionError: boom in the worker" in str(ei.value)
    assert "Traceback" in str(ei.value)
    with pytest.raises(install.LinkScriptError):
        workers.fork_map(lambda x: (_ for _ in ()).throw(install.LinkScriptError("s")), [0, 1], 2)


def test_first_error_in_item_order_wins_and_no_new_workers_start(tmp_path):
    started = tmp_path / "started"
    started.mkdir()

    def fn(x):
        (started / str(x)).write_text("")
        if x in (0, 1):
            time.sleep(0.2 if x == 0 else 0)
            raise install.InstallError("item %d failed" % x)
        return x

    with pytest.raises(install.InstallError) as ei:
        workers.fork_map(fn, [0, 1, 2, 3, 4], 2)
    assert str(ei.value) == "item 0 failed"
    assert sorted(os.listdir(str(started))) == ["0", "1"]   # nothing started after a failure


def test_an_interrupted_parent_terminates_its_workers_which_clean_up(tmp_path):
    """SIGTERM to the workers unwinds them (try/finally cleanup runs, as extract_to_cache's
    removal of its temp dir does); the parent's exception propagates without waiting."""
    marker = tmp_path / "half-done"

    def fn(x):
        if x == 0:
            return x
        try:
            marker.write_text("x")
            time.sleep(30)
        finally:
            if marker.exists():
                marker.unlink()
        return x

    def on_done(k, result):
        while not marker.exists():
            time.sleep(0.01)
        raise KeyboardInterrupt

    t0 = time.time()
    with pytest.raises(KeyboardInterrupt):
        workers.fork_map(fn, [0, 1], 2, on_done)
    assert time.time() - t0 < 20
    assert not marker.exists()


_SIGNAL_AT_FORK = r"""
import os, signal, sys, time
from coex_runtime import workers
pids = sys.argv[1]

def fn(x):
    open(os.path.join(pids, str(os.getpid())), "w").close()
    time.sleep(30)
    return x

real_fork = os.fork

def fork():
    pid = real_fork()
    if pid:
        while not os.listdir(pids):  # the worker runs
            time.sleep(0.01)
        os.kill(os.getpid(), signal.SIGTERM)
    return pid

os.fork = fork
signal.signal(signal.SIGTERM, workers.raise_terminated)
t0 = time.time()
try:
    workers.fork_map(fn, [1], 1)
except workers.Terminated:
    pass
else:
    sys.exit("fork_map returned")
took = time.time() - t0
(pid,) = [int(p) for p in os.listdir(pids)]
try:
    os.waitpid(pid, os.WNOHANG)
    reaped = False
except ChildProcessError:  # reaped by fork_map
    reaped = True
print(took, reaped, os.path.exists("/proc/%d" % pid))
"""


def test_a_signal_that_comes_while_a_worker_is_forked_stops_and_reaps_that_worker(tmp_path):
    """SIGTERM delivered as os.fork returns (before the parent has noted the new worker) still
    reaches a parent that knows the worker: it is stopped and reaped, not left running.

    In a process of its own, as the runtime runs: one thread. (In pytest's process, threads that
    earlier tests left behind, rattler's among them, can take a process-directed signal that
    fork_map's thread holds blocked, after that thread is already waiting in select.)"""
    pids = tmp_path / "pids"
    pids.mkdir()
    out = subprocess.run([sys.executable, "-c", _SIGNAL_AT_FORK, str(pids)], cwd=str(REPO),
                         env=dict(os.environ, PYTHONPATH=str(REPO)), stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, universal_newlines=True, timeout=120)
    assert out.returncode == 0, out.stderr
    took, reaped, alive = out.stdout.split()
    assert float(took) < 20
    assert (reaped, alive) == ("True", "False")


def test_workers_are_understood_when_sigchld_is_ignored(tmp_path):
    """With SIGCHLD ignored the kernel reaps workers itself (waitpid: ECHILD): their messages
    still tell results from errors."""
    old = signal.signal(signal.SIGCHLD, signal.SIG_IGN)
    try:
        assert workers.fork_map(lambda x: x + 1, [1, 2, 3], 2) == [2, 3, 4]
        with pytest.raises(install.InstallError) as ei:
            workers.fork_map(lambda x: os._exit(3) if x == 2 else x, [1, 2], 2,
                              name=lambda x: "item-%d" % x)
        assert "item-2" in str(ei.value) and "without a result" in str(ei.value)
    finally:
        signal.signal(signal.SIGCHLD, old)


def _tell(x):
    for _ in range(x):
        workers.progress(10)
    return x * 2


@pytest.mark.parametrize("mapper", [workers.fork_map, workers.thread_map])
def test_progress_of_each_item_reaches_the_caller(mapper):
    """What a worker's function reports with workers.progress(n) reaches on_progress(k, n) in
    the caller (from forked workers through their pipes), and results are unaffected."""
    seen = []
    lock = threading.Lock()

    def on_progress(k, n):
        with lock:
            seen.append((k, n))
    items = [3, 0, 5, 2]
    assert mapper(_tell, items, 2, on_progress=on_progress) == [6, 0, 10, 4]
    assert sorted(seen) == sorted((k, 10) for k, x in enumerate(items) for _ in range(x))
    assert mapper(_tell, items, 2) == [6, 0, 10, 4]  # nobody listening: fine too

