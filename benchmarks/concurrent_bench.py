"""N first runs of one archive at once against one first run, side by side in one run (not a
test).

    $COEX_VENV_PY benchmarks/concurrent_bench.py [--runs 16] [--rounds 5] [--tier realistic|tiny]

Each round, with an empty cache root each time: one first run of ``./app.coex`` (wall time until
it exits), then ``--runs`` first runs started together (wall time until the last one exits).
The ratio of the two is what a burst of first starts costs (a CI matrix, a job array, a
``parallel`` over the same tool): one of them installs, the others should wait cheaply and take
the warm path (goal: <= 1.3x). Reported: medians, the per-round ratios, and how many of the
``--runs`` processes started a Python (``COEX_VERBOSE`` phases on their stderr).

The realistic tier (default) is the factory's CPython 3.12 + pyflakes + zstd environment, the
program ``zstd -q --version`` (or ``--program python``: ``python -c pass``); the tiny tier is the
synthetic channel.

Measured on the project's 2-core VM (issue #9), 5 rounds each, main then this change:
    zstd:   1 first run 764 / 563 ms, 16 at once 1708 / 708 ms: 2.24x -> 1.26x (16 -> 1 Python)
    python: 1 first run 840 / 798 ms, 16 at once 2117 / 1045 ms: 2.52x -> 1.31x
The waiters now wait in their sh preamble (flock) and run warm. With ``--program python`` the
16 programs themselves each compile the factory CPython's stdlib .pyc (it ships none), which
is most of what is left above 1x there.
"""
import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(REPO), str(REPO / "pants-plugins")]

from benchmarks.start_bench import LIBZSTD, lock  # noqa: E402
from coex_runtime import format as F  # noqa: E402


def build(tier, work, program):
    if tier == "tiny":
        from tests.factory import tiny
        chan, specs, ep = tiny.build(work / "channel").path, ["prefixprog", "tinypy"], "prefixprog"
    else:
        from tests.factory import realistic
        chan, specs, ep = realistic.ensure(), list(realistic.SPECS_312), PROGRAMS[program]
    _, entries = lock(chan, specs)
    pkgs = [{"path": str(Path(chan) / e["subdir"] / e["filename"]), "entry": e,
             "encoding": "conda" if e["filename"].endswith(".conda") else "tar.bz2"} for e in entries]
    arc = work / "app.coex"
    info = F.write_archive(str(arc), "linux-64", pkgs, {"app": ep}, "app", libzstd_path=LIBZSTD,
                           requested_specs=specs)
    return arc, info


PROGRAMS = {"zstd": "zstd -q --version", "python": "python -c pass"}


def first_runs(arc, root, n, env):
    """Wall time of n simultaneous first runs; how many of them started Python."""
    shutil.rmtree(str(root), ignore_errors=True)
    e = dict(env, COEX_ROOT=str(root), COEX_VERBOSE="1")
    t = time.perf_counter()
    procs = [subprocess.Popen([str(arc)], env=e, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
             for _ in range(n)]
    errs = [p.communicate()[1] for p in procs]
    dt = time.perf_counter() - t
    bad = [(p.returncode, err.decode()) for p, err in zip(procs, errs) if p.returncode != 0]
    if bad:
        raise SystemExit("benchmark: a first run failed: %r" % (bad[0],))
    return dt, sum(1 for err in errs if b"coex: open" in err)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--tier", choices=("tiny", "realistic"), default="realistic")
    ap.add_argument("--runs", type=int, default=16)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--program", choices=sorted(PROGRAMS), default="zstd",
                    help="the entry point (realistic tier): zstd (native), or python -c pass (the "
                         "factory's CPython has no .pyc of its stdlib: 16 first starts of it each "
                         "compile them, which costs more than coex itself)")
    a = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="coex-concurrent-bench-"))
    try:
        arc, info = build(a.tier, work, a.program)
        host_py = "/usr/bin/python3" if os.path.exists("/usr/bin/python3") else sys.executable
        env = dict(os.environ, COEX_PYTHON=host_py)
        first_runs(arc, work / "root", 1, env)  # warm the page cache
        one, many, pythons = [], [], []
        for _ in range(a.rounds):
            one.append(first_runs(arc, work / "root", 1, env)[0])
            dt, started = first_runs(arc, work / "root", a.runs, env)
            many.append(dt)
            pythons.append(started)
        ratios = [m / o for o, m in zip(one, many)]
        print("tier %s: %d packages, archive %.1f MB, program %r, host python %s, %d CPUs"
              % (a.tier, len(info["packages"]), arc.stat().st_size / 1e6,
                 info["entry_points"]["app"].get("argv"), host_py, os.cpu_count()))
        print("first runs (median of %d rounds, each round on an empty cache):" % a.rounds)
        print("  1 first run              %8.1f ms" % (statistics.median(one) * 1000))
        print("  %2d first runs at once    %8.1f ms   ratio %.2fx (goal <= 1.3x: %s)"
              % (a.runs, statistics.median(many) * 1000, statistics.median(many) / statistics.median(one),
                 "met" if statistics.median(many) / statistics.median(one) <= 1.3 else "NOT met"))
        print("  per-round ratios         %s" % " ".join("%.2f" % r for r in ratios))
        print("  Python started by        %s of %d runs per round" % (" ".join(map(str, pythons)), a.runs))
    finally:
        shutil.rmtree(str(work), ignore_errors=True)


if __name__ == "__main__":
    main()
