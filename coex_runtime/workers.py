"""Where the installer's work runs: forked worker processes (each with its own interpreter
lock, so the Python code of different packages runs at once), else threads of this process.

``fork_map(fn, items, jobs)`` runs fn over items in at most ``jobs`` workers; a worker's result
travels back as JSON, its failure as the same CoexFailure class with its message and errno
(another exception: an InstallError with its traceback). ``thread_map`` is the fallback when
``can_fork()`` says no (no os.fork, or another thread runs: a child forked while it holds a lock
could deadlock).
"""

import errno
import json
import os
import sys
import threading

from coex_runtime.errors import CoexFailure, InstallError, Terminated, by_name, os_errno, raise_terminated


def cpus():  # type: () -> int
    """CPUs this process may run on (a container's CPU set), else the machine's count."""
    try:
        return len(os.sched_getaffinity(0)) or 1
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def count_jobs(jobs, n):  # type: (Optional[int], int) -> int
    """How many workers for n items: ``jobs``, by default min(4, usable CPUs)."""
    if jobs is None:
        jobs = min(4, cpus())
    return max(1, min(int(jobs), max(1, n)))


def pool_map(fn, items, jobs, on_done=None, name=str, on_progress=None):
    # type: (Callable, Sequence, int, Optional[Callable[[int, object], None]], Callable, Optional[Callable[[int, int], None]]) -> list
    """[fn(x) for x in items] on at most ``jobs`` workers: forked processes when ``can_fork()``,
    else threads; ``on_done(k, result)`` as item k finishes, ``on_progress(k, n)`` as item k's
    fn calls ``progress(n)`` (see fork_map and thread_map)."""
    if jobs > 1 and can_fork():
        return fork_map(fn, items, jobs, on_done, name, on_progress)
    return thread_map(fn, items, jobs, on_done, on_progress)


_REPORT = threading.local()


def progress(n):  # type: (int) -> None
    """Called by a pool_map function: it made ``n`` more units of progress (bytes read...),
    which reach the caller's ``on_progress`` (from a forked worker, through its pipe)."""
    report = getattr(_REPORT, "fn", None)
    if report is not None:
        report(n)


def thread_map(fn, items, jobs, on_done=None, on_progress=None):
    # type: (Callable, Sequence, int, Optional[Callable[[int, object], None]], Optional[Callable[[int, int], None]]) -> list
    """[fn(x) for x in items] on ``jobs`` threads (on_done(k, result) and on_progress(k, n) are
    called in the thread that runs item k); the first exception (in item order) is raised after
    every started job finished, and no job starts after one failed."""
    items = list(items)
    results, errors = [None] * len(items), [None] * len(items)
    todo, lock = iter(range(len(items))), threading.Lock()

    def worker():
        while not any(errors):
            with lock:
                i = next(todo, None)
            if i is None:
                return
            try:
                _REPORT.fn = None if on_progress is None else (lambda n, k=i: on_progress(k, n))
                results[i] = fn(items[i])
                if on_done is not None:
                    on_done(i, results[i])
            except BaseException as e:  # noqa: B902 - re-raised in the caller's thread
                errors[i] = e
            finally:
                _REPORT.fn = None
    if jobs <= 1 or len(items) <= 1:
        worker()  # in this thread
    else:
        threads = [threading.Thread(target=worker, name="coex-install-%d" % k) for k in range(jobs)]
        for t in threads:
            t.daemon = True
            t.start()
        for t in threads:
            t.join()
    for e in errors:
        if e is not None:
            raise e
    return results


# None: fork when it is safe (os.fork exists and this process runs no other thread);
# False: never (threads in this process instead); True: whenever os.fork exists (tests).
FORK = None


def can_fork():  # type: () -> bool
    if not hasattr(os, "fork") or FORK is False:
        return False
    if FORK:
        return True
    # a child forked while another thread holds a lock (stdio, logging, ...) could deadlock
    return threading.active_count() == 1


def _parent_death_signal():
    """A function that makes the calling process get SIGTERM when its parent dies
    (``prctl(PR_SET_PDEATHSIG)``, Linux), or None where there is none."""
    try:
        import ctypes
        prctl = ctypes.CDLL(None).prctl
    except (ImportError, OSError, AttributeError):
        return None
    import signal
    return lambda: prctl(1, int(signal.SIGTERM), 0, 0, 0)  # 1: PR_SET_PDEATHSIG


def _worker_signals(parent, die_with_parent):
    """In a new worker: SIGTERM and SIGHUP raise Terminated (unwinding it, so its work directory
    is removed), and so does its parent's death (a SIGKILLed install leaves no worker behind)."""
    import signal
    for name in ("SIGTERM", "SIGHUP"):
        signal.signal(getattr(signal, name), raise_terminated)
    if die_with_parent is not None:
        die_with_parent()
    if os.getppid() != parent:  # it died before that
        raise Terminated(signal.SIGTERM)


def fork_map(fn, items, jobs, on_done=None, name=str, on_progress=None):
    # type: (Callable, Sequence, int, Optional[Callable[[int, object], None]], Callable, Optional[Callable[[int, int], None]]) -> list
    """[fn(x) for x in items] in forked worker processes, at most ``jobs`` at a time, items
    started in the given order. fn's return value travels back as JSON, a failure as its
    CoexFailure class, message and errno, any other exception as an InstallError with its
    traceback (the first in item order is raised after every worker finished; no new worker
    starts after a failure). on_done(k, result) runs in this process as item k finishes, and
    on_progress(k, n) as its fn calls ``progress(n)``; name(item) names it when its worker
    dies without a word.

    A worker's pipe carries ``+<n>\\n`` lines (progress), then ``=`` and its JSON message."""
    import select
    import signal
    items = list(items)
    results = [None] * len(items)
    errors = [None] * len(items)
    running = {}  # read fd -> [k, pid, chunks]
    nxt, parent, die_with_parent = 0, os.getpid(), _parent_death_signal()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()  # or a child might write the same buffered bytes again
        except Exception:  # noqa: B902 - a closed or odd stream is not our problem here
            pass
    try:
        while running or (nxt < len(items) and not any(errors)):
            while nxt < len(items) and len(running) < jobs and not any(errors):
                r, w = os.pipe()
                # a signal that stops this process (Terminated, KeyboardInterrupt) waits until
                # the new worker is in ``running``, which the finally below stops and reaps (in
                # a process of one thread, as the runtime's is: another thread that does not
                # block it could take a process-directed signal meanwhile)
                blocked = _block(signal, _STOP_SIGNALS)
                try:
                    pid = os.fork()
                except BaseException:
                    _unblock(signal, blocked)
                    raise
                if pid == 0:  # the worker: never returns
                    code = 1
                    try:
                        os.close(r)
                        try:
                            _worker_signals(parent, die_with_parent)
                            _unblock(signal, blocked)
                            _REPORT.fn = None if on_progress is None else (
                                lambda n: _write_all(w, b"+%d\n" % n))
                            msg = {"ok": fn(items[nxt])}
                            code = 0
                        except CoexFailure as e:
                            msg = {"error": str(e), "type": type(e).__name__, "errno": os_errno(e)}
                        except BaseException as e:  # noqa: B902 - reported by the parent
                            import traceback
                            msg = {"error": "%s: %s\n%s" % (type(e).__name__, e,
                                                             traceback.format_exc()),
                                   "errno": os_errno(e)}
                        _write_all(w, b"=" + json.dumps(msg).encode("utf-8"))
                    finally:
                        os._exit(code)
                try:
                    os.close(w)
                    running[r] = [nxt, pid, []]
                    nxt += 1
                finally:
                    _unblock(signal, blocked)
            ready = select.select(list(running), [], [])[0]
            for r in ready:
                chunk = os.read(r, 65536)
                if chunk:
                    running[r][2].append(chunk)
                    if on_progress is not None:
                        _progress_lines(running[r], on_progress)
                    continue
                k, pid, chunks = running.pop(r)
                os.close(r)
                status = _waitpid(pid)
                data = b"".join(chunks)
                if on_progress is not None:
                    data = _progress_lines([k, pid, [data]], on_progress)
                try:
                    if data[:1] != b"=":
                        raise ValueError("no result")
                    msg = json.loads(data[1:].decode("utf-8"))
                except ValueError:
                    msg = {}
                if "ok" in msg and status in (0, None):
                    results[k] = msg["ok"]
                    if on_done is not None:
                        on_done(k, results[k])
                elif msg.get("error"):
                    errors[k] = by_name(msg.get("type", ""))(msg["error"])
                    errors[k].errno = msg.get("errno")
                else:
                    errors[k] = InstallError("%s: %s" % (name(items[k]), _died(status)))
    finally:
        # only when this process failed or was told to stop (Terminated, KeyboardInterrupt)
        for r, (k, pid, chunks) in list(running.items()):
            try:
                os.kill(pid, signal.SIGTERM)
            except OSError:
                pass
            _waitpid(pid)
            os.close(r)
    for e in errors:
        if e is not None:
            raise e
    return results


_STOP_SIGNALS = ("SIGTERM", "SIGHUP", "SIGINT")


def _block(signal, names):
    """Block the signals ``names`` in this thread; what to give _unblock (None where signal
    masks are not available)."""
    if not hasattr(signal, "pthread_sigmask"):
        return None
    return signal.pthread_sigmask(signal.SIG_BLOCK, [getattr(signal, n) for n in names])


def _unblock(signal, blocked):
    """Restore the mask _block returned: a signal that came meanwhile is delivered now."""
    if blocked is not None:
        signal.pthread_sigmask(signal.SIG_SETMASK, blocked)


def _write_all(fd, data):
    while data:
        data = data[os.write(fd, data):]


def _progress_lines(run, on_progress):  # type: (list, Callable[[int, int], None]) -> bytes
    """Hand the complete ``+<n>`` lines read from a worker (``run``: [k, pid, chunks]) to
    on_progress; keep the rest (what follows, or the result). Returns what is kept."""
    data = b"".join(run[2])
    while data[:1] == b"+" and b"\n" in data:
        line, data = data.split(b"\n", 1)
        try:
            on_progress(run[0], int(line[1:]))
        except ValueError:
            pass
    run[2][:] = [data]
    return data


def _waitpid(pid):
    """The worker's exit status; None when it cannot be known (SIGCHLD ignored: the kernel
    reaped it, and its message alone tells how it went)."""
    while True:
        try:
            return os.waitpid(pid, 0)[1]
        except OSError as e:
            if e.errno == errno.ECHILD:
                return None
            if e.errno != errno.EINTR:  # 3.5+ retries EINTR itself
                raise


def _died(status):
    if status is None:
        return "the worker process ended without a result"
    if os.WIFSIGNALED(status):
        return "the worker process was killed by signal %d" % os.WTERMSIG(status)
    return "the worker process exited with status %d without a result" % (
        os.WEXITSTATUS(status) if os.WIFEXITED(status) else status)
