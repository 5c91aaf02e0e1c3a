"""Pants build of examples/hello:hello: cold build, incremental rebuild, a second CI machine
with a warm remote cache, and archive size, measured side by side in one run against the floor
of a bare `pants --version`; and the memory of fetching a large package.

    $COEX_VENV_PY benchmarks/pants_build.py [--rounds N] [--fetch-sizes-mb 50,400]

In a temp build root (a copy of the backend, runtime and examples/hello, private Pants caches,
no pantsd), against the realistic local channel served over HTTP on loopback (named `realistic`
in `[coex].channel_locations`, as a CI's mirror would be):
* floor: `pants --version` (rule graph construction etc., what every Pants run pays),
  measured before and after the builds of a round (the better one counts);
* cold: `pants package` with empty Pants caches (fetches, transcodes, assembly), lock given;
* incremental: `pants package` after editing one app source file (only assembly reruns);
* the same floor and incremental rebuild with a warm pantsd (the developer loop);
* second machine: a checkout at another path with empty Pants caches, reading Pants' remote
  cache (a BuildGrid on loopback, tests/e2e/buildgrid.py) that a first machine's cold build
  wrote: every step is a cache hit, nothing runs locally (checked); against a cold build without
  remote cache in the same setup (wall time, and time in the `package` goal: the part that is
  not Pants' own startup);
* size: the archive vs the sum of the locked package files (goal <= 1.02x).
Each round uses a fresh build root, caches and remote cache; the best round of each is reported.

Fetch memory: `python -m coex.lib.fetch` (what each fetch process runs) downloads a made-up
package of each size over HTTP; its peak RSS (from wait4) must not grow with the package.
"""
import argparse
import hashlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
for p in (os.path.join(REPO, "pants-plugins"), REPO):
    if p not in sys.path:
        sys.path.insert(0, p)

from coex_runtime import format as coex_format  # noqa: E402
from tests.e2e.buildgrid import BuildGrid, pants_flags  # noqa: E402
from tests.e2e.buildroot import ARCHIVE, TARGET, Pants, counters, make_buildroot  # noqa: E402
from tests.factory import realistic  # noqa: E402
from tests.e2e.channel_server import ChannelServer  # noqa: E402

CHANNEL = "realistic"  # the channel's name in [coex].channel_locations


def stop_pantsd(root: Path) -> None:
    for pid_file in root.glob(".pids/*/pantsd/pid"):
        try:
            os.kill(int(pid_file.read_text().strip()), signal.SIGTERM)
        except (ValueError, ProcessLookupError):
            pass


def pants_at(root: Path, state: Path, channel_url: str) -> Pants:
    pants = Pants(root, state, CHANNEL)
    pants.env["PANTS_COEX_CHANNEL_LOCATIONS"] = json.dumps({CHANNEL: channel_url})
    return pants


GOAL = re.compile(r"^(\d\d):(\d\d):(\d\d\.\d\d) \[DEBUG\] (Starting|Completed): `package` goal$",
                  re.M)


def goal_seconds(log: str) -> float:
    """How long the `package` goal itself took (a -ldebug log): the run minus Pants' startup."""
    (h0, m0, s0, _), (h1, m1, s1, _) = GOAL.findall(log)
    return (int(h1) - int(h0)) * 3600 + (int(m1) - int(m0)) * 60 + float(s1) - float(s0)


def second_machine(work: Path, root: Path, channel_url: str) -> dict:
    """Three checkouts at other paths, each with empty Pants caches: one cold build without a
    remote cache, a first CI machine's cold build writing it, a second one's reading it. Wall
    time and time in the `package` goal of each."""
    out = {}
    with BuildGrid(work / "buildgrid") as grid:
        for machine, flags in (("cold", ()),
                               ("write", pants_flags(grid.address, write=True)),
                               ("hits", pants_flags(grid.address, read=True))):
            checkout = work / f"machine-{machine}" / "repo"
            shutil.copytree(root, checkout, ignore=shutil.ignore_patterns(
                "dist", ".pants.d", ".pids"))
            pants = pants_at(checkout, work / f"machine-{machine}" / "state", channel_url)
            proc = pants("package", TARGET, "--stats-log", *flags, debug=True)
            out[f"rc_{machine}"] = pants.last_seconds
            out[f"rc_{machine}_goal"] = goal_seconds(proc.stderr)
            local = counters(proc.stderr).get("local_execution_requests", 0)
            if machine == "hits" and local:
                raise RuntimeError(f"the second machine ran {local} processes locally")
    return out


def one_round(work: Path, channel_url: str, lock_text: str = None):
    root = make_buildroot(work / "repo")
    pants = pants_at(root, work / "state", channel_url)
    pants("--version")
    floor = pants.last_seconds
    if lock_text is None:
        pants("generate-lockfiles", "--resolve=examples")
        lock_text = (root / "examples" / "examples.lock").read_text()
    else:
        (root / "examples" / "examples.lock").write_text(lock_text)
    # the lock solve warmed nothing the package step uses, except the rule graph, which every
    # run rebuilds without pantsd anyway
    shutil.rmtree(work / "state" / "lmdb_store", ignore_errors=True)
    pants("package", "examples/hello:hello")
    cold = pants.last_seconds
    main = root / "examples" / "hello" / "src" / "hello" / "__main__.py"
    main.write_text(main.read_text() + "\n# edited by the benchmark\n")
    pants("package", "examples/hello:hello")
    incremental = pants.last_seconds
    pants("--version")  # the floor again: the machine's load drifts; keep the better one
    floor = min(floor, pants.last_seconds)
    # The developer loop: a warm pantsd (started here, stopped by its pid at the end).
    pants.env["PANTS_PANTSD"] = "true"
    try:
        pants("--version")
        pants("--version")
        warm_floor = pants.last_seconds
        pants("package", "examples/hello:hello")
        main.write_text(main.read_text() + "# edited again\n")
        pants("package", "examples/hello:hello")
        warm_incremental = pants.last_seconds
    finally:
        stop_pantsd(root)
    remote = second_machine(work, root, channel_url)
    archive = root / ARCHIVE
    info = coex_format.open_archive(str(archive)).info
    locked = sum(int(p["size"]) for p in info["packages"])
    stored = sum(int(p["stored_size"]) for p in info["packages"])
    return {
        "floor": floor,
        "cold": cold,
        "incremental": incremental,
        "pantsd_floor": warm_floor,
        "pantsd_incremental": warm_incremental,
        **remote,
        "archive_bytes": archive.stat().st_size,
        "locked_bytes": locked,
        "stored_bytes": stored,
        "packages": len(info["packages"]),
    }, lock_text


FETCH = """
import os, subprocess, sys
proc = subprocess.Popen([sys.executable, "-m", "coex.lib.fetch"] + sys.argv[1:])
_, status, usage = os.wait4(proc.pid, 0)
print(usage.ru_maxrss if status == 0 else -1)
"""


def fetch_peak_rss(work: Path, size_mb: int) -> int:
    """Peak RSS (KiB) of `python -m coex.lib.fetch` downloading a made-up `size_mb` MB package
    over HTTP (what a fetch process does)."""
    chan = work / f"fetch-{size_mb}"
    (chan / "linux-64").mkdir(parents=True)
    pkg = chan / "linux-64" / f"big-1.0-h0_{size_mb}mb.conda"
    h = hashlib.sha256()
    with open(pkg, "wb") as f:
        for _ in range(size_mb):
            block = os.urandom(1 << 20)
            h.update(block)
            f.write(block)
    env = dict(os.environ, PYTHONPATH=os.path.join(REPO, "pants-plugins"))
    try:
        with ChannelServer(chan) as server:
            out = subprocess.run(
                [sys.executable, "-c", FETCH, "--url", f"{server.url}/linux-64/{pkg.name}",
                 "--sha256", h.hexdigest(), "--size", str(pkg.stat().st_size),
                 "--out", str(work / "fetched" / pkg.name)],
                env=env, stdout=subprocess.PIPE, text=True, check=True).stdout
    finally:
        shutil.rmtree(chan)
        shutil.rmtree(work / "fetched", ignore_errors=True)
    peak = int(out.split()[-1])
    if peak < 0:
        raise RuntimeError(f"fetching the {size_mb} MB package failed")
    return peak


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--fetch-sizes-mb", default="50,400",
                    help="sizes of the made-up packages whose fetch memory is measured")
    args = ap.parse_args(argv)
    results, lock_text = [], None
    with ChannelServer(realistic.ensure()) as server:
        for i in range(args.rounds):
            with tempfile.TemporaryDirectory(prefix="coex-pants-bench-") as tmp:
                r, lock_text = one_round(Path(tmp), server.url, lock_text)
                results.append(r)
                print("round %d: %s" % (i + 1, json.dumps(
                    {k: round(v, 2) if isinstance(v, float) else v for k, v in r.items()})),
                    flush=True)
    peaks = []
    with tempfile.TemporaryDirectory(prefix="coex-fetch-bench-") as tmp:
        for size in (int(x) for x in args.fetch_sizes_mb.split(",")):
            peaks.append((size, fetch_peak_rss(Path(tmp), size)))
    best = {k: min(r[k] for r in results)
            for k in ("floor", "cold", "incremental", "pantsd_floor", "pantsd_incremental",
                      "rc_cold", "rc_cold_goal", "rc_write", "rc_write_goal", "rc_hits",
                      "rc_hits_goal")}
    r = results[-1]
    print()
    print("examples/hello:hello, %d packages, best of %d rounds" % (r["packages"], len(results)))
    print("  pants --version (floor)      %6.2f s" % best["floor"])
    print("  cold package                 %6.2f s   (%.2f s above the floor, %.2fx the floor)"
          % (best["cold"], best["cold"] - best["floor"], best["cold"] / best["floor"]))
    print("  incremental package          %6.2f s   (%.2f s above the floor, %.2fx the floor)"
          % (best["incremental"], best["incremental"] - best["floor"],
             best["incremental"] / best["floor"]))
    print("  with a warm pantsd: floor    %6.2f s, incremental package %.2f s (%.2f s above the "
          "floor)" % (best["pantsd_floor"], best["pantsd_incremental"],
                      best["pantsd_incremental"] - best["pantsd_floor"]))
    print("  second CI machine (-ldebug runs; `goal`: the package goal, without Pants' startup):")
    print("    cold, no remote cache      %6.2f s, goal %5.2f s" % (best["rc_cold"],
                                                                  best["rc_cold_goal"]))
    print("    cold, remote cache hits    %6.2f s, goal %5.2f s   (%.2fx faster; the goal "
          "%.1fx)" % (best["rc_hits"], best["rc_hits_goal"], best["rc_cold"] / best["rc_hits"],
                      best["rc_cold_goal"] / best["rc_hits_goal"]))
    print("    first machine, writing it  %6.2f s, goal %5.2f s" % (best["rc_write"],
                                                                  best["rc_write_goal"]))
    print("  fetch peak RSS (python -m coex.lib.fetch over HTTP): "
          + ", ".join("%d MB package: %.1f MB" % (size, kib / 1024) for size, kib in peaks))
    print("  archive size                 %6.1f MB  = %.4fx the locked package files (%.1f MB; "
          "goal <= 1.02x), %.4fx the stored packages (the rest: runtime, record, libzstd stored)"
          % (r["archive_bytes"] / 1e6, r["archive_bytes"] / r["locked_bytes"],
             r["locked_bytes"] / 1e6, r["archive_bytes"] / r["stored_bytes"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
