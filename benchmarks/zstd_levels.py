"""Which zstd level `.tar.bz2` packages are transcoded at: archive size against build time.

    $COEX_VENV_PY benchmarks/zstd_levels.py [--levels 1,3,10,19,22] [--rounds N] [--corpus DIR]

Every locked `.tar.bz2` package is transcoded to `.tar.zst` once per build machine and level
(`coex.lib.transcode`, the same function the Pants rules and `./coex create` run); the archive
then stores it, and every first run on every host decodes it. For each level this measures,
over a set of real packages: the total transcode time (one package after another, one thread,
as the build's processes run), the total `.tar.zst` size, and the time to decode them all (what
a first run pays). Packages: the realistic channel's `.tar.bz2` packages (tests/factory; small:
pyflakes, cprefix) and, when present, the real Anaconda/conda-forge `.tar.bz2` packages of the
shared corpus (`../shared/corpus/channel/linux-64`: 81 packages, mostly from 2016, 47 MB of bzip2,
e.g. openssl, pixman, tk, pip; `--corpus DIR` names another directory of them). Reported per
level: the best of N rounds.

Measured on the project's 2-core VM (Dec 2026, best of 2 rounds, other jobs sharing the machine),
83 packages: 47.3 MB of .tar.bz2 holding 203.4 MB of tar:

    level   transcode s   .tar.zst MB   vs bz2   decode s
        1        13.9          56.2        1.19      0.23
        3        11.5          47.4        1.00      0.25
        6        11.3          43.0        0.91      0.22
       10        14.6          40.4        0.85      0.24
       15        57.1          40.0        0.85      0.33
       19       138.7          35.5        0.75      0.26
       22       385.0          34.8        0.73      0.79

The transcode column includes reading the bzip2 input and rewriting the tar in Python (~11 s,
the floor at every level). Level 10 is the knee: 15% smaller than level 3 (and than the bzip2
original) for 1.3x the time; level 15 gains nothing over it; level 19 is 12% smaller than 10 for
9.5x the time (+124 s of CPU for these 47 MB: minutes per cold build for a big .tar.bz2
environment, e.g. a CUDA toolkit), level 22 2% more for 2.8x more. Decoding, what every first
run pays, costs the same at levels 1-19 (level 22's bigger window is slower to decode). So the
default is 10 (`coex.lib.transcode.DEFAULT_ZSTD_LEVEL`, for `[coex].transcode_zstd_level` and
`./coex create --zstd-level`); 19 is worth setting where archives are copied to many hosts and
cold builds are rare (a remote cache shares transcodes). Only `.tar.bz2` packages are
transcoded: `.conda` packages, most of conda-forge today, are stored as they are.
"""
import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(REPO), str(REPO / "pants-plugins")]

from coex.lib.transcode import transcode  # noqa: E402

CORPUS = REPO.parent / "shared" / "corpus" / "channel" / "linux-64"


def packages(corpus: Path) -> list:
    from tests.factory import realistic

    found = sorted(realistic.ensure().rglob("*.tar.bz2"))
    if corpus.is_dir():
        found += sorted(corpus.glob("*.tar.bz2"))
    else:
        print("(no corpus at %s: the realistic channel's packages only)" % corpus)
    return found


def decode(paths) -> tuple:
    """(seconds to decode them all, bytes of tar they hold)."""
    import zstandard

    start = time.perf_counter()
    size = 0
    for p in paths:
        with open(p, "rb") as f, zstandard.ZstdDecompressor().stream_reader(f) as r:
            while True:
                chunk = r.read(1 << 20)
                if not chunk:
                    break
                size += len(chunk)
    return time.perf_counter() - start, size


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--levels", default="1,3,10,19,22")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--corpus", type=Path, default=CORPUS)
    args = ap.parse_args()
    pkgs = packages(args.corpus)
    bz2 = sum(p.stat().st_size for p in pkgs)
    print("%d packages, %.1f MB .tar.bz2" % (len(pkgs), bz2 / 1e6))
    print("level   transcode s   .tar.zst MB   vs bz2   decode s   (tar MB)")
    for level in (int(x) for x in args.levels.split(",")):
        best_t = best_d = float("inf")
        size = 0
        for _ in range(args.rounds):
            with tempfile.TemporaryDirectory(prefix="zstd-levels-") as tmp:
                outs = [os.path.join(tmp, "%d.tar.zst" % i) for i in range(len(pkgs))]
                start = time.perf_counter()
                for src, dst in zip(pkgs, outs):
                    transcode(str(src), dst, level)
                best_t = min(best_t, time.perf_counter() - start)
                size = sum(os.path.getsize(o) for o in outs)
                seconds, tar = decode(outs)
                best_d = min(best_d, seconds)
        print("%5d   %11.1f   %11.1f   %6.2f   %8.2f   %8.1f" % (
            level, best_t, size / 1e6, size / bz2, best_d, tar / 1e6))


if __name__ == "__main__":
    main()
