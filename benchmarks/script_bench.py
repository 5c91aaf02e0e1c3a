"""Warm start of a script that carries its environment, side by side in one run (not a test).

    $COEX_VENV_PY benchmarks/script_bench.py [--tier tiny|realistic] [--runs N]

One script with a `# /// conda` header, run warm N times each, interleaved:

* ``prefix/bin/python script.py``: the environment's python on the script, no coex at all;
* ``./app.coex``: the script's archive (``coex build script.py -o app.coex``) run directly;
* ``coex-run script.py``: the sh warm path (what ``#!/usr/bin/env coex-run`` scripts take);
* ``coex run script.py``: the ``coex`` console script of the wheel, installed (``--no-deps``)
  into a venv of this Python: Python starts, ``coex.entry`` hashes the script and execs the
  archive.

Medians, and each one's ratio to the direct run and overhead over ``./app.coex``. The tiny tier's
python is a fake that execs the host CPython 3.9 (so every line includes one CPython start); the
realistic tier runs the factory's real CPython 3.11.

Measured on this project's 2-core machine (median of 200 interleaved runs each):

    tier                          direct   ./app.coex   coex-run (sh)   coex run (console script)
    tiny (fake python -> 3.9)    15.3 ms   16.1 (1.05x)   19.9 (1.30x)    36.2 ms (2.38x)
    realistic (CPython 3.11)     14.2 ms   15.1 (1.07x)   18.6 (1.32x)    38.5 ms (2.72x)

`coex-run` costs ~3.5 ms over the archive (dash + one `sha256sum`). `coex run` costs ~20-23 ms
over it, nearly all of it Python starting before coex runs a line: the venv's python with site
~13 ms (7.9 with -S), the `import re` of pip's console-script wrapper ~6 ms; coex.entry itself
(import, hashing the script, execv) ~1-2 ms.
"""
import argparse
import json
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

from start_bench import spawn_time  # noqa: E402 (benchmarks/: the same measurement)

SCRIPT = """\
# /// conda
# dependencies = [{deps}]
# channels = ["{channel}"]
# ///
import sys
sys.exit(0)
"""

CONSOLE_SCRIPT = """\
#!{python}
# -*- coding: utf-8 -*-
import re
import sys
from coex.entry import main
if __name__ == '__main__':
    sys.argv[0] = re.sub(r'(-script\\.pyw|\\.exe)?$', '', sys.argv[0])
    sys.exit(main())
"""


def run(argv, env, cwd):
    r = subprocess.run(argv, env=env, cwd=str(cwd), stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE, universal_newlines=True)
    if r.returncode != 0:
        raise SystemExit("benchmark: %s failed:\n%s%s" % (argv, r.stdout, r.stderr))
    return r.stdout


def installed_coex(work):
    """bin/coex of a venv with the wheel installed without its dependencies (the warm path
    needs none)."""
    wheels = work / "wheel"
    run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--disable-pip-version-check",
         "-w", str(wheels), "."], os.environ, REPO)
    for leftover in ("build", "pants_backend_coex.egg-info"):
        shutil.rmtree(str(REPO / leftover), ignore_errors=True)
    venv = work / "venv"
    run([sys.executable, "-m", "venv", str(venv)], os.environ, work)
    (wheel,) = wheels.glob("*.whl")
    run([str(venv / "bin" / "pip"), "install", "-q", "--no-deps", "--disable-pip-version-check",
         str(wheel)], os.environ, work)
    coex = venv / "bin" / "coex"
    assert "coex.entry" in coex.read_text(), coex.read_text()
    return coex


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--tier", choices=("tiny", "realistic"), default="tiny")
    ap.add_argument("--runs", type=int, default=300)
    a = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="coex-script-bench-"))
    try:
        if a.tier == "tiny":
            from tests.factory import tiny
            channel, deps = tiny.build(work / "channel").path, ["python"]
        else:
            from tests.factory import realistic
            channel, deps = realistic.ensure(), ["python 3.11.*"]
        script = work / "script.py"
        script.write_text(SCRIPT.format(deps=", ".join('"%s"' % d for d in deps),
                                        channel=Path(channel).as_uri()))
        host_py = "/usr/bin/python3" if os.path.exists("/usr/bin/python3") else sys.executable
        env = {k: v for k, v in os.environ.items()
               if not k.startswith(("COEX_", "PYTHON")) and k != "VIRTUAL_ENV"}
        env.update(XDG_CACHE_HOME=str(work / "xdg"), COEX_ROOT=str(work / "root"),
                   COEX_PYTHON=host_py)
        checkout_env = dict(env, PYTHONPATH="%s:%s" % (REPO / "pants-plugins", REPO))
        t = time.perf_counter()
        run([sys.executable, "-m", "coex", "run", "script.py"], checkout_env, work)
        cold = time.perf_counter() - t
        run([sys.executable, "-m", "coex", "build", "-q", "script.py", "-o", "app.coex"],
            checkout_env, work)
        info = json.loads(run([str(work / "app.coex"), "info"], dict(env, COEX_TOOLS="1"), work))
        prefix = info["cache"]["env_dir"]
        coex = installed_coex(work)
        coex_run = str(REPO / "pants-plugins" / "bin" / "coex-run")
        cases = [
            ("prefix/bin/python script.py", [prefix + "/bin/python", "script.py"], env),
            ("./app.coex", [str(work / "app.coex")], env),
            ("coex-run script.py (sh)", [coex_run, "script.py"], env),
            ("coex run script.py", [str(coex), "run", "script.py"], env),
        ]
        os.chdir(str(work))  # (every case runs `script.py` from there)
        times = {name: [] for name, _, _ in cases}
        for _ in range(10):  # warm up
            for name, argv, e in cases:
                spawn_time(argv, e)
        for _ in range(a.runs):
            for name, argv, e in cases:
                times[name].append(spawn_time(argv, e))
        med = {name: statistics.median(ts) * 1000.0 for name, ts in times.items()}
        direct, archive = med[cases[0][0]], med[cases[1][0]]
        print("tier %s (%s), host python %s; first run (solve + build + install): %.2f s"
              % (a.tier, ", ".join(deps), host_py, cold))
        print("warm start, median of %d interleaved runs each:" % a.runs)
        print("  %-30s %8s %8s %12s" % ("", "ms", "ratio", "+ over app"))
        for name, _, _ in cases:
            print("  %-30s %8.2f %7.2fx %+10.2f ms"
                  % (name, med[name], med[name] / direct, med[name] - archive))
    finally:
        os.chdir(str(REPO))
        shutil.rmtree(str(work), ignore_errors=True)


if __name__ == "__main__":
    main()
