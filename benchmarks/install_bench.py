"""Cold install of the realistic environment: coex's installer vs `rattler.install` vs the
floor (`tar -I zstd -x` of the same bytes), measured side by side in one run, printed as ratios.

    $COEX_VENV_PY benchmarks/install_bench.py [--rounds N] [--jobs N] [--fmt as-locked|tar.zst]

* coex: `install_env` (extract into an empty package cache + link into staging) + rename, then
  `finalize_env` (.pyc of noarch python packages, link scripts, conda-meta) reported apart,
  because rattler compiles no .pyc (the `install` column is the like-for-like one).
* rattler: `rattler.install` of the same records into an empty cache + prefix (file:// URLs).
* floor: one `tar -I zstd -xf` per package of the same payload as a single .tar.zst (the
  `.conda`'s two inner tars concatenated), run one after another, into an empty directory.
Each round uses fresh directories, the order of the three rotates and `sync` runs between them
(so nobody pays for another's write-back). Reported: the best round of each, the medians, and
per-round ratios (the three of one round run within ~2 s of each other, so their ratio is the
fairest figure on a shared machine). Goals: coex <= 1.0x rattler and <= 1.5x the floor.

coex extracts missing packages in forked worker processes (one per usable CPU, biggest first),
links in one thread, and compiles .pyc with importlib's loader in `python -E -S -B`, split over
processes by source size. Measured on the project's 2-core VM (Nov 2026, 2 runs of 9 rounds):
    best:    floor 0.696 / 0.781 s, rattler 0.967 / 0.959 s, coex 0.700 / 0.742 s
    medians: floor 0.826 / 0.949 s, rattler 1.052 / 1.108 s, coex 0.832 / 0.835 s,
             coex + finalize 0.914 / 0.924 s
    per round coex / rattler: median 0.79x / 0.75x, worst 0.87x; <= 1.0x in 18 of 18 rounds
    per round coex / floor:   median 0.97x / 0.90x, worst 1.25x
    per round coex + finalize / rattler: median 0.87x / 0.84x, worst 0.96x
    median CPU time (user+sys, children included): coex 0.78x / 0.71x rattler's
The machine swings between a slow state (as above: file creation in the kernel dominates) and a
fast one (floor ~0.3-0.45 s) where user CPU matters: there the best rounds were e.g. floor 0.441,
rattler 0.482, coex 0.510 s (1.06x rattler, 1.16x floor), once rattler 0.305 vs coex 0.375 s.
coex does more work than rattler: sha256 of the stored bytes and of every file (checked against
paths.json, ~0.15 s of CPU for this environment at 1 GB/s) and Python per tar member.
Before this change (threads in one process, .pyc by py_compile, ldconfig run per zstd stream),
side by side with the new code in one run of 14 alternating rounds (each in a fresh process):
install_env per-round new/old median 0.92x (medians 1.040 -> 0.807 s, best 0.675 -> 0.582 s),
finalize median 0.174 -> 0.078 s, install + finalize new/old median 0.86x. When the kernel's
file creation dominates (slow state) threads already overlapped it, so workers help most in
the fast state, where Python code and hashing are the limit.
"""
import argparse
import asyncio
import os
import shutil
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
for p in (os.path.join(REPO, "pants-plugins"), REPO):
    if p not in sys.path:
        sys.path.insert(0, p)

from coex_runtime import install  # noqa: E402
from tests.factory import realistic  # noqa: E402
from tests.factory.fixtures import rattler_solve  # noqa: E402
from tests.installer import helpers  # noqa: E402


CPU = {}  # contender -> [cpu seconds (user+sys) per round]


def _cpu():
    """CPU seconds (user+sys) of this process and its waited-for children (coex's forked
    extraction workers, tar)."""
    import resource
    a = resource.getrusage(resource.RUSAGE_SELF)
    b = resource.getrusage(resource.RUSAGE_CHILDREN)
    return a.ru_utime + a.ru_stime + b.ru_utime + b.ru_stime


def run_coex(entries, work, jobs):
    pkgs, prefix = os.path.join(work, "pkgs"), os.path.join(work, "env")
    staging = os.path.join(work, ".staging")
    c0 = _cpu()
    t0 = time.perf_counter()
    install.install_env(entries, helpers.open_payload, pkgs, staging, prefix, jobs=jobs)
    os.rename(staging, prefix)
    t1 = time.perf_counter()
    CPU.setdefault("coex", []).append(_cpu() - c0)
    install.finalize_env(prefix, entries)
    t2 = time.perf_counter()
    return t1 - t0, t2 - t1


def run_rattler(records, work):
    import rattler

    async def go():
        await rattler.install(records, target_prefix=os.path.join(work, "env"),
                              cache_dir=os.path.join(work, "cache"), show_progress=False)

    c0 = _cpu()
    t0 = time.perf_counter()
    asyncio.run(go())
    t = time.perf_counter() - t0
    CPU.setdefault("rattler", []).append(_cpu() - c0)
    return t


def run_floor(tarballs, work):
    dest = os.path.join(work, "env")
    os.makedirs(dest)
    c0 = _cpu()
    t0 = time.perf_counter()
    for tb in tarballs:
        subprocess.run(["tar", "-I", "zstd", "-xf", tb, "-C", dest], check=True)
    t = time.perf_counter() - t0
    CPU.setdefault("floor", []).append(_cpu() - c0)
    return t


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--jobs", type=int, default=None)
    ap.add_argument("--fmt", default="as-locked", choices=["as-locked", "tar.zst", "tar.bz2"])
    ap.add_argument("--work", default=None, help="scratch dir (default: a temp dir)")
    args = ap.parse_args(argv)

    chan = realistic.ensure()
    base = tempfile.mkdtemp(prefix="coex-install-bench-", dir=args.work)
    try:
        records = helpers.install_order(rattler_solve(chan.as_uri(), realistic.SPECS,
                                                      cache_dir=os.path.join(base, "solve")))
        entries = [helpers.entry_from_record(r) for r in records]
        tz = [helpers.repacked_entry(e, os.path.join(base, "tarzst"), "tar.zst") for e in entries]
        if args.fmt != "as-locked":
            entries = tz if args.fmt == "tar.zst" else [
                helpers.repacked_entry(e, os.path.join(base, "fmt"), args.fmt) for e in entries]
        tarballs = [e["path"] for e in tz]
        stored = sum(e["stored_size"] for e in entries)
        print("realistic environment: %d packages, %.1f MB stored (%s), python %s"
              % (len(entries), stored / 1e6, args.fmt, sys.version.split()[0]))
        for e in entries:
            print("  %-45s %8.1f kB  %s" % (e["filename"], e["stored_size"] / 1e3, e["encoding"]))

        best = {"coex": 1e9, "coex+finalize": 1e9, "rattler": 1e9, "floor": 1e9}
        times = {"coex": [], "coex+finalize": [], "rattler": [], "floor": []}
        order = ["floor", "rattler", "coex"]
        for rnd in range(args.rounds):
            for name in order[rnd % 3:] + order[:rnd % 3]:   # rotate: nobody always goes last
                work = os.path.join(base, "r%d-%s" % (rnd, name))
                os.makedirs(work)
                os.sync()  # the previous contender's dirty pages are not written back meanwhile
                if name == "coex":
                    t, fin = run_coex(entries, work, args.jobs)
                    best["coex"] = min(best["coex"], t)
                    best["coex+finalize"] = min(best["coex+finalize"], t + fin)
                    times["coex"].append(t)
                    times["coex+finalize"].append(t + fin)
                    print("round %d coex    %.3f s (+ finalize %.3f s)" % (rnd, t, fin))
                elif name == "rattler":
                    t = run_rattler(records, work)
                    best["rattler"] = min(best["rattler"], t)
                    times["rattler"].append(t)
                    print("round %d rattler %.3f s" % (rnd, t))
                else:
                    t = run_floor(tarballs, work)
                    best["floor"] = min(best["floor"], t)
                    times["floor"].append(t)
                    print("round %d floor   %.3f s" % (rnd, t))
                shutil.rmtree(work, ignore_errors=True)
                os.sync()
        print()
        print("best of %d rounds (cold: empty package cache and prefix each round)" % args.rounds)
        print("  tar -I zstd -x (floor)   %.3f s" % best["floor"])
        print("  rattler.install          %.3f s" % best["rattler"])
        print("  coex install_env         %.3f s   = %.2fx rattler, %.2fx floor"
              % (best["coex"], best["coex"] / best["rattler"], best["coex"] / best["floor"]))
        print("  coex + finalize (.pyc)   %.3f s   = %.2fx rattler"
              % (best["coex+finalize"], best["coex+finalize"] / best["rattler"]))
        med = dict((k, sorted(v)[len(v) // 2]) for k, v in times.items())
        print("medians: floor %.3f s, rattler %.3f s, coex %.3f s (= %.2fx rattler, %.2fx floor), "
              "coex + finalize %.3f s" % (med["floor"], med["rattler"], med["coex"],
                                          med["coex"] / med["rattler"], med["coex"] / med["floor"],
                                          med["coex+finalize"]))
        def med(xs):
            xs = sorted(xs)
            n = len(xs)
            return xs[n // 2] if n % 2 else (xs[n // 2 - 1] + xs[n // 2]) / 2

        for other in ("rattler", "floor"):
            for mine in ("coex", "coex+finalize"):
                r = [a / b for a, b in zip(times[mine], times[other])]
                print("per round %-13s / %-7s: median %.2fx, best %.2fx, worst %.2fx, <= 1.0x in "
                      "%d of %d rounds" % (mine, other, med(r), min(r), max(r),
                                           sum(1 for x in r if x <= 1.0), len(r)))
        cm = dict((k, sorted(v)[len(v) // 2]) for k, v in CPU.items())
        print("median CPU time (user+sys, all threads): floor %.3f s, rattler %.3f s, coex %.3f s "
              "(= %.2fx rattler)" % (cm["floor"], cm["rattler"], cm["coex"], cm["coex"] / cm["rattler"]))
    finally:
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
