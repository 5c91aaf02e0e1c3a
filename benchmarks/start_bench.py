"""Start-up cost of a .coex archive, measured side by side in one run (not a test).

    $COEX_VENV_PY benchmarks/start_bench.py [--tier tiny|realistic] [--warm-runs N] [--cold-runs N]

* warm start: ``./app.coex`` (sh preamble + launcher + exec) versus running the environment's
  program directly (``<prefix>/bin/<prog>``), interleaved, N runs each; the overhead is the
  difference of the medians (goal: <= 3 ms).
* cold start: ``./app.coex`` with an empty cache (verify + extract + link + finalize + launch +
  run) versus ``rattler.install`` of the same locked packages from a file:// channel into an
  empty prefix with an empty package cache (then running the program), and both again with the
  package cache warm (new environment, packages already extracted).
  rattler does not compile .pyc nor run link scripts here; coex does both.

The tiny tier (default) is the synthetic channel (C programs, a fake python); the realistic tier
is the factory's real CPython 3.11 + numpy + pyflakes + zstd channel.
"""
import argparse
import asyncio
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(REPO), str(REPO / "pants-plugins")]

from coex_runtime import format as F  # noqa: E402
from coex_runtime.cache import env_dir_name  # noqa: E402

LIBZSTD = os.path.realpath("/usr/lib/x86_64-linux-gnu/libzstd.so.1")


def spawn_time(argv, env):
    t = time.perf_counter()
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        fa = [(os.POSIX_SPAWN_DUP2, devnull, 1)]
        pid = os.posix_spawn(argv[0], argv, env, file_actions=fa)
        _, status = os.waitpid(pid, 0)
    finally:
        os.close(devnull)
    dt = time.perf_counter() - t
    if status != 0:
        raise SystemExit("benchmark: %s failed with wait status %d" % (argv, status))
    return dt


def topo(entries):
    by_name = {e["name"]: e for e in entries}
    out, seen = [], set()

    def visit(e):
        if e["name"] in seen:
            return
        seen.add(e["name"])
        for d in e.get("depends", []):
            dn = d.split()[0]
            if dn in by_name:
                visit(by_name[dn])
        out.append(e)

    for e in sorted(entries, key=lambda e: e["name"]):
        visit(e)
    return out


def lock(channel, specs):
    from tests.factory.fixtures import rattler_solve
    records = rattler_solve(channel, specs)
    entries = []
    for r in records:
        rd = json.loads((Path(channel) / r.subdir / "repodata.json").read_text())
        rec = rd.get("packages.conda", {}).get(r.file_name) or rd["packages"][r.file_name]
        entries.append(dict(rec, filename=r.file_name, subdir=r.subdir, channel=Path(channel).as_uri()))
    return records, topo(entries)


def build(tier, work):
    if tier == "tiny":
        from tests.factory import tiny
        chan = tiny.build(work / "channel")
        chan = chan.path
        specs, prog = ["prefixprog", "tinypy"], "prefixprog"
    else:
        from tests.factory import realistic
        chan = realistic.ensure()
        specs, prog = list(realistic.SPECS), "cprefix"
    records, entries = lock(chan, specs)
    pkgs = [{"path": str(Path(chan) / e["subdir"] / e["filename"]), "entry": e,
             "encoding": "conda" if e["filename"].endswith(".conda") else "tar.bz2"} for e in entries]
    arc = work / "app.coex"
    info = F.write_archive(str(arc), "linux-64", pkgs, {prog: prog}, prog, libzstd_path=LIBZSTD,
                           requested_specs=specs)
    return chan, records, arc, info, prog


def median_ms(xs):
    return statistics.median(xs) * 1000.0


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--tier", choices=("tiny", "realistic"), default="tiny")
    ap.add_argument("--warm-runs", type=int, default=300)
    ap.add_argument("--cold-runs", type=int, default=5)
    a = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="coex-start-bench-"))
    try:
        chan, records, arc, info, prog = build(a.tier, work)
        size = arc.stat().st_size
        root = work / "root"
        # the host python that runs first starts (pyenv shims on PATH would add ~0.3 s per call)
        host_py = "/usr/bin/python3" if os.path.exists("/usr/bin/python3") else sys.executable
        env = dict(os.environ, COEX_ROOT=str(root), COEX_PYTHON=host_py)
        env.pop("COEX_VERBOSE", None)
        prefix = root / "envs" / env_dir_name(info["env_id"])
        spawn_time([str(arc)], env)  # install
        direct = [str(prefix / "bin" / prog)]
        for _ in range(20):  # warm up both
            spawn_time([str(arc)], env)
            spawn_time(direct, env)
        t_arc, t_dir = [], []
        for _ in range(a.warm_runs):
            t_arc.append(spawn_time([str(arc)], env))
            t_dir.append(spawn_time(direct, env))
        m_arc, m_dir = median_ms(t_arc), median_ms(t_dir)
        print("tier %s: %d packages, archive %.1f MB, host python %s"
              % (a.tier, len(info["packages"]), size / 1e6, host_py))
        print("warm start (median of %d, interleaved):" % a.warm_runs)
        print("  ./app.coex            %7.2f ms" % m_arc)
        print("  prefix/bin/%-10s %7.2f ms" % (prog, m_dir))
        print("  overhead              %7.2f ms  (goal <= 3 ms: %s)  ratio %.2fx"
              % (m_arc - m_dir, "met" if m_arc - m_dir <= 3.0 else "NOT met", m_arc / m_dir))

        import rattler

        def rattler_cold(cache):
            p = Path(tempfile.mkdtemp(dir=str(work), prefix="rprefix-"))
            t = time.perf_counter()
            asyncio.run(rattler.install(records, target_prefix=str(p), cache_dir=str(cache),
                                        show_progress=False))
            spawn_time([str(p / "bin" / prog)], env)
            dt = time.perf_counter() - t
            shutil.rmtree(str(p))
            return dt

        def coex_cold(keep_pkgs):
            if keep_pkgs:
                for d in ("envs", "launch", "apps"):
                    shutil.rmtree(str(root / d), ignore_errors=True)
            else:
                shutil.rmtree(str(root), ignore_errors=True)
            return spawn_time([str(arc)], env)

        c_coex, c_rat, w_coex, w_rat = [], [], [], []
        for i in range(a.cold_runs):
            c_coex.append(coex_cold(False))
            w_coex.append(coex_cold(True))
            cache = work / ("rcache-%d" % i)
            c_rat.append(rattler_cold(cache))
            w_rat.append(rattler_cold(cache))
            shutil.rmtree(str(cache))
        print("cold start (median of %d, interleaved):" % a.cold_runs)
        print("  empty cache:      coex %8.1f ms   rattler.install+run %8.1f ms   ratio %.2fx"
              % (median_ms(c_coex), median_ms(c_rat), median_ms(c_coex) / median_ms(c_rat)))
        print("  warm pkgs cache:  coex %8.1f ms   rattler.install+run %8.1f ms   ratio %.2fx"
              % (median_ms(w_coex), median_ms(w_rat), median_ms(w_coex) / median_ms(w_rat)))
        print("  (coex also verifies sha256, compiles .pyc and runs link scripts; rattler here does not)")
    finally:
        shutil.rmtree(str(work), ignore_errors=True)


if __name__ == "__main__":
    main()
